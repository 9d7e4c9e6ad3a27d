//! The relay's storage: workspaces, devices, the documents directory, the per-workspace
//! change log and document snapshots, behind the [`RelayStore`] trait.
//!
//! The trait is storage only: every method is a handful of plain SQL statements, and nothing
//! in it parses a change, checks a token or decides what a device may see. That is the
//! policy of [`crate::service::Relay`], which runs above the trait and is the same whatever
//! the backend: validation of pushed changes, authentication and revocation, cursor checks,
//! the budgets of a read, the compactor's building of snapshots and the assembly of
//! bootstrap pages. Two backends implement it: [`SqliteStore`] (one file, the default) and
//! [`PostgresStore`] (several relay processes on one database). The conformance suite in
//! `relay/tests/conformance.rs` runs both through the same cases.
//!
//! The trait is synchronous: the server calls it from blocking threads, never from the async
//! reactor. Positions: [`RelayStore::append`] runs its plan inside one transaction that holds
//! the workspace's lock (SQLite's single writer; PostgreSQL's `SELECT … FOR UPDATE` of the
//! workspace's row), so sequence numbers are allocated contiguously and a later batch of a
//! workspace commits after an earlier one: readers see positions in order, never a gap that
//! fills later.

mod database;
mod postgres;
mod rows;
mod sqlite;
pub(crate) mod values;

pub use self::postgres::PostgresStore;
pub use database::{Database, DatabaseParseError};
pub use rows::{ChangeRow, DeviceRow, DocumentRow, LogExtent, Row, SnapshotRow};
pub use sqlite::{FILE_NAME, FORMAT_VERSION as SQLITE_FORMAT, SqliteStore, in_use};
pub use values::{decode_scope, encode_scope};

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use crm_sync::{DocId, ErrorCode, ErrorFrame, Hash, RelayId};
use serde::Serialize;

use crate::ids::{DeviceId, Role, WorkspaceId};
use crate::token::RandomError;

/// Longest workspace name or user id, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// Everything the relay keeps. Implementations are shared by every connection.
pub trait RelayStore: Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`, for logs and metrics.
    fn backend(&self) -> &'static str;

    /// Where the data is, for logs (a file path, or a PostgreSQL URL without its password).
    fn location(&self) -> String;

    /// This relay's identity, made when its store was created. A relay restored from a backup
    /// of another store has another identity, so devices re-push what it may lack.
    fn relay_id(&self) -> RelayId;

    /// Whether the store answers at all (for `/healthz`).
    fn ping(&self) -> Result<(), StoreError>;

    /// The version of the schema the database holds (after the migrations opening it ran).
    fn schema_version(&self) -> Result<i64, StoreError>;

    // Workspaces.

    /// Stores a new workspace; `false` (and nothing stored) when its name is taken.
    fn insert_workspace(&self, workspace: &Workspace) -> Result<bool, StoreError>;
    /// Every workspace, oldest first.
    fn workspaces(&self) -> Result<Vec<Workspace>, StoreError>;
    fn workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError>;
    fn workspace_named(&self, name: &str) -> Result<Option<Workspace>, StoreError>;

    // Devices and tokens.

    /// Stores a new device with the SHA-256 of its token (the token itself is never stored).
    fn insert_device(&self, device: &Device, token_hash: &[u8; 32]) -> Result<(), StoreError>;
    /// The devices of one workspace, or of all, oldest first.
    fn devices(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Device>, StoreError>;
    /// The device whose token has this hash.
    fn device_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Device>, StoreError>;
    /// Records that a device connected at `at`.
    fn touch_device(&self, device: DeviceId, at: DateTime<Utc>) -> Result<(), StoreError>;
    /// Marks a device revoked at `at` unless it already is; returns it, `None` if unknown.
    fn revoke_device(
        &self,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError>;
    /// Devices (of every workspace) revoked at or after `since`.
    fn revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<Device>, StoreError>;
    /// Marks a device wiped (and revoked) at `at` unless it already is; `None` if unknown.
    fn wipe_device(
        &self,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError>;

    // Access: the directory of users and teams, and the role matrix.

    /// A workspace's directory: the projected fields of its `user` and `team` records, its
    /// role matrix overrides and its access version; `None` for an unknown workspace.
    fn directory(&self, workspace: WorkspaceId) -> Result<Option<DirectoryRows>, StoreError>;
    /// The access version of each of these workspaces (unknown ones are left out).
    fn access_versions(
        &self,
        workspaces: &[WorkspaceId],
    ) -> Result<Vec<(WorkspaceId, u64)>, StoreError>;
    /// Stores a workspace's role matrix overrides (JSON) and bumps its access version.
    fn set_matrix(&self, workspace: WorkspaceId, overrides: &str) -> Result<(), StoreError>;

    // The log.

    /// The workspace log's last position, `None` for an unknown workspace.
    fn head(&self, workspace: WorkspaceId) -> Result<Option<u64>, StoreError>;
    /// The hash of the change at a position of the log.
    fn hash_at(&self, workspace: WorkspaceId, seq: u64) -> Result<Option<Hash>, StoreError>;
    /// Log entries after `after`, ascending, at most `limit`, handed to `each` until it
    /// returns `false`. Returns the log's head, read after the entries (so never below them).
    fn read_log(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(LogRow) -> bool,
    ) -> Result<u64, StoreError>;

    /// Appends to a workspace's log in one transaction holding the workspace's lock: reads
    /// what [`Known`] holds for `docs` and `hashes`, hands it to `plan`, and writes what
    /// `plan` returns (nothing when it returns an empty [`Append`]; nothing at all when it
    /// fails). Returns only after the commit.
    fn append(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        docs: &[DocId],
        hashes: &[Hash],
        plan: &mut dyn FnMut(Known) -> Result<Append, PushError>,
    ) -> Result<(), PushError>;

    // Documents and snapshots.

    /// Documents with changes their snapshot does not hold yet, at most `limit`.
    fn stale(&self, limit: usize) -> Result<Vec<(WorkspaceId, DocId)>, StoreError>;
    /// How many documents are stale.
    fn count_stale(&self) -> Result<u64, StoreError>;
    fn snapshot(&self, doc: DocId) -> Result<Option<StoredSnapshot>, StoreError>;
    /// The snapshots of several documents (those that have one).
    fn snapshots(&self, docs: &[DocId]) -> Result<HashMap<DocId, StoredSnapshot>, StoreError>;
    /// Stores rebuilt snapshots in one transaction, each only if the document's snapshot is
    /// not already as far (another compaction got there first); returns how many it stored.
    fn write_snapshots(&self, writes: &[SnapshotWrite]) -> Result<usize, StoreError>;
    /// Whether this process may compact now. Several processes on one database compact one
    /// at a time: the first to ask holds the lease until it stops.
    fn compaction_lease(&self) -> Result<bool, StoreError>;
    /// A workspace's documents with ids after `after` whose first change is at or before
    /// `through`, in id order, each with its kind and latest scope and — when `wanted` says
    /// so for that kind and scope — its snapshot, handed to `each` until it returns `false`
    /// (at most `limit` examined).
    #[allow(clippy::type_complexity)]
    fn documents(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        through: u64,
        limit: usize,
        wanted: &mut dyn FnMut(&str, Option<&str>) -> bool,
        each: &mut dyn FnMut(DocId, bool, Option<StoredSnapshot>) -> bool,
    ) -> Result<(), StoreError>;
    /// The kind and latest scope of a document of a workspace.
    fn document_scope(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
    ) -> Result<Option<(String, Option<String>)>, StoreError>;
    /// The changes of each `(doc, after)` in log order, with positions after `after` and at
    /// or before `through` (if given), document by document in the order given, handed to
    /// `each` until it returns `false`.
    fn document_changes(
        &self,
        workspace: WorkspaceId,
        docs: &[(DocId, u64)],
        through: Option<u64>,
        each: &mut dyn FnMut(DocChange) -> bool,
    ) -> Result<(), StoreError>;

    // Operations: verification, statistics and migration. All read-only but `import`.

    /// A workspace's head as its row holds it and its log's extent, from one read; `None`
    /// for an unknown workspace.
    fn log_extent(&self, workspace: WorkspaceId) -> Result<Option<LogExtent>, StoreError>;
    /// A workspace's change rows, every column, with positions after `after`, ascending, at
    /// most `limit`, handed to `each` until it returns `false`.
    fn changes(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(ChangeRow) -> bool,
    ) -> Result<(), StoreError>;
    /// A workspace's directory rows with ids after `after`, in id order, at most `limit`,
    /// handed to `each` until it returns `false`.
    fn document_rows(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        limit: usize,
        each: &mut dyn FnMut(DocumentRow) -> bool,
    ) -> Result<(), StoreError>;
    /// The position and hash of each change filed under `doc` in a workspace's log, in log
    /// order, handed to `each` until it returns `false` (no change bytes are read).
    fn document_log(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
        each: &mut dyn FnMut(u64, Hash) -> bool,
    ) -> Result<(), StoreError>;
    /// How many documents a workspace's directory holds.
    fn count_documents(&self, workspace: WorkspaceId) -> Result<u64, StoreError>;
    /// The bytes the database takes (SQLite: the file and its WAL; PostgreSQL: the database).
    fn size(&self) -> Result<u64, StoreError>;
    /// Every row of the store from one consistent read, table by table in the order
    /// [`Row`] lists them (so each row comes after the rows it refers to), handed to `each`
    /// until it returns `false`.
    fn export(&self, each: &mut dyn FnMut(Row) -> bool) -> Result<(), StoreError>;
    /// Writes rows exactly as given, in one transaction: all of them or none. The rows must
    /// come in [`RelayStore::export`]'s order, and none may exist already.
    fn import(&self, rows: &[Row]) -> Result<(), StoreError>;

    // Several processes.

    /// The heads other relay processes on this database commit, as they commit them; `None`
    /// when only one process serves the database (SQLite).
    fn heads(&self) -> Result<Option<Box<dyn HeadFeed>>, StoreError>;

    /// The backend's connection pool, if it has one.
    fn pool_state(&self) -> Option<PoolState>;
}

/// A log entry as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRow {
    pub seq: u64,
    pub doc_id: DocId,
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub kind: String,
    /// The document's scope after this change (see [`values::encode_scope`]).
    pub scope: Option<String>,
    /// The document's scope before this change, when this change altered it.
    pub prev_scope: Option<String>,
}

/// A change of one document, as [`RelayStore::document_changes`] reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocChange {
    pub doc_id: DocId,
    pub seq: u64,
    pub hash: Hash,
    pub bytes: Vec<u8>,
}

/// A document of the directory, as the storing transaction knows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownDocument {
    pub workspace: WorkspaceId,
    pub kind: String,
    /// Its latest scope (see [`values::encode_scope`]).
    pub scope: Option<String>,
    /// Its shape (`crm_model::shape::Shape` as JSON): what write authorization reads
    /// instead of the document. `None` for a document stored by an older build and not
    /// backfilled yet (its changes are then in [`Known::unshaped`]).
    pub shape: Option<String>,
}

/// A change already in a workspace's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownChange {
    pub seq: u64,
    pub doc_id: DocId,
}

/// What [`RelayStore::append`] read for its plan, inside its transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Known {
    /// Whether the pushing device is a device of the workspace and not revoked.
    pub device_active: bool,
    /// The log's last position.
    pub head: u64,
    /// The workspace's access version (directory and role matrix) as of this transaction:
    /// writes are decided against exactly this version.
    pub access_version: u64,
    /// The documents asked for that exist, in any workspace.
    pub docs: HashMap<DocId, KnownDocument>,
    /// The changes asked for that are in this workspace's log.
    pub changes: HashMap<Hash, KnownChange>,
    /// Every stored change (bytes, in log order) of the documents asked for that are
    /// `user` or `team` records: the directory is projected from them.
    pub directory: HashMap<DocId, Vec<Vec<u8>>>,
    /// Every stored change (bytes, in log order) of the documents asked for that have no
    /// shape (written by something other than this build's append): the plan computes it.
    pub unshaped: HashMap<DocId, Vec<Vec<u8>>>,
}

/// What [`RelayStore::append`] writes: new documents, new changes at positions
/// `head_before + 1 ..= head`, in order, and the new head.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Append {
    pub documents: Vec<NewDocument>,
    pub changes: Vec<NewChange>,
    pub head: u64,
    /// New projected fields of `user` and `team` records (JSON); when any, the workspace's
    /// access version is bumped in the same transaction.
    pub directory: Vec<DirectoryWrite>,
}

/// A `user` or `team` record's projected fields, for the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectoryWrite {
    pub doc_id: DocId,
    /// `crm_model::access::DirectoryUser` or `DirectoryTeam` as JSON.
    pub attrs: String,
}

/// A workspace's directory as stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirectoryRows {
    /// `(doc_id, kind, attrs)` of every `user` and `team` record with projected fields.
    pub entries: Vec<(DocId, String, String)>,
    /// The role matrix overrides (JSON), if any were set.
    pub matrix: Option<String>,
    /// Bumped by every change of the directory or the matrix.
    pub version: u64,
}

impl Append {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewDocument {
    pub doc_id: DocId,
    pub kind: String,
    pub first_seq: u64,
    pub created_by: DeviceId,
}

/// A change to append. Its document's scope (`owner`, `teams`) and last position become
/// the change's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewChange {
    pub seq: u64,
    pub hash: Hash,
    pub doc_id: DocId,
    pub kind: String,
    /// The hashes the change depends on, 32 bytes each.
    pub deps: Vec<u8>,
    pub author: DeviceId,
    pub arrived_at: DateTime<Utc>,
    pub bytes: Vec<u8>,
    /// The owner's user record id, as text.
    pub owner: Option<String>,
    /// Team record ids, comma-separated.
    pub teams: Option<String>,
    /// The document's scope after the change, encoded (see [`values::encode_scope`]).
    pub scope: Option<String>,
    /// The document's scope before the change, when the change altered it.
    pub prev_scope: Option<String>,
    /// The document's shape after the change (JSON, see [`KnownDocument::shape`]).
    pub shape: String,
}

/// A document's compacted state (`Automerge::save`): it holds every change of the document
/// up to log position `seq` (and maybe later ones), and exactly the changes whose hashes
/// `hashes` lists (32 bytes each, concatenated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSnapshot {
    pub seq: u64,
    pub bytes: Vec<u8>,
    pub hashes: Vec<u8>,
}

/// A rebuilt document, for [`RelayStore::write_snapshots`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotWrite {
    pub doc_id: DocId,
    /// The last log position read: the document is compacted through it.
    pub through: u64,
    /// `None` when no change could be applied: the document's snapshot is removed, and its
    /// changes travel from the log.
    pub snapshot: Option<StoredSnapshot>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workspace {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// The last sequence number of its log.
    pub head: u64,
    /// The role matrix overrides (JSON), if any were set.
    #[serde(skip)]
    pub matrix: Option<String>,
    /// Bumped by every change of the directory or the matrix.
    #[serde(skip)]
    pub access_version: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Device {
    pub id: DeviceId,
    pub workspace: WorkspaceId,
    pub user: String,
    /// The user's record id; `None` for a device added before users existed on the relay.
    pub user_id: Option<uuid::Uuid>,
    /// The user's role when the device was added (the directory's is the one that counts).
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// When an admin wiped it: its next connection deletes every record it holds.
    pub wiped_at: Option<DateTime<Utc>>,
    /// When the device last connected (updated at most once a minute).
    pub last_seen_at: Option<DateTime<Utc>>,
}

/// The store failed; the request was fine. Backend-neutral: a backend's own error is kept
/// as the source.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the relay database ({backend}) failed")]
    Database {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot connect to the relay database at {location}")]
    Connect {
        location: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot create the data directory {path}")]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no relay data in {0}; create a workspace first (`crm-relay workspace create NAME`)")]
    Missing(String),
    #[error("{0} is not a crm-relay database")]
    Foreign(String),
    #[error(
        "{location} was written by a newer crm-relay (schema {found}, this build knows {supported})"
    )]
    Newer {
        location: String,
        found: i64,
        supported: i64,
    },
    #[error("cannot read {path}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{location} is of an older format ({found}; this build writes {supported}) and was \
         opened read-only, so it cannot be upgraded: open it with a command that writes, e.g. \
         `crm-relay workspace list`, first"
    )]
    Older {
        location: String,
        found: i64,
        supported: i64,
    },
    #[error("{0} holds a relay already; the target of a migration must be empty")]
    NotEmpty(String),
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
    #[error("an admin wiped this device; it deletes every record of the workspace it holds")]
    Wiped,
    #[error("{0}")]
    Forbidden(String),
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
            AuthError::Wiped => ErrorCode::WIPED,
            AuthError::Forbidden(_) => ErrorCode::FORBIDDEN,
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
    /// The workspace's directory changed while the batch was decided: it is decided again
    /// (never sent to a device).
    #[error("the workspace's access changed while the push was decided; try again")]
    StaleAccess,
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
            PushError::StaleAccess => ErrorCode::INTERNAL,
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
    #[error("no user {0:?} in the workspace; add them first (`crm-relay user add`)")]
    UnknownUser(String),
    #[error("no team {0:?} in the workspace; add it first (`crm-relay team add`)")]
    UnknownTeam(String),
    #[error("a user named {0:?} exists already")]
    DuplicateUser(String),
    #[error("a team named {0:?} exists already")]
    DuplicateTeam(String),
    #[error("{0}")]
    Rejected(String),
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
                | AdminError::UnknownUser(_)
                | AdminError::UnknownTeam(_)
                | AdminError::DuplicateUser(_)
                | AdminError::DuplicateTeam(_)
                | AdminError::Rejected(_)
        )
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

/// Log heads raised by other relay processes sharing the database.
pub trait HeadFeed: Send {
    /// Waits up to `timeout` for heads raised since the last call; empty on timeout.
    fn next(&mut self, timeout: std::time::Duration) -> Result<Vec<RaisedHead>, StoreError>;
}

/// A workspace's log head, raised by a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RaisedHead {
    pub workspace: WorkspaceId,
    pub head: u64,
    /// When the commit was made, by the committing process's clock.
    pub committed_at: DateTime<Utc>,
}

/// Connections of a backend's pool, for `/metrics`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolState {
    pub connections: u32,
    pub idle: u32,
    pub max: u32,
}
