//! Projection: the query tables derived from a record, written in the same transaction as
//! the document change they reflect.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use crm_model::{FieldType, FieldValue, Kind, Record};
use rusqlite::types::Value as Sql;
use rusqlite::{OptionalExtension, Transaction, params};
use serde_json::json;

use crate::error::Result;
use crate::schema::{column, table};

/// The columns of each kind's projection table, in order, and the statements that read and
/// insert a whole row, built once.
struct RowSql {
    /// Every column, `docno` first.
    columns: Vec<String>,
    select: String,
    insert: String,
}

static ROW_SQL: LazyLock<BTreeMap<Kind, RowSql>> = LazyLock::new(|| {
    Kind::ALL
        .iter()
        .map(|kind| {
            let mut columns: Vec<String> = [
                "docno",
                "id",
                "title",
                "archived",
                "created_at",
                "created_by",
                "updated_at",
                "updated_by",
                "tags",
                "notes",
                "has_conflicts",
                "json",
            ]
            .map(String::from)
            .to_vec();
            columns.extend(kind.schema().all_fields().map(|f| column(f.name)));
            let list = columns.join(", ");
            let marks = (1..=columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let t = table(*kind);
            let sql = RowSql {
                select: format!("SELECT {list} FROM {t} WHERE docno = ?1"),
                insert: format!("INSERT OR REPLACE INTO {t} ({list}) VALUES ({marks})"),
                columns,
            };
            (*kind, sql)
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
/// and the full-text index (now or at the commit: `fts`).
///
/// Only what differs from the rows already stored is written. An edit of one field then
/// updates that column and its index (and `updated_at`), not every index of the table, and
/// leaves the full-text index, tags and references alone unless they changed: every page a
/// write dirties is written to the WAL at commit and again at the next checkpoint.
pub(crate) fn write(
    tx: &Transaction<'_>,
    docno: i64,
    record: &Record,
    last: &LastChange,
    fts: Fts,
) -> Result<()> {
    write_rows(tx, docno, record, last, false, fts)
}

/// When a record's full-text row is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fts {
    /// Right away: for a transaction that writes one record.
    Now,
    /// At the commit, with every other row of the transaction (see [`flush_search`]): for
    /// transactions that write many records.
    AtCommit,
}

/// [`write`] for a record just created: it has no rows yet, so every row is inserted without
/// first reading what is stored.
pub(crate) fn write_new(
    tx: &Transaction<'_>,
    docno: i64,
    record: &Record,
    last: &LastChange,
    fts: Fts,
) -> Result<()> {
    write_rows(tx, docno, record, last, true, fts)
}

/// The row of a record's kind table, in the order of its columns (`docno` first).
pub(crate) fn row_values(docno: i64, record: &Record, last: &LastChange) -> Vec<Sql> {
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
        Sql::Text(record.to_json().to_string()),
    ];
    for field in record.kind.schema().all_fields() {
        values.push(
            record
                .fields
                .get(field.name)
                .map_or(Sql::Null, column_value),
        );
    }
    values
}

/// The columns of a kind's table, in the order of [`row_values`].
pub(crate) fn row_columns(kind: Kind) -> &'static [String] {
    &ROW_SQL[&kind].columns
}

/// The stored row of a record in its kind's table, in the order of [`row_values`].
pub(crate) fn stored_row(
    conn: &rusqlite::Connection,
    kind: Kind,
    docno: i64,
) -> Result<Option<Vec<Sql>>> {
    let sql = &ROW_SQL[&kind];
    Ok(conn
        .prepare_cached(&sql.select)?
        .query_row([docno], |r| {
            (0..sql.columns.len()).map(|i| r.get(i)).collect()
        })
        .optional()?)
}

/// The `record_refs` rows of a record: (field, target).
pub(crate) fn references(record: &Record) -> BTreeSet<(String, String)> {
    record
        .fields
        .iter()
        .flat_map(|(name, value)| {
            value
                .referenced_ids()
                .into_iter()
                .map(|target| ((*name).to_string(), target.to_string()))
        })
        .collect()
}

/// The `conflicts` rows of a record: field and every concurrent value, as JSON.
pub(crate) fn conflict_values(record: &Record) -> BTreeMap<&str, String> {
    record
        .conflicts
        .iter()
        .map(|(field, vals)| (field.as_str(), json!(vals).to_string()))
        .collect()
}

fn write_rows(
    tx: &Transaction<'_>,
    docno: i64,
    record: &Record,
    last: &LastChange,
    fresh: bool,
    fts: Fts,
) -> Result<()> {
    let kind = record.kind;
    let title = record.title();
    let values = row_values(docno, record, last);
    if fresh {
        tx.prepare_cached(&ROW_SQL[&kind].insert)?
            .execute(rusqlite::params_from_iter(values))?;
    } else {
        write_row(tx, kind, docno, values)?;
    }

    let tags: BTreeSet<&str> = record.tags.iter().map(String::as_str).collect();
    let old_tags: BTreeSet<String> = if fresh {
        BTreeSet::new()
    } else {
        tx.prepare_cached("SELECT tag FROM record_tags WHERE docno = ?1")?
            .query_map([docno], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for gone in old_tags.iter().filter(|t| !tags.contains(t.as_str())) {
        tx.prepare_cached("DELETE FROM record_tags WHERE tag = ?1 AND docno = ?2")?
            .execute(params![gone, docno])?;
    }
    for new in tags.iter().filter(|t| !old_tags.contains(**t)) {
        tx.prepare_cached("INSERT OR IGNORE INTO record_tags (tag, docno) VALUES (?1, ?2)")?
            .execute(params![new, docno])?;
    }

    let refs = references(record);
    let old_refs: BTreeSet<(String, String)> = if fresh {
        BTreeSet::new()
    } else {
        tx.prepare_cached("SELECT field, target FROM record_refs WHERE docno = ?1")?
            .query_map([docno], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (field, target) in old_refs.difference(&refs) {
        tx.prepare_cached(
            "DELETE FROM record_refs WHERE docno = ?1 AND field = ?2 AND target = ?3",
        )?
        .execute(params![docno, field, target])?;
    }
    for (field, target) in refs.difference(&old_refs) {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO record_refs (docno, field, target) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![docno, field, target])?;
    }

    write_history(tx, docno, record, fresh)?;

    let conflicts = conflict_values(record);
    let old_conflicts: BTreeMap<String, String> = if fresh {
        BTreeMap::new()
    } else {
        tx.prepare_cached("SELECT field, vals FROM conflicts WHERE docno = ?1")?
            .query_map([docno], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    for (field, vals) in &old_conflicts {
        if conflicts.get(field.as_str()) != Some(vals) {
            tx.prepare_cached("DELETE FROM conflicts WHERE docno = ?1 AND field = ?2")?
                .execute(params![docno, field])?;
        }
    }
    for (field, vals) in &conflicts {
        if old_conflicts.get(*field) != Some(vals) {
            tx.prepare_cached("INSERT INTO conflicts (docno, field, vals) VALUES (?1, ?2, ?3)")?
                .execute(params![docno, field, vals])?;
        }
    }

    let body = search_body(record);
    let indexed: Option<(String, Sql, String, String)> = if fresh {
        None
    } else {
        indexed_text(tx, docno)?
    };
    let unchanged = indexed.as_ref().is_some_and(|(k, archived, t, b)| {
        k == kind.as_str()
            && *archived == Sql::Integer(i64::from(record.archived))
            && *t == title
            && *b == body
    });
    if unchanged {
        return Ok(());
    }
    if fts == Fts::AtCommit {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO pending.search_pending (docno, fresh, kind, archived, title, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![
            docno,
            fresh,
            kind.as_str(),
            i64::from(record.archived),
            title,
            body
        ])?;
        return Ok(());
    }
    if indexed.is_some() {
        tx.prepare_cached("DELETE FROM search WHERE rowid = ?1")?
            .execute([docno])?;
    }
    tx.prepare_cached(
        "INSERT INTO search (rowid, kind, archived, title, body) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        docno,
        kind.as_str(),
        i64::from(record.archived),
        title,
        body
    ])?;
    Ok(())
}

/// The full-text row of a document as it will be at commit: the pending one if this
/// transaction wrote one (`None` for a pending removal), else the stored one.
fn indexed_text(tx: &Transaction<'_>, docno: i64) -> Result<Option<(String, Sql, String, String)>> {
    type Row = (Option<String>, Sql, Option<String>, Option<String>);
    let pending: Option<Row> = tx
        .prepare_cached(
            "SELECT kind, archived, title, body FROM pending.search_pending WHERE docno = ?1",
        )?
        .query_row([docno], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    if let Some((kind, archived, title, body)) = pending {
        return Ok(match (kind, title, body) {
            (Some(k), Some(t), Some(b)) => Some((k, archived, t, b)),
            _ => None,
        });
    }
    Ok(tx
        .prepare_cached("SELECT kind, archived, title, body FROM search WHERE rowid = ?1")?
        .query_row([docno], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?)
}

/// The full-text rows a transaction changed wait in `pending.search_pending` and are written
/// here, just before the commit, with one statement each for removals and insertions.
///
/// Written one by one, every row costs FTS5 a flush of its pending terms to a new segment
/// on disk: FTS5 flushes whenever a statement opens a savepoint, which SQLite does for most
/// writes inside a transaction. That made merges dominate bulk writes (imports, a fresh
/// device's first sync). Every transaction that projects must call this before committing.
pub(crate) fn flush_search(tx: &Transaction<'_>) -> Result<()> {
    let pending: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM pending.search_pending)")?
        .query_row([], |r| r.get(0))?;
    if !pending {
        return Ok(());
    }
    tx.prepare_cached(
        "DELETE FROM search WHERE rowid IN \
         (SELECT docno FROM pending.search_pending WHERE fresh = 0)",
    )?
    .execute([])?;
    tx.prepare_cached(
        "INSERT INTO search (rowid, kind, archived, title, body) \
         SELECT docno, kind, archived, title, body FROM pending.search_pending \
         WHERE kind IS NOT NULL ORDER BY docno",
    )?
    .execute([])?;
    tx.prepare_cached("DELETE FROM pending.search_pending")?
        .execute([])?;
    Ok(())
}

/// The table of [`flush_search`], in an in-memory database attached to each connection.
pub(crate) const SEARCH_PENDING: &str = "ATTACH DATABASE ':memory:' AS pending;
CREATE TABLE pending.search_pending (
    docno    INTEGER PRIMARY KEY,
    fresh    INTEGER NOT NULL,
    kind     TEXT,
    archived INTEGER,
    title    TEXT,
    body     TEXT
);";

/// Stage/status histories are append-only lists, so a field's entries changed exactly when
/// their count did (a concurrent entry may land mid-list: then the field's rows are rewritten).
fn write_history(tx: &Transaction<'_>, docno: i64, record: &Record, fresh: bool) -> Result<()> {
    for (field, entries) in &record.history {
        if !fresh {
            let stored: i64 = tx
                .prepare_cached(
                    "SELECT count(*) FROM record_history WHERE docno = ?1 AND field = ?2",
                )?
                .query_row(params![docno, field], |r| r.get(0))?;
            if usize::try_from(stored).ok() == Some(entries.len()) {
                continue;
            }
            tx.prepare_cached("DELETE FROM record_history WHERE docno = ?1 AND field = ?2")?
                .execute(params![docno, field])?;
        }
        let mut insert = tx.prepare_cached(
            "INSERT INTO record_history (docno, kind, field, pos, value, at, by, device) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for (pos, e) in entries.iter().enumerate() {
            insert.execute(params![
                docno,
                record.kind.as_str(),
                field,
                i64::try_from(pos).unwrap_or(i64::MAX),
                e.value,
                crm_model::format_time(&e.at),
                e.by,
                e.device
            ])?;
        }
    }
    Ok(())
}

/// Writes the kind's table row: inserted when new, else only the columns that changed.
fn write_row(tx: &Transaction<'_>, kind: Kind, docno: i64, values: Vec<Sql>) -> Result<()> {
    let sql = &ROW_SQL[&kind];
    let stored = stored_row(tx, kind, docno)?;
    let Some(stored) = stored else {
        tx.prepare_cached(&sql.insert)?
            .execute(rusqlite::params_from_iter(values))?;
        return Ok(());
    };
    let changed: Vec<usize> = (1..values.len())
        .filter(|&i| stored.get(i) != values.get(i))
        .collect();
    if changed.is_empty() {
        return Ok(());
    }
    let sets = changed
        .iter()
        .enumerate()
        .map(|(n, &i)| format!("{} = ?{}", sql.columns[i], n + 2))
        .collect::<Vec<_>>()
        .join(", ");
    let update = format!("UPDATE {} SET {sets} WHERE docno = ?1", table(kind));
    let params =
        std::iter::once(Sql::Integer(docno)).chain(changed.iter().map(|&i| values[i].clone()));
    tx.prepare_cached(&update)?
        .execute(rusqlite::params_from_iter(params))?;
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
        "DELETE FROM record_history WHERE docno = ?1",
        "DELETE FROM conflicts WHERE docno = ?1",
        // A pending removal (see `flush_search`).
        "INSERT OR REPLACE INTO pending.search_pending (docno, fresh) VALUES (?1, 0)",
    ] {
        tx.prepare_cached(sql)?.execute([docno])?;
    }
    Ok(())
}

/// The searchable text of a record besides its title: every text-like field, the tags and
/// the notes.
pub(crate) fn search_body(record: &Record) -> String {
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

#[cfg(test)]
mod tests {
    use crm_model::{Edit, Kind};

    use crate::Store;

    /// Every projection row, tag, reference, conflict and full-text row, as text.
    fn projected(store: &Store) -> Vec<String> {
        let mut out: Vec<String> = store
            .projection_dump()
            .expect("dump")
            .into_iter()
            .map(|row| row.to_string())
            .collect();
        for sql in [
            "SELECT tag || ' ' || docno FROM record_tags ORDER BY 1",
            "SELECT docno || ' ' || field || ' ' || target FROM record_refs ORDER BY 1",
            "SELECT docno || ' ' || field || ' ' || vals FROM conflicts ORDER BY 1",
            "SELECT docno || ' ' || kind || ' ' || field || ' ' || pos || ' ' || value || ' ' \
             || at || ' ' || by || ' ' || device FROM record_history ORDER BY docno, field, pos",
            "SELECT rowid || ' ' || kind || ' ' || archived || ' ' || title || ' ' || body \
             FROM search ORDER BY rowid",
        ] {
            let mut stmt = store.conn.prepare(sql).expect("prepare");
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .expect("query");
            out.extend(rows.map(|r| r.expect("row")));
        }
        out
    }

    fn edit(kind: Kind, f: impl FnOnce(&mut Edit)) -> Edit {
        let mut e = Edit::new(kind);
        f(&mut e);
        e
    }

    /// Writes only what changed, so after any sequence of edits the projections must be
    /// exactly what a rebuild from the documents gives.
    #[test]
    fn incremental_projection_writes_match_a_rebuild() {
        let dir_a = tempfile::tempdir().expect("tempdir");
        let dir_b = tempfile::tempdir().expect("tempdir");
        let mut a = Store::init(dir_a.path(), "alice", "laptop").expect("init");
        let mut b = Store::init(dir_b.path(), "bob", "phone").expect("init");
        let star = a
            .create(&edit(Kind::Account, |e| {
                e.set("name", "深圳星光贸易有限公司").expect("valid");
                e.tag("vip").expect("valid");
                e.tag("华南").expect("valid");
            }))
            .expect("create");
        let north = a
            .create(&edit(Kind::Account, |e| {
                e.set("name", "Northwind Traders Ltd").expect("valid");
            }))
            .expect("create");
        let star_id = star.id.to_string();
        a.create(&edit(Kind::Contact, |e| {
            e.set("last_name", "王").expect("valid");
            e.set("account", &star_id).expect("valid");
        }))
        .expect("create");

        let north_id = north.id.to_string();
        let edits = [
            edit(Kind::Account, |e| {
                e.set("industry", "retail").expect("valid");
            }),
            edit(Kind::Account, |e| {
                e.set("grade", "key").expect("valid");
                e.set("lifecycle", "contacted").expect("valid");
            }),
            edit(Kind::Account, |e| {
                e.set("lifecycle", "converted").expect("valid");
                e.untag("vip").expect("valid");
                e.tag("渠道").expect("valid");
            }),
            edit(Kind::Account, |e| {
                e.set("parent", &north_id).expect("valid");
            }),
            edit(Kind::Account, |e| {
                e.replace_notes("明年预算增加").expect("valid");
            }),
            edit(Kind::Account, |e| {
                e.unset("parent").expect("valid");
                e.set("industry", "wholesale").expect("valid");
            }),
        ];
        for e in &edits {
            a.edit(star.id, e).expect("edit");
        }
        let stages: Vec<String> = a
            .conn
            .prepare(
                "SELECT value FROM record_history WHERE field = 'lifecycle' ORDER BY docno, pos",
            )
            .expect("prepare")
            .query_map([], |r| r.get(0))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(stages, ["prospect", "contacted", "converted", "prospect"]);
        assert!(
            a.search("retail", None, false, 10)
                .expect("search")
                .is_empty()
        );
        assert_eq!(
            a.search("wholesale", None, false, 10)
                .expect("search")
                .len(),
            1
        );
        assert_eq!(a.search("预算", None, false, 10).expect("search").len(), 1);

        // A conflict appears and is resolved through remote changes.
        b.merge_from(&a).expect("merge");
        a.edit(
            star.id,
            &edit(Kind::Account, |e| {
                e.set("grade", "vip").expect("valid");
            }),
        )
        .expect("edit a");
        b.edit(
            star.id,
            &edit(Kind::Account, |e| {
                e.set("grade", "low").expect("valid");
            }),
        )
        .expect("edit b");
        a.merge_from(&b).expect("merge");
        assert_eq!(a.conflicts(Some(star.id)).expect("conflicts").len(), 1);
        let conflicted = projected(&a);
        a.reindex().expect("reindex");
        assert_eq!(conflicted, projected(&a));

        a.resolve(star.id, "grade", "vip").expect("resolve");
        a.set_archived(north.id, true).expect("archive");
        assert!(
            a.search("Northwind", None, false, 10)
                .expect("search")
                .is_empty()
        );
        let incremental = projected(&a);
        a.reindex().expect("reindex");
        assert_eq!(incremental, projected(&a));
    }
}
