//! Reads from the projections: filtered lists, full-text search, conflicts. Plain SQL over
//! indexed tables; no document is loaded.

use crm_model::{FieldType, FieldValue, Kind, RecordId};
use rusqlite::OptionalExtension;
use rusqlite::types::Value as Sql;
use serde_json::Value as Json;

use crate::error::{Result, StoreError};
use crate::projection::column_value;
use crate::replica::Store;
use crate::schema::{column, table};

/// A comparison in a list filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    /// Case-insensitive substring.
    Contains,
}

/// `FIELD OP VALUE`, e.g. `stage=proposal`, `amount>=10000`, `name~星光`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filter {
    pub field: String,
    pub cmp: Cmp,
    pub value: String,
}

impl Filter {
    /// Parses `FIELD=VALUE` and the other operators (`!=`, `<`, `<=`, `>`, `>=`, `~`).
    pub fn parse(text: &str) -> Result<Filter, crm_model::ValidationError> {
        for (op, cmp) in [
            ("!=", Cmp::Ne),
            (">=", Cmp::Ge),
            ("<=", Cmp::Le),
            ("~", Cmp::Contains),
            ("=", Cmp::Eq),
            (">", Cmp::Gt),
            ("<", Cmp::Lt),
        ] {
            if let Some((field, value)) = text.split_once(op) {
                return Ok(Filter {
                    field: field.trim().to_string(),
                    cmp,
                    value: value.trim().to_string(),
                });
            }
        }
        Err(crm_model::ValidationError::MissingEquals(text.to_string()))
    }
}

/// What to list.
#[derive(Clone, Debug)]
pub struct ListQuery {
    pub kind: Kind,
    pub filters: Vec<Filter>,
    pub tags: Vec<String>,
    /// Include archived records (they are hidden otherwise).
    pub include_archived: bool,
    /// A field name, or `title`, `created_at`, `updated_at`. Default: most recently changed first.
    pub sort: Option<String>,
    pub descending: bool,
    pub limit: usize,
    pub offset: usize,
}

impl ListQuery {
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            filters: Vec::new(),
            tags: Vec::new(),
            include_archived: false,
            sort: None,
            descending: false,
            limit: 50,
            offset: 0,
        }
    }
}

/// One row of a list: the record's JSON as its projection holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct ListRow {
    pub id: RecordId,
    pub title: String,
    pub json: Json,
}

/// One full-text match.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchHit {
    pub id: RecordId,
    pub kind: Kind,
    pub title: String,
    pub archived: bool,
}

/// A field holding concurrent values.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub id: RecordId,
    pub kind: Kind,
    pub title: String,
    pub field: String,
    /// Every distinct value, the one currently shown first.
    pub values: Vec<Json>,
}

const SORT_COLUMNS: &[&str] = &["title", "created_at", "updated_at"];

impl Store {
    /// Lists records of one kind from its projection table.
    pub fn list(&self, q: &ListQuery) -> Result<Vec<ListRow>> {
        let schema = q.kind.schema();
        let t = table(q.kind);
        let mut sql = format!("SELECT id, title, json FROM {t} WHERE 1");
        let mut params: Vec<Sql> = Vec::new();
        if !q.include_archived {
            sql.push_str(" AND archived = 0");
        }
        for filter in &q.filters {
            let field = schema.field(&filter.field).ok_or_else(|| {
                crm_model::ValidationError::UnknownField {
                    kind: q.kind,
                    field: filter.field.clone(),
                    known: schema
                        .all_fields()
                        .map(|f| f.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            let col = column(field.name);
            if filter.cmp == Cmp::Contains {
                sql.push_str(&format!(" AND {col} LIKE ? ESCAPE '\\'"));
                params.push(Sql::Text(format!("%{}%", escape_like(&filter.value))));
                continue;
            }
            if let FieldType::Set(_) = field.ty {
                let item = FieldValue::parse(field, &filter.value)?;
                let FieldValue::Set(items) = item else {
                    continue;
                };
                let neg = if filter.cmp == Cmp::Ne { "NOT " } else { "" };
                for item in items {
                    sql.push_str(&format!(
                        " AND {neg}EXISTS (SELECT 1 FROM json_each({col}) WHERE value = ?)"
                    ));
                    params.push(Sql::Text(item));
                }
                continue;
            }
            let value = column_value(&FieldValue::parse(field, &filter.value)?);
            let op = match filter.cmp {
                Cmp::Eq => "=",
                Cmp::Ne => "IS NOT",
                Cmp::Lt => "<",
                Cmp::Le => "<=",
                Cmp::Gt => ">",
                Cmp::Ge => ">=",
                Cmp::Contains => "LIKE",
            };
            sql.push_str(&format!(" AND {col} {op} ?"));
            params.push(value);
        }
        for tag in &q.tags {
            sql.push_str(" AND docno IN (SELECT docno FROM record_tags WHERE tag = ?)");
            params.push(Sql::Text(tag.trim().to_string()));
        }
        let (order, default_desc) = match q.sort.as_deref() {
            None => ("updated_at".to_string(), true),
            Some(s) if SORT_COLUMNS.contains(&s) => (s.to_string(), false),
            Some(s) => match schema.field(s) {
                Some(f) => (column(f.name), false),
                None => {
                    return Err(crm_model::ValidationError::InvalidValue {
                        field: "sort".into(),
                        value: s.into(),
                        expected: format!("title, created_at, updated_at or a field of {}", q.kind),
                    }
                    .into());
                }
            },
        };
        let dir = if q.descending || (default_desc && q.sort.is_none()) {
            "DESC"
        } else {
            "ASC"
        };
        // Ties (updated_at has whole seconds) are broken by the record id, not the local row
        // number: every replica lists the same records in the same order.
        sql.push_str(&format!(
            " ORDER BY {order} {dir}, id {dir} LIMIT ? OFFSET ?"
        ));
        params.push(Sql::Integer(i64::try_from(q.limit).unwrap_or(i64::MAX)));
        params.push(Sql::Integer(i64::try_from(q.offset).unwrap_or(i64::MAX)));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, title, json) = row?;
            out.push(ListRow {
                id: id.parse().map_err(|_| corrupt_projection(&id))?,
                title,
                json: serde_json::from_str(&json).map_err(|_| corrupt_projection(&id))?,
            });
        }
        Ok(out)
    }

    /// How many records of a kind there are (not archived unless asked).
    pub fn count(&self, kind: Kind, include_archived: bool) -> Result<u64> {
        let sql = format!(
            "SELECT count(*) FROM {}{}",
            table(kind),
            if include_archived {
                ""
            } else {
                " WHERE archived = 0"
            }
        );
        let n: i64 = self.conn.query_row(&sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Full-text search across kinds. Terms of three or more characters use the trigram
    /// index; shorter ones (two Chinese characters are a common word) fall back to a substring
    /// scan. Every term must match.
    pub fn search(
        &self,
        text: &str,
        kind: Option<Kind>,
        include_archived: bool,
        limit: usize,
    ) -> Result<Vec<SearchHit>> {
        let terms: Vec<&str> = text.split_whitespace().collect();
        if terms.is_empty() {
            return Ok(Vec::new());
        }
        let mut matches = Vec::new();
        let short_only = terms.iter().all(|t| t.chars().count() < 3);
        // Only short terms and one kind: the substring scan visits that kind's rows (looked up
        // by rowid), not every kind's, so it costs the size of the kind, not of the replica.
        let one_kind = kind.filter(|_| short_only);
        let mut sql = match one_kind {
            Some(kind) => format!(
                "SELECT s.rowid, s.kind, s.title, s.archived FROM {} r \
                 JOIN search s ON s.rowid = r.docno WHERE 1",
                table(kind)
            ),
            None => String::from("SELECT rowid, kind, title, archived FROM search s WHERE 1"),
        };
        let mut params: Vec<Sql> = Vec::new();
        for term in &terms {
            if term.chars().count() >= 3 {
                matches.push(format!("\"{}\"", term.replace('"', "\"\"")));
            } else {
                sql.push_str(" AND (s.title LIKE ? ESCAPE '\\' OR s.body LIKE ? ESCAPE '\\')");
                let like = format!("%{}%", escape_like(term));
                params.push(Sql::Text(like.clone()));
                params.push(Sql::Text(like));
            }
        }
        if !matches.is_empty() {
            sql.push_str(" AND search MATCH ?");
            params.push(Sql::Text(matches.join(" ")));
        }
        if let Some(kind) = kind {
            sql.push_str(" AND s.kind = ?");
            params.push(Sql::Text(kind.as_str().into()));
        }
        if !include_archived {
            sql.push_str(" AND s.archived = 0");
        }
        if !matches.is_empty() {
            sql.push_str(" ORDER BY rank");
        }
        sql.push_str(" LIMIT ?");
        params.push(Sql::Integer(i64::try_from(limit).unwrap_or(i64::MAX)));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, bool>(3)?,
            ))
        })?;
        let mut id_of = self
            .conn
            .prepare_cached("SELECT id FROM documents WHERE docno = ?1")?;
        let mut out = Vec::new();
        for row in rows {
            let (docno, kind, title, archived) = row?;
            let id: String = id_of.query_row([docno], |r| r.get(0))?;
            out.push(SearchHit {
                id: id.parse().map_err(|_| corrupt_projection(&id))?,
                kind: kind.parse().map_err(|_| corrupt_projection(&kind))?,
                title,
                archived,
            });
        }
        Ok(out)
    }

    /// Fields holding concurrent values, for one record or all.
    pub fn conflicts(&self, id: Option<RecordId>) -> Result<Vec<Conflict>> {
        let mut sql = String::from(
            "SELECT d.id, d.kind, c.field, c.vals FROM conflicts c JOIN documents d ON d.docno = c.docno",
        );
        if id.is_some() {
            sql.push_str(" WHERE d.id = ?1");
        }
        // By record id, not the local row number, so every replica prints the same list.
        sql.push_str(" ORDER BY d.id, c.field");
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let params: Vec<String> = id.iter().map(ToString::to_string).collect();
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, field, vals) = row?;
            let kind: Kind = kind.parse().map_err(|_| corrupt_projection(&kind))?;
            let title: String = self.conn.query_row(
                &format!("SELECT title FROM {} WHERE id = ?1", table(kind)),
                [&id],
                |r| r.get(0),
            )?;
            out.push(Conflict {
                id: id.parse().map_err(|_| corrupt_projection(&id))?,
                kind,
                title,
                field,
                values: serde_json::from_str(&vals).map_err(|_| corrupt_projection(&vals))?,
            });
        }
        Ok(out)
    }

    /// Every projection row of every kind as JSON, in id order: for comparing replicas.
    pub fn projection_dump(&self) -> Result<Vec<Json>> {
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let mut stmt = self.conn.prepare(&format!(
                "SELECT json, title, tags, updated_at, updated_by, has_conflicts FROM {} ORDER BY id",
                table(*kind)
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok(serde_json::json!({
                    "json": r.get::<_, String>(0)?,
                    "title": r.get::<_, String>(1)?,
                    "tags": r.get::<_, String>(2)?,
                    "updated_at": r.get::<_, Option<String>>(3)?,
                    "updated_by": r.get::<_, Option<String>>(4)?,
                    "has_conflicts": r.get::<_, bool>(5)?,
                }))
            })?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn corrupt_projection(what: &str) -> StoreError {
    StoreError::CorruptProjection(what.to_string())
}

impl Store {
    /// The display titles of records, for showing references by name. Unknown ids are left
    /// out.
    pub fn titles(&self, ids: &[RecordId]) -> Result<std::collections::HashMap<RecordId, String>> {
        let mut out = std::collections::HashMap::new();
        let mut kind_of = self
            .conn
            .prepare_cached("SELECT kind FROM documents WHERE id = ?1 AND kind IS NOT NULL")?;
        for id in ids {
            if out.contains_key(id) {
                continue;
            }
            let key = id.to_string();
            let kind: Option<String> = kind_of.query_row([&key], |r| r.get(0)).optional()?;
            let Some(kind) = kind.and_then(|k| k.parse::<Kind>().ok()) else {
                continue;
            };
            let title: Option<String> = self
                .conn
                .prepare_cached(&format!("SELECT title FROM {} WHERE id = ?1", table(kind)))?
                .query_row([&key], |r| r.get(0))
                .optional()?;
            if let Some(title) = title {
                out.insert(*id, title);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use crm_model::{Edit, Kind};

    use crate::Store;

    #[test]
    fn a_short_search_in_one_kind_scans_that_kind_with_the_same_results() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let mut ids = Vec::new();
        for name in ["深圳星光贸易有限公司", "星光 Trading", "Northwind"] {
            let mut e = Edit::new(Kind::Account);
            e.set("name", name).expect("valid");
            ids.push(store.create(&e).expect("create").id);
        }
        let mut e = Edit::new(Kind::Contact);
        e.set("last_name", "星光").expect("valid");
        store.create(&e).expect("create");
        store.set_archived(ids[1], true).expect("archive");

        let hits = |kind, archived| {
            let mut titles: Vec<String> = store
                .search("星光", kind, archived, 50)
                .expect("search")
                .into_iter()
                .map(|h| format!("{} {}", h.kind, h.title))
                .collect();
            titles.sort();
            titles
        };
        assert_eq!(
            hits(Some(Kind::Account), false),
            ["account 深圳星光贸易有限公司"]
        );
        assert_eq!(
            hits(Some(Kind::Account), true),
            ["account 星光 Trading", "account 深圳星光贸易有限公司"]
        );
        assert_eq!(hits(None, false).len(), 2, "{:?}", hits(None, false));
        assert!(hits(Some(Kind::Lead), true).is_empty());
        // A long term next to a short one still uses the index, across the kind filter.
        let mixed = store
            .search("深圳星光 星光", Some(Kind::Account), false, 50)
            .expect("search");
        assert_eq!(mixed.len(), 1);
    }
}
