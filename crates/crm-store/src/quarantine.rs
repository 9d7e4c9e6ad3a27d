//! Quarantine: changes from elsewhere that this replica refused, one by one, instead of
//! refusing the batch they came in.
//!
//! A relay's log or another replica may hold an entry no replica can apply: bytes that are not
//! an Automerge change or whose checksum or hash does not match (damaged on the way or on a
//! disk), a change of record X sent under record Y, a change the document refuses. Refusing
//! the whole batch would refuse it again on every try, and the cursor would never move past it:
//! one entry would stop sync for everyone. Instead the apply path (`remote.rs`) isolates the
//! offending change, records it here (the `quarantine` table: record, hash, bytes, reason,
//! origin, time), applies everything else and moves the cursor on, all in one transaction. One
//! bad entry then costs at most the changes of its record that depend on it, which stay
//! pending (Automerge keeps a change whose dependencies are missing, and applies it if they
//! ever arrive).
//!
//! Quarantined changes are never applied, stored as data or pushed. `crm check` and
//! `crm status` list them; `crm sync` and `crm merge-from` warn about each one.

use chrono::{DateTime, Utc};
use crm_model::RecordId;
use crm_model::automerge::ChangeHash;
use rusqlite::params;

use crate::error::Result;
use crate::replica::Store;

/// Why a change was quarantined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Problem {
    /// The bytes are not an Automerge change.
    Unreadable,
    /// A change whose checksum or hash does not match its bytes: damaged on the way, or on
    /// the disk of whoever sent it.
    Damaged,
    /// A change of another record: it makes the document claim another record's id, it is
    /// stored here as another record's change, or it builds on another record's changes.
    OtherRecord,
    /// The document refuses the change (Automerge's own checks, e.g. a second change with the
    /// same actor and sequence number).
    Refused,
}

impl Problem {
    /// The name stored in the `quarantine` table and printed by `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::Unreadable => "unreadable",
            Problem::Damaged => "damaged",
            Problem::OtherRecord => "other_record",
            Problem::Refused => "refused",
        }
    }

    fn parse(s: &str) -> Problem {
        match s {
            "unreadable" => Problem::Unreadable,
            "damaged" => Problem::Damaged,
            "other_record" => Problem::OtherRecord,
            _ => Problem::Refused,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a batch of changes came from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A relay's change log, at this position.
    Relay { seq: u64 },
    /// A relay's compacted documents (a fresh device's first sync).
    Bootstrap,
    /// Another replica, merged with `crm merge-from`.
    Replica { id: String },
    /// A batch handed to [`Store::apply_remote_changes`].
    Remote,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Relay { seq } => write!(f, "relay log position {seq}"),
            Origin::Bootstrap => f.write_str("relay bootstrap"),
            Origin::Replica { id } => write!(f, "replica {id}"),
            Origin::Remote => f.write_str("remote batch"),
        }
    }
}

impl Origin {
    /// The `origin`, `position` and `peer` columns.
    fn columns(&self) -> (&'static str, Option<i64>, Option<&str>) {
        match self {
            Origin::Relay { seq } => ("relay", Some(i64::try_from(*seq).unwrap_or(i64::MAX)), None),
            Origin::Bootstrap => ("bootstrap", None, None),
            Origin::Replica { id } => ("replica", None, Some(id)),
            Origin::Remote => ("remote", None, None),
        }
    }

    fn from_columns(origin: &str, position: Option<i64>, peer: Option<String>) -> Origin {
        match (origin, position, peer) {
            ("relay", Some(seq), _) => Origin::Relay {
                seq: u64::try_from(seq).unwrap_or(0),
            },
            ("bootstrap", _, _) => Origin::Bootstrap,
            ("replica", _, Some(id)) => Origin::Replica { id },
            _ => Origin::Remote,
        }
    }
}

/// A change this replica refused and set aside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    /// The record it came under (which may not be the record it belongs to).
    pub doc_id: RecordId,
    /// The change's hash, hex; `None` when its bytes are not a change.
    pub hash: Option<String>,
    pub problem: Problem,
    /// What was wrong, in a sentence.
    pub reason: String,
    pub origin: Origin,
    /// When it was quarantined (RFC 3339).
    pub at: String,
}

impl std::fmt::Display for Quarantined {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record {}", self.doc_id)?;
        if let Some(hash) = &self.hash {
            write!(f, ", change {}", short(hash))?;
        }
        write!(f, " ({}): {}", self.origin, self.reason)
    }
}

/// The first 12 hex digits of a hash, as messages show it.
pub(crate) fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

/// A change of a batch refused by the apply path: its place in the batch, its hash when it
/// parsed, and why.
#[derive(Clone, Debug)]
pub(crate) struct Rejected {
    pub(crate) index: usize,
    pub(crate) hash: Option<ChangeHash>,
    pub(crate) problem: Problem,
    pub(crate) reason: String,
    /// The changes it builds on, when it parsed.
    pub(crate) deps: Vec<ChangeHash>,
}

/// Records a refused change in the caller's transaction (once per record and bytes: a change
/// quarantined again, e.g. after a relay reset, keeps its first row), logs it, and returns
/// what the report shows.
pub(crate) fn record(
    tx: &rusqlite::Transaction<'_>,
    doc_id: RecordId,
    bytes: &[u8],
    rejected: Rejected,
    origin: Origin,
    now: DateTime<Utc>,
) -> Result<Quarantined> {
    let at = crm_model::format_time(&now);
    let (kind, position, peer) = origin.columns();
    let id = doc_id.to_string();
    tx.prepare_cached(
        "INSERT INTO quarantine (doc_id, hash, bytes, problem, reason, origin, position, peer, at)
         SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9
         WHERE NOT EXISTS (SELECT 1 FROM quarantine WHERE doc_id = ?1 AND bytes = ?3)",
    )?
    .execute(params![
        id,
        rejected.hash.as_ref().map(|h| h.0.to_vec()),
        bytes,
        rejected.problem.as_str(),
        rejected.reason,
        kind,
        position,
        peer,
        at
    ])?;
    let entry = Quarantined {
        doc_id,
        hash: rejected.hash.map(|h| h.to_string()),
        problem: rejected.problem,
        reason: rejected.reason,
        origin,
        at,
    };
    tracing::warn!(
        record = %entry.doc_id,
        hash = entry.hash.as_deref().unwrap_or("-"),
        problem = %entry.problem,
        origin = %entry.origin,
        reason = %entry.reason,
        "quarantined a change this replica cannot apply"
    );
    Ok(entry)
}

/// Whether a change with this hash is quarantined under `doc_id` as another record's.
pub(crate) fn other_record(
    conn: &rusqlite::Connection,
    doc_id: RecordId,
    hash: &ChangeHash,
) -> Result<bool> {
    Ok(conn
        .prepare_cached(
            "SELECT 1 FROM quarantine WHERE hash = ?1 AND doc_id = ?2 AND problem = 'other_record'",
        )?
        .exists(params![&hash.0[..], doc_id.to_string()])?)
}

/// Whether the replica has a quarantine: a replica of format 1 opened read-only was not
/// migrated, and has none (so nothing in it).
fn exists(conn: &rusqlite::Connection) -> Result<bool> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'quarantine'")?
        .exists([])?)
}

/// Every quarantined change, oldest first.
pub(crate) fn list(conn: &rusqlite::Connection) -> Result<Vec<Quarantined>> {
    if !exists(conn)? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT doc_id, hash, problem, reason, origin, position, peer, at FROM quarantine
         ORDER BY id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<Vec<u8>>>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, Option<i64>>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, String>(7)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (doc_id, hash, problem, reason, origin, position, peer, at) = row?;
        let Ok(doc_id) = doc_id.parse() else { continue };
        out.push(Quarantined {
            doc_id,
            hash: hash.and_then(|h| {
                ChangeHash::try_from(h.as_slice())
                    .ok()
                    .map(|h| h.to_string())
            }),
            problem: Problem::parse(&problem),
            reason,
            origin: Origin::from_columns(&origin, position, peer),
            at,
        });
    }
    Ok(out)
}

impl Store {
    /// Every change this replica quarantined, oldest first (see the module docs).
    pub fn quarantined(&self) -> Result<Vec<Quarantined>> {
        list(&self.conn)
    }

    /// How many changes this replica quarantined.
    pub fn quarantine_len(&self) -> Result<u64> {
        if !exists(&self.conn)? {
            return Ok(0);
        }
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM quarantine", [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}
