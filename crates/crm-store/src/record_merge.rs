//! Merging duplicate records into one survivor, as ordinary changes that sync.
//!
//! Documents are never rewritten or deleted: the survivor gets one change that fills in
//! values and unions sets, tags and notes; every record that refers to a loser gets one change
//! re-pointing the reference; each loser gets one change setting `merged_into` and archiving
//! it. All of it is one transaction ([`Store::write_atomic`]), and each loser's history stays
//! readable.

use std::collections::{BTreeMap, BTreeSet};

use crm_model::{Edit, FieldType, FieldValue, MergeRule, Record, RecordId};
use serde::Serialize;

use crate::batch::BatchOp;
use crate::error::{Result, StoreError};
use crate::replica::Store;

/// What a merge did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    pub survivor: RecordId,
    pub merged: Vec<RecordId>,
    /// Fields of the survivor that were set from a loser.
    pub fields_taken: Vec<String>,
    /// Records (other than the survivor) whose references were re-pointed.
    pub repointed: Vec<RecordId>,
}

impl Store {
    /// Merges `losers` into `survivor` (all of one kind).
    ///
    /// - Fields the survivor lacks are filled from the first loser that has them; `take`
    ///   names fields whose value comes from a given loser even when the survivor has one.
    /// - Set fields and tags become the union; each loser's notes are appended.
    /// - Every reference to a loser (in any record, found through the references index) is
    ///   re-pointed at the survivor.
    /// - Each loser gets `merged_into = survivor` and is archived.
    pub fn merge_records(
        &mut self,
        survivor: RecordId,
        losers: &[RecordId],
        take: &[(String, RecordId)],
    ) -> Result<MergeReport> {
        let invalid = |reason: String| StoreError::CannotMerge { reason };
        if losers.is_empty() {
            return Err(invalid(
                "name at least one record to merge into the survivor".into(),
            ));
        }
        let loser_set: BTreeSet<RecordId> = losers.iter().copied().collect();
        if loser_set.len() != losers.len() || loser_set.contains(&survivor) {
            return Err(invalid(
                "the survivor and the records merged into it must all be different".into(),
            ));
        }
        let target = self.get(survivor)?;
        if let Some(FieldValue::Ref(into)) = target.get("merged_into") {
            return Err(invalid(format!(
                "{survivor} was itself merged into {into}; merge into that record instead"
            )));
        }
        let mut merged: Vec<Record> = Vec::new();
        for id in losers {
            let loser = self.get_kind(target.kind, *id)?;
            if let Some(FieldValue::Ref(into)) = loser.get("merged_into") {
                return Err(invalid(format!("{id} was already merged into {into}")));
            }
            merged.push(loser);
        }
        let mut taken: BTreeMap<&str, &Record> = BTreeMap::new();
        for (field, from) in take {
            let def = target.kind.schema().field(field).ok_or_else(|| {
                crm_model::ValidationError::UnknownField {
                    kind: target.kind,
                    field: field.clone(),
                    known: target
                        .kind
                        .schema()
                        .all_fields()
                        .map(|f| f.name)
                        .collect::<Vec<_>>()
                        .join(", "),
                }
            })?;
            let Some(loser) = merged.iter().find(|r| r.id == *from) else {
                return Err(invalid(format!(
                    "--take {field}={from}: {from} is not one of the records being merged"
                )));
            };
            if loser.get(def.name).is_none() {
                return Err(invalid(format!("{from} has no {field} to take")));
            }
            taken.insert(def.name, loser);
        }

        let mut report = MergeReport {
            survivor,
            merged: losers.to_vec(),
            fields_taken: Vec::new(),
            repointed: Vec::new(),
        };
        let survivor_edit = survivor_edit(&target, &merged, &taken, &loser_set, &mut report)?;
        let mut ops = Vec::new();
        if !survivor_edit.is_empty() {
            ops.push(BatchOp::Edit {
                id: survivor,
                edit: survivor_edit,
            });
        }
        for id in self.referring_ids(&loser_set)? {
            if id == survivor || loser_set.contains(&id) {
                continue;
            }
            let record = self.get(id)?;
            let edit = repoint(&record, &loser_set, survivor)?;
            if !edit.is_empty() {
                report.repointed.push(id);
                ops.push(BatchOp::Edit { id, edit });
            }
        }
        for loser in &merged {
            let mut edit = Edit::new(loser.kind);
            edit.set_value("merged_into", FieldValue::Ref(survivor))?;
            edit.archive(true);
            ops.push(BatchOp::Edit { id: loser.id, edit });
        }
        self.write_atomic(&ops)?;
        Ok(report)
    }

    /// Records holding a reference to any of `targets`, from the references index.
    fn referring_ids(&self, targets: &BTreeSet<RecordId>) -> Result<Vec<RecordId>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT d.id FROM record_refs r JOIN documents d ON d.docno = r.docno \
             WHERE r.target = ?1",
        )?;
        let mut out = BTreeSet::new();
        for target in targets {
            let rows = stmt.query_map([target.to_string()], |r| r.get::<_, String>(0))?;
            for id in rows {
                let id = id?;
                out.insert(
                    id.parse()
                        .map_err(|_| StoreError::CorruptProjection(id.clone()))?,
                );
            }
        }
        Ok(out.into_iter().collect())
    }
}

/// The survivor's change: taken and missing values, unions of sets and tags, loser notes.
fn survivor_edit(
    target: &Record,
    merged: &[Record],
    taken: &BTreeMap<&str, &Record>,
    losers: &BTreeSet<RecordId>,
    report: &mut MergeReport,
) -> Result<Edit> {
    let mut edit = Edit::new(target.kind);
    let survivor = target.id;
    let is_merge_party = |id: &RecordId| *id == survivor || losers.contains(id);
    for field in target.kind.schema().all_fields() {
        if field.name == "merged_into" {
            continue;
        }
        let mine = target.get(field.name);
        if let FieldType::Set(_) = field.ty {
            let mut union: BTreeSet<String> = match mine {
                Some(FieldValue::Set(items)) => items.clone(),
                _ => BTreeSet::new(),
            };
            let before = union.clone();
            for loser in merged {
                if let Some(FieldValue::Set(items)) = loser.get(field.name) {
                    union.extend(
                        items
                            .iter()
                            .filter(|s| {
                                s.parse::<RecordId>()
                                    .map_or(true, |id| !is_merge_party(&id))
                            })
                            .cloned(),
                    );
                }
            }
            // The survivor's own references to a loser would point at itself after the merge.
            union.retain(|s| {
                s.parse::<RecordId>()
                    .map_or(true, |id| !losers.contains(&id))
            });
            if union != before {
                edit.set_value(field.name, FieldValue::Set(union))?;
                report.fields_taken.push(field.name.to_string());
            }
            continue;
        }
        let points_at_party =
            |v: &FieldValue| matches!(v, FieldValue::Ref(id) if is_merge_party(id));
        let chosen = match taken.get(field.name) {
            Some(loser) => loser.get(field.name),
            None if mine.is_none() => merged
                .iter()
                .filter_map(|l| l.get(field.name))
                .find(|v| !points_at_party(v)),
            None => None,
        };
        match chosen {
            Some(value) if Some(value) != mine && !points_at_party(value) => {
                if field.rule == MergeRule::Immutable && mine.is_some() {
                    continue;
                }
                edit.set_value(field.name, value.clone())?;
                report.fields_taken.push(field.name.to_string());
            }
            _ => {
                // A survivor that referred to a loser would now refer to itself.
                if let Some(FieldValue::Ref(id)) = mine
                    && losers.contains(id)
                    && !field.required
                {
                    edit.unset(field.name)?;
                }
            }
        }
    }
    let mut custom_done = BTreeSet::new();
    for loser in merged {
        for (key, value) in &loser.custom {
            if !target.custom.contains_key(key) && custom_done.insert(key.clone()) {
                edit.set(&format!("custom.{key}"), value)?;
            }
        }
        for tag in loser.tags.difference(&target.tags) {
            edit.tag(tag)?;
        }
        if !loser.notes.trim().is_empty() {
            edit.append_notes(&format!(
                "[merged from {} ({})]\n{}",
                loser.title(),
                loser.id,
                loser.notes.trim_end()
            ))?;
        }
    }
    Ok(edit)
}

/// The change re-pointing every reference of `record` from a loser to the survivor.
fn repoint(record: &Record, losers: &BTreeSet<RecordId>, survivor: RecordId) -> Result<Edit> {
    let mut edit = Edit::new(record.kind);
    for (name, value) in &record.fields {
        let replaced = match value {
            FieldValue::Ref(id) if losers.contains(id) => Some(FieldValue::Ref(survivor)),
            FieldValue::Set(items)
                if items
                    .iter()
                    .any(|s| s.parse().is_ok_and(|id: RecordId| losers.contains(&id))) =>
            {
                Some(FieldValue::Set(
                    items
                        .iter()
                        .map(|s| match s.parse::<RecordId>() {
                            Ok(id) if losers.contains(&id) => survivor.to_string(),
                            _ => s.clone(),
                        })
                        .collect(),
                ))
            }
            FieldValue::LineItems(items)
                if items
                    .iter()
                    .any(|i| i.product.is_some_and(|p| losers.contains(&p))) =>
            {
                Some(FieldValue::LineItems(
                    items
                        .iter()
                        .map(|i| {
                            let mut i = i.clone();
                            if i.product.is_some_and(|p| losers.contains(&p)) {
                                i.product = Some(survivor);
                            }
                            i
                        })
                        .collect(),
                ))
            }
            _ => None,
        };
        if let Some(v) = replaced {
            edit.set_value(name, v)?;
        }
    }
    Ok(edit)
}
