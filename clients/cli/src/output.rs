//! Printing: JSON for scripts, aligned tables for people. Widths count CJK characters as two
//! columns, so Chinese names line up.

use std::collections::HashMap;

use crm_model::{FieldValue, Record, RecordId};
use serde_json::Value as Json;

pub(crate) fn json(value: &Json) {
    // Encoding a JSON value cannot fail; printing failures panic in println! as usual.
    let _ = crm_cli_support::output::json(value);
}

pub(crate) use crm_cli_support::output::{pairs, table};

/// A JSON value as one short line of text.
pub(crate) fn cell(value: Option<&Json>) -> String {
    match value {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => one_line(s, 60),
        Some(Json::Array(items)) => one_line(
            &items
                .iter()
                .map(|i| match i {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(", "),
            60,
        ),
        Some(other) => one_line(&other.to_string(), 60),
    }
}

pub(crate) fn one_line(s: &str, max: usize) -> String {
    let flat = s.replace(['\n', '\r'], " ⏎ ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

/// A reference shown by name: `ACME (0192f0c4…)`.
pub(crate) fn reference(id: &str, titles: &HashMap<RecordId, String>) -> String {
    match id.parse::<RecordId>().ok().and_then(|i| titles.get(&i)) {
        Some(title) => format!("{} ({}…)", one_line(title, 40), &id[..id.len().min(8)]),
        None => id.to_string(),
    }
}

/// Every id a record refers to.
pub(crate) fn referenced(record: &Record) -> Vec<RecordId> {
    record
        .fields
        .values()
        .flat_map(FieldValue::referenced_ids)
        .collect()
}

/// One record as a field/value table, conflicts marked, references shown by name.
pub(crate) fn record(record: &Record, titles: &HashMap<RecordId, String>) {
    let mut rows = vec![
        vec!["id".into(), record.id.to_string()],
        vec!["kind".into(), record.kind.to_string()],
    ];
    for field in record.kind.schema().all_fields() {
        if let Some(v) = record.fields.get(field.name) {
            let mut text = match v {
                FieldValue::Text(s) if field.is_prose() => s.clone(),
                FieldValue::Ref(id) => reference(&id.to_string(), titles),
                FieldValue::Set(items) if !v.referenced_ids().is_empty() => items
                    .iter()
                    .map(|i| reference(i, titles))
                    .collect::<Vec<_>>()
                    .join("\n"),
                other => one_line(&other.display(), 200),
            };
            if let Some(values) = record.conflicts.get(field.name) {
                text.push_str(&format!("   ⚠ conflict: {}", conflict_values(values)));
            }
            rows.push(vec![field.name.into(), text]);
        } else if let Some(values) = record.conflicts.get(field.name) {
            rows.push(vec![
                field.name.into(),
                format!("⚠ conflict: {}", conflict_values(values)),
            ]);
        }
    }
    for (k, v) in &record.custom {
        rows.push(vec![format!("custom.{k}"), v.clone()]);
    }
    rows.push(vec![
        "tags".into(),
        record.tags.iter().cloned().collect::<Vec<_>>().join(", "),
    ]);
    if !record.notes.is_empty() {
        rows.push(vec!["notes".into(), record.notes.clone()]);
    }
    let mut archived = record.archived.to_string();
    if let Some(values) = record.conflicts.get("archived") {
        archived.push_str(&format!("   ⚠ conflict: {}", conflict_values(values)));
    }
    rows.push(vec!["archived".into(), archived]);
    if let Some(t) = &record.created_at {
        rows.push(vec![
            "created".into(),
            format!("{} by {}", crm_model::format_time(t), record.created_by),
        ]);
    }
    pairs(rows);
    if !record.conflicts.is_empty() {
        println!(
            "{} field(s) hold concurrent values; settle with `crm resolve {} FIELD VALUE`",
            record.conflicts.len(),
            record.id
        );
    }
}

pub(crate) fn conflict_values(values: &[Json]) -> String {
    values
        .iter()
        .map(|v| cell(Some(v)))
        .collect::<Vec<_>>()
        .join(" | ")
}
