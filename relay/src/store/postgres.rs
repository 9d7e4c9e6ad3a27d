//! [`PostgresStore`]: the relay's store in a PostgreSQL database, which several relay
//! processes may share.
//!
//! - **Client.** The synchronous `postgres` client with an `r2d2` pool: the store trait is
//!   synchronous and runs on the server's blocking threads, exactly like SQLite's, so the
//!   policy above it is one code path; an async client would only add a second runtime hop.
//! - **Positions.** [`RelayStore::append`] locks the workspace's row (`SELECT head … FOR
//!   UPDATE`) before reading anything, so appends to one workspace are serialised across
//!   every process, positions are contiguous, and a later batch commits after an earlier one:
//!   a reader never sees position N+1 before N. Appends to different workspaces run in
//!   parallel.
//! - **Round trips.** A push costs a fixed number of statements whatever its size: the lock,
//!   two lookups (`= ANY` of arrays), three writes (`unnest` of arrays), the head, and a
//!   `pg_notify` that PostgreSQL delivers on commit (LISTEN/NOTIFY is transactional).
//! - **Several processes.** Each process listens on [`CHANNEL`] on a connection of its own
//!   ([`RelayStore::heads`]) and wakes its sessions of that workspace. Compaction runs in
//!   one process at a time: the holder of a session-level advisory lock ([`LEASE_KEY`]).
//! - **Schema.** Versioned migrations ([`MIGRATIONS`]) run at start in one transaction under
//!   an advisory lock, so processes starting together apply them once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_sync::{DocId, Hash, RelayId};
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{Client, NoTls};
use r2d2_postgres::PostgresConnectionManager;
use uuid::Uuid;

use super::values::{hash, seq, sql_limit, sql_seq, time};
use super::{
    Append, ChangeRow, Device, DirectoryRows, DocChange, DocumentRow, HeadFeed, Known, KnownChange,
    KnownDocument, LogExtent, LogRow, PoolState, PushError, RaisedHead, RelayStore, Row,
    SnapshotWrite, StoreError, StoredSnapshot, Workspace,
};
use crate::ids::{DeviceId, Role, WorkspaceId};

mod rows;

/// The channel commits announce raised heads on: `"<workspace> <head> <ms since epoch>"`.
pub(crate) const CHANNEL: &str = "crm_relay_log";
/// The advisory lock of schema migrations ("crmr" and 1).
const MIGRATE_KEY: i64 = 0x6372_6d72_0000_0001;
/// The advisory lock held by the process that compacts ("crmr" and 2).
const LEASE_KEY: i64 = 0x6372_6d72_0000_0002;
/// Most connections of one process's pool: as many as the server's blocking threads.
const POOL_SIZE: u32 = 32;
/// How long a connection may take to open, and a caller to wait for one from the pool.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema this build writes.
pub(crate) const SCHEMA_VERSION: i32 = 4;

/// `MIGRATIONS[i]` brings the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE relay_meta (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    relay_id    UUID NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE workspaces (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    -- The last position of the workspace's log; its row is the lock positions are
    -- allocated under.
    head        BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE devices (
    id           UUID PRIMARY KEY,
    workspace    UUID NOT NULL REFERENCES workspaces(id),
    "user"       TEXT NOT NULL,
    role         TEXT NOT NULL
                 CHECK (role IN ('admin', 'sales_manager', 'sales_rep', 'support_agent')),
    -- SHA-256 of the token's text; the token itself is never stored.
    token_hash   BYTEA NOT NULL UNIQUE,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    last_seen_at BIGINT
);
CREATE INDEX devices_by_workspace ON devices(workspace);
CREATE INDEX devices_revoked ON devices(revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE documents (
    doc_id      UUID PRIMARY KEY,
    workspace   UUID NOT NULL REFERENCES workspaces(id),
    kind        TEXT NOT NULL,
    first_seq   BIGINT NOT NULL,
    created_by  UUID NOT NULL REFERENCES devices(id),
    owner       TEXT,
    teams       TEXT,
    last_seq    BIGINT NOT NULL DEFAULT 0,
    snap_seq    BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX documents_by_workspace ON documents(workspace, doc_id);
CREATE INDEX documents_by_scope ON documents(workspace, owner);
CREATE INDEX documents_stale ON documents(workspace) WHERE last_seq > snap_seq;

CREATE TABLE changes (
    workspace   UUID NOT NULL REFERENCES workspaces(id),
    seq         BIGINT NOT NULL,
    hash        BYTEA NOT NULL,
    doc_id      UUID NOT NULL REFERENCES documents(doc_id),
    kind        TEXT NOT NULL,
    deps        BYTEA NOT NULL,
    author      UUID NOT NULL REFERENCES devices(id),
    arrived_at  BIGINT NOT NULL,
    bytes       BYTEA NOT NULL,
    PRIMARY KEY (workspace, seq),
    UNIQUE (workspace, hash)
);
CREATE INDEX changes_by_doc ON changes(workspace, doc_id, seq);

CREATE TABLE snapshots (
    doc_id      UUID PRIMARY KEY REFERENCES documents(doc_id),
    seq         BIGINT NOT NULL,
    bytes       BYTEA NOT NULL,
    hashes      BYTEA NOT NULL
);
"#,
    // 2: change bytes and snapshots are stored as they are, out of line, without
    // PostgreSQL's own compression: Automerge compresses them already, so pglz only spent CPU
    // on every push and every read (a fresh device's bootstrap reads every snapshot). Rows
    // written before keep their storage until rewritten.
    r#"
ALTER TABLE changes ALTER COLUMN bytes SET STORAGE EXTERNAL;
ALTER TABLE snapshots ALTER COLUMN bytes SET STORAGE EXTERNAL;
ALTER TABLE snapshots ALTER COLUMN hashes SET STORAGE EXTERNAL;
"#,
    // 3: access control (see the SQLite store's format 4): scopes on changes and documents,
    // the directory's projected fields, the role matrix and access version, devices' users.
    r#"
ALTER TABLE documents ADD COLUMN scope TEXT;
ALTER TABLE documents ADD COLUMN attrs TEXT;
ALTER TABLE changes ADD COLUMN scope TEXT;
ALTER TABLE changes ADD COLUMN prev_scope TEXT;
ALTER TABLE workspaces ADD COLUMN matrix TEXT;
ALTER TABLE workspaces ADD COLUMN access_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN user_id UUID;
ALTER TABLE devices ADD COLUMN wiped_at BIGINT;
UPDATE documents SET scope = CASE
    WHEN owner IS NULL AND teams IS NULL THEN NULL
    ELSE coalesce(owner, '') || ';;' || coalesce(teams, '') END;
UPDATE changes SET scope = d.scope FROM documents d WHERE d.doc_id = changes.doc_id;
CREATE INDEX documents_directory ON documents(workspace) WHERE kind IN ('user', 'team');
"#,
    // 4: write authorization (see the SQLite store's format 5): each document's shape,
    // backfilled from its changes at start.
    r#"
ALTER TABLE documents ADD COLUMN shape TEXT;
"#,
];
const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// The relay's store in a PostgreSQL database.
pub struct PostgresStore {
    config: postgres::Config,
    location: String,
    relay_id: RelayId,
    /// `None` only while the store is dropped.
    pool: Option<Pool>,
    /// The connection holding the compaction lease, once this process has it.
    lease: Mutex<Option<Client>>,
}

/// The synchronous client closes a connection on a runtime of its own, which panics inside
/// an async context (a store dropped by a task, or at the end of `block_on`). The
/// connections are closed on a thread of their own instead, and waited for.
impl Drop for PostgresStore {
    fn drop(&mut self) {
        let pool = self.pool.take();
        let lease = self
            .lease
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if tokio::runtime::Handle::try_current().is_ok() {
            let closing = std::thread::Builder::new()
                .name("crm-pg-close".into())
                .spawn(move || drop((pool, lease)));
            if let Ok(closing) = closing {
                let _ = closing.join();
            }
        } else {
            drop((pool, lease));
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        StoreError::Database {
            backend: "postgres",
            source: Box::new(e),
        }
    }
}

impl From<r2d2::Error> for StoreError {
    fn from(e: r2d2::Error) -> Self {
        StoreError::Database {
            backend: "postgres",
            source: Box::new(e),
        }
    }
}

impl From<postgres::Error> for PushError {
    fn from(e: postgres::Error) -> Self {
        PushError::Store(e.into())
    }
}

/// `url` with its password, if any, replaced by `***`.
pub(crate) fn redacted(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let end = rest.find('/').unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) => {
            let user = &rest[..at];
            let user = user.split_once(':').map_or(user, |(u, _)| u);
            let masked = if rest[..at].contains(':') {
                format!("{user}:***")
            } else {
                user.to_string()
            };
            format!("{scheme}://{masked}{}", &rest[at..])
        }
        None => url.to_string(),
    }
}

impl PostgresStore {
    /// Connects to the database at `url` and brings its schema up to date. A database with
    /// no relay schema yet gets one (and a new relay identity) only if `create`.
    pub fn connect(url: &str, create: bool) -> Result<PostgresStore, StoreError> {
        Self::open(url, create, None)
    }

    /// Connects to an empty database and creates the schema with a given identity (a
    /// migration's target keeps its source's identity). Refuses a database that already
    /// holds a relay.
    pub fn create_with_identity(url: &str, relay_id: RelayId) -> Result<PostgresStore, StoreError> {
        Self::open(url, true, Some(relay_id))
    }

    fn open(
        url: &str,
        create: bool,
        identity: Option<RelayId>,
    ) -> Result<PostgresStore, StoreError> {
        let location = redacted(url);
        let connect_error =
            |source: Box<dyn std::error::Error + Send + Sync>| StoreError::Connect {
                location: location.clone(),
                source,
            };
        let mut config: postgres::Config = url.parse().map_err(|e| connect_error(Box::new(e)))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        config.application_name("crm-relay");
        // One connection first: a wrong address, database or password fails at once with
        // PostgreSQL's own words, and the schema is brought up to date on it.
        let mut first = config
            .connect(NoTls)
            .map_err(|e| connect_error(Box::new(e)))?;
        let relay_id = migrate(&mut first, &location, create, identity)?;
        drop(first);
        let manager = PostgresConnectionManager::new(config.clone(), NoTls);
        // Connections are opened as needed (and kept, up to the pool's size).
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(0))
            .connection_timeout(CONNECT_TIMEOUT)
            .build_unchecked(manager);
        Ok(PostgresStore {
            config,
            location,
            relay_id,
            pool: Some(pool),
            lease: Mutex::new(None),
        })
    }

    fn client(
        &self,
    ) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, StoreError> {
        match &self.pool {
            Some(pool) => Ok(pool.get()?),
            None => Err(StoreError::Worker),
        }
    }
}

/// Applies the migrations this database lacks, in one transaction under an advisory lock;
/// returns the relay's identity.
fn migrate(
    client: &mut Client,
    location: &str,
    create: bool,
    identity: Option<RelayId>,
) -> Result<RelayId, StoreError> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATE_KEY])?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS crm_relay_schema (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             version INTEGER NOT NULL
         )",
    )?;
    let version: Option<i32> = tx
        .query_opt("SELECT version FROM crm_relay_schema WHERE id = 1", &[])?
        .map(|r| r.get(0));
    let foreign: bool = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM information_schema.tables
                            WHERE table_schema = current_schema() AND table_name = 'changes')",
            &[],
        )?
        .get(0);
    let version = match version {
        Some(v) => v,
        None if foreign => return Err(StoreError::Foreign(location.to_string())),
        None if !create => return Err(StoreError::Missing(location.to_string())),
        None => 0,
    };
    if version > SCHEMA_VERSION {
        return Err(StoreError::Newer {
            location: location.to_string(),
            found: i64::from(version),
            supported: i64::from(SCHEMA_VERSION),
        });
    }
    if identity.is_some() && version > 0 {
        return Err(StoreError::NotEmpty(location.to_string()));
    }
    for migration in MIGRATIONS
        .iter()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.batch_execute(migration)?;
    }
    if version == 0 {
        let relay_id = Uuid::from_bytes(identity.unwrap_or_else(|| *Uuid::now_v7().as_bytes()));
        tx.execute(
            "INSERT INTO relay_meta (id, relay_id, created_at) VALUES (1, $1, $2)",
            &[&relay_id, &Utc::now().timestamp_millis()],
        )?;
    }
    if version < SCHEMA_VERSION {
        tx.execute(
            "INSERT INTO crm_relay_schema (id, version) VALUES (1, $1)
             ON CONFLICT (id) DO UPDATE SET version = excluded.version",
            &[&SCHEMA_VERSION],
        )?;
        tracing::info!(
            from = version,
            to = SCHEMA_VERSION,
            "relay database schema migrated"
        );
    }
    backfill_shapes(&mut tx)?;
    let relay_id: Uuid = tx
        .query_opt("SELECT relay_id FROM relay_meta WHERE id = 1", &[])?
        .ok_or_else(|| StoreError::Corrupt("relay_meta has no row".into()))?
        .get(0);
    tx.commit()?;
    Ok(*relay_id.as_bytes())
}

/// Gives every document without a shape (stored before schema 4, or copied in by a
/// migration between backends) the shape of its changes, in log order.
fn backfill_shapes(tx: &mut postgres::Transaction<'_>) -> Result<usize, StoreError> {
    let docs: Vec<(Uuid, Uuid)> = tx
        .query(
            "SELECT workspace, doc_id FROM documents WHERE shape IS NULL",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, postgres::Error>>()?;
    for (workspace, doc) in &docs {
        let bytes: Vec<Vec<u8>> = tx
            .query(
                "SELECT bytes FROM changes WHERE workspace = $1 AND doc_id = $2 ORDER BY seq",
                &[workspace, doc],
            )?
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, postgres::Error>>()?;
        let shape = crate::service::shape_of(&bytes).to_json();
        tx.execute(
            "UPDATE documents SET shape = $2 WHERE doc_id = $1",
            &[doc, &shape],
        )?;
    }
    if !docs.is_empty() {
        tracing::info!(documents = docs.len(), "document shapes backfilled");
    }
    Ok(docs.len())
}

fn doc_uuid(doc: &DocId) -> Uuid {
    Uuid::from_bytes(*doc)
}

const WORKSPACE_COLUMNS: &str = "id, name, created_at, head, matrix, access_version";

fn to_workspace(row: &postgres::Row) -> Result<Workspace, StoreError> {
    Ok(Workspace {
        id: WorkspaceId::from_uuid(row.try_get(0)?),
        name: row.try_get(1)?,
        created_at: time(row.try_get(2)?)?,
        head: seq(row.try_get(3)?),
        matrix: row.try_get(4)?,
        access_version: seq(row.try_get(5)?),
    })
}

const DEVICE_COLUMNS: &str =
    r#"id, workspace, "user", role, created_at, revoked_at, last_seen_at, user_id, wiped_at"#;

fn to_device(row: &postgres::Row) -> Result<Device, StoreError> {
    let role: String = row.try_get(3)?;
    Ok(Device {
        id: DeviceId::from_uuid(row.try_get(0)?),
        workspace: WorkspaceId::from_uuid(row.try_get(1)?),
        user: row.try_get(2)?,
        role: role
            .parse::<Role>()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        created_at: time(row.try_get(4)?)?,
        revoked_at: row.try_get::<_, Option<i64>>(5)?.map(time).transpose()?,
        last_seen_at: row.try_get::<_, Option<i64>>(6)?.map(time).transpose()?,
        user_id: row.try_get(7)?,
        wiped_at: row.try_get::<_, Option<i64>>(8)?.map(time).transpose()?,
    })
}

fn snapshot_of(row: &postgres::Row, from: usize) -> Result<Option<StoredSnapshot>, StoreError> {
    let at: Option<i64> = row.try_get(from)?;
    let bytes: Option<Vec<u8>> = row.try_get(from + 1)?;
    let hashes: Option<Vec<u8>> = row.try_get(from + 2)?;
    Ok(match (at, bytes, hashes) {
        (Some(at), Some(bytes), Some(hashes)) => Some(StoredSnapshot {
            seq: seq(at),
            bytes,
            hashes,
        }),
        _ => None,
    })
}

impl RelayStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn location(&self) -> String {
        self.location.clone()
    }

    fn relay_id(&self) -> RelayId {
        self.relay_id
    }

    fn ping(&self) -> Result<(), StoreError> {
        self.client()?
            .query_one("SELECT 1 FROM relay_meta WHERE id = 1", &[])?;
        Ok(())
    }

    fn schema_version(&self) -> Result<i64, StoreError> {
        let version: i32 = self
            .client()?
            .query_one("SELECT version FROM crm_relay_schema WHERE id = 1", &[])?
            .get(0);
        Ok(i64::from(version))
    }

    fn insert_workspace(&self, workspace: &Workspace) -> Result<bool, StoreError> {
        let inserted = self.client()?.execute(
            "INSERT INTO workspaces (id, name, created_at, head) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[
                workspace.id.as_uuid(),
                &workspace.name,
                &workspace.created_at.timestamp_millis(),
                &sql_seq(workspace.head),
            ],
        )?;
        Ok(inserted == 1)
    }

    fn workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.client()?
            .query(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces ORDER BY created_at, id"),
                &[],
            )?
            .iter()
            .map(to_workspace)
            .collect()
    }

    fn workspace(&self, id: WorkspaceId) -> Result<Option<Workspace>, StoreError> {
        self.client()?
            .query_opt(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE id = $1"),
                &[id.as_uuid()],
            )?
            .as_ref()
            .map(to_workspace)
            .transpose()
    }

    fn workspace_named(&self, name: &str) -> Result<Option<Workspace>, StoreError> {
        self.client()?
            .query_opt(
                &format!("SELECT {WORKSPACE_COLUMNS} FROM workspaces WHERE name = $1"),
                &[&name],
            )?
            .as_ref()
            .map(to_workspace)
            .transpose()
    }

    fn insert_device(&self, device: &Device, token_hash: &[u8; 32]) -> Result<(), StoreError> {
        self.client()?.execute(
            r#"INSERT INTO devices
               (id, workspace, "user", role, token_hash, created_at, revoked_at, last_seen_at,
                user_id, wiped_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"#,
            &[
                device.id.as_uuid(),
                device.workspace.as_uuid(),
                &device.user,
                &device.role.as_str(),
                &token_hash.as_slice(),
                &device.created_at.timestamp_millis(),
                &device.revoked_at.map(|t| t.timestamp_millis()),
                &device.last_seen_at.map(|t| t.timestamp_millis()),
                &device.user_id,
                &device.wiped_at.map(|t| t.timestamp_millis()),
            ],
        )?;
        Ok(())
    }

    fn devices(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Device>, StoreError> {
        let workspace = workspace.map(|w| *w.as_uuid());
        self.client()?
            .query(
                &format!(
                    "SELECT {DEVICE_COLUMNS} FROM devices
                     WHERE $1::uuid IS NULL OR workspace = $1 ORDER BY created_at, id"
                ),
                &[&workspace],
            )?
            .iter()
            .map(to_device)
            .collect()
    }

    fn device_by_token(&self, token_hash: &[u8; 32]) -> Result<Option<Device>, StoreError> {
        self.client()?
            .query_opt(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE token_hash = $1"),
                &[&token_hash.as_slice()],
            )?
            .as_ref()
            .map(to_device)
            .transpose()
    }

    fn touch_device(&self, device: DeviceId, at: DateTime<Utc>) -> Result<(), StoreError> {
        self.client()?.execute(
            "UPDATE devices SET last_seen_at = $2 WHERE id = $1",
            &[device.as_uuid(), &at.timestamp_millis()],
        )?;
        Ok(())
    }

    fn revoke_device(
        &self,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError> {
        self.client()?
            .query_opt(
                &format!(
                    "UPDATE devices SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1
                     RETURNING {DEVICE_COLUMNS}"
                ),
                &[device.as_uuid(), &at.timestamp_millis()],
            )?
            .as_ref()
            .map(to_device)
            .transpose()
    }

    fn wipe_device(
        &self,
        device: DeviceId,
        at: DateTime<Utc>,
    ) -> Result<Option<Device>, StoreError> {
        self.client()?
            .query_opt(
                &format!(
                    "UPDATE devices SET revoked_at = coalesce(revoked_at, $2),
                     wiped_at = coalesce(wiped_at, $2) WHERE id = $1
                     RETURNING {DEVICE_COLUMNS}"
                ),
                &[device.as_uuid(), &at.timestamp_millis()],
            )?
            .as_ref()
            .map(to_device)
            .transpose()
    }

    fn directory(&self, workspace: WorkspaceId) -> Result<Option<DirectoryRows>, StoreError> {
        let mut client = self.client()?;
        let ws = *workspace.as_uuid();
        let Some(row) = client.query_opt(
            "SELECT matrix, access_version FROM workspaces WHERE id = $1",
            &[&ws],
        )?
        else {
            return Ok(None);
        };
        let matrix: Option<String> = row.try_get(0)?;
        let version: i64 = row.try_get(1)?;
        let mut entries = Vec::new();
        for r in client.query(
            "SELECT doc_id, kind, attrs FROM documents
             WHERE workspace = $1 AND kind IN ('user', 'team') AND attrs IS NOT NULL",
            &[&ws],
        )? {
            let doc: Uuid = r.try_get(0)?;
            entries.push((*doc.as_bytes(), r.try_get(1)?, r.try_get(2)?));
        }
        Ok(Some(DirectoryRows {
            entries,
            matrix,
            version: seq(version),
        }))
    }

    fn access_versions(
        &self,
        workspaces: &[WorkspaceId],
    ) -> Result<Vec<(WorkspaceId, u64)>, StoreError> {
        if workspaces.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<Uuid> = workspaces.iter().map(|w| *w.as_uuid()).collect();
        self.client()?
            .query(
                "SELECT id, access_version FROM workspaces WHERE id = ANY($1)",
                &[&ids],
            )?
            .iter()
            .map(|r| Ok((WorkspaceId::from_uuid(r.try_get(0)?), seq(r.try_get(1)?))))
            .collect()
    }

    fn set_matrix(&self, workspace: WorkspaceId, overrides: &str) -> Result<(), StoreError> {
        self.client()?.execute(
            "UPDATE workspaces SET matrix = $2, access_version = access_version + 1
             WHERE id = $1",
            &[workspace.as_uuid(), &overrides],
        )?;
        Ok(())
    }

    fn document_scope(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
    ) -> Result<Option<(String, Option<String>)>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT kind, scope FROM documents WHERE doc_id = $1 AND workspace = $2",
                &[&doc_uuid(&doc), workspace.as_uuid()],
            )?
            .map(|r| (r.get(0), r.get(1))))
    }

    fn revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<Device>, StoreError> {
        self.client()?
            .query(
                &format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE revoked_at >= $1"),
                &[&since.timestamp_millis()],
            )?
            .iter()
            .map(to_device)
            .collect()
    }

    fn head(&self, workspace: WorkspaceId) -> Result<Option<u64>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT head FROM workspaces WHERE id = $1",
                &[workspace.as_uuid()],
            )?
            .map(|r| seq(r.get(0))))
    }

    fn hash_at(&self, workspace: WorkspaceId, at: u64) -> Result<Option<Hash>, StoreError> {
        self.client()?
            .query_opt(
                "SELECT hash FROM changes WHERE workspace = $1 AND seq = $2",
                &[workspace.as_uuid(), &sql_seq(at)],
            )?
            .map(|r| hash(r.get(0)))
            .transpose()
    }

    fn read_log(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(LogRow) -> bool,
    ) -> Result<u64, StoreError> {
        let mut client = self.client()?;
        let (ws, after, limit) = (*workspace.as_uuid(), sql_seq(after), sql_limit(limit));
        let params: [&(dyn ToSql + Sync); 3] = [&ws, &after, &limit];
        let mut rows = client.query_raw(
            "SELECT seq, doc_id, hash, bytes, kind, scope, prev_scope FROM changes
             WHERE workspace = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            params,
        )?;
        while let Some(row) = rows.next()? {
            let entry = LogRow {
                seq: seq(row.try_get(0)?),
                doc_id: *row.try_get::<_, Uuid>(1)?.as_bytes(),
                hash: hash(row.try_get(2)?)?,
                bytes: row.try_get(3)?,
                kind: row.try_get(4)?,
                scope: row.try_get(5)?,
                prev_scope: row.try_get(6)?,
            };
            if !each(entry) {
                break;
            }
        }
        drop(rows);
        client
            .query_opt("SELECT head FROM workspaces WHERE id = $1", &[&ws])?
            .map(|r| seq(r.get(0)))
            .ok_or_else(|| StoreError::Corrupt(format!("no workspace {workspace}")))
    }

    fn append(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        docs: &[DocId],
        hashes: &[Hash],
        plan: &mut dyn FnMut(Known) -> Result<Append, PushError>,
    ) -> Result<(), PushError> {
        // Round trips are what a push costs here, and the workspace's lock is held from the
        // first statement to the commit: BEGIN, the lock with the device's state, one
        // lookup, one write, COMMIT, whatever the size of the batch.
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        let ws = *workspace.as_uuid();
        // The workspace's lock, held until commit: positions are allocated under it.
        let row = tx
            .query_opt(
                "SELECT w.head, EXISTS (SELECT 1 FROM devices d
                     WHERE d.id = $2 AND d.workspace = w.id AND d.revoked_at IS NULL),
                     w.access_version
                 FROM workspaces w WHERE w.id = $1 FOR UPDATE",
                &[&ws, device.as_uuid()],
            )?
            .ok_or_else(|| StoreError::Corrupt(format!("workspace {workspace} vanished")))?;
        let mut known = Known {
            device_active: row.try_get(1)?,
            head: seq(row.try_get(0)?),
            access_version: seq(row.try_get(2)?),
            ..Known::default()
        };
        let doc_ids: Vec<Uuid> = docs.iter().map(doc_uuid).collect();
        let hash_list: Vec<&[u8]> = hashes.iter().map(|h| h.as_slice()).collect();
        // The batch's documents (in any workspace) and the changes of this workspace's log
        // its hashes and dependencies name, in one statement.
        for row in tx.query(
            "SELECT doc_id, workspace, kind, NULL::bytea, NULL::bigint, scope, shape
                 FROM documents WHERE doc_id = ANY($1)
             UNION ALL
             SELECT doc_id, NULL, NULL, hash, seq, NULL, NULL
                 FROM changes WHERE workspace = $2 AND hash = ANY($3)",
            &[&doc_ids, &ws, &hash_list],
        )? {
            let doc: Uuid = row.try_get(0)?;
            match row.try_get::<_, Option<&[u8]>>(3)? {
                None => {
                    let owner: Option<Uuid> = row.try_get(1)?;
                    let kind: Option<String> = row.try_get(2)?;
                    if let (Some(owner), Some(kind)) = (owner, kind) {
                        known.docs.insert(
                            *doc.as_bytes(),
                            KnownDocument {
                                workspace: WorkspaceId::from_uuid(owner),
                                kind,
                                scope: row.try_get(5)?,
                                shape: row.try_get(6)?,
                            },
                        );
                    }
                }
                Some(h) => {
                    let at: Option<i64> = row.try_get(4)?;
                    known.changes.insert(
                        hash(h)?,
                        KnownChange {
                            seq: seq(at.unwrap_or(0)),
                            doc_id: *doc.as_bytes(),
                        },
                    );
                }
            }
        }
        // The directory is projected from every change of its records, and a document
        // without a shape gets one from its changes: read theirs.
        let wanted: Vec<Uuid> = known
            .docs
            .iter()
            .filter(|(_, d)| {
                d.workspace == workspace
                    && (d.kind == "user" || d.kind == "team" || d.shape.is_none())
            })
            .map(|(id, _)| doc_uuid(id))
            .collect();
        if !wanted.is_empty() {
            for row in tx.query(
                "SELECT doc_id, bytes FROM changes
                 WHERE workspace = $1 AND doc_id = ANY($2) ORDER BY seq",
                &[&ws, &wanted],
            )? {
                let doc: DocId = *row.try_get::<_, Uuid>(0)?.as_bytes();
                let bytes: Vec<u8> = row.try_get(1)?;
                let Some(d) = known.docs.get(&doc) else {
                    continue;
                };
                if d.shape.is_none() {
                    known.unshaped.entry(doc).or_default().push(bytes.clone());
                }
                if d.kind == "user" || d.kind == "team" {
                    known.directory.entry(doc).or_default().push(bytes);
                }
            }
        }
        let append = plan(known)?;
        if append.is_empty() {
            // Nothing new: the lock goes with the transaction.
            tx.commit()?;
            return Ok(());
        }
        write_append(&mut tx, workspace, &append)?;
        tx.commit()?;
        Ok(())
    }

    fn stale(&self, limit: usize) -> Result<Vec<(WorkspaceId, DocId)>, StoreError> {
        self.client()?
            .query(
                "SELECT workspace, doc_id FROM documents WHERE last_seq > snap_seq LIMIT $1",
                &[&sql_limit(limit)],
            )?
            .iter()
            .map(|r| {
                let doc: Uuid = r.try_get(1)?;
                Ok((WorkspaceId::from_uuid(r.try_get(0)?), *doc.as_bytes()))
            })
            .collect()
    }

    fn count_stale(&self) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()?
            .query_one(
                "SELECT count(*) FROM documents WHERE last_seq > snap_seq",
                &[],
            )?
            .get(0);
        Ok(seq(n))
    }

    fn snapshot(&self, doc: DocId) -> Result<Option<StoredSnapshot>, StoreError> {
        match self.client()?.query_opt(
            "SELECT seq, bytes, hashes FROM snapshots WHERE doc_id = $1",
            &[&doc_uuid(&doc)],
        )? {
            Some(row) => snapshot_of(&row, 0),
            None => Ok(None),
        }
    }

    fn write_snapshots(&self, writes: &[SnapshotWrite]) -> Result<usize, StoreError> {
        if writes.is_empty() {
            return Ok(0);
        }
        let docs: Vec<Uuid> = writes.iter().map(|w| doc_uuid(&w.doc_id)).collect();
        let throughs: Vec<i64> = writes.iter().map(|w| sql_seq(w.through)).collect();
        let has: Vec<bool> = writes.iter().map(|w| w.snapshot.is_some()).collect();
        let seqs: Vec<i64> = writes
            .iter()
            .map(|w| w.snapshot.as_ref().map_or(0, |s| sql_seq(s.seq)))
            .collect();
        let bytes: Vec<&[u8]> = writes
            .iter()
            .map(|w| w.snapshot.as_ref().map_or(&[][..], |s| s.bytes.as_slice()))
            .collect();
        let hashes: Vec<&[u8]> = writes
            .iter()
            .map(|w| w.snapshot.as_ref().map_or(&[][..], |s| s.hashes.as_slice()))
            .collect();
        // One statement for the batch: a document is marked compacted only if no other
        // compaction got as far meanwhile, and only a marked document's snapshot is written
        // (or removed, when it did not build).
        let row = self.client()?.query_one(
            "WITH w AS (
                 SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bool[], $4::int8[],
                                      $5::bytea[], $6::bytea[]) AS w(d, through, has, s, b, h)
             ), marked AS (
                 UPDATE documents SET snap_seq = w.through FROM w
                 WHERE documents.doc_id = w.d AND documents.snap_seq < w.through
                 RETURNING documents.doc_id
             ), upserted AS (
                 INSERT INTO snapshots (doc_id, seq, bytes, hashes)
                 SELECT w.d, w.s, w.b, w.h FROM w JOIN marked m ON m.doc_id = w.d WHERE w.has
                 ON CONFLICT (doc_id) DO UPDATE
                 SET seq = excluded.seq, bytes = excluded.bytes, hashes = excluded.hashes
             ), deleted AS (
                 DELETE FROM snapshots s USING w, marked m
                 WHERE s.doc_id = w.d AND m.doc_id = w.d AND NOT w.has
             )
             SELECT count(*) FROM marked",
            &[&docs, &throughs, &has, &seqs, &bytes, &hashes],
        )?;
        let stored: i64 = row.try_get(0)?;
        Ok(usize::try_from(stored).unwrap_or(0))
    }

    fn snapshots(
        &self,
        docs: &[DocId],
    ) -> Result<std::collections::HashMap<DocId, StoredSnapshot>, StoreError> {
        let ids: Vec<Uuid> = docs.iter().map(doc_uuid).collect();
        let mut found = std::collections::HashMap::new();
        for row in self.client()?.query(
            "SELECT doc_id, seq, bytes, hashes FROM snapshots WHERE doc_id = ANY($1)",
            &[&ids],
        )? {
            let doc: Uuid = row.try_get(0)?;
            if let Some(snapshot) = snapshot_of(&row, 1)? {
                found.insert(*doc.as_bytes(), snapshot);
            }
        }
        Ok(found)
    }

    fn compaction_lease(&self) -> Result<bool, StoreError> {
        let mut lease = self.lease.lock().unwrap_or_else(PoisonError::into_inner);
        if lease.as_ref().is_some_and(Client::is_closed) {
            *lease = None;
        }
        let client = match lease.as_mut() {
            Some(client) => client,
            None => lease.insert(self.config.connect(NoTls)?),
        };
        // Session-level: held until this connection closes (this process stops or dies).
        // Taking it again while held succeeds and stacks, so count it once.
        let held: bool = client
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory'
                     AND pid = pg_backend_pid() AND objid = ($1::bigint & x'ffffffff'::bigint)::oid
                     AND granted)",
                &[&LEASE_KEY],
            )?
            .get(0);
        if held {
            return Ok(true);
        }
        let got: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&LEASE_KEY])?
            .get(0);
        Ok(got)
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
        let mut client = self.client()?;
        let ws = *workspace.as_uuid();
        let after: Option<Uuid> = after.as_ref().map(doc_uuid);
        let (through, limit) = (sql_seq(through), sql_limit(limit));
        // The directory's rows first (kind and scope only), to decide which snapshots to read.
        let rows = client.query(
            "SELECT d.doc_id, d.kind, d.scope FROM documents d
             WHERE d.workspace = $1 AND ($2::uuid IS NULL OR d.doc_id > $2)
               AND d.first_seq <= $3
             ORDER BY d.doc_id LIMIT $4",
            &[&ws, &after, &through, &limit],
        )?;
        let mut picked: Vec<(Uuid, bool)> = Vec::with_capacity(rows.len());
        for row in &rows {
            let kind: String = row.try_get(1)?;
            let scope: Option<String> = row.try_get(2)?;
            picked.push((row.try_get(0)?, wanted(&kind, scope.as_deref())));
        }
        let ids: Vec<Uuid> = picked.iter().filter(|(_, w)| *w).map(|(d, _)| *d).collect();
        let mut snapshots: HashMap<Uuid, StoredSnapshot> = HashMap::new();
        if !ids.is_empty() {
            for row in client.query(
                "SELECT doc_id, seq, bytes, hashes FROM snapshots WHERE doc_id = ANY($1)",
                &[&ids],
            )? {
                if let Some(s) = snapshot_of(&row, 1)? {
                    snapshots.insert(row.try_get(0)?, s);
                }
            }
        }
        for (doc, wanted) in picked {
            if !each(*doc.as_bytes(), wanted, snapshots.remove(&doc)) {
                break;
            }
        }
        Ok(())
    }

    fn document_changes(
        &self,
        workspace: WorkspaceId,
        docs: &[(DocId, u64)],
        through: Option<u64>,
        each: &mut dyn FnMut(DocChange) -> bool,
    ) -> Result<(), StoreError> {
        if docs.is_empty() {
            return Ok(());
        }
        let mut client = self.client()?;
        let ws = *workspace.as_uuid();
        let ids: Vec<Uuid> = docs.iter().map(|(d, _)| doc_uuid(d)).collect();
        let afters: Vec<i64> = docs.iter().map(|(_, a)| sql_seq(*a)).collect();
        let through = through.map_or(i64::MAX, sql_seq);
        let params: [&(dyn ToSql + Sync); 4] = [&ws, &ids, &afters, &through];
        let mut rows = client.query_raw(
            "SELECT q.d, c.seq, c.hash, c.bytes
             FROM unnest($2::uuid[], $3::int8[]) WITH ORDINALITY AS q(d, a, o)
             JOIN changes c ON c.workspace = $1 AND c.doc_id = q.d AND c.seq > q.a
                 AND c.seq <= $4
             ORDER BY q.o, c.seq",
            params,
        )?;
        while let Some(row) = rows.next()? {
            let doc: Uuid = row.try_get(0)?;
            let change = DocChange {
                doc_id: *doc.as_bytes(),
                seq: seq(row.try_get(1)?),
                hash: hash(row.try_get(2)?)?,
                bytes: row.try_get(3)?,
            };
            if !each(change) {
                break;
            }
        }
        Ok(())
    }

    fn log_extent(&self, workspace: WorkspaceId) -> Result<Option<LogExtent>, StoreError> {
        self.read_log_extent(workspace)
    }

    fn changes(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(ChangeRow) -> bool,
    ) -> Result<(), StoreError> {
        self.read_changes(workspace, after, limit, each)
    }

    fn document_rows(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        limit: usize,
        each: &mut dyn FnMut(DocumentRow) -> bool,
    ) -> Result<(), StoreError> {
        self.read_document_rows(workspace, after, limit, each)
    }

    fn document_log(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
        each: &mut dyn FnMut(u64, Hash) -> bool,
    ) -> Result<(), StoreError> {
        self.read_document_log(workspace, doc, each)
    }

    fn count_documents(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        self.read_count_documents(workspace)
    }

    fn size(&self) -> Result<u64, StoreError> {
        self.read_size()
    }

    fn export(&self, each: &mut dyn FnMut(Row) -> bool) -> Result<(), StoreError> {
        self.export_rows(each)
    }

    fn import(&self, batch: &[Row]) -> Result<(), StoreError> {
        self.import_rows(batch)
    }

    fn heads(&self) -> Result<Option<Box<dyn HeadFeed>>, StoreError> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&format!("LISTEN {CHANNEL}"))?;
        Ok(Some(Box::new(Listener { client })))
    }

    fn pool_state(&self) -> Option<PoolState> {
        let pool = self.pool.as_ref()?;
        let state = pool.state();
        Some(PoolState {
            connections: state.connections,
            idle: state.idle_connections,
            max: pool.max_size(),
        })
    }
}

/// Writes an append in one statement (data-modifying CTEs): the new documents (with the
/// scope and position of their latest change in the batch), the changes, the scope and
/// position of the documents that existed, the head, and the notification every relay
/// process listening on [`CHANNEL`] gets when (and only if) the transaction commits.
fn write_append(
    tx: &mut postgres::Transaction<'_>,
    workspace: WorkspaceId,
    append: &Append,
) -> Result<(), StoreError> {
    let ws = *workspace.as_uuid();
    let c = &append.changes;
    // Each document's latest change in the batch: its scope and last position.
    let mut latest: std::collections::HashMap<DocId, &super::NewChange> =
        std::collections::HashMap::new();
    for change in c {
        latest.insert(change.doc_id, change);
    }
    let created: std::collections::HashSet<DocId> =
        append.documents.iter().map(|d| d.doc_id).collect();

    let new_ids: Vec<Uuid> = append
        .documents
        .iter()
        .map(|d| doc_uuid(&d.doc_id))
        .collect();
    let new_kinds: Vec<&str> = append.documents.iter().map(|d| d.kind.as_str()).collect();
    let new_firsts: Vec<i64> = append
        .documents
        .iter()
        .map(|d| sql_seq(d.first_seq))
        .collect();
    let new_creators: Vec<Uuid> = append
        .documents
        .iter()
        .map(|d| *d.created_by.as_uuid())
        .collect();
    let new_latest: Vec<Option<&super::NewChange>> = append
        .documents
        .iter()
        .map(|d| latest.get(&d.doc_id).copied())
        .collect();
    let new_owners: Vec<Option<&str>> = new_latest
        .iter()
        .map(|l| l.and_then(|c| c.owner.as_deref()))
        .collect();
    let new_teams: Vec<Option<&str>> = new_latest
        .iter()
        .map(|l| l.and_then(|c| c.teams.as_deref()))
        .collect();
    let new_lasts: Vec<i64> = new_latest
        .iter()
        .zip(&new_firsts)
        .map(|(l, first)| l.map_or(*first, |c| sql_seq(c.seq)))
        .collect();

    let seqs: Vec<i64> = c.iter().map(|c| sql_seq(c.seq)).collect();
    let change_hashes: Vec<&[u8]> = c.iter().map(|c| c.hash.as_slice()).collect();
    let change_docs: Vec<Uuid> = c.iter().map(|c| doc_uuid(&c.doc_id)).collect();
    let kinds: Vec<&str> = c.iter().map(|c| c.kind.as_str()).collect();
    let deps: Vec<&[u8]> = c.iter().map(|c| c.deps.as_slice()).collect();
    let authors: Vec<Uuid> = c.iter().map(|c| *c.author.as_uuid()).collect();
    let arrived: Vec<i64> = c.iter().map(|c| c.arrived_at.timestamp_millis()).collect();
    let bytes: Vec<&[u8]> = c.iter().map(|c| c.bytes.as_slice()).collect();

    let existing: Vec<&&super::NewChange> = latest
        .iter()
        .filter(|(doc, _)| !created.contains(*doc))
        .map(|(_, c)| c)
        .collect();
    let old_ids: Vec<Uuid> = existing.iter().map(|c| doc_uuid(&c.doc_id)).collect();
    let old_owners: Vec<Option<&str>> = existing.iter().map(|c| c.owner.as_deref()).collect();
    let old_teams: Vec<Option<&str>> = existing.iter().map(|c| c.teams.as_deref()).collect();
    let old_lasts: Vec<i64> = existing.iter().map(|c| sql_seq(c.seq)).collect();
    let old_scopes: Vec<Option<&str>> = existing.iter().map(|c| c.scope.as_deref()).collect();
    let new_scopes: Vec<Option<&str>> = new_latest
        .iter()
        .map(|l| l.and_then(|c| c.scope.as_deref()))
        .collect();
    let change_scopes: Vec<Option<&str>> = c.iter().map(|c| c.scope.as_deref()).collect();
    let change_prev: Vec<Option<&str>> = c.iter().map(|c| c.prev_scope.as_deref()).collect();
    let new_shapes: Vec<Option<&str>> = new_latest
        .iter()
        .map(|l| l.map(|c| c.shape.as_str()))
        .collect();
    let old_shapes: Vec<&str> = existing.iter().map(|c| c.shape.as_str()).collect();

    let payload = format!(
        "{workspace} {} {}",
        append.head,
        Utc::now().timestamp_millis()
    );
    let head = sql_seq(append.head);
    // The changes' foreign key to their document is checked at the end of the statement,
    // when the new documents are in.
    tx.execute(
        "WITH new_documents AS (
             INSERT INTO documents
                 (doc_id, workspace, kind, first_seq, created_by, owner, teams, last_seq, scope,
                  shape)
             SELECT d, $1, k, f, c, o, t, l, sc, sh
             FROM unnest($2::uuid[], $3::text[], $4::int8[], $5::uuid[], $6::text[],
                         $7::text[], $8::int8[], $24::text[], $28::text[])
                  AS x(d, k, f, c, o, t, l, sc, sh)
         ), new_changes AS (
             INSERT INTO changes
                 (workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes, scope,
                  prev_scope)
             SELECT $1, s, h, d, k, p, a, t, b, sc, ps
             FROM unnest($9::int8[], $10::bytea[], $11::uuid[], $12::text[], $13::bytea[],
                         $14::uuid[], $15::int8[], $16::bytea[], $25::text[], $26::text[])
                  AS x(s, h, d, k, p, a, t, b, sc, ps)
         ), scopes AS (
             UPDATE documents SET owner = u.o, teams = u.t, last_seq = u.l, scope = u.sc,
                 shape = u.sh
             FROM unnest($17::uuid[], $18::text[], $19::text[], $20::int8[], $27::text[],
                         $29::text[])
                  AS u(d, o, t, l, sc, sh)
             WHERE documents.doc_id = u.d
         ), head AS (
             UPDATE workspaces SET head = $21 WHERE id = $1
         )
         SELECT pg_notify($22, $23)",
        &[
            &ws,
            &new_ids,
            &new_kinds,
            &new_firsts,
            &new_creators,
            &new_owners,
            &new_teams,
            &new_lasts,
            &seqs,
            &change_hashes,
            &change_docs,
            &kinds,
            &deps,
            &authors,
            &arrived,
            &bytes,
            &old_ids,
            &old_owners,
            &old_teams,
            &old_lasts,
            &head,
            &CHANNEL,
            &payload,
            &new_scopes,
            &change_scopes,
            &change_prev,
            &old_scopes,
            &new_shapes,
            &old_shapes,
        ],
    )?;
    if !append.directory.is_empty() {
        let ids: Vec<Uuid> = append
            .directory
            .iter()
            .map(|d| doc_uuid(&d.doc_id))
            .collect();
        let attrs: Vec<&str> = append.directory.iter().map(|d| d.attrs.as_str()).collect();
        tx.execute(
            "WITH attrs AS (
                 UPDATE documents SET attrs = u.a
                 FROM unnest($2::uuid[], $3::text[]) AS u(d, a) WHERE documents.doc_id = u.d
             )
             UPDATE workspaces SET access_version = access_version + 1 WHERE id = $1",
            &[&ws, &ids, &attrs],
        )?;
    }
    Ok(())
}

/// A connection listening on [`CHANNEL`].
struct Listener {
    client: Client,
}

impl HeadFeed for Listener {
    fn next(&mut self, timeout: Duration) -> Result<Vec<RaisedHead>, StoreError> {
        let mut raised = Vec::new();
        let mut notifications = self.client.notifications();
        // The first waits up to `timeout`; the rest are what arrived with it.
        let first = notifications.timeout_iter(timeout).next()?;
        if let Some(first) = first {
            raised.extend(parse_payload(first.payload()));
            let mut pending = notifications.iter();
            while let Some(n) = pending.next()? {
                raised.extend(parse_payload(n.payload()));
            }
        }
        Ok(raised)
    }
}

fn parse_payload(payload: &str) -> Option<RaisedHead> {
    let mut parts = payload.split(' ');
    let workspace = parts.next()?.parse().ok()?;
    let head = parts.next()?.parse().ok()?;
    let committed_at = DateTime::from_timestamp_millis(parts.next()?.parse().ok()?)?;
    Some(RaisedHead {
        workspace,
        head,
        committed_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_locations() {
        assert_eq!(
            redacted("postgres://relay:s3cret@db.example:5432/crm"),
            "postgres://relay:***@db.example:5432/crm"
        );
        assert_eq!(
            redacted("postgres://relay@db.example/crm"),
            "postgres://relay@db.example/crm"
        );
        assert_eq!(redacted("postgres://db/crm"), "postgres://db/crm");
    }

    #[test]
    fn payloads_round_trip_and_garbage_is_ignored() {
        let ws = WorkspaceId::new();
        let raised = parse_payload(&format!("{ws} 42 1700000000000")).expect("parses");
        assert_eq!((raised.workspace, raised.head), (ws, 42));
        assert_eq!(parse_payload("nonsense"), None);
        assert_eq!(parse_payload(&format!("{ws} x 1")), None);
    }
}
