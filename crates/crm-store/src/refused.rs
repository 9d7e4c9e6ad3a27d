//! Edits the relay refused: taking them out of the replica without losing what was typed.
//!
//! The relay checks every pushed change against the user's role (a role that may not edit a
//! record, a rep setting `owner`, …) and refuses the ones it does not allow, one by one. A CRDT
//! cannot un-merge, so a refused change, and every change that builds on it, can never reach
//! anyone: [`Store::settle_refused`] takes them out of the outbox and the change log, rebuilds
//! each affected record from the changes it keeps (documents, projections, full-text rows and
//! conflicts follow, through the same projection as every write), and keeps what they did as
//! a *refused edit* ([`RejectedEdit`]: the record, each field that differs with the value
//! typed and the value it has now, when, the relay's code and reason) together with the
//! changes' bytes. A record whose creation was refused leaves the replica.
//!
//! The user then retries ([`Store::retry_rejected`]: the typed values as a new change through
//! the normal create and edit paths, with the role checks of `access.rs`) or dismisses
//! ([`Store::dismiss_rejected`]) each one.
//!
//! A change is named by its actor and sequence number. The session that made a refused change
//! (this one, or another process writing the same replica) would make its next change of the
//! record with the same (actor, seq), and different content: the actors whose changes were
//! taken out are noted per record (`refused_actors`), and a write of that record under one of
//! them takes a fresh actor ([`avoid_refused_actor`]).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};

use crm_model::automerge::{ActorId, Automerge, Change, ChangeHash, ReadDoc};
use crm_model::{Edit, FieldType, FieldValue, Kind, Record, RecordId, doc};
use rusqlite::{OptionalExtension, Transaction, TransactionBehavior, params};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::error::{Result, StoreError};
use crate::projection::Fts;
use crate::replica::{self, DocRow, Store, commit};

/// A change of the outbox the relay refused, as the sync driver hands it over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// The change's place in the change log: [`crate::OutboxChange::local_seq`].
    pub local_seq: i64,
    /// The relay's error code.
    pub code: u16,
    /// The relay's reason, in a sentence.
    pub reason: String,
}

/// What [`Store::settle_refused`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SettleReport {
    /// Changes taken out of the replica: the refused ones and those built on them.
    pub removed_changes: u64,
    /// Records rebuilt without them.
    pub rebuilt: Vec<RecordId>,
    /// Records removed because their creation was refused.
    pub removed_records: Vec<RecordId>,
    /// The refused edits recorded ([`RejectedEdit::id`]).
    pub rejected: Vec<i64>,
    /// Refusals of changes no longer in the outbox (acknowledged, or settled before): ignored.
    pub ignored: u64,
}

/// A field of a refused edit: what the user typed and what the record holds without it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RejectedField {
    /// A schema field's name, `custom.NAME`, or `tags`, `notes`, `archived`.
    pub field: String,
    /// The value the refused edit gave it, as in a JSON record (`null`: it cleared it).
    pub typed: Json,
    /// The value it has without the edit (`null`: none).
    pub old: Json,
}

/// An edit the relay refused, kept until it is retried or dismissed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RejectedEdit {
    /// Its number, for [`Store::retry_rejected`] and [`Store::dismiss_rejected`].
    pub id: i64,
    pub record: RecordId,
    pub kind: Kind,
    /// The record's title: as it is now, or as typed for a refused creation.
    pub title: String,
    /// The refused changes made the record: retrying creates it again.
    pub created: bool,
    /// Every field that differs. Empty when the refused changes changed nothing visible.
    pub fields: Vec<RejectedField>,
    /// When the user made the edit (RFC 3339).
    pub made_at: Option<String>,
    /// When the relay's refusal was settled here (RFC 3339).
    pub refused_at: String,
    pub code: u16,
    pub reason: String,
    /// How many changes it holds (the refused ones and those built on them).
    pub changes: u64,
}

/// One stored change of a document being settled.
struct Stored {
    seq: i64,
    hash: ChangeHash,
    /// The bytes as stored: empty when only the snapshot holds the change.
    stored: Vec<u8>,
    change: Change,
}

impl Store {
    /// Takes the changes the relay refused out of the replica (see the module docs), in one
    /// transaction: the refused changes and every change of the same record that builds on
    /// them leave the outbox and the change log; each record is rebuilt from the changes it
    /// keeps, or removed when it keeps none (its creation was refused); and one refused edit
    /// per record is recorded, with the changes' bytes. A refusal of a change no longer in the
    /// outbox is ignored, so settling twice is harmless.
    pub fn settle_refused(&mut self, refused: &[Refused]) -> Result<SettleReport> {
        let now = crm_model::format_time(&self.now());
        let actor = self.actor.clone();
        let mut report = SettleReport::default();
        let tx = self.begin()?;
        // The refusals of changes still queued, by document, in log order.
        let mut by_doc: BTreeMap<i64, Vec<(ChangeHash, &Refused)>> = BTreeMap::new();
        let mut sorted: Vec<&Refused> = refused.iter().collect();
        sorted.sort_by_key(|r| r.local_seq);
        for r in sorted {
            let queued: Option<(i64, Vec<u8>)> = tx
                .prepare_cached(
                    "SELECT c.docno, c.hash FROM outbox o JOIN changes c ON c.seq = o.seq \
                     WHERE o.seq = ?1",
                )?
                .query_row([r.local_seq], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            let Some((docno, hash)) = queued else {
                report.ignored += 1;
                continue;
            };
            let hash = ChangeHash::try_from(hash.as_slice()).map_err(|e| {
                StoreError::UnreadableChange {
                    docno,
                    reason: e.to_string(),
                }
            })?;
            let group = by_doc.entry(docno).or_default();
            if group.iter().all(|(h, _)| *h != hash) {
                group.push((hash, r));
            }
        }
        let mut removed = Vec::new();
        for (docno, group) in &by_doc {
            settle_document(&tx, *docno, group, &now, &actor, &mut report, &mut removed)?;
        }
        if !removed.is_empty() {
            crate::access::remove_records(&tx, &removed)?;
        }
        commit(tx)?;
        for id in report.rebuilt.iter().chain(&report.removed_records) {
            self.cache.pop(id);
        }
        if report.removed_changes > 0 {
            // This session may have made the refused changes; `avoid_refused_actor` covers
            // the others.
            self.actor = ActorId::random();
        }
        Ok(report)
    }

    /// The refused edits waiting for the user, newest first.
    pub fn rejected(&self) -> Result<Vec<RejectedEdit>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!("{SELECT_EDIT} ORDER BY e.id DESC"))?;
        let rows = stmt.query_map([], read_edit)?;
        let mut out = Vec::new();
        for row in rows {
            if let Some(edit) = row?? {
                out.push(edit);
            }
        }
        Ok(out)
    }

    /// How many refused edits wait for the user: those [`Store::rejected`] lists (not a
    /// change of a record this replica could not read, kept with no kind).
    pub fn rejected_count(&self) -> Result<u64> {
        let n: i64 = self.conn.query_row(
            "SELECT count(*) FROM refused_edits WHERE kind <> ''",
            [],
            |r| r.get(0),
        )?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// One refused edit.
    pub fn rejected_edit(&self, id: i64) -> Result<RejectedEdit> {
        self.conn
            .prepare_cached(&format!("{SELECT_EDIT} WHERE e.id = ?1"))?
            .query_row([id], read_edit)
            .optional()?
            .transpose()?
            .flatten()
            .ok_or(StoreError::NoRejectedEdit(id))
    }

    /// Makes a refused edit again, as a new change of this user through the normal create
    /// and edit paths: the role checks apply ([`StoreError::Rejected`] when the role does not
    /// allow it now), and the change goes to the outbox. A refused creation creates the
    /// record again with the same id (or, if it exists, sets the typed values); an edit sets
    /// each field to the value typed, clears the ones it cleared, and adds and removes the
    /// tags it did. On success the refused edit is gone, in the same transaction; on failure
    /// nothing changes. Returns the record as it now is.
    pub fn retry_rejected(&mut self, id: i64) -> Result<Record> {
        self.writable()?;
        let rejected = self.rejected_edit(id)?;
        let exists = self.kind_of(rejected.record).is_ok();
        let edit = retry_edit(&rejected, rejected.created && !exists)?;
        let now = self.now();
        if rejected.created && !exists {
            self.check_create(&edit)?;
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (_, edit) =
                replica::prepare_create(&tx, &edit, self.identity.user_id, &self.author)?;
            // A fresh actor: the refused creation was the first change of its own actor.
            let built = replica::build_create(
                rejected.record,
                &edit,
                &self.author,
                &ActorId::random(),
                now,
            )?;
            replica::write_create(&tx, &built, now, Fts::Now)?;
            forget(&tx, id)?;
            commit(tx)?;
            let record = built.record.clone();
            if let Some(document) = built.document {
                self.cache.put(record.id, document);
            }
            return Ok(record);
        }
        self.check_edit(rejected.record, &edit)?;
        let cached = self.cache.pop(&rejected.record);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (record, document, _) = replica::edit_in(
            &tx,
            rejected.record,
            &edit,
            cached,
            &replica::Writing {
                author: &self.author,
                actor: &self.actor,
                now,
                fts: Fts::Now,
            },
        )?;
        forget(&tx, id)?;
        commit(tx)?;
        self.cache.put(rejected.record, document);
        Ok(record)
    }

    /// Drops a refused edit and its changes: the user does not want it made again.
    pub fn dismiss_rejected(&mut self, id: i64) -> Result<()> {
        let tx = self.begin()?;
        if forget(&tx, id)? == 0 {
            return Err(StoreError::NoRejectedEdit(id));
        }
        tx.commit()?;
        Ok(())
    }
}

/// Deletes a refused edit and its changes; returns how many edits it deleted (0 or 1).
fn forget(tx: &Transaction<'_>, id: i64) -> Result<usize> {
    tx.execute("DELETE FROM refused_changes WHERE edit = ?1", [id])?;
    Ok(tx.execute("DELETE FROM refused_edits WHERE id = ?1", [id])?)
}

const SELECT_EDIT: &str = "SELECT e.id, e.doc_id, e.kind, e.title, e.created, e.fields, \
     e.made_at, e.refused_at, e.code, e.reason, \
     (SELECT count(*) FROM refused_changes c WHERE c.edit = e.id) FROM refused_edits e";

/// A row of [`SELECT_EDIT`]; `None` for one that names no record or kind this build knows
/// (written by a newer one), an error for fields that do not parse.
fn read_edit(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<Option<RejectedEdit>>> {
    let id: i64 = r.get(0)?;
    let doc_id: String = r.get(1)?;
    let kind: String = r.get(2)?;
    let fields: String = r.get(5)?;
    let (Ok(record), Ok(kind)) = (doc_id.parse::<RecordId>(), kind.parse::<Kind>()) else {
        return Ok(Ok(None));
    };
    let fields: Vec<RejectedField> = match serde_json::from_str(&fields) {
        Ok(f) => f,
        Err(e) => {
            return Ok(Err(StoreError::CorruptProjection(format!(
                "refused edit {id}: {e}"
            ))));
        }
    };
    Ok(Ok(Some(RejectedEdit {
        id,
        record,
        kind,
        title: r.get(3)?,
        created: r.get(4)?,
        fields,
        made_at: r.get(6)?,
        refused_at: r.get(7)?,
        code: u16::try_from(r.get::<_, i64>(8)?).unwrap_or(0),
        reason: r.get(9)?,
        changes: u64::try_from(r.get::<_, i64>(10)?).unwrap_or(0),
    })))
}

/// Settles the refusals of one document's changes (`group`, with their hashes) inside `tx`:
/// see [`Store::settle_refused`]. A document left with no change is added to `removed`.
fn settle_document(
    tx: &Transaction<'_>,
    docno: i64,
    group: &[(ChangeHash, &Refused)],
    now: &str,
    actor: &ActorId,
    report: &mut SettleReport,
    removed: &mut Vec<RecordId>,
) -> Result<()> {
    let (id, kind, heads): (String, Option<String>, Vec<u8>) = tx
        .prepare_cached("SELECT id, kind, heads FROM documents WHERE docno = ?1")?
        .query_row([docno], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    let id: RecordId = id.parse().map_err(|_| StoreError::UnreadableChange {
        docno,
        reason: format!("its document's id {id:?} is not a record id"),
    })?;
    let row = DocRow {
        docno,
        id,
        kind,
        heads,
    };
    let before_doc = replica::load(tx, id, &row, None, actor)?;
    let before = doc::read(&before_doc, None).ok();

    // Every change of the document, with its bytes (from the snapshot when not stored).
    let mut all: Vec<Stored> = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached("SELECT seq, hash, bytes FROM changes WHERE docno = ?1 ORDER BY seq")?;
        let rows = stmt.query_map([docno], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        for row in rows {
            let (seq, hash, stored) = row?;
            let unreadable = |reason: String| StoreError::StoredChange { id, reason };
            let hash = ChangeHash::try_from(hash.as_slice())
                .map_err(|e| unreadable(format!("change #{seq}: {e}")))?;
            let change = if stored.is_empty() {
                before_doc
                    .get_change_by_hash(&hash)
                    .ok_or_else(|| unreadable(format!("{hash} is neither stored nor held")))?
            } else {
                Change::from_bytes(stored.clone())
                    .map_err(|e| unreadable(format!("change {hash}: {e}")))?
            };
            all.push(Stored {
                seq,
                hash,
                stored,
                change,
            });
        }
    }

    // The refused changes and, transitively, every change of the record built on them.
    let mut dependents: HashMap<ChangeHash, Vec<ChangeHash>> = HashMap::new();
    for c in &all {
        for dep in c.change.deps() {
            dependents.entry(*dep).or_default().push(c.hash);
        }
    }
    let refused: HashSet<ChangeHash> = group.iter().map(|(h, _)| *h).collect();
    let mut out: HashSet<ChangeHash> = refused.clone();
    let mut queue: VecDeque<ChangeHash> = refused.iter().copied().collect();
    while let Some(h) = queue.pop_front() {
        for d in dependents.get(&h).into_iter().flatten() {
            if out.insert(*d) {
                queue.push_back(*d);
            }
        }
    }
    let (gone, kept): (Vec<&Stored>, Vec<&Stored>) =
        all.iter().partition(|c| out.contains(&c.hash));

    // The record without them.
    let mut after_doc = Automerge::new();
    after_doc
        .apply_changes(kept.iter().map(|c| c.change.clone()))
        .map_err(|e| StoreError::doc(id, e))?;
    let after = if kept.is_empty() {
        None
    } else {
        doc::read(&after_doc, None).ok()
    };

    // The refused edit: what differs, when it was made, what the relay said.
    let created = before.is_some() && after.is_none();
    let fields = match (&before, &after) {
        (Some(b), None) => everything_set(b),
        (Some(b), Some(a)) => differences(b, a),
        (None, _) => Vec::new(),
    };
    let kind = before
        .as_ref()
        .map(|r| r.kind)
        .or_else(|| row.kind.as_deref().and_then(|k| k.parse().ok()));
    let title = after
        .as_ref()
        .or(before.as_ref())
        .map_or_else(|| id.to_string(), Record::title);
    let made_at = gone
        .iter()
        .filter(|c| refused.contains(&c.hash))
        .map(|c| c.change.timestamp())
        .min()
        .and_then(|secs| crm_model::millis_to_time(secs.saturating_mul(1000)))
        .map(|t| crm_model::format_time(&t));
    let mut reasons: Vec<&str> = Vec::new();
    for (_, r) in group {
        if !reasons.contains(&r.reason.as_str()) {
            reasons.push(&r.reason);
        }
    }
    let code = group.first().map_or(0, |(_, r)| r.code);
    let fields_json = serde_json::to_string(&fields)
        .map_err(|_| StoreError::Internal("refused fields always serialise"))?;
    tx.prepare_cached(
        "INSERT INTO refused_edits (doc_id, kind, title, created, fields, made_at, refused_at, \
         code, reason) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        id.to_string(),
        kind.map_or("", |k| k.as_str()),
        title,
        created,
        fields_json,
        made_at,
        now,
        code,
        reasons.join("; "),
    ])?;
    let edit = tx.last_insert_rowid();
    report.rejected.push(edit);

    // The changes leave the outbox and the log; their bytes stay with the refused edit.
    for c in &gone {
        let actor = c.change.actor_id().to_bytes().to_vec();
        tx.prepare_cached(
            "INSERT OR IGNORE INTO refused_changes (edit, hash, bytes, refused) \
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            edit,
            &c.hash.0[..],
            c.change.raw_bytes(),
            refused.contains(&c.hash)
        ])?;
        tx.prepare_cached("INSERT OR IGNORE INTO refused_actors (doc_id, actor) VALUES (?1, ?2)")?
            .execute(params![id.to_string(), actor])?;
        tx.prepare_cached("DELETE FROM outbox WHERE seq = ?1")?
            .execute([c.seq])?;
        tx.prepare_cached("DELETE FROM changes WHERE seq = ?1")?
            .execute([c.seq])?;
    }
    report.removed_changes += u64::try_from(gone.len()).unwrap_or(u64::MAX);

    if kept.is_empty() {
        removed.push(id);
        report.removed_records.push(id);
        return Ok(());
    }
    // The document as compaction leaves it: a fresh snapshot of what it keeps, the changes
    // it holds marked as folded in (their bytes, when stored only in the old snapshot, are in
    // the new one), the ones waiting for their dependencies loose.
    let mut loose = 0_i64;
    for c in &kept {
        let held = after_doc.get_change_by_hash(&c.hash).is_some();
        if !held {
            loose += 1;
            if c.stored.is_empty() {
                // Held only by the old snapshot, which goes: stored whole.
                tx.prepare_cached("UPDATE changes SET bytes = ?2 WHERE seq = ?1")?
                    .execute(params![c.seq, c.change.raw_bytes()])?;
            }
        }
        tx.prepare_cached("UPDATE changes SET in_snapshot = ?2 WHERE seq = ?1")?
            .execute(params![c.seq, held])?;
    }
    tx.prepare_cached(
        "UPDATE documents SET heads = ?2, snapshot = ?3, loose = ?4, updated_at = ?5 \
         WHERE docno = ?1",
    )?
    .execute(params![
        docno,
        replica::encode_heads(&after_doc.get_heads()),
        after_doc.save(),
        loose,
        now
    ])?;
    replica::project(tx, &row, &after_doc)?;
    report.rebuilt.push(id);
    Ok(())
}

/// Every field a refused creation set, as typed (`old` is `null`: the record did not exist).
fn everything_set(record: &Record) -> Vec<RejectedField> {
    let none = Record {
        id: record.id,
        kind: record.kind,
        created_at: None,
        created_by: String::new(),
        fields: BTreeMap::new(),
        custom: BTreeMap::new(),
        tags: BTreeSet::new(),
        notes: String::new(),
        archived: false,
        history: BTreeMap::new(),
        conflicts: BTreeMap::new(),
    };
    differences(record, &none)
}

/// The fields that differ between the record with the refused changes (`typed`) and without
/// them (`old`), in schema order, then custom fields, tags, notes and archived.
fn differences(typed: &Record, old: &Record) -> Vec<RejectedField> {
    let mut out = Vec::new();
    let value = |v: Option<&FieldValue>| v.map_or(Json::Null, FieldValue::to_json);
    for field in typed.kind.schema().all_fields() {
        let (t, o) = (typed.fields.get(field.name), old.fields.get(field.name));
        if t != o {
            out.push(RejectedField {
                field: field.name.to_string(),
                typed: value(t),
                old: value(o),
            });
        }
    }
    let names: BTreeSet<&String> = typed.custom.keys().chain(old.custom.keys()).collect();
    for name in names {
        let (t, o) = (typed.custom.get(name), old.custom.get(name));
        if t != o {
            out.push(RejectedField {
                field: format!("custom.{name}"),
                typed: t.map_or(Json::Null, |v| json!(v)),
                old: o.map_or(Json::Null, |v| json!(v)),
            });
        }
    }
    if typed.tags != old.tags {
        out.push(RejectedField {
            field: "tags".into(),
            typed: json!(typed.tags),
            old: json!(old.tags),
        });
    }
    if typed.notes != old.notes {
        out.push(RejectedField {
            field: "notes".into(),
            typed: json!(typed.notes),
            old: json!(old.notes),
        });
    }
    if typed.archived != old.archived {
        out.push(RejectedField {
            field: "archived".into(),
            typed: json!(typed.archived),
            old: json!(old.archived),
        });
    }
    out
}

/// The edit that makes a refused edit again: for a creation (`create`), every field as
/// typed; else each field set to the value typed (or cleared), and the tags it added and
/// removed.
fn retry_edit(rejected: &RejectedEdit, create: bool) -> Result<Edit> {
    let mut edit = Edit::new(rejected.kind);
    let strings = |v: &Json| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.as_str().map(str::to_string))
            .collect()
    };
    for f in &rejected.fields {
        match f.field.as_str() {
            "tags" => {
                let (typed, old) = (strings(&f.typed), strings(&f.old));
                for t in typed.difference(&old) {
                    edit.tag(t)?;
                }
                if !create {
                    for t in old.difference(&typed) {
                        edit.untag(t)?;
                    }
                }
            }
            "notes" => {
                edit.replace_notes(f.typed.as_str().unwrap_or_default())?;
            }
            "archived" => {
                edit.archive(f.typed.as_bool().unwrap_or(false));
            }
            name => match &f.typed {
                Json::Null if create => {}
                Json::Null => {
                    edit.unset(name)?;
                }
                typed => match name.strip_prefix("custom.") {
                    Some(_) => {
                        edit.set(name, typed.as_str().unwrap_or_default())?;
                    }
                    None => {
                        let field = edit.field(name)?;
                        let value = match (field.ty, typed) {
                            (FieldType::Set(_), Json::Array(items)) => FieldValue::Set(
                                items
                                    .iter()
                                    .map(|i| match i {
                                        Json::String(s) => s.clone(),
                                        other => other.to_string(),
                                    })
                                    .collect(),
                            ),
                            (_, Json::String(s)) => FieldValue::parse(field, s)?,
                            (_, other) => FieldValue::parse(field, &other.to_string())?,
                        };
                        edit.set_value(name, value)?;
                    }
                },
            },
        }
    }
    Ok(edit)
}

/// Gives `document` (about to be written as record `id`) a fresh actor when its actor's
/// changes of the record were refused and taken out (see the module docs): its next change
/// would repeat a refused change's (actor, seq) with other content.
pub(crate) fn avoid_refused_actor(
    tx: &Transaction<'_>,
    id: RecordId,
    document: &mut Automerge,
) -> Result<()> {
    let refused: bool = tx
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM refused_actors WHERE doc_id = ?1 AND actor = ?2)",
        )?
        .query_row(
            params![id.to_string(), document.get_actor().to_bytes()],
            |r| r.get(0),
        )?;
    if refused {
        document.set_actor(ActorId::random());
    }
    Ok(())
}
