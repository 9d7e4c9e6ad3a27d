//! Reading a workspace's log for a device: entries after its position, within one frame,
//! filtered by what the device's user may see.
//!
//! A read is done in two steps. [`Relay::read_raw`] reads the rows as stored, with each
//! change's kind and scope (and, for a change that moved its record, the scope before);
//! that is what the hub keeps as the workspace's tail and shares between sessions.
//! [`filter`] then decides each row for one viewer in O(1) (see `access.rs`): sent, skipped,
//! or — when the change moved the record into or out of the viewer's sight — a grant of
//! the whole document or a purge. Only a grant reads the store again, for that document.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use lru::LruCache;

use crm_model::{Kind, Scope, Viewer};
use crm_sync::relay::{LogRead, ReadFrame};
use crm_sync::{DocId, DocState, Entry, Hash, MAX_BATCH_CHANGES, MAX_FRAME_BYTES};
use serde_bytes::ByteBuf;

use super::Relay;
use crate::ids::WorkspaceId;
use crate::store::StoreError;

/// Change bytes per `Changes` frame: the frame limit less room for the per-entry envelope
/// (at most ~30 bytes times `MAX_BATCH_CHANGES`) and the frame's own fields.
pub(super) const READ_BUDGET: usize = MAX_FRAME_BYTES - (64 << 10);
/// Counted against `READ_BUDGET` for each entry besides its change bytes.
pub(super) const ENTRY_OVERHEAD: usize = 40;

/// A log row with what filtering needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRow {
    pub seq: u64,
    pub doc_id: DocId,
    pub hash: Hash,
    pub bytes: Vec<u8>,
    pub kind: String,
    pub scope: Option<String>,
    /// The scope before this change, when it moved the record.
    pub prev_scope: Option<String>,
    /// `kind`, `scope` and `prev_scope` decoded, the first time a session filters the row:
    /// the hub shares a batch's rows with every session at the live edge, so a row is
    /// decoded once, not once per session (construct with `Default::default()`).
    pub decoded: DecodedRow,
}

/// What a row's stored kind and scopes say, decoded once (see [`RawRow::decoded`]).
#[derive(Clone, Debug, Default)]
pub struct DecodedRow(OnceLock<Arc<Decoded>>);

#[derive(Debug)]
pub(crate) struct Decoded {
    /// `None` for a kind this build does not know (only whoever sees everything sees it).
    kind: Option<Kind>,
    scope: Scope,
    prev_scope: Option<Scope>,
}

/// A cache: equal whatever it holds.
impl PartialEq for DecodedRow {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for DecodedRow {}

impl Decoded {
    pub(crate) fn new(kind: Option<Kind>, scope: Scope, prev_scope: Option<&str>) -> Decoded {
        Decoded {
            kind,
            scope,
            prev_scope: prev_scope.map(|p| crate::store::decode_scope(Some(p))),
        }
    }
}

impl DecodedRow {
    /// Already decoded.
    pub(crate) fn with(decoded: Arc<Decoded>) -> DecodedRow {
        DecodedRow(OnceLock::from(decoded))
    }
}

/// Decoded rows of recent log positions, shared by every session of the relay: sessions
/// behind the live edge read the same rows from the store, each its own copy, and would
/// otherwise decode each row's scope once per session.
#[derive(Debug)]
pub(crate) struct DecodedCache(Mutex<LruCache<(WorkspaceId, u64), Arc<Decoded>>>);

/// Rows kept decoded: a few windows of the busiest workspace's recent log.
const DECODED_ROWS: usize = 1 << 16;

impl Default for DecodedCache {
    fn default() -> Self {
        DecodedCache(Mutex::new(LruCache::new(
            NonZeroUsize::new(DECODED_ROWS).unwrap_or(NonZeroUsize::MIN),
        )))
    }
}

impl DecodedCache {
    /// Fills every row's decoded kind and scopes, from the cache or decoding it (once).
    pub(crate) fn fill(&self, workspace: WorkspaceId, rows: &[RawRow]) {
        let mut cache = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for row in rows {
            if let Some(d) = row.decoded.0.get() {
                cache.put((workspace, row.seq), d.clone());
                continue;
            }
            let d = match cache.get(&(workspace, row.seq)) {
                Some(d) => d.clone(),
                None => {
                    let d = Arc::new(row.decode());
                    cache.put((workspace, row.seq), d.clone());
                    d
                }
            };
            let _ = row.decoded.0.set(d);
        }
    }
}

impl RawRow {
    fn decode(&self) -> Decoded {
        Decoded::new(
            self.kind.parse().ok(),
            crate::store::decode_scope(self.scope.as_deref()),
            self.prev_scope.as_deref(),
        )
    }

    /// Whether `viewer` saw the row's record before this change, and sees it after.
    fn seen_by(&self, viewer: &Viewer) -> (bool, bool) {
        let d = self.decoded.0.get_or_init(|| Arc::new(self.decode()));
        let sees = |scope: &Scope| match d.kind {
            Some(kind) => viewer.sees(kind, scope),
            None => viewer.sees_everything(),
        };
        let after = sees(&d.scope);
        let before = d.prev_scope.as_ref().map_or(after, sees);
        (before, after)
    }
}

/// Log rows after a position, unfiltered, within one frame's size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRead {
    pub rows: Vec<RawRow>,
    /// The last position read (the position read after when nothing was).
    pub through: u64,
    pub through_hash: Hash,
    pub head: u64,
}

/// What filtering a read for a viewer needs from the store: a document, whole.
pub enum Filtered {
    /// Ready to send.
    Read(LogRead),
    /// A row granted a document: the read must be filtered where the store can be reached.
    NeedsStore,
}

impl Relay {
    /// Up to `limit` log rows after position `after`, ascending, within one frame's size.
    pub fn read_raw(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
    ) -> Result<RawRead, StoreError> {
        let limit = limit.min(MAX_BATCH_CHANGES);
        let mut rows: Vec<RawRow> = Vec::new();
        let mut size = 0;
        let head = self.store.read_log(workspace, after, limit, &mut |row| {
            // Every entry must fit in one frame with the others; the first always fits,
            // since a change is far smaller than a frame.
            if !rows.is_empty() && size + row.bytes.len() + ENTRY_OVERHEAD > READ_BUDGET {
                return false;
            }
            size += row.bytes.len() + ENTRY_OVERHEAD;
            rows.push(RawRow {
                seq: row.seq,
                doc_id: row.doc_id,
                hash: row.hash,
                bytes: row.bytes,
                kind: row.kind,
                scope: row.scope,
                prev_scope: row.prev_scope,
                decoded: DecodedRow::default(),
            });
            true
        })?;
        let (through, through_hash) = match rows.last() {
            Some(r) => (r.seq, r.hash),
            None if after == 0 => (0, [0; 32]),
            None => (
                after,
                self.store.hash_at(workspace, after)?.unwrap_or([0; 32]),
            ),
        };
        Ok(RawRead {
            rows,
            through,
            through_hash,
            head,
        })
    }

    /// Up to `limit` log entries after position `after` that `viewer` may see (none: every
    /// entry), with the grants and purges of records that moved on the way.
    pub fn read(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        viewer: Option<&Viewer>,
    ) -> Result<LogRead, StoreError> {
        let raw = self.read_raw(workspace, after, limit)?;
        if viewer.is_some() {
            self.decoded.fill(workspace, &raw.rows);
        }
        filter_with(&raw, viewer, &mut |doc, through| {
            self.whole_document(workspace, doc, through)
        })
    }

    /// A document whole, as of at least log position `through`: its snapshot and the
    /// changes up to `through` the snapshot lacks, for a grant.
    pub fn whole_document(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
        through: u64,
    ) -> Result<DocState, StoreError> {
        let snapshot = self.store.snapshot(doc)?;
        let (from, bytes, hashes) = match snapshot {
            Some(s) if s.hashes.len() % 32 == 0 => (s.seq, s.bytes, s.hashes),
            _ => (0, Vec::new(), Vec::new()),
        };
        let held: HashSet<Hash> = hashes
            .chunks_exact(32)
            .filter_map(|h| Hash::try_from(h).ok())
            .collect();
        let mut changes = Vec::new();
        self.store
            .document_changes(workspace, &[(doc, from)], Some(through), &mut |row| {
                if !held.contains(&row.hash) {
                    changes.push(ByteBuf::from(row.bytes));
                }
                true
            })?;
        Ok(DocState {
            doc_id: doc,
            snapshot: bytes,
            hashes: held.into_iter().collect(),
            changes,
        })
    }
}

/// Filters a read for `viewer` without the store: [`Filtered::NeedsStore`] when a row
/// grants a document.
pub fn filter(raw: &RawRead, viewer: Option<&Viewer>) -> Filtered {
    let mut needs = false;
    let read = filter_with(raw, viewer, &mut |_, _| {
        needs = true;
        Err(StoreError::Worker)
    });
    match read {
        Ok(read) if !needs => Filtered::Read(read),
        _ => Filtered::NeedsStore,
    }
}

fn filter_with(
    raw: &RawRead,
    viewer: Option<&Viewer>,
    grant: &mut dyn FnMut(DocId, u64) -> Result<DocState, StoreError>,
) -> Result<LogRead, StoreError> {
    let Some(viewer) = viewer else {
        // Whoever sees everything gets the rows as they are.
        let entries = raw.rows.iter().map(entry).collect();
        return Ok(LogRead::entries(
            entries,
            raw.through,
            raw.through_hash,
            raw.head,
        ));
    };
    let mut frames = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    // The position before the next row, and its hash: where a frame cut before a grant or
    // a purge ends.
    let (mut before, mut before_hash) = (None::<u64>, None::<Hash>);
    for row in &raw.rows {
        let (was, after) = row.seen_by(viewer);
        match (was, after) {
            (true, true) => entries.push(entry(row)),
            (false, false) => {}
            (was, _) => {
                // Everything before this row first, then the grant or the purge, then the
                // rows after it: the device's cursor passes this row only after both.
                if let (Some(through), Some(hash)) = (before, before_hash) {
                    frames.push(ReadFrame::Changes {
                        entries: std::mem::take(&mut entries),
                        through,
                        through_hash: hash,
                    });
                }
                if was {
                    frames.push(ReadFrame::Purge(vec![row.doc_id]));
                } else {
                    frames.push(ReadFrame::Grant(vec![grant(row.doc_id, row.seq)?]));
                }
            }
        }
        before = Some(row.seq);
        before_hash = Some(row.hash);
    }
    frames.push(ReadFrame::Changes {
        entries,
        through: raw.through,
        through_hash: raw.through_hash,
    });
    Ok(LogRead {
        frames,
        head: raw.head,
    })
}

fn entry(row: &RawRow) -> Entry {
    Entry {
        seq: row.seq,
        doc_id: row.doc_id,
        bytes: row.bytes.clone(),
    }
}
