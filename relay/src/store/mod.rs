//! The relay's storage: workspaces, devices, the documents directory and the per-workspace
//! change log, behind the [`RelayStore`] trait.
//!
//! [`SqliteStore`] is the default backend (one file, WAL). The trait is synchronous: the
//! server calls it from blocking threads, never from the async reactor. A PostgreSQL backend
//! (several relay processes sharing one database) implements the same trait; it allocates
//! sequence numbers under a per-workspace row lock exactly as `SqliteStore` does under its
//! write transaction, so positions become visible in order.
//!
//! Snapshots: the compactor ([`RelayStore::compact`]) folds each document's changes into an
//! `Automerge::save` of it in the background, so a new device can load documents instead of
//! replaying the log ([`RelayStore::documents_page`], for `/v1/bootstrap`). Only one
//! document is ever built at a time; the relay still never holds every document.
//!
//! Scope filtering (a later issue): the documents directory keeps `owner` and `teams` beside
//! each document, and `read` may then skip entries a device may not see, reporting the last
//! position it examined as `through`. The protocol already allows gaps, so no frame changes.

mod sqlite;

pub use sqlite::{FILE_NAME, SqliteStore};

use chrono::{DateTime, Utc};
use crm_sync::relay::{Authorized, LogRead};
use crm_sync::{Cursor, DocId, DocState, Envelope, ErrorCode, ErrorFrame, Hash, RelayId};
use serde::Serialize;

use crate::ids::{DeviceId, Role, WorkspaceId};
use crate::token::{RandomError, Token};

/// Longest workspace name or user id, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Everything the relay keeps. Implementations are shared by every connection.
pub trait RelayStore: Send + Sync + 'static {
    /// This relay's identity, made when its store was created. A relay restored from a backup
    /// of another store has another identity, so devices re-push what it may lack.
    fn relay_id(&self) -> RelayId;

    /// Whether the store answers at all (for `/healthz`).
    fn ping(&self) -> Result<(), StoreError>;

    /// Checks a device's token for a workspace, and the device's cursor against the log.
    /// `workspace` is the text the device sent (the workspace's UUID).
    fn authenticate(
        &self,
        workspace: &str,
        token: &str,
        cursor: Option<&Cursor>,
    ) -> Result<Authenticated, AuthError>;

    /// Validates a pushed batch and stores it in one transaction, allocating the next
    /// sequence numbers of the workspace's log. Returns only after the commit. A change
    /// already in the log keeps its position; nothing of a refused batch is stored.
    fn store_batch(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        changes: &[Envelope],
    ) -> Result<StoredBatch, PushError>;

    /// Up to `limit` log entries after position `after`, ascending, within one frame's size.
    fn read(&self, workspace: WorkspaceId, after: u64, limit: usize)
    -> Result<LogRead, StoreError>;

    /// Makes a workspace with a new, empty log.
    fn create_workspace(&self, name: &str) -> Result<Workspace, AdminError>;

    /// Every workspace, oldest first.
    fn workspaces(&self) -> Result<Vec<Workspace>, StoreError>;

    /// The workspace with this id or, failing that, this name.
    fn find_workspace(&self, id_or_name: &str) -> Result<Workspace, AdminError>;

    /// Adds a device for `user` and returns it with its token, which is not stored (only
    /// its hash is) and so can never be shown again.
    fn add_device(
        &self,
        workspace: WorkspaceId,
        user: &str,
        role: Role,
    ) -> Result<NewDevice, AdminError>;

    /// The devices of one workspace, or of all, oldest first.
    fn devices(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Device>, StoreError>;

    /// Revokes a device's token; its next connection or push is refused. Revoking twice keeps
    /// the first time.
    fn revoke_device(&self, device: DeviceId) -> Result<Device, AdminError>;

    /// Devices (of every workspace) revoked at or after `since`, so a serving relay can
    /// close their open sessions.
    fn revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<Device>, StoreError>;

    /// The workspace log's head and the hash of the change there (zeros for an empty log): the
    /// cursor a device has once it holds everything up to the head.
    fn head(&self, workspace: WorkspaceId) -> Result<(u64, Hash), StoreError>;

    /// Compacts up to `limit` stale documents (of any workspace): those with changes after
    /// the position their snapshot was made at. Each is rebuilt from its changes in the log,
    /// one document in memory at a time, and its snapshot replaced; the writes are short
    /// transactions (at most `limit` documents or a few MiB of snapshots each). Returns how
    /// many documents were taken off the stale list, including any that could not be built:
    /// those are logged and left without a snapshot (their changes are sent from the log)
    /// until they change again.
    fn compact(&self, limit: usize) -> Result<usize, StoreError>;

    /// How many documents have changes their snapshot does not hold yet.
    fn stale_documents(&self) -> Result<u64, StoreError>;

    /// One page of a workspace's documents for a device's bootstrap, read in one transaction:
    /// documents whose first change is at or before log position `through`, with ids after
    /// `after`, in id order. Each comes with its snapshot (which may hold changes after
    /// `through`) and its log changes up to `through` that the snapshot does not hold.
    /// The page stops before the document that would take its encoded size past `max_bytes`
    /// (it always holds one) and at `crm_sync::MAX_BATCH_CHANGES` documents. A document
    /// that alone is larger than `max_bytes` is [`StoreError::DocumentTooLarge`].
    fn documents_page(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        through: u64,
        max_bytes: usize,
    ) -> Result<DocumentsPage, StoreError>;
}

/// A page of [`RelayStore::documents_page`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentsPage {
    pub docs: Vec<DocState>,
    /// The last document of this page, to read the next page after; `None` on the last page.
    pub next: Option<DocId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The last sequence number of its log.
    pub head: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: DeviceId,
    pub workspace: WorkspaceId,
    pub user: String,
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// A device just added, with the only copy of its token.
#[derive(Debug)]
pub struct NewDevice {
    pub device: Device,
    pub token: Token,
}

/// A device that proved its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub workspace: WorkspaceId,
    pub device: DeviceId,
    pub user: String,
    pub role: Role,
    /// The log's head and whether the device's cursor is a position of this log.
    pub authorized: Authorized,
}

/// What storing a batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    /// The log position of each change of the batch, in order.
    pub seqs: Vec<u64>,
    /// The log's head after the commit.
    pub head: u64,
    /// Changes that were new.
    pub stored: usize,
    /// Changes already in the log (acknowledged with their earlier position).
    pub duplicates: usize,
    /// What [`RelayStore::read`] after `head − stored` would return, when the batch's new
    /// changes are exactly that range and fit one read: the other sessions of the
    /// workspace take it instead of each reading the same rows back (see `hub.rs`).
    pub tail: Option<crm_sync::relay::LogRead>,
}

/// The store failed; the request was fine.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the relay database failed")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no relay data in {0}; create a workspace first (`crm-relay workspace create NAME`)")]
    Missing(std::path::PathBuf),
    #[error("{0} is not a crm-relay database")]
    Foreign(std::path::PathBuf),
    #[error(
        "{path} was written by a newer crm-relay (format {found}, this build reads {supported})"
    )]
    Newer {
        path: std::path::PathBuf,
        found: i64,
        supported: i64,
    },
    #[error("the relay database holds an invalid value: {0}")]
    Corrupt(String),
    #[error("a storage worker stopped unexpectedly")]
    Worker,
    #[error(
        "document {doc} takes more than {max} bytes, too large for a bootstrap page; \
         sync it from the log instead"
    )]
    DocumentTooLarge { doc: uuid::Uuid, max: usize },
}

/// Why a device may not connect.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("unknown workspace {0:?}")]
    UnknownWorkspace(String),
    #[error("missing or unknown token")]
    Unauthenticated,
    #[error("this token belongs to another workspace")]
    OtherWorkspace,
    #[error("this device's token was revoked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// The frame sent to the device. A store failure is reported without its details.
    pub fn to_frame(&self) -> ErrorFrame {
        let code = match self {
            AuthError::UnknownWorkspace(_) | AuthError::OtherWorkspace => {
                ErrorCode::UNKNOWN_WORKSPACE
            }
            AuthError::Unauthenticated => ErrorCode::UNAUTHENTICATED,
            AuthError::Revoked => ErrorCode::REVOKED,
            AuthError::Store(_) => ErrorCode::INTERNAL,
        };
        frame(code, self)
    }
}

/// Why a pushed batch was refused (nothing of it is stored).
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("change {index} is not an Automerge change: {reason}")]
    InvalidChange { index: usize, reason: String },
    #[error("change {index}: document {doc} is a {known}, not a {sent}")]
    KindMismatch {
        index: usize,
        doc: uuid::Uuid,
        known: String,
        sent: String,
    },
    #[error("change {index} does not belong to record {doc}: {reason}")]
    WrongDocument {
        index: usize,
        doc: uuid::Uuid,
        reason: String,
    },
    #[error("change {index} of record {doc} cannot be stored yet: {reason}")]
    MissingDependency {
        index: usize,
        doc: uuid::Uuid,
        reason: String,
    },
    #[error("change {index}: document {doc} belongs to another workspace")]
    WrongWorkspace { index: usize, doc: uuid::Uuid },
    #[error("this device's token was revoked")]
    Revoked,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PushError {
    pub fn code(&self) -> ErrorCode {
        match self {
            PushError::InvalidChange { .. }
            | PushError::KindMismatch { .. }
            | PushError::WrongDocument { .. } => ErrorCode::INVALID_CHANGE,
            PushError::MissingDependency { .. } => ErrorCode::MISSING_DEPENDENCY,
            PushError::WrongWorkspace { .. } => ErrorCode::WRONG_WORKSPACE,
            PushError::Revoked => ErrorCode::REVOKED,
            PushError::Store(_) => ErrorCode::INTERNAL,
        }
    }

    /// The frame sent to the device. A store failure is reported without its details.
    pub fn to_frame(&self) -> ErrorFrame {
        frame(self.code(), self)
    }
}

/// Why an admin command failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("a workspace named {0:?} already exists")]
    DuplicateName(String),
    #[error("invalid {what} {value:?}: {expected}")]
    InvalidInput {
        what: &'static str,
        value: String,
        expected: String,
    },
    #[error("no workspace with the id or name {0:?}")]
    UnknownWorkspace(String),
    #[error("no device with the id {0}")]
    UnknownDevice(DeviceId),
    #[error(transparent)]
    Random(#[from] RandomError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AdminError {
    /// Whether the input was wrong (rather than the store or the machine failing).
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            AdminError::DuplicateName(_)
                | AdminError::InvalidInput { .. }
                | AdminError::UnknownWorkspace(_)
                | AdminError::UnknownDevice(_)
        )
    }
}

impl From<rusqlite::Error> for AdminError {
    fn from(e: rusqlite::Error) -> Self {
        AdminError::Store(e.into())
    }
}

impl From<rusqlite::Error> for PushError {
    fn from(e: rusqlite::Error) -> Self {
        PushError::Store(e.into())
    }
}

impl From<rusqlite::Error> for AuthError {
    fn from(e: rusqlite::Error) -> Self {
        AuthError::Store(e.into())
    }
}

fn frame(code: ErrorCode, error: &dyn std::error::Error) -> ErrorFrame {
    let mut message = if code == ErrorCode::INTERNAL {
        "the relay could not reach its storage; try again later".to_string()
    } else {
        error.to_string()
    };
    if message.len() > crm_sync::MAX_TEXT_BYTES {
        let mut end = crm_sync::MAX_TEXT_BYTES;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    ErrorFrame { code, message }
}
