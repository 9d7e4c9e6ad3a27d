//! Record identifiers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The id of a record, which is also the id of its Automerge document: a UUIDv7, so ids sort
/// by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordId(Uuid);

impl RecordId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }

    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }
}

impl Default for RecordId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

/// A string that is not a record id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed record id {0:?}: expected a UUID like 0192f0c4-1d2e-7a3b-9c4d-5e6f7a8b9c0d")]
pub struct ParseIdError(pub String);

impl FromStr for RecordId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(s.trim())
            .map(Self)
            .map_err(|_| ParseIdError(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_display() {
        let id = RecordId::new();
        assert_eq!(id.to_string().parse::<RecordId>(), Ok(id));
    }

    #[test]
    fn ids_are_time_ordered() {
        let a = RecordId::new();
        let b = RecordId::new();
        assert!(a < b);
    }

    #[test]
    fn rejects_garbage() {
        assert!("not-an-id".parse::<RecordId>().is_err());
        assert!("".parse::<RecordId>().is_err());
    }
}
