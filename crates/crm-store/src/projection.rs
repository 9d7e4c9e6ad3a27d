//! Projection: the query tables derived from a record, written in the same transaction as
//! the document change they reflect.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::LazyLock;

use crm_model::{FieldType, FieldValue, Kind, Record};
use rusqlite::types::Value as Sql;
use rusqlite::{Transaction, params};
use serde_json::json;

use crate::error::Result;
use crate::schema::{column, table};

/// `INSERT OR REPLACE` statements per kind, built once.
static UPSERT: LazyLock<BTreeMap<Kind, String>> = LazyLock::new(|| {
    Kind::ALL
        .iter()
        .map(|kind| {
            let mut cols = String::from(
                "docno, id, title, archived, created_at, created_by, updated_at, updated_by, tags, notes, has_conflicts, json",
            );
            let mut n = 12;
            for field in kind.schema().all_fields() {
                let _ = write!(cols, ", {}", column(field.name));
                n += 1;
            }
            let marks = (1..=n).map(|i| format!("?{i}")).collect::<Vec<_>>().join(", ");
            (
                *kind,
                format!("INSERT OR REPLACE INTO {} ({cols}) VALUES ({marks})", table(*kind)),
            )
        })
        .collect()
});

/// The SQL value a field is stored as in its projection column.
pub(crate) fn column_value(value: &FieldValue) -> Sql {
    match value {
        FieldValue::Text(s) => Sql::Text(s.clone()),
        FieldValue::Int(n) => Sql::Integer(*n),
        FieldValue::Amount(a) => Sql::Integer(a.minor_units()),
        FieldValue::Bool(b) => Sql::Integer(i64::from(*b)),
        FieldValue::Date(_) | FieldValue::DateTime(_) | FieldValue::Ref(_) => match value.to_json()
        {
            serde_json::Value::String(s) => Sql::Text(s),
            other => Sql::Text(other.to_string()),
        },
        FieldValue::Set(_)
        | FieldValue::LineItems(_)
        | FieldValue::List(_)
        | FieldValue::Answers(_) => Sql::Text(value.to_json().to_string()),
    }
}

/// Who last changed the record and when, from the document's head changes.
pub(crate) struct LastChange {
    pub(crate) at: Option<String>,
    pub(crate) by: Option<String>,
}

/// Writes every projection row of `record`: its kind's table, tags, references, conflicts
/// and the full-text index.
pub(crate) fn write(
    tx: &Transaction<'_>,
    docno: i64,
    record: &Record,
    last: &LastChange,
) -> Result<()> {
    let kind = record.kind;
    remove(tx, docno, Some(kind))?;
    let json = record.to_json();
    let mut values: Vec<Sql> = vec![
        Sql::Integer(docno),
        Sql::Text(record.id.to_string()),
        Sql::Text(record.title()),
        Sql::Integer(i64::from(record.archived)),
        record
            .created_at
            .as_ref()
            .map_or(Sql::Null, |t| Sql::Text(crm_model::format_time(t))),
        Sql::Text(record.created_by.clone()),
        last.at.clone().map_or(Sql::Null, Sql::Text),
        last.by.clone().map_or(Sql::Null, Sql::Text),
        Sql::Text(json!(record.tags).to_string()),
        Sql::Text(record.notes.clone()),
        Sql::Integer(i64::from(!record.conflicts.is_empty())),
        Sql::Text(json.to_string()),
    ];
    for field in kind.schema().all_fields() {
        values.push(
            record
                .fields
                .get(field.name)
                .map_or(Sql::Null, column_value),
        );
    }
    tx.prepare_cached(&UPSERT[&kind])?
        .execute(rusqlite::params_from_iter(values))?;

    let mut tag =
        tx.prepare_cached("INSERT OR IGNORE INTO record_tags (tag, docno) VALUES (?1, ?2)")?;
    for t in &record.tags {
        tag.execute(params![t, docno])?;
    }
    let mut reference = tx.prepare_cached(
        "INSERT OR IGNORE INTO record_refs (docno, field, target) VALUES (?1, ?2, ?3)",
    )?;
    for (name, value) in &record.fields {
        for target in value.referenced_ids() {
            reference.execute(params![docno, name, target.to_string()])?;
        }
    }
    let mut conflict =
        tx.prepare_cached("INSERT INTO conflicts (docno, field, vals) VALUES (?1, ?2, ?3)")?;
    for (field, vals) in &record.conflicts {
        conflict.execute(params![docno, field, json!(vals).to_string()])?;
    }
    tx.prepare_cached(
        "INSERT INTO search (rowid, kind, archived, title, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        docno,
        kind.as_str(),
        record.archived,
        record.title(),
        search_body(record)
    ])?;
    Ok(())
}

/// Removes a document's projection rows (all kinds' tables when the kind is unknown).
pub(crate) fn remove(tx: &Transaction<'_>, docno: i64, kind: Option<Kind>) -> Result<()> {
    match kind {
        Some(kind) => {
            tx.prepare_cached(&format!("DELETE FROM {} WHERE docno = ?1", table(kind)))?
                .execute([docno])?;
        }
        None => {
            for kind in Kind::ALL {
                tx.prepare_cached(&format!("DELETE FROM {} WHERE docno = ?1", table(*kind)))?
                    .execute([docno])?;
            }
        }
    }
    for sql in [
        "DELETE FROM record_tags WHERE docno = ?1",
        "DELETE FROM record_refs WHERE docno = ?1",
        "DELETE FROM conflicts WHERE docno = ?1",
        "DELETE FROM search WHERE rowid = ?1",
    ] {
        tx.prepare_cached(sql)?.execute([docno])?;
    }
    Ok(())
}

/// The searchable text of a record besides its title: every text-like field, the tags and
/// the notes.
fn search_body(record: &Record) -> String {
    let mut body = String::new();
    for field in record.kind.schema().all_fields() {
        let Some(value) = record.fields.get(field.name) else {
            continue;
        };
        let searchable = matches!(
            field.ty,
            FieldType::Text
                | FieldType::Prose
                | FieldType::Email
                | FieldType::Phone
                | FieldType::Domain
                | FieldType::Set(
                    crm_model::SetOf::Email | crm_model::SetOf::Phone | crm_model::SetOf::Text
                )
        );
        if searchable && !field.title {
            body.push_str(&value.display());
            body.push('\n');
        }
    }
    for tag in &record.tags {
        body.push_str(tag);
        body.push(' ');
    }
    body.push('\n');
    body.push_str(&record.notes);
    body
}
