//! Reading rows from a CSV or spreadsheet file: the header row, then the data rows with the
//! row numbers a person sees in Excel (the header is row 1).
//!
//! CSV files are streamed (memory does not grow with the file). Their encoding is detected:
//! a UTF-8 or UTF-16 byte-order mark is honoured; a file without one is read as UTF-8 when
//! its first 64 KiB are valid UTF-8, else as GB18030 (what Chinese Excel writes as "CSV",
//! a superset of GBK) when they decode as that without error; anything else is refused with
//! a message asking for `--encoding`. `--encoding LABEL` overrides the detection. The
//! delimiter (`,`, `;` or tab) is taken from the header line.
//!
//! Spreadsheets (`.xlsx`, `.xlsm`, `.xls`, `.ods`) are read with calamine, one sheet
//! (the first unless named); a sheet is loaded whole, as calamine does.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use calamine::{Data, Reader as _};
use encoding_rs::Encoding;
use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use crate::error::{ImportError, Result};

/// How many bytes of a CSV file the encoding and delimiter detection look at.
const SAMPLE: usize = 64 * 1024;

/// How to read the file.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// A WHATWG encoding label (`gbk`, `gb18030`, `utf-8`, …); detected when `None`.
    pub encoding: Option<String>,
    /// The spreadsheet sheet to read; the first when `None`.
    pub sheet: Option<String>,
}

/// One data row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The row number as a spreadsheet shows it (the header row is 1).
    pub number: usize,
    /// The cells, or why the row could not be read (then the row is reported as an error).
    pub cells: std::result::Result<Vec<String>, String>,
}

/// An open file: its header and a stream of rows.
pub struct Source {
    path: PathBuf,
    headers: Vec<String>,
    /// What the file was read as: `utf-8`, `GB18030 (detected)`, `sheet Sheet1`, ….
    description: String,
    inner: Inner,
    /// Bytes of the file read so far, and its size, for a progress bar.
    read: Arc<AtomicU64>,
    total: u64,
}

/// The CSV reader over the file, counted and decoded to UTF-8.
type CsvReader = csv::Reader<DecodeReaderBytes<CountingReader<BufReader<File>>, Vec<u8>>>;

enum Inner {
    Csv {
        // Boxed: the reader's buffers make this variant far larger than the other.
        reader: Box<CsvReader>,
        record: csv::ByteRecord,
        number: usize,
        transcoded: bool,
    },
    Sheet {
        rows: std::vec::IntoIter<(usize, Vec<Data>)>,
    },
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("path", &self.path)
            .field("headers", &self.headers)
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl Source {
    /// Opens `path` as CSV or as a spreadsheet, by its extension, and reads the header row.
    pub fn open(path: &Path, options: &SourceOptions) -> Result<Source> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        match ext.as_str() {
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => open_sheet(path, options),
            "csv" | "txt" | "tsv" | "" => open_csv(path, options),
            _ => Err(ImportError::UnsupportedFile { path: path.into() }),
        }
    }

    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// What the file was read as, for the summary.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Bytes read and the file's size (spreadsheets: rows read and rows).
    pub fn progress(&self) -> (u64, u64) {
        (
            self.read.load(Ordering::Relaxed).min(self.total),
            self.total,
        )
    }

    /// The next data row; blank rows are skipped.
    pub fn next_row(&mut self) -> Option<Row> {
        loop {
            let row = match &mut self.inner {
                Inner::Csv {
                    reader,
                    record,
                    number,
                    transcoded,
                } => {
                    *number += 1;
                    let n = *number;
                    match reader.read_byte_record(record) {
                        Ok(false) => return None,
                        Ok(true) => Row {
                            number: n,
                            cells: decode_record(record, &self.headers, *transcoded),
                        },
                        Err(e) => Row {
                            number: n,
                            cells: Err(format!("unreadable CSV row: {e}")),
                        },
                    }
                }
                Inner::Sheet { rows } => {
                    let (number, cells) = rows.next()?;
                    self.read.fetch_add(1, Ordering::Relaxed);
                    Row {
                        number,
                        cells: cells
                            .iter()
                            .enumerate()
                            .map(|(i, c)| {
                                cell_text(c).map_err(|e| cell_error(&self.headers, i, &e))
                            })
                            .collect(),
                    }
                }
            };
            let blank = row
                .cells
                .as_ref()
                .is_ok_and(|cells| cells.iter().all(|c| c.trim().is_empty()));
            if !blank {
                return Some(row);
            }
        }
    }
}

fn column_name(headers: &[String], i: usize) -> String {
    headers
        .get(i)
        .cloned()
        .unwrap_or_else(|| format!("column {}", i + 1))
}

fn cell_error(headers: &[String], i: usize, why: &str) -> String {
    format!("{}: {why}", column_name(headers, i))
}

fn decode_record(
    record: &csv::ByteRecord,
    headers: &[String],
    transcoded: bool,
) -> std::result::Result<Vec<String>, String> {
    record
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            let text = std::str::from_utf8(bytes).map_err(|_| {
                cell_error(
                    headers,
                    i,
                    "not valid UTF-8; pass --encoding with the file's encoding (e.g. gbk)",
                )
            })?;
            if transcoded && text.contains('\u{FFFD}') {
                return Err(cell_error(
                    headers,
                    i,
                    "bytes that are not valid in the file's encoding",
                ));
            }
            Ok(text.to_string())
        })
        .collect()
}

/// Counts the bytes read through it, for progress.
struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// The encoding of a CSV file and how it was chosen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Detected {
    /// UTF-8 (with or without a byte-order mark), read as is.
    Utf8,
    /// A byte-order mark named this encoding.
    Bom(&'static Encoding),
    /// No byte-order mark and not UTF-8, but valid GB18030.
    Gb18030,
}

/// Detects the encoding of a file from its first bytes (see the module docs).
pub(crate) fn detect(sample: &[u8], complete: bool) -> std::result::Result<Detected, usize> {
    if let Some((encoding, _)) = Encoding::for_bom(sample) {
        return Ok(if encoding == encoding_rs::UTF_8 {
            Detected::Utf8
        } else {
            Detected::Bom(encoding)
        });
    }
    match std::str::from_utf8(sample) {
        Ok(_) => Ok(Detected::Utf8),
        // A multi-byte character cut by the end of the sample is fine.
        Err(e) if e.error_len().is_none() && !complete => Ok(Detected::Utf8),
        Err(e) => {
            let offset = e.valid_up_to();
            let mut decoder = encoding_rs::GB18030.new_decoder_without_bom_handling();
            let capacity = decoder
                .max_utf8_buffer_length_without_replacement(sample.len())
                .unwrap_or(sample.len() * 4);
            let mut out = String::with_capacity(capacity);
            let (result, _) =
                decoder.decode_to_string_without_replacement(sample, &mut out, complete);
            match result {
                encoding_rs::DecoderResult::Malformed(..) => Err(offset),
                _ => Ok(Detected::Gb18030),
            }
        }
    }
}

fn open_csv(path: &Path, options: &SourceOptions) -> Result<Source> {
    let io = |source| ImportError::Io {
        path: path.into(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let total = file.metadata().map_err(io)?.len();
    let mut sample = Vec::with_capacity(SAMPLE);
    file.take(SAMPLE as u64)
        .read_to_end(&mut sample)
        .map_err(io)?;
    let complete = (sample.len() as u64) >= total;
    let (encoding, description): (Option<&'static Encoding>, String) = match &options.encoding {
        Some(label) => {
            let encoding = Encoding::for_label(label.trim().as_bytes())
                .ok_or_else(|| ImportError::UnknownEncoding(label.clone()))?;
            (Some(encoding), encoding.name().to_string())
        }
        None => match detect(&sample, complete) {
            Ok(Detected::Utf8) => (None, "UTF-8".into()),
            Ok(Detected::Bom(e)) => (Some(e), format!("{} (byte-order mark)", e.name())),
            Ok(Detected::Gb18030) => (
                Some(encoding_rs::GB18030),
                "GB18030 (detected: not UTF-8)".into(),
            ),
            Err(offset) => {
                return Err(ImportError::UnknownFileEncoding {
                    path: path.into(),
                    offset,
                });
            }
        },
    };
    let delimiter = sniff_delimiter(&sample);
    let read = Arc::new(AtomicU64::new(0));
    let file = File::open(path).map_err(io)?;
    let counting = CountingReader {
        inner: BufReader::with_capacity(256 * 1024, file),
        read: read.clone(),
    };
    // UTF-8 passes through untouched (invalid bytes are then caught per cell); any other
    // encoding is transcoded to UTF-8. A byte-order mark is stripped either way.
    let transcoded = encoding.is_some_and(|e| e != encoding_rs::UTF_8);
    let decoded = DecodeReaderBytesBuilder::new()
        .encoding(encoding)
        .utf8_passthru(true)
        .strip_bom(true)
        .bom_override(options.encoding.is_none())
        .build(counting);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(delimiter)
        .buffer_capacity(256 * 1024)
        .from_reader(decoded);
    let mut record = csv::ByteRecord::new();
    let has_header = reader
        .read_byte_record(&mut record)
        .map_err(|source| ImportError::Csv {
            path: path.into(),
            source,
        })?;
    if !has_header {
        return Err(ImportError::Empty { path: path.into() });
    }
    let headers: Vec<String> = record
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{FEFF}')
                .trim()
                .to_string()
        })
        .collect();
    if headers.iter().all(String::is_empty) {
        return Err(ImportError::Empty { path: path.into() });
    }
    Ok(Source {
        path: path.into(),
        headers,
        description: description.to_string(),
        inner: Inner::Csv {
            reader: Box::new(reader),
            record,
            number: 1,
            transcoded,
        },
        read,
        total,
    })
}

/// The delimiter used most in the first line: `,` unless `;` or tab are more common.
fn sniff_delimiter(sample: &[u8]) -> u8 {
    let line = sample.split(|b| *b == b'\n').next().unwrap_or_default();
    let count = |d: u8| line.iter().filter(|b| **b == d).count();
    let (comma, semi, tab) = (count(b','), count(b';'), count(b'\t'));
    if tab > comma && tab >= semi {
        b'\t'
    } else if semi > comma {
        b';'
    } else {
        b','
    }
}

fn open_sheet(path: &Path, options: &SourceOptions) -> Result<Source> {
    let bad = |reason: String| ImportError::Spreadsheet {
        path: path.into(),
        reason,
    };
    let mut workbook = calamine::open_workbook_auto(path).map_err(|e| match e {
        calamine::Error::Io(source) => ImportError::Io {
            path: path.into(),
            source,
        },
        other => bad(format!("not a readable spreadsheet: {other}")),
    })?;
    let sheets = workbook.sheet_names();
    let sheet = match &options.sheet {
        Some(name) => sheets
            .iter()
            .find(|s| s.as_str() == name.as_str() || s.trim().eq_ignore_ascii_case(name.trim()))
            .cloned()
            .ok_or_else(|| ImportError::NoSuchSheet {
                path: path.into(),
                sheet: name.clone(),
                sheets: sheets.clone(),
            })?,
        None => sheets
            .first()
            .cloned()
            .ok_or_else(|| ImportError::Empty { path: path.into() })?,
    };
    let range = workbook
        .worksheet_range(&sheet)
        .map_err(|e| bad(format!("sheet {sheet:?}: {e}")))?;
    let first_row = range.start().map_or(0, |(r, _)| r as usize);
    let mut rows = range
        .rows()
        .enumerate()
        .map(|(i, cells)| (first_row + i + 1, cells.to_vec()))
        .filter(|(_, cells)| cells.iter().any(|c| !matches!(c, Data::Empty)));
    let Some((_, header_cells)) = rows.next() else {
        return Err(ImportError::Empty { path: path.into() });
    };
    let headers: Vec<String> = header_cells
        .iter()
        .map(|c| cell_text(c).unwrap_or_default().trim().to_string())
        .collect();
    let rest: Vec<(usize, Vec<Data>)> = rows.collect();
    let total = rest.len() as u64;
    Ok(Source {
        path: path.into(),
        headers,
        description: format!("sheet {sheet:?} of {}", sheets.len()),
        inner: Inner::Sheet {
            rows: rest.into_iter(),
        },
        read: Arc::new(AtomicU64::new(0)),
        total,
    })
}

/// A cell as the text a person would type for it: whole numbers without `.0` (phone
/// numbers and counts are often stored as numbers), dates as `YYYY-MM-DD`.
fn cell_text(cell: &Data) -> std::result::Result<String, String> {
    Ok(match cell {
        Data::Empty => String::new(),
        Data::String(s) => s.clone(),
        Data::Int(n) => n.to_string(),
        Data::Float(f) => {
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{}", *f as i64)
            } else {
                f.to_string()
            }
        }
        Data::Bool(b) => b.to_string(),
        Data::DateTime(dt) => match dt.as_datetime() {
            Some(t) if t.time() == chrono::NaiveTime::MIN => t.format("%Y-%m-%d").to_string(),
            Some(t) => t.format("%Y-%m-%dT%H:%M:%S").to_string(),
            None => dt.as_f64().to_string(),
        },
        Data::DateTimeIso(s) | Data::DurationIso(s) => s.clone(),
        Data::Error(e) => return Err(format!("the cell holds the error {e}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_utf8_boms_and_gb18030() {
        assert_eq!(detect("名称,邮箱\n".as_bytes(), true), Ok(Detected::Utf8));
        assert_eq!(
            detect(b"\xEF\xBB\xBFname\n", true),
            Ok(Detected::Utf8),
            "UTF-8 with a BOM"
        );
        let (gbk, _, _) = encoding_rs::GBK.encode("名称,邮箱\n深圳星光,a@b.cn\n");
        assert_eq!(detect(&gbk, true), Ok(Detected::Gb18030));
        assert!(matches!(
            detect(b"\xFF\xFEn\0a\0", true),
            Ok(Detected::Bom(e)) if e == encoding_rs::UTF_16LE
        ));
        // A character cut by the end of the sample is not an error.
        let cut = &"名称".as_bytes()[..4];
        assert_eq!(detect(cut, false), Ok(Detected::Utf8));
        // Bytes that are neither.
        assert!(detect(b"ok\x80\xFF\xFF", true).is_err());
    }

    #[test]
    fn sniffs_delimiters() {
        assert_eq!(sniff_delimiter(b"a,b,c\n1;2"), b',');
        assert_eq!(sniff_delimiter(b"a;b;c\n"), b';');
        assert_eq!(sniff_delimiter(b"a\tb\tc\n"), b'\t');
    }
}
