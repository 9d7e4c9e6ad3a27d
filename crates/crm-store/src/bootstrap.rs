//! A fresh replica's first sync from a relay's document snapshots.
//!
//! Replaying a workspace's change log builds every document change by change: on a fresh
//! device that was most of its first sync. A relay keeps a compacted snapshot of each
//! document (`Automerge::save`) with the hashes of the changes it holds, and sends a new
//! device pages of them ([`RemoteDocument`]). [`Store::apply_documents`] loads each snapshot,
//! applies the few changes the relay has not folded in yet, and stores:
//! - the snapshot as the document's snapshot, and those changes as its loose changes;
//! - one `changes` row per change the snapshot holds, with its hash and **empty bytes**. The
//!   hash is what deduplication needs. The bytes are in the snapshot, and are taken out of it
//!   only when a peer needs them: a relay that lost them (`Store::reset_sync` queues every
//!   change), or `Store::merge_from` ([`ChangeBytes`]).
//!
//! A document this replica already has (it pushed it before it had a cursor) is not replaced:
//! its snapshot's changes are taken out and applied as remote changes, which merge.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use chrono::Utc;
use crm_model::automerge::{Automerge, ChangeHash, ReadDoc};
use crm_model::{Record, RecordId};
use rusqlite::params;

use crate::error::{Result, StoreError};
use crate::parallel::InOrder;
use crate::projection::{Fts, LastChange};
use crate::remote::{ApplyReport, IdleFlush, RemoteChange, Source, batch_of, read_built};
use crate::replica::{self, Store};
use crate::sync::{SyncCursor, write_cursor};

/// One document of a relay's bootstrap page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteDocument {
    pub doc_id: RecordId,
    /// `Automerge::save` of the document; empty when the relay has no snapshot of it yet.
    pub snapshot: Vec<u8>,
    /// The hash of every change the snapshot holds.
    pub hashes: Vec<[u8; 32]>,
    /// The document's changes the snapshot does not hold.
    pub changes: Vec<Vec<u8>>,
}

/// A page (or several) of a relay's documents, built on worker threads from the moment it
/// is made, ahead of [`Store::apply_prepared`]: a device that prepares the next pages before
/// it writes (and commits) the ones before keeps every core busy.
pub struct PreparedDocuments {
    docs: Arc<[RemoteDocument]>,
    built: InOrder<'static, RemoteDocument, Result<Built>>,
}

impl PreparedDocuments {
    /// Starts building `docs` on worker threads.
    pub fn start(docs: Vec<RemoteDocument>) -> Self {
        let docs: Arc<[RemoteDocument]> = docs.into();
        Self {
            built: InOrder::ahead(docs.clone(), build),
            docs,
        }
    }

    /// How many documents this holds.
    pub fn len(&self) -> usize {
        self.docs.len()
    }

    /// Whether this holds no document.
    pub fn is_empty(&self) -> bool {
        self.docs.is_empty()
    }
}

impl Store {
    /// Applies a page of a relay's documents; with `cursor` (the last page), stores the cursor
    /// in the same transaction. Documents new to this replica are loaded from their snapshots
    /// on worker threads; the others merge through [`Store::apply_remote_changes`] (a change
    /// of theirs that cannot be applied is quarantined). A page holding a new document that
    /// does not check out (a snapshot that does not load or does not hold exactly the changes
    /// it lists, a change that is damaged or refused, a document claiming another record's
    /// id, a change stored here as another record's) is refused whole with
    /// [`StoreError::InvalidDocument`]: the device then syncs from the relay's log, where
    /// each bad entry is quarantined on its own.
    pub fn apply_documents(
        &mut self,
        docs: Vec<RemoteDocument>,
        cursor: Option<SyncCursor>,
    ) -> Result<ApplyReport> {
        self.apply_prepared(PreparedDocuments::start(docs), cursor)
    }

    /// [`Store::apply_documents`] of documents already being built.
    pub fn apply_prepared(
        &mut self,
        mut prepared: PreparedDocuments,
        cursor: Option<SyncCursor>,
    ) -> Result<ApplyReport> {
        let mut known = Vec::new();
        for d in prepared.docs.iter() {
            let stored = self
                .conn
                .prepare_cached("SELECT 1 FROM documents WHERE id = ?1")?
                .exists([d.doc_id.to_string()])?;
            known.push(stored);
        }
        let new = known.iter().filter(|k| !**k).count();
        let mut report = ApplyReport::default();
        if new < known.len() {
            let mut batch = Vec::new();
            for (d, _) in prepared.docs.iter().zip(&known).filter(|(_, k)| **k) {
                for bytes in changes_of(d)? {
                    batch.push(RemoteChange {
                        doc_id: d.doc_id,
                        bytes,
                    });
                }
            }
            let batch = batch_of(&batch);
            let merged = if new == 0 {
                self.apply_remote_with(&batch, Source::Bootstrap, false, |tx| match &cursor {
                    Some(c) => write_cursor(tx, c),
                    None => Ok(()),
                })?
            } else {
                self.apply_remote_with(&batch, Source::Bootstrap, false, |_| Ok(()))?
            };
            report.applied += merged.applied;
            report.duplicates += merged.duplicates;
            report.changed.extend(merged.changed);
            report.quarantined.extend(merged.quarantined);
            if new == 0 {
                return Ok(report);
            }
        }
        self.in_apply_cache(|store| {
            store.write_documents(&mut prepared, &known, cursor, &mut report)
        })?;
        Ok(report)
    }

    /// Writes the documents new to this replica (`known` is false), as their workers finish
    /// them, and the cursor, in one transaction (with the page cache of a remote batch).
    fn write_documents(
        &mut self,
        prepared: &mut PreparedDocuments,
        known: &[bool],
        cursor: Option<SyncCursor>,
        report: &mut ApplyReport,
    ) -> Result<()> {
        let now = Utc::now();
        let tx = self.begin()?;
        let mut idle = IdleFlush::default();
        let PreparedDocuments { docs, built } = prepared;
        for (d, known) in docs.iter().zip(known) {
            idle.before_next(&tx, built)?;
            let doc = built
                .next()
                .ok_or(StoreError::Internal("a page lost a document it built"))?;
            if *known {
                continue;
            }
            let doc = doc?;
            write(&tx, d, &doc, now)?;
            report.applied += d.hashes.len() + doc.loose.len();
            report.changed.push(d.doc_id);
        }
        if let Some(c) = &cursor {
            write_cursor(&tx, c)?;
        }
        replica::commit(tx)
    }
}

/// A document new to this replica, loaded and read (on a build thread).
pub(crate) struct Built {
    heads: Vec<u8>,
    /// The changes after the snapshot, each once: (hash, bytes).
    loose: Vec<(ChangeHash, Vec<u8>)>,
    record: Option<(Record, LastChange)>,
}

fn invalid(id: RecordId, reason: impl ToString) -> StoreError {
    StoreError::InvalidDocument {
        id,
        reason: reason.to_string(),
    }
}

/// Loads the snapshot, checks that it holds exactly the changes it claims, applies the loose
/// changes and reads the record.
fn build(d: &RemoteDocument) -> Result<Built> {
    let id = d.doc_id;
    let mut document = if d.snapshot.is_empty() {
        Automerge::new()
    } else {
        Automerge::load(&d.snapshot).map_err(|e| invalid(id, e))?
    };
    // It holds exactly the listed changes: as many, each of them, none twice.
    let claimed: HashSet<[u8; 32]> = d.hashes.iter().copied().collect();
    let held = document.stats().num_changes;
    if claimed.len() != d.hashes.len()
        || u64::try_from(claimed.len()) != Ok(held)
        || claimed
            .iter()
            .any(|h| document.get_change_meta_by_hash(&ChangeHash(*h)).is_none())
    {
        return Err(invalid(
            id,
            format!(
                "its snapshot holds {held} changes, not the {} it lists",
                d.hashes.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut loose = Vec::new();
    let mut parsed = Vec::new();
    for bytes in &d.changes {
        let change = crm_model::change::verify(bytes).map_err(|e| invalid(id, e))?;
        let hash = change.hash();
        if claimed.contains(&hash.0) || !seen.insert(hash) {
            continue;
        }
        loose.push((hash, bytes.clone()));
        parsed.push(change);
    }
    document
        .apply_changes(parsed)
        .map_err(|e| invalid(id, format!("a change is refused: {e}")))?;
    let (heads, record) = read_built(id, &document).map_err(|e| match e {
        StoreError::DocumentMismatch { claimed, .. } => {
            invalid(id, format!("it holds a change of record {claimed}"))
        }
        other => other,
    })?;
    Ok(Built {
        heads,
        loose,
        record,
    })
}

/// Stores a document new to this replica: its row with the snapshot, a row per change (empty
/// bytes for those in the snapshot), and its projection.
fn write(
    tx: &rusqlite::Transaction<'_>,
    d: &RemoteDocument,
    built: &Built,
    now: chrono::DateTime<Utc>,
) -> Result<()> {
    let at = crm_model::format_time(&now);
    tx.prepare_cached(
        "INSERT INTO documents (id, kind, heads, snapshot, loose, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![
        d.doc_id.to_string(),
        built.record.as_ref().map(|(r, _)| r.kind.as_str()),
        built.heads,
        (!d.snapshot.is_empty()).then_some(d.snapshot.as_slice()),
        i64::try_from(built.loose.len()).unwrap_or(i64::MAX),
        at
    ])?;
    let docno = tx.last_insert_rowid();
    // A change stored here already is another record's, since this document is new.
    let elsewhere = |e: StoreError, hash: &[u8]| match e {
        StoreError::Sqlite(rusqlite::Error::SqliteFailure(f, _))
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            let hash = ChangeHash::try_from(hash).map_or_else(|_| "?".into(), |h| h.to_string());
            invalid(
                d.doc_id,
                format!("change {hash} is stored here as another record's"),
            )
        }
        other => other,
    };
    let mut folded = tx.prepare_cached(
        "INSERT INTO changes (hash, docno, bytes, in_snapshot, local, received_at)
         VALUES (?1, ?2, x'', 1, 0, ?3)",
    )?;
    for hash in &d.hashes {
        folded
            .execute(params![&hash[..], docno, at])
            .map_err(|e| elsewhere(e.into(), hash))?;
    }
    for (hash, bytes) in &built.loose {
        replica::insert_change(tx, docno, *hash, bytes, false, now)
            .map_err(|e| elsewhere(e, &hash.0))?;
    }
    if let Some((record, last)) = &built.record {
        crate::projection::write_new(tx, docno, record, last, Fts::AtCommit)?;
    }
    Ok(())
}

/// Every change of a relay's document as bytes: those of its snapshot, then the others.
fn changes_of(d: &RemoteDocument) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    if !d.snapshot.is_empty() {
        let document = Automerge::load(&d.snapshot).map_err(|e| invalid(d.doc_id, e))?;
        out.extend(
            document
                .get_changes(&[])
                .into_iter()
                .map(|c| c.raw_bytes().to_vec()),
        );
    }
    out.extend(d.changes.iter().cloned());
    Ok(out)
}

/// The bytes of stored changes, taking those stored with empty bytes (see the module docs)
/// out of their document's snapshot. Keeps the last few documents it loaded.
#[derive(Default)]
pub(crate) struct ChangeBytes {
    loaded: HashMap<i64, Automerge>,
}

impl ChangeBytes {
    /// `bytes` as stored for the change `hash` of document `docno`, or, when empty, the
    /// change's bytes from the document's snapshot.
    pub(crate) fn get(
        &mut self,
        conn: &rusqlite::Connection,
        docno: i64,
        hash: &[u8],
        bytes: Vec<u8>,
    ) -> Result<Vec<u8>> {
        if !bytes.is_empty() {
            return Ok(bytes);
        }
        let unreadable = |reason: String| StoreError::UnreadableChange { docno, reason };
        let hash = ChangeHash::try_from(hash).map_err(|e| unreadable(e.to_string()))?;
        if !self.loaded.contains_key(&docno) {
            if self.loaded.len() >= 16 {
                self.loaded.clear();
            }
            let snapshot: Option<Vec<u8>> = conn
                .prepare_cached("SELECT snapshot FROM documents WHERE docno = ?1")?
                .query_row([docno], |r| r.get(0))?;
            let document = match snapshot {
                Some(s) => Automerge::load(&s)
                    .map_err(|e| unreadable(format!("its document's snapshot: {e}")))?,
                None => Automerge::new(),
            };
            self.loaded.insert(docno, document);
        }
        self.loaded
            .get(&docno)
            .and_then(|d| d.get_change_by_hash(&hash))
            .map(|c| c.raw_bytes().to_vec())
            .ok_or_else(|| unreadable(format!("{hash} is neither stored nor in the snapshot")))
    }
}
