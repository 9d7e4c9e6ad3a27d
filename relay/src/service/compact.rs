//! Compaction: each stale document rebuilt from its snapshot and the log's changes after
//! it, one document built at a time, and its snapshot replaced.
//!
//! A round takes up to 64 stale documents and costs the store a few statements whatever
//! their number (their snapshots in one read, their changes in one read per workspace, the
//! new snapshots in one write per 4 MiB): on PostgreSQL a statement is a round trip, and a
//! round trip per document made compacting a 50,000-record import ten times slower than on
//! SQLite. It holds the old snapshots of those documents, and the parsed changes of one.
//!
//! A snapshot is a document built from its changes in the log and saved (`Automerge::save`),
//! with the hashes of exactly the changes it holds. A device loads it in one call instead of
//! applying every change. The compactor brings a snapshot up to date by loading it and
//! applying only the log's changes after it: a document edited all day (a device pushing
//! thousands of edits to one record) costs each round its new changes, not its whole history
//! parsed again. The writes are short transactions, so pushes never wait long for the writer.
//!
//! Changes whose dependencies are not in the log cannot be applied. Automerge queues them,
//! and the snapshot is saved without them; the snapshot's `seq` is then the position before
//! the first such change, so a page reads the log from there and sends whatever the
//! snapshot's hash list does not hold. (The push rule keeps such changes out of new logs;
//! logs written before it may hold some.)

use std::collections::{HashMap, HashSet};
use std::panic::AssertUnwindSafe;

use automerge::{Automerge, Change, ChangeHash, ReadDoc as _, SaveOptions};
use crm_sync::DocId;
use uuid::Uuid;

use super::Relay;
use crate::ids::WorkspaceId;
use crate::store::{SnapshotWrite, StoreError, StoredSnapshot};

/// How far a document's changes were read, and what they parsed to (or why they did not).
type ReadSoFar = (u64, Result<Vec<(u64, Change)>, String>);

/// Snapshot bytes the compactor holds before writing them in one transaction: few
/// transactions (each a sync to disk) without holding much memory.
const WRITE_BYTES: usize = 4 << 20;

impl Relay {
    /// Compacts up to `limit` stale documents (of any workspace): those with changes after
    /// the position their snapshot was made at. Returns how many documents were taken off
    /// the stale list, including any that could not be built: those are logged and left
    /// without a snapshot (their changes are sent from the log) until they change again.
    /// Returns 0 without looking when another relay process holds the compaction lease.
    pub fn compact(&self, limit: usize) -> Result<usize, StoreError> {
        if limit == 0 || !self.store.compaction_lease()? {
            return Ok(0);
        }
        let stale = self.store.stale(limit)?;
        // By workspace, in the order found: one read of the changes per workspace.
        let mut by_workspace: Vec<(WorkspaceId, Vec<DocId>)> = Vec::new();
        for (workspace, doc) in stale {
            match by_workspace.iter_mut().find(|(w, _)| *w == workspace) {
                Some((_, docs)) => docs.push(doc),
                None => by_workspace.push((workspace, vec![doc])),
            }
        }
        let mut pending = Vec::new();
        let mut pending_bytes = 0;
        let mut done = 0;
        for (workspace, docs) in by_workspace {
            for write in self.rebuild_all(workspace, &docs)? {
                pending_bytes += write
                    .snapshot
                    .as_ref()
                    .map_or(0, |s| s.bytes.len() + s.hashes.len());
                pending.push(write);
                if pending_bytes >= WRITE_BYTES {
                    done += self.store.write_snapshots(&pending)?;
                    pending.clear();
                    pending_bytes = 0;
                }
            }
        }
        if !pending.is_empty() {
            done += self.store.write_snapshots(&pending)?;
        }
        Ok(done)
    }

    /// Rebuilds documents of one workspace: their snapshots in one read, then their changes
    /// after them in one read, document by document, each built as soon as its changes are
    /// in (only its parsed changes are held).
    fn rebuild_all(
        &self,
        workspace: WorkspaceId,
        docs: &[DocId],
    ) -> Result<Vec<SnapshotWrite>, StoreError> {
        let mut bases = self.store.snapshots(docs)?;
        let wanted: Vec<(DocId, u64)> = docs
            .iter()
            .map(|d| (*d, bases.get(d).map_or(0, |s| s.seq)))
            .collect();
        // Per document: how far its changes were read, and what they parsed to.
        let mut read: HashMap<DocId, ReadSoFar> = wanted
            .iter()
            .map(|(d, after)| (*d, (*after, Ok(Vec::new()))))
            .collect();
        let mut writes = Vec::with_capacity(docs.len());
        let mut current: Option<DocId> = None;
        let mut finish = |doc: DocId, read: &mut HashMap<DocId, ReadSoFar>| {
            if let Some((through, changes)) = read.remove(&doc) {
                writes.push(build_write(
                    workspace,
                    doc,
                    through,
                    bases.remove(&doc),
                    changes,
                ));
            }
        };
        self.store
            .document_changes(workspace, &wanted, None, &mut |row| {
                if let Some(done) = current
                    && done != row.doc_id
                {
                    finish(done, &mut read);
                }
                current = Some(row.doc_id);
                if let Some((through, changes)) = read.get_mut(&row.doc_id) {
                    *through = row.seq;
                    if let Ok(parsed) = changes {
                        match Change::try_from(row.bytes.as_slice()) {
                            Ok(change) => parsed.push((row.seq, change)),
                            Err(e) => {
                                *changes =
                                    Err(format!("the change at {} does not parse: {e}", row.seq));
                            }
                        }
                    }
                }
                true
            })?;
        // The last document read, and those with no change after their snapshot.
        for doc in docs {
            finish(*doc, &mut read);
        }
        Ok(writes)
    }

    /// How many documents have changes their snapshot does not hold yet.
    pub fn stale_documents(&self) -> Result<u64, StoreError> {
        self.store.count_stale()
    }
}

/// A document's new snapshot from its old one and the changes read after it.
fn build_write(
    workspace: WorkspaceId,
    doc: DocId,
    through: u64,
    base: Option<StoredSnapshot>,
    changes: Result<Vec<(u64, Change)>, String>,
) -> SnapshotWrite {
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
    SnapshotWrite {
        doc_id: doc,
        through,
        snapshot,
    }
}

/// Applies a document's changes after `base` (its previous snapshot, or none) and saves it.
/// Automerge is trusted with validated changes only, but a panic inside it must not take the
/// compactor down: it is reported like any other document that does not build.
fn build(
    base: Option<StoredSnapshot>,
    changes: Vec<(u64, Change)>,
) -> Result<Option<StoredSnapshot>, String> {
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
        Ok(Some(StoredSnapshot {
            seq: complete_through,
            bytes,
            hashes,
        }))
    }));
    built.unwrap_or_else(|_| Err("Automerge panicked while building it".into()))
}
