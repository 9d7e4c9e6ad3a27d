//! Changes from elsewhere: applying a batch from a relay or another replica, and reading this
//! replica's changes out for a peer.
//!
//! A batch is applied document by document in one transaction. A change that cannot be
//! applied (bytes that are not a change or fail their checksum, a change of another record, a
//! change the document refuses) is quarantined on its own (see `quarantine.rs`) and the rest
//! of the batch applies: one bad entry never blocks the log. The happy path applies each
//! document's changes at once, as before; only a document whose changes fail is applied
//! again, change by change, in memory, to find the ones at fault.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use chrono::Utc;
use crm_model::automerge::{Automerge, Change, ChangeHash, ReadDoc};
use crm_model::change::ChangeError;
use crm_model::{Record, RecordId, doc};
use rusqlite::{OptionalExtension, params};

use crate::error::{Result, StoreError};
use crate::parallel::InOrder;
use crate::projection::LastChange;
use crate::quarantine::{self, Origin, Problem, Quarantined, Rejected};
use crate::replica::{self, Store, encode_heads};

/// A parsed change of a batch: its place in the batch, its hash, the change, and the bytes it
/// came as.
#[derive(Clone)]
struct Incoming<'a> {
    index: usize,
    hash: ChangeHash,
    change: Change,
    bytes: &'a [u8],
}

/// One change of one record document, as it travels between replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteChange {
    pub doc_id: RecordId,
    pub bytes: Vec<u8>,
}

/// A change pulled from a relay, with its position in the relay's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PulledChange {
    pub seq: u64,
    pub change: RemoteChange,
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
    /// Changes refused one by one and set aside (see [`Store::quarantined`]), in batch order.
    pub quarantined: Vec<Quarantined>,
}

impl ApplyReport {
    /// Adds another batch's report to this one (`changed` keeps each record once).
    pub fn absorb(&mut self, other: ApplyReport, seen: &mut HashSet<RecordId>) {
        self.applied += other.applied;
        self.duplicates += other.duplicates;
        for id in other.changed {
            if seen.insert(id) {
                self.changed.push(id);
            }
        }
        self.quarantined.extend(other.quarantined);
    }
}

/// A stored change, with its position in this replica's change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedChange {
    pub seq: i64,
    pub change: RemoteChange,
}

/// Where the changes of a batch came from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Source<'a> {
    /// A relay's log; the position of each change of the batch.
    Relay(&'a [u64]),
    Bootstrap,
    /// Another replica (its id), through `merge_from`.
    Replica(&'a str),
    Remote,
}

impl Source<'_> {
    fn origin(&self, index: usize) -> Origin {
        match self {
            Source::Relay(seqs) => Origin::Relay {
                seq: seqs.get(index).copied().unwrap_or(0),
            },
            Source::Bootstrap => Origin::Bootstrap,
            Source::Replica(id) => Origin::Replica {
                id: (*id).to_string(),
            },
            Source::Remote => Origin::Remote,
        }
    }
}

/// A batch as the apply path reads it: each change's record and bytes.
pub(crate) type Batch<'a> = [(RecordId, &'a [u8])];

/// The apply path's view of a batch of [`RemoteChange`]s.
pub(crate) fn batch_of(changes: &[RemoteChange]) -> Vec<(RecordId, &[u8])> {
    changes
        .iter()
        .map(|c| (c.doc_id, c.bytes.as_slice()))
        .collect()
}

impl Store {
    /// Applies changes that came from another replica, in one transaction: documents, their
    /// projections and the change log move together, so a crash leaves all or nothing.
    ///
    /// Idempotent: changes already stored are counted as duplicates. Order does not matter:
    /// a change whose dependencies have not arrived is stored and applied once they do.
    /// A change that cannot be applied is quarantined, and the rest of the batch applies
    /// (see [`ApplyReport::quarantined`]).
    pub fn apply_remote_changes(&mut self, batch: &[RemoteChange]) -> Result<ApplyReport> {
        self.apply_remote_with(&batch_of(batch), Source::Remote, false, |_| Ok(()))
    }

    /// [`Store::apply_remote_changes`] of changes from `source`, plus `also` inside the same
    /// transaction; with `queue`, the changes stored are queued for the relay too.
    pub(crate) fn apply_remote_with(
        &mut self,
        batch: &Batch<'_>,
        source: Source<'_>,
        queue: bool,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<()>,
    ) -> Result<ApplyReport> {
        self.in_apply_cache(|store| store.apply_in_cache(batch, source, queue, also))
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
        batch: &Batch<'_>,
        source: Source<'_>,
        queue: bool,
        also: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<()>,
    ) -> Result<ApplyReport> {
        // Grouped by document, in the order first seen; parsed later (new documents on the
        // build threads).
        let mut by_doc: BTreeMap<RecordId, Vec<Raw<'_>>> = BTreeMap::new();
        let mut order: Vec<RecordId> = Vec::new();
        for (index, (doc_id, bytes)) in batch.iter().enumerate() {
            let entry = by_doc.entry(*doc_id).or_insert_with(|| {
                order.push(*doc_id);
                Vec::new()
            });
            entry.push((index, *bytes));
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
        // Every change refused, with its record.
        let mut refused: Vec<(RecordId, Rejected)> = Vec::new();
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
                    report.duplicates += new.repeats;
                    let mut rejected = std::mem::take(&mut new.rejected);
                    // A change stored here already belongs to another record, since this one
                    // is new: refused, and the document built again without it.
                    let (fresh, elsewhere) =
                        unseen(&tx, std::mem::take(&mut new.changes), None, &mut report)?;
                    if elsewhere.is_empty() {
                        new.changes = fresh;
                    } else {
                        rejected.extend(elsewhere);
                        new = build_new(*id, fresh)?;
                        rejected.append(&mut new.rejected);
                    }
                    reclassify_refused(&tx, *id, None, &mut rejected)?;
                    if !new.pending.is_empty() {
                        let theirs = builds_on_other_record(
                            &tx,
                            *id,
                            None,
                            &new.changes,
                            &new.pending,
                            &rejected,
                        )?;
                        // Changes waiting for their dependencies leave the document as it is.
                        let out: HashSet<usize> = theirs.iter().map(|r| r.index).collect();
                        new.changes.retain(|c| !out.contains(&c.index));
                        rejected.extend(theirs);
                    }
                    refused.extend(rejected.into_iter().map(|r| (*id, r)));
                    if new.changes.is_empty() {
                        continue;
                    }
                    write_new(&tx, *id, &new, now, queue)?;
                    report.applied += new.changes.len();
                    if !new.heads.is_empty() {
                        report.changed.push(*id);
                    }
                    continue;
                };
                let (parsed, mut rejected) = parse(&by_doc[id]);
                let (fresh, elsewhere) = unseen(&tx, parsed, Some(row.docno), &mut report)?;
                rejected.extend(elsewhere);
                if fresh.is_empty() {
                    if let Some(d) = cached.remove(id)
                        && rejected.is_empty()
                    {
                        loaded.push((*id, d));
                    }
                    refused.extend(rejected.into_iter().map(|r| (*id, r)));
                    continue;
                }
                // Load from the database, never from the cache: another handle on this
                // replica may have stored changes that wait for the ones arriving now. Those
                // leave the heads unchanged, so a cached copy would pass the heads check
                // without them, and they would never be applied.
                cached.remove(id);
                let mut document = replica::load(&tx, *id, &row, None, &actor)?;
                rejected.extend(apply_isolating(*id, &mut document, &fresh, || {
                    replica::load(&tx, *id, &row, None, &actor)
                })?);
                reclassify_refused(&tx, *id, Some(row.docno), &mut rejected)?;
                let mut out: HashSet<usize> = rejected.iter().map(|r| r.index).collect();
                let accepted: Vec<Incoming<'_>> = fresh
                    .into_iter()
                    .filter(|c| !out.contains(&c.index))
                    .collect();
                let pending = pending_of(&document, &accepted);
                if !pending.is_empty() {
                    let theirs = builds_on_other_record(
                        &tx,
                        *id,
                        Some(row.docno),
                        &accepted,
                        &pending,
                        &rejected,
                    )?;
                    out.extend(theirs.iter().map(|r| r.index));
                    rejected.extend(theirs);
                }
                let mut added = 0;
                for c in accepted.iter().filter(|c| !out.contains(&c.index)) {
                    let seq = replica::insert_change(&tx, row.docno, c.hash, c.bytes, false, now)?;
                    if queue {
                        queue_change(&tx, seq)?;
                    }
                    added += 1;
                }
                report.applied += added;
                if added > 0 {
                    let heads_changed = encode_heads(&document.get_heads()) != row.heads;
                    let added = i64::try_from(added).unwrap_or(i64::MAX);
                    replica::store_document(&tx, &row, &document, added, now)?;
                    if heads_changed {
                        replica::project(&tx, &row, &document)?;
                        report.changed.push(*id);
                    }
                }
                // A document that refused changes may hold them in its queue: not cached.
                if rejected.is_empty() {
                    loaded.push((*id, document));
                }
                refused.extend(rejected.into_iter().map(|r| (*id, r)));
            }
            Ok(())
        })?;
        refused.sort_by_key(|(_, r)| r.index);
        for (id, rejected) in refused {
            let index = rejected.index;
            let bytes = batch.get(index).map_or(&[][..], |(_, b)| *b);
            report.quarantined.push(quarantine::record(
                &tx,
                id,
                bytes,
                rejected,
                source.origin(index),
                now,
            )?);
        }
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
    ///
    /// The changes taken are queued for the relay as well (pushing is idempotent by hash): a
    /// record that came on a USB stick may be news to the relay, which takes a change only
    /// after the changes it builds on, so its history must go out before the edits made here
    /// on top of it. [`Store::outbox`] sends them in causal order.
    pub fn merge_from(&mut self, other: &Store) -> Result<ApplyReport> {
        const BATCH: usize = 500;
        let peer = other.identity().replica_id.clone();
        let mut total = ApplyReport::default();
        let mut seen = HashSet::new();
        let mut after = 0;
        loop {
            let logged = other.changes_after(after, BATCH)?;
            let Some(last) = logged.last() else { break };
            after = last.seq;
            let batch: Vec<(RecordId, &[u8])> = logged
                .iter()
                .map(|l| (l.change.doc_id, l.change.bytes.as_slice()))
                .collect();
            let report =
                self.apply_remote_with(&batch, Source::Replica(&peer), true, |_| Ok(()))?;
            total.absorb(report, &mut seen);
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

/// Parses and verifies a document's changes (see [`crm_model::change::verify`]); refuses
/// those that are not changes or fail their checksum.
fn parse<'a>(raw: &[Raw<'a>]) -> (Vec<Incoming<'a>>, Vec<Rejected>) {
    let mut parsed = Vec::with_capacity(raw.len());
    let mut rejected = Vec::new();
    for (index, bytes) in raw {
        match crm_model::change::verify(bytes) {
            Ok(change) => parsed.push(Incoming {
                index: *index,
                hash: change.hash(),
                change,
                bytes,
            }),
            Err(e) => rejected.push(Rejected {
                index: *index,
                hash: None,
                problem: match e {
                    ChangeError::Unparseable(_) => Problem::Unreadable,
                    ChangeError::Checksum | ChangeError::Hash { .. } => Problem::Damaged,
                },
                reason: e.to_string(),
                deps: Vec::new(),
            }),
        }
    }
    (parsed, rejected)
}

/// Splits the changes of one document (`docno`, `None` for one not stored yet) into those this
/// replica has not stored, in batch order, and those it stores as another record's, refused.
/// The others (stored for this document, or repeated in the batch) count as duplicates.
fn unseen<'a>(
    tx: &rusqlite::Transaction<'_>,
    changes: Vec<Incoming<'a>>,
    docno: Option<i64>,
    report: &mut ApplyReport,
) -> Result<(Vec<Incoming<'a>>, Vec<Rejected>)> {
    let mut fresh = Vec::with_capacity(changes.len());
    let mut refused = Vec::new();
    let mut seen = HashSet::new();
    for c in changes {
        if !seen.insert(c.hash) {
            report.duplicates += 1;
            continue;
        }
        match stored_docno(tx, &c.hash)? {
            None => fresh.push(c),
            Some(d) if Some(d) == docno => report.duplicates += 1,
            Some(d) => refused.push(Rejected {
                index: c.index,
                hash: Some(c.hash),
                problem: Problem::OtherRecord,
                reason: format!(
                    "this change is stored here as a change of record {}",
                    record_of(tx, d)?
                ),
                deps: c.change.deps().to_vec(),
            }),
        }
    }
    Ok((fresh, refused))
}

/// The document a change with this hash is stored under, if any.
fn stored_docno(conn: &rusqlite::Connection, hash: &ChangeHash) -> Result<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT docno FROM changes WHERE hash = ?1")?
        .query_row([&hash.0[..]], |r| r.get(0))
        .optional()?)
}

/// The record id of a stored document, for messages.
fn record_of(conn: &rusqlite::Connection, docno: i64) -> Result<String> {
    Ok(conn
        .prepare_cached("SELECT id FROM documents WHERE docno = ?1")?
        .query_row([docno], |r| r.get(0))
        .optional()?
        .unwrap_or_else(|| format!("#{docno}")))
}

/// Applies `changes` (parsed, none stored yet) to `document` and returns those it refused.
///
/// First all at once, which is all a healthy batch costs. If Automerge refuses that, or the
/// document then claims another record's id (see [`claim`]), the document is taken again from
/// `base` and the changes are tried one at a time in causal order, each on a copy that is
/// kept only if the change applies and leaves the claim intact: the refused ones are exactly
/// the changes at fault. A change whose dependencies are missing is kept waiting, as
/// Automerge does; it cannot be at fault until they arrive.
fn apply_isolating(
    id: RecordId,
    document: &mut Automerge,
    changes: &[Incoming<'_>],
    base: impl FnOnce() -> Result<Automerge>,
) -> Result<Vec<Rejected>> {
    let all: Vec<Change> = changes.iter().map(|c| c.change.clone()).collect();
    if document.apply_changes(all).is_ok() && claim(id, document).is_none() {
        return Ok(Vec::new());
    }
    *document = base()?;
    let mut rejected = Vec::new();
    for i in causal_order(changes) {
        let c = &changes[i];
        let mut trial = document.clone();
        let fault = match trial.apply_changes([c.change.clone()]) {
            Err(e) => Some((Problem::Refused, format!("the document refuses it: {e}"))),
            Ok(()) => claim(id, &trial).map(|claimed| {
                (
                    Problem::OtherRecord,
                    format!("it is a change of record {claimed}"),
                )
            }),
        };
        match fault {
            None => *document = trial,
            Some((problem, reason)) => rejected.push(Rejected {
                index: c.index,
                hash: Some(c.hash),
                problem,
                reason,
                deps: c.change.deps().to_vec(),
            }),
        }
    }
    Ok(rejected)
}

/// The indexes of `changes` in an order where every change comes after those of the list it
/// depends on; otherwise in list order.
fn causal_order(changes: &[Incoming<'_>]) -> Vec<usize> {
    let at: HashMap<ChangeHash, usize> = changes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.hash, i))
        .collect();
    let mut waiting = vec![0_usize; changes.len()];
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); changes.len()];
    for (i, c) in changes.iter().enumerate() {
        for dep in c.change.deps() {
            if let Some(&j) = at.get(dep)
                && j != i
            {
                waiting[i] += 1;
                dependents[j].push(i);
            }
        }
    }
    let mut ready: BinaryHeap<Reverse<usize>> = (0..changes.len())
        .filter(|&i| waiting[i] == 0)
        .map(Reverse)
        .collect();
    let mut out = Vec::with_capacity(changes.len());
    while let Some(Reverse(i)) = ready.pop() {
        out.push(i);
        for &k in &dependents[i] {
            waiting[k] -= 1;
            if waiting[k] == 0 {
                ready.push(Reverse(k));
            }
        }
    }
    // Hashes make cycles impossible; kept anyway, in list order.
    if out.len() < changes.len() {
        let placed: HashSet<usize> = out.iter().copied().collect();
        out.extend((0..changes.len()).filter(|i| !placed.contains(i)));
    }
    out
}

/// The hashes of `changes` that `document` holds only in its queue: their dependencies have
/// not arrived. Nothing to look for (the common case) when the queue is empty.
fn pending_of(document: &Automerge, changes: &[Incoming<'_>]) -> HashSet<ChangeHash> {
    if document.get_missing_deps(&[]).is_empty() {
        return HashSet::new();
    }
    changes
        .iter()
        .filter(|c| document.get_change_meta_by_hash(&c.hash).is_none())
        .map(|c| c.hash)
        .collect()
}

/// The `pending` changes of record `id` (`docno`: where it is stored) that build on another
/// record's changes: a dependency stored here under another record, quarantined under this
/// one as another record's, or refused in this batch as another record's (`rejected`). Such a
/// change would wait forever and sit in the wrong document; worse, the record it belongs to
/// would then find it "already stored". Checked in causal order, so what builds on one of
/// them is refused too.
fn builds_on_other_record(
    tx: &rusqlite::Transaction<'_>,
    id: RecordId,
    docno: Option<i64>,
    changes: &[Incoming<'_>],
    pending: &HashSet<ChangeHash>,
    rejected: &[Rejected],
) -> Result<Vec<Rejected>> {
    let mut theirs: HashSet<ChangeHash> = rejected
        .iter()
        .filter(|r| r.problem == Problem::OtherRecord)
        .filter_map(|r| r.hash)
        .collect();
    let mut out = Vec::new();
    for i in causal_order(changes) {
        let c = &changes[i];
        if !pending.contains(&c.hash) {
            continue;
        }
        if let Some(reason) = foreign_dep(tx, id, docno, c.change.deps(), &theirs)? {
            theirs.insert(c.hash);
            out.push(Rejected {
                index: c.index,
                hash: Some(c.hash),
                problem: Problem::OtherRecord,
                reason,
                deps: c.change.deps().to_vec(),
            });
        }
    }
    Ok(out)
}

/// Says which record a change of record `id` (stored as `docno`) that the document refused
/// belongs to, when one of the changes it builds on is another record's: such a change is
/// usually refused only because its actor also wrote this record (a second change with the
/// same actor and sequence number), and "another record's" is what a person needs to know.
fn reclassify_refused(
    tx: &rusqlite::Transaction<'_>,
    id: RecordId,
    docno: Option<i64>,
    rejected: &mut [Rejected],
) -> Result<()> {
    let theirs: HashSet<ChangeHash> = rejected
        .iter()
        .filter(|r| r.problem == Problem::OtherRecord)
        .filter_map(|r| r.hash)
        .collect();
    for r in rejected
        .iter_mut()
        .filter(|r| r.problem == Problem::Refused)
    {
        if let Some(reason) = foreign_dep(tx, id, docno, &r.deps, &theirs)? {
            r.problem = Problem::OtherRecord;
            r.reason = reason;
        }
    }
    Ok(())
}

/// Why a change of record `id` (stored as `docno`) building on `deps` is another record's:
/// one of them is stored here under another record, quarantined under this one as another
/// record's, or among `theirs` (refused in this batch as another record's).
fn foreign_dep(
    tx: &rusqlite::Transaction<'_>,
    id: RecordId,
    docno: Option<i64>,
    deps: &[ChangeHash],
    theirs: &HashSet<ChangeHash>,
) -> Result<Option<String>> {
    for dep in deps {
        if theirs.contains(dep) || quarantine::other_record(tx, id, dep)? {
            return Ok(Some(format!(
                "it builds on change {}, which is another record's",
                quarantine::short(&dep.to_string())
            )));
        }
        if let Some(d) = stored_docno(tx, dep)?
            && Some(d) != docno
        {
            return Ok(Some(format!(
                "it builds on a change of record {}",
                record_of(tx, d)?
            )));
        }
    }
    Ok(None)
}

/// Another record's id held at the root of a record's document, if any: every value of
/// `id`, not just the one shown, since a record's creating change sent under another record's
/// id puts a concurrent `id`, and which of the two wins depends only on the actor ids.
pub(crate) fn claim(id: RecordId, document: &Automerge) -> Option<String> {
    let own = id.to_string();
    document
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
        })
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
    /// The changes applied or waiting for their dependencies, each once.
    changes: Vec<Incoming<'a>>,
    /// Changes repeated in the batch.
    repeats: usize,
    /// The changes refused.
    rejected: Vec<Rejected>,
    /// The hashes of `changes` waiting for their dependencies.
    pending: HashSet<ChangeHash>,
    heads: Vec<u8>,
    /// The record and its last change; `None` while the creating change has not arrived, or
    /// for a kind or schema newer than this build (kept, but not projected).
    record: Option<(Record, LastChange)>,
}

/// Parses and builds a new document (on a build thread).
fn build_job<'a>(job: &NewDoc<'a>) -> Result<BuiltDoc<'a>> {
    let (parsed, mut rejected) = parse(job.raw);
    let mut built = build_new(job.id, parsed)?;
    rejected.append(&mut built.rejected);
    built.rejected = rejected;
    Ok(built)
}

/// Builds a new document from its changes (repeats within the batch dropped, changes at fault
/// refused) and reads it.
fn build_new(id: RecordId, changes: Vec<Incoming<'_>>) -> Result<BuiltDoc<'_>> {
    let mut seen = HashSet::new();
    let before = changes.len();
    let changes: Vec<Incoming<'_>> = changes
        .into_iter()
        .filter(|c| seen.insert(c.hash))
        .collect();
    let repeats = before - changes.len();
    let mut document = Automerge::new();
    let rejected = apply_isolating(id, &mut document, &changes, || Ok(Automerge::new()))?;
    let out: HashSet<usize> = rejected.iter().map(|r| r.index).collect();
    let changes: Vec<Incoming<'_>> = changes
        .into_iter()
        .filter(|c| !out.contains(&c.index))
        .collect();
    let pending = pending_of(&document, &changes);
    let (heads, record) = read_built(id, &document)?;
    Ok(BuiltDoc {
        changes,
        repeats,
        rejected,
        pending,
        heads,
        record,
    })
}

/// What the rows of a document built off the writer need: its heads and its record with the
/// last change (`None` while the creating change has not arrived, or for a kind or schema
/// newer than this build: kept, but not projected).
pub(crate) type Read = (Vec<u8>, Option<(Record, LastChange)>);

/// Checks and reads a document built on a worker thread (see [`Read`]): a document that claims
/// another record's id is refused.
pub(crate) fn read_built(id: RecordId, document: &Automerge) -> Result<Read> {
    if let Some(claimed) = claim(id, document) {
        return Err(StoreError::DocumentMismatch { id, claimed });
    }
    let record = match doc::read(document, None) {
        Ok(record) => Some((record, replica::last_change(document))),
        Err(e) => {
            tracing::debug!(%id, error = %e, "document not projected");
            None
        }
    };
    Ok((encode_heads(&document.get_heads()), record))
}

/// Queues a stored change for the relay.
fn queue_change(tx: &rusqlite::Transaction<'_>, seq: i64) -> Result<()> {
    tx.prepare_cached("INSERT OR IGNORE INTO outbox (seq) VALUES (?1)")?
        .execute([seq])?;
    Ok(())
}

/// Stores a document new to this replica: its row, its changes and its projection.
fn write_new(
    tx: &rusqlite::Transaction<'_>,
    id: RecordId,
    built: &BuiltDoc<'_>,
    now: chrono::DateTime<Utc>,
    queue: bool,
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
    for c in &built.changes {
        let seq = replica::insert_change(tx, docno, c.hash, c.bytes, false, now)?;
        if queue {
            queue_change(tx, seq)?;
        }
    }
    if let Some((record, last)) = &built.record {
        crate::projection::write_new(tx, docno, record, last, crate::projection::Fts::AtCommit)?;
    }
    Ok(())
}
