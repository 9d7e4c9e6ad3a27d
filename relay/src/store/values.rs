//! Conversions between the relay's values and what both backends store: positions as
//! signed 64-bit integers, times as milliseconds, hashes and document ids as bytes.

use chrono::{DateTime, Utc};
use crm_sync::{DocId, Hash};

use super::StoreError;

pub(super) fn time(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("time {ms}")))
}

/// A stored position. Positions are written from u64 counters that start at 0 and never go
/// near i64::MAX; a negative one cannot be read back.
pub(super) fn seq(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

pub(super) fn sql_seq(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn sql_limit(value: usize) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

pub(super) fn hash(bytes: &[u8]) -> Result<Hash, StoreError> {
    Hash::try_from(bytes).map_err(|_| StoreError::Corrupt("a change hash is not 32 bytes".into()))
}

pub(super) fn doc_id(bytes: &[u8]) -> Result<DocId, StoreError> {
    DocId::try_from(bytes).map_err(|_| StoreError::Corrupt("a document id is not 16 bytes".into()))
}

/// A stored user id (a device's user's record id).
pub(super) fn user_id(text: Option<&str>) -> Result<Option<uuid::Uuid>, StoreError> {
    text.map(|t| {
        uuid::Uuid::try_parse(t).map_err(|_| StoreError::Corrupt(format!("user id {t:?}")))
    })
    .transpose()
}

/// A stored role.
pub(super) fn role(text: &str) -> Result<crm_model::Role, StoreError> {
    text.parse()
        .map_err(|_| StoreError::Corrupt(format!("role {text:?}")))
}

/// A record's scope as both backends store it: `OWNER;ASSIGNEE;TEAM,TEAM` (hyphenated
/// UUIDs, empty parts for what it lacks); `None` for a scope with nothing in it. The relay
/// filters every log entry by it, so it is stored with each change and each document.
pub fn encode_scope(scope: &crm_model::Scope) -> Option<String> {
    if scope.owner.is_none() && scope.assignee.is_none() && scope.teams.is_empty() {
        return None;
    }
    let id = |r: &Option<crm_model::RecordId>| r.map(|r| r.to_string()).unwrap_or_default();
    let teams: Vec<String> = scope.teams.iter().map(|t| t.to_string()).collect();
    Some(format!(
        "{};{};{}",
        id(&scope.owner),
        id(&scope.assignee),
        teams.join(",")
    ))
}

/// Reads a stored scope back; parts that do not parse are left out (a stored scope is
/// written by [`encode_scope`] only).
pub fn decode_scope(text: Option<&str>) -> crm_model::Scope {
    let Some(text) = text else {
        return crm_model::Scope::default();
    };
    let mut parts = text.splitn(3, ';');
    let id = |p: Option<&str>| p.and_then(|p| p.parse::<crm_model::RecordId>().ok());
    let owner = id(parts.next());
    let assignee = id(parts.next());
    let teams = parts
        .next()
        .map(|t| {
            t.split(',')
                .filter_map(|t| t.parse::<crm_model::RecordId>().ok())
                .collect()
        })
        .unwrap_or_default();
    crm_model::Scope {
        owner,
        assignee,
        teams,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_round_trip() {
        let full = crm_model::Scope {
            owner: Some(crm_model::RecordId::new()),
            assignee: Some(crm_model::RecordId::new()),
            teams: vec![crm_model::RecordId::new(), crm_model::RecordId::new()],
        };
        let text = encode_scope(&full);
        assert_eq!(decode_scope(text.as_deref()), full);
        let owner_only = crm_model::Scope {
            owner: full.owner,
            ..crm_model::Scope::default()
        };
        assert_eq!(
            decode_scope(encode_scope(&owner_only).as_deref()),
            owner_only
        );
        assert_eq!(encode_scope(&crm_model::Scope::default()), None);
        assert_eq!(decode_scope(None), crm_model::Scope::default());
    }
}
