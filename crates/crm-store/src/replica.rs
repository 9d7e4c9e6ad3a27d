//! The replica: opening and checking the SQLite file, loading documents on demand, and
//! writing local edits.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use crm_model::automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use crm_model::{Author, Edit, Kind, Record, RecordId, Role, Stamp, doc};
use lru::LruCache;
use rusqlite::{
    Connection, OpenFlags, OptionalExtension, Transaction, TransactionBehavior, params,
};

use crate::error::{Result, StoreError};
use crate::projection::{self, Fts, LastChange};
use crate::schema::{self, APPLICATION_ID, FORMAT_VERSION};

/// The file name of the replica database inside a data directory.
pub const REPLICA_FILE: &str = "replica.db";

/// How many loaded documents a store keeps in memory. Documents are loaded on demand; the
/// cache only saves reloading the few being worked on.
const CACHE_DOCS: usize = 64;

/// Prepared statements kept per connection. One write uses about twenty distinct statements,
/// two of them per record kind, plus the projection's per-column updates; rusqlite's default
/// of 16 made a write re-prepare statements the previous write had just evicted.
const STATEMENT_CACHE: usize = 256;

/// A document's changes not yet folded into its snapshot; past this, the next write folds.
const COMPACT_AFTER: i64 = 32;

/// Who this replica is. The user's name starts as the one given to [`Store::init`]; the
/// rest comes from the relay ([`Store::adopt_identity`]), the source of identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Identity {
    pub replica_id: String,
    pub user: String,
    /// The user's User record, as the relay names it; `None` until the replica has joined
    /// a relay.
    pub user_id: Option<RecordId>,
    pub device: String,
    /// The user's role, as the relay says.
    pub role: Option<Role>,
    /// The teams the user belongs to, as the relay says.
    pub teams: Vec<RecordId>,
    /// The relay's id of this device.
    pub device_id: Option<String>,
    /// The device's key for the relay. A secret: never shown by `Debug`.
    pub access_key: Option<[u8; 32]>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("replica_id", &self.replica_id)
            .field("user", &self.user)
            .field("user_id", &self.user_id)
            .field("device", &self.device)
            .field("role", &self.role)
            .field("teams", &self.teams)
            .field("device_id", &self.device_id)
            .field("access_key", &self.access_key.map(|_| "<secret>"))
            .finish()
    }
}

/// A document row.
pub(crate) struct DocRow {
    pub(crate) docno: i64,
    pub(crate) id: RecordId,
    pub(crate) kind: Option<String>,
    pub(crate) heads: Vec<u8>,
}

/// A device replica: one SQLite file holding every record document, its changes, the
/// projections and the outbox.
pub struct Store {
    pub(crate) conn: Connection,
    dir: PathBuf,
    pub(crate) identity: Identity,
    pub(crate) author: Author,
    /// Every store session writes under its own actor id, so two processes writing the same
    /// replica never produce two different changes with the same (actor, seq).
    pub(crate) actor: ActorId,
    pub(crate) cache: LruCache<RecordId, Automerge>,
    /// The time local writes are stamped with, when not the wall clock (see [`Store::set_clock`]).
    clock: Option<DateTime<Utc>>,
    /// The file of an import's key index while one is started (see `Store::key_index_start`);
    /// deleted when dropped.
    pub(crate) key_file: Option<tempfile::TempPath>,
    /// Why the replica cannot be written, when it was opened for reading only.
    read_only: Option<ReadOnly>,
}

/// Why a replica was opened for reading only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadOnly {
    /// The file or its directory is write-protected.
    Permission,
    /// Writing failed: the disk is full, or refuses writes.
    NoSpace,
}

impl std::fmt::Display for ReadOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadOnly::Permission => {
                "the replica is read-only (no write permission on it or its directory)"
            }
            ReadOnly::NoSpace => {
                "the replica cannot be written (the disk is full or refuses writes)"
            }
        })
    }
}

/// A `file:` URI opening `path` read-only as a file nobody changes: SQLite then needs no
/// lock, `-shm` or `-wal` file, so it reads a replica in a read-only directory or on a full
/// disk.
pub(crate) fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => {
                uri.push(char::from(byte));
            }
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri.push_str("?mode=ro&immutable=1");
    uri
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("identity", &self.identity)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Creates a new replica in `dir` for `user` on `device`, with a User record of the
    /// replica's own so it works at once with no relay (the user is admin of their own
    /// replica). That record is *local*: it is never pushed, since the relay's directory is
    /// the source of users. When the replica joins a relay, [`Store::adopt_identity`] takes
    /// the relay's identity, what the local user owns is claimed by the relay's user, and the
    /// local record goes.
    pub fn init(dir: &Path, user: &str, device: &str) -> Result<Store> {
        let user = user.trim();
        let device = device.trim();
        for (what, value) in [("user", user), ("device", device)] {
            if value.is_empty()
                || value.chars().any(char::is_control)
                || value.chars().count() > 100
            {
                return Err(crm_model::ValidationError::InvalidValue {
                    field: what.into(),
                    value: value.into(),
                    expected: "a name of 1 to 100 characters on one line".into(),
                }
                .into());
            }
        }
        let path = dir.join(REPLICA_FILE);
        if path.exists() {
            return Err(StoreError::AlreadyInitialized { dir: dir.into() });
        }
        std::fs::create_dir_all(dir).map_err(|source| StoreError::Io {
            path: dir.into(),
            source,
        })?;
        let mut conn = Connection::open(&path)?;
        configure(&mut conn, &path)?;
        let replica_id = uuid::Uuid::now_v7().to_string();
        {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(schema::CORE)?;
            tx.execute_batch(schema::QUARANTINE)?;
            tx.execute_batch(schema::OUT_OF_SCOPE)?;
            tx.execute_batch(schema::REFUSED)?;
            tx.execute_batch(&schema::PROJECTIONS)?;
            tx.pragma_update(None, "application_id", APPLICATION_ID)?;
            tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
            let mut meta = tx.prepare("INSERT INTO meta (key, value) VALUES (?1, ?2)")?;
            for (k, v) in [
                ("replica_id", replica_id.as_str()),
                ("user", user),
                ("device", device),
                ("created_at", &crm_model::format_time(&Utc::now())),
                ("projection", &schema::projection_fingerprint()),
            ] {
                meta.execute(params![k, v])?;
            }
            drop(meta);
            tx.commit()?;
        }
        let mut store = Store::from_conn(conn, dir)?;
        let mut me = Edit::new(Kind::User);
        me.set("name", user)?;
        me.set("role", "admin")?;
        let record = store.create(&me)?;
        for key in [
            crate::access::meta::USER_ID,
            crate::access::meta::LOCAL_USER,
            crate::access::meta::INIT_USER,
        ] {
            store.conn.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)",
                params![key, record.id.to_string()],
            )?;
        }
        store.identity.user_id = Some(record.id);
        Ok(store)
    }

    /// Opens the replica in `dir`, refusing anything that is not a replica this build can read.
    ///
    /// A replica that cannot be written (a read-only file or directory, a full disk) opens
    /// for reading: every read works, and a write fails with [`StoreError::ReadOnly`]
    /// saying why (see [`Store::read_only`]).
    pub fn open(dir: &Path) -> Result<Store> {
        let path = dir.join(REPLICA_FILE);
        if !path.is_file() {
            return Err(StoreError::NotAReplica { dir: dir.into() });
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::EmptyFile { path });
        }
        match Self::open_as(dir, &path, None) {
            Err(e) => match e.cannot_write() {
                // SQLite could not make or grow the files a reader of a WAL database shares
                // (`-shm`, `-wal`): read the file as it is, as SQLite's `immutable` does.
                // What a WAL left by a process that did not close holds is then not seen.
                Some(why) => {
                    let store = Self::open_as(dir, &path, Some(why)).map_err(|_| e)?;
                    // Reads are what the user asked for; a write says why it fails.
                    tracing::info!(
                        replica = %path.display(),
                        "{why}: reading the replica as it is on disk; writes will fail"
                    );
                    Ok(store)
                }
                None => Err(e),
            },
            ok => ok,
        }
    }

    /// Why this replica cannot be written, when it was opened for reading only.
    pub fn read_only(&self) -> Option<ReadOnly> {
        self.read_only
    }

    /// Fails with [`StoreError::ReadOnly`] when this replica was opened for reading only.
    pub(crate) fn writable(&self) -> Result<()> {
        match self.read_only {
            Some(why) => Err(StoreError::ReadOnly {
                path: self.dir.join(REPLICA_FILE),
                why,
            }),
            None => Ok(()),
        }
    }

    /// Opens and checks the replica file: for writing (`immutable` is `None`), else read-only
    /// without touching any other file.
    fn open_as(dir: &Path, path: &Path, immutable: Option<ReadOnly>) -> Result<Store> {
        let corrupt = |source| StoreError::Corrupt {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = match immutable {
            None => Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
            Some(_) => Connection::open_with_flags(
                immutable_uri(path),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            ),
        }
        .map_err(corrupt)?;
        // A write-protected file opens read-only even when asked for writing.
        let read_only = match immutable {
            Some(why) => Some(why),
            None if conn.is_readonly(rusqlite::MAIN_DB)? => Some(ReadOnly::Permission),
            None => None,
        };
        let path = path.to_path_buf();
        // Check what the file is before anything writes to it.
        let version = format_of(&conn, &path)?;
        conn.query_row("SELECT count(*) FROM documents", [], |_| Ok(()))
            .map_err(corrupt)?;
        match read_only {
            None => {
                configure(&mut conn, &path)?;
                migrate(&mut conn, version)?;
            }
            // An older format stays as it is: reads of what it lacks (the quarantine) find
            // nothing.
            Some(_) => configure_reader(&conn)?,
        }
        let mut store = Store::from_conn(conn, dir)?;
        store.read_only = read_only;
        if read_only.is_none() {
            // Upkeep that writes: with the disk full it fails, and reading must still work.
            let upkeep = store.ensure_projections().and_then(|()| {
                // A process that died during a large pull left the read indexes dropped.
                store.restore_read_indexes()
            });
            if let Err(e) = upkeep {
                match e.cannot_write() {
                    Some(why) => tracing::warn!(error = %e, "{why}: the replica's upkeep waits"),
                    None => return Err(e),
                }
            }
        }
        Ok(store)
    }

    fn from_conn(conn: Connection, dir: &Path) -> Result<Store> {
        let meta = |key: &str| -> Result<Option<String>> {
            Ok(conn
                .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
                .optional()?)
        };
        // What does not parse (a hand-edited meta table) reads as not given: the relay gives
        // it again at the next sync.
        let identity = Identity {
            replica_id: meta("replica_id")?.unwrap_or_default(),
            user: meta("user")?.unwrap_or_default(),
            user_id: meta(crate::access::meta::USER_ID)?.and_then(|s| s.parse().ok()),
            device: meta("device")?.unwrap_or_default(),
            role: meta(crate::access::meta::ROLE)?.and_then(|s| s.parse().ok()),
            teams: meta(crate::access::meta::TEAMS)?
                .map(|s| crate::access::parse_teams(&s))
                .unwrap_or_default(),
            device_id: meta(crate::access::meta::DEVICE_ID)?,
            access_key: meta(crate::access::meta::ACCESS_KEY)?
                .and_then(|s| crate::access::parse_key(&s)),
        };
        let author = author_of(&identity);
        Ok(Store {
            conn,
            dir: dir.into(),
            identity,
            author,
            actor: ActorId::random(),
            cache: LruCache::new(NonZeroUsize::new(CACHE_DOCS).unwrap_or(NonZeroUsize::MIN)),
            clock: None,
            key_file: None,
            read_only: None,
        })
    }

    /// Rebuilds the projections when this build's projection schema differs from the one the
    /// replica was projected with.
    fn ensure_projections(&mut self) -> Result<()> {
        let stored: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'projection'", [], |r| {
                r.get(0)
            })
            .optional()?;
        if stored.as_deref() != Some(schema::projection_fingerprint().as_str()) {
            tracing::info!("projection schema changed; rebuilding projections");
            self.reindex()?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    pub(crate) fn begin(&mut self) -> Result<Transaction<'_>> {
        self.writable()?;
        Ok(self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?)
    }

    /// The time the next local write is stamped with: the wall clock, or the time given to
    /// [`Store::set_clock`].
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.unwrap_or_else(Utc::now)
    }

    /// Stamps this session's local writes with `at` instead of the wall clock (`None` goes
    /// back to the wall clock). For recording what happened earlier: sample data with a
    /// realistic past, imports of historical records, and tests of time-based workflows. The
    /// author is still this replica's user and device.
    pub fn set_clock(&mut self, at: Option<DateTime<Utc>>) {
        self.clock = at;
    }

    /// The kind of a stored record.
    pub fn kind_of(&self, id: RecordId) -> Result<Kind> {
        let kind: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT kind FROM documents WHERE id = ?1",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        match kind.flatten() {
            Some(k) => k.parse().map_err(|_| StoreError::NotFound(id)),
            None => Err(StoreError::NotFound(id)),
        }
    }

    /// Creates a record from `edit` and returns it. Gives new tickets, quotes, contracts and
    /// orders a provisional number and new records the local user as owner, unless given.
    pub fn create(&mut self, edit: &Edit) -> Result<Record> {
        self.writable()?;
        self.check_create(edit)?;
        let now = self.now();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (record, document) = create_in(
            &tx,
            edit,
            self.identity.user_id,
            &self.author,
            &self.actor,
            now,
        )?;
        commit(tx)?;
        self.cache.put(record.id, document);
        Ok(record)
    }

    /// Applies `edit` to record `id` as one change and returns the record as it now is.
    pub fn edit(&mut self, id: RecordId, edit: &Edit) -> Result<Record> {
        self.writable()?;
        self.check_edit(id, edit)?;
        let now = self.now();
        let cached = self.cache.pop(&id);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (record, document, changed) = edit_in(
            &tx,
            id,
            edit,
            cached,
            &Writing {
                author: &self.author,
                actor: &self.actor,
                now,
                fts: Fts::Now,
            },
        )?;
        if changed {
            commit(tx)?;
        } else {
            drop(tx);
        }
        self.cache.put(id, document);
        Ok(record)
    }

    /// Archives (or restores) a record. Records are never deleted.
    pub fn set_archived(&mut self, id: RecordId, archived: bool) -> Result<Record> {
        let mut edit = Edit::new(self.kind_of(id)?);
        edit.archive(archived);
        self.edit(id, &edit)
    }

    /// Settles a field that holds concurrent values by writing `value` over all of them.
    pub fn resolve(&mut self, id: RecordId, field: &str, value: &str) -> Result<Record> {
        let record = self.get(id)?;
        if !record.conflicts.contains_key(field) {
            return Err(StoreError::NoConflict {
                id,
                field: field.into(),
            });
        }
        let mut edit = Edit::new(record.kind);
        if field == "archived" {
            let archived = crm_model::FieldValue::parse(
                &crm_model::FieldDef::new("archived", crm_model::FieldType::Bool),
                value,
            )?;
            edit.archive(archived == crm_model::FieldValue::Bool(true));
        } else {
            edit.set(field, value)?;
        }
        self.write_over(id, &edit)
    }

    /// Like [`Store::edit`], but writes even when the value already shows, so it replaces
    /// concurrent values.
    fn write_over(&mut self, id: RecordId, edit: &Edit) -> Result<Record> {
        // Unsetting first would lose nothing but add noise; a put over a conflicted key
        // already supersedes every value it has seen, and `put_if_changed` only skips keys
        // without a conflict.
        self.edit(id, edit)
    }

    /// Reads a record from its document (not the projection).
    pub fn get(&mut self, id: RecordId) -> Result<Record> {
        let document = self.load_document(id)?;
        let record = doc::read(&document, None).map_err(|source| StoreError::doc(id, source));
        self.cache.put(id, document);
        record
    }

    /// Reads a record, checking that it is of `kind`.
    pub fn get_kind(&mut self, kind: Kind, id: RecordId) -> Result<Record> {
        let record = self.get(id)?;
        if record.kind != kind {
            return Err(StoreError::WrongKind {
                id,
                expected: kind,
                found: record.kind,
            });
        }
        Ok(record)
    }

    /// Loads a document from the cache or the database.
    pub(crate) fn load_document(&mut self, id: RecordId) -> Result<Automerge> {
        let cached = self.cache.pop(&id);
        let tx = self.conn.transaction()?;
        let row = doc_row(&tx, id)?.ok_or(StoreError::NotFound(id))?;
        row_kind(id, &row)?;
        let document = load(&tx, id, &row, cached, &self.actor)?;
        drop(tx);
        Ok(document)
    }

    pub(crate) fn cache_put(&mut self, id: RecordId, document: Automerge) {
        self.cache.put(id, document);
    }

    pub(crate) fn cache_take(&mut self, id: &RecordId) -> Option<Automerge> {
        self.cache.pop(id)
    }

    pub(crate) fn actor(&self) -> &ActorId {
        &self.actor
    }

    /// Drops every projection and rebuilds it from the documents, in one transaction.
    pub fn reindex(&mut self) -> Result<usize> {
        let actor = self.actor.clone();
        self.cache.clear();
        let tx = self.begin()?;
        tx.execute_batch(&schema::drop_projections_sql())?;
        tx.execute_batch(&schema::PROJECTIONS)?;
        let rows: Vec<(i64, String, Option<String>, Vec<u8>)> = {
            let mut stmt =
                tx.prepare("SELECT docno, id, kind, heads FROM documents ORDER BY docno")?;
            stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut n = 0;
        for (docno, id, kind, heads) in rows {
            let Ok(id) = id.parse::<RecordId>() else {
                continue;
            };
            let row = DocRow {
                docno,
                id,
                kind,
                heads,
            };
            let document = load(&tx, id, &row, None, &actor)?;
            if project(&tx, &row, &document)? {
                n += 1;
            }
        }
        tx.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('projection', ?1)",
            [schema::projection_fingerprint()],
        )?;
        commit(tx)?;
        Ok(n)
    }
}

/// The author of this replica's changes: its user and device, with the relay's ids of both
/// once it has joined a relay.
pub(crate) fn author_of(identity: &Identity) -> Author {
    let author = Author::new(identity.user.clone(), identity.device.clone());
    match (identity.user_id, &identity.device_id) {
        (Some(user_id), Some(device_id)) => author.with_ids(user_id.to_string(), device_id),
        _ => author,
    }
}

/// Upgrades a replica of an older format (`version`) in place, in one transaction: a crash
/// leaves it at its old format, to be upgraded at the next open.
fn migrate(conn: &mut Connection, version: i64) -> Result<()> {
    if version >= FORMAT_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Another process may have upgraded it while this one waited for the lock.
    let now: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for step in now..FORMAT_VERSION {
        let sql = usize::try_from(step - 1)
            .ok()
            .and_then(|i| schema::MIGRATIONS.get(i))
            .ok_or(StoreError::Internal(
                "no migration from this replica format",
            ))?;
        tx.execute_batch(sql)?;
        tracing::info!(from = step, to = step + 1, "replica format upgraded");
    }
    tx.pragma_update(None, "user_version", FORMAT_VERSION)?;
    tx.commit()?;
    Ok(())
}

fn configure(conn: &mut Connection, path: &Path) -> Result<()> {
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // NORMAL: a commit is durable against a crash of the process (the WAL is written before
    // the commit returns) but not against power loss until the next checkpoint; FULL would
    // fsync every commit (about 4 ms here, eight times the edit budget).
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Deleted content is overwritten with zeros, in pages and in freed pages: a record
    // purged because it left the user's scope (`access.rs`) must not stay readable in the
    // file, nor must the old versions of edited values and snapshots. Every writing
    // connection sets it, since it only covers what that connection deletes. Measured on a
    // debug build: about +8% on a 10k-record import and +10 to 18% per edit (1.5 to 1.8 ms),
    // for the freed pages it writes as zeros.
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    // Statement journals (and temporary tables) in memory. SQLite keeps a statement journal
    // for most writes inside a transaction; on file it spills to disk past 64 KiB and is then
    // rewritten with a system call per page for the rest of the transaction, which cost a
    // fresh device's first sync a fifth of its time. In memory it is emptied after each
    // statement, so it stays as small as one statement's pages.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // Full-text rows waiting for the commit live in an in-memory database of their own: they
    // are few (one transaction's) and rewritten all the time, and in the temporary file
    // they cost a fresh device's first sync about a tenth of its time.
    conn.execute_batch(projection::SEARCH_PENDING)?;
    crate::checkpoint::install(conn, path.to_path_buf())?;
    // Query-planner statistics, so a list filtered on a rare value uses that field's index
    // instead of walking the sort order: bounded sampling, refreshed when SQLite sees a
    // need (at open here, and again when the store is dropped). It may write: with the disk
    // full it fails, and reading must still work.
    conn.pragma_update(None, "analysis_limit", 400)?;
    if let Err(e) = conn.execute_batch("PRAGMA optimize = 0x10002;") {
        tracing::debug!(error = %e, "PRAGMA optimize failed");
    }
    Ok(())
}

/// The settings of a connection that only reads (see [`Store::read_only`]): nothing that
/// writes to the file.
fn configure_reader(conn: &Connection) -> Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    Ok(())
}

impl Drop for Store {
    fn drop(&mut self) {
        // Opportunistic: when another process holds the writer (or the replica is read-only),
        // skip it rather than wait for the busy timeout on the way out.
        let _ = self.conn.busy_timeout(std::time::Duration::ZERO);
        if let Err(e) = self.conn.execute_batch("PRAGMA optimize;") {
            tracing::debug!(error = %e, "PRAGMA optimize failed");
        }
    }
}

/// Commits a transaction that may have projected records, writing its pending full-text rows
/// first (see [`projection::flush_search`]).
pub(crate) fn commit(tx: Transaction<'_>) -> Result<()> {
    projection::flush_search(&tx)?;
    tx.commit()?;
    Ok(())
}

/// The replica format of the file open on `conn`, checked to be a replica this build reads:
/// not another application's file, not a newer format.
pub(crate) fn format_of(conn: &Connection, path: &Path) -> Result<i64> {
    let corrupt = |source| StoreError::Corrupt {
        path: path.to_path_buf(),
        source,
    };
    let app_id: i64 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(corrupt)?;
    if app_id != APPLICATION_ID {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(corrupt)?;
    if version > FORMAT_VERSION {
        return Err(StoreError::NewerVersion {
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    Ok(version)
}

pub(crate) fn doc_row(tx: &Transaction<'_>, id: RecordId) -> Result<Option<DocRow>> {
    Ok(tx
        .prepare_cached("SELECT docno, kind, heads FROM documents WHERE id = ?1")?
        .query_row([id.to_string()], |r| {
            Ok(DocRow {
                docno: r.get(0)?,
                id,
                kind: r.get(1)?,
                heads: r.get(2)?,
            })
        })
        .optional()?)
}

fn row_kind(id: RecordId, row: &DocRow) -> Result<Kind> {
    row.kind
        .as_deref()
        .and_then(|k| k.parse().ok())
        .ok_or(StoreError::NotFound(id))
}

pub(crate) fn encode_heads(heads: &[ChangeHash]) -> Vec<u8> {
    let mut sorted = heads.to_vec();
    sorted.sort();
    sorted.iter().flat_map(|h| h.0).collect()
}

/// Loads a document: the cached copy when its heads match the database (another process may
/// have written since), else the snapshot plus the loose changes.
pub(crate) fn load(
    tx: &Transaction<'_>,
    id: RecordId,
    row: &DocRow,
    cached: Option<Automerge>,
    actor: &ActorId,
) -> Result<Automerge> {
    if let Some(document) = cached
        && encode_heads(&document.get_heads()) == row.heads
    {
        return Ok(document);
    }
    let snapshot: Option<Vec<u8>> = tx
        .prepare_cached("SELECT snapshot FROM documents WHERE docno = ?1")?
        .query_row([row.docno], |r| r.get(0))?;
    let mut document = match snapshot {
        Some(bytes) => Automerge::load(&bytes).map_err(|e| StoreError::doc(id, e))?,
        None => Automerge::new(),
    };
    let mut stmt = tx.prepare_cached(
        "SELECT bytes FROM changes WHERE docno = ?1 AND in_snapshot = 0 ORDER BY seq",
    )?;
    let changes = stmt
        .query_map([row.docno], |r| r.get::<_, Vec<u8>>(0))?
        .map(|bytes| {
            let bytes = bytes?;
            Change::from_bytes(bytes).map_err(|e| StoreError::StoredChange {
                id,
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    document
        .apply_changes(changes)
        .map_err(|e| StoreError::doc(id, e))?;
    document.set_actor(actor.clone());
    Ok(document)
}

/// Stores the document's last local change, updates the document row and its projection.
fn persist_local(
    tx: &Transaction<'_>,
    row: &DocRow,
    document: &mut Automerge,
    now: DateTime<Utc>,
    fts: Fts,
) -> Result<Record> {
    let id = row.id;
    let Some(mut change) = document.get_last_local_change() else {
        return Err(StoreError::doc(
            id,
            crm_model::DocError::NotARecord("no local change to store"),
        ));
    };
    let hash = change.hash();
    let bytes = change.bytes();
    check_change_size(id, row_kind(id, row)?, false, &bytes)?;
    insert_local_change(tx, row.docno, hash, &bytes, now)?;
    store_document(tx, row, document, 1, now)?;
    let record = doc::read(&*document, None).map_err(|source| StoreError::doc(id, source))?;
    projection::write(tx, row.docno, &record, &last_change(document), fts)?;
    Ok(record)
}

/// Refuses a local change larger than a relay accepts ([`crm_model::MAX_CHANGE_BYTES`], the
/// bytes as stored and pushed): it could never leave this replica, and every later change
/// of the record would wait behind it in the outbox. Called before anything of the write is
/// stored, so the caller's transaction (or batch savepoint) writes nothing.
fn check_change_size(id: RecordId, kind: Kind, created: bool, bytes: &[u8]) -> Result<()> {
    if bytes.len() > crm_model::MAX_CHANGE_BYTES {
        return Err(StoreError::ChangeTooLarge {
            id,
            kind,
            created,
            bytes: bytes.len(),
            max: crm_model::MAX_CHANGE_BYTES,
        });
    }
    Ok(())
}

/// Stores a change made here and queues it for the relay.
fn insert_local_change(
    tx: &Transaction<'_>,
    docno: i64,
    hash: ChangeHash,
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<()> {
    let seq = insert_change(tx, docno, hash, bytes, true, now)?;
    tx.prepare_cached("INSERT INTO outbox (seq) VALUES (?1)")?
        .execute([seq])?;
    Ok(())
}

pub(crate) fn insert_change(
    tx: &Transaction<'_>,
    docno: i64,
    hash: ChangeHash,
    bytes: &[u8],
    local: bool,
    now: DateTime<Utc>,
) -> Result<i64> {
    tx.prepare_cached(
        "INSERT INTO changes (hash, docno, bytes, local, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        &hash.0[..],
        docno,
        bytes,
        local,
        crm_model::format_time(&now)
    ])?;
    Ok(tx.last_insert_rowid())
}

/// Writes the document row's heads after `added` new changes, folding the loose changes into
/// a fresh snapshot once there are enough of them.
pub(crate) fn store_document(
    tx: &Transaction<'_>,
    row: &DocRow,
    document: &Automerge,
    added: i64,
    now: DateTime<Utc>,
) -> Result<()> {
    let heads = encode_heads(&document.get_heads());
    let loose: i64 = tx
        .prepare_cached("SELECT loose FROM documents WHERE docno = ?1")?
        .query_row([row.docno], |r| r.get(0))?;
    let loose = loose + added;
    if loose > COMPACT_AFTER {
        let snapshot = document.save();
        let hashes: Vec<(i64, Vec<u8>)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT seq, hash FROM changes WHERE docno = ?1 AND in_snapshot = 0",
            )?;
            stmt.query_map([row.docno], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?
        };
        let mut still_loose = 0;
        let mut mark = tx.prepare_cached("UPDATE changes SET in_snapshot = 1 WHERE seq = ?1")?;
        for (seq, hash) in hashes {
            let folded = ChangeHash::try_from(hash.as_slice())
                .ok()
                .is_some_and(|h| document.get_change_by_hash(&h).is_some());
            if folded {
                mark.execute([seq])?;
            } else {
                still_loose += 1;
            }
        }
        tx.prepare_cached(
            "UPDATE documents SET heads = ?2, snapshot = ?3, loose = ?4, updated_at = ?5 WHERE docno = ?1",
        )?
        .execute(params![row.docno, heads, snapshot, still_loose, crm_model::format_time(&now)])?;
    } else {
        tx.prepare_cached(
            "UPDATE documents SET heads = ?2, loose = ?3, updated_at = ?4 WHERE docno = ?1",
        )?
        .execute(params![
            row.docno,
            heads,
            loose,
            crm_model::format_time(&now)
        ])?;
    }
    Ok(())
}

/// The time and author of the newest head change.
pub(crate) fn last_change(document: &Automerge) -> LastChange {
    // Change metadata, not whole changes: rebuilding a change from the document is costly.
    let newest = document
        .get_heads()
        .iter()
        .filter_map(|h| document.get_change_meta_by_hash(h))
        .max_by_key(|c| (c.timestamp, c.hash));
    LastChange {
        at: newest
            .as_ref()
            .and_then(|c| crm_model::millis_to_time(c.timestamp * 1000))
            .map(|t| crm_model::format_time(&t)),
        by: newest
            .as_ref()
            .and_then(|c| Author::from_message(c.message.as_deref()))
            .map(|a| a.user),
    }
}

/// Re-projects a document; returns whether it is a readable record. Documents whose creating
/// change has not arrived, or of a kind or schema newer than this build, are kept but not
/// projected.
pub(crate) fn project(tx: &Transaction<'_>, row: &DocRow, document: &Automerge) -> Result<bool> {
    match doc::read(document, None) {
        Ok(record) => {
            if row.kind.as_deref() != Some(record.kind.as_str()) {
                tx.prepare_cached("UPDATE documents SET kind = ?2 WHERE docno = ?1")?
                    .execute(params![row.docno, record.kind.as_str()])?;
                if let Some(old) = row.kind.as_deref().and_then(|k| k.parse().ok()) {
                    projection::remove(tx, row.docno, Some(old))?;
                }
            }
            projection::write(
                tx,
                row.docno,
                &record,
                &last_change(document),
                Fts::AtCommit,
            )?;
            Ok(true)
        }
        Err(e) => {
            tracing::debug!(docno = row.docno, error = %e, "document not projected");
            projection::remove(tx, row.docno, None)?;
            Ok(false)
        }
    }
}

/// Creates a record inside `tx` (see [`Store::create`]): numbering, owner, reference checks,
/// the document, its change, outbox entry and projection. Returns the record and its document.
pub(crate) fn create_in(
    tx: &Transaction<'_>,
    edit: &Edit,
    user_id: Option<RecordId>,
    author: &Author,
    actor: &ActorId,
    now: DateTime<Utc>,
) -> Result<(Record, Automerge)> {
    let (id, edit) = prepare_create(tx, edit, user_id, author)?;
    let mut built = build_create(id, &edit, author, actor, now)?;
    write_create(tx, &built, now, Fts::Now)?;
    let document = built
        .document
        .take()
        .ok_or(StoreError::Internal("a built record lost its document"))?;
    Ok((built.record, document))
}

/// A new record worked out in memory: its document, the one change that creates it and what
/// its projection needs. Nothing of it is stored yet.
pub(crate) struct NewRecord {
    pub(crate) record: Record,
    /// Dropped with [`NewRecord::without_document`] where no one reads it again.
    pub(crate) document: Option<Automerge>,
    hash: ChangeHash,
    bytes: Vec<u8>,
    last: LastChange,
}

/// The part of a create that reads the replica: the owner (the local user unless given),
/// the provisional number of numbered kinds, and checks that every reference names a record
/// of an accepted kind. Returns the new record's id and the edit to build it from.
///
/// Fails on bad input before it writes anything, except that a numbered kind's counter has
/// moved on (a later failure leaves a gap in the provisional numbers, never a repeat).
pub(crate) fn prepare_create(
    tx: &Transaction<'_>,
    edit: &Edit,
    user_id: Option<RecordId>,
    author: &Author,
) -> Result<(RecordId, Edit)> {
    let kind = edit.kind();
    let schema = kind.schema();
    let given = |name: &str| {
        edit.ops()
            .iter()
            .any(|op| matches!(op, crm_model::Op::Set(f, _) if f.name == name))
    };
    let has_owner = given("owner");
    let has_number = given("number");
    let mut edit = edit.clone();
    if let (Some(user_id), false, true) =
        (user_id, has_owner, kind != Kind::User && kind != Kind::Team)
    {
        edit.set("owner", &user_id.to_string())?;
    }
    check_references(tx, &edit)?;
    if !given("teams") && kind != Kind::User && kind != Kind::Team {
        inherit_teams(tx, &mut edit)?;
    }
    // The document checks required fields too; checking here first keeps a row that lacks
    // one from taking a number.
    let set: std::collections::HashSet<&str> = edit
        .ops()
        .iter()
        .filter_map(|op| match op {
            crm_model::Op::Set(f, _) => Some(f.name),
            _ => None,
        })
        .collect();
    if let Some(field) = schema
        .all_fields()
        .find(|f| f.required && f.default.is_none() && f.name != "number" && !set.contains(f.name))
    {
        return Err(crm_model::ValidationError::Required {
            kind,
            field: field.name.to_string(),
        }
        .into());
    }
    if let (Some(prefix), false) = (schema.number_prefix, has_number) {
        let key = format!("next_number.{prefix}");
        let n: i64 = tx
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([&key], |r| r.get::<_, String>(0))
            .optional()?
            .and_then(|v| v.parse().ok())
            .unwrap_or(1);
        tx.prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")?
            .execute(params![key, (n + 1).to_string()])?;
        edit.set("number", &format!("{prefix}-{}-{n}", author.device))?;
    }
    Ok((RecordId::new(), edit))
}

/// Builds a new record's document and its change, and reads the record back for its
/// projection. Touches no database, so a batch builds its records on several threads.
pub(crate) fn build_create(
    id: RecordId,
    edit: &Edit,
    author: &Author,
    actor: &ActorId,
    now: DateTime<Utc>,
) -> Result<NewRecord> {
    let document = doc::create(id, edit, Stamp { author, now }, actor.clone())
        .map_err(|source| StoreError::doc(id, source))?;
    let Some(mut change) = document.get_last_local_change() else {
        return Err(StoreError::doc(
            id,
            crm_model::DocError::NotARecord("no local change to store"),
        ));
    };
    let hash = change.hash();
    let bytes = change.bytes().into_owned();
    check_change_size(id, edit.kind(), true, &bytes)?;
    let record = doc::read(&document, None).map_err(|source| StoreError::doc(id, source))?;
    let last = last_change(&document);
    Ok(NewRecord {
        record,
        document: Some(document),
        hash,
        bytes,
        last,
    })
}

impl NewRecord {
    /// The record without its document, which holds far more memory than the rest.
    pub(crate) fn without_document(mut self) -> NewRecord {
        self.document = None;
        self
    }
}

/// Stores a built record: its document row, its change and outbox entry, and its projection
/// rows (inserted outright: a new record has none to compare with).
pub(crate) fn write_create(
    tx: &Transaction<'_>,
    built: &NewRecord,
    now: DateTime<Utc>,
    fts: Fts,
) -> Result<()> {
    let record = &built.record;
    tx.prepare_cached(
        "INSERT INTO documents (id, kind, heads, loose, updated_at) VALUES (?1, ?2, ?3, 1, ?4)",
    )?
    .execute(params![
        record.id.to_string(),
        record.kind.as_str(),
        encode_heads(&[built.hash]),
        crm_model::format_time(&now)
    ])?;
    let docno = tx.last_insert_rowid();
    insert_local_change(tx, docno, built.hash, &built.bytes, now)?;
    projection::write_new(tx, docno, record, &built.last, fts)
}

/// Who writes, when, and when full-text rows go in.
#[derive(Clone, Copy)]
pub(crate) struct Writing<'a> {
    pub(crate) author: &'a Author,
    pub(crate) actor: &'a ActorId,
    pub(crate) now: DateTime<Utc>,
    pub(crate) fts: Fts,
}

/// Applies `edit` to record `id` inside `tx` (see [`Store::edit`]). Returns the record, its
/// document and whether anything changed (when nothing did, nothing was written).
pub(crate) fn edit_in(
    tx: &Transaction<'_>,
    id: RecordId,
    edit: &Edit,
    cached: Option<Automerge>,
    writing: &Writing<'_>,
) -> Result<(Record, Automerge, bool)> {
    let Writing {
        author,
        actor,
        now,
        fts,
    } = *writing;
    let row = doc_row(tx, id)?.ok_or(StoreError::NotFound(id))?;
    let kind = row_kind(id, &row)?;
    if kind != edit.kind() {
        return Err(StoreError::WrongKind {
            id,
            expected: edit.kind(),
            found: kind,
        });
    }
    check_references(tx, edit)?;
    let mut document = load(tx, id, &row, cached, actor)?;
    crate::refused::avoid_refused_actor(tx, id, &mut document)?;
    let changed = doc::apply_edit(&mut document, edit, Stamp { author, now })
        .map_err(|source| StoreError::doc(id, source))?;
    if changed.is_some() {
        let record = persist_local(tx, &row, &mut document, now, fts)?;
        Ok((record, document, true))
    } else {
        let record = doc::read(&document, None).map_err(|source| StoreError::doc(id, source))?;
        Ok((record, document, false))
    }
}

/// Checks that every id an edit refers to names an existing record of an accepted kind.
/// The fields naming the record a new one is made from, first match wins.
const PARENTS: &[&str] = &[
    "account",
    "opportunity",
    "lead",
    "campaign",
    "quote",
    "contract",
    "from",
];

/// A record made from another (a contact of an account, a ticket of it, a deal's quote)
/// takes that record's teams when it names none, so the teams that may see the parent see
/// it too (access control's `team` level).
fn inherit_teams(tx: &Transaction<'_>, edit: &mut Edit) -> Result<()> {
    let parent = PARENTS.iter().find_map(|name| {
        edit.references()
            .into_iter()
            .find(|(field, _)| field.name == *name)
            .map(|(_, id)| id)
    });
    let Some(parent) = parent else {
        return Ok(());
    };
    let kind: Option<Option<String>> = tx
        .prepare_cached("SELECT kind FROM documents WHERE id = ?1")?
        .query_row([parent.to_string()], |r| r.get(0))
        .optional()?;
    let Some(kind) = kind.flatten().and_then(|k| k.parse::<Kind>().ok()) else {
        return Ok(());
    };
    let teams: Option<Option<String>> = tx
        .prepare_cached(&format!(
            "SELECT f_teams FROM {} WHERE id = ?1",
            schema::table(kind)
        ))?
        .query_row([parent.to_string()], |r| r.get(0))
        .optional()?;
    let teams: Vec<String> = teams
        .flatten()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if !teams.is_empty() {
        edit.set("teams", &teams.join(","))?;
    }
    Ok(())
}

fn check_references(tx: &Transaction<'_>, edit: &Edit) -> Result<()> {
    for (field, id) in edit.references() {
        let accepted: &[Kind] = match field.ty {
            crm_model::FieldType::Ref(kinds) => kinds,
            crm_model::FieldType::Set(crm_model::SetOf::Ref(kinds)) => kinds,
            _ => &[],
        };
        let kind: Option<Option<String>> = tx
            .prepare_cached("SELECT kind FROM documents WHERE id = ?1")?
            .query_row([id.to_string()], |r| r.get(0))
            .optional()?;
        let Some(found) = kind.flatten().and_then(|k| k.parse::<Kind>().ok()) else {
            return Err(StoreError::MissingReference {
                field: field.name.into(),
                id,
            });
        };
        if !accepted.is_empty() && !accepted.contains(&found) {
            return Err(StoreError::WrongReference {
                field: field.name.into(),
                id,
                expected: accepted
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" or "),
                found,
            });
        }
    }
    Ok(())
}
