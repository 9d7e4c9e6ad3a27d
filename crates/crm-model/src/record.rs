//! A record read from its document: the typed view every client shows.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json, json};

use crate::id::RecordId;
use crate::kind::Kind;
use crate::value::{FieldValue, format_time};

/// Keys of the flat JSON record that are not schema fields.
pub const RESERVED_KEYS: &[&str] = &[
    "id",
    "kind",
    "schema",
    "created_at",
    "created_by",
    "tags",
    "notes",
    "archived",
    "conflicts",
    "custom",
    "history",
];

/// One entry of a stage or status history (`L+A`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub value: String,
    pub at: DateTime<Utc>,
    pub by: String,
    pub device: String,
}

/// A record as materialised from its Automerge document.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: RecordId,
    pub kind: Kind,
    pub created_at: Option<DateTime<Utc>>,
    pub created_by: String,
    /// Schema fields that hold a value, keyed by field name.
    pub fields: BTreeMap<&'static str, FieldValue>,
    pub custom: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
    pub notes: String,
    pub archived: bool,
    /// Stage and status histories, oldest first.
    pub history: BTreeMap<&'static str, Vec<HistoryEntry>>,
    /// Fields holding concurrent values: every distinct value, the shown winner first.
    pub conflicts: BTreeMap<String, Vec<Json>>,
}

impl Record {
    pub fn get(&self, field: &str) -> Option<&FieldValue> {
        self.fields.get(field)
    }

    /// The text that names the record in lists and links, e.g. `ACME 深圳` or `T-laptop-3 Printer jam`.
    pub fn title(&self) -> String {
        if self.kind == Kind::Contact {
            return self.person_name();
        }
        let parts: Vec<String> = self
            .kind
            .schema()
            .title_fields()
            .filter_map(|f| self.fields.get(f.name))
            .map(FieldValue::display)
            .collect();
        if parts.is_empty() {
            self.id.to_string()
        } else {
            parts.join(" ")
        }
    }

    /// A contact's name: `Wang Fang` in Latin script, `王芳` (family name first, no space)
    /// in Chinese.
    fn person_name(&self) -> String {
        let part = |f: &str| match self.fields.get(f) {
            Some(FieldValue::Text(s)) => s.trim().to_string(),
            _ => String::new(),
        };
        let (first, last) = (part("first_name"), part("last_name"));
        let cjk = |s: &str| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
        let name = if cjk(&first) || cjk(&last) {
            format!("{last}{first}")
        } else {
            format!("{first} {last}").trim().to_string()
        };
        if name.is_empty() {
            self.id.to_string()
        } else {
            name
        }
    }

    /// The flat JSON object of the CLI and the API: `id`, `kind`, each field under its schema
    /// name, `tags`, `notes`, `archived`, and `conflicts` when there are any.
    pub fn to_json(&self) -> Json {
        let mut obj = Map::new();
        obj.insert("id".into(), json!(self.id.to_string()));
        obj.insert("kind".into(), json!(self.kind.as_str()));
        for field in self.kind.schema().all_fields() {
            if let Some(v) = self.fields.get(field.name) {
                obj.insert(field.name.into(), v.to_json());
            }
        }
        if !self.custom.is_empty() {
            obj.insert("custom".into(), json!(self.custom));
        }
        obj.insert("tags".into(), json!(self.tags));
        obj.insert("notes".into(), json!(self.notes));
        obj.insert("archived".into(), json!(self.archived));
        if let Some(t) = &self.created_at {
            obj.insert("created_at".into(), json!(format_time(t)));
        }
        obj.insert("created_by".into(), json!(self.created_by));
        if !self.history.is_empty() {
            obj.insert("history".into(), json!(self.history));
        }
        if !self.conflicts.is_empty() {
            obj.insert("conflicts".into(), json!(self.conflicts));
        }
        Json::Object(obj)
    }
}
