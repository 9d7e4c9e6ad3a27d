//! A record's timeline, read from its Automerge history: every change with its time, user,
//! device and the fields it changed.

use chrono::{DateTime, Utc};
use crm_model::{Author, RecordId, doc};
use serde::Serialize;
use serde_json::{Map, Value as Json};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};

use crm_model::automerge::{Change, ChangeHash};

use crate::error::{Result, StoreError};
use crate::replica::Store;

/// One field changed by one change: its value before and after.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    pub old: Json,
    pub new: Json,
}

/// One change of a record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub hash: String,
    pub time: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub device: Option<String>,
    /// Whether this change created the record.
    pub created: bool,
    pub changes: Vec<FieldChange>,
}

/// Keys of the flat record that are bookkeeping rather than something a user changed.
const SKIP: &[&str] = &[
    "id",
    "kind",
    "created_at",
    "created_by",
    "conflicts",
    "history",
];

impl Store {
    /// Every change of a record in causal order, each with the fields it changed (old → new).
    /// The diff of a change is taken against its own parents, so a change made offline shows
    /// what that user changed, not what it merged.
    pub fn history(&mut self, id: RecordId) -> Result<Vec<TimelineEntry>> {
        let document = self.load_document(id)?;
        let mut out = Vec::new();
        for change in causal_order(document.get_changes(&[])) {
            let deps = change.deps().to_vec();
            let before = if deps.is_empty() {
                None
            } else {
                doc::read(&document, Some(&deps)).ok().map(|r| r.to_json())
            };
            let after = doc::read(&document, Some(&[change.hash()]))
                .map_err(|source| StoreError::doc(id, source))?
                .to_json();
            let author = Author::from_message(change.message());
            out.push(TimelineEntry {
                hash: change.hash().to_string(),
                time: crm_model::millis_to_time(change.timestamp() * 1000),
                user: author.as_ref().map(|a| a.user.clone()),
                device: author.map(|a| a.device),
                created: before.is_none(),
                changes: diff(before.as_ref(), &after),
            });
        }
        self.cache_put(id, document);
        Ok(out)
    }
}

/// The changes in a causal order that is the same on every replica: among the changes whose
/// parents are all listed, the earliest (by time, then hash) comes first. Automerge's own order
/// depends on the order a replica received concurrent changes in.
fn causal_order(changes: Vec<Change>) -> Vec<Change> {
    let hashes: HashSet<ChangeHash> = changes.iter().map(Change::hash).collect();
    let mut waiting: HashMap<ChangeHash, usize> = HashMap::new();
    let mut children: HashMap<ChangeHash, Vec<usize>> = HashMap::new();
    let mut ready = BinaryHeap::new();
    for (i, c) in changes.iter().enumerate() {
        let deps: Vec<&ChangeHash> = c.deps().iter().filter(|d| hashes.contains(d)).collect();
        for d in &deps {
            children.entry(**d).or_default().push(i);
        }
        if deps.is_empty() {
            ready.push(Reverse((c.timestamp(), c.hash(), i)));
        } else {
            waiting.insert(c.hash(), deps.len());
        }
    }
    let mut order = Vec::with_capacity(changes.len());
    while let Some(Reverse((_, hash, i))) = ready.pop() {
        order.push(i);
        for &child in children.get(&hash).map(Vec::as_slice).unwrap_or_default() {
            let c = &changes[child];
            if let Some(n) = waiting.get_mut(&c.hash()) {
                *n -= 1;
                if *n == 0 {
                    waiting.remove(&c.hash());
                    ready.push(Reverse((c.timestamp(), c.hash(), child)));
                }
            }
        }
    }
    let mut slots: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
    order.into_iter().filter_map(|i| slots[i].take()).collect()
}

fn diff(before: Option<&Json>, after: &Json) -> Vec<FieldChange> {
    let empty = Map::new();
    let old = before.and_then(Json::as_object).unwrap_or(&empty);
    let new = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut changes: Vec<FieldChange> = keys
        .into_iter()
        .filter(|k| !SKIP.contains(&k.as_str()))
        .filter_map(|k| {
            let o = old.get(k).cloned().unwrap_or(Json::Null);
            let n = new.get(k).cloned().unwrap_or(Json::Null);
            let blank = |v: &Json| {
                v.is_null() || v.as_str() == Some("") || v.as_array().is_some_and(Vec::is_empty)
            };
            (o != n && !(blank(&o) && blank(&n))).then(|| FieldChange {
                field: k.clone(),
                old: o,
                new: n,
            })
        })
        .collect();
    // A conflict settled by keeping the value already shown changes no value, but it is a
    // decision a user made: show it as the concurrent values → the chosen one.
    let no_conflicts = Map::new();
    let conflicts_of =
        |v: &Map<String, Json>| v.get("conflicts").and_then(Json::as_object).cloned();
    let old_conflicts = conflicts_of(old).unwrap_or_else(|| no_conflicts.clone());
    let new_conflicts = conflicts_of(new).unwrap_or(no_conflicts);
    for (field, values) in &old_conflicts {
        if !new_conflicts.contains_key(field) && !changes.iter().any(|c| &c.field == field) {
            let chosen = match field.strip_prefix("custom.") {
                Some(name) => new.get("custom").and_then(|c| c.get(name)).cloned(),
                None => new.get(field).cloned(),
            };
            changes.push(FieldChange {
                field: field.clone(),
                old: values.clone(),
                new: chosen.unwrap_or(Json::Null),
            });
        }
    }
    changes
}
