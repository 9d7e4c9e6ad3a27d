//! The per-row error report: a CSV file with one line per problem (row number, column,
//! value, reason), UTF-8 with a byte-order mark so Excel shows Chinese text correctly.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{ImportError, Result};
use crate::run::RowOutcome;

/// An error report being written.
#[derive(Debug)]
pub struct ErrorReport {
    path: PathBuf,
    writer: csv::Writer<BufWriter<File>>,
    lines: usize,
}

impl ErrorReport {
    /// Creates (or replaces) the report file and writes its header.
    pub fn create(path: &Path) -> Result<ErrorReport> {
        let io = |source| ImportError::Io {
            path: path.into(),
            source,
        };
        let mut file = BufWriter::new(File::create(path).map_err(io)?);
        file.write_all("\u{FEFF}".as_bytes()).map_err(io)?;
        let mut writer = csv::Writer::from_writer(file);
        writer
            .write_record(["row", "column", "value", "reason"])
            .map_err(|source| ImportError::Csv {
                path: path.into(),
                source,
            })?;
        Ok(ErrorReport {
            path: path.into(),
            writer,
            lines: 0,
        })
    }

    /// Adds the problems of `outcome`, if any.
    pub fn add(&mut self, outcome: &RowOutcome) -> Result<()> {
        for e in &outcome.errors {
            self.writer
                .write_record([e.row.to_string().as_str(), &e.column, &e.value, &e.reason])
                .map_err(|source| ImportError::Csv {
                    path: self.path.clone(),
                    source,
                })?;
            self.lines += 1;
        }
        Ok(())
    }

    /// How many problems were written.
    pub fn lines(&self) -> usize {
        self.lines
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Flushes the file.
    pub fn finish(mut self) -> Result<PathBuf> {
        self.writer.flush().map_err(|source| ImportError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(self.path)
    }
}
