//! Changes from elsewhere: applying a batch from a relay or another replica, and reading this
//! replica's changes out for a peer.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use crm_model::RecordId;
use crm_model::automerge::{Change, ChangeHash, ReadDoc};
use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::replica::{self, DocRow, Store, encode_heads};

/// A parsed change of a batch, with its hash and the bytes it came as.
type Incoming<'a> = (ChangeHash, Change, &'a [u8]);

/// One change of one record document, as it travels between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteChange {
    pub doc_id: RecordId,
    pub bytes: Vec<u8>,
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Changes stored for the first time.
    pub applied: usize,
    /// Changes this replica already had.
    pub duplicates: usize,
    /// Records whose state changed, in the order first seen.
    pub changed: Vec<RecordId>,
}

/// A stored change, with its position in this replica's change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedChange {
    pub seq: i64,
    pub change: RemoteChange,
}

impl Store {
    /// Applies changes that came from another replica, in one transaction: documents, their
    /// projections and the change log move together, so a crash leaves all or nothing.
    ///
    /// Idempotent: changes already stored are counted as duplicates. Order does not matter:
    /// a change whose dependencies have not arrived is stored and applied once they do.
    /// A batch holding anything that is not an Automerge change is refused whole.
    pub fn apply_remote_changes(&mut self, batch: &[RemoteChange]) -> Result<ApplyReport> {
        self.apply_remote_with(batch, |_| Ok(()))
    }

    /// [`Store::apply_remote_changes`], plus `also` inside the same transaction.
    pub(crate) fn apply_remote_with(
        &mut self,
        batch: &[RemoteChange],
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<()>,
    ) -> Result<ApplyReport> {
        let mut by_doc: BTreeMap<RecordId, Vec<Incoming<'_>>> = BTreeMap::new();
        let mut order: Vec<RecordId> = Vec::new();
        for (index, rc) in batch.iter().enumerate() {
            let change =
                Change::try_from(rc.bytes.as_slice()).map_err(|e| StoreError::InvalidChange {
                    index,
                    reason: e.to_string(),
                })?;
            let entry = by_doc.entry(rc.doc_id).or_insert_with(|| {
                order.push(rc.doc_id);
                Vec::new()
            });
            entry.push((change.hash(), change, rc.bytes.as_slice()));
        }
        let now = Utc::now();
        let actor = self.actor().clone();
        let mut report = ApplyReport::default();
        let mut loaded = Vec::new();
        let mut cached: BTreeMap<RecordId, _> = order
            .iter()
            .filter_map(|id| self.cache_take(id).map(|d| (*id, d)))
            .collect();
        let tx = self.begin()?;
        for id in &order {
            let changes = &by_doc[id];
            let row = match replica::doc_row(&tx, *id)? {
                Some(row) => row,
                None => {
                    tx.prepare_cached(
                        "INSERT INTO documents (id, kind, heads, updated_at) VALUES (?1, NULL, x'', ?2)",
                    )?
                    .execute(params![id.to_string(), crm_model::format_time(&now)])?;
                    DocRow {
                        docno: tx.last_insert_rowid(),
                        id: *id,
                        kind: None,
                        heads: Vec::new(),
                    }
                }
            };
            let mut fresh = Vec::new();
            let mut seen = HashSet::new();
            for (hash, change, bytes) in changes {
                let known = !seen.insert(*hash)
                    || tx
                        .prepare_cached("SELECT 1 FROM changes WHERE hash = ?1")?
                        .query_row([&hash.0[..]], |_| Ok(()))
                        .optional()?
                        .is_some();
                if known {
                    report.duplicates += 1;
                } else {
                    fresh.push((*hash, change.clone(), *bytes));
                }
            }
            if fresh.is_empty() {
                if let Some(d) = cached.remove(id) {
                    loaded.push((*id, d));
                }
                continue;
            }
            // Load from the database, never from the cache: another handle on this replica
            // may have stored changes that wait for the ones arriving now. Those leave the
            // heads unchanged, so a cached copy would pass the heads check without them, and
            // they would never be applied.
            cached.remove(id);
            let mut document = replica::load(&tx, *id, &row, None, &actor)?;
            for (hash, _, bytes) in &fresh {
                replica::insert_change(&tx, row.docno, *hash, bytes, false, now)?;
            }
            report.applied += fresh.len();
            document
                .apply_changes(fresh.iter().map(|(_, c, _)| c.clone()).collect::<Vec<_>>())
                .map_err(|e| StoreError::doc(*id, e))?;
            // Every value of the root `id`, not just the one shown: a record's creating change
            // sent under another record's id puts a concurrent `id`, and which of the two wins
            // depends only on the actor ids.
            let own = id.to_string();
            let claimed = document
                .get_all(crm_model::automerge::ROOT, "id")
                .unwrap_or_default()
                .into_iter()
                .find_map(|(value, _)| match value {
                    crm_model::automerge::Value::Scalar(s) => match s.as_ref() {
                        crm_model::automerge::ScalarValue::Str(c) if c.as_str() != own => {
                            Some(c.to_string())
                        }
                        _ => None,
                    },
                    crm_model::automerge::Value::Object(_) => None,
                });
            if let Some(claimed) = claimed {
                return Err(StoreError::DocumentMismatch { id: *id, claimed });
            }
            let added = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
            let heads_changed = encode_heads(&document.get_heads()) != row.heads;
            replica::store_document(&tx, &row, &document, added, now)?;
            if heads_changed {
                replica::project(&tx, &row, &document)?;
                report.changed.push(*id);
            }
            loaded.push((*id, document));
        }
        also(&tx)?;
        tx.commit()?;
        for (id, document) in loaded {
            self.cache_put(id, document);
        }
        Ok(report)
    }

    /// Up to `limit` changes of this replica's log with a sequence number above `after`, in
    /// log order. Every change of the replica is there, local or remote.
    pub fn changes_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedChange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.seq, d.id, c.bytes FROM changes c JOIN documents d ON d.docno = c.docno
             WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, id, bytes) = row?;
            let Ok(doc_id) = id.parse() else { continue };
            out.push(LoggedChange {
                seq,
                change: RemoteChange { doc_id, bytes },
            });
        }
        Ok(out)
    }

    /// Local changes waiting to be acknowledged by a relay.
    pub fn outbox_len(&self) -> Result<u64> {
        Ok(self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get::<_, i64>(0))?
            .try_into()
            .unwrap_or(0))
    }

    /// Every change of `other` this replica lacks, applied in batches. Returns the total.
    pub fn merge_from(&mut self, other: &Store) -> Result<ApplyReport> {
        const BATCH: usize = 500;
        let mut total = ApplyReport::default();
        let mut seen = HashSet::new();
        let mut after = 0;
        loop {
            let logged = other.changes_after(after, BATCH)?;
            let Some(last) = logged.last() else { break };
            after = last.seq;
            let batch: Vec<RemoteChange> = logged.into_iter().map(|l| l.change).collect();
            let report = self.apply_remote_changes(&batch)?;
            total.applied += report.applied;
            total.duplicates += report.duplicates;
            for id in report.changed {
                if seen.insert(id) {
                    total.changed.push(id);
                }
            }
        }
        Ok(total)
    }

    /// The heads of every document, for comparing replicas.
    pub fn all_heads(&self) -> Result<BTreeMap<RecordId, Vec<u8>>> {
        let mut stmt = self.conn.prepare("SELECT id, heads FROM documents")?;
        let rows = stmt.query_map([], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (id, heads) = row?;
            if let Ok(id) = id.parse() {
                out.insert(id, heads);
            }
        }
        Ok(out)
    }
}
