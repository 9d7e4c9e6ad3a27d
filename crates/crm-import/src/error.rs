//! Errors of an import that stop it before or while reading the file. Problems of single
//! rows are not errors of the import: they are reported per row ([`crate::RowError`]).

use std::path::PathBuf;

/// Why an import could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{} is not UTF-8 (invalid byte at offset {offset}) and not GB18030 either; pass --encoding with the file's encoding (e.g. gbk, big5, shift_jis, windows-1252) or save it as UTF-8",
        path.display()
    )]
    UnknownFileEncoding { path: PathBuf, offset: usize },
    #[error(
        "unknown encoding {0:?}; use a WHATWG label such as utf-8, gbk, gb18030, big5, shift_jis, windows-1252"
    )]
    UnknownEncoding(String),
    #[error("{}: unsupported file type; import reads .csv (also .txt, .tsv) and .xlsx, .xlsm, .xls, .ods", path.display())]
    UnsupportedFile { path: PathBuf },
    #[error("{}: {reason}", path.display())]
    Spreadsheet { path: PathBuf, reason: String },
    #[error("{}: no sheet named {sheet:?}; its sheets are: {}", path.display(), sheets.join(", "))]
    NoSuchSheet {
        path: PathBuf,
        sheet: String,
        sheets: Vec<String>,
    },
    #[error("{}: the file is empty (no header row)", path.display())]
    Empty { path: PathBuf },
    #[error("{}: {source}", path.display())]
    Csv {
        path: PathBuf,
        #[source]
        source: csv::Error,
    },
    #[error("--map {0:?}: expected COLUMN=FIELD")]
    BadMapping(String),
    #[error("--map {column:?}: the file has no such column; its columns are: {}", columns.join(", "))]
    NoSuchColumn {
        column: String,
        columns: Vec<String>,
    },
    #[error(
        "{target:?} is not a field of {kind}; use a field name, tags, notes, custom.NAME or - to skip the column (fields: {known})"
    )]
    NoSuchField {
        kind: crm_model::Kind,
        target: String,
        known: String,
    },
    #[error("no column maps to the required field {field} of {kind}; the columns are: {}; map one with --map COLUMN={field}", columns.join(", "))]
    MissingRequired {
        kind: crm_model::Kind,
        field: &'static str,
        columns: Vec<String>,
    },
    #[error("invalid template name {0:?}: use letters, digits, - and _ (at most 64)")]
    BadTemplateName(String),
    #[error("no import template {name:?} in {}; save one with --save-template", dir.display())]
    NoSuchTemplate { name: String, dir: PathBuf },
    #[error("template {name:?} maps {template_kind} columns, not {kind}")]
    TemplateKind {
        name: String,
        template_kind: String,
        kind: crm_model::Kind,
    },
    #[error("{}: not a valid import template: {source}", path.display())]
    BadTemplate {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] crm_store::StoreError),
}

impl ImportError {
    /// Whether the error is the caller's input (file, flags) rather than a failure of the
    /// replica or the machine.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            ImportError::Io { .. } => false,
            ImportError::Store(e) => e.is_invalid_input(),
            _ => true,
        }
    }
}

pub type Result<T, E = ImportError> = std::result::Result<T, E>;
