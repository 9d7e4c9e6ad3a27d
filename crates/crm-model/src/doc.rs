//! The mapping between a record and its Automerge document.
//!
//! Root map of every record document:
//!
//! ```text
//! kind: "account"            I   record kind
//! schema: 1                  I   record schema version, for migrations
//! id, created_at, created_by I
//! fields: { name: "ACME", emails: {"a@x.com": true}, description: Text, … }
//! custom: { region: "华南" }  L per key
//! tags: { "vip": true }      S
//! notes: Text                T
//! archived: false            L
//! history: { stage: [ {value, at, by, device}, … ] }   A
//! ```
//!
//! Every container (sets, texts, lists, history lists) is created together with the document,
//! by the device that creates the record, so two devices never race to create the same
//! container and hide each other's additions.

use std::collections::{BTreeMap, HashMap};

use automerge::transaction::{CommitOptions, Transactable, Transaction};
use automerge::{
    ActorId, Automerge, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};
use chrono::{DateTime, Utc};
use serde_json::Value as Json;

use crate::author::{Author, millis_to_time};
use crate::edit::{Edit, Op};
use crate::error::{DocError, ValidationError};
use crate::id::RecordId;
use crate::kind::Kind;
use crate::record::{HistoryEntry, Record};
use crate::schema::{FieldDef, FieldType, MergeRule};
use crate::value::{Amount, FieldValue, LineItem, MAX_PROSE_CHARS};

/// The record schema version this build writes and understands.
pub const SCHEMA_VERSION: u64 = 1;

/// The root keys of a record document that name it (see [`crate::change::creation`]).
pub(crate) const KIND_KEY: &str = "kind";
pub(crate) const ID_KEY: &str = "id";
const KIND: &str = KIND_KEY;
const SCHEMA: &str = "schema";
const ID: &str = ID_KEY;
const CREATED_AT: &str = "created_at";
const CREATED_BY: &str = "created_by";
const FIELDS: &str = "fields";
const CUSTOM: &str = "custom";
const TAGS: &str = "tags";
const NOTES: &str = "notes";
const ARCHIVED: &str = "archived";
const HISTORY: &str = "history";

/// Who makes a change and when.
#[derive(Clone, Copy, Debug)]
pub struct Stamp<'a> {
    pub author: &'a Author,
    pub now: DateTime<Utc>,
}

impl Stamp<'_> {
    fn commit_options(&self) -> CommitOptions {
        CommitOptions::default()
            .with_message(self.author.to_message())
            .with_time(self.now.timestamp())
    }
}

/// Creates the document of a new record from `edit`, applying schema defaults and checking
/// required fields. The returned document holds exactly one change.
pub fn create(
    id: RecordId,
    edit: &Edit,
    stamp: Stamp<'_>,
    actor: ActorId,
) -> Result<Automerge, DocError> {
    let kind = edit.kind();
    let schema = kind.schema();
    let mut doc = Automerge::new().with_actor(actor);
    let mut tx = doc.transaction();
    tx.put(ROOT, KIND, kind.as_str())?;
    tx.put(ROOT, SCHEMA, SCHEMA_VERSION)?;
    tx.put(ROOT, ID, id.to_string())?;
    tx.put(
        ROOT,
        CREATED_AT,
        ScalarValue::Timestamp(stamp.now.timestamp_millis()),
    )?;
    tx.put(ROOT, CREATED_BY, stamp.author.user.as_str())?;
    tx.put(ROOT, ARCHIVED, false)?;
    let fields = tx.put_object(ROOT, FIELDS, ObjType::Map)?;
    tx.put_object(ROOT, CUSTOM, ObjType::Map)?;
    tx.put_object(ROOT, TAGS, ObjType::Map)?;
    tx.put_object(ROOT, NOTES, ObjType::Text)?;
    let history = tx.put_object(ROOT, HISTORY, ObjType::Map)?;
    for field in schema.all_fields() {
        match field.ty {
            FieldType::Prose => {
                tx.put_object(&fields, field.name, ObjType::Text)?;
            }
            FieldType::Set(_) => {
                tx.put_object(&fields, field.name, ObjType::Map)?;
            }
            FieldType::List => {
                tx.put_object(&fields, field.name, ObjType::List)?;
            }
            _ => {}
        }
        if field.history {
            tx.put_object(&history, field.name, ObjType::List)?;
        }
    }
    let mut given = std::collections::BTreeSet::new();
    for op in edit.ops() {
        if let Op::Set(field, _) = op {
            given.insert(field.name);
        }
        apply_op(&mut tx, kind, op, stamp)?;
    }
    for field in schema.all_fields() {
        if let (Some(default), false) = (field.default, given.contains(field.name)) {
            let value = if default == "now" {
                FieldValue::DateTime(stamp.now)
            } else {
                FieldValue::parse(field, default)?
            };
            apply_op(&mut tx, kind, &Op::Set(field, value), stamp)?;
        }
    }
    for field in schema.all_fields().filter(|f| f.required) {
        if read_field(&Reader::new(&tx, None), &fields, field).is_none() {
            return Err(ValidationError::Required {
                kind,
                field: field.name.to_string(),
            }
            .into());
        }
    }
    tx.commit_with(stamp.commit_options());
    Ok(doc)
}

/// Applies `edit` to an existing record document as one change. Returns the change's hash, or
/// `None` when the edit changes nothing (setting a field to the value it already has).
pub fn apply_edit(
    doc: &mut Automerge,
    edit: &Edit,
    stamp: Stamp<'_>,
) -> Result<Option<ChangeHash>, DocError> {
    let kind = record_kind(doc)?;
    if kind != edit.kind() {
        return Err(ValidationError::InvalidValue {
            field: "kind".into(),
            value: edit.kind().to_string(),
            expected: format!("an edit of a {kind}"),
        }
        .into());
    }
    let mut tx = doc.transaction();
    for op in edit.ops() {
        if let Err(e) = apply_op(&mut tx, kind, op, stamp) {
            tx.rollback();
            return Err(e);
        }
    }
    if tx.pending_ops() == 0 {
        tx.rollback();
        return Ok(None);
    }
    Ok(tx.commit_with(stamp.commit_options()).0)
}

/// The kind named in a document's root, checking that this build can read it.
pub fn record_kind<D: ReadDoc>(doc: &D) -> Result<Kind, DocError> {
    let kind = match doc.get(ROOT, KIND)? {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Str(s) => s.to_string(),
            _ => return Err(DocError::NotARecord("kind is not a string")),
        },
        _ => return Err(DocError::NotARecord("no kind")),
    };
    if let Some((Value::Scalar(s), _)) = doc.get(ROOT, SCHEMA)? {
        let found = match s.as_ref() {
            ScalarValue::Uint(n) => *n,
            ScalarValue::Int(n) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(DocError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
    }
    kind.parse().map_err(|_| DocError::UnknownKind(kind))
}

/// Reads the record as it is now, or as it was at `heads`.
pub fn read<D: ReadDoc>(doc: &D, heads: Option<&[ChangeHash]>) -> Result<Record, DocError> {
    let r = Reader::new(doc, heads);
    // The root's keys in one pass; looking each up by name seeks from the start every time.
    let root: HashMap<String, (Value<'static>, ObjId, bool)> = r
        .entries(&ROOT)
        .into_iter()
        .map(|(key, value, id, conflict)| (key, (value, id, conflict)))
        .collect();
    let scalar = |key: &str| match root.get(key) {
        Some((Value::Scalar(s), _, _)) => Some(s.as_ref()),
        _ => None,
    };
    let text = |key: &str| match scalar(key) {
        Some(ScalarValue::Str(s)) => Some(s.to_string()),
        _ => None,
    };
    let obj = |key: &str| match root.get(key) {
        Some((Value::Object(_), id, _)) => Some(id.clone()),
        _ => None,
    };
    let kind: Kind = match scalar(KIND) {
        Some(ScalarValue::Str(k)) => k
            .parse()
            .map_err(|_| DocError::UnknownKind(k.to_string()))?,
        Some(_) if heads.is_none() => return Err(DocError::NotARecord("kind is not a string")),
        _ => return Err(DocError::NotARecord("no kind")),
    };
    if heads.is_none() {
        let found = match scalar(SCHEMA) {
            Some(ScalarValue::Uint(n)) => *n,
            Some(ScalarValue::Int(n)) => u64::try_from(*n).unwrap_or(0),
            _ => 0,
        };
        if found > SCHEMA_VERSION {
            return Err(DocError::NewerSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
    }
    let id = text(ID)
        .and_then(|s| s.parse().ok())
        .ok_or(DocError::NotARecord("no id"))?;
    let created_at = match scalar(CREATED_AT) {
        Some(ScalarValue::Timestamp(ms)) => millis_to_time(*ms),
        _ => None,
    };
    let mut record = Record {
        id,
        kind,
        created_at,
        created_by: text(CREATED_BY).unwrap_or_default(),
        fields: BTreeMap::new(),
        custom: BTreeMap::new(),
        tags: Default::default(),
        notes: String::new(),
        archived: matches!(scalar(ARCHIVED), Some(ScalarValue::Boolean(true))),
        history: BTreeMap::new(),
        conflicts: BTreeMap::new(),
    };
    if root.get(ARCHIVED).is_some_and(|(_, _, conflict)| *conflict)
        && let Some(values) = distinct_values(&r, &ROOT, ARCHIVED, |v, _| match v {
            Value::Scalar(s) => match s.as_ref() {
                ScalarValue::Boolean(b) => Some(Json::Bool(*b)),
                _ => None,
            },
            Value::Object(_) => None,
        })
    {
        record.conflicts.insert(ARCHIVED.into(), values);
    }
    if let Some(fields) = obj(FIELDS) {
        // One pass over the map; only keys flagged as conflicting are looked at again.
        let schema = kind.schema();
        for (key, value, id, conflict) in r.entries(&fields) {
            let Some(field) = schema.field(&key) else {
                continue;
            };
            if let Some(value) = read_value(&r, field, value, id) {
                record.fields.insert(field.name, value);
            }
            if !conflict {
                continue;
            }
            if let Some(values) = distinct_values(&r, &fields, field.name, |v, id| {
                read_value(&r, field, v, id).map(|v| v.to_json())
            }) {
                record.conflicts.insert(field.name.into(), values);
            }
        }
    }
    if let Some(custom) = obj(CUSTOM) {
        for (key, value, _, conflict) in r.entries(&custom) {
            if let Value::Scalar(s) = &value
                && let ScalarValue::Str(v) = s.as_ref()
            {
                record.custom.insert(key.clone(), v.to_string());
            }
            if !conflict {
                continue;
            }
            if let Some(values) = distinct_values(&r, &custom, &key, |v, _| match v {
                Value::Scalar(s) => match s.as_ref() {
                    ScalarValue::Str(s) => Some(Json::String(s.to_string())),
                    _ => None,
                },
                Value::Object(_) => None,
            }) {
                record.conflicts.insert(format!("custom.{key}"), values);
            }
        }
    }
    if let Some(tags) = obj(TAGS) {
        record.tags = r.keys(&tags).into_iter().collect();
    }
    if let Some(notes) = obj(NOTES) {
        record.notes = r.text(&notes);
    }
    if let Some(history) = obj(HISTORY) {
        // One pass over the history map, one over each list and one over each entry: reading
        // by key or index seeks from the start of the object every time.
        let schema = kind.schema();
        for (key, value, list, _) in r.entries(&history) {
            let (Some(field), Value::Object(ObjType::List)) = (schema.field(&key), value) else {
                continue;
            };
            if !field.history {
                continue;
            }
            let entries: Vec<HistoryEntry> = r
                .list_items(&list)
                .into_iter()
                .filter_map(|(value, entry)| match value {
                    Value::Object(ObjType::Map) => read_history_entry(&r, &entry),
                    _ => None,
                })
                .collect();
            if !entries.is_empty() {
                record.history.insert(field.name, entries);
            }
        }
    }
    Ok(record)
}

/// One entry of a stage or status history: a map of value, time, user and device.
fn read_history_entry<D: ReadDoc>(r: &Reader<'_, D>, entry: &ObjId) -> Option<HistoryEntry> {
    let (mut value, mut at, mut by, mut device) = (None, None, String::new(), String::new());
    for (key, v, _, _) in r.entries(entry) {
        let Value::Scalar(s) = v else { continue };
        match (key.as_str(), s.as_ref()) {
            ("value", ScalarValue::Str(t)) => value = Some(t.to_string()),
            ("at", ScalarValue::Timestamp(ms)) => at = millis_to_time(*ms),
            ("by", ScalarValue::Str(t)) => by = t.to_string(),
            ("device", ScalarValue::Str(t)) => device = t.to_string(),
            _ => {}
        }
    }
    Some(HistoryEntry {
        value: value?,
        at: at?,
        by,
        device,
    })
}

/// Read access to a document, now or at some heads.
struct Reader<'a, D: ReadDoc> {
    doc: &'a D,
    heads: Option<&'a [ChangeHash]>,
}

impl<'a, D: ReadDoc> Reader<'a, D> {
    fn new(doc: &'a D, heads: Option<&'a [ChangeHash]>) -> Self {
        Self { doc, heads }
    }

    fn get<P: Into<automerge::Prop>>(&self, obj: &ObjId, prop: P) -> Option<(Value<'a>, ObjId)> {
        match self.heads {
            Some(h) => self.doc.get_at(obj, prop, h),
            None => self.doc.get(obj, prop),
        }
        .ok()
        .flatten()
    }

    fn get_all(&self, obj: &ObjId, prop: &str) -> Vec<(Value<'a>, ObjId)> {
        match self.heads {
            Some(h) => self.doc.get_all_at(obj, prop, h),
            None => self.doc.get_all(obj, prop),
        }
        .unwrap_or_default()
    }

    fn str<P: Into<automerge::Prop>>(&self, obj: &ObjId, prop: P) -> Option<String> {
        match self.get(obj, prop) {
            Some((Value::Scalar(s), _)) => match s.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    /// Every key of a map with its shown value, the value's id, and whether the key holds
    /// concurrent values.
    fn entries(&self, obj: &ObjId) -> Vec<(String, Value<'static>, ObjId, bool)> {
        let items: Vec<_> = match self.heads {
            Some(h) => self
                .doc
                .map_range_at(obj, .., h)
                .map(|i| i.into_owned())
                .collect(),
            None => self
                .doc
                .map_range(obj, ..)
                .map(|i| i.into_owned())
                .collect(),
        };
        items
            .into_iter()
            .map(|item| {
                let id = item.id();
                (
                    item.key.into_owned(),
                    Value::from(item.value),
                    id,
                    item.conflict,
                )
            })
            .collect()
    }

    /// Every element of a list with its value's id, in order, in one pass.
    fn list_items(&self, obj: &ObjId) -> Vec<(Value<'static>, ObjId)> {
        let items: Vec<_> = match self.heads {
            Some(h) => self
                .doc
                .list_range_at(obj, .., h)
                .map(|i| i.into_owned())
                .collect(),
            None => self
                .doc
                .list_range(obj, ..)
                .map(|i| i.into_owned())
                .collect(),
        };
        items
            .into_iter()
            .map(|item| {
                let id = item.id();
                (Value::from(item.value), id)
            })
            .collect()
    }

    fn keys(&self, obj: &ObjId) -> Vec<String> {
        match self.heads {
            Some(h) => self.doc.keys_at(obj, h).collect(),
            None => self.doc.keys(obj).collect(),
        }
    }

    fn text(&self, obj: &ObjId) -> String {
        match self.heads {
            Some(h) => self.doc.text_at(obj, h),
            None => self.doc.text(obj),
        }
        .unwrap_or_default()
    }
}

/// Every distinct value of a key that holds concurrent values, the winner first; `None` when
/// there is no conflict.
fn distinct_values<D: ReadDoc>(
    r: &Reader<'_, D>,
    obj: &ObjId,
    key: &str,
    to_json: impl Fn(Value<'_>, ObjId) -> Option<Json>,
) -> Option<Vec<Json>> {
    let all = r.get_all(obj, key);
    if all.len() < 2 {
        return None;
    }
    let mut values: Vec<Json> = Vec::new();
    // get_all lists values in op order and the last one wins; show the winner first.
    for (v, id) in all.into_iter().rev() {
        let json = to_json(v, id).unwrap_or(Json::Null);
        if !values.contains(&json) {
            values.push(json);
        }
    }
    (values.len() > 1).then_some(values)
}

fn read_field<D: ReadDoc>(
    r: &Reader<'_, D>,
    fields: &ObjId,
    field: &FieldDef,
) -> Option<FieldValue> {
    let (value, id) = r.get(fields, field.name)?;
    read_value(r, field, value, id)
}

fn read_value<D: ReadDoc>(
    r: &Reader<'_, D>,
    field: &FieldDef,
    value: Value<'_>,
    id: ObjId,
) -> Option<FieldValue> {
    match value {
        Value::Scalar(s) => from_scalar(field.ty, s.as_ref()),
        Value::Object(ObjType::Text) => {
            let text = r.text(&id);
            (!text.is_empty()).then_some(FieldValue::Text(text))
        }
        Value::Object(ObjType::Map) => match field.ty {
            FieldType::Set(_) => {
                let keys = r.keys(&id);
                (!keys.is_empty()).then(|| FieldValue::Set(keys.into_iter().collect()))
            }
            FieldType::Answers => Some(FieldValue::Answers(
                r.keys(&id)
                    .into_iter()
                    .filter_map(|k| r.str(&id, k.as_str()).map(|v| (k, v)))
                    .collect(),
            )),
            _ => None,
        },
        Value::Object(ObjType::List) => match field.ty {
            FieldType::List => {
                let items: Vec<String> = r
                    .list_items(&id)
                    .into_iter()
                    .filter_map(|(v, _)| match v {
                        Value::Scalar(s) => match s.as_ref() {
                            ScalarValue::Str(t) => Some(t.to_string()),
                            _ => None,
                        },
                        Value::Object(_) => None,
                    })
                    .collect();
                (!items.is_empty()).then_some(FieldValue::List(items))
            }
            FieldType::LineItems => Some(FieldValue::LineItems(
                r.list_items(&id)
                    .into_iter()
                    .filter_map(|(v, item)| match v {
                        Value::Object(_) => read_line_item(r, &item),
                        Value::Scalar(_) => None,
                    })
                    .collect(),
            )),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

fn read_line_item<D: ReadDoc>(r: &Reader<'_, D>, item: &ObjId) -> Option<LineItem> {
    let amount = |key: &str| match r.get(item, key) {
        Some((Value::Scalar(s), _)) => match s.as_ref() {
            ScalarValue::Int(n) => Some(Amount(*n)),
            _ => None,
        },
        _ => None,
    };
    Some(LineItem {
        product: r.str(item, "product").and_then(|s| s.parse().ok()),
        description: r.str(item, "description").unwrap_or_default(),
        qty: amount("qty")?,
        unit_price: amount("unit_price")?,
        discount: amount("discount").unwrap_or_default(),
    })
}

fn from_scalar(ty: FieldType, s: &ScalarValue) -> Option<FieldValue> {
    Some(match (ty, s) {
        (
            FieldType::Text
            | FieldType::Prose
            | FieldType::Email
            | FieldType::Phone
            | FieldType::Domain
            | FieldType::Enum(_),
            ScalarValue::Str(s),
        ) => FieldValue::Text(s.to_string()),
        (FieldType::Int { .. }, ScalarValue::Int(n)) => FieldValue::Int(*n),
        (FieldType::Int { .. }, ScalarValue::Uint(n)) => FieldValue::Int(i64::try_from(*n).ok()?),
        (FieldType::Money, ScalarValue::Int(n)) => FieldValue::Amount(Amount(*n)),
        (FieldType::Bool, ScalarValue::Boolean(b)) => FieldValue::Bool(*b),
        (FieldType::Date, ScalarValue::Str(s)) => {
            FieldValue::Date(chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?)
        }
        (FieldType::DateTime, ScalarValue::Timestamp(ms)) => {
            FieldValue::DateTime(millis_to_time(*ms)?)
        }
        (FieldType::Ref(_), ScalarValue::Str(s)) => FieldValue::Ref(s.parse().ok()?),
        _ => return None,
    })
}

fn to_scalar(value: &FieldValue) -> Option<ScalarValue> {
    Some(match value {
        FieldValue::Text(s) => ScalarValue::Str(s.as_str().into()),
        FieldValue::Int(n) => ScalarValue::Int(*n),
        FieldValue::Amount(a) => ScalarValue::Int(a.0),
        FieldValue::Bool(b) => ScalarValue::Boolean(*b),
        FieldValue::Date(d) => ScalarValue::Str(d.format("%Y-%m-%d").to_string().into()),
        FieldValue::DateTime(t) => ScalarValue::Timestamp(t.timestamp_millis()),
        FieldValue::Ref(id) => ScalarValue::Str(id.to_string().into()),
        FieldValue::Set(_)
        | FieldValue::LineItems(_)
        | FieldValue::List(_)
        | FieldValue::Answers(_) => {
            return None;
        }
    })
}

/// The object at `parent[key]`, created when it is missing (documents from older schemas).
fn ensure_obj(
    tx: &mut Transaction<'_>,
    parent: &ObjId,
    key: &str,
    ty: ObjType,
) -> Result<ObjId, DocError> {
    match tx.get(parent, key)? {
        Some((Value::Object(t), id)) if t == ty => Ok(id),
        _ => Ok(tx.put_object(parent, key, ty)?),
    }
}

fn apply_op(
    tx: &mut Transaction<'_>,
    kind: Kind,
    op: &Op,
    stamp: Stamp<'_>,
) -> Result<(), DocError> {
    let fields = ensure_obj(tx, &ROOT, FIELDS, ObjType::Map)?;
    match op {
        Op::Set(field, value) => set_field(tx, &fields, field, value, stamp),
        Op::Unset(field) => unset_field(tx, kind, &fields, field),
        Op::SetCustom(key, value) => {
            let custom = ensure_obj(tx, &ROOT, CUSTOM, ObjType::Map)?;
            put_if_changed(tx, &custom, key, ScalarValue::Str(value.as_str().into()))?;
            Ok(())
        }
        Op::UnsetCustom(key) => {
            let custom = ensure_obj(tx, &ROOT, CUSTOM, ObjType::Map)?;
            if tx.get(&custom, key.as_str())?.is_some() {
                tx.delete(&custom, key.as_str())?;
            }
            Ok(())
        }
        Op::Tag(tag) => {
            let tags = ensure_obj(tx, &ROOT, TAGS, ObjType::Map)?;
            if tx.get(&tags, tag.as_str())?.is_none() {
                tx.put(&tags, tag.as_str(), true)?;
            }
            Ok(())
        }
        Op::Untag(tag) => {
            let tags = ensure_obj(tx, &ROOT, TAGS, ObjType::Map)?;
            if tx.get(&tags, tag.as_str())?.is_some() {
                tx.delete(&tags, tag.as_str())?;
            }
            Ok(())
        }
        Op::ReplaceNotes(text) => {
            let notes = ensure_obj(tx, &ROOT, NOTES, ObjType::Text)?;
            replace_text(tx, &notes, text)?;
            Ok(())
        }
        Op::AppendNotes(text) => {
            let notes = ensure_obj(tx, &ROOT, NOTES, ObjType::Text)?;
            let len = tx.length(&notes);
            let existing = tx.text(&notes)?;
            let mut insert = String::new();
            if !existing.is_empty() && !existing.ends_with('\n') {
                insert.push('\n');
            }
            insert.push_str(text);
            // The notes as they will be must fit, not only what is appended.
            if existing.len() + insert.len() > MAX_PROSE_CHARS {
                let chars = existing.chars().count() + insert.chars().count();
                if chars > MAX_PROSE_CHARS {
                    return Err(ValidationError::TextTooLong {
                        field: NOTES.into(),
                        chars,
                        max: MAX_PROSE_CHARS,
                    }
                    .into());
                }
            }
            tx.splice_text(&notes, len, 0, &insert)?;
            Ok(())
        }
        Op::Archive(archived) => {
            put_if_changed(tx, &ROOT, ARCHIVED, ScalarValue::Boolean(*archived))?;
            Ok(())
        }
    }
}

/// Most characters in the changed middle of a text (removed plus inserted) that
/// [`replace_text`] diffs character by character; a larger middle is replaced in one splice.
/// Diffing costs O(N·D) in the middle's length N and the number of differences D, so this
/// bounds it to a few milliseconds.
const DIFF_MIDDLE_CHARS: usize = 4_096;

/// Replaces the whole text of `obj` with `new`, in time linear in the two texts: what they
/// share at the start and at the end stays as it is, and the changed middle between them is
/// diffed when it is short ([`DIFF_MIDDLE_CHARS`]) and otherwise replaced in one splice
/// (delete what was there, insert what replaces it).
///
/// Automerge's `update_text` diffs the whole texts (Myers, O(N·D)), which took seconds for a
/// 20 KB rewrite and hours for 1 MB while holding the replica's writer (issue 12, failure
/// 3). Splicing the whole text would be linear, but would make a concurrent edit anywhere
/// in the text collide with this one; keeping the common prefix and suffix keeps
/// concurrent edits of the unchanged parts merging character by character, and a notes
/// editor mostly sends a text changed in one place. `crm-bench text` measures the three
/// ways (docs/BENCHMARKS.md).
pub fn replace_text(tx: &mut Transaction<'_>, obj: &ObjId, new: &str) -> Result<(), DocError> {
    let old = tx.text(obj)?;
    if old == new {
        return Ok(());
    }
    let width: fn(&str) -> usize = match tx.text_encoding() {
        automerge::TextEncoding::UnicodeCodePoint => |s| s.chars().count(),
        automerge::TextEncoding::Utf8CodeUnit => str::len,
        automerge::TextEncoding::Utf16CodeUnit => |s| s.encode_utf16().count(),
        // Indexes by grapheme cluster are not ours to compute; no record document uses them.
        automerge::TextEncoding::GraphemeCluster => {
            tx.update_text(obj, new)?;
            return Ok(());
        }
    };
    let prefix: usize = old
        .chars()
        .zip(new.chars())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .sum();
    let room = old.len().min(new.len()) - prefix;
    let suffix: usize = old[prefix..]
        .chars()
        .rev()
        .zip(new[prefix..].chars().rev())
        .take_while(|(a, b)| a == b)
        .map(|(a, _)| a.len_utf8())
        .scan(0, |total, n| {
            *total += n;
            (*total <= room).then_some(n)
        })
        .sum();
    let deleted = &old[prefix..old.len() - suffix];
    let inserted = &new[prefix..new.len() - suffix];
    // Bytes bound characters from above: most middles need no count.
    if deleted.len() + inserted.len() <= DIFF_MIDDLE_CHARS
        || deleted.chars().count() + inserted.chars().count() <= DIFF_MIDDLE_CHARS
    {
        // Automerge's diff skips the common prefix and suffix itself, so its cost is the
        // middle's.
        tx.update_text(obj, new)?;
        return Ok(());
    }
    let deleted = isize::try_from(width(deleted))
        .map_err(|_| DocError::NotARecord("a text longer than memory"))?;
    tx.splice_text(obj, width(&old[..prefix]), deleted, inserted)?;
    Ok(())
}

/// Puts a scalar unless the key already holds exactly that value with no conflict. Returns
/// whether it wrote.
fn put_if_changed(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    value: ScalarValue,
) -> Result<bool, DocError> {
    let current = tx.get_all(obj, key)?;
    if let [(Value::Scalar(s), _)] = current.as_slice()
        && s.as_ref() == &value
    {
        return Ok(false);
    }
    tx.put(obj, key, value)?;
    Ok(true)
}

fn set_field(
    tx: &mut Transaction<'_>,
    fields: &ObjId,
    field: &FieldDef,
    value: &FieldValue,
    stamp: Stamp<'_>,
) -> Result<(), DocError> {
    let r = Reader::new(&*tx, None);
    let current = read_field(&r, fields, field);
    if field.rule == MergeRule::Immutable {
        match &current {
            Some(existing) if existing == value => return Ok(()),
            Some(_) => {
                return Err(ValidationError::Immutable {
                    field: field.name.to_string(),
                }
                .into());
            }
            None => {}
        }
    }
    let changed = match (field.ty, value) {
        (FieldType::Prose, FieldValue::Text(text)) => {
            let obj = ensure_obj(tx, fields, field.name, ObjType::Text)?;
            replace_text(tx, &obj, text)?;
            true
        }
        (FieldType::Set(_), FieldValue::Set(items)) => {
            let obj = ensure_obj(tx, fields, field.name, ObjType::Map)?;
            for key in tx.keys(&obj).collect::<Vec<_>>() {
                if !items.contains(&key) {
                    tx.delete(&obj, key.as_str())?;
                }
            }
            for item in items {
                if tx.get(&obj, item.as_str())?.is_none() {
                    tx.put(&obj, item.as_str(), true)?;
                }
            }
            true
        }
        (FieldType::List, FieldValue::List(items)) => {
            let obj = ensure_obj(tx, fields, field.name, ObjType::List)?;
            let existing = match &current {
                Some(FieldValue::List(e)) => e.clone(),
                _ => Vec::new(),
            };
            if !items.starts_with(&existing) {
                return Err(ValidationError::AppendOnly {
                    field: field.name.to_string(),
                }
                .into());
            }
            for (i, item) in items.iter().enumerate().skip(existing.len()) {
                tx.insert(&obj, i, item.as_str())?;
            }
            items.len() > existing.len()
        }
        (FieldType::LineItems, FieldValue::LineItems(items)) => {
            if current.as_ref() == Some(value) {
                false
            } else {
                let list = tx.put_object(fields, field.name, ObjType::List)?;
                for (i, item) in items.iter().enumerate() {
                    let obj = tx.insert_object(&list, i, ObjType::Map)?;
                    if let Some(p) = item.product {
                        tx.put(&obj, "product", p.to_string())?;
                    }
                    tx.put(&obj, "description", item.description.as_str())?;
                    tx.put(&obj, "qty", ScalarValue::Int(item.qty.0))?;
                    tx.put(&obj, "unit_price", ScalarValue::Int(item.unit_price.0))?;
                    tx.put(&obj, "discount", ScalarValue::Int(item.discount.0))?;
                }
                true
            }
        }
        (FieldType::Answers, FieldValue::Answers(answers)) => {
            let obj = tx.put_object(fields, field.name, ObjType::Map)?;
            for (q, a) in answers {
                tx.put(&obj, q.as_str(), a.as_str())?;
            }
            true
        }
        (_, scalar) => {
            let Some(s) = to_scalar(scalar) else {
                return Err(ValidationError::InvalidValue {
                    field: field.name.to_string(),
                    value: scalar.display(),
                    expected: field.ty.describe(),
                }
                .into());
            };
            put_if_changed(tx, fields, field.name, s)?
        }
    };
    if changed && field.history {
        let history = ensure_obj(tx, &ROOT, HISTORY, ObjType::Map)?;
        let list = ensure_obj(tx, &history, field.name, ObjType::List)?;
        let at = tx.length(&list);
        let entry = tx.insert_object(&list, at, ObjType::Map)?;
        tx.put(&entry, "value", value.display())?;
        tx.put(
            &entry,
            "at",
            ScalarValue::Timestamp(stamp.now.timestamp_millis()),
        )?;
        tx.put(&entry, "by", stamp.author.user.as_str())?;
        tx.put(&entry, "device", stamp.author.device.as_str())?;
    }
    Ok(())
}

fn unset_field(
    tx: &mut Transaction<'_>,
    kind: Kind,
    fields: &ObjId,
    field: &FieldDef,
) -> Result<(), DocError> {
    if field.required {
        return Err(ValidationError::Required {
            kind,
            field: field.name.to_string(),
        }
        .into());
    }
    let present = read_field(&Reader::new(&*tx, None), fields, field).is_some();
    if !present {
        return Ok(());
    }
    match field.ty {
        _ if field.rule == MergeRule::Immutable => Err(ValidationError::Immutable {
            field: field.name.to_string(),
        }
        .into()),
        FieldType::List => Err(ValidationError::AppendOnly {
            field: field.name.to_string(),
        }
        .into()),
        FieldType::Prose => {
            let obj = ensure_obj(tx, fields, field.name, ObjType::Text)?;
            replace_text(tx, &obj, "")?;
            Ok(())
        }
        FieldType::Set(_) => {
            let obj = ensure_obj(tx, fields, field.name, ObjType::Map)?;
            for key in tx.keys(&obj).collect::<Vec<_>>() {
                tx.delete(&obj, key.as_str())?;
            }
            Ok(())
        }
        _ => {
            tx.delete(fields, field.name)?;
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn stamp(author: &Author) -> Stamp<'_> {
        Stamp {
            author,
            now: Utc
                .with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
                .single()
                .expect("valid time"),
        }
    }

    fn account(name: &str) -> (Automerge, Author) {
        let author = Author::new("alice", "laptop");
        let mut e = Edit::new(Kind::Account);
        e.set("name", name).expect("valid");
        let doc = create(RecordId::new(), &e, stamp(&author), ActorId::random()).expect("created");
        (doc, author)
    }

    /// Text from an alphabet with multi-byte characters, in runs, so texts share long
    /// stretches (and a trimmed prefix and suffix can overlap).
    fn texts() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            Just("a".to_string()),
            Just("ab".to_string()),
            Just("客户".to_string()),
            Just("é😀".to_string()),
            Just("e\u{301}".to_string()),
            "[a-c€]{1,40}",
        ];
        (proptest::collection::vec(piece, 0..12), 1usize..100)
            .prop_map(|(pieces, repeat)| pieces.concat().repeat(repeat))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]

        /// `replace_text` gives exactly the new text, through the diff (a short middle) and
        /// the splice (a long one), with multi-byte and combining characters.
        #[test]
        fn replace_text_gives_the_new_text(old in texts(), new in texts()) {
            let mut doc = Automerge::new();
            let mut tx = doc.transaction();
            let obj = tx.put_object(ROOT, NOTES, ObjType::Text).expect("text");
            tx.splice_text(&obj, 0, 0, &old).expect("splice");
            replace_text(&mut tx, &obj, &new).expect("replace");
            proptest::prop_assert_eq!(tx.text(&obj).expect("text"), new.clone());
            tx.commit();
            proptest::prop_assert_eq!(doc.text(&obj).expect("text"), new);
        }
    }

    /// A long rewrite of one part of the notes (spliced, not diffed) merges with a
    /// concurrent edit of another part, character by character.
    #[test]
    fn a_spliced_replacement_merges_with_a_concurrent_edit_elsewhere() {
        let (mut a, author) = account("ACME");
        let body: String = "客户拜访记录，合同续签。".repeat(1_000);
        let mut first = Edit::new(Kind::Account);
        first.replace_notes(&format!("{body}\nEND")).expect("valid");
        apply_edit(&mut a, &first, stamp(&author)).expect("notes");
        let mut b = a.fork().with_actor(ActorId::random());

        let rewritten = format!("{}\nEND", "Rewritten in English. ".repeat(700));
        let mut replace = Edit::new(Kind::Account);
        replace.replace_notes(&rewritten).expect("valid");
        apply_edit(&mut a, &replace, stamp(&author)).expect("replace");
        let mut append = Edit::new(Kind::Account);
        append
            .replace_notes(&format!("{body}\nEND (signed)"))
            .expect("valid");
        apply_edit(&mut b, &append, stamp(&author)).expect("append");

        a.merge(&mut b).expect("merge");
        assert_eq!(
            read(&a, None).expect("read").notes,
            format!("{}\nEND (signed)", "Rewritten in English. ".repeat(700))
        );
    }

    #[test]
    fn create_applies_defaults_and_records_the_author() {
        let (doc, _) = account("ACME 深圳");
        let r = read(&doc, None).expect("readable");
        assert_eq!(r.kind, Kind::Account);
        assert_eq!(r.get("name"), Some(&FieldValue::Text("ACME 深圳".into())));
        assert_eq!(
            r.get("lifecycle"),
            Some(&FieldValue::Text("prospect".into()))
        );
        assert_eq!(r.history["lifecycle"].len(), 1);
        let changes = doc.get_changes(&[]);
        assert_eq!(changes.len(), 1);
        let author = Author::from_message(changes[0].message());
        assert_eq!(author, Some(Author::new("alice", "laptop")));
    }

    #[test]
    fn create_requires_required_fields() {
        let author = Author::new("a", "d");
        let e = Edit::new(Kind::Account);
        let err =
            create(RecordId::new(), &e, stamp(&author), ActorId::random()).expect_err("must fail");
        assert!(err.to_string().contains("name is required"), "{err}");
    }

    #[test]
    fn setting_the_same_value_makes_no_change() {
        let (mut doc, author) = account("ACME");
        let mut e = Edit::new(Kind::Account);
        e.set("name", "ACME").expect("valid");
        assert_eq!(apply_edit(&mut doc, &e, stamp(&author)).expect("ok"), None);
        e.set("industry", "retail").expect("valid");
        assert!(
            apply_edit(&mut doc, &e, stamp(&author))
                .expect("ok")
                .is_some()
        );
    }

    #[test]
    fn concurrent_edits_merge_by_rule() {
        let (mut a, author) = account("ACME");
        let mut b = a.fork().with_actor(ActorId::random());
        let mut ea = Edit::new(Kind::Account);
        ea.set("industry", "retail").expect("valid");
        ea.set("grade", "vip").expect("valid");
        ea.tag("north").expect("valid");
        ea.replace_notes("hello world").expect("valid");
        let mut eb = Edit::new(Kind::Account);
        eb.set("website", "acme.cn").expect("valid");
        eb.set("grade", "key").expect("valid");
        eb.tag("south").expect("valid");
        eb.append_notes("from b").expect("valid");
        apply_edit(&mut a, &ea, stamp(&author)).expect("ok");
        apply_edit(&mut b, &eb, stamp(&author)).expect("ok");
        a.merge(&mut b).expect("merge");
        b.merge(&mut a.clone()).expect("merge");
        let ra = read(&a, None).expect("readable");
        let rb = read(&b, None).expect("readable");
        assert_eq!(ra, rb);
        assert_eq!(ra.get("industry"), Some(&FieldValue::Text("retail".into())));
        assert_eq!(ra.get("website"), Some(&FieldValue::Text("acme.cn".into())));
        assert_eq!(ra.tags.len(), 2);
        assert!(ra.notes.contains("hello world") && ra.notes.contains("from b"));
        let grade = &ra.conflicts["grade"];
        assert_eq!(grade.len(), 2);
        assert_eq!(grade[0], ra.get("grade").expect("winner").to_json());
        // Resolving writes over both values.
        let mut fix = Edit::new(Kind::Account);
        fix.set("grade", "key").expect("valid");
        apply_edit(&mut a, &fix, stamp(&author)).expect("ok");
        assert!(read(&a, None).expect("readable").conflicts.is_empty());
    }

    #[test]
    fn reads_the_past() {
        let (mut doc, author) = account("Old name");
        let before = doc.get_heads();
        let mut e = Edit::new(Kind::Account);
        e.set("name", "New name").expect("valid");
        apply_edit(&mut doc, &e, stamp(&author)).expect("ok");
        let then = read(&doc, Some(&before)).expect("readable");
        assert_eq!(then.get("name"), Some(&FieldValue::Text("Old name".into())));
    }

    #[test]
    fn immutable_and_append_only_fields_are_enforced() {
        let author = Author::new("a", "d");
        let mut e = Edit::new(Kind::Activity);
        e.set("type", "call").expect("valid");
        e.set("subject", "intro").expect("valid");
        let mut doc = create(RecordId::new(), &e, stamp(&author), ActorId::random()).expect("ok");
        let mut change = Edit::new(Kind::Activity);
        change.set("type", "meeting").expect("valid");
        assert!(matches!(
            apply_edit(&mut doc, &change, stamp(&author)),
            Err(DocError::Invalid(ValidationError::Immutable { .. }))
        ));
        let mut s = Edit::new(Kind::Survey);
        s.set("name", "CSAT").expect("valid");
        s.set("questions", r#"["How did we do?"]"#).expect("valid");
        let mut doc = create(RecordId::new(), &s, stamp(&author), ActorId::random()).expect("ok");
        let mut replace = Edit::new(Kind::Survey);
        replace.set("questions", r#"["Other"]"#).expect("valid");
        assert!(apply_edit(&mut doc, &replace, stamp(&author)).is_err());
        let mut append = Edit::new(Kind::Survey);
        append
            .set("questions", r#"["How did we do?","Why?"]"#)
            .expect("valid");
        apply_edit(&mut doc, &append, stamp(&author)).expect("append ok");
        assert_eq!(
            read(&doc, None).expect("ok").get("questions"),
            Some(&FieldValue::List(vec![
                "How did we do?".into(),
                "Why?".into()
            ]))
        );
    }

    #[test]
    fn contact_titles_follow_the_script() {
        let author = Author::new("a", "d");
        let mut e = Edit::new(Kind::Contact);
        e.set("first_name", "芳").expect("valid");
        e.set("last_name", "王").expect("valid");
        let doc = create(RecordId::new(), &e, stamp(&author), ActorId::random()).expect("ok");
        assert_eq!(read(&doc, None).expect("ok").title(), "王芳");
        let mut e = Edit::new(Kind::Contact);
        e.set("first_name", "Ada").expect("valid");
        e.set("last_name", "Lovelace").expect("valid");
        let doc = create(RecordId::new(), &e, stamp(&author), ActorId::random()).expect("ok");
        assert_eq!(read(&doc, None).expect("ok").title(), "Ada Lovelace");
    }

    #[test]
    fn newer_schema_is_refused() {
        let (mut doc, _) = account("x");
        let mut tx = doc.transaction();
        tx.put(ROOT, SCHEMA, SCHEMA_VERSION + 1).expect("put");
        tx.commit();
        assert!(matches!(
            read(&doc, None),
            Err(DocError::NewerSchema { .. })
        ));
    }
}
