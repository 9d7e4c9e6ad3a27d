//! A record's timeline, read from its Automerge history: every change with its time, user,
//! device and the fields it changed.

use chrono::{DateTime, Utc};
use crm_model::{Author, RecordId, doc};
use serde::Serialize;
use serde_json::{Map, Value as Json};

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
        for change in document.get_changes(&[]) {
            let deps = change.deps().to_vec();
            let before = if deps.is_empty() {
                None
            } else {
                doc::read(&document, Some(&deps)).ok().map(|r| r.to_json())
            };
            let after = doc::read(&document, Some(&[change.hash()]))
                .map_err(|source| StoreError::Document { id, source })?
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

fn diff(before: Option<&Json>, after: &Json) -> Vec<FieldChange> {
    let empty = Map::new();
    let old = before.and_then(Json::as_object).unwrap_or(&empty);
    let new = after.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
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
        .collect()
}
