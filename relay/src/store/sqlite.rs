//! [`SqliteStore`]: the relay's store in one SQLite file (`relay.db` in the data directory).
//!
//! One writer connection behind a mutex: SQLite has one writer at a time anyway, and every
//! write is a short `BEGIN IMMEDIATE` transaction, so sequence numbers are allocated under the
//! write lock and become visible in order, all at once, at commit. Readers take a connection
//! from a small pool; in WAL mode they never wait for the writer and see committed data only.
//! `synchronous=FULL`: an acknowledged batch survives a power cut, not only a crash.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use crm_sync::{DocId, Hash, RelayId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

use super::values::{doc_id, hash, seq, sql_limit, sql_seq, time};
use super::{
    Append, ChangeRow, Device, DirectoryRows, DocChange, DocumentRow, Known, KnownChange,
    KnownDocument, LogExtent, LogRow, PushError, RelayStore, Row, SnapshotWrite, StoreError,
    StoredSnapshot, Workspace,
};
use crate::ids::{DeviceId, WorkspaceId};

mod files;
mod rows;

pub use files::in_use;

/// The database file in the data directory.
pub const FILE_NAME: &str = "relay.db";
/// Marks the file as a crm-relay database ("crmr").
const APPLICATION_ID: i32 = 0x6372_6d72;
/// The schema this build writes.
pub const FORMAT_VERSION: i64 = 5;
/// Page cache of each reader connection (SQLite's `cache_size`, negative: KiB).
const READER_CACHE_KIB: i64 = -256;
/// Idle reader connections kept open (as many as the server runs blocking threads).
const MAX_IDLE_READERS: usize = 32;

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database {
            backend: "sqlite",
            source: Box::new(e),
        }
    }
}

impl From<rusqlite::Error> for PushError {
    fn from(e: rusqlite::Error) -> Self {
        PushError::Store(e.into())
    }
}

/// Format 1. Later formats are migrations run in order, on new databases too, so every
/// database has the same schema whichever way it got there.
const SCHEMA: &str = r#"
CREATE TABLE relay_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    relay_id    BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);

CREATE TABLE workspaces (
    id          BLOB PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    -- The last sequence number of the workspace's log, bumped by the write transaction that
    -- appends to it: the per-workspace lock under which positions are allocated.
    head        INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    id          BLOB PRIMARY KEY,
    workspace   BLOB NOT NULL REFERENCES workspaces(id),
    user        TEXT NOT NULL,
    role        TEXT NOT NULL
                CHECK (role IN ('admin', 'sales_manager', 'sales_rep', 'support_agent')),
    -- SHA-256 of the token's text; the token itself is never stored.
    token_hash  BLOB NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);
CREATE INDEX devices_by_workspace ON devices(workspace);

-- Every document the relay has seen, with the workspace it belongs to (a document never
-- moves). `owner` (a user record id) and `teams` (comma-separated team record ids) are the
-- visibility scope from the latest pushed change's envelope; a role and scope filter joins
-- `read` on them. Format 2 adds `last_seq` and `snap_seq` (see MIGRATE_TO_2).
CREATE TABLE documents (
    doc_id      BLOB PRIMARY KEY,
    workspace   BLOB NOT NULL REFERENCES workspaces(id),
    kind        TEXT NOT NULL,
    first_seq   INTEGER NOT NULL,
    created_by  BLOB NOT NULL REFERENCES devices(id),
    owner       TEXT,
    teams       TEXT
);
CREATE INDEX documents_by_scope ON documents(workspace, owner);

-- The change log: one row per change, numbered per workspace.
CREATE TABLE changes (
    workspace   BLOB NOT NULL REFERENCES workspaces(id),
    seq         INTEGER NOT NULL,
    hash        BLOB NOT NULL,
    doc_id      BLOB NOT NULL REFERENCES documents(doc_id),
    kind        TEXT NOT NULL,
    -- The hashes the change depends on, 32 bytes each: for set reconciliation later.
    deps        BLOB NOT NULL,
    author      BLOB NOT NULL REFERENCES devices(id),
    arrived_at  INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    PRIMARY KEY (workspace, seq),
    UNIQUE (workspace, hash)
);
"#;

/// Format 2: document snapshots for a device's bootstrap. Run on a new database after
/// `SCHEMA`, and on a format-1 database when it is opened, in the opening transaction.
/// `ALTER TABLE … ADD COLUMN` with a constant default rewrites nothing, so the migration
/// costs one pass over the log (the backfill of `last_seq`) and the new indexes.
const MIGRATE_TO_2: &str = r#"
-- `last_seq`: the log position of the document's latest change, kept by `store_batch`.
-- `snap_seq`: the position through which the compactor has folded the document's changes
-- (0: never). A document is *stale* while `last_seq > snap_seq`.
ALTER TABLE documents ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE documents ADD COLUMN snap_seq INTEGER NOT NULL DEFAULT 0;

-- A document's changes in log order: what compaction and bootstrap pages read.
CREATE INDEX changes_by_doc ON changes(workspace, doc_id, seq);
-- A workspace's documents in id order: the order of bootstrap pages.
CREATE INDEX documents_by_workspace ON documents(workspace, doc_id);

UPDATE documents SET last_seq = coalesce(
    (SELECT max(c.seq) FROM changes c
     WHERE c.workspace = documents.workspace AND c.doc_id = documents.doc_id),
    0);

-- The documents the compactor has yet to fold: only these are in the index, so finding and
-- counting them costs nothing while the compactor keeps up.
CREATE INDEX documents_stale ON documents(workspace) WHERE last_seq > snap_seq;

-- A document's compacted state (`Automerge::save`), holding every change of the document up
-- to log position `seq` (and maybe a few later ones), and exactly the changes whose hashes
-- `hashes` lists (32 bytes each, concatenated). A document the compactor could not build
-- has no row: its changes are sent from the log.
CREATE TABLE snapshots (
    doc_id      BLOB PRIMARY KEY REFERENCES documents(doc_id),
    seq         INTEGER NOT NULL,
    bytes       BLOB NOT NULL,
    hashes      BLOB NOT NULL
);
"#;

/// Format 3: when each device last connected, for `crm-relay stats`.
const MIGRATE_TO_3: &str = r#"
ALTER TABLE devices ADD COLUMN last_seen_at INTEGER;
"#;

/// Format 4: access control. Every change and document carries its record's scope
/// (`OWNER;ASSIGNEE;TEAMS`, see `values::encode_scope`), a change that moved its record
/// also the scope before (`prev_scope`), so the relay filters each log entry without a
/// lookup; `user` and `team` records carry their projected fields (`attrs`, the directory);
/// workspaces their role matrix overrides and access version; devices their user's record
/// id and when they were wiped. Existing rows get the scope their document's directory row
/// had (owner and teams; assignees were not recorded before).
const MIGRATE_TO_4: &str = r#"
ALTER TABLE documents ADD COLUMN scope TEXT;
ALTER TABLE documents ADD COLUMN attrs TEXT;
ALTER TABLE changes ADD COLUMN scope TEXT;
ALTER TABLE changes ADD COLUMN prev_scope TEXT;
ALTER TABLE workspaces ADD COLUMN matrix TEXT;
ALTER TABLE workspaces ADD COLUMN access_version INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN user_id TEXT;
ALTER TABLE devices ADD COLUMN wiped_at INTEGER;
UPDATE documents SET scope = CASE
    WHEN owner IS NULL AND teams IS NULL THEN NULL
    ELSE coalesce(owner, '') || ';;' || coalesce(teams, '') END;
UPDATE changes SET scope = (SELECT d.scope FROM documents d WHERE d.doc_id = changes.doc_id);
CREATE INDEX documents_directory ON documents(workspace) WHERE kind IN ('user', 'team');
"#;

/// Format 5: write authorization. Every document carries its shape (see
/// `crm_model::shape`): what the relay reads to decide who may write it and to derive its
/// scope from each change. Existing documents get theirs from their changes when the
/// database is opened ([`backfill_shapes`]).
const MIGRATE_TO_5: &str = r#"
ALTER TABLE documents ADD COLUMN shape TEXT;
"#;

/// `MIGRATIONS[i]` turns format `i + 1` into format `i + 2`.
const MIGRATIONS: &[&str] = &[MIGRATE_TO_2, MIGRATE_TO_3, MIGRATE_TO_4, MIGRATE_TO_5];
const _: () = assert!(MIGRATIONS.len() + 1 == FORMAT_VERSION as usize);

/// The relay's store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    relay_id: RelayId,
    /// Opened with [`SqliteStore::open_read_only`]: every connection is read-only.
    read_only: bool,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in `dir`, creating the directory and the database (with a new relay
    /// identity) if they do not exist.
    pub fn open_or_create(dir: &Path) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        Self::open_file(dir.join(FILE_NAME), None, true)
    }

    /// Opens an existing store in `dir`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(StoreError::Missing(dir.display().to_string()));
        }
        Self::open_file(path, None, true)
    }

    /// Creates a new, empty store in `dir` with a given identity (a migration's target keeps
    /// its source's identity). Refuses a directory that already holds a database.
    pub fn create_with_identity(dir: &Path, relay_id: RelayId) -> Result<SqliteStore, StoreError> {
        std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(FILE_NAME);
        if path.exists() {
            return Err(StoreError::NotEmpty(path.display().to_string()));
        }
        Self::open_file(path, Some(relay_id), true)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens an existing database file anywhere (a copy being restored), upgrading it to
    /// this build's format; an empty file is [`StoreError::Foreign`], not made a database.
    pub fn open_existing(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        Self::open_file(path.to_path_buf(), None, false)
    }

    /// Opens `path`; an empty database gets the schema (and `identity`, or a new one) if
    /// `create`, and is refused as foreign otherwise.
    fn open_file(
        path: PathBuf,
        identity: Option<RelayId>,
        create: bool,
    ) -> Result<SqliteStore, StoreError> {
        let mut conn = connect(&path, false)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| not_a_database(e, &path))?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let header = header(&tx, &path)?;
        if header == Header::Empty && !create {
            return Err(StoreError::Foreign(path.display().to_string()));
        }
        if header == Header::Empty {
            tx.execute_batch(SCHEMA)?;
            for migration in MIGRATIONS {
                tx.execute_batch(migration)?;
            }
            let relay_id = identity.unwrap_or_else(|| *Uuid::now_v7().as_bytes());
            tx.execute(
                "INSERT INTO relay_meta (id, relay_id, created_at) VALUES (1, ?1, ?2)",
                params![relay_id.as_slice(), now_ms()],
            )?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
        } else if let Header::Relay(version) = header
            && version < FORMAT_VERSION
        {
            migrate(&tx, version)?;
        }
        backfill_shapes(&tx)?;
        let relay_id = read_relay_id(&tx)?;
        tx.commit()?;
        Ok(SqliteStore {
            path,
            relay_id,
            read_only: false,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    fn write<T, E: From<rusqlite::Error>>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        // A panic inside `f` dropped its transaction, which rolled back: the connection is
        // fine even if the mutex is poisoned.
        let mut conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    }

    fn read_with<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let idle = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match idle {
            Some(conn) => conn,
            None => {
                let conn = connect(&self.path, self.read_only)?;
                // Readers mostly scan (the log after a cursor, a workspace's documents in
                // order) and may be many: a small cache each keeps the relay's memory the same
                // whatever the size of the database. The OS caches the file anyway.
                conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
                    .map_err(StoreError::from)?;
                conn
            }
        };
        // One read transaction: every query sees the same committed snapshot.
        let value = {
            let tx = conn.transaction().map_err(StoreError::from)?;
            let value = f(&tx)?;
            tx.commit().map_err(StoreError::from)?;
            value
        };
        let mut idle = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_READERS {
            idle.push(conn);
        }
        Ok(value)
    }
}

/// What a file's header says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Header {
    /// A new, empty database.
    Empty,
    /// A crm-relay database of this format (at most [`FORMAT_VERSION`]).
    Relay(i64),
}

/// Reads a database's header: a relay database of a format this build knows, or an empty
/// one; anything else is an error naming `path`.
fn header(conn: &Connection, path: &Path) -> Result<Header, StoreError> {
    let location = || path.display().to_string();
    let read = || -> rusqlite::Result<(i32, i64, i64)> {
        Ok((
            conn.pragma_query_value(None, "application_id", |r| r.get(0))?,
            conn.pragma_query_value(None, "user_version", |r| r.get(0))?,
            conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?,
        ))
    };
    let (app_id, version, tables) = read().map_err(|e| not_a_database(e, path))?;
    if app_id == 0 && version == 0 && tables == 0 {
        Ok(Header::Empty)
    } else if app_id != APPLICATION_ID {
        Err(StoreError::Foreign(location()))
    } else if version > FORMAT_VERSION {
        Err(StoreError::Newer {
            location: location(),
            found: version,
            supported: FORMAT_VERSION,
        })
    } else {
        Ok(Header::Relay(version))
    }
}

/// SQLite's "not a database" (some other file: SQLite says so at its first read) as
/// [`StoreError::Foreign`]; any other error as it is.
fn not_a_database(e: rusqlite::Error, path: &Path) -> StoreError {
    match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            StoreError::Foreign(path.display().to_string())
        }
        e => e.into(),
    }
}

fn read_relay_id(conn: &Connection) -> Result<RelayId, StoreError> {
    let relay_id: Vec<u8> =
        conn.query_row("SELECT relay_id FROM relay_meta WHERE id = 1", [], |r| {
            r.get(0)
        })?;
    RelayId::try_from(relay_id.as_slice())
        .map_err(|_| StoreError::Corrupt("relay_meta.relay_id is not 16 bytes".into()))
}

/// Brings a database of an older format to `FORMAT_VERSION`, inside the opening transaction:
/// a failure leaves it as it was.
fn migrate(tx: &rusqlite::Transaction<'_>, from: i64) -> Result<(), StoreError> {
    if from < 1 {
        return Err(StoreError::Corrupt(format!("format version {from}")));
    }
    let done = usize::try_from(from - 1).unwrap_or(0);
    for migration in MIGRATIONS.iter().skip(done) {
        tx.execute_batch(migration)?;
    }
    tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
    tracing::info!(from, to = FORMAT_VERSION, "relay database migrated");
    Ok(())
}

/// Gives every document without a shape (stored before format 5, or copied in by a
/// migration between backends) the shape of its changes, in log order.
pub(crate) fn backfill_shapes(tx: &rusqlite::Transaction<'_>) -> Result<usize, StoreError> {
    let docs: Vec<(WorkspaceId, Vec<u8>)> = tx
        .prepare("SELECT workspace, doc_id FROM documents WHERE shape IS NULL")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let mut changes = tx.prepare(
        "SELECT bytes FROM changes INDEXED BY changes_by_doc
         WHERE workspace = ?1 AND doc_id = ?2 ORDER BY seq",
    )?;
    let mut set = tx.prepare("UPDATE documents SET shape = ?2 WHERE doc_id = ?1")?;
    for (workspace, doc) in &docs {
        let bytes = changes
            .query_map(params![workspace, doc], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        set.execute(params![doc, crate::service::shape_of(&bytes).to_json()])?;
    }
    if !docs.is_empty() {
        tracing::info!(documents = docs.len(), "document shapes backfilled");
    }
    Ok(docs.len())
}

fn connect(path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let conn = if read_only {
        use rusqlite::OpenFlags;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        if files::wal_mode_without_wal(path) {
            // A reader of a WAL database makes its `-wal` and `-shm` files, and one that may
            // not write cannot remove them: a file nobody writes (a backup being checked or
            // restored) is read as it is instead, so nothing appears beside it.
            Connection::open_with_flags(
                files::immutable_uri(path),
                flags | OpenFlags::SQLITE_OPEN_URI,
            )?
        } else {
            Connection::open_with_flags(path, flags)?
        }
    } else {
        Connection::open(path)?
    };
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    if !read_only {
        conn.pragma_update(None, "synchronous", "FULL")?;
    }
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

const WORKSPACE_COLUMNS: &str = "id, name, created_at, head, matrix, access_version";

type WorkspaceRow = (WorkspaceId, String, i64, i64, Option<String>, i64);

fn workspace_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<WorkspaceRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn to_workspace(
    (id, name, created_at, head, matrix, access_version): WorkspaceRow,
) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        id,
        name,
        created_at: time(created_at)?,
        head: seq(head),
        matrix,
        access_version: seq(access_version),
    })
}

const DEVICE_COLUMNS: &str =
    "id, workspace, user, role, created_at, revoked_at, last_seen_at, user_id, wiped_at";

type DeviceRow = (
    DeviceId,
    WorkspaceId,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<i64>,
);

fn device_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
        row.get(7)?,
        row.get(8)?,
    ))
}

fn to_device(
    (id, workspace, user, role, created_at, revoked_at, last_seen_at, user_id, wiped_at): DeviceRow,
) -> Result<Device, StoreError> {
    Ok(Device {
        id,
        workspace,
        user,
        user_id: super::values::user_id(user_id.as_deref())?,
        role: super::values::role(&role)?,
        created_at: time(created_at)?,
        revoked_at: revoked_at.map(time).transpose()?,
        last_seen_at: last_seen_at.map(time).transpose()?,
        wiped_at: wiped_at.map(time).transpose()?,
    })
}

// The statements name their index: the relay never runs ANALYZE, and without statistics
// SQLite reads a document's changes through the log's primary key (the workspace's whole
// log) rather than `changes_by_doc`. A test checks every plan.

/// Stale documents, from the partial index that holds only them.
const STALE_SQL: &str = "
    SELECT workspace, doc_id FROM documents INDEXED BY documents_stale
    WHERE last_seq > snap_seq LIMIT ?1";
const COUNT_STALE_SQL: &str = "
    SELECT count(*) FROM documents INDEXED BY documents_stale
    WHERE last_seq > snap_seq";
const SNAPSHOT_SQL: &str = "SELECT seq, bytes, hashes FROM snapshots WHERE doc_id = ?1";
const PAGE_DOCS_SQL: &str = "
    SELECT d.doc_id, d.kind, d.scope
    FROM documents d INDEXED BY documents_by_workspace
    WHERE d.workspace = ?1 AND d.doc_id > ?2 AND d.first_seq <= ?3
    ORDER BY d.doc_id LIMIT ?4";
const DOC_CHANGES_SQL: &str = "
    SELECT seq, hash, bytes FROM changes INDEXED BY changes_by_doc
    WHERE workspace = ?1 AND doc_id = ?2 AND seq > ?3 AND seq <= ?4 ORDER BY seq";
const READ_LOG_SQL: &str = "
    SELECT seq, doc_id, hash, bytes, kind, scope, prev_scope FROM changes
    WHERE workspace = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";

fn snapshot_row(
    at: Option<i64>,
    bytes: Option<Vec<u8>>,
    hashes: Option<Vec<u8>>,
) -> Option<StoredSnapshot> {
    match (at, bytes, hashes) {
        (Some(at), Some(bytes), Some(hashes)) => Some(StoredSnapshot {
            seq: seq(at),
            bytes,
            hashes,
        }),
        _ => None,
    }
}

impl RelayStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn relay_id(&self) -> RelayId {
        self.relay_id
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.read_with(|tx| {
            tx.query_row("SELECT 1 FROM relay_meta WHERE id = 1", [], |_| Ok(()))
                .map_err(StoreError::from)
        })
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        self.read_with(
            |tx| Ok(tx.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))?),
        )
    }

    fn insert_workspace(&self, workspace: &Workspace) -> Result<bool, StoreError> {
        self.write(|tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM workspaces WHERE name = ?1)",
                [&workspace.name],
                |r| r.get(0),
            )?;
            if taken {
                return Ok(false);
            }
            tx.execute(
                "INSERT INTO workspaces (id, name, created_at, head) VALUES (?1, ?2, ?3, ?4)",
                params![
                    workspace.id,
                    workspace.name,
                    workspace.created_at.timestamp_millis(),
                    sql_seq(workspace.head)
                ],
            )?;
            Ok(true)
        })
    }

    fn workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([], workspace_row)?;
            rows.map(|r| to_workspace(r?)).collect()
        })
    }

    fn workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        self.read_with(|tx| {
            tx.query_row(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = ?1"),
                [id],
                workspace_row,
            )
            .optional()?
            .map(to_workspace)
            .transpose()
        })
    }

    fn workspace_named(&self, name: &str) -> Result<Option<Workspace>, StoreError> {
        self.read_with(|tx| {
            tx.query_row(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE name = ?1"),
                [name],
                workspace_row,
            )
            .optional()?
            .map(to_workspace)
            .transpose()
        })
    }

    fn insert_device(&self, device: &Device, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO devices
                 (id, workspace, user, role, token_hash, created_at, revoked_at, last_seen_at,
                  user_id, wiped_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    device.id,
                    device.workspace,
                    device.user,
                    device.role.as_str(),
                    token_hash.as_slice(),
                    device.created_at.timestamp_millis(),
                    device.revoked_at.map(|t| t.timestamp_millis()),
                    device.last_seen_at.map(|t| t.timestamp_millis()),
                    device.user_id.map(|u| u.to_string()),
                    device.wiped_at.map(|t| t.timestamp_millis()),
                ],
            )?;
            Ok(())
        })
    }

    fn devices(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Device>, StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices
                 WHERE ?1 IS NULL OR workspace = ?1 ORDER BY created_at, id"
            ))?;
            let rows = stmt.query_map([workspace], device_row)?;
            rows.map(|r| to_device(r?)).collect()
        })
    }

    fn device_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Device>, StoreError> {
        self.read_with(|tx| {
            tx.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = ?1"
            ))?
            .query_row([token_hash.as_slice()], device_row)
            .optional()?
            .map(to_device)
            .transpose()
        })
    }

    fn touch_device(&self, device: DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET last_seen_at = ?2 WHERE id = ?1",
                params![device, at.timestamp_millis()],
            )?;
            Ok(())
        })
    }

    fn revoke_device(
        &self,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2",
                params![at.timestamp_millis(), device],
            )?;
            tx.query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"),
                [device],
                device_row,
            )
            .optional()?
            .map(to_device)
            .transpose()
        })
    }

    fn revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<Device>, StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE revoked_at >= ?1"
            ))?;
            let rows = stmt.query_map([since.timestamp_millis()], device_row)?;
            rows.map(|r| to_device(r?)).collect()
        })
    }

    fn wipe_device(
        &self,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, ?1),
                 wiped_at = coalesce(wiped_at, ?1) WHERE id = ?2",
                params![at.timestamp_millis(), device],
            )?;
            tx.query_row(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"),
                [device],
                device_row,
            )
            .optional()?
            .map(to_device)
            .transpose()
        })
    }

    fn directory(&self, workspace: WorkspaceId) -> Result<Option<DirectoryRows>, StoreError> {
        self.read_with(|tx| {
            let found: Option<(Option<String>, i64)> = tx
                .prepare_cached("SELECT matrix, access_version FROM workspaces WHERE id = ?1")?
                .query_row([workspace], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let Some((matrix, version)) = found else {
                return Ok(None);
            };
            let mut stmt = tx.prepare_cached(
                "SELECT doc_id, kind, attrs FROM documents INDEXED BY documents_directory
                 WHERE workspace = ?1 AND kind IN ('user', 'team') AND attrs IS NOT NULL",
            )?;
            let mut rows = stmt.query([workspace])?;
            let mut entries = Vec::new();
            while let Some(row) = rows.next()? {
                entries.push((
                    doc_id(&row.get::<_, Vec<u8>>(0)?)?,
                    row.get(1)?,
                    row.get(2)?,
                ));
            }
            Ok(Some(DirectoryRows {
                entries,
                matrix,
                version: seq(version),
            }))
        })
    }

    fn access_versions(
        &self,
        workspaces: &[WorkspaceId],
    ) -> Result<Vec<(WorkspaceId, u64)>, StoreError> {
        self.read_with(|tx| {
            let mut stmt =
                tx.prepare_cached("SELECT access_version FROM workspaces WHERE id = ?1")?;
            let mut out = Vec::with_capacity(workspaces.len());
            for ws in workspaces {
                if let Some(v) = stmt.query_row([ws], |r| r.get::<_, i64>(0)).optional()? {
                    out.push((*ws, seq(v)));
                }
            }
            Ok(out)
        })
    }

    fn set_matrix(&self, workspace: WorkspaceId, overrides: &str) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE workspaces SET matrix = ?2, access_version = access_version + 1
                 WHERE id = ?1",
                params![workspace, overrides],
            )?;
            Ok(())
        })
    }

    fn head(&self, workspace: WorkspaceId) -> Result<Option<u64>, StoreError> {
        self.read_with(|tx| {
            let head: Option<i64> = tx
                .prepare_cached("SELECT head FROM workspaces WHERE id = ?1")?
                .query_row([workspace], |r| r.get(0))
                .optional()?;
            Ok(head.map(seq))
        })
    }

    fn hash_at(&self, workspace: WorkspaceId, at: u64) -> Result<Option<Hash>, StoreError> {
        self.read_with(|tx| {
            let found: Option<Vec<u8>> = tx
                .prepare_cached("SELECT hash FROM changes WHERE workspace = ?1 AND seq = ?2")?
                .query_row(params![workspace, sql_seq(at)], |r| r.get(0))
                .optional()?;
            found.map(|h| hash(&h)).transpose()
        })
    }

    fn read_log(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(LogRow) -> bool,
    ) -> Result<u64, StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare_cached(READ_LOG_SQL)?;
            let mut rows = stmt.query(params![workspace, sql_seq(after), sql_limit(limit)])?;
            while let Some(row) = rows.next()? {
                let entry = LogRow {
                    seq: seq(row.get(0)?),
                    doc_id: doc_id(&row.get::<_, Vec<u8>>(1)?)?,
                    hash: hash(&row.get::<_, Vec<u8>>(2)?)?,
                    bytes: row.get(3)?,
                    kind: row.get(4)?,
                    scope: row.get(5)?,
                    prev_scope: row.get(6)?,
                };
                if !each(entry) {
                    break;
                }
            }
            drop(rows);
            let head: Option<i64> = tx
                .prepare_cached("SELECT head FROM workspaces WHERE id = ?1")?
                .query_row([workspace], |r| r.get(0))
                .optional()?;
            head.map(seq)
                .ok_or_else(|| StoreError::Corrupt(format!("no workspace {workspace}")))
        })
    }

    fn append(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        docs: &[DocId],
        hashes: &[Hash],
        plan: &mut dyn FnMut(Known) -> Result<Append, PushError>,
    ) -> Result<(), PushError> {
        self.write(|tx| {
            let device_active = tx
                .prepare_cached(
                    "SELECT revoked_at IS NULL FROM devices WHERE id = ?1 AND workspace = ?2",
                )?
                .query_row(params![device, workspace], |r| r.get::<_, bool>(0))
                .optional()?
                .unwrap_or(false);
            let (head, access_version): (i64, i64) = tx
                .prepare_cached("SELECT head, access_version FROM workspaces WHERE id = ?1")?
                .query_row([workspace], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?
                .ok_or_else(|| StoreError::Corrupt(format!("workspace {workspace} vanished")))?;
            let mut known = Known {
                device_active,
                head: seq(head),
                access_version: seq(access_version),
                ..Known::default()
            };
            let mut find_doc = tx.prepare_cached(
                "SELECT workspace, kind, scope, shape FROM documents WHERE doc_id = ?1",
            )?;
            let mut doc_changes = tx.prepare_cached(
                "SELECT bytes FROM changes INDEXED BY changes_by_doc
                 WHERE workspace = ?1 AND doc_id = ?2 ORDER BY seq",
            )?;
            for doc in docs {
                type Found = (WorkspaceId, String, Option<String>, Option<String>);
                let found: Option<Found> = find_doc
                    .query_row([doc.as_slice()], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })
                    .optional()?;
                if let Some((found_in, kind, scope, shape)) = found {
                    let directory = kind == "user" || kind == "team";
                    if found_in == workspace && (directory || shape.is_none()) {
                        let bytes = doc_changes
                            .query_map(params![workspace, doc.as_slice()], |r| r.get(0))?
                            .collect::<Result<Vec<Vec<u8>>, _>>()?;
                        if shape.is_none() {
                            known.unshaped.insert(*doc, bytes.clone());
                        }
                        if directory {
                            known.directory.insert(*doc, bytes);
                        }
                    }
                    known.docs.insert(
                        *doc,
                        KnownDocument {
                            workspace: found_in,
                            kind,
                            scope,
                            shape,
                        },
                    );
                }
            }
            let mut find_hash = tx.prepare_cached(
                "SELECT seq, doc_id FROM changes WHERE workspace = ?1 AND hash = ?2",
            )?;
            for h in hashes {
                let found: Option<(i64, Vec<u8>)> = find_hash
                    .query_row(params![workspace, h.as_slice()], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()?;
                if let Some((at, doc)) = found {
                    let change = KnownChange {
                        seq: seq(at),
                        doc_id: doc_id(&doc)?,
                    };
                    known.changes.insert(*h, change);
                }
            }
            let append = plan(known)?;
            if append.is_empty() {
                return Ok(());
            }
            let mut insert_doc = tx.prepare_cached(
                "INSERT INTO documents (doc_id, workspace, kind, first_seq, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for d in &append.documents {
                insert_doc.execute(params![
                    d.doc_id.as_slice(),
                    workspace,
                    d.kind,
                    sql_seq(d.first_seq),
                    d.created_by
                ])?;
            }
            let mut insert_change = tx.prepare_cached(
                "INSERT INTO changes
                 (workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes, scope,
                  prev_scope)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?;
            // Per new change: the document's latest scope and latest position (which makes it
            // stale for the compactor).
            let mut set_scope = tx.prepare_cached(
                "UPDATE documents SET owner = ?2, teams = ?3, last_seq = ?4, scope = ?5,
                 shape = ?6 WHERE doc_id = ?1",
            )?;
            for c in &append.changes {
                insert_change.execute(params![
                    workspace,
                    sql_seq(c.seq),
                    c.hash.as_slice(),
                    c.doc_id.as_slice(),
                    c.kind,
                    c.deps,
                    c.author,
                    c.arrived_at.timestamp_millis(),
                    c.bytes,
                    c.scope,
                    c.prev_scope,
                ])?;
                set_scope.execute(params![
                    c.doc_id.as_slice(),
                    c.owner,
                    c.teams,
                    sql_seq(c.seq),
                    c.scope,
                    c.shape,
                ])?;
            }
            if !append.directory.is_empty() {
                let mut set_attrs =
                    tx.prepare_cached("UPDATE documents SET attrs = ?2 WHERE doc_id = ?1")?;
                for d in &append.directory {
                    set_attrs.execute(params![d.doc_id.as_slice(), d.attrs])?;
                }
                tx.execute(
                    "UPDATE workspaces SET access_version = access_version + 1 WHERE id = ?1",
                    [workspace],
                )?;
            }
            tx.execute(
                "UPDATE workspaces SET head = ?1 WHERE id = ?2",
                params![sql_seq(append.head), workspace],
            )?;
            Ok(())
        })
    }

    fn stale(&self, limit: usize) -> Result<Vec<(WorkspaceId, DocId)>, StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare_cached(STALE_SQL)?;
            let rows = stmt.query_map([sql_limit(limit)], |r| {
                Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.map(|r| {
                let (workspace, doc) = r?;
                Ok((workspace, doc_id(&doc)?))
            })
            .collect()
        })
    }

    fn count_stale(&self) -> Result<u64, StoreError> {
        self.read_with(|tx| {
            let n: i64 = tx.query_row(COUNT_STALE_SQL, [], |r| r.get(0))?;
            Ok(seq(n))
        })
    }

    fn snapshot(&self, doc: DocId) -> Result<Option<StoredSnapshot>, StoreError> {
        self.read_with(|tx| {
            Ok(tx
                .prepare_cached(SNAPSHOT_SQL)?
                .query_row([doc.as_slice()], |r| {
                    Ok(StoredSnapshot {
                        seq: seq(r.get(0)?),
                        bytes: r.get(1)?,
                        hashes: r.get(2)?,
                    })
                })
                .optional()?)
        })
    }

    fn snapshots(
        &self,
        docs: &[DocId],
    ) -> Result<std::collections::HashMap<DocId, StoredSnapshot>, StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare_cached(SNAPSHOT_SQL)?;
            let mut found = std::collections::HashMap::new();
            for doc in docs {
                let snapshot = stmt
                    .query_row([doc.as_slice()], |r| {
                        Ok(StoredSnapshot {
                            seq: seq(r.get(0)?),
                            bytes: r.get(1)?,
                            hashes: r.get(2)?,
                        })
                    })
                    .optional()?;
                if let Some(snapshot) = snapshot {
                    found.insert(*doc, snapshot);
                }
            }
            Ok(found)
        })
    }

    fn write_snapshots(&self, writes: &[SnapshotWrite]) -> Result<usize, StoreError> {
        self.write(|tx| {
            let mut current =
                tx.prepare_cached("SELECT snap_seq FROM documents WHERE doc_id = ?1")?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO snapshots (doc_id, seq, bytes, hashes) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (doc_id) DO UPDATE
                 SET seq = excluded.seq, bytes = excluded.bytes, hashes = excluded.hashes",
            )?;
            let mut delete = tx.prepare_cached("DELETE FROM snapshots WHERE doc_id = ?1")?;
            let mut mark =
                tx.prepare_cached("UPDATE documents SET snap_seq = ?2 WHERE doc_id = ?1")?;
            let mut stored = 0;
            for w in writes {
                let doc = w.doc_id.as_slice();
                let at: Option<i64> = current.query_row([doc], |r| r.get(0)).optional()?;
                // Another compaction got as far meanwhile: keep what it stored.
                if at.is_none_or(|at| seq(at) >= w.through) {
                    continue;
                }
                match &w.snapshot {
                    Some(s) => {
                        upsert.execute(params![doc, sql_seq(s.seq), s.bytes, s.hashes])?;
                    }
                    None => {
                        delete.execute([doc])?;
                    }
                }
                mark.execute(params![doc, sql_seq(w.through)])?;
                stored += 1;
            }
            Ok(stored)
        })
    }

    fn compaction_lease(&self) -> Result<bool, StoreError> {
        // One process serves a SQLite database.
        Ok(true)
    }

    fn heads(&self) -> Result<Option<Box<dyn super::HeadFeed>>, StoreError> {
        Ok(None)
    }

    fn pool_state(&self) -> Option<super::PoolState> {
        None
    }

    fn documents(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        through: u64,
        limit: usize,
        wanted: &mut dyn FnMut(&str, Option<&str>) -> bool,
        each: &mut dyn FnMut(DocId, bool, Option<StoredSnapshot>) -> bool,
    ) -> Result<(), StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare_cached(PAGE_DOCS_SQL)?;
            let mut snap = tx.prepare_cached(SNAPSHOT_SQL)?;
            // Every 16-byte id sorts after the empty blob.
            let after = after.map_or_else(Vec::new, |a| a.to_vec());
            let mut rows = stmt.query(params![
                workspace,
                after,
                sql_seq(through),
                sql_limit(limit)
            ])?;
            while let Some(row) = rows.next()? {
                let raw: Vec<u8> = row.get(0)?;
                let doc = doc_id(&raw)?;
                let kind: String = row.get(1)?;
                let scope: Option<String> = row.get(2)?;
                let keep = wanted(&kind, scope.as_deref());
                let snapshot = if keep {
                    snap.query_row([raw.as_slice()], |r| {
                        Ok(snapshot_row(r.get(0)?, r.get(1)?, r.get(2)?))
                    })
                    .optional()?
                    .flatten()
                } else {
                    None
                };
                if !each(doc, keep, snapshot) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn document_scope(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        self.read_with(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT kind, scope FROM documents WHERE doc_id = ?1 AND workspace = ?2",
                )?
                .query_row(params![doc.as_slice(), workspace], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()?)
        })
    }

    fn document_changes(
        &self,
        workspace: WorkspaceId,
        docs: &[(DocId, u64)],
        through: Option<u64>,
        each: &mut dyn FnMut(DocChange) -> bool,
    ) -> Result<(), StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare_cached(DOC_CHANGES_SQL)?;
            let through = through.map_or(i64::MAX, sql_seq);
            for (doc, after) in docs {
                let mut rows =
                    stmt.query(params![workspace, doc.as_slice(), sql_seq(*after), through])?;
                while let Some(row) = rows.next()? {
                    let change = DocChange {
                        doc_id: *doc,
                        seq: seq(row.get(0)?),
                        hash: hash(&row.get::<_, Vec<u8>>(1)?)?,
                        bytes: row.get(2)?,
                    };
                    if !each(change) {
                        return Ok(());
                    }
                }
            }
            Ok(())
        })
    }

    fn log_extent(&self, workspace: WorkspaceId) -> Result<Option<LogExtent>, StoreError> {
        self.read_with(|tx| rows::log_extent(tx, workspace))
    }

    fn changes(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(ChangeRow) -> bool,
    ) -> Result<(), StoreError> {
        self.read_with(|tx| rows::changes(tx, workspace, after, limit, each))
    }

    fn document_rows(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        limit: usize,
        each: &mut dyn FnMut(DocumentRow) -> bool,
    ) -> Result<(), StoreError> {
        self.read_with(|tx| rows::document_rows(tx, workspace, after, limit, each))
    }

    fn document_log(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
        each: &mut dyn FnMut(u64, Hash) -> bool,
    ) -> Result<(), StoreError> {
        self.read_with(|tx| rows::document_log(tx, workspace, doc, each))
    }

    fn count_documents(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        self.read_with(|tx| rows::count_documents(tx, workspace))
    }

    fn size(&self) -> Result<u64, StoreError> {
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        let mut total = 0;
        for file in [self.path.clone(), PathBuf::from(wal)] {
            match std::fs::metadata(&file) {
                Ok(meta) => total += meta.len(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(StoreError::File { path: file, source }),
            }
        }
        Ok(total)
    }

    fn export(&self, each: &mut dyn FnMut(Row) -> bool) -> Result<(), StoreError> {
        self.read_with(|tx| rows::export(tx, each))
    }

    fn import(&self, batch: &[Row]) -> Result<(), StoreError> {
        self.write(|tx| rows::import(tx, batch))
    }
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable as _;
    use automerge::{AutoCommit, ROOT};

    use super::*;
    use crate::service::Relay;

    /// A change of a new document, and its hash.
    fn change(doc: &mut AutoCommit, value: &str) -> (Vec<u8>, Hash) {
        doc.put(ROOT, "name", value).expect("put");
        doc.commit();
        let change = doc.get_last_local_change().expect("a change");
        (change.raw_bytes().to_vec(), change.hash().0)
    }

    fn schema(path: &Path) -> Vec<(String, String, Option<String>)> {
        let conn = Connection::open(path).expect("open");
        let mut stmt = conn
            .prepare("SELECT type, name, sql FROM sqlite_schema ORDER BY type, name")
            .expect("prepare");
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// A document and the hashes of its changes, in log order.
    type DocHashes = ([u8; 16], Vec<Hash>);

    /// A format-1 database written with format 1's statements, as a relay of that format
    /// left it: one workspace with two documents and three changes.
    fn write_v1(path: &Path) -> (WorkspaceId, DeviceId, Vec<DocHashes>) {
        let conn = Connection::open(path).expect("open");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("wal");
        conn.execute_batch(SCHEMA).expect("format 1 schema");
        conn.execute(
            "INSERT INTO relay_meta (id, relay_id, created_at) VALUES (1, ?1, 0)",
            [Uuid::now_v7().as_bytes().as_slice()],
        )
        .expect("meta");
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .expect("application id");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        let ws = WorkspaceId::new();
        let device = DeviceId::new();
        conn.execute(
            "INSERT INTO workspaces (id, name, created_at, head) VALUES (?1, 'acme', 0, 3)",
            [ws],
        )
        .expect("workspace");
        conn.execute(
            "INSERT INTO devices (id, workspace, user, role, token_hash, created_at)
             VALUES (?1, ?2, 'alice', 'admin', x'00', 0)",
            params![device, ws],
        )
        .expect("device");
        let (a, b) = (*Uuid::now_v7().as_bytes(), *Uuid::now_v7().as_bytes());
        let (mut doc_a, mut doc_b) = (AutoCommit::new(), AutoCommit::new());
        let log = [
            (a, change(&mut doc_a, "A")),
            (b, change(&mut doc_b, "B")),
            (a, change(&mut doc_a, "A2")),
        ];
        for (i, (doc, (bytes, hash))) in log.iter().enumerate() {
            let at = i64::try_from(i).expect("small") + 1;
            if at < 3 {
                conn.execute(
                    "INSERT INTO documents (doc_id, workspace, kind, first_seq, created_by)
                     VALUES (?1, ?2, 'account', ?3, ?4)",
                    params![doc.as_slice(), ws, at, device],
                )
                .expect("document");
            }
            conn.execute(
                "INSERT INTO changes
                 (workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes)
                 VALUES (?1, ?2, ?3, ?4, 'account', x'', ?5, 0, ?6)",
                params![ws, at, hash.as_slice(), doc.as_slice(), device, bytes],
            )
            .expect("change");
        }
        let hashes = |doc: [u8; 16]| {
            log.iter()
                .filter(|(d, _)| *d == doc)
                .map(|(_, (_, h))| *h)
                .collect()
        };
        (ws, device, vec![(a, hashes(a)), (b, hashes(b))])
    }

    #[test]
    fn a_format_1_database_is_migrated_when_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (ws, device, docs) = write_v1(&dir.path().join(FILE_NAME));
        let store = Relay::new(std::sync::Arc::new(
            SqliteStore::open(dir.path()).expect("a format 1 database opens"),
        ));

        let conn = Connection::open(dir.path().join(FILE_NAME)).expect("open");
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("version");
        assert_eq!(version, FORMAT_VERSION);
        let positions: Vec<(Vec<u8>, i64, i64)> = conn
            .prepare("SELECT doc_id, last_seq, snap_seq FROM documents ORDER BY first_seq")
            .expect("prepare")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows");
        assert_eq!(
            positions,
            [(docs[0].0.to_vec(), 3, 0), (docs[1].0.to_vec(), 2, 0)],
            "last_seq is backfilled from the log"
        );

        // Everything works on it: compaction, pages, pushes.
        assert_eq!(store.stale_documents().expect("count"), 2);
        assert_eq!(store.compact(10).expect("compact"), 2);
        let page = store
            .documents_page(ws, None, 3, usize::MAX, None)
            .expect("page");
        assert_eq!(page.docs.len(), 2);
        for state in &page.docs {
            let (_, hashes) = docs
                .iter()
                .find(|(id, _)| *id == state.doc_id)
                .expect("known");
            assert_eq!(&state.hashes, hashes);
            let loaded = automerge::Automerge::load(&state.snapshot).expect("loads");
            assert_eq!(
                loaded.get_heads().last().map(|h| h.0),
                hashes.last().copied()
            );
        }
        assert_eq!(store.head(ws).expect("head"), (3, docs[0].1[1]));
        let mut more = AutoCommit::new();
        let doc_id = *Uuid::now_v7().as_bytes();
        more.put(ROOT, "id", Uuid::from_bytes(doc_id).to_string())
            .expect("put");
        more.put(ROOT, "kind", "account").expect("put");
        let (bytes, _) = change(&mut more, "C");
        let envelope = crm_sync::Envelope {
            doc_id,
            kind: "account".into(),
            scope: Default::default(),
            bytes,
        };
        let stored = store
            .store_batch(ws, &crate::service::Pusher::admin(device), &[envelope])
            .expect("a push");
        assert_eq!(stored.seqs, [4]);
        assert_eq!(store.stale_documents().expect("count"), 1);
        drop(store);

        // The migrated schema is the one a new database gets, and it opens again as is.
        let fresh = tempfile::tempdir().expect("tempdir");
        drop(SqliteStore::open_or_create(fresh.path()).expect("a new store"));
        assert_eq!(
            schema(&dir.path().join(FILE_NAME)),
            schema(&fresh.path().join(FILE_NAME))
        );
        let store = Relay::new(std::sync::Arc::new(
            SqliteStore::open(dir.path()).expect("reopens"),
        ));
        assert_eq!(store.head(ws).expect("head").0, 4);
    }

    #[test]
    fn snapshot_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SqliteStore::open_or_create(dir.path()).expect("store"));
        let conn = Connection::open(dir.path().join(FILE_NAME)).expect("open");
        for (sql, index) in [
            (STALE_SQL, "documents_stale"),
            (COUNT_STALE_SQL, "documents_stale"),
            (DOC_CHANGES_SQL, "changes_by_doc"),
            (PAGE_DOCS_SQL, "documents_by_workspace"),
            // The log read keeps its primary key beside the new index of changes.
            (READ_LOG_SQL, "sqlite_autoindex_changes_1"),
            (rows::CHANGE_ROWS_SQL, "sqlite_autoindex_changes_1"),
            (rows::DOCUMENT_ROWS_SQL, "documents_by_workspace"),
            (rows::DOCUMENT_LOG_SQL, "changes_by_doc"),
            (rows::COUNT_DOCUMENTS_SQL, "documents_by_workspace"),
        ] {
            let mut stmt = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("prepare");
            let nulls = std::iter::repeat_n(rusqlite::types::Null, stmt.parameter_count());
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(nulls), |r| r.get(3))
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            let plan = plan.join("; ");
            assert!(plan.contains(index), "{sql}: {plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
            // Only the partial index of stale documents is scanned whole.
            if !sql.contains("documents_stale") {
                assert!(!plan.contains("SCAN"), "{sql}: {plan}");
            }
        }
    }
}
