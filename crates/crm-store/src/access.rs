//! The device half of access control: the identity the relay gives a replica, and purging
//! the records that leave its user's scope.
//!
//! The relay sends a device only the records its user may see. When a record leaves that
//! scope (a new owner, a changed team, a changed role), the relay tells the device to purge
//! it, and [`Store::purge_record`] removes every trace of it: its document, its changes, its
//! projection rows, its full-text rows, its quarantined changes and its cached document, in
//! one transaction. Deleted SQLite rows survive in free pages, WAL frames and old full-text
//! segments, so a purge also makes them unreadable in the file: every connection runs with
//! `PRAGMA secure_delete` (set when a replica is opened), the full-text index is optimized so
//! no old segment keeps the record's words, and the WAL is checkpointed and truncated.
//!
//! A record with local changes the relay has not acknowledged is never purged: what a user
//! typed must not be lost. It is kept, listed in `out_of_scope` ([`Store::out_of_scope`]), and
//! purged when the relay asks again after acknowledging them ([`Purge::Kept`]).
//!
//! [`Store::sweep_except`] purges everything but a given set (after a re-sync when the user's
//! access changed), and [`Store::wipe`] empties the replica of records for a device an admin
//! wiped. [`Store::adopt_identity`] takes the user, role, teams and device the relay names
//! ([`RelayIdentity`]) as this replica's identity and author.

use std::collections::HashSet;

use chrono::Utc;
use crm_model::automerge::{Change, ChangeHash, ReadDoc};
use crm_model::{Author, Kind, RecordId, Role};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::batch::BatchOp;
use crate::error::{Result, StoreError};
use crate::replica::{DocRow, Store, author_of, commit, load};
use crate::schema;

/// The meta keys of the identity the relay gave.
pub(crate) mod meta {
    pub(crate) const USER: &str = "user";
    pub(crate) const USER_ID: &str = "user_id";
    pub(crate) const ROLE: &str = "role";
    /// A JSON array of team ids.
    pub(crate) const TEAMS: &str = "teams";
    pub(crate) const DEVICE_ID: &str = "device_id";
    /// 64 hex digits.
    pub(crate) const ACCESS_KEY: &str = "access_key";
    /// The name this replica's records were created under before it adopted the relay's
    /// identity, while ownerless records created under it wait to be claimed (see
    /// [`super::Store::claim_unowned`]).
    pub(crate) const CLAIM_FROM: &str = "claim_from";
    /// The User record `crm init` made for working before the replica joins a relay: it never
    /// leaves the replica (the relay's directory is the source of users), and once the
    /// relay's identity is adopted and its User record has arrived, what it owns is claimed
    /// by the relay's user and it is deleted.
    pub(crate) const LOCAL_USER: &str = "local_user";
    /// The local User record's id, kept after it is gone: whatever happens to `local_user`,
    /// a record of that id never leaves the replica (until a relay that knows no users
    /// makes it the user's record, [`super::Store::release_local_user`]).
    pub(crate) const INIT_USER: &str = "init_user";
    /// The workspace's role matrix overrides (JSON), as the relay last sent them.
    pub(crate) const MATRIX: &str = "matrix";
}

/// Who the relay says this replica's user and device are.
#[derive(Clone, PartialEq, Eq)]
pub struct RelayIdentity {
    /// The user's User record.
    pub user_id: RecordId,
    pub user_name: String,
    pub role: Role,
    pub teams: Vec<RecordId>,
    /// The relay's id of this device.
    pub device_id: String,
    /// The device's key for the relay. A secret: never shown by `Debug`.
    pub access_key: [u8; 32],
}

impl std::fmt::Debug for RelayIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayIdentity")
            .field("user_id", &self.user_id)
            .field("user_name", &self.user_name)
            .field("role", &self.role)
            .field("teams", &self.teams)
            .field("device_id", &self.device_id)
            .field("access_key", &"<secret>")
            .finish()
    }
}

/// What [`Store::adopt_identity`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Adoption {
    /// The user's name before, when the relay's differs.
    pub renamed_from: Option<String>,
    /// Unsent local changes whose author is not the relay's user: the relay refuses them.
    /// They stay in the replica and in its outbox, visible.
    pub foreign_pending: u64,
    /// Ownerless records created on this replica that now have the relay's user as owner
    /// (one change each).
    pub claimed: u64,
    /// Ownerless records created on this replica that could not be claimed yet because the
    /// user's User record has not reached the replica: [`Store::claim_unowned`] claims them
    /// once it has (after the next pull).
    pub unclaimed: u64,
}

/// What [`Store::purge_record`] did with one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purge {
    /// Every trace of the record is gone.
    Removed,
    /// The replica held no such record (its quarantined changes, if any, are gone).
    Absent,
    /// The record has `pending` local changes the relay has not acknowledged: nothing was
    /// deleted, and the record is listed in [`Store::out_of_scope`].
    Kept { pending: u64 },
}

/// What a purge of many records did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PurgeReport {
    pub removed: u64,
    /// Records kept because of unsent local changes (see [`Purge::Kept`]).
    pub kept: u64,
    pub absent: u64,
    /// The kept records.
    pub kept_ids: Vec<RecordId>,
}

/// What [`Store::wipe`] deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WipeReport {
    /// Records deleted.
    pub records: u64,
    /// Local changes deleted that the relay had not acknowledged: work lost with the wipe,
    /// counted to tell the user.
    pub pending_changes: u64,
}

/// A record kept although it left the user's scope (see [`Purge::Kept`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutOfScope {
    pub id: RecordId,
    /// When the relay first asked to purge it (RFC 3339).
    pub since: String,
    /// What asked: `purge` or `sweep`.
    pub reason: String,
}

/// What asked to purge a record, as stored in `out_of_scope.reason`.
#[derive(Clone, Copy)]
enum Why {
    Purge,
    Sweep,
}

impl Why {
    fn as_str(self) -> &'static str {
        match self {
            Why::Purge => "purge",
            Why::Sweep => "sweep",
        }
    }
}

/// The records a purge works on, by id, with their document numbers (NULL for an id the
/// replica holds no document of). A temporary table (in memory: `temp_store` is MEMORY), so
/// tens of thousands of records are deleted with one statement per table.
const TARGETS: &str = "CREATE TEMP TABLE IF NOT EXISTS purge_targets (
    id    TEXT PRIMARY KEY,
    docno INTEGER
);
DELETE FROM temp.purge_targets;";

/// How long a purge tries to truncate the WAL while other connections hold it (as long as the
/// store's busy timeout).
const CHECKPOINT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The ids a sweep keeps.
const KEEP: &str = "CREATE TEMP TABLE IF NOT EXISTS purge_keep (id TEXT PRIMARY KEY);
DELETE FROM temp.purge_keep;";

impl Store {
    /// Purges one record the relay says left the user's scope (see the module docs): every
    /// trace of it is deleted and made unreadable in the file, unless it holds local changes
    /// the relay has not acknowledged; then nothing is deleted and it is
    /// [`Purge::Kept`].
    pub fn purge_record(&mut self, id: RecordId) -> Result<Purge> {
        let report = self.purge_records(&[id])?;
        Ok(if report.removed > 0 {
            Purge::Removed
        } else if report.kept > 0 {
            let pending = self
                .conn
                .query_row(PENDING_OF, [id.to_string()], |r| r.get::<_, i64>(0))?;
            Purge::Kept {
                pending: u64::try_from(pending).unwrap_or(0),
            }
        } else {
            Purge::Absent
        })
    }

    /// Purges many records as [`Store::purge_record`] does, in one transaction, with one
    /// optimization of the full-text index and one WAL checkpoint at the end.
    pub fn purge_records(&mut self, ids: &[RecordId]) -> Result<PurgeReport> {
        let tx = self.begin()?;
        tx.execute_batch(TARGETS)?;
        {
            let mut add =
                tx.prepare("INSERT OR IGNORE INTO temp.purge_targets (id) VALUES (?1)")?;
            for id in ids {
                add.execute([id.to_string()])?;
            }
        }
        tx.execute(
            "UPDATE temp.purge_targets SET docno = \
             (SELECT d.docno FROM documents d WHERE d.id = purge_targets.id)",
            [],
        )?;
        let report = purge_targets(&tx, Why::Purge)?;
        commit(tx)?;
        self.after_purge(ids.iter().copied(), &report)?;
        Ok(report)
    }

    /// Purges every record this replica holds that is not in `keep`, as
    /// [`Store::purge_record`] does (records with unsent changes are kept), in one
    /// transaction: what a re-sync does when the user's access changed. Records of `keep`
    /// listed as out of scope are in scope again and no longer listed.
    pub fn sweep_except(&mut self, keep: &HashSet<RecordId>) -> Result<PurgeReport> {
        let tx = self.begin()?;
        tx.execute_batch(TARGETS)?;
        tx.execute_batch(KEEP)?;
        {
            let mut add = tx.prepare("INSERT OR IGNORE INTO temp.purge_keep (id) VALUES (?1)")?;
            for id in keep {
                add.execute([id.to_string()])?;
            }
        }
        tx.execute(
            "INSERT INTO temp.purge_targets (id, docno) \
             SELECT id, docno FROM documents WHERE id NOT IN (SELECT id FROM temp.purge_keep)",
            [],
        )?;
        // Quarantined changes of records the replica never stored are out of scope too.
        tx.execute(
            "INSERT OR IGNORE INTO temp.purge_targets (id, docno) \
             SELECT DISTINCT doc_id, NULL FROM quarantine \
             WHERE doc_id NOT IN (SELECT id FROM temp.purge_keep)",
            [],
        )?;
        tx.execute(
            "DELETE FROM out_of_scope WHERE doc_id IN (SELECT id FROM temp.purge_keep)",
            [],
        )?;
        let targets: Vec<String> = {
            let mut stmt = tx.prepare("SELECT id FROM temp.purge_targets")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        let report = purge_targets(&tx, Why::Sweep)?;
        tx.execute_batch("DELETE FROM temp.purge_keep;")?;
        commit(tx)?;
        let purged = targets.iter().filter_map(|id| id.parse::<RecordId>().ok());
        self.after_purge(purged, &report)?;
        Ok(report)
    }

    /// Deletes every record of this replica and every change, unsent ones included, with
    /// their projections, full-text rows, quarantined changes, refused edits and the sync
    /// cursor: for a lost or stolen device an admin wiped. The replica's identity stays. Counts the
    /// unsent changes first, to tell the user what was lost.
    pub fn wipe(&mut self) -> Result<WipeReport> {
        let tx = self.begin()?;
        let count = |sql: &str| -> Result<u64> {
            let n: i64 = tx.query_row(sql, [], |r| r.get(0))?;
            Ok(u64::try_from(n).unwrap_or(0))
        };
        let report = WipeReport {
            records: count("SELECT count(*) FROM documents")?,
            pending_changes: count("SELECT count(*) FROM outbox")?,
        };
        tx.execute_batch(
            "DELETE FROM outbox;
             DELETE FROM changes;
             DELETE FROM documents;
             DELETE FROM quarantine;
             DELETE FROM out_of_scope;
             DELETE FROM refused_changes;
             DELETE FROM refused_edits;
             DELETE FROM refused_actors;
             DELETE FROM pending.search_pending;",
        )?;
        // The relay cursor (`sync.rs`) and the time of the last sync.
        for key in ["cursor", "last_sync"] {
            tx.execute("DELETE FROM sync_state WHERE key = ?1", [key])?;
        }
        tx.execute("DELETE FROM meta WHERE key = ?1", [meta::CLAIM_FROM])?;
        // Dropped and made again rather than emptied row by row: the full-text index is left
        // with no segment at all, and every page freed is zeroed (`secure_delete`).
        tx.execute_batch(&schema::drop_projections_sql())?;
        tx.execute_batch(&schema::PROJECTIONS)?;
        commit(tx)?;
        self.cache.clear();
        self.truncate_wal()?;
        Ok(report)
    }

    /// The records kept although the relay asked to purge them (see [`Purge::Kept`]),
    /// oldest request first. The sync driver purges them again once their changes are
    /// acknowledged.
    pub fn out_of_scope(&self) -> Result<Vec<OutOfScope>> {
        let mut stmt = self
            .conn
            .prepare("SELECT doc_id, since, reason FROM out_of_scope ORDER BY since, doc_id")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, since, reason) = row?;
            // Rows are written from record ids only; one that does not parse names nothing.
            if let Ok(id) = id.parse() {
                out.push(OutOfScope { id, since, reason });
            }
        }
        Ok(out)
    }

    /// Takes the identity the relay gives as this replica's (see [`RelayIdentity`]): the
    /// user, role, teams, device id and access key are stored, and new changes are authored
    /// by the relay's user and device, with their ids.
    ///
    /// Records created here before, under the replica's previous name, that have no owner
    /// are claimed for the relay's user: each gets `owner` in one normal edit. Unsent
    /// changes authored by anyone else than the relay's user are counted, not touched: the
    /// relay refuses them, and they stay visible in the replica.
    pub fn adopt_identity(&mut self, id: &RelayIdentity) -> Result<Adoption> {
        self.writable()?;
        let name = id.user_name.trim();
        check_name("user name", name)?;
        check_name("device id", id.device_id.trim())?;
        let device_id = id.device_id.trim();
        let previous = self.identity.user.clone();
        let foreign_pending = self.foreign_pending(name)?;
        let teams: Vec<String> = id.teams.iter().map(ToString::to_string).collect();
        let teams = serde_json::to_string(&teams)
            .map_err(|_| StoreError::Internal("a list of ids always serialises"))?;
        let tx = self.begin()?;
        for (key, value) in [
            (meta::USER, name.to_string()),
            (meta::USER_ID, id.user_id.to_string()),
            (meta::ROLE, id.role.as_str().to_string()),
            (meta::TEAMS, teams),
            (meta::DEVICE_ID, device_id.to_string()),
            (meta::ACCESS_KEY, hex(&id.access_key)),
        ] {
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
                params![key, value],
            )?;
        }
        // Remembered until the claims are made, so a crash or a User record that has not
        // arrived yet only delays them. A claim still waiting keeps the first name.
        if !previous.is_empty() {
            tx.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES (?1, ?2)",
                params![meta::CLAIM_FROM, previous],
            )?;
        }
        tx.commit()?;
        self.identity.user = name.to_string();
        self.identity.user_id = Some(id.user_id);
        self.identity.role = Some(id.role);
        self.identity.teams = id.teams.clone();
        self.identity.device_id = Some(device_id.to_string());
        self.identity.access_key = Some(id.access_key);
        self.author = author_of(&self.identity);
        let (claimed, unclaimed) = self.claim()?;
        Ok(Adoption {
            renamed_from: (!previous.is_empty() && previous != name).then_some(previous),
            foreign_pending,
            claimed,
            unclaimed,
        })
    }

    /// Claims for the relay's user the ownerless records created here before the replica
    /// adopted its identity, when [`Store::adopt_identity`] could not (the user's User record
    /// had not arrived). Returns how many were claimed; 0 when none wait, or when the User
    /// record is still missing.
    pub fn claim_unowned(&mut self) -> Result<u64> {
        self.writable()?;
        Ok(self.claim()?.0)
    }

    /// Sets the device's key for the relay alone.
    pub fn set_access_key(&mut self, key: [u8; 32]) -> Result<()> {
        self.writable()?;
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![meta::ACCESS_KEY, hex(&key)],
        )?;
        self.identity.access_key = Some(key);
        Ok(())
    }

    /// The device's key for the relay, once it has one.
    pub fn access_key(&self) -> Option<[u8; 32]> {
        self.identity.access_key
    }

    /// Evicts the purged documents from the cache, and makes what the purge deleted
    /// unreadable in the file.
    fn after_purge(
        &mut self,
        ids: impl Iterator<Item = RecordId>,
        report: &PurgeReport,
    ) -> Result<()> {
        let kept: HashSet<&RecordId> = report.kept_ids.iter().collect();
        for id in ids.filter(|id| !kept.contains(id)) {
            self.cache.pop(&id);
        }
        self.truncate_wal()
    }

    /// Copies the WAL into the database and truncates it to nothing: its frames still hold
    /// the pages as they were before a purge.
    fn truncate_wal(&mut self) -> Result<()> {
        // A checkpoint another connection is running (the checkpoint thread, woken by this
        // very commit) makes this one fail at once, without SQLite's busy handler: it is
        // tried again until that one is done, for as long as the busy timeout.
        let deadline = std::time::Instant::now() + CHECKPOINT_WAIT;
        let busy = loop {
            let (busy, _, _): (i64, i64, i64) =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?;
            if busy == 0 || std::time::Instant::now() >= deadline {
                break busy;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        };
        if busy != 0 {
            // Another process kept reading past the busy timeout. The next checkpoint, at the
            // latest when the last connection closes, overwrites or removes those frames.
            tracing::warn!(
                "the WAL could not be truncated after a purge: another process is reading \
                 the replica; the purged data stays in the WAL until its next checkpoint"
            );
        }
        Ok(())
    }

    /// Counts the unsent changes whose author is not `user`. A change whose bytes are not
    /// stored (held in its document's snapshot) is read from the document. The changes of
    /// the local User record are not counted: they are never pushed, so the relay never
    /// refuses them, and they go with it once the claims are made.
    fn foreign_pending(&mut self, user: &str) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let mut stmt = tx.prepare(
            "SELECT d.docno, d.id, d.kind, d.heads, c.hash, c.bytes FROM outbox o \
             JOIN changes c ON c.seq = o.seq JOIN documents d ON d.docno = c.docno \
             WHERE d.id IS NOT (SELECT value FROM meta WHERE key = ?1) \
             ORDER BY d.docno",
        )?;
        let mut rows = stmt.query([meta::LOCAL_USER])?;
        let mut foreign = 0;
        // The document last loaded, for the changes held only in its snapshot.
        let mut document: Option<(i64, crm_model::automerge::Automerge)> = None;
        while let Some(row) = rows.next()? {
            let docno: i64 = row.get(0)?;
            let author = match Change::from_bytes(row.get(5)?) {
                Ok(change) => Author::from_message(change.message()),
                Err(_) => {
                    let Ok(id) = row.get::<_, String>(1)?.parse::<RecordId>() else {
                        foreign += 1;
                        continue;
                    };
                    if document.as_ref().is_none_or(|(n, _)| *n != docno) {
                        let stored = DocRow {
                            docno,
                            id,
                            kind: row.get(2)?,
                            heads: row.get(3)?,
                        };
                        document = load(&tx, id, &stored, None, &self.actor)
                            .ok()
                            .map(|d| (docno, d));
                    }
                    let hash = ChangeHash::try_from(row.get::<_, Vec<u8>>(4)?.as_slice()).ok();
                    match (hash, &document) {
                        (Some(h), Some((_, d))) => d
                            .get_change_by_hash(&h)
                            .and_then(|c| Author::from_message(c.message())),
                        _ => None,
                    }
                }
            };
            if author.is_none_or(|a| a.user != user) {
                foreign += 1;
            }
        }
        drop(rows);
        drop(stmt);
        drop(tx);
        Ok(foreign)
    }

    /// Claims the ownerless records created here under the name in `meta::CLAIM_FROM`.
    /// Returns (claimed, waiting): the records wait while the user's User record is missing.
    fn claim(&mut self) -> Result<(u64, u64)> {
        let Some(user_id) = self.identity.user_id else {
            return Ok((0, 0));
        };
        let from: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [meta::CLAIM_FROM],
                |r| r.get(0),
            )
            .optional()?;
        let Some(from) = from else {
            return Ok((0, 0));
        };
        let local: String = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [meta::LOCAL_USER],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or_default();
        // (kind, record, whether its assignee is the local user).
        // (kind, record, whether its assignee is the local user, whether its owner is).
        let mut candidates: Vec<(Kind, RecordId, bool, bool)> = Vec::new();
        for kind in Kind::ALL.iter().copied() {
            // Users and teams have no owner (see `prepare_create`).
            if matches!(kind, Kind::User | Kind::Team) {
                continue;
            }
            let assigned = matches!(kind, Kind::Ticket | Kind::Activity);
            // Created under the previous name, and created here: the document has changes
            // made on this replica; or owned by (assigned to) the local User record.
            let sql = format!(
                "SELECT r.id, {assignee}, {own} FROM {t} r WHERE {own} OR {assignee} \
                 ORDER BY r.docno",
                own = format!(
                    "((r.{owner} IS NULL AND r.created_by = ?1 AND EXISTS (SELECT 1 FROM \
                     changes c WHERE c.docno = r.docno AND c.local = 1)) OR r.{owner} = ?2)",
                    owner = schema::column("owner")
                ),
                t = schema::table(kind),
                assignee = if assigned {
                    format!("r.{} = ?2", schema::column("assignee"))
                } else {
                    "0".into()
                },
            );
            let mut stmt = self.conn.prepare(&sql)?;
            let rows = stmt.query_map(params![&from, &local], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, bool>(2)?,
                ))
            })?;
            for row in rows {
                let (id, assignee, own) = row?;
                if let Ok(id) = id.parse() {
                    candidates.push((kind, id, assignee, own));
                }
            }
        }
        let user_present: bool = self
            .conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM documents WHERE id = ?1 AND kind = ?2)")?
            .query_row(params![user_id.to_string(), Kind::User.as_str()], |r| {
                r.get(0)
            })?;
        if !user_present {
            let waiting = u64::try_from(candidates.len()).unwrap_or(u64::MAX);
            return Ok((0, waiting));
        }
        let owner = user_id.to_string();
        let mut ops = Vec::with_capacity(candidates.len());
        for (kind, id, assignee, own) in candidates {
            let mut edit = crm_model::Edit::new(kind);
            if own {
                edit.set("owner", &owner)?;
            }
            if assignee {
                edit.set("assignee", &owner)?;
            }
            ops.push(BatchOp::Edit { id, edit });
        }
        // Each claim is its own change through the normal edit path, so projections and the
        // outbox follow; one that the record refuses is left unclaimed, not the others.
        let results = self.write_batch(&ops)?;
        let mut claimed = 0;
        for result in results {
            match result {
                Ok(written) if written.changed => claimed += 1,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "an ownerless record was not claimed"),
            }
        }
        self.conn
            .execute("DELETE FROM meta WHERE key = ?1", [meta::CLAIM_FROM])?;
        if let Ok(local) = local.parse::<RecordId>()
            && local != user_id
        {
            // The local User record never left this replica: its changes leave the outbox
            // and it goes.
            self.conn.execute(
                "DELETE FROM outbox WHERE seq IN (SELECT c.seq FROM changes c \
                 JOIN documents d ON d.docno = c.docno WHERE d.id = ?1)",
                [local.to_string()],
            )?;
            self.purge_records(&[local])?;
            let gone: bool = self.conn.query_row(
                "SELECT NOT EXISTS (SELECT 1 FROM documents WHERE id = ?1)",
                [local.to_string()],
                |r| r.get(0),
            )?;
            if gone {
                self.conn
                    .execute("DELETE FROM meta WHERE key = ?1", [meta::LOCAL_USER])?;
            }
        }
        Ok((claimed, 0))
    }

    /// A relay that knows no users (a device added before it did) has no identity to give:
    /// the local User record then is the user's record, and is pushed like any other.
    pub fn release_local_user(&mut self) -> Result<()> {
        self.conn.execute(
            "DELETE FROM meta WHERE key IN (?1, ?2)",
            [meta::LOCAL_USER, meta::INIT_USER],
        )?;
        Ok(())
    }

    /// The id of the User record `crm init` made, while it may not leave the replica.
    pub(crate) fn init_user(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [meta::INIT_USER],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// The User record `crm init` made for working before joining a relay, while it is
    /// here: it is never pushed.
    pub(crate) fn local_user(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [meta::LOCAL_USER],
                |r| r.get(0),
            )
            .optional()?)
    }
}

/// Deletes every trace of the records `ids` inside `tx`, as a purge does, for records with no
/// unsent change left (a record whose creation the relay refused, see `refused.rs`). Returns
/// how many were removed.
pub(crate) fn remove_records(tx: &Transaction<'_>, ids: &[RecordId]) -> Result<u64> {
    tx.execute_batch(TARGETS)?;
    {
        let mut add = tx.prepare("INSERT OR IGNORE INTO temp.purge_targets (id) VALUES (?1)")?;
        for id in ids {
            add.execute([id.to_string()])?;
        }
    }
    tx.execute(
        "UPDATE temp.purge_targets SET docno = \
         (SELECT d.docno FROM documents d WHERE d.id = purge_targets.id)",
        [],
    )?;
    Ok(purge_targets(tx, Why::Purge)?.removed)
}

/// Unsent changes of one record (by id).
const PENDING_OF: &str = "SELECT count(*) FROM outbox o JOIN changes c ON c.seq = o.seq \
                          JOIN documents d ON d.docno = c.docno WHERE d.id = ?1";

/// Deletes every trace of the records in `temp.purge_targets` inside `tx`, except those with
/// unsent changes, which are listed in `out_of_scope` instead.
fn purge_targets(tx: &Transaction<'_>, why: Why) -> Result<PurgeReport> {
    let mut report = PurgeReport::default();
    // Records with unsent changes: kept, and listed (the first request's time stays).
    let kept: Vec<String> = {
        let mut stmt = tx.prepare(
            "SELECT DISTINCT p.id FROM temp.purge_targets p \
             JOIN changes c ON c.docno = p.docno JOIN outbox o ON o.seq = c.seq \
             ORDER BY p.id",
        )?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    {
        let now = crm_model::format_time(&Utc::now());
        let mut list = tx.prepare(
            "INSERT OR IGNORE INTO out_of_scope (doc_id, since, reason) VALUES (?1, ?2, ?3)",
        )?;
        let mut spare = tx.prepare("DELETE FROM temp.purge_targets WHERE id = ?1")?;
        for id in &kept {
            list.execute(params![id, now, why.as_str()])?;
            spare.execute([id])?;
            if let Ok(id) = id.parse() {
                report.kept_ids.push(id);
            }
        }
    }
    report.kept = u64::try_from(kept.len()).unwrap_or(u64::MAX);
    let (removed, absent): (i64, i64) = tx.query_row(
        "SELECT count(docno), count(*) - count(docno) FROM temp.purge_targets",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    report.removed = u64::try_from(removed).unwrap_or(0);
    report.absent = u64::try_from(absent).unwrap_or(0);
    let docnos = "(SELECT docno FROM temp.purge_targets WHERE docno IS NOT NULL)";
    let ids = "(SELECT id FROM temp.purge_targets)";
    let mut sql = String::new();
    for kind in Kind::ALL {
        // Every kind's table: a document's row is in its kind's, but a document whose kind
        // changed or is unknown is removed from all of them, as `projection::remove` does.
        sql.push_str(&format!(
            "DELETE FROM {} WHERE docno IN {docnos};\n",
            schema::table(*kind)
        ));
    }
    for table in [
        "record_tags",
        "record_refs",
        "record_history",
        "conflicts",
        "pending.search_pending",
    ] {
        sql.push_str(&format!("DELETE FROM {table} WHERE docno IN {docnos};\n"));
    }
    sql.push_str(&format!(
        "DELETE FROM search WHERE rowid IN {docnos};
         DELETE FROM outbox WHERE seq IN (SELECT seq FROM changes WHERE docno IN {docnos});
         DELETE FROM changes WHERE docno IN {docnos};
         DELETE FROM documents WHERE docno IN {docnos};
         DELETE FROM quarantine WHERE doc_id IN {ids};
         DELETE FROM out_of_scope WHERE doc_id IN {ids};
         DELETE FROM temp.purge_targets;"
    ));
    tx.execute_batch(&sql)?;
    if removed > 0 {
        // A deleted full-text row leaves its words in the index's older segments until they
        // are merged; 'optimize' merges every segment into one, without them.
        tx.execute("INSERT INTO search (search) VALUES ('optimize')", [])?;
    }
    Ok(report)
}

/// Refuses a name that is empty, spans lines or is over 100 characters (as `Store::init`).
fn check_name(what: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.chars().any(char::is_control) || value.chars().count() > 100 {
        return Err(crm_model::ValidationError::InvalidValue {
            field: what.into(),
            value: value.into(),
            expected: "a name of 1 to 100 characters on one line".into(),
        }
        .into());
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads an access key stored by [`hex`].
pub(crate) fn parse_key(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(key)
}

/// Reads the team ids stored as a JSON array.
pub(crate) fn parse_teams(s: &str) -> Vec<RecordId> {
    serde_json::from_str::<Vec<String>>(s)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.parse().ok())
        .collect()
}

impl Store {
    /// What this replica's user may do, as the relay's role matrix says (the built-in one)
    /// and the directory in the replica describes them; `None` for a replica that has not
    /// joined a relay (its user is admin of their own replica).
    pub fn viewer(&self) -> Result<Option<crm_model::Viewer>> {
        Ok(self.access()?.map(|(_, viewer)| viewer))
    }

    /// [`Store::viewer`] with the directory it was made from.
    fn access(&self) -> Result<Option<(crm_model::Directory, crm_model::Viewer)>> {
        let (Some(user), Some(_)) = (self.identity.user_id, self.identity.role) else {
            return Ok(None);
        };
        let mut dir = crm_model::Directory::default();
        let ids = |text: Option<String>| -> Vec<RecordId> {
            text.and_then(|t| serde_json::from_str::<Vec<String>>(&t).ok())
                .unwrap_or_default()
                .iter()
                .filter_map(|s| s.parse().ok())
                .collect()
        };
        {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT id, title, {role}, {teams}, {active} FROM {t} WHERE archived = 0",
                role = schema::column("role"),
                teams = schema::column("teams"),
                active = schema::column("active"),
                t = schema::table(Kind::User),
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })?;
            for row in rows {
                let (id, name, role, teams, active) = row?;
                let Ok(id) = id.parse::<RecordId>() else {
                    continue;
                };
                dir.users.insert(
                    id,
                    crm_model::access::DirectoryUser {
                        id,
                        name,
                        email: None,
                        role: role.and_then(|r| r.parse().ok()).unwrap_or(Role::SalesRep),
                        teams: ids(teams),
                        active: active != Some(0),
                    },
                );
            }
        }
        {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT id, title, {manager}, {members} FROM {t} WHERE archived = 0",
                manager = schema::column("manager"),
                members = schema::column("members"),
                t = schema::table(Kind::Team),
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?;
            for row in rows {
                let (id, name, manager, members) = row?;
                let Ok(id) = id.parse::<RecordId>() else {
                    continue;
                };
                dir.teams.insert(
                    id,
                    crm_model::access::DirectoryTeam {
                        id,
                        name,
                        manager: manager.and_then(|m| m.parse().ok()),
                        members: ids(members),
                    },
                );
            }
        }
        // The relay's word on the user's own role and teams wins over a record not pulled
        // yet.
        let me = dir
            .users
            .entry(user)
            .or_insert_with(|| crm_model::access::DirectoryUser {
                id: user,
                name: self.identity.user.clone(),
                email: None,
                role: Role::SalesRep,
                teams: Vec::new(),
                active: true,
            });
        if let Some(role) = self.identity.role {
            me.role = role;
        }
        let overrides: Vec<crm_model::access::Override> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = ?1",
                [meta::MATRIX],
                |r| r.get::<_, String>(0),
            )
            .optional()?
            .and_then(|m| serde_json::from_str(&m).ok())
            .unwrap_or_default();
        let viewer = dir.viewer(user, &crm_model::Matrix::with_overrides(&overrides));
        Ok(viewer.map(|v| (dir, v)))
    }

    /// Keeps the workspace's role matrix overrides (JSON) the relay sent.
    pub fn set_matrix_overrides(&mut self, json: &str) -> Result<()> {
        self.writable()?;
        self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![meta::MATRIX, json],
        )?;
        Ok(())
    }

    /// Whether this replica's user may do `action` on a record of `kind` with `scope` (always,
    /// on a replica that has not joined a relay).
    pub fn may(
        &self,
        action: crm_model::Action,
        kind: Kind,
        scope: &crm_model::Scope,
    ) -> Result<bool> {
        Ok(self.viewer()?.is_none_or(|v| v.may(action, kind, scope)))
    }

    /// Refuses a create the user's role does not allow, before anything is written (the
    /// relay decides in the end; this spares the user an edit it would not take). Nothing is
    /// checked on a replica that has not joined a relay, nor for an admin.
    pub(crate) fn check_create(&self, edit: &crm_model::Edit) -> Result<()> {
        if !self.restricted() {
            return Ok(());
        }
        let given = |name: &str| {
            edit.ops().iter().find_map(|op| match op {
                crm_model::Op::Set(f, v) if f.name == name => Some(v.clone()),
                _ => None,
            })
        };
        let id = |v: Option<crm_model::FieldValue>| match v {
            Some(crm_model::FieldValue::Ref(r)) => Some(r),
            _ => None,
        };
        let teams = match given("teams") {
            Some(crm_model::FieldValue::Set(s)) => {
                s.iter().filter_map(|t| t.parse().ok()).collect()
            }
            _ => Vec::new(),
        };
        let scope = crm_model::Scope {
            owner: id(given("owner")).or(self.identity.user_id),
            assignee: id(given("assignee")),
            teams,
        };
        self.refuse_unless(crm_model::Action::Create, edit.kind(), &scope)?;
        if scope.owner != self.identity.user_id {
            self.refuse_reassign(edit.kind(), scope.owner)?;
        }
        Ok(())
    }

    /// After [`Store::settle_refused`]: the records that only an edit now refused kept here
    /// go, as the relay asked or would — those listed out of scope, and those `settled` that
    /// the user may not see (the relay's purge can have come while the edit was still
    /// pending, before the refusal). A record with other unsent changes stays. Returns how
    /// many were removed.
    pub fn release_settled(&mut self, settled: &[RecordId]) -> Result<u64> {
        let mut candidates: Vec<RecordId> =
            self.out_of_scope()?.into_iter().map(|k| k.id).collect();
        if let Some(viewer) = self.viewer()? {
            for id in settled {
                if let Ok(record) = self.get(*id)
                    && !viewer.sees(record.kind, &self.scope_of_record(&record))
                {
                    candidates.push(*id);
                }
            }
        }
        let mut removed = 0;
        for id in candidates {
            if self.purge_record(id)? == Purge::Removed {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Whether this replica's user may give a record owned by `owner` (the new owner, for a
    /// record with none) to someone else (always, on a replica that has not joined a relay).
    pub fn may_reassign(&self, owner: Option<RecordId>) -> Result<bool> {
        Ok(self.access()?.is_none_or(|(directory, viewer)| {
            crm_model::access::may_reassign(&viewer, &directory, owner)
        }))
    }

    /// Refuses giving a record to someone else unless the user may (the relay's owner rule,
    /// `crm_model::access::may_reassign`): `owner` is the record's owner before, or the new
    /// one for a record that had none.
    fn refuse_reassign(&self, kind: Kind, owner: Option<RecordId>) -> Result<()> {
        let Some((directory, viewer)) = self.access()? else {
            return Ok(());
        };
        if crm_model::access::may_reassign(&viewer, &directory, owner) {
            return Ok(());
        }
        let role = self.identity.role.unwrap_or(Role::SalesRep);
        Err(StoreError::Rejected(format!(
            "your role ({role}) may not give {} to someone else: only admins and managers of \
             the owner's team reassign (see `crm whoami`)",
            kind.plural().replace('_', " ")
        )))
    }

    /// Refuses an edit (or an archive) the user's role does not allow on record `id`.
    pub(crate) fn check_edit(&mut self, id: RecordId, edit: &crm_model::Edit) -> Result<()> {
        if !self.restricted() {
            return Ok(());
        }
        let record = self.get(id)?;
        let archives = edit
            .ops()
            .iter()
            .any(|op| matches!(op, crm_model::Op::Archive(_)));
        let action = if archives {
            crm_model::Action::Archive
        } else {
            crm_model::Action::Edit
        };
        let before = self.scope_of_record(&record);
        self.refuse_unless(action, record.kind, &before)?;
        let new_owner = edit.ops().iter().find_map(|op| match op {
            crm_model::Op::Set(f, v) if f.name == "owner" => Some(match v {
                crm_model::FieldValue::Ref(r) => Some(*r),
                _ => None,
            }),
            crm_model::Op::Unset(f) if f.name == "owner" => Some(None),
            _ => None,
        });
        if let Some(owner) = new_owner
            && owner != before.owner
        {
            self.refuse_reassign(record.kind, before.owner.or(owner))?;
        }
        Ok(())
    }

    /// Whether this replica's user has a role that limits them (joined, not an admin).
    fn restricted(&self) -> bool {
        self.identity.role.is_some_and(|r| r != Role::Admin)
    }

    fn refuse_unless(
        &self,
        action: crm_model::Action,
        kind: Kind,
        scope: &crm_model::Scope,
    ) -> Result<()> {
        if self.may(action, kind, scope)? {
            return Ok(());
        }
        let role = self.identity.role.unwrap_or(Role::SalesRep);
        let level = self
            .viewer()?
            .map_or(crm_model::Level::None, |v| v.levels(kind).get(action));
        let reach = match level {
            crm_model::Level::None => "any",
            crm_model::Level::Own => "other people's",
            _ => "other teams'",
        };
        Err(StoreError::Rejected(format!(
            "your role ({role}) may not {action} {reach} {} (see `crm whoami`)",
            kind.plural().replace('_', " ")
        )))
    }

    /// The scope of a record this replica holds.
    pub fn scope_of_record(&self, record: &crm_model::Record) -> crm_model::Scope {
        let id = |f: &str| match record.fields.get(f) {
            Some(crm_model::FieldValue::Ref(r)) => Some(*r),
            _ => None,
        };
        let teams = match record.fields.get("teams") {
            Some(crm_model::FieldValue::Set(s)) => {
                s.iter().filter_map(|t| t.parse().ok()).collect()
            }
            _ => Vec::new(),
        };
        crm_model::Scope {
            owner: id("owner"),
            assignee: id("assignee"),
            teams,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let key = [0xa5; 32];
        assert_eq!(parse_key(&hex(&key)), Some(key));
        assert_eq!(parse_key("zz"), None);
        assert_eq!(parse_key(&"é".repeat(32)), None);
    }

    #[test]
    fn teams_round_trip() {
        let teams = vec![RecordId::new(), RecordId::new()];
        let stored: Vec<String> = teams.iter().map(ToString::to_string).collect();
        let stored = serde_json::to_string(&stored).expect("json");
        assert_eq!(parse_teams(&stored), teams);
        assert_eq!(parse_teams("not json"), Vec::<RecordId>::new());
    }
}
