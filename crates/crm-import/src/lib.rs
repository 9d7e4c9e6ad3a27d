//! Import of CSV and spreadsheet files into the replica.
//!
//! - [`Source`] opens a file (CSV with encoding detection, or a sheet of an XLSX/XLS/ODS
//!   workbook) and yields its header and [`Row`]s.
//! - [`Mapping`] decides which column fills which field: automatically by header (field
//!   names and the synonyms table, English and Chinese), from a saved [`Template`], and from
//!   `COLUMN=FIELD` overrides.
//! - [`import`] plans every row ([`RowOutcome`]: create, update, duplicate or error with
//!   reasons), checks duplicates against the replica and the file by normalised keys, and
//!   writes the good rows in batches through `crm_store::Store::write_batch` (none in a dry
//!   run). [`ErrorReport`] writes the per-row problems to a CSV file.
//!
//! Nothing here writes SQL: every record is written through the store's public API, as
//! ordinary attributed Automerge changes that sync.

mod error;
mod mapping;
mod report;
mod run;
mod source;
mod synonyms;

pub use error::{ImportError, Result};
pub use mapping::{Mapping, Target, Template, load_template, save_template, templates_dir};
pub use report::ErrorReport;
pub use run::{Action, DEFAULT_BATCH_ROWS, ImportOptions, RowError, RowOutcome, Summary, import};
pub use source::{Row, Source, SourceOptions};
