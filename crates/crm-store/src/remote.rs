//! Changes from elsewhere: applying a batch from a relay or another replica, and reading this
//! replica's changes out for a peer.

use std::collections::{BTreeMap, HashSet};

use chrono::Utc;
use crm_model::automerge::{Automerge, Change, ChangeHash, ReadDoc};
use crm_model::{Record, RecordId, doc};
use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::parallel::InOrder;
use crate::projection::LastChange;
use crate::replica::{self, Store, encode_heads};

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
        self.in_apply_cache(|store| store.apply_in_cache(batch, also))
    }

    /// Runs `apply` with SQLite's page cache at [`APPLY_CACHE_KIB`], and the connection's own
    /// size back afterwards, whatever `apply` returned.
    pub(crate) fn in_apply_cache<T>(
        &mut self,
        apply: impl FnOnce(&mut Store) -> Result<T>,
    ) -> Result<T> {
        let cache: i64 = self
            .conn
            .pragma_query_value(None, "cache_size", |r| r.get(0))?;
        self.conn
            .pragma_update(None, "cache_size", -APPLY_CACHE_KIB)?;
        let result = apply(self);
        self.conn.pragma_update(None, "cache_size", cache)?;
        result
    }

    fn apply_in_cache(
        &mut self,
        batch: &[RemoteChange],
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<()>,
    ) -> Result<ApplyReport> {
        // Grouped by document, in the order first seen; parsed later (new documents on the
        // build threads). Any change that does not parse refuses the batch whole.
        let mut by_doc: BTreeMap<RecordId, Vec<Raw<'_>>> = BTreeMap::new();
        let mut order: Vec<RecordId> = Vec::new();
        for (index, rc) in batch.iter().enumerate() {
            let entry = by_doc.entry(rc.doc_id).or_insert_with(|| {
                order.push(rc.doc_id);
                Vec::new()
            });
            entry.push((index, rc.bytes.as_slice()));
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
        // Documents this replica has never seen are built from their changes on worker
        // threads (see `parallel`), while this thread writes; the others load and apply here.
        let mut rows = Vec::with_capacity(order.len());
        let mut jobs: Vec<NewDoc<'_>> = Vec::new();
        for id in &order {
            let row = replica::doc_row(&tx, *id)?;
            if row.is_none() {
                jobs.push(NewDoc {
                    id: *id,
                    raw: &by_doc[id],
                });
            }
            rows.push(row);
        }
        let build = build_job;
        let mut idle = IdleFlush::default();
        std::thread::scope(|scope| -> Result<()> {
            let mut built = InOrder::start(scope, &jobs, &build);
            for (id, row) in order.iter().zip(rows) {
                let Some(row) = row else {
                    idle.before_next(&tx, &mut built)?;
                    let mut new = built
                        .next()
                        .ok_or(StoreError::Internal("a batch lost a document it built"))??;
                    // Repeats within the batch were dropped while building.
                    report.duplicates += by_doc[id].len() - new.changes.len();
                    // A change stored here already belongs to another document: skipped as a
                    // duplicate, and the document built again without it.
                    let before = new.changes.len();
                    let fresh = unseen(&tx, &new.changes, &mut report)?;
                    if fresh.len() != before {
                        if fresh.is_empty() {
                            continue;
                        }
                        new = build_new(*id, fresh)?;
                    }
                    write_new(&tx, *id, &new, now)?;
                    report.applied += new.changes.len();
                    if !new.heads.is_empty() {
                        report.changed.push(*id);
                    }
                    continue;
                };
                let fresh = unseen(&tx, &parse(&by_doc[id])?, &mut report)?;
                if fresh.is_empty() {
                    if let Some(d) = cached.remove(id) {
                        loaded.push((*id, d));
                    }
                    continue;
                }
                // Load from the database, never from the cache: another handle on this
                // replica may have stored changes that wait for the ones arriving now. Those
                // leave the heads unchanged, so a cached copy would pass the heads check
                // without them, and they would never be applied.
                cached.remove(id);
                let mut document = replica::load(&tx, *id, &row, None, &actor)?;
                for (hash, _, bytes) in &fresh {
                    replica::insert_change(&tx, row.docno, *hash, bytes, false, now)?;
                }
                report.applied += fresh.len();
                document
                    .apply_changes(fresh.iter().map(|(_, c, _)| c.clone()).collect::<Vec<_>>())
                    .map_err(|e| StoreError::doc(*id, e))?;
                check_claim(*id, &document)?;
                let added = i64::try_from(fresh.len()).unwrap_or(i64::MAX);
                let heads_changed = encode_heads(&document.get_heads()) != row.heads;
                replica::store_document(&tx, &row, &document, added, now)?;
                if heads_changed {
                    replica::project(&tx, &row, &document)?;
                    report.changed.push(*id);
                }
                loaded.push((*id, document));
            }
            Ok(())
        })?;
        also(&tx)?;
        replica::commit(tx)?;
        for (id, document) in loaded {
            self.cache_put(id, document);
        }
        Ok(report)
    }

    /// Up to `limit` changes of this replica's log with a sequence number above `after`, in
    /// log order. Every change of the replica is there, local or remote.
    pub fn changes_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedChange>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT c.seq, d.id, c.bytes, c.hash, c.docno FROM changes c
             JOIN documents d ON d.docno = c.docno
             WHERE c.seq > ?1 ORDER BY c.seq LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            params![after, i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        let mut from_snapshots = crate::bootstrap::ChangeBytes::default();
        for row in rows {
            let (seq, id, bytes, hash, docno) = row?;
            let Ok(doc_id) = id.parse() else { continue };
            let bytes = from_snapshots.get(&self.conn, docno, &hash, bytes)?;
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

/// New documents written since the last flush of their full-text rows before the writer,
/// waiting for the workers, flushes them (see [`IdleFlush`]).
const IDLE_FLUSH_FROM: usize = 256;

/// Writes a transaction's pending full-text rows while the writer would wait for documents
/// being built: the commit would write them anyway, and the workers are idle during it.
#[derive(Default)]
pub(crate) struct IdleFlush {
    unflushed: usize,
}

impl IdleFlush {
    /// Call before taking each built document from `built`.
    pub(crate) fn before_next<J: Sync, T: Send>(
        &mut self,
        tx: &rusqlite::Transaction<'_>,
        built: &mut InOrder<'_, J, T>,
    ) -> Result<()> {
        if self.unflushed >= IDLE_FLUSH_FROM && !built.ready() {
            crate::projection::flush_search(tx)?;
            self.unflushed = 0;
        }
        self.unflushed += 1;
        Ok(())
    }
}

/// SQLite's page cache while a batch is applied, in KiB: a large pull changes more pages than
/// the default 2 MiB holds, and spilling them mid-transaction wrote many of them twice.
const APPLY_CACHE_KIB: i64 = 32 << 10;

/// Parses a document's changes, naming the first that is not an Automerge change by its
/// place in the batch.
fn parse<'a>(raw: &[Raw<'a>]) -> Result<Vec<Incoming<'a>>> {
    raw.iter()
        .map(|(index, bytes)| {
            let change = Change::try_from(*bytes).map_err(|e| StoreError::InvalidChange {
                index: *index,
                reason: e.to_string(),
            })?;
            Ok((change.hash(), change, *bytes))
        })
        .collect()
}

/// The changes of one document that this replica has not stored, in batch order; the others
/// (stored, or repeated in the batch) are counted as duplicates.
fn unseen<'a>(
    tx: &rusqlite::Transaction<'_>,
    changes: &[Incoming<'a>],
    report: &mut ApplyReport,
) -> Result<Vec<Incoming<'a>>> {
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
    Ok(fresh)
}

/// Refuses a document holding a root `id` other than its own: every value of it, not just
/// the one shown, since a record's creating change sent under another record's id puts a
/// concurrent `id`, and which of the two wins depends only on the actor ids.
fn check_claim(id: RecordId, document: &Automerge) -> Result<()> {
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
    match claimed {
        Some(claimed) => Err(StoreError::DocumentMismatch { id, claimed }),
        None => Ok(()),
    }
}

/// A change as it came in a batch: its place there and its bytes.
type Raw<'a> = (usize, &'a [u8]);

/// A document new to this replica and its changes in the batch.
struct NewDoc<'a> {
    id: RecordId,
    raw: &'a [Raw<'a>],
}

/// A new document built from its changes: what its rows need.
struct BuiltDoc<'a> {
    /// The changes applied, each once.
    changes: Vec<Incoming<'a>>,
    heads: Vec<u8>,
    /// The record and its last change; `None` while the creating change has not arrived, or
    /// for a kind or schema newer than this build (kept, but not projected).
    record: Option<(Record, LastChange)>,
}

/// Parses and builds a new document (on a build thread).
fn build_job<'a>(job: &NewDoc<'a>) -> Result<BuiltDoc<'a>> {
    build_new(job.id, parse(job.raw)?)
}

/// Builds a new document from its changes (repeats within the batch dropped) and reads it.
fn build_new(id: RecordId, changes: Vec<Incoming<'_>>) -> Result<BuiltDoc<'_>> {
    let mut seen = HashSet::new();
    let changes: Vec<Incoming<'_>> = changes.into_iter().filter(|c| seen.insert(c.0)).collect();
    let mut document = Automerge::new();
    document
        .apply_changes(
            changes
                .iter()
                .map(|(_, c, _)| c.clone())
                .collect::<Vec<_>>(),
        )
        .map_err(|e| StoreError::doc(id, e))?;
    let (heads, record) = read_built(id, &document)?;
    Ok(BuiltDoc {
        changes,
        heads,
        record,
    })
}

/// What the rows of a document built off the writer need: its claim checked, its heads and
/// its record with the last change (`None` while the creating change has not arrived, or for a
/// kind or schema newer than this build: kept, but not projected).
pub(crate) type Read = (Vec<u8>, Option<(Record, LastChange)>);

/// Checks and reads a document built on a worker thread (see [`Read`]).
pub(crate) fn read_built(id: RecordId, document: &Automerge) -> Result<Read> {
    check_claim(id, document)?;
    let record = match doc::read(document, None) {
        Ok(record) => Some((record, replica::last_change(document))),
        Err(e) => {
            tracing::debug!(%id, error = %e, "document not projected");
            None
        }
    };
    Ok((encode_heads(&document.get_heads()), record))
}

/// Stores a document new to this replica: its row, its changes and its projection.
fn write_new(
    tx: &rusqlite::Transaction<'_>,
    id: RecordId,
    built: &BuiltDoc<'_>,
    now: chrono::DateTime<Utc>,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO documents (id, kind, heads, loose, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        id.to_string(),
        built.record.as_ref().map(|(r, _)| r.kind.as_str()),
        built.heads,
        i64::try_from(built.changes.len()).unwrap_or(i64::MAX),
        crm_model::format_time(&now)
    ])?;
    let docno = tx.last_insert_rowid();
    for (hash, _, bytes) in &built.changes {
        replica::insert_change(tx, docno, *hash, bytes, false, now)?;
    }
    if let Some((record, last)) = &built.record {
        crate::projection::write_new(tx, docno, record, last, crate::projection::Fts::AtCommit)?;
    }
    Ok(())
}
