//! The import itself: each row becomes a plan (create, update, skip as a duplicate, or
//! reject with the reasons), and the plans are written in batches through
//! [`crm_store::Store::write_batch`], so a bad row never stops the good ones and no row is
//! ever half-written.
//!
//! Duplicates are found by the normalised keys of [`crm_store::record_keys`] (emails, phones,
//! domain, name), against the live records of the replica (read once from the projection)
//! and against the earlier rows of the file. A row matching a record of the replica is
//! skipped, or with `update_existing` merged into it: imported values replace the record's,
//! sets (emails, phones) and tags are united, notes are appended. A row matching an earlier
//! row of the file is always skipped as a duplicate of that row.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crm_model::{Edit, FieldType, FieldValue, Kind, Op, Record, RecordId};
use crm_store::{BatchOp, DedupKey, KeySeen, Store, record_keys};
use serde::Serialize;

use crate::error::Result;
use crate::mapping::{Mapping, Target};
use crate::source::{Row, Source};

/// Rows written per transaction by default: large enough that commits cost little, small
/// enough that a transaction's pages stay few.
pub const DEFAULT_BATCH_ROWS: usize = 500;

/// How to import.
#[derive(Clone, Debug)]
pub struct ImportOptions {
    /// Plan only: nothing is written.
    pub dry_run: bool,
    /// Merge rows that match a stored record into it instead of skipping them.
    pub update_existing: bool,
    pub batch_rows: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            update_existing: false,
            batch_rows: DEFAULT_BATCH_ROWS,
        }
    }
}

/// What happens (or, in a dry run, would happen) to a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Create,
    Update,
    /// Matched a stored record with `update_existing`, but changed nothing in it.
    Unchanged,
    Duplicate,
    Error,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Unchanged => "unchanged",
            Action::Duplicate => "duplicate",
            Action::Error => "error",
        }
    }
}

/// One problem of one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowError {
    pub row: usize,
    /// The column's header, empty when the problem is not one column's.
    pub column: String,
    pub value: String,
    pub reason: String,
}

/// The plan or result of one row.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RowOutcome {
    pub row: usize,
    pub action: Action,
    /// The record created or updated (in a dry run: the record that would be updated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<RecordId>,
    pub title: String,
    /// For a duplicate: what it matched and by which key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<RowError>,
}

/// Counts of an import.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub kind: String,
    pub dry_run: bool,
    /// How the file was read (encoding or sheet).
    pub source: String,
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub duplicates: usize,
    pub errors: usize,
    pub skipped_columns: Vec<String>,
}

impl Summary {
    fn count(&mut self, outcome: &RowOutcome) {
        self.rows += 1;
        match outcome.action {
            Action::Create => self.created += 1,
            Action::Update => self.updated += 1,
            Action::Unchanged => self.unchanged += 1,
            Action::Duplicate => self.duplicates += 1,
            Action::Error => self.errors += 1,
        }
    }
}

/// The duplicate keys seen so far: the replica's records and the rows already written (or,
/// in a dry run, planned) are in the store's key index ([`Store::key_index_start`], on disk);
/// the rows of the batch being planned are here until it is flushed. Memory stays the same
/// whatever the size of the file.
struct KeyIndex {
    batch: HashMap<DedupKey, usize>,
}

impl KeyIndex {
    /// Where the row's keys were seen first: a record of the replica if any key matches one,
    /// else the row the first key seen before was in. Returns the matching key too.
    fn find(&self, store: &Store, keys: &[DedupKey]) -> Result<Option<(DedupKey, KeySeen)>> {
        let mut row: Option<(DedupKey, KeySeen)> = None;
        for key in keys {
            let seen = match store.key_index_get(key)? {
                Some(seen) => Some(seen),
                None => self.batch.get(key).map(|&n| KeySeen::Row(n as u64)),
            };
            match seen {
                Some(record @ KeySeen::Record { .. }) => return Ok(Some((key.clone(), record))),
                Some(first) if row.is_none() => row = Some((key.clone(), first)),
                _ => {}
            }
        }
        Ok(row)
    }

    /// Hands the batch's keys to the store's index.
    fn flush(&mut self, store: &mut Store) -> Result<()> {
        let keys: Vec<(DedupKey, u64)> = self
            .batch
            .drain()
            .map(|(key, row)| (key, row as u64))
            .collect();
        store.key_index_add_rows(&keys)?;
        Ok(())
    }
}

/// A row waiting for its batch to be written.
struct Pending {
    outcome: RowOutcome,
    op: Option<BatchOp>,
}

/// Imports every row of `source` into `store` as records of `mapping.kind`. `on_row` sees
/// every row's outcome, in file order, once it is final (written, or planned in a dry run).
pub fn import(
    store: &mut Store,
    source: &mut Source,
    mapping: &Mapping,
    options: &ImportOptions,
    mut on_row: impl FnMut(&RowOutcome, &Source),
) -> Result<Summary> {
    let kind = mapping.kind;
    let mut summary = Summary {
        kind: kind.as_str().to_string(),
        dry_run: options.dry_run,
        source: source.description().to_string(),
        skipped_columns: mapping.skipped().into_iter().map(String::from).collect(),
        ..Summary::default()
    };
    store.key_index_start(kind)?;
    let mut index = KeyIndex {
        batch: HashMap::new(),
    };
    let batch_rows = options.batch_rows.max(1);
    let mut pending: Vec<Pending> = Vec::with_capacity(batch_rows);
    let mut updating: HashSet<RecordId> = HashSet::new();
    while let Some(row) = source.next_row() {
        let planned = plan_row(
            store,
            kind,
            mapping,
            row,
            &mut index,
            options.update_existing,
        )?;
        let mut p = Pending {
            outcome: planned.outcome,
            op: None,
        };
        if !options.dry_run {
            match planned.edit {
                Some(edit) if p.outcome.action == Action::Create => {
                    p.op = Some(BatchOp::Create(edit));
                }
                Some(edit) => {
                    if let Some(id) = p.outcome.id {
                        // Two updates of one record in a batch: the second must see the first.
                        if !updating.insert(id) {
                            index.flush(store)?;
                            flush(store, &mut pending, &mut summary, &mut on_row, source)?;
                            updating.clear();
                            updating.insert(id);
                        }
                        let current = store.get(id)?;
                        p.op = Some(BatchOp::Edit {
                            id,
                            edit: merge_into(&current, &edit)?,
                        });
                    }
                }
                None => {}
            }
        }
        pending.push(p);
        if pending.len() >= batch_rows {
            index.flush(store)?;
            flush(store, &mut pending, &mut summary, &mut on_row, source)?;
            updating.clear();
        }
    }
    flush(store, &mut pending, &mut summary, &mut on_row, source)?;
    store.key_index_end()?;
    Ok(summary)
}

/// Writes the pending rows' operations in one batch and reports every pending row.
fn flush(
    store: &mut Store,
    pending: &mut Vec<Pending>,
    summary: &mut Summary,
    on_row: &mut impl FnMut(&RowOutcome, &Source),
    source: &Source,
) -> Result<()> {
    let ops: Vec<BatchOp> = pending.iter().filter_map(|p| p.op.clone()).collect();
    let mut results = store.write_batch(&ops)?.into_iter();
    for mut p in pending.drain(..) {
        if p.op.is_some() {
            match results.next() {
                Some(Ok(written)) => {
                    p.outcome.id = Some(written.id);
                    if p.outcome.action == Action::Update && !written.changed {
                        p.outcome.action = Action::Unchanged;
                    }
                }
                Some(Err(e)) => {
                    p.outcome.action = Action::Error;
                    p.outcome.errors.push(RowError {
                        row: p.outcome.row,
                        column: String::new(),
                        value: String::new(),
                        reason: e.to_string(),
                    });
                }
                None => {}
            }
        }
        summary.count(&p.outcome);
        on_row(&p.outcome, source);
    }
    Ok(())
}

struct Planned {
    outcome: RowOutcome,
    edit: Option<Edit>,
}

/// Validates a row, finds its duplicates and decides what to do with it.
fn plan_row(
    store: &Store,
    kind: Kind,
    mapping: &Mapping,
    row: Row,
    index: &mut KeyIndex,
    update_existing: bool,
) -> Result<Planned> {
    let n = row.number;
    let error = |errors: Vec<RowError>, title: String| {
        Ok(Planned {
            outcome: RowOutcome {
                row: n,
                action: Action::Error,
                id: None,
                title,
                detail: None,
                errors,
            },
            edit: None,
        })
    };
    let cells = match row.cells {
        Ok(cells) => cells,
        Err(reason) => {
            return error(
                vec![RowError {
                    row: n,
                    column: String::new(),
                    value: String::new(),
                    reason,
                }],
                String::new(),
            );
        }
    };
    let (edit, record, errors) = build(kind, mapping, n, &cells);
    let title = if record.title() == record.id.to_string() {
        String::new()
    } else {
        record.title()
    };
    if !errors.is_empty() {
        return error(errors, title);
    }
    let keys = record_keys(kind, &title, &|name| match record.fields.get(name) {
        Some(FieldValue::Set(items)) => items.iter().cloned().collect(),
        Some(FieldValue::Text(s)) => vec![s.clone()],
        Some(other) => vec![other.display()],
        None => Vec::new(),
    });
    let found = index.find(store, &keys)?;
    let outcome = |action, id, detail| RowOutcome {
        row: n,
        action,
        id,
        title: title.clone(),
        detail,
        errors: Vec::new(),
    };
    Ok(match found {
        Some((key, KeySeen::Record { id, title: other })) => {
            let detail = Some(format!("{key} matches {other} ({id})"));
            if update_existing {
                Planned {
                    outcome: outcome(Action::Update, Some(id), detail),
                    edit: Some(edit),
                }
            } else {
                Planned {
                    outcome: outcome(Action::Duplicate, Some(id), detail),
                    edit: None,
                }
            }
        }
        Some((key, KeySeen::Row(first))) => Planned {
            outcome: outcome(
                Action::Duplicate,
                None,
                Some(format!("{key} repeats row {first} of the file")),
            ),
            edit: None,
        },
        None => {
            for key in keys {
                index.batch.entry(key).or_insert(n);
            }
            Planned {
                outcome: outcome(Action::Create, None, None),
                edit: Some(edit),
            }
        }
    })
}

/// The row's edit, the record it describes (for its title and keys) and its problems.
fn build(
    kind: Kind,
    mapping: &Mapping,
    n: usize,
    cells: &[String],
) -> (Edit, Record, Vec<RowError>) {
    let mut errors = Vec::new();
    let mut edit = Edit::new(kind);
    // Cells per target, with their columns: set fields may be filled by several columns.
    let mut by_field: BTreeMap<&'static str, Vec<(&str, &str)>> = BTreeMap::new();
    let mut notes: Vec<&str> = Vec::new();
    for ((header, target), cell) in mapping.columns.iter().zip(cells) {
        let value = cell.trim();
        if value.is_empty() {
            continue;
        }
        let mut fail = |reason: String| {
            errors.push(RowError {
                row: n,
                column: header.clone(),
                value: value.to_string(),
                reason,
            });
        };
        match target {
            Target::Skip => {}
            Target::Field(f) => by_field.entry(f.name).or_default().push((header, value)),
            Target::Custom(name) => {
                if let Err(e) = edit.set(&format!("custom.{name}"), value) {
                    fail(e.to_string());
                }
            }
            Target::Tags => {
                for tag in value.split([',', '，']).filter(|t| !t.trim().is_empty()) {
                    if let Err(e) = edit.tag(tag) {
                        fail(e.to_string());
                    }
                }
            }
            Target::Notes => notes.push(cell),
        }
    }
    if !notes.is_empty()
        && let Err(e) = edit.replace_notes(&notes.join("\n"))
    {
        errors.push(RowError {
            row: n,
            column: "notes".into(),
            value: String::new(),
            reason: e.to_string(),
        });
    }
    for (name, cells) in &by_field {
        let Some(field) = kind.schema().field(name) else {
            continue;
        };
        let text = if matches!(field.ty, FieldType::Set(_)) {
            cells.iter().map(|(_, v)| *v).collect::<Vec<_>>().join(",")
        } else {
            cells[0].1.to_string()
        };
        if let Err(e) = edit.set(name, &text) {
            let (column, value) = cells[0];
            errors.push(RowError {
                row: n,
                column: column.to_string(),
                value: value.to_string(),
                reason: e.to_string(),
            });
        }
    }
    let mut fields = BTreeMap::new();
    let mut tags = BTreeSet::new();
    for op in edit.ops() {
        match op {
            Op::Set(f, v) => {
                fields.insert(f.name, v.clone());
            }
            Op::Tag(t) => {
                tags.insert(t.clone());
            }
            _ => {}
        }
    }
    for field in kind.schema().all_fields() {
        if field.required && field.default.is_none() && !fields.contains_key(field.name) {
            let column = mapping
                .columns
                .iter()
                .find(|(_, t)| matches!(t, Target::Field(f) if f.name == field.name))
                .map(|(h, _)| h.clone())
                .unwrap_or_default();
            errors.push(RowError {
                row: n,
                column,
                value: String::new(),
                reason: format!(
                    "{} is required for a {kind} but the cell is empty",
                    field.name
                ),
            });
        }
    }
    let record = Record {
        id: RecordId::new(),
        kind,
        created_at: None,
        created_by: String::new(),
        fields,
        custom: BTreeMap::new(),
        tags,
        notes: String::new(),
        archived: false,
        history: BTreeMap::new(),
        conflicts: BTreeMap::new(),
    };
    (edit, record, errors)
}

/// The edit that merges an imported row into a stored record: imported values replace the
/// record's, sets are united with the record's, tags are added and notes appended.
fn merge_into(current: &Record, imported: &Edit) -> Result<Edit> {
    let mut edit = Edit::new(current.kind);
    for op in imported.ops() {
        match op {
            Op::Set(f, FieldValue::Set(items)) => {
                let mut union = match current.get(f.name) {
                    Some(FieldValue::Set(have)) => have.clone(),
                    _ => BTreeSet::new(),
                };
                union.extend(items.iter().cloned());
                edit.set_value(f.name, FieldValue::Set(union))
                    .map_err(crm_store::StoreError::from)?;
            }
            Op::Set(f, v) => {
                edit.set_value(f.name, v.clone())
                    .map_err(crm_store::StoreError::from)?;
            }
            Op::SetCustom(k, v) => {
                edit.set(&format!("custom.{k}"), v)
                    .map_err(crm_store::StoreError::from)?;
            }
            Op::Tag(t) => {
                edit.tag(t).map_err(crm_store::StoreError::from)?;
            }
            Op::ReplaceNotes(text) if !current.notes.contains(text.as_str()) => {
                edit.append_notes(text)
                    .map_err(crm_store::StoreError::from)?;
            }
            _ => {}
        }
    }
    Ok(edit)
}
