//! Bootstrap pages: a workspace's documents, each its snapshot plus the log's changes up to
//! the bootstrap's position that the snapshot does not hold, cut to a page's size.
//!
//! A page costs the store two queries whatever its length: one for the documents and their
//! snapshots (stopping once their sizes pass the page), one for their changes.

use std::collections::{HashMap, HashSet};

use crm_sync::{DocId, DocState, Hash, MAX_BATCH_CHANGES};
use serde_bytes::ByteBuf;
use uuid::Uuid;

use super::Relay;
use crate::ids::WorkspaceId;
use crate::store::{StoreError, StoredSnapshot};

/// Counted against a page's size for each document besides its bytes: the id and three
/// length prefixes (postcard varints, at most 10 bytes each).
const DOC_OVERHEAD: usize = 16 + 3 * 10;
/// Counted against a page's size for each change besides its bytes: its length prefix.
const CHANGE_OVERHEAD: usize = 10;

/// A page of [`Relay::documents_page`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentsPage {
    pub docs: Vec<DocState>,
    /// The last document of this page, to read the next page after; `None` on the last page.
    pub next: Option<DocId>,
}

/// A document of a page being assembled.
struct Pending {
    doc: DocId,
    from: u64,
    snapshot: Vec<u8>,
    hashes: Vec<Hash>,
    changes: Vec<ByteBuf>,
    len: usize,
}

impl Relay {
    /// One page of a workspace's documents for a device's bootstrap: documents whose first
    /// change is at or before log position `through`, with ids after `after`, in id order.
    /// Each comes with its snapshot (which may hold changes after `through`) and its log
    /// changes up to `through` that the snapshot does not hold. The page stops before the
    /// document that would take its encoded size past `max_bytes` (it always holds one) and
    /// at `crm_sync::MAX_BATCH_CHANGES` documents. A document that alone is larger than
    /// `max_bytes` is [`StoreError::DocumentTooLarge`].
    pub fn documents_page(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        through: u64,
        max_bytes: usize,
        viewer: Option<&crm_model::Viewer>,
    ) -> Result<DocumentsPage, StoreError> {
        // One more than a page, to know whether another page follows.
        let limit = MAX_BATCH_CHANGES + 1;
        let mut pending: Vec<Pending> = Vec::new();
        let mut more = false;
        let mut size = 0;
        let mut failure = None;
        // Documents the viewer may not see are examined and left out; a page of them only
        // still moves the next page on.
        let (mut examined, mut last_examined) = (0, None);
        self.store.documents(
            workspace,
            after,
            through,
            limit,
            &mut |kind, scope| super::access::sees(viewer, kind, scope),
            &mut |doc, wanted, snapshot| {
                if pending.len() >= MAX_BATCH_CHANGES || (!pending.is_empty() && size > max_bytes) {
                    more = true;
                    return false;
                }
                examined += 1;
                if !wanted {
                    last_examined = Some(doc);
                    return true;
                }
                last_examined = Some(doc);
                match Pending::new(doc, snapshot) {
                    Ok(p) => {
                        size += p.len;
                        pending.push(p);
                        true
                    }
                    Err(e) => {
                        failure = Some(e);
                        false
                    }
                }
            },
        )?;
        if let Some(e) = failure {
            return Err(e);
        }
        if pending.is_empty() {
            // Nothing this viewer may see here: go on after the last document examined, if
            // the store had more.
            let next = if examined >= limit {
                last_examined
            } else {
                None
            };
            return Ok(DocumentsPage {
                docs: Vec::new(),
                next,
            });
        }
        if examined >= limit {
            more = true;
        }
        // Documents whose snapshot alone passes the page are cut before reading changes.
        let mut size = 0;
        let mut fits = 0;
        for p in &pending {
            if size + p.len > max_bytes {
                break;
            }
            size += p.len;
            fits += 1;
        }
        if fits == 0 {
            return match pending.first() {
                Some(p) => Err(too_large(p.doc, max_bytes)),
                None => Ok(DocumentsPage {
                    docs: Vec::new(),
                    next: None,
                }),
            };
        }
        if fits < pending.len() {
            pending.truncate(fits);
            more = true;
        }
        // The changes each document's snapshot lacks, read until the page is full.
        let wanted: Vec<(DocId, u64)> = pending.iter().map(|p| (p.doc, p.from)).collect();
        let held: Vec<HashSet<Hash>> = pending
            .iter()
            .map(|p| p.hashes.iter().copied().collect())
            .collect();
        let index: HashMap<DocId, usize> = pending
            .iter()
            .enumerate()
            .map(|(i, p)| (p.doc, i))
            .collect();
        // The first document that did not fit, if any. The changes come document by
        // document, in page order: a document's changes must fit beside the documents before
        // it (changes included), not beside the ones after it, which the page may leave out.
        let mut overflow: Option<usize> = None;
        // The bytes of the documents before `next`, with their changes read so far.
        let (mut used, mut next) = (0, 0);
        self.store
            .document_changes(workspace, &wanted, Some(through), &mut |row| {
                let Some(&i) = index.get(&row.doc_id) else {
                    return true;
                };
                while next <= i {
                    used += pending[next].len;
                    next += 1;
                }
                if held[i].contains(&row.hash) {
                    return true;
                }
                let len = row.bytes.len() + CHANGE_OVERHEAD;
                if used + len > max_bytes {
                    overflow = Some(i);
                    return false;
                }
                used += len;
                pending[i].len += len;
                pending[i].changes.push(ByteBuf::from(row.bytes));
                true
            })?;
        if let Some(i) = overflow {
            if i == 0 {
                return Err(too_large(pending[0].doc, max_bytes));
            }
            pending.truncate(i);
            more = true;
        }
        // The documents after the last one with changes to send did not count those
        // changes: the page ends before the first that no longer fits.
        let mut size = 0;
        if let Some(end) = pending.iter().position(|p| {
            size += p.len;
            size > max_bytes
        }) {
            pending.truncate(end);
            more = true;
        }
        let docs: Vec<DocState> = pending
            .into_iter()
            .map(|p| DocState {
                doc_id: p.doc,
                snapshot: p.snapshot,
                hashes: p.hashes,
                changes: p.changes,
            })
            .collect();
        let next = if more {
            docs.last().map(|d| d.doc_id)
        } else {
            None
        };
        Ok(DocumentsPage { docs, next })
    }
}

impl Pending {
    fn new(doc: DocId, snapshot: Option<StoredSnapshot>) -> Result<Pending, StoreError> {
        let (from, bytes, hashes) = match snapshot {
            Some(s) => (s.seq, s.bytes, s.hashes),
            None => (0, Vec::new(), Vec::new()),
        };
        if hashes.len() % 32 != 0 {
            return Err(StoreError::Corrupt(format!(
                "the snapshot of {} lists {} bytes of hashes",
                Uuid::from_bytes(doc),
                hashes.len()
            )));
        }
        let len = DOC_OVERHEAD + bytes.len() + hashes.len();
        let hashes = hashes
            .chunks_exact(32)
            .filter_map(|h| Hash::try_from(h).ok())
            .collect();
        Ok(Pending {
            doc,
            from,
            snapshot: bytes,
            hashes,
            changes: Vec::new(),
            len,
        })
    }
}

fn too_large(doc: DocId, max: usize) -> StoreError {
    StoreError::DocumentTooLarge {
        doc: Uuid::from_bytes(doc),
        max,
    }
}
