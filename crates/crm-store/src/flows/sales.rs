//! Sales and activity workflows: leads, opportunities, quotes to orders, reminders.
//!
//! - [`leads`]: capture with a duplicate check ([`Store::capture_lead`],
//!   [`Store::lead_duplicates`]), assignment by rules ([`Store::assign_leads`]), qualification
//!   and conversion into an account, a contact and an opportunity ([`Store::convert_lead`]).
//! - [`deals`]: moving an opportunity through its stages and closing it won or lost.
//! - [`orders`]: a quote priced from the product list, its status moves, the contract made
//!   from an accepted quote, its approval, and the order made from an active contract.
//! - [`activities`]: logging calls, meetings, emails, tasks and notes about records, completing
//!   them, and what the device computes on its own: reminders and coming birthdays.
//!
//! Every step is built from [`Store::create`] and [`Store::edit`], so it is an ordinary,
//! attributed change that works offline and syncs. Steps the records' state does not allow
//! fail with [`StoreError::Rejected`] before anything is written; bad values with
//! [`StoreError::Invalid`].

pub mod activities;
pub mod deals;
pub mod leads;
pub mod orders;

use crm_model::{Edit, FieldValue, Kind, Record, RecordId};

use crate::{Result, Store, StoreError};

/// An edit of `kind` with `(field, value)` pairs parsed like user input.
pub(crate) fn edit_with(kind: Kind, fields: &[(&str, &str)]) -> Result<Edit> {
    let mut e = Edit::new(kind);
    for (field, value) in fields {
        e.set(field, value)?;
    }
    Ok(e)
}

/// A text-like field's value.
pub(crate) fn text<'a>(record: &'a Record, field: &str) -> Option<&'a str> {
    match record.get(field) {
        Some(FieldValue::Text(s)) if !s.trim().is_empty() => Some(s.as_str()),
        _ => None,
    }
}

/// A reference field's target.
pub(crate) fn reference(record: &Record, field: &str) -> Option<RecordId> {
    match record.get(field) {
        Some(FieldValue::Ref(id)) => Some(*id),
        _ => None,
    }
}

impl Store {
    /// The replica user's own User record, which approvals and assignments name.
    pub(crate) fn me(&self) -> Result<RecordId> {
        self.identity().user_id.ok_or_else(|| {
            StoreError::Rejected(
                "this replica has no user record of its own; it was created by an older version"
                    .into(),
            )
        })
    }

    /// The id of the first live record of `kind` whose custom field `marker` is `value`: how
    /// a resumed multi-record step finds what an interrupted run already made.
    pub(crate) fn find_marked(
        &self,
        kind: Kind,
        marker: &str,
        value: &str,
    ) -> Result<Option<RecordId>> {
        let sql = format!(
            "SELECT id FROM {} WHERE archived = 0 AND json_extract(json, ?1) = ?2 \
             ORDER BY created_at, id LIMIT 1",
            crate::schema::table(kind)
        );
        let id: Option<String> = rusqlite::OptionalExtension::optional(
            self.conn
                .prepare_cached(&sql)?
                .query_row([format!("$.custom.{marker}"), value.to_string()], |r| {
                    r.get(0)
                }),
        )?;
        id.map(|s| {
            s.parse()
                .map_err(|_| StoreError::CorruptProjection(s.clone()))
        })
        .transpose()
    }
}

#[cfg(test)]
mod tests;
