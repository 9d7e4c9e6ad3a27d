//! Newtype ids of the relay's own entities, and device roles.

use std::fmt;
use std::str::FromStr;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use uuid::Uuid;

/// Text that is not an id or a role.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} {value:?} is not valid: expected {expected}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
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

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = ParseError;

            fn from_str(s: &str) -> Result<Self, ParseError> {
                Uuid::try_parse(s.trim()).map(Self).map_err(|_| ParseError {
                    what: $what,
                    value: s.to_string(),
                    expected: "a UUID",
                })
            }
        }

        // Stored as the 16 bytes of the UUID: compact, and the same bytes as on the wire.
        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.0.as_bytes().as_slice()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let bytes = value.as_blob()?;
                let bytes: [u8; 16] = bytes
                    .try_into()
                    .map_err(|_| FromSqlError::InvalidBlobSize { expected_size: 16, blob_size: bytes.len() })?;
                Ok(Self(Uuid::from_bytes(bytes)))
            }
        }
    };
}

uuid_id!(
    /// A workspace: one team's isolated change log.
    WorkspaceId,
    "workspace id"
);
uuid_id!(
    /// A device of a workspace, holder of one token.
    DeviceId,
    "device id"
);

/// A user's role: crm-model's, so the relay and the clients decide alike.
pub use crm_model::Role;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_parse_their_display() {
        let id = WorkspaceId::new();
        assert_eq!(id.to_string().parse::<WorkspaceId>(), Ok(id));
        assert!("acme".parse::<WorkspaceId>().is_err());
    }
}
