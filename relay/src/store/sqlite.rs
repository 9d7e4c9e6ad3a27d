//! [`SqliteStore`]: the relay's store in one SQLite file (`relay.db` in the data directory).
//!
//! One writer connection behind a mutex: SQLite has one writer at a time anyway, and every
//! write is a short `BEGIN IMMEDIATE` transaction, so sequence numbers are allocated under the
//! write lock and become visible in order, all at once, at commit. Readers take a connection
//! from a small pool; in WAL mode they never wait for the writer and see committed data only.
//! `synchronous=FULL`: an acknowledged batch survives a power cut, not only a crash.

mod snapshots;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use crm_sync::relay::{Authorized, LogRead};
use crm_sync::{Cursor, DocId, Entry, Envelope, Hash, MAX_BATCH_CHANGES, MAX_FRAME_BYTES, RelayId};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use uuid::Uuid;

use super::{
    AdminError, AuthError, Authenticated, Device, DocumentsPage, MAX_NAME_CHARS, NewDevice,
    PushError, RelayStore, StoreError, StoredBatch, Workspace,
};
use crate::ids::{DeviceId, Role, WorkspaceId};
use crate::token::Token;
use crate::validate;

/// The database file in the data directory.
pub const FILE_NAME: &str = "relay.db";
/// Marks the file as a crm-relay database ("crmr").
const APPLICATION_ID: i32 = 0x6372_6d72;
/// The schema this build writes.
const FORMAT_VERSION: i64 = 2;
/// Page cache of each reader connection (SQLite's `cache_size`, negative: KiB).
const READER_CACHE_KIB: i64 = -256;
/// Idle reader connections kept open (as many as the server runs blocking threads).
const MAX_IDLE_READERS: usize = 32;
/// Change bytes per `Changes` frame: the frame limit less room for the per-entry envelope
/// (at most ~30 bytes times `MAX_BATCH_CHANGES`) and the frame's own fields.
const READ_BUDGET: usize = MAX_FRAME_BYTES - (64 << 10);
/// Counted against `READ_BUDGET` for each entry besides its change bytes.
const ENTRY_OVERHEAD: usize = 40;

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

/// `MIGRATIONS[i]` turns format `i + 1` into format `i + 2`.
const MIGRATIONS: &[&str] = &[MIGRATE_TO_2];
const _: () = assert!(MIGRATIONS.len() + 1 == FORMAT_VERSION as usize);

/// The relay's store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    relay_id: RelayId,
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
        Self::open_file(dir.join(FILE_NAME))
    }

    /// Opens an existing store in `dir`.
    pub fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
        let path = dir.join(FILE_NAME);
        if !path.is_file() {
            return Err(StoreError::Missing(dir.to_path_buf()));
        }
        Self::open_file(path)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open_file(path: PathBuf) -> Result<SqliteStore, StoreError> {
        let mut conn = connect(&path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let app_id: i32 = tx.pragma_query_value(None, "application_id", |r| r.get(0))?;
        let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let tables: i64 = tx.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        if app_id == 0 && version == 0 && tables == 0 {
            tx.execute_batch(SCHEMA)?;
            for migration in MIGRATIONS {
                tx.execute_batch(migration)?;
            }
            tx.execute(
                "INSERT INTO relay_meta (id, relay_id, created_at) VALUES (1, ?1, ?2)",
                params![Uuid::now_v7().as_bytes().as_slice(), now_ms()],
            )?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
        } else if app_id != APPLICATION_ID {
            return Err(StoreError::Foreign(path));
        } else if version > FORMAT_VERSION {
            return Err(StoreError::Newer {
                path,
                found: version,
                supported: FORMAT_VERSION,
            });
        } else if version < FORMAT_VERSION {
            migrate(&tx, version)?;
        }
        let relay_id: Vec<u8> =
            tx.query_row("SELECT relay_id FROM relay_meta WHERE id = 1", [], |r| {
                r.get(0)
            })?;
        tx.commit()?;
        let relay_id = RelayId::try_from(relay_id.as_slice())
            .map_err(|_| StoreError::Corrupt("relay_meta.relay_id is not 16 bytes".into()))?;
        Ok(SqliteStore {
            path,
            relay_id,
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
                let conn = connect(&self.path)?;
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

fn connect(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("time {ms}")))
}

fn seq(value: i64) -> u64 {
    // Sequence numbers are written from u64 counters that start at 0 and never go near
    // i64::MAX; a negative one cannot be read back.
    u64::try_from(value).unwrap_or(0)
}

fn sql_seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn hash(bytes: &[u8]) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| StoreError::Corrupt("a change hash is not 32 bytes".into()))
}

fn valid_name(what: &'static str, value: &str) -> Result<String, AdminError> {
    let trimmed = value.trim();
    let invalid = |expected: &str| AdminError::InvalidInput {
        what,
        value: value.to_string(),
        expected: expected.to_string(),
    };
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(&format!("at most {MAX_NAME_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid("no control characters"));
    }
    Ok(trimmed.to_string())
}

fn workspace_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(WorkspaceId, String, i64, i64)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
}

fn to_workspace(
    (id, name, created_at, head): (WorkspaceId, String, i64, i64),
) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        id,
        name,
        created_at: time(created_at)?,
        head: seq(head),
    })
}

const DEVICE_COLUMNS: &str = "id, workspace, user, role, created_at, revoked_at";

type DeviceRow = (DeviceId, WorkspaceId, String, Role, i64, Option<i64>);

fn device_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
    ))
}

fn to_device(
    (id, workspace, user, role, created_at, revoked_at): DeviceRow,
) -> Result<Device, StoreError> {
    Ok(Device {
        id,
        workspace,
        user,
        role,
        created_at: time(created_at)?,
        revoked_at: revoked_at.map(time).transpose()?,
    })
}

/// [`validate::Known`] over the storing transaction: the log's index of change hashes.
struct LogLookup<'a, 'tx> {
    workspace: WorkspaceId,
    find: rusqlite::CachedStatement<'tx>,
    _tx: std::marker::PhantomData<&'a ()>,
}

impl validate::Known for LogLookup<'_, '_> {
    fn document_of_change(&mut self, hash: &Hash) -> Result<Option<DocId>, PushError> {
        let doc: Option<Vec<u8>> = self
            .find
            .query_row(params![self.workspace, hash.as_slice()], |r| r.get(0))
            .optional()?;
        doc.map(|d| {
            DocId::try_from(d.as_slice())
                .map_err(|_| StoreError::Corrupt("a document id is not 16 bytes".into()).into())
        })
        .transpose()
    }
}

impl RelayStore for SqliteStore {
    fn relay_id(&self) -> RelayId {
        self.relay_id
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.read_with(|tx| {
            tx.query_row("SELECT 1 FROM relay_meta WHERE id = 1", [], |_| Ok(()))
                .map_err(StoreError::from)
        })
    }

    fn authenticate(
        &self,
        workspace: &str,
        token: &str,
        cursor: Option<&Cursor>,
    ) -> Result<Authenticated, AuthError> {
        let unknown = || AuthError::UnknownWorkspace(workspace.chars().take(64).collect());
        let ws: WorkspaceId = workspace.parse().map_err(|_| unknown())?;
        self.read_with(|tx| {
            let head: i64 = tx
                .query_row("SELECT head FROM workspaces WHERE id = ?1", [ws], |r| {
                    r.get(0)
                })
                .optional()?
                .ok_or_else(unknown)?;
            // Something not shaped like a token is refused without a lookup.
            if Token::workspace_of(token).is_none() {
                return Err(AuthError::Unauthenticated);
            }
            let device: Option<(DeviceId, WorkspaceId, String, Role, Option<i64>)> = tx
                .query_row(
                    "SELECT id, workspace, user, role, revoked_at FROM devices
                     WHERE token_hash = ?1",
                    [Token::hash_of(token).as_slice()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?;
            let Some((device, device_ws, user, role, revoked_at)) = device else {
                return Err(AuthError::Unauthenticated);
            };
            // A real token, of another workspace: it never opens this one.
            if device_ws != ws {
                return Err(AuthError::OtherWorkspace);
            }
            if revoked_at.is_some() {
                return Err(AuthError::Revoked);
            }
            // Position 0 names no change, so it proves nothing about this log: start over.
            let cursor_known = match cursor {
                Some(c) if c.seq > 0 => {
                    let at: Option<Vec<u8>> = tx
                        .query_row(
                            "SELECT hash FROM changes WHERE workspace = ?1 AND seq = ?2",
                            params![ws, sql_seq(c.seq)],
                            |r| r.get(0),
                        )
                        .optional()?;
                    at.is_some_and(|h| h == c.hash)
                }
                _ => false,
            };
            Ok(Authenticated {
                workspace: ws,
                device,
                user,
                role,
                authorized: Authorized {
                    head: seq(head),
                    cursor_known,
                },
            })
        })
    }

    fn store_batch(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        changes: &[Envelope],
    ) -> Result<StoredBatch, PushError> {
        // Intact changes only, before touching the database (see `validate`).
        let checked = validate::parse(changes)?;
        let arrived_at = now_ms();
        self.write(|tx| {
            let revoked: Option<Option<i64>> = tx
                .query_row(
                    "SELECT revoked_at FROM devices WHERE id = ?1 AND workspace = ?2",
                    params![device, workspace],
                    |r| r.get(0),
                )
                .optional()?;
            if !matches!(revoked, Some(None)) {
                return Err(PushError::Revoked);
            }
            let mut head: u64 = tx
                .query_row(
                    "SELECT head FROM workspaces WHERE id = ?1",
                    [workspace],
                    |r| r.get(0).map(seq),
                )
                .optional()?
                .ok_or_else(|| StoreError::Corrupt(format!("workspace {workspace} vanished")))?;
            let mut find_doc =
                tx.prepare_cached("SELECT workspace, kind FROM documents WHERE doc_id = ?1")?;
            let mut find_hash =
                tx.prepare_cached("SELECT seq FROM changes WHERE workspace = ?1 AND hash = ?2")?;
            let mut insert_doc = tx.prepare_cached(
                "INSERT INTO documents (doc_id, workspace, kind, first_seq, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            // Per new change: the document's latest scope and latest position (which makes it
            // stale for the compactor).
            let mut set_scope = tx.prepare_cached(
                "UPDATE documents SET owner = ?2, teams = ?3, last_seq = ?4 WHERE doc_id = ?1",
            )?;
            let mut insert_change = tx.prepare_cached(
                "INSERT INTO changes
                 (workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut log = LogLookup {
                workspace,
                find: tx.prepare_cached(
                    "SELECT doc_id FROM changes WHERE workspace = ?1 AND hash = ?2",
                )?,
                _tx: std::marker::PhantomData,
            };
            let mut rule = validate::Batch::default();
            // Documents of this batch already checked or inserted.
            let mut docs: HashMap<DocId, &str> = HashMap::new();
            let mut seqs = Vec::with_capacity(checked.len());
            let mut duplicates = 0;
            // The new entries, as a read of them would return them (see `StoredBatch::tail`).
            let mut appended: Vec<Entry> = Vec::new();
            let mut appended_bytes = 0;
            let mut last_hash = [0; 32];
            for (index, c) in checked.iter().enumerate() {
                let doc = c.envelope.doc_id;
                let kind = c.envelope.kind.as_str();
                let known_kind = match docs.get(&doc) {
                    Some(k) => Some((*k).to_string()),
                    None => {
                        let found: Option<(WorkspaceId, String)> = find_doc
                            .query_row([doc.as_slice()], |r| Ok((r.get(0)?, r.get(1)?)))
                            .optional()?;
                        match found {
                            Some((owner, _)) if owner != workspace => {
                                return Err(PushError::WrongWorkspace {
                                    index,
                                    doc: Uuid::from_bytes(doc),
                                });
                            }
                            Some((_, k)) => Some(k),
                            None => None,
                        }
                    }
                };
                if let Some(known) = &known_kind
                    && known != kind
                {
                    return Err(PushError::KindMismatch {
                        index,
                        doc: Uuid::from_bytes(doc),
                        known: known.clone(),
                        sent: kind.to_string(),
                    });
                }
                let existing: Option<i64> = find_hash
                    .query_row(params![workspace, c.hash.as_slice()], |r| r.get(0))
                    .optional()?;
                if let Some(existing) = existing {
                    seqs.push(seq(existing));
                    duplicates += 1;
                    continue;
                }
                rule.check(index, c, known_kind.is_some(), &mut log)?;
                rule.accept(c);
                head += 1;
                if known_kind.is_none() {
                    insert_doc.execute(params![
                        doc.as_slice(),
                        workspace,
                        kind,
                        sql_seq(head),
                        device
                    ])?;
                }
                docs.insert(doc, kind);
                insert_change.execute(params![
                    workspace,
                    sql_seq(head),
                    c.hash.as_slice(),
                    doc.as_slice(),
                    kind,
                    c.deps_bytes(),
                    device,
                    arrived_at,
                    c.envelope.bytes,
                ])?;
                // The latest pushed scope of a document is the one a later filter reads.
                let scope = &c.envelope.scope;
                let teams = (!scope.teams.is_empty()).then(|| {
                    let ids: Vec<String> = scope
                        .teams
                        .iter()
                        .map(|t| Uuid::from_bytes(*t).to_string())
                        .collect();
                    ids.join(",")
                });
                set_scope.execute(params![
                    doc.as_slice(),
                    scope.owner.map(|o| Uuid::from_bytes(o).to_string()),
                    teams,
                    sql_seq(head),
                ])?;
                seqs.push(head);
                appended_bytes += c.envelope.bytes.len() + ENTRY_OVERHEAD;
                appended.push(Entry {
                    seq: head,
                    doc_id: doc,
                    bytes: c.envelope.bytes.clone(),
                });
                last_hash = c.hash;
            }
            if duplicates < checked.len() {
                tx.execute(
                    "UPDATE workspaces SET head = ?1 WHERE id = ?2",
                    params![sql_seq(head), workspace],
                )?;
            }
            // `read` would stop at its frame budget or its limit; such a batch has no tail.
            let tail = (!appended.is_empty()
                && appended.len() <= MAX_BATCH_CHANGES
                && appended_bytes <= READ_BUDGET)
                .then_some(LogRead {
                    entries: appended,
                    through: head,
                    through_hash: last_hash,
                    head,
                });
            Ok(StoredBatch {
                stored: checked.len() - duplicates,
                duplicates,
                seqs,
                head,
                tail,
            })
        })
    }

    fn read(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
    ) -> Result<LogRead, StoreError> {
        let limit = limit.min(MAX_BATCH_CHANGES);
        self.read_with(|tx| {
            let head = workspace_head(tx, workspace)?;
            let mut stmt = tx.prepare_cached(
                "SELECT seq, doc_id, bytes, hash FROM changes
                 WHERE workspace = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            let mut rows = stmt.query(params![
                workspace,
                sql_seq(after),
                i64::try_from(limit).unwrap_or(i64::MAX)
            ])?;
            let mut entries: Vec<Entry> = Vec::new();
            let mut last_hash = None;
            let mut size = 0;
            while let Some(row) = rows.next()? {
                let bytes: Vec<u8> = row.get(2)?;
                // Every entry must fit in one frame with the others; the first always fits,
                // since a change is far smaller than a frame.
                if !entries.is_empty() && size + bytes.len() + ENTRY_OVERHEAD > READ_BUDGET {
                    break;
                }
                size += bytes.len() + ENTRY_OVERHEAD;
                let doc: Vec<u8> = row.get(1)?;
                let doc_id = DocId::try_from(doc.as_slice())
                    .map_err(|_| StoreError::Corrupt("a document id is not 16 bytes".into()))?;
                let h: Vec<u8> = row.get(3)?;
                last_hash = Some(hash(&h)?);
                entries.push(Entry {
                    seq: seq(row.get(0)?),
                    doc_id,
                    bytes,
                });
            }
            let (through, through_hash) = match (entries.last(), last_hash) {
                (Some(e), Some(h)) => (e.seq, h),
                _ if after == 0 => (0, [0; 32]),
                _ => {
                    let at: Option<Vec<u8>> = tx
                        .query_row(
                            "SELECT hash FROM changes WHERE workspace = ?1 AND seq = ?2",
                            params![workspace, sql_seq(after)],
                            |r| r.get(0),
                        )
                        .optional()?;
                    (after, at.map(|h| hash(&h)).transpose()?.unwrap_or([0; 32]))
                }
            };
            Ok(LogRead {
                entries,
                through,
                through_hash,
                head: seq(head),
            })
        })
    }

    fn create_workspace(&self, name: &str) -> Result<Workspace, AdminError> {
        let name = valid_name("workspace name", name)?;
        if Uuid::try_parse(&name).is_ok() {
            return Err(AdminError::InvalidInput {
                what: "workspace name",
                value: name,
                expected: "a name, not a UUID (workspaces are found by id or name)".into(),
            });
        }
        self.write(|tx| {
            let taken: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM workspaces WHERE name = ?1)",
                [&name],
                |r| r.get(0),
            )?;
            if taken {
                return Err(AdminError::DuplicateName(name.clone()));
            }
            let id = WorkspaceId::new();
            let created_at = now_ms();
            tx.execute(
                "INSERT INTO workspaces (id, name, created_at) VALUES (?1, ?2, ?3)",
                params![id, name, created_at],
            )?;
            Ok(to_workspace((id, name.clone(), created_at, 0))?)
        })
    }

    fn workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.read_with(|tx| {
            let mut stmt = tx.prepare(
                "SELECT id, name, created_at, head FROM workspaces ORDER BY created_at, id",
            )?;
            let rows = stmt.query_map([], workspace_row)?;
            rows.map(|r| to_workspace(r?)).collect()
        })
    }

    fn find_workspace(&self, id_or_name: &str) -> Result<Workspace, AdminError> {
        let key = id_or_name.trim();
        let row = self.read_with(|tx| {
            let sql = "SELECT id, name, created_at, head FROM workspaces WHERE ";
            let row = match key.parse::<WorkspaceId>() {
                Ok(id) => tx
                    .query_row(&format!("{sql} id = ?1"), [id], workspace_row)
                    .optional(),
                Err(_) => tx
                    .query_row(&format!("{sql} name = ?1"), [key], workspace_row)
                    .optional(),
            };
            row.map_err(StoreError::from)
        })?;
        match row {
            Some(row) => Ok(to_workspace(row)?),
            None => Err(AdminError::UnknownWorkspace(id_or_name.to_string())),
        }
    }

    fn add_device(
        &self,
        workspace: WorkspaceId,
        user: &str,
        role: Role,
    ) -> Result<NewDevice, AdminError> {
        let user = valid_name("user", user)?;
        let token = Token::generate(workspace)?;
        self.write(|tx| {
            let exists: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM workspaces WHERE id = ?1)",
                [workspace],
                |r| r.get(0),
            )?;
            if !exists {
                return Err(AdminError::UnknownWorkspace(workspace.to_string()));
            }
            let id = DeviceId::new();
            let created_at = now_ms();
            tx.execute(
                "INSERT INTO devices (id, workspace, user, role, token_hash, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    workspace,
                    user,
                    role,
                    token.hash().as_slice(),
                    created_at
                ],
            )?;
            let device = to_device((id, workspace, user.clone(), role, created_at, None))?;
            Ok(NewDevice {
                device,
                token: token.clone(),
            })
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

    fn revoke_device(&self, device: DeviceId) -> Result<Device, AdminError> {
        self.write(|tx| {
            tx.execute(
                "UPDATE devices SET revoked_at = coalesce(revoked_at, ?1) WHERE id = ?2",
                params![now_ms(), device],
            )?;
            let row = tx
                .query_row(
                    &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"),
                    [device],
                    device_row,
                )
                .optional()?
                .ok_or(AdminError::UnknownDevice(device))?;
            Ok(to_device(row)?)
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

    fn head(&self, workspace: WorkspaceId) -> Result<(u64, Hash), StoreError> {
        self.read_with(|tx| {
            let head = workspace_head(tx, workspace)?;
            if head == 0 {
                return Ok((0, [0; 32]));
            }
            let at: Vec<u8> = tx
                .query_row(
                    "SELECT hash FROM changes WHERE workspace = ?1 AND seq = ?2",
                    params![workspace, head],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or_else(|| {
                    StoreError::Corrupt(format!("no change at the head {head} of {workspace}"))
                })?;
            Ok((seq(head), hash(&at)?))
        })
    }

    fn compact(&self, limit: usize) -> Result<usize, StoreError> {
        self.compact_stale(limit)
    }

    fn stale_documents(&self) -> Result<u64, StoreError> {
        self.count_stale()
    }

    fn documents_page(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        through: u64,
        max_bytes: usize,
    ) -> Result<DocumentsPage, StoreError> {
        self.read_page(workspace, after, through, max_bytes)
    }
}

/// The last sequence number of a workspace's log.
fn workspace_head(
    tx: &rusqlite::Transaction<'_>,
    workspace: WorkspaceId,
) -> Result<i64, StoreError> {
    tx.query_row(
        "SELECT head FROM workspaces WHERE id = ?1",
        [workspace],
        |r| r.get(0),
    )
    .optional()?
    .ok_or_else(|| StoreError::Corrupt(format!("no workspace {workspace}")))
}

#[cfg(test)]
mod tests {
    use automerge::transaction::Transactable as _;
    use automerge::{AutoCommit, ROOT};

    use super::*;

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
        let store = SqliteStore::open(dir.path()).expect("a format 1 database opens");

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
        let page = store.documents_page(ws, None, 3, usize::MAX).expect("page");
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
        let envelope = Envelope {
            doc_id,
            kind: "account".into(),
            scope: Default::default(),
            bytes,
        };
        let stored = store.store_batch(ws, device, &[envelope]).expect("a push");
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
        let store = SqliteStore::open(dir.path()).expect("reopens");
        assert_eq!(store.head(ws).expect("head").0, 4);
    }

    #[test]
    fn snapshot_queries_use_their_indexes() {
        let dir = tempfile::tempdir().expect("tempdir");
        drop(SqliteStore::open_or_create(dir.path()).expect("store"));
        let conn = Connection::open(dir.path().join(FILE_NAME)).expect("open");
        for (sql, index) in [
            (snapshots::STALE_SQL, "documents_stale"),
            (snapshots::COUNT_STALE_SQL, "documents_stale"),
            (snapshots::CHANGES_OF_DOC_SQL, "changes_by_doc"),
            (snapshots::PAGE_DOCS_SQL, "documents_by_workspace"),
            (snapshots::PAGE_CHANGES_SQL, "changes_by_doc"),
            // The log read keeps its primary key beside the new index of changes.
            (
                "SELECT seq, doc_id, bytes, hash FROM changes
                 WHERE workspace = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
                "sqlite_autoindex_changes_1",
            ),
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
