//! Turning what a user typed into an [`Edit`], exactly as the CLI's `--set FIELD=VALUE`
//! does, plus one convenience the CLI lacks: a reference may be typed as the record's name.

use crm_model::{Edit, FieldDef, FieldType, Kind, RecordId, SetOf};
use crm_store::Store;

use crate::error::WebError;

/// How many same-named records a name lookup considers.
const NAME_LOOKUP: usize = 50;

/// A reference typed as an id or as the exact name of a record of an accepted kind.
fn resolve_one(
    store: &Store,
    field: &FieldDef,
    kinds: &[Kind],
    text: &str,
) -> Result<String, WebError> {
    let text = text.trim();
    if text.parse::<RecordId>().is_ok() {
        return Ok(text.to_string());
    }
    let wanted = text.to_lowercase();
    let mut found = Vec::new();
    let search_kinds: Vec<Option<Kind>> = if kinds.is_empty() {
        vec![None]
    } else {
        kinds.iter().copied().map(Some).collect()
    };
    for kind in search_kinds {
        for hit in store.search(text, kind, false, NAME_LOOKUP)? {
            if hit.title.trim().to_lowercase() == wanted && !found.contains(&hit.id) {
                found.push(hit.id);
            }
        }
    }
    let what = if kinds.is_empty() {
        "record".to_string()
    } else {
        kinds
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    match found.as_slice() {
        [id] => Ok(id.to_string()),
        [] => Err(WebError::invalid(
            format!(
                "{}: no {what} named “{text}”; type its exact name or id",
                field.name
            ),
            Some(field.name),
        )),
        _ => Err(WebError::invalid(
            format!(
                "{}: {} records of kind {what} are named “{text}”; use the id",
                field.name,
                found.len()
            ),
            Some(field.name),
        )),
    }
}

/// The text to hand to `Edit::set`: references typed as names become ids.
pub(crate) fn field_text(store: &Store, field: &FieldDef, text: &str) -> Result<String, WebError> {
    match field.ty {
        FieldType::Ref(kinds) => resolve_one(store, field, kinds, text),
        FieldType::Set(SetOf::Ref(kinds)) => {
            let ids = text
                .split([',', '，'])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(|t| resolve_one(store, field, kinds, t))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(ids.join(","))
        }
        _ => Ok(text.to_string()),
    }
}

/// Adds "set FIELD to TEXT" (or unset it, for empty text) to `edit`.
pub(crate) fn set_field(
    store: &Store,
    edit: &mut Edit,
    name: &str,
    text: &str,
) -> Result<(), WebError> {
    let kind = edit.kind();
    let field = kind
        .schema()
        .field(name)
        .ok_or_else(|| WebError::invalid(format!("{kind} has no field {name:?}"), Some(name)))?;
    if text.trim().is_empty() {
        edit.unset(field.name)?;
        return Ok(());
    }
    let text = field_text(store, field, text)?;
    edit.set(field.name, &text)?;
    Ok(())
}
