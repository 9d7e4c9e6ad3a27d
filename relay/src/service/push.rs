//! Storing a pushed batch: the push rule (`crate::validate`) applied to what the storing
//! transaction knows, and the positions allocated under the workspace's lock.

use std::collections::{HashMap, HashSet};

use chrono::Utc;
use crm_sync::relay::LogRead;
use crm_sync::{DocId, Entry, Envelope, Hash, MAX_BATCH_CHANGES};
use uuid::Uuid;

use super::Relay;
use super::log::{ENTRY_OVERHEAD, READ_BUDGET};
use crate::ids::{DeviceId, WorkspaceId};
use crate::store::{Append, Known, NewChange, NewDocument, PushError};
use crate::validate;

/// What storing a batch did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBatch {
    /// The log position of each change of the batch, in order.
    pub seqs: Vec<u64>,
    /// The log's head after the commit.
    pub head: u64,
    /// Changes that were new.
    pub stored: usize,
    /// Changes already in the log (acknowledged with their earlier position).
    pub duplicates: usize,
    /// What [`Relay::read`] after `head − stored` would return, when the batch's new
    /// changes are exactly that range and fit one read: the other sessions of the
    /// workspace take it instead of each reading the same rows back (see `hub.rs`).
    pub tail: Option<LogRead>,
}

/// The push rule asks the storing transaction's lookups (changes earlier in the batch it
/// keeps itself).
impl validate::Known for Known {
    fn document_of_change(&mut self, hash: &Hash) -> Result<Option<DocId>, PushError> {
        Ok(self.changes.get(hash).map(|c| c.doc_id))
    }
}

impl Relay {
    /// Validates a pushed batch and stores it in one transaction, allocating the next
    /// sequence numbers of the workspace's log. Returns only after the commit. A change
    /// already in the log keeps its position; nothing of a refused batch is stored.
    pub fn store_batch(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        changes: &[Envelope],
    ) -> Result<StoredBatch, PushError> {
        // Intact changes only, before touching the database (see `validate`).
        let checked = validate::parse(changes)?;
        let arrived_at = Utc::now();
        let docs: Vec<DocId> = {
            let mut seen = HashSet::new();
            checked
                .iter()
                .map(|c| c.envelope.doc_id)
                .filter(|d| seen.insert(*d))
                .collect()
        };
        let hashes: Vec<Hash> = {
            let mut seen = HashSet::new();
            checked
                .iter()
                .flat_map(|c| std::iter::once(c.hash).chain(c.deps.iter().copied()))
                .filter(|h| seen.insert(*h))
                .collect()
        };
        let mut result = None;
        self.store
            .append(workspace, device, &docs, &hashes, &mut |known: Known| {
                let (append, batch) = plan(workspace, device, &checked, known, arrived_at)?;
                result = Some(batch);
                Ok(append)
            })?;
        result.ok_or_else(|| PushError::Store(crate::store::StoreError::Worker))
    }
}

/// Decides a batch against what the store knows: which changes are new, their positions,
/// and the documents they create.
fn plan(
    workspace: WorkspaceId,
    device: DeviceId,
    checked: &[validate::Parsed<'_>],
    mut known: Known,
    arrived_at: chrono::DateTime<Utc>,
) -> Result<(Append, StoredBatch), PushError> {
    if !known.device_active {
        return Err(PushError::Revoked);
    }
    let mut head = known.head;
    let mut rule = validate::Batch::default();
    // Documents of this batch already checked or created, and their kinds.
    let mut kinds: HashMap<DocId, String> = HashMap::new();
    // Changes appended by this batch, and their positions.
    let mut appended_at: HashMap<Hash, u64> = HashMap::new();
    let mut append = Append::default();
    let mut seqs = Vec::with_capacity(checked.len());
    let mut duplicates = 0;
    // The new entries, as a read of them would return them (see `StoredBatch::tail`).
    let mut entries: Vec<Entry> = Vec::new();
    let mut entries_bytes = 0;
    let mut last_hash = [0; 32];
    for (index, c) in checked.iter().enumerate() {
        let doc = c.envelope.doc_id;
        let kind = c.envelope.kind.as_str();
        let known_kind = match kinds.get(&doc) {
            Some(k) => Some(k.clone()),
            None => match known.docs.get(&doc) {
                Some(d) if d.workspace != workspace => {
                    return Err(PushError::WrongWorkspace {
                        index,
                        doc: Uuid::from_bytes(doc),
                    });
                }
                Some(d) => Some(d.kind.clone()),
                None => None,
            },
        };
        if let Some(known) = &known_kind
            && known != kind
        {
            return Err(PushError::KindMismatch {
                index,
                doc: Uuid::from_bytes(doc),
                known: known.clone(),
                sent: kind.to_string(),
            });
        }
        let existing = known
            .changes
            .get(&c.hash)
            .map(|k| k.seq)
            .or_else(|| appended_at.get(&c.hash).copied());
        if let Some(existing) = existing {
            seqs.push(existing);
            duplicates += 1;
            continue;
        }
        rule.check(index, c, known_kind.is_some(), &mut known)?;
        rule.accept(c);
        head += 1;
        if known_kind.is_none() {
            append.documents.push(NewDocument {
                doc_id: doc,
                kind: kind.to_string(),
                first_seq: head,
                created_by: device,
            });
            kinds.insert(doc, kind.to_string());
        }
        // The latest pushed scope of a document is the one a later filter reads.
        let scope = &c.envelope.scope;
        let teams = (!scope.teams.is_empty()).then(|| {
            let ids: Vec<String> = scope
                .teams
                .iter()
                .map(|t| Uuid::from_bytes(*t).to_string())
                .collect();
            ids.join(",")
        });
        append.changes.push(NewChange {
            seq: head,
            hash: c.hash,
            doc_id: doc,
            kind: kind.to_string(),
            deps: c.deps_bytes(),
            author: device,
            arrived_at,
            bytes: c.envelope.bytes.clone(),
            owner: scope.owner.map(|o| Uuid::from_bytes(o).to_string()),
            teams,
        });
        appended_at.insert(c.hash, head);
        seqs.push(head);
        entries_bytes += c.envelope.bytes.len() + ENTRY_OVERHEAD;
        entries.push(Entry {
            seq: head,
            doc_id: doc,
            bytes: c.envelope.bytes.clone(),
        });
        last_hash = c.hash;
    }
    append.head = head;
    // `read` would stop at its frame budget or its limit; such a batch has no tail.
    let tail =
        (!entries.is_empty() && entries.len() <= MAX_BATCH_CHANGES && entries_bytes <= READ_BUDGET)
            .then_some(LogRead {
                entries,
                through: head,
                through_hash: last_hash,
                head,
            });
    let batch = StoredBatch {
        stored: checked.len() - duplicates,
        duplicates,
        seqs,
        head,
        tail,
    };
    Ok((append, batch))
}
