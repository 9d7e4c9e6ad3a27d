//! Upgrades: `fixtures/relay-format-2.db` was written by the previous release's own binary
//! (crm-relay at c0c8d56, SQLite format 2): `workspace create acme`, `device add` for alice
//! (admin) and bob (sales_rep), then `serve`, where alice pushed three changes (two of the
//! record "acme", one of "globex"), bob pulled them and pushed three (two of "initech", one
//! of "acme"), the compactor made the three snapshots, and the relay stopped on SIGTERM; the
//! WAL was checkpointed. This build opens a copy of it: the file is migrated to format 3 and
//! everything in it still works.

mod common;

use std::path::Path;
use std::sync::Arc;

use common::TestDatabase;
use crm_relay::store::{Database, FILE_NAME, SQLITE_FORMAT};
use crm_relay::{Relay, SqliteStore, WorkspaceId};
use crm_sync::Cursor;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/relay-format-2.db"
);
const RELAY_ID: &str = "01a23c24-2b31-75ea-98f1-696d78c8d281";
const WORKSPACE: &str = "01a23c24-2b36-7705-9724-ad9776a8d359";
const ALICE: &str = "01a23c24-2b4d-73c7-b8b2-60bcb127c07e";
const ALICE_TOKEN: &str =
    "crm1.01a23c24-2b36-7705-9724-ad9776a8d359.FYi1Ns5OuL-BWT1ObcLMngwwaCtu6GOccbNiV012loI";
const BOB_TOKEN: &str =
    "crm1.01a23c24-2b36-7705-9724-ad9776a8d359.tz9jCktE3sTwtd7Q_HwL6nHH8rYCZb_8__t2BqyOI9I";
const ACME: &str = "01a23c24-2bb6-73c1-b876-d3f6b9cb6987";
const GLOBEX: &str = "01a23c24-2bb6-73c1-b876-d3f7d4e63977";
const INITECH: &str = "01a23c24-2bd8-7729-b70d-f543f658ff3d";
/// The changes in log order, and the record each is of.
const LOG: [(&str, &str); 6] = [
    (
        "e20abb016eb456ef9a50dbf798f660501a5c6419299f03227fe87ce8f7dd0fbb",
        ACME,
    ),
    (
        "5a94dda6384b012e159d34b70ce2fffe2dee15e59d199b39e8fd9af7a7331256",
        ACME,
    ),
    (
        "862d54bb865ca8a7eaf7388982a94be54e5561d219d9a320f1a3216e1a534357",
        GLOBEX,
    ),
    (
        "8092378ce3e18e37966f73cec9f4fbca810c42fc21bac664988c07ef1f1ae1c9",
        INITECH,
    ),
    (
        "3764844415a5aac0b947ea29c98acdee6221558d7c406b805b0a88ff5a6b7279",
        ACME,
    ),
    (
        "66c149d3a1224d19cf13d6af7360f4e5add6b8815cf878fe3829572e77b018d4",
        INITECH,
    ),
];

fn hash(hex: &str) -> [u8; 32] {
    let mut out = [0; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex");
    }
    out
}

fn uuid(text: &str) -> uuid::Uuid {
    uuid::Uuid::parse_str(text).expect("a uuid")
}

/// A copy of the fixture as `DIR/relay.db` (the fixture itself is never opened).
fn copy_of_fixture() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(FIXTURE, dir.path().join(FILE_NAME)).expect("copy the fixture");
    dir
}

fn user_version(path: &Path) -> i64 {
    rusqlite::Connection::open(path)
        .expect("open")
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("user_version")
}

#[test]
fn a_database_of_the_previous_release_is_upgraded_and_everything_in_it_works() {
    let dir = copy_of_fixture();
    let db = dir.path().join(FILE_NAME);
    assert_eq!(user_version(&db), 2, "the fixture is format 2");
    let relay = Relay::new(Arc::new(SqliteStore::open(dir.path()).expect("it opens")));
    assert_eq!(user_version(&db), SQLITE_FORMAT);
    assert_eq!(uuid::Uuid::from_bytes(relay.relay_id()), uuid(RELAY_ID));

    // Every change reads back, with its bytes hashing to what the log says.
    let ws: WorkspaceId = WORKSPACE.parse().expect("id");
    let read = relay.read_raw(ws, 0, 100).expect("read");
    assert_eq!(read.rows.len(), 6);
    assert_eq!(read.head, 6);
    for (entry, (expected, doc)) in read.rows.iter().zip(LOG) {
        let change = automerge::Change::try_from(entry.bytes.as_slice()).expect("a change");
        assert_eq!(change.hash().0, hash(expected));
        assert_eq!(uuid::Uuid::from_bytes(entry.doc_id), uuid(doc));
    }
    assert_eq!(relay.head(ws).expect("head"), (6, hash(LOG[5].0)));

    // The tokens made by the old binary still authenticate, with bob's cursor known.
    let cursor = Cursor {
        relay_id: relay.relay_id(),
        seq: 6,
        hash: hash(LOG[5].0),
    };
    let alice = relay
        .authenticate(WORKSPACE, ALICE_TOKEN, Some(&cursor))
        .expect("alice's token");
    assert_eq!(alice.device.to_string(), ALICE);
    assert_eq!(alice.user, "alice");
    assert!(alice.authorized.cursor_known);
    // Bob's device (a sales rep's) was added before the relay knew users: it cannot be told
    // what bob may see, so it is refused with the way out, until an admin gives bob a user.
    match relay.authenticate(WORKSPACE, BOB_TOKEN, Some(&cursor)) {
        Err(crm_relay::store::AuthError::Forbidden(why)) => {
            assert!(why.contains("user add"), "{why}");
        }
        other => panic!("bob's old token: {other:?}"),
    }
    // Format 3's column is filled by the connection.
    let devices = relay.devices(Some(ws)).expect("devices");
    assert!(devices.iter().any(|d| d.last_seen_at.is_some()));

    // Its documents and snapshots are sound, and a bootstrap page reads them.
    let report = relay.verify().expect("verify");
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!(
        (report.changes, report.documents, report.snapshots),
        (6, 3, 3)
    );
    let page = relay
        .documents_page(ws, None, 6, usize::MAX, None)
        .expect("a page");
    assert_eq!(page.docs.len(), 3);
    drop(relay);

    // The binary reads it as well.
    let out = assert_cmd::Command::cargo_bin("crm-relay")
        .expect("binary")
        .env_remove("CRM_RELAY_DATABASE")
        .arg("--data")
        .arg(dir.path())
        .args(["verify", "--json"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_database_of_the_previous_release_migrates_to_postgres() {
    let dir = copy_of_fixture();
    let pg = TestDatabase::create();
    let out = assert_cmd::Command::cargo_bin("crm-relay")
        .expect("binary")
        .env_remove("CRM_RELAY_DATA")
        .env_remove("CRM_RELAY_DATABASE")
        .args(["migrate", "--to", &pg.url, "--json", "--from"])
        .arg(format!("sqlite:{}", dir.path().display()))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["relay_id"], RELAY_ID);
    assert_eq!(report["copied"]["changes"], 6);
    assert_eq!(report["copied"]["snapshots"], 3);
    assert_eq!(report["workspaces"][0]["head_hash"], LOG[5].0);

    let on_pg = Relay::new(Database::Postgres(pg.url.clone()).open(false).expect("pg"));
    assert_eq!(uuid::Uuid::from_bytes(on_pg.relay_id()), uuid(RELAY_ID));
    assert!(on_pg.verify().expect("verify").is_sound());
    let cursor = Cursor {
        relay_id: on_pg.relay_id(),
        seq: 6,
        hash: hash(LOG[5].0),
    };
    let alice = on_pg
        .authenticate(WORKSPACE, ALICE_TOKEN, Some(&cursor))
        .expect("alice's token");
    assert!(alice.authorized.cursor_known);
}

#[test]
fn a_backup_of_the_previous_release_is_restored_upgraded_and_left_as_it_was() {
    // The fixture is in WAL mode, as a relay leaves its database: restoring it must not
    // leave SQLite's files beside it, nor change it.
    let backups = tempfile::tempdir().expect("tempdir");
    let backup = backups.path().join("old.db");
    std::fs::copy(FIXTURE, &backup).expect("copy the fixture");
    let before = std::fs::read(&backup).expect("read");
    let data = tempfile::tempdir().expect("tempdir");
    let out = assert_cmd::Command::cargo_bin("crm-relay")
        .expect("binary")
        .env_remove("CRM_RELAY_DATABASE")
        .arg("--data")
        .arg(data.path())
        .arg("restore")
        .arg(&backup)
        .arg("--json")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["relay_id"], RELAY_ID);
    assert_eq!(report["format_before"], 2);
    assert_eq!(report["format"], SQLITE_FORMAT);
    assert_eq!(report["workspaces"][0]["head"], 6);
    let beside: Vec<_> = std::fs::read_dir(backups.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(beside, ["old.db"]);
    assert_eq!(std::fs::read(&backup).expect("read"), before);
    assert_eq!(user_version(&data.path().join(FILE_NAME)), SQLITE_FORMAT);
}
