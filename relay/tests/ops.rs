//! The operations commands with the real `crm-relay` binary: `backup` while a relay pushes,
//! `restore` and a device resuming from its cursor, `verify` finding damage, `migrate`
//! between SQLite and PostgreSQL, and `stats`. PostgreSQL parts use a fresh database per
//! test (`common::TestDatabase`); they fail, not skip, without a server.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use assert_cmd::Command;
use common::{Backend, Client, Doc, Serving, TestDatabase, TestStore, hash_of};
use crm_relay::service::{ProblemKind, VerifyReport};
use crm_relay::store::{Database, FILE_NAME, Row};
use crm_relay::{DeviceId, Relay, SqliteStore, WorkspaceId};
use crm_sync::{Cursor, Resume, Scope};
use serde_json::Value;

crm_tests::on_every_backend!(
    verify_passes_a_sound_store,
    verify_finds_a_flipped_byte_in_a_change,
    verify_finds_a_stored_hash_that_is_not_the_changes,
    verify_finds_a_gap_in_the_log,
    verify_finds_a_snapshot_listing_a_change_it_lacks,
    stats_count_devices_records_and_changes,
    verify_finds_nothing_wrong_while_a_relay_pushes_and_compacts,
);

/// Runs `crm-relay ARGS`.
fn relay(args: &[&str]) -> std::process::Output {
    Command::cargo_bin("crm-relay")
        .expect("crm-relay binary")
        .env_remove("CRM_RELAY_DATA")
        .env_remove("CRM_RELAY_DATABASE")
        .args(args)
        .output()
        .expect("run")
}

/// `--data DIR` as arguments.
fn data(dir: &Path) -> [String; 2] {
    ["--data".into(), dir.display().to_string()]
}

/// Runs a command that must succeed with `--json`; returns its output.
fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = relay(&all);
    assert!(
        out.status.success(),
        "crm-relay {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: bad JSON {e}: {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Runs a command that must fail with `code` and one line on stderr; returns the line.
fn fails(args: &[&str], code: i32) -> String {
    let out = relay(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr
}

fn args<'a>(before: &'a [String], rest: &[&'a str]) -> Vec<&'a str> {
    before
        .iter()
        .map(String::as_str)
        .chain(rest.iter().copied())
        .collect()
}

/// A relay's data: workspace "acme", alice's admin device and its token, and `records`
/// records of two changes each (every third with an owner and teams), compacted.
struct Populated {
    relay: Relay,
    ws: WorkspaceId,
    device: DeviceId,
    token: String,
    docs: Vec<Doc>,
}

fn populate(relay: Relay, records: usize) -> Populated {
    let ws = relay.create_workspace("acme").expect("workspace").id;
    let added = relay.add_unbound_device(ws, "alice").expect("device");
    let device = added.device.id;
    let mut docs = Vec::new();
    let mut batch = Vec::new();
    for i in 0..records {
        let mut doc = Doc::new();
        let mut first = doc.change("name", &format!("Company {i}"));
        if i % 3 == 0 {
            first.scope = Scope {
                owner: Some(*uuid::Uuid::now_v7().as_bytes()),
                assignee: None,
                teams: vec![*uuid::Uuid::now_v7().as_bytes()],
            };
        }
        batch.push(first);
        batch.push(doc.change("city", "上海"));
        docs.push(doc);
    }
    relay
        .store_batch(ws, &crm_relay::service::Pusher::admin(device), &batch)
        .expect("stored");
    relay.compact(usize::MAX).expect("compacted");
    Populated {
        relay,
        ws,
        device,
        token: added.token.expose().to_string(),
        docs,
    }
}

/// Every row of a store, in export order.
fn rows(relay: &Relay) -> Vec<Row> {
    let mut rows = Vec::new();
    relay
        .store()
        .export(&mut |row| {
            rows.push(row);
            true
        })
        .expect("export");
    rows
}

/// Inverts byte `index` of column `column` (`bytes` or `hash`) of the change at `seq`.
fn flip_byte(place: &TestStore, column: &str, seq: i64, index: usize) {
    match place.backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(place.dir().join(FILE_NAME)).expect("open");
            let mut value: Vec<u8> = conn
                .query_row(
                    &format!("SELECT {column} FROM changes WHERE seq = ?1"),
                    [seq],
                    |r| r.get(0),
                )
                .expect("the change");
            value[index] = !value[index];
            conn.execute(
                &format!("UPDATE changes SET {column} = ?2 WHERE seq = ?1"),
                rusqlite::params![seq, value],
            )
            .expect("update");
        }
        Backend::Postgres => {
            let index = i32::try_from(index).expect("small");
            let changed = place
                .pg()
                .execute(
                    &format!(
                        "UPDATE changes SET {column} =
                             set_byte({column}, $2, 255 - get_byte({column}, $2))
                         WHERE seq = $1"
                    ),
                    &[&seq, &index],
                )
                .expect("update");
            assert_eq!(changed, 1);
        }
    }
}

/// Removes the change at `seq` from the log.
fn delete_change(place: &TestStore, seq: i64) {
    let changed = match place.backend {
        Backend::Sqlite => rusqlite::Connection::open(place.dir().join(FILE_NAME))
            .expect("open")
            .execute("DELETE FROM changes WHERE seq = ?1", [seq])
            .expect("delete"),
        Backend::Postgres => {
            let n = place
                .pg()
                .execute("DELETE FROM changes WHERE seq = $1", &[&seq])
                .expect("delete");
            usize::try_from(n).expect("small")
        }
    };
    assert_eq!(changed, 1);
}

fn verified(place: &TestStore) -> VerifyReport {
    place.relay().verify().expect("verify")
}

fn kinds(report: &VerifyReport) -> Vec<(ProblemKind, Option<u64>)> {
    report.problems.iter().map(|p| (p.kind, p.seq)).collect()
}

fn verify_passes_a_sound_store(b: Backend) {
    let place = TestStore::new(b);
    let p = populate(place.relay(), 10);
    // A later edit the snapshot does not hold yet: still sound.
    let mut doc = p.docs.into_iter().next().expect("a record");
    p.relay
        .store_batch(
            p.ws,
            &crm_relay::service::Pusher::admin(p.device),
            &[doc.change("city", "北京")],
        )
        .expect("stored");
    let report = verified(&place);
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!(
        (
            report.workspaces,
            report.changes,
            report.documents,
            report.snapshots
        ),
        (1, 21, 10, 10)
    );
}

fn verify_finds_nothing_wrong_while_a_relay_pushes_and_compacts(b: Backend) {
    let place = TestStore::new(b);
    let p = populate(place.relay(), 10);
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (relay, stop, mut docs) = (p.relay.clone(), stop.clone(), p.docs);
        std::thread::spawn(move || {
            let mut round = 0usize;
            while !stop.load(Ordering::Relaxed) {
                // An edit of an existing record and a new record, each round.
                let edited = round % docs.len();
                let mut fresh = Doc::new();
                let batch = [
                    docs[edited].change("city", &format!("round {round}")),
                    fresh.change("name", "new"),
                ];
                relay
                    .store_batch(p.ws, &crm_relay::service::Pusher::admin(p.device), &batch)
                    .expect("a push");
                docs.push(fresh);
                round += 1;
            }
            round
        })
    };
    let compactor = {
        let (relay, stop) = (p.relay.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                relay.compact(4).expect("compact");
            }
        })
    };
    let checker = place.relay();
    for _ in 0..5 {
        let report = checker.verify().expect("verify");
        assert!(report.is_sound(), "{:?}", report.problems);
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = pusher.join().expect("the pusher");
    compactor.join().expect("the compactor");
    assert!(rounds > 0);
    let report = checker.verify().expect("verify");
    assert!(report.is_sound(), "{:?}", report.problems);
    assert_eq!(report.changes, 20 + 2 * rounds as u64);
}

fn verify_finds_a_flipped_byte_in_a_change(b: Backend) {
    let place = TestStore::new(b);
    populate(place.relay(), 3);
    flip_byte(&place, "bytes", 4, 20);
    let report = verified(&place);
    assert_eq!(report.problem_count, 1, "{:?}", report.problems);
    let problem = &report.problems[0];
    assert!(
        matches!(
            problem.kind,
            ProblemKind::UnreadableChange | ProblemKind::HashMismatch
        ),
        "{problem:?}"
    );
    assert_eq!(problem.seq, Some(4));
    assert!(problem.doc.is_some());
}

fn verify_finds_a_stored_hash_that_is_not_the_changes(b: Backend) {
    let place = TestStore::new(b);
    populate(place.relay(), 3);
    flip_byte(&place, "hash", 2, 0);
    let report = verified(&place);
    let found = kinds(&report);
    assert_eq!(found[0], (ProblemKind::HashMismatch, Some(2)));
    // Its record's snapshot holds the change by its real hash, which the log no longer has.
    assert!(
        found[1..]
            .iter()
            .all(|(kind, _)| *kind == ProblemKind::SnapshotContents),
        "{found:?}"
    );
}

fn verify_finds_a_gap_in_the_log(b: Backend) {
    let place = TestStore::new(b);
    populate(place.relay(), 3);
    // The second change of the second record: a gap at 4, its document's last change is
    // not where the directory says, and its snapshot lists a change the log lacks.
    delete_change(&place, 4);
    let report = verified(&place);
    let found = kinds(&report);
    assert_eq!(
        found,
        [
            (ProblemKind::Gap, Some(4)),
            (ProblemKind::DocumentPositions, Some(4)),
            (ProblemKind::SnapshotContents, Some(4)),
        ]
    );
    assert_eq!(report.problems[0].detail, "position 4 is missing");
    // The last change: the head is past the log's end.
    delete_change(&place, 6);
    let found = kinds(&verified(&place));
    assert!(found.contains(&(ProblemKind::Gap, Some(6))), "{found:?}");
}

fn verify_finds_a_snapshot_listing_a_change_it_lacks(b: Backend) {
    let place = TestStore::new(b);
    let p = populate(place.relay(), 3);
    let doc = p.docs[1].id;
    let other = [7u8; 32];
    match place.backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(place.dir().join(FILE_NAME)).expect("open");
            let mut hashes: Vec<u8> = conn
                .query_row(
                    "SELECT hashes FROM snapshots WHERE doc_id = ?1",
                    [doc.as_slice()],
                    |r| r.get(0),
                )
                .expect("the snapshot");
            hashes.extend(other);
            conn.execute(
                "UPDATE snapshots SET hashes = ?2 WHERE doc_id = ?1",
                rusqlite::params![doc.as_slice(), hashes],
            )
            .expect("update");
        }
        Backend::Postgres => {
            place
                .pg()
                .execute(
                    "UPDATE snapshots SET hashes = hashes || $2 WHERE doc_id = $1",
                    &[&uuid::Uuid::from_bytes(doc), &other.as_slice()],
                )
                .expect("update");
        }
    }
    let report = verified(&place);
    assert!(!report.is_sound());
    assert!(
        report
            .problems
            .iter()
            .all(|p| p.kind == ProblemKind::SnapshotContents
                && p.doc == Some(uuid::Uuid::from_bytes(doc))),
        "{:?}",
        report.problems
    );
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.detail.contains("lists 1 changes it does not hold")),
        "{:?}",
        report.problems
    );
}

fn stats_count_devices_records_and_changes(b: Backend) {
    let place = TestStore::new(b);
    let p = populate(place.relay(), 4);
    let bob = p.relay.add_unbound_device(p.ws, "bob").expect("device");
    p.relay.revoke_device(bob.device.id).expect("revoked");
    p.relay
        .authenticate(&p.ws.to_string(), &p.token, None)
        .expect("alice connects");
    p.relay.create_workspace("globex").expect("workspace");

    let database = place.database.to_string();
    let stats = json(&["--database", &database, "stats", "--devices"]);
    let mut keys: Vec<&String> = stats.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "backend",
            "database_bytes",
            "location",
            "relay_id",
            "workspaces"
        ]
    );
    assert_eq!(
        stats["backend"],
        match b {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    );
    assert!(stats["database_bytes"].as_u64().expect("bytes") > 0);
    assert_eq!(
        stats["relay_id"],
        uuid::Uuid::from_bytes(p.relay.relay_id()).to_string()
    );
    let acme = &stats["workspaces"][0];
    let mut keys: Vec<&String> = acme.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(
        keys,
        ["changes", "created_at", "devices", "id", "name", "records"]
    );
    assert_eq!(acme["name"], "acme");
    assert_eq!(acme["id"], p.ws.to_string());
    assert_eq!(acme["records"], 4);
    assert_eq!(acme["changes"], 8);
    assert_eq!(acme["devices"]["total"], 2);
    assert_eq!(acme["devices"]["active"], 1);
    let list = acme["devices"]["list"].as_array().expect("devices listed");
    assert_eq!(list[0]["user"], "alice");
    assert!(list[0]["last_seen_at"].is_string(), "{}", list[0]);
    assert!(list[0]["revoked_at"].is_null());
    assert_eq!(list[1]["user"], "bob");
    assert!(list[1]["last_seen_at"].is_null());
    assert!(list[1]["revoked_at"].is_string());
    let globex = &stats["workspaces"][1];
    assert_eq!(
        (
            &globex["records"],
            &globex["changes"],
            &globex["devices"]["total"]
        ),
        (&Value::from(0), &Value::from(0), &Value::from(0))
    );
    // Without --devices, no list; the table names every workspace.
    let brief = json(&["--database", &database, "stats"]);
    assert!(brief["workspaces"][0]["devices"].get("list").is_none());
    let out = relay(&["--database", &database, "stats"]);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("acme") && table.contains("globex"),
        "{table}"
    );
}

#[test]
fn verify_reports_problems_with_exit_code_1_and_json() {
    let place = TestStore::new(Backend::Sqlite);
    let p = populate(place.relay(), 3);
    drop(p);
    let d = data(place.dir());
    let report = json(&args(&d, &["verify"]));
    assert_eq!(report["problem_count"], 0);
    assert_eq!(report["changes"], 6);
    let out = relay(&args(&d, &["verify"]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("no problems found"));

    flip_byte(&place, "bytes", 2, 20);
    let mut all = args(&d, &["verify", "--json"]);
    let out = relay(&all);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("a report on stdout");
    assert_eq!(report["problem_count"], 1);
    assert_eq!(report["problems"][0]["seq"], 2);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("verify found 1 problems"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    all.pop();
    let out = relay(&all);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("unreadable_change") || text.contains("hash_mismatch"),
        "{text}"
    );
}

#[test]
fn a_backup_taken_while_a_relay_pushes_verifies_and_holds_a_prefix_of_the_log() {
    let place = TestStore::new(Backend::Sqlite);
    let p = populate(place.relay(), 20);
    let (relay, ws, device) = (p.relay.clone(), p.ws, p.device);
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut pushes = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let mut doc = Doc::new();
                let batch = [doc.change("name", "busy"), doc.change("city", "广州")];
                relay
                    .store_batch(ws, &crm_relay::service::Pusher::admin(device), &batch)
                    .expect("a push");
                pushes += 1;
            }
            pushes
        })
    };
    let backups = tempfile::tempdir().expect("tempdir");
    let file = backups.path().join("relay-backup.db");
    let file_arg = file.display().to_string();
    let d = data(place.dir());
    let head_before = p.relay.head(ws).expect("head").0;
    let report = json(&args(&d, &["backup", &file_arg]));
    let head_after = p.relay.head(ws).expect("head").0;
    stop.store(true, Ordering::Relaxed);
    let pushes = pusher.join().expect("the pusher");
    assert!(
        pushes > 0 && head_after > head_before,
        "pushes ran during the backup"
    );

    assert_eq!(report["file"], file_arg);
    assert_eq!(report["verify"]["problem_count"], 0);
    assert_eq!(
        report["relay_id"],
        uuid::Uuid::from_bytes(p.relay.relay_id()).to_string()
    );
    // Nothing left beside it but the backup.
    assert_eq!(names_in(backups.path()), ["relay-backup.db"]);

    let copy = Relay::new(Arc::new(
        SqliteStore::open_read_only(&file).expect("the backup opens"),
    ));
    assert!(copy.verify().expect("verify").is_sound());
    let (copied_head, copied_hash) = copy.head(ws).expect("head");
    assert_eq!(report["workspaces"][0]["head"], copied_head);
    assert!(
        (head_before..=head_after).contains(&copied_head),
        "{head_before} ≤ {copied_head} ≤ {head_after}"
    );
    // A prefix: the same change at every position up to its head.
    let mut after = 0;
    while after < copied_head {
        let mine = copy.read_raw(ws, after, 500).expect("read");
        let source = p.relay.read_raw(ws, after, 500).expect("read");
        let n = mine.rows.len();
        assert!(n > 0);
        assert_eq!(mine.rows, source.rows[..n]);
        after = mine.through;
    }
    assert_eq!(copy.read_raw(ws, copied_head, 10).expect("read").rows, []);
    assert_eq!(
        p.relay.store().hash_at(ws, copied_head).expect("hash"),
        Some(copied_hash)
    );

    // An existing file is refused, then replaced with --force.
    let error = fails(&args(&d, &["backup", &file_arg]), 2);
    assert!(error.contains("--force"), "{error}");
    json(&args(&d, &["backup", &file_arg, "--force"]));
    let after_force = Relay::new(Arc::new(SqliteStore::open_read_only(&file).expect("open")));
    assert_eq!(
        after_force.head(ws).expect("head").0,
        p.relay.head(ws).expect("head").0
    );
}

#[test]
fn backup_and_restore_of_postgres_say_to_use_pg_dump() {
    let db = TestDatabase::create();
    let error = fails(&["--database", &db.url, "backup", "/tmp/out.dump"], 2);
    assert!(
        error.contains("pg_dump --format=custom --file /tmp/out.dump postgres://")
            && error.contains("pg_restore --clean --if-exists --dbname postgres://"),
        "{error}"
    );
    let error = fails(&["--database", &db.url, "restore", "/tmp/out.dump"], 2);
    assert!(error.contains("pg_restore --clean --if-exists"), "{error}");
}

/// The names of the files in a directory, sorted.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    names
}

/// A device's cursor at the head of `relay`'s log of `ws`.
fn cursor_at_head(relay: &Relay, ws: WorkspaceId) -> Cursor {
    let (seq, hash) = relay.head(ws).expect("head");
    Cursor {
        relay_id: relay.relay_id(),
        seq,
        hash,
    }
}

/// Runs a device's part of a test (the WebSocket client is async; the rest of the test,
/// PostgreSQL's synchronous client included, is not).
fn device<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

#[test]
fn a_restored_relay_keeps_its_identity_and_positions_so_devices_resume() {
    let place = TestStore::new(Backend::Sqlite);
    let p = populate(place.relay(), 5);
    let cursor = cursor_at_head(&p.relay, p.ws);
    let backups = tempfile::tempdir().expect("tempdir");
    let file = backups.path().join("acme.db");
    let file_arg = file.display().to_string();
    json(&args(&data(place.dir()), &["backup", &file_arg]));

    let restored = tempfile::tempdir().expect("tempdir");
    let target = restored.path().join("data");
    let d = data(&target);
    let report = json(&args(&d, &["restore", &file_arg]));
    assert_eq!(
        report["relay_id"],
        uuid::Uuid::from_bytes(cursor.relay_id).to_string()
    );
    assert_eq!(report["workspaces"][0]["head"], cursor.seq);
    assert_eq!(report["verify"]["problem_count"], 0);
    assert!(target.join(FILE_NAME).is_file());
    assert_eq!(
        names_in(&target),
        [FILE_NAME],
        "no temporary or WAL file is left"
    );

    // Served, it knows the device's cursor: the device resumes, and its next push goes
    // after the head.
    let serving = Serving::start(&args(&d, &[]), &["--no-compact"]);
    device(async {
        let (mut client, welcome) =
            Client::join_at(serving.url.clone(), p.ws, &p.token, Some(cursor)).await;
        assert_eq!(welcome.relay_id, cursor.relay_id);
        assert_eq!(welcome.head, cursor.seq);
        assert_eq!(welcome.resume, Resume::FromCursor);
        let mut doc = Doc::new();
        let ack = client
            .push(1, vec![doc.change("name", "after the restore")])
            .await;
        assert_eq!(ack.seqs, [cursor.seq + 1]);
    });

    // Over a database a relay serves: refused, even with --force.
    let error = fails(&args(&d, &["restore", &file_arg]), 2);
    assert!(
        error.contains("exists already") && error.contains("--force"),
        "{error}"
    );
    let error = fails(&args(&d, &["restore", &file_arg, "--force"]), 1);
    assert!(error.contains("stop the relay first"), "{error}");
    serving.stop();

    // Stopped: --force puts the backup back, without the push made since.
    json(&args(&d, &["restore", &file_arg, "--force"]));
    assert_eq!(names_in(&target), [FILE_NAME]);
    let back = Relay::new(Arc::new(SqliteStore::open(&target).expect("open")));
    assert_eq!(back.head(p.ws).expect("head"), (cursor.seq, cursor.hash));

    // Something that is not a relay's database is refused and changes nothing.
    let junk = backups.path().join("junk.db");
    std::fs::write(&junk, b"not a database at all, just some bytes.......").expect("write");
    let error = fails(
        &args(&d, &["restore", &junk.display().to_string(), "--force"]),
        1,
    );
    assert!(error.contains("not a crm-relay database"), "{error}");
    let error = fails(&args(&d, &["restore", "/no/such/backup.db"]), 2);
    assert!(error.contains("no file"), "{error}");
    assert_eq!(back.head(p.ws).expect("head").0, cursor.seq);
}

#[test]
fn migrate_sqlite_to_postgres_and_back_copies_every_row_and_keeps_the_relay() {
    let source = TestStore::new(Backend::Sqlite);
    let p = populate(source.relay(), 30);
    let bob = p.relay.add_unbound_device(p.ws, "bob").expect("device");
    p.relay.revoke_device(bob.device.id).expect("revoked");
    p.relay
        .authenticate(&p.ws.to_string(), &p.token, None)
        .expect("alice connects");
    // A second workspace, its own log, and an edit the snapshots do not hold yet.
    let globex = p.relay.create_workspace("globex").expect("workspace").id;
    let gina = p.relay.add_unbound_device(globex, "gina").expect("device");
    let mut g = Doc::new();
    p.relay
        .store_batch(
            globex,
            &crm_relay::service::Pusher::admin(gina.device.id),
            &[g.change("name", "G"), g.change("x", "y")],
        )
        .expect("stored");
    let mut first = p.docs.into_iter().next().expect("a record");
    let late = first.change("city", "杭州");
    p.relay
        .store_batch(
            p.ws,
            &crm_relay::service::Pusher::admin(p.device),
            std::slice::from_ref(&late),
        )
        .expect("stored");
    let original = rows(&p.relay);
    let cursor = cursor_at_head(&p.relay, p.ws);
    assert_eq!(cursor.hash, hash_of(&late));

    let pg = TestDatabase::create();
    let from = source.database.to_string();
    let report = json(&["migrate", "--from", &from, "--to", &pg.url]);
    assert_eq!(
        report["relay_id"],
        uuid::Uuid::from_bytes(cursor.relay_id).to_string()
    );
    assert_eq!(report["copied"]["workspaces"], 2);
    assert_eq!(report["copied"]["devices"], 3);
    assert_eq!(report["copied"]["documents"], 31);
    assert_eq!(report["copied"]["changes"], 63);
    assert_eq!(report["copied"]["snapshots"], 30);
    assert_eq!(report["verify"]["problem_count"], 0);
    assert_eq!(report["workspaces"][0]["head"], cursor.seq);
    let hex: String = cursor.hash.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(report["workspaces"][0]["head_hash"], hex);
    let on_pg = Relay::new(Database::Postgres(pg.url.clone()).open(false).expect("pg"));
    assert_eq!(on_pg.relay_id(), cursor.relay_id);
    assert_eq!(rows(&on_pg), original, "every row, as it was");

    // A device's next sync against the copy: the same relay, its cursor known, and its next
    // push at the next position.
    let serving = Serving::start(&["--database", &pg.url], &["--no-compact"]);
    let welcome = device(async {
        Client::join_at(serving.url.clone(), p.ws, &p.token, Some(cursor))
            .await
            .1
    });
    assert_eq!(
        (welcome.relay_id, welcome.head, welcome.resume),
        (cursor.relay_id, cursor.seq, Resume::FromCursor)
    );
    serving.stop();

    // Into a database that holds a relay: refused, and nothing changes.
    let error = fails(&["migrate", "--from", &from, "--to", &pg.url], 2);
    assert!(error.contains("must be empty"), "{error}");
    assert_eq!(rows(&on_pg), original);
    fails(&["migrate", "--from", &from, "--to", &from], 2);

    // And back to SQLite, from --database.
    let back = tempfile::tempdir().expect("tempdir");
    let to = format!("sqlite:{}", back.path().join("relay").display());
    json(&["--database", &pg.url, "migrate", "--to", &to]);
    let on_sqlite = Relay::new(
        SqliteStore::open(&back.path().join("relay"))
            .map(Arc::new)
            .expect("sqlite"),
    );
    assert_eq!(on_sqlite.relay_id(), cursor.relay_id);
    assert_eq!(rows(&on_sqlite), original, "every row, as it was");
    let serving = Serving::start(
        &["--data", &back.path().join("relay").display().to_string()],
        &["--no-compact"],
    );
    device(async {
        let (mut client, welcome) =
            Client::join_at(serving.url.clone(), p.ws, &p.token, Some(cursor)).await;
        assert_eq!(
            (welcome.relay_id, welcome.head, welcome.resume),
            (cursor.relay_id, cursor.seq, Resume::FromCursor)
        );
        let mut doc = Doc::new();
        let ack = client.push(1, vec![doc.change("name", "after")]).await;
        assert_eq!(ack.seqs, [cursor.seq + 1]);
    });
    serving.stop();
}

#[test]
fn migrate_sqlite_to_sqlite_copies_every_row_and_leaves_a_target_holding_a_relay_alone() {
    let source = TestStore::new(Backend::Sqlite);
    let p = populate(source.relay(), 12);
    let original = rows(&p.relay);
    let from = source.database.to_string();
    let targets = tempfile::tempdir().expect("tempdir");
    let copy = targets.path().join("copy");
    let to = format!("sqlite:{}", copy.display());
    let report = json(&["migrate", "--from", &from, "--to", &to]);
    assert_eq!(report["copied"]["changes"], 24);
    assert_eq!(report["moved_on"], Value::Array(vec![]));
    let copied = Relay::new(Arc::new(SqliteStore::open(&copy).expect("open")));
    assert_eq!(copied.relay_id(), p.relay.relay_id());
    assert_eq!(rows(&copied), original);
    drop(copied);

    // A directory holding a relay is refused, and its database left as it was.
    let before = std::fs::read(copy.join(FILE_NAME)).expect("read");
    let error = fails(&["migrate", "--from", &from, "--to", &to], 2);
    assert!(error.contains("must be empty"), "{error}");
    assert_eq!(std::fs::read(copy.join(FILE_NAME)).expect("read"), before);
    // As is a source that is not there.
    let nowhere = format!("sqlite:{}", targets.path().join("nowhere").display());
    let other = format!("sqlite:{}", targets.path().join("other").display());
    let error = fails(&["migrate", "--from", &nowhere, "--to", &other], 1);
    assert!(error.contains("no relay data"), "{error}");
    assert!(!targets.path().join("other").join(FILE_NAME).exists());
}
