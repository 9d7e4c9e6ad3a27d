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
