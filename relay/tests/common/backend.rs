//! Every storage backend under test: a SQLite file in a temporary directory, or a fresh
//! PostgreSQL database made for one test and dropped after it (`crm_tests::TestDatabase`:
//! it fails, never skips, when PostgreSQL is unreachable).

use std::sync::Arc;

use crm_relay::Relay;
use crm_relay::store::{Database, RelayStore};

pub(crate) use crm_tests::{Backend, TestDatabase};

/// A store of one backend, and the place its data lives (removed on drop).
pub(crate) struct TestStore {
    pub(crate) backend: Backend,
    pub(crate) database: Database,
    dir: Option<tempfile::TempDir>,
    pg: Option<TestDatabase>,
}

impl TestStore {
    pub(crate) fn new(backend: Backend) -> TestStore {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                TestStore {
                    backend,
                    database: Database::Sqlite(dir.path().to_path_buf()),
                    dir: Some(dir),
                    pg: None,
                }
            }
            Backend::Postgres => {
                let db = TestDatabase::create();
                TestStore {
                    backend,
                    database: Database::Postgres(db.url.clone()),
                    dir: None,
                    pg: Some(db),
                }
            }
        }
    }

    /// A new store over the same data, as another process (or a restarted one) opens it.
    pub(crate) fn open(&self) -> Arc<dyn RelayStore> {
        self.database.open(true).expect("open the store")
    }

    /// [`TestStore::open`], with the relay's policy over it.
    pub(crate) fn relay(&self) -> Relay {
        Relay::new(self.open())
    }

    /// The data directory of a SQLite store.
    pub(crate) fn dir(&self) -> &std::path::Path {
        self.dir.as_ref().expect("a SQLite store").path()
    }

    /// A plain connection to a PostgreSQL store's database.
    pub(crate) fn pg(&self) -> postgres::Client {
        let url = &self.pg.as_ref().expect("a PostgreSQL store").url;
        postgres::Client::connect(url, postgres::NoTls).expect("connect")
    }

    /// Whether any stored value holds `bytes` (as they are, or as hex in a dump).
    pub(crate) fn holds(&self, bytes: &[u8]) -> bool {
        match self.backend {
            Backend::Sqlite => {
                let dir = self.dir();
                let db = std::fs::read(dir.join(crm_relay::store::FILE_NAME)).expect("db");
                let wal = std::fs::read(dir.join("relay.db-wal")).unwrap_or_default();
                contains(&db, bytes) || contains(&wal, bytes)
            }
            Backend::Postgres => {
                let mut client = self.pg();
                let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
                let mut dump = String::new();
                for table in [
                    "relay_meta",
                    "workspaces",
                    "devices",
                    "documents",
                    "changes",
                ] {
                    let row = client
                        .query_one(
                            &format!(
                                "SELECT coalesce(string_agg(t::text, ' '), '') FROM {table} t"
                            ),
                            &[],
                        )
                        .expect("dump");
                    dump.push_str(row.get::<_, &str>(0));
                }
                contains(dump.as_bytes(), bytes) || dump.contains(&hex)
            }
        }
    }

    /// A document's scope as the directory keeps it: owner and teams.
    pub(crate) fn scope(&self, doc: [u8; 16]) -> (Option<String>, Option<String>) {
        match self.backend {
            Backend::Sqlite => {
                let conn = rusqlite::Connection::open(self.dir().join("relay.db")).expect("open");
                conn.query_row(
                    "SELECT owner, teams FROM documents WHERE doc_id = ?1",
                    [doc.as_slice()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("the document")
            }
            Backend::Postgres => {
                let row = self
                    .pg()
                    .query_one(
                        "SELECT owner, teams FROM documents WHERE doc_id = $1",
                        &[&uuid::Uuid::from_bytes(doc)],
                    )
                    .expect("the document");
                (row.get(0), row.get(1))
            }
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
