//! `crm check`: verifying a whole replica without changing it.
//!
//! [`Store::check`] opens the replica read-only, in one read transaction (a consistent view
//! while `crm serve` keeps writing), and checks:
//! - the file: SQLite's `PRAGMA integrity_check`;
//! - every change: its bytes against its hash ([`crm_model::change::verify_hash`]); a change
//!   stored with empty bytes is held in its document's snapshot, which must hold it;
//! - every document: its snapshot loads, its changes apply, they give the heads stored for
//!   it, it claims no other record's id, and its projection rows (its kind's table, tags,
//!   references, stage and status history, conflicts, full-text row) are exactly what a fresh
//!   projection of it gives (compared, never rewritten: `crm reindex` is the repair);
//! - projection rows of documents that do not exist or are of another kind;
//!
//! and lists the quarantined changes. One document is in memory at a time.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use crm_model::automerge::{Automerge, ChangeHash};
use crm_model::{Kind, RecordId, doc};
use rusqlite::types::Value as Sql;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::{Result, StoreError};
use crate::projection;
use crate::quarantine::{self, Quarantined};
use crate::replica::{REPLICA_FILE, Store, encode_heads, last_change};
use crate::schema;

/// Problems kept in a report at most; the rest are counted in [`CheckReport::omitted`].
const MAX_PROBLEMS: usize = 1000;

/// What kind of problem [`Store::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CheckKind {
    /// SQLite's integrity check found damage in the file.
    Database,
    /// A stored change whose bytes do not match its hash.
    DamagedChange,
    /// A change listed for a document that neither its bytes nor its snapshot hold.
    MissingChange,
    /// A document that cannot be loaded, whose changes do not give its stored heads, or that
    /// claims another record's id.
    Document,
    /// Projection rows that differ from a fresh projection of the documents.
    Projection,
}

impl CheckKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckKind::Database => "database",
            CheckKind::DamagedChange => "damaged_change",
            CheckKind::MissingChange => "missing_change",
            CheckKind::Document => "document",
            CheckKind::Projection => "projection",
        }
    }
}

/// One problem found by [`Store::check`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckProblem {
    pub kind: CheckKind,
    /// The record concerned, when there is one.
    pub record: Option<RecordId>,
    /// What is wrong.
    pub detail: String,
    /// What to do about it.
    pub repair: String,
}

/// What [`Store::check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Documents checked.
    pub documents: u64,
    /// Stored changes checked.
    pub changes: u64,
    /// Problems, in the order found (at most 1000; see `omitted`).
    pub problems: Vec<CheckProblem>,
    /// Problems found beyond those listed.
    pub omitted: u64,
    /// Changes this replica quarantined (refused from a relay or another replica). Not damage
    /// to this replica: they were never stored as data.
    pub quarantined: Vec<Quarantined>,
}

impl CheckReport {
    /// No problem found (quarantined changes are not problems of this replica).
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty() && self.omitted == 0
    }

    fn add(
        &mut self,
        kind: CheckKind,
        record: Option<RecordId>,
        detail: String,
        repair: impl Into<String>,
    ) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(CheckProblem {
                kind,
                record,
                detail,
                repair: repair.into(),
            });
        } else {
            self.omitted += 1;
        }
    }
}

const REINDEX: &str = "run `crm reindex`: it rebuilds every projection from the documents";
const RESYNC: &str = "the relay and the other devices still have this record's changes: make a \
                      new replica and sync it (`crm init`, `crm join`, `crm sync`), or restore \
                      replica.db from a backup";

impl Store {
    /// Checks the replica in `dir` without writing anything (see the module docs). Fails only
    /// when the directory does not hold a replica this build can read; what is wrong inside
    /// one is in the report.
    pub fn check(dir: &Path) -> Result<CheckReport> {
        let path = dir.join(REPLICA_FILE);
        if !path.is_file() {
            return Err(StoreError::NotAReplica { dir: dir.into() });
        }
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::EmptyFile { path });
        }
        let corrupt = |source| StoreError::Corrupt {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(corrupt)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        crate::replica::format_of(&conn, &path)?;
        // One read transaction: a consistent view while another process writes.
        let tx = conn.transaction()?;
        let mut report = CheckReport::default();
        integrity(&tx, &mut report)?;
        let projected = tx
            .query_row("SELECT value FROM meta WHERE key = 'projection'", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?;
        let compare = projected.as_deref() == Some(schema::projection_fingerprint().as_str());
        if !compare {
            report.add(
                CheckKind::Projection,
                None,
                "the projections were built for another version of crm, so they were not \
                 compared"
                    .into(),
                "any crm command that opens the replica rebuilds them (or `crm reindex`)",
            );
        }
        let mut docs = tx.prepare("SELECT docno, id, kind, heads FROM documents ORDER BY docno")?;
        let mut rows = docs.query([])?;
        while let Some(row) = rows.next()? {
            let docno: i64 = row.get(0)?;
            let id: String = row.get(1)?;
            let kind: Option<String> = row.get(2)?;
            let heads: Vec<u8> = row.get(3)?;
            report.documents += 1;
            let Ok(id) = id.parse::<RecordId>() else {
                report.add(
                    CheckKind::Document,
                    None,
                    format!("document #{docno} has the id {id:?}, which is not a record id"),
                    RESYNC,
                );
                continue;
            };
            let stored = Stored {
                docno,
                id,
                kind,
                heads,
            };
            check_document(&tx, &stored, compare, &mut report)?;
        }
        drop(rows);
        drop(docs);
        if compare {
            orphans(&tx, &mut report)?;
        }
        let has_quarantine = tx
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'quarantine'")?
            .exists([])?;
        if has_quarantine {
            report.quarantined = quarantine::list(&tx)?;
        }
        Ok(report)
    }
}

/// A document row.
struct Stored {
    docno: i64,
    id: RecordId,
    kind: Option<String>,
    heads: Vec<u8>,
}

fn integrity(conn: &Connection, report: &mut CheckReport) -> Result<()> {
    let mut stmt = conn.prepare("PRAGMA integrity_check(100)")?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for line in lines.into_iter().filter(|l| l != "ok") {
        report.add(
            CheckKind::Database,
            None,
            format!("SQLite: {line}"),
            "the file is damaged: restore replica.db from a backup, or make a new replica and \
             sync it from the relay",
        );
    }
    Ok(())
}

/// Checks one document: its changes, its heads, its claim and its projection.
fn check_document(
    conn: &Connection,
    doc: &Stored,
    compare: bool,
    report: &mut CheckReport,
) -> Result<()> {
    let id = doc.id;
    let snapshot: Option<Vec<u8>> = conn
        .prepare_cached("SELECT snapshot FROM documents WHERE docno = ?1")?
        .query_row([doc.docno], |r| r.get(0))?;
    let mut document = match snapshot {
        Some(bytes) => match Automerge::load(&bytes) {
            Ok(d) => d,
            Err(e) => {
                report.add(
                    CheckKind::Document,
                    Some(id),
                    format!("its snapshot does not load: {e}"),
                    RESYNC,
                );
                return Ok(());
            }
        },
        None => Automerge::new(),
    };
    // Every change of the document; the loose ones (not in the snapshot) to apply after.
    let mut loose = Vec::new();
    let mut faulty = false;
    {
        let mut stmt = conn.prepare_cached(
            "SELECT c.seq, c.hash, c.bytes, c.in_snapshot, o.seq IS NOT NULL FROM changes c
             LEFT JOIN outbox o ON o.seq = c.seq WHERE c.docno = ?1 ORDER BY c.seq",
        )?;
        let mut rows = stmt.query([doc.docno])?;
        while let Some(row) = rows.next()? {
            let seq: i64 = row.get(0)?;
            let hash: Vec<u8> = row.get(1)?;
            let bytes: Vec<u8> = row.get(2)?;
            let in_snapshot: bool = row.get(3)?;
            let queued: bool = row.get(4)?;
            report.changes += 1;
            let Ok(hash) = ChangeHash::try_from(hash.as_slice()) else {
                faulty = true;
                report.add(
                    CheckKind::DamagedChange,
                    Some(id),
                    format!("change #{seq} has a stored hash that is not a change hash"),
                    RESYNC,
                );
                continue;
            };
            let held = document.get_change_meta_by_hash(&hash).is_some();
            if bytes.is_empty() {
                if !held {
                    faulty = true;
                    report.add(
                        CheckKind::MissingChange,
                        Some(id),
                        format!(
                            "change {hash} is stored without its bytes, and the record's \
                             snapshot does not hold it"
                        ),
                        RESYNC,
                    );
                }
                continue;
            }
            match crm_model::change::verify_hash(&bytes, &hash) {
                Ok(change) => {
                    if !in_snapshot {
                        loose.push(change);
                    } else if !held {
                        faulty = true;
                        report.add(
                            CheckKind::MissingChange,
                            Some(id),
                            format!(
                                "change {hash} is marked as folded into the record's snapshot, \
                                 which does not hold it"
                            ),
                            RESYNC,
                        );
                    }
                }
                Err(e) => {
                    let repair = match (held, queued) {
                        (true, true) => {
                            "a good copy is in the record's snapshot: the next `crm sync` \
                             pushes that copy and repairs the stored one"
                        }
                        (true, false) => {
                            "the record reads correctly from its snapshot, which holds a good \
                             copy; only this change's stored bytes are damaged (a replica \
                             merging from this one refuses them)"
                        }
                        (false, true) => {
                            "this local edit waits to be pushed and no good copy exists here: \
                             `crm sync` does not push it, nor the record's later edits. Note \
                             what the record should hold (`crm show`), then make a new replica \
                             from the relay and type the edits again"
                        }
                        (false, false) => RESYNC,
                    };
                    faulty = true;
                    report.add(
                        CheckKind::DamagedChange,
                        Some(id),
                        format!("change {hash}: {e}"),
                        repair,
                    );
                }
            }
        }
    }
    if let Err(e) = document.apply_changes(loose) {
        report.add(
            CheckKind::Document,
            Some(id),
            format!("its changes do not apply: {e}"),
            RESYNC,
        );
        return Ok(());
    }
    if encode_heads(&document.get_heads()) != doc.heads && !faulty {
        report.add(
            CheckKind::Document,
            Some(id),
            "its changes do not give the heads stored for it".into(),
            RESYNC,
        );
    }
    if let Some(claimed) = crate::remote::claim(id, &document) {
        report.add(
            CheckKind::Document,
            Some(id),
            format!("it holds a change of record {claimed}"),
            RESYNC,
        );
    }
    if compare && !faulty {
        check_projection(conn, doc, &document, report)?;
    }
    Ok(())
}

/// Compares a document's projection rows with a fresh projection of it.
fn check_projection(
    conn: &Connection,
    doc: &Stored,
    document: &Automerge,
    report: &mut CheckReport,
) -> Result<()> {
    let id = doc.id;
    let docno = doc.docno;
    let Ok(record) = doc::read(document, None) else {
        // Not a readable record (yet): it has no projection rows.
        let mut stray = Vec::new();
        if let Some(kind) = doc.kind.as_deref().and_then(|k| k.parse::<Kind>().ok())
            && projection::stored_row(conn, kind, docno)?.is_some()
        {
            stray.push(crate::schema::table(kind));
        }
        for (table, column) in SIDE_TABLES {
            let sql = format!("SELECT 1 FROM {table} WHERE {column} = ?1");
            if conn.prepare_cached(&sql)?.exists([docno])? {
                stray.push((*table).to_string());
            }
        }
        if !stray.is_empty() {
            report.add(
                CheckKind::Projection,
                Some(id),
                format!(
                    "it is not a readable record, yet it has rows in {}",
                    stray.join(", ")
                ),
                REINDEX,
            );
        }
        return Ok(());
    };
    let mut differ: Vec<String> = Vec::new();
    if doc.kind.as_deref() != Some(record.kind.as_str()) {
        differ.push(format!(
            "its kind is stored as {:?}, not {}",
            doc.kind.as_deref().unwrap_or("none"),
            record.kind
        ));
    }
    let table = crate::schema::table(record.kind);
    let want = projection::row_values(docno, &record, &last_change(document));
    match projection::stored_row(conn, record.kind, docno)? {
        None => differ.push(format!("no row in {table}")),
        Some(have) => {
            let columns: Vec<&str> = projection::row_columns(record.kind)
                .iter()
                .zip(want.iter().zip(&have))
                .filter(|(_, (w, h))| w != h)
                .map(|(c, _)| c.as_str())
                .collect();
            if !columns.is_empty() {
                differ.push(format!("{table}: {}", columns.join(", ")));
            }
        }
    }
    let tags: BTreeSet<String> = conn
        .prepare_cached("SELECT tag FROM record_tags WHERE docno = ?1")?
        .query_map([docno], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    if tags != record.tags.iter().cloned().collect() {
        differ.push("record_tags".into());
    }
    let refs: BTreeSet<(String, String)> = conn
        .prepare_cached("SELECT field, target FROM record_refs WHERE docno = ?1")?
        .query_map([docno], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    if refs != projection::references(&record) {
        differ.push("record_refs".into());
    }
    let conflicts: BTreeMap<String, String> = conn
        .prepare_cached("SELECT field, vals FROM conflicts WHERE docno = ?1")?
        .query_map([docno], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    let want_conflicts: BTreeMap<String, String> = projection::conflict_values(&record)
        .into_iter()
        .map(|(f, v)| (f.to_string(), v))
        .collect();
    if conflicts != want_conflicts {
        differ.push("conflicts".into());
    }
    type History = (String, String, i64, String, String, String, String);
    let history: Vec<History> = conn
        .prepare_cached(
            "SELECT kind, field, pos, value, at, by, device FROM record_history
             WHERE docno = ?1 ORDER BY field, pos",
        )?
        .query_map([docno], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut want_history: Vec<History> = Vec::new();
    for (field, entries) in &record.history {
        for (pos, e) in entries.iter().enumerate() {
            want_history.push((
                record.kind.as_str().to_string(),
                field.to_string(),
                i64::try_from(pos).unwrap_or(i64::MAX),
                e.value.clone(),
                crm_model::format_time(&e.at),
                e.by.clone(),
                e.device.clone(),
            ));
        }
    }
    want_history.sort_by(|a, b| (&a.1, a.2).cmp(&(&b.1, b.2)));
    if history != want_history {
        differ.push("record_history".into());
    }
    let search: Option<(Sql, Sql, Sql, Sql)> = conn
        .prepare_cached("SELECT kind, archived, title, body FROM search WHERE rowid = ?1")?
        .query_row([docno], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    let want_search = (
        Sql::Text(record.kind.as_str().into()),
        Sql::Integer(i64::from(record.archived)),
        Sql::Text(record.title()),
        Sql::Text(projection::search_body(&record)),
    );
    if search.as_ref() != Some(&want_search) {
        differ.push("search".into());
    }
    if !differ.is_empty() {
        report.add(
            CheckKind::Projection,
            Some(id),
            format!(
                "its projection differs from its document: {}",
                differ.join("; ")
            ),
            REINDEX,
        );
    }
    Ok(())
}

/// The projection tables besides the kinds' own, with their document column.
const SIDE_TABLES: &[(&str, &str)] = &[
    ("record_tags", "docno"),
    ("record_refs", "docno"),
    ("record_history", "docno"),
    ("conflicts", "docno"),
    ("search", "rowid"),
];

/// Projection rows of documents that do not exist, or (in a kind's table) are of another
/// kind.
fn orphans(conn: &Connection, report: &mut CheckReport) -> Result<()> {
    for kind in Kind::ALL {
        let table = crate::schema::table(*kind);
        let n: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM {table} WHERE docno NOT IN
                 (SELECT docno FROM documents WHERE kind = ?1)"
            ),
            [kind.as_str()],
            |r| r.get(0),
        )?;
        if n > 0 {
            report.add(
                CheckKind::Projection,
                None,
                format!("{table} has {n} rows of records that are not {kind} records here"),
                REINDEX,
            );
        }
    }
    for (table, column) in SIDE_TABLES {
        let n: i64 = conn.query_row(
            &format!(
                "SELECT count(*) FROM {table} WHERE {column} NOT IN (SELECT docno FROM documents)"
            ),
            [],
            |r| r.get(0),
        )?;
        if n > 0 {
            report.add(
                CheckKind::Projection,
                None,
                format!("{table} has {n} rows of records that do not exist"),
                REINDEX,
            );
        }
    }
    Ok(())
}
