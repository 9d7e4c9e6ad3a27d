//! Document snapshots in `relay.db`: the compactor's work, and the bootstrap pages read from
//! it.
//!
//! A snapshot is a document built from its changes in the log and saved (`Automerge::save`),
//! with the hashes of exactly the changes it holds. A device loads it in one call instead of
//! applying every change. The compactor brings a snapshot up to date by loading it and
//! applying only the log's changes after it: a document edited all day (a device pushing
//! thousands of edits to one record) costs each round its new changes, not its whole history
//! parsed again. One document is in memory at a time, and the writes are short transactions,
//! so pushes never wait long for the writer.
//!
//! Changes whose dependencies are not in the log (a device pushed a change without one it
//! depends on) cannot be applied. Automerge queues them, and the snapshot is saved without
//! them; the snapshot's `seq` is then the position before the first such change, so a page
//! reads the log from there and sends whatever the snapshot's hash list does not hold.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;

use automerge::{Automerge, Change, ChangeHash, ReadDoc as _, SaveOptions};
use crm_sync::{DocId, DocState, Hash, MAX_BATCH_CHANGES};
use rusqlite::{CachedStatement, OptionalExtension, params};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::{SqliteStore, hash, seq, sql_seq};
use crate::ids::WorkspaceId;
use crate::store::{DocumentsPage, StoreError};

/// Snapshot bytes the compactor holds before writing them in one transaction: few
/// transactions (each a sync to disk) without holding much memory.
const WRITE_BYTES: usize = 4 << 20;
/// Counted against a page's size for each document besides its bytes: the id and three
/// length prefixes (postcard varints, at most 10 bytes each).
const DOC_OVERHEAD: usize = 16 + 3 * 10;
/// Counted against a page's size for each change besides its bytes: its length prefix.
const CHANGE_OVERHEAD: usize = 10;

// The statements name their index: the relay never runs ANALYZE, and without statistics
// SQLite reads a document's changes through the log's primary key (the workspace's whole
// log) rather than `changes_by_doc`. A test checks every plan.

/// Stale documents, from the partial index that holds only them.
pub(super) const STALE_SQL: &str = "
    SELECT workspace, doc_id FROM documents INDEXED BY documents_stale
    WHERE last_seq > snap_seq LIMIT ?1";
pub(super) const COUNT_STALE_SQL: &str = "
    SELECT count(*) FROM documents INDEXED BY documents_stale
    WHERE last_seq > snap_seq";
pub(super) const CHANGES_OF_DOC_SQL: &str = "
    SELECT seq, bytes FROM changes INDEXED BY changes_by_doc
    WHERE workspace = ?1 AND doc_id = ?2 AND seq > ?3 ORDER BY seq";
const SNAPSHOT_SQL: &str = "SELECT seq, bytes, hashes FROM snapshots WHERE doc_id = ?1";
pub(super) const PAGE_DOCS_SQL: &str = "
    SELECT doc_id FROM documents INDEXED BY documents_by_workspace
    WHERE workspace = ?1 AND doc_id > ?2 AND first_seq <= ?3 ORDER BY doc_id";
pub(super) const PAGE_CHANGES_SQL: &str = "
    SELECT hash, bytes FROM changes INDEXED BY changes_by_doc
    WHERE workspace = ?1 AND doc_id = ?2 AND seq > ?3 AND seq <= ?4 ORDER BY seq";

/// A document the compactor rebuilt, waiting to be written.
struct Compacted {
    doc_id: DocId,
    /// The last log position read: the document is compacted through it.
    through: u64,
    /// `None` when no change could be applied: nothing is worth a snapshot, and the page
    /// sends the document's changes from the log.
    snapshot: Option<Snapshot>,
}

struct Snapshot {
    /// The snapshot holds every change of the document up to this log position.
    seq: u64,
    bytes: Vec<u8>,
    /// The hashes of the changes it holds, 32 bytes each.
    hashes: Vec<u8>,
}

impl SqliteStore {
    pub(super) fn compact_stale(&self, limit: usize) -> Result<usize, StoreError> {
        if limit == 0 {
            return Ok(0);
        }
        let stale: Vec<(WorkspaceId, DocId)> = self.read_with(|tx| {
            let mut stmt = tx.prepare_cached(STALE_SQL)?;
            let rows = stmt.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            rows.map(|r| {
                let (workspace, doc) = r?;
                Ok((workspace, doc_id(&doc)?))
            })
            .collect::<Result<_, StoreError>>()
        })?;
        let mut pending = Vec::new();
        let mut pending_bytes = 0;
        let mut done = 0;
        for (workspace, doc) in stale {
            let compacted = self.rebuild(workspace, doc)?;
            pending_bytes += compacted
                .snapshot
                .as_ref()
                .map_or(0, |s| s.bytes.len() + s.hashes.len());
            pending.push(compacted);
            if pending_bytes >= WRITE_BYTES {
                done += self.write_compacted(&mut pending)?;
                pending_bytes = 0;
            }
        }
        if !pending.is_empty() {
            done += self.write_compacted(&mut pending)?;
        }
        Ok(done)
    }

    pub(super) fn count_stale(&self) -> Result<u64, StoreError> {
        self.read_with(|tx| {
            let n: i64 = tx.query_row(COUNT_STALE_SQL, [], |r| r.get(0))?;
            Ok(seq(n))
        })
    }

    /// Reads a document's snapshot and the changes after it (parsing each as it is read, so
    /// only the parsed changes are held) and builds its new snapshot, outside any write
    /// transaction.
    fn rebuild(&self, workspace: WorkspaceId, doc: DocId) -> Result<Compacted, StoreError> {
        let (through, base, changes) = self.read_with(|tx| {
            let base: Option<(i64, Vec<u8>, Vec<u8>)> = tx
                .prepare_cached(SNAPSHOT_SQL)?
                .query_row([doc.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()?;
            let after = base.as_ref().map_or(0, |(at, _, _)| *at);
            let mut stmt = tx.prepare_cached(CHANGES_OF_DOC_SQL)?;
            let mut rows = stmt.query(params![workspace, doc.as_slice(), after])?;
            let mut through = seq(after);
            let mut changes = Ok(Vec::new());
            while let Some(row) = rows.next()? {
                let at = seq(row.get(0)?);
                through = at;
                if let Ok(parsed) = &mut changes {
                    let bytes: Vec<u8> = row.get(1)?;
                    match Change::try_from(bytes.as_slice()) {
                        Ok(change) => parsed.push((at, change)),
                        Err(e) => changes = Err(format!("the change at {at} does not parse: {e}")),
                    }
                }
            }
            let base = base.map(|(at, bytes, hashes)| Snapshot {
                seq: seq(at),
                bytes,
                hashes,
            });
            Ok::<_, StoreError>((through, base, changes))
        })?;
        let snapshot = changes
            .and_then(|changes| build(base, changes))
            .unwrap_or_else(|reason| {
                tracing::warn!(
                    doc = %Uuid::from_bytes(doc),
                    %workspace,
                    through,
                    %reason,
                    "cannot compact a document; devices get its changes from the log"
                );
                None
            });
        Ok(Compacted {
            doc_id: doc,
            through,
            snapshot,
        })
    }

    /// Stores rebuilt documents in one write transaction; returns how many it stored.
    fn write_compacted(&self, pending: &mut Vec<Compacted>) -> Result<usize, StoreError> {
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
            for c in pending.drain(..) {
                let doc = c.doc_id.as_slice();
                let at: Option<i64> = current.query_row([doc], |r| r.get(0)).optional()?;
                // Another compaction got as far meanwhile: keep what it stored.
                if at.is_none_or(|at| seq(at) >= c.through) {
                    continue;
                }
                match &c.snapshot {
                    Some(s) => {
                        upsert.execute(params![doc, sql_seq(s.seq), s.bytes, s.hashes])?;
                    }
                    None => {
                        delete.execute([doc])?;
                    }
                }
                mark.execute(params![doc, sql_seq(c.through)])?;
                stored += 1;
            }
            Ok(stored)
        })
    }

    pub(super) fn read_page(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        through: u64,
        max_bytes: usize,
    ) -> Result<DocumentsPage, StoreError> {
        self.read_with(|tx| {
            let mut docs_stmt = tx.prepare_cached(PAGE_DOCS_SQL)?;
            let mut reader = DocReader {
                snapshot: tx.prepare_cached(SNAPSHOT_SQL)?,
                changes: tx.prepare_cached(PAGE_CHANGES_SQL)?,
                workspace,
                through,
            };
            // Every 16-byte id sorts after the empty blob.
            let after = after.map_or_else(Vec::new, |a| a.to_vec());
            let mut rows = docs_stmt.query(params![workspace, after, sql_seq(through)])?;
            let mut docs: Vec<DocState> = Vec::new();
            let mut size = 0;
            while let Some(row) = rows.next()? {
                let doc = doc_id(&row.get::<_, Vec<u8>>(0)?)?;
                let next = docs.last().map(|d| d.doc_id);
                if docs.len() >= MAX_BATCH_CHANGES {
                    return Ok(DocumentsPage { docs, next });
                }
                match reader.read(doc, max_bytes.saturating_sub(size))? {
                    Some((state, len)) => {
                        size += len;
                        docs.push(state);
                    }
                    None if docs.is_empty() => {
                        return Err(StoreError::DocumentTooLarge {
                            doc: Uuid::from_bytes(doc),
                            max: max_bytes,
                        });
                    }
                    None => return Ok(DocumentsPage { docs, next }),
                }
            }
            Ok(DocumentsPage { docs, next: None })
        })
    }
}

/// Reads one document of a page.
struct DocReader<'c> {
    snapshot: CachedStatement<'c>,
    changes: CachedStatement<'c>,
    workspace: WorkspaceId,
    through: u64,
}

impl DocReader<'_> {
    /// The document and its encoded size, or `None` as soon as that passes `room` (so a
    /// huge document is never read whole).
    fn read(&mut self, doc: DocId, room: usize) -> Result<Option<(DocState, usize)>, StoreError> {
        let stored: Option<(i64, Vec<u8>, Vec<u8>)> = self
            .snapshot
            .query_row([doc.as_slice()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let (from, snapshot, hashes) = match stored {
            Some((at, bytes, hashes)) => (seq(at), bytes, hashes),
            None => (0, Vec::new(), Vec::new()),
        };
        let mut len = DOC_OVERHEAD + snapshot.len() + hashes.len();
        if len > room {
            return Ok(None);
        }
        if hashes.len() % 32 != 0 {
            return Err(StoreError::Corrupt(format!(
                "the snapshot of {} lists {} bytes of hashes",
                Uuid::from_bytes(doc),
                hashes.len()
            )));
        }
        let hashes: Vec<Hash> = hashes
            .chunks_exact(32)
            .map(hash)
            .collect::<Result<_, _>>()?;
        let held: HashSet<&Hash> = hashes.iter().collect();
        let mut changes = Vec::new();
        let mut rows = self.changes.query(params![
            self.workspace,
            doc.as_slice(),
            sql_seq(from),
            sql_seq(self.through)
        ])?;
        while let Some(row) = rows.next()? {
            if !held.is_empty() && held.contains(&hash(&row.get::<_, Vec<u8>>(0)?)?) {
                continue;
            }
            let bytes: Vec<u8> = row.get(1)?;
            len += bytes.len() + CHANGE_OVERHEAD;
            if len > room {
                return Ok(None);
            }
            changes.push(ByteBuf::from(bytes));
        }
        Ok(Some((
            DocState {
                doc_id: doc,
                snapshot,
                hashes,
                changes,
            },
            len,
        )))
    }
}

/// Applies a document's changes after `base` (its previous snapshot, or none) and saves it.
/// Automerge is trusted with validated changes only, but a panic inside it must not take the
/// compactor down: it is reported like any other document that does not build.
fn build(base: Option<Snapshot>, changes: Vec<(u64, Change)>) -> Result<Option<Snapshot>, String> {
    let order: Vec<(u64, ChangeHash)> = changes.iter().map(|(at, c)| (*at, c.hash())).collect();
    let built = std::panic::catch_unwind(AssertUnwindSafe(move || {
        let (mut doc, mut hashes, base_seq) = match base {
            Some(b) => (
                Automerge::load(&b.bytes).map_err(|e| format!("its snapshot: {e}"))?,
                b.hashes,
                b.seq,
            ),
            None => (Automerge::new(), Vec::new(), 0),
        };
        let held: HashSet<[u8; 32]> = hashes
            .chunks_exact(32)
            .filter_map(|h| <[u8; 32]>::try_from(h).ok())
            .collect();
        doc.apply_changes(changes.into_iter().map(|(_, c)| c))
            .map_err(|e| e.to_string())?;
        let mut complete_through = order.last().map_or(base_seq, |(at, _)| *at);
        let queued = !doc.get_missing_deps(&[]).is_empty();
        let mut missing = false;
        for (at, h) in &order {
            // A change after the old snapshot's position may be in it already (applied then
            // though an earlier one waited for a dependency).
            if held.contains(&h.0) {
                continue;
            }
            if !queued || doc.get_change_meta_by_hash(h).is_some() {
                hashes.extend(h.0);
            } else if !missing {
                missing = true;
                complete_through = at.saturating_sub(1);
            }
        }
        if hashes.is_empty() {
            return Ok(None);
        }
        let bytes = doc.save_with_options(SaveOptions {
            deflate: true,
            // Queued changes are not in the hash list: they travel from the log.
            retain_orphans: false,
        });
        Ok(Some(Snapshot {
            seq: complete_through,
            bytes,
            hashes,
        }))
    }));
    built.unwrap_or_else(|_| Err("Automerge panicked while building it".into()))
}

fn doc_id(bytes: &[u8]) -> Result<DocId, StoreError> {
    DocId::try_from(bytes).map_err(|_| StoreError::Corrupt("a document id is not 16 bytes".into()))
}
