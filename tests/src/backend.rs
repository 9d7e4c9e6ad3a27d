//! The relay's storage backends under test. PostgreSQL tests never skip: without a reachable
//! server they fail, saying how to start one. `CRM_TEST_POSTGRES` names the server's
//! maintenance database (default `postgres://postgres@127.0.0.1:5432/postgres`).

/// Where the tests' PostgreSQL is, unless `CRM_TEST_POSTGRES` says otherwise.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A relay storage backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A PostgreSQL database made for one test, dropped with it (with every connection to it).
#[derive(Debug)]
pub struct TestDatabase {
    pub url: String,
    name: String,
    admin: String,
}

impl TestDatabase {
    pub fn create() -> TestDatabase {
        let admin = std::env::var("CRM_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_POSTGRES.into());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "PostgreSQL is not reachable at {admin} ({e}). The PostgreSQL tests need a \
                 server: start it with `pg_ctlcluster --skip-systemctl-redirect \
                 $(ls /etc/postgresql) main start` (user postgres, trust auth on \
                 127.0.0.1:5432), or set CRM_TEST_POSTGRES to another server's maintenance \
                 database"
            )
        });
        let name = format!("crm_test_{}", uuid_like());
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create a test database");
        let base = admin
            .rsplit_once('/')
            .map_or(admin.as_str(), |(base, _)| base);
        TestDatabase {
            url: format!("{base}/{name}"),
            name,
            admin,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // The synchronous client runs a runtime of its own, which cannot start inside an
        // async test: drop the database from a thread of its own.
        let dropping = std::thread::spawn(move || {
            if let Ok(mut client) = postgres::Client::connect(&admin, postgres::NoTls) {
                let _ =
                    client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"));
            }
        });
        let _ = dropping.join();
    }
}

/// A name no other test process picks: the process id, the time and a counter.
fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{}_{nanos}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Runs each named test function (taking a [`Backend`]) once per backend, as
/// `NAME::sqlite` and `NAME::postgres`.
#[macro_export]
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[test]
                fn sqlite() {
                    super::$name($crate::Backend::Sqlite)
                }

                #[test]
                fn postgres() {
                    super::$name($crate::Backend::Postgres)
                }
            }
        )*
    };
}
