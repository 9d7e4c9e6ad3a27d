//! Errors of the replica.

use std::path::PathBuf;

use crm_model::{DocError, Kind, RecordId, ValidationError};

/// Everything that can go wrong reading or writing a replica. A failed write leaves the
/// replica exactly as it was: every write is one SQLite transaction.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{} is not a CRM replica (no {} in it); create one with `crm init`", dir.display(), crate::REPLICA_FILE)]
    NotAReplica { dir: PathBuf },
    #[error("{} already holds a replica", dir.display())]
    AlreadyInitialized { dir: PathBuf },
    #[error("{} is corrupted or not an SQLite database", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    /// A write to a replica opened for reading only; reads work.
    #[error("{why}: {} can be read but not written; nothing was changed", path.display())]
    ReadOnly {
        path: PathBuf,
        why: crate::replica::ReadOnly,
    },
    #[error("{} is an SQLite database of another application, not a CRM replica", path.display())]
    Foreign { path: PathBuf },
    #[error("{} is an empty file, not a CRM replica (left by an interrupted `crm init`?); move it away and run `crm init` again", path.display())]
    EmptyFile { path: PathBuf },
    #[error(
        "the replica was written by a newer version of crm (replica format {found}, this build reads up to {supported}); upgrade crm"
    )]
    NewerVersion { found: i64, supported: i64 },
    #[error("no record with id {0}")]
    NotFound(RecordId),
    #[error("record {id} is a {found}, not a {expected}")]
    WrongKind {
        id: RecordId,
        expected: Kind,
        found: Kind,
    },
    /// A local write whose change would be larger than a relay accepts: it could never be
    /// pushed, so it is refused before anything is stored.
    #[error(
        "{what} {id}: this write makes a change of {bytes} bytes, over the limit of {max} bytes \
         for one change that the relay accepts; nothing was stored. Make it in smaller steps \
         (fewer or shorter texts, tags, items or custom fields at once)",
        what = if *.created { format!("new {kind}") } else { kind.to_string() }
    )]
    ChangeTooLarge {
        id: RecordId,
        kind: Kind,
        /// The record did not exist before this write.
        created: bool,
        bytes: usize,
        max: usize,
    },
    #[error("{field} refers to {id}, but there is no such record")]
    MissingReference { field: String, id: RecordId },
    #[error("{field} must refer to a {expected}, but {id} is a {found}")]
    WrongReference {
        field: String,
        id: RecordId,
        expected: String,
        found: Kind,
    },
    #[error("record {id} has no conflict on {field}")]
    NoConflict { id: RecordId, field: String },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("no report named {name:?}; the reports are: {known}")]
    UnknownReport { name: String, known: String },
    /// A request the records' current state does not allow (converting a converted lead,
    /// merging a record into itself, …); the message says why.
    #[error("{0}")]
    Rejected(String),
    #[error("record {id}: {source}")]
    Document {
        id: RecordId,
        #[source]
        source: Box<DocError>,
    },
    #[error("change {index} of the batch is not a valid Automerge change: {reason}")]
    InvalidChange { index: usize, reason: String },
    #[error("record {id}: the relay's copy of the document is invalid: {reason}")]
    InvalidDocument { id: RecordId, reason: String },
    #[error("a stored change of document #{docno} is unreadable: {reason}")]
    UnreadableChange { docno: i64, reason: String },
    #[error("record {id}: a stored change is unreadable: {reason}")]
    StoredChange { id: RecordId, reason: String },
    #[error("record {id}: a change claims to belong to record {claimed}")]
    DocumentMismatch { id: RecordId, claimed: String },
    /// Local changes waiting to be pushed whose bytes no longer match their hash, with no
    /// good copy in a snapshot: they are not pushed, nor are the changes that build on them.
    #[error(
        "record {id}: a local change waiting to be pushed ({hash}) is damaged (its stored bytes no longer match its hash) and no snapshot holds a good copy; it was not pushed, nor were the later changes of that record{more}. Everything else was synced. Run `crm check` for details"
    )]
    DamagedChanges {
        id: RecordId,
        hash: String,
        /// ", and N other damaged changes" when there are more.
        more: String,
    },
    #[error("unreadable projection value {0:?}; rebuild the projections with `crm reindex`")]
    CorruptProjection(String),
    /// No refused edit has this number (retried or dismissed already, or never one).
    #[error("no refused edit with id {0}; `crm rejected` lists them")]
    NoRejectedEdit(i64),
    #[error("cannot merge: {reason}")]
    CannotMerge { reason: String },
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A bug of this program, not of the input or the replica; the message says where.
    #[error("internal error: {0}")]
    Internal(&'static str),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    /// A record whose document could not be read or written.
    pub(crate) fn doc(id: RecordId, source: impl Into<DocError>) -> Self {
        StoreError::Document {
            id,
            source: Box::new(source.into()),
        }
    }

    /// Why an SQLite failure happened, when it means the replica cannot be written (a
    /// read-only file or directory, a full disk) rather than that it is damaged.
    pub(crate) fn cannot_write(&self) -> Option<crate::replica::ReadOnly> {
        use crate::replica::ReadOnly;
        let (StoreError::Sqlite(e) | StoreError::Corrupt { source: e, .. }) = self else {
            return None;
        };
        match e.sqlite_error_code()? {
            rusqlite::ErrorCode::ReadOnly
            | rusqlite::ErrorCode::CannotOpen
            | rusqlite::ErrorCode::PermissionDenied => Some(ReadOnly::Permission),
            // Under a full disk, making or growing `-shm` or the WAL fails as an I/O error.
            rusqlite::ErrorCode::DiskFull | rusqlite::ErrorCode::SystemIoFailure => {
                Some(ReadOnly::NoSpace)
            }
            _ => None,
        }
    }

    /// Whether the error is the caller's input (a usage or validation error) rather than a
    /// failure of the replica or the machine.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            StoreError::NotFound(_)
            | StoreError::WrongKind { .. }
            | StoreError::MissingReference { .. }
            | StoreError::WrongReference { .. }
            | StoreError::NoConflict { .. }
            | StoreError::UnknownReport { .. }
            | StoreError::Rejected(_)
            | StoreError::CannotMerge { .. }
            | StoreError::NoRejectedEdit(_)
            | StoreError::ChangeTooLarge { .. }
            | StoreError::Invalid(_) => true,
            StoreError::Document { source, .. } => matches!(**source, DocError::Invalid(_)),
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
