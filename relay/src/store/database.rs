//! Which database a relay runs on: `sqlite:DIR` or `postgres://…`.

use std::path::PathBuf;
use std::sync::Arc;

use crm_sync::RelayId;

use super::{PostgresStore, RelayStore, SqliteStore, StoreError};

/// A relay database, as given to `--database` (or `CRM_RELAY_DATABASE`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// The directory holding `relay.db`.
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user@host:port/db`).
    Postgres(String),
}

/// Text that names no database this relay can use.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a relay database: expected sqlite:DIR or postgres://USER@HOST:PORT/DB")]
pub struct DatabaseParseError(String);

impl std::str::FromStr for Database {
    type Err = DatabaseParseError;

    fn from_str(s: &str) -> Result<Database, DatabaseParseError> {
        let s = s.trim();
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            return Ok(Database::Postgres(s.to_string()));
        }
        match s.strip_prefix("sqlite:") {
            Some(dir) if !dir.is_empty() => {
                // `sqlite://DIR` is read as the path `DIR` too.
                let dir = dir.strip_prefix("//").unwrap_or(dir);
                Ok(Database::Sqlite(PathBuf::from(dir)))
            }
            _ => Err(DatabaseParseError(s.chars().take(200).collect())),
        }
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(dir) => write!(f, "sqlite:{}", dir.display()),
            Database::Postgres(url) => f.write_str(&super::postgres::redacted(url)),
        }
    }
}

impl Database {
    /// Opens the store, creating it (a new relay identity, the schema) if `create` and it
    /// does not exist yet; an existing store of an older schema is migrated.
    pub fn open(&self, create: bool) -> Result<Arc<dyn RelayStore>, StoreError> {
        Ok(match self {
            Database::Sqlite(dir) if create => Arc::new(SqliteStore::open_or_create(dir)?),
            Database::Sqlite(dir) => Arc::new(SqliteStore::open(dir)?),
            Database::Postgres(url) => Arc::new(PostgresStore::connect(url, create)?),
        })
    }

    /// Creates a new, empty store with the given identity: a migration's target, which keeps
    /// its source's. [`StoreError::NotEmpty`] when a relay is there already.
    pub fn create_with_identity(
        &self,
        relay_id: RelayId,
    ) -> Result<Arc<dyn RelayStore>, StoreError> {
        Ok(match self {
            Database::Sqlite(dir) => Arc::new(SqliteStore::create_with_identity(dir, relay_id)?),
            Database::Postgres(url) => {
                Arc::new(PostgresStore::create_with_identity(url, relay_id)?)
            }
        })
    }
}
