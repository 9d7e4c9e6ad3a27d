//! `crm backup` and `crm restore` as a user runs them: real `crm` processes on real files,
//! with another process writing or holding the replica open.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use crm_tests::{Replica, expect_success, parse_json};
use serde_json::Value;

fn arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

/// The names of every account of the replica.
fn account_names(r: &Replica) -> BTreeSet<String> {
    r.list("account")
        .iter()
        .map(|a| a["name"].as_str().expect("a name").to_string())
        .collect()
}

/// Runs a command that must fail with `code`; returns its one-line stderr.
fn fails(r: &Replica, args: &[&str], code: i32) -> String {
    let out = r.run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "crm {args:?}: stderr {stderr:?} stdout {:?}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    stderr
}

#[test]
fn backup_then_edit_then_restore_brings_back_the_backup() {
    let r = Replica::init("alice", "laptop");
    let acme = r.add("account", &["--name", "ACME"]);
    r.add("account", &["--name", "Globex"]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("laptop.db");

    let backup = r.json(&["backup", arg(&file)]);
    assert_eq!(backup["file"], arg(&file), "{backup}");
    assert_eq!(backup["records"], 3, "the user and two accounts: {backup}");
    assert!(
        backup["changes"].as_u64().expect("changes") >= 3,
        "{backup}"
    );
    assert_eq!(
        backup["bytes"].as_u64().expect("bytes"),
        std::fs::metadata(&file).expect("the backup").len()
    );
    assert_eq!(backup["user"], "alice");
    assert_eq!(backup["device"], "laptop");
    assert_eq!(backup["cursor"], Value::Null, "never synced: {backup}");

    // After the backup: an edit and a new record.
    r.ok(&["account", "edit", &acme, "--name", "ACME renamed"]);
    let later = r.add("account", &["--name", "Initech"]);

    let refused = fails(&r, &["restore", arg(&file)], 2);
    assert!(refused.contains("--force"), "{refused}");
    assert_eq!(
        account_names(&r),
        BTreeSet::from([
            "ACME renamed".to_string(),
            "Globex".into(),
            "Initech".into()
        ]),
        "a refused restore changes nothing"
    );

    let restored = r.json(&["restore", arg(&file), "--force"]);
    assert_eq!(restored["from"], arg(&file), "{restored}");
    assert_eq!(restored["records"], 3, "{restored}");
    assert_eq!(
        account_names(&r),
        BTreeSet::from(["ACME".to_string(), "Globex".into()]),
        "the edit and the later record are gone, the backup's records are there"
    );
    assert_eq!(r.json(&["account", "show", &acme])["name"], "ACME");
    fails(&r, &["show", &later], 2);
    assert_eq!(r.json(&["check"])["ok"], true);
    // The restored replica is an ordinary one: it takes writes.
    r.add("account", &["--name", "after the restore"]);
}

#[test]
fn backup_replaces_an_existing_file_only_with_force() {
    let r = Replica::init("alice", "laptop");
    r.add("account", &["--name", "ACME"]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("laptop.db");
    std::fs::write(&file, "keep me").expect("write");

    let refused = fails(&r, &["backup", arg(&file)], 2);
    assert!(
        refused.contains("--force") && refused.contains(arg(&file)),
        "{refused}"
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "keep me");

    let printed = r.ok(&["backup", arg(&file), "--force"]);
    assert!(
        printed.contains("2 records") && printed.contains(arg(&file)),
        "{printed}"
    );
    // A backup of the replica onto the replica itself is refused, --force or not.
    let itself = r.path().join("replica.db");
    fails(&r, &["backup", arg(&itself), "--force"], 2);

    // The backup sets up another device: no --force needed in an empty directory.
    let phone = Replica::empty("phone");
    phone.json(&["restore", arg(&file)]);
    assert_eq!(account_names(&phone), BTreeSet::from(["ACME".to_string()]));
    assert_eq!(phone.json(&["status"])["user"], "alice");
}

#[test]
fn restore_refuses_what_is_not_a_replica_backup() {
    let r = Replica::init("alice", "laptop");
    r.add("account", &["--name", "ACME"]);
    let out = tempfile::tempdir().expect("tempdir");
    let text = out.path().join("notes.txt");
    std::fs::write(&text, "these are notes, not a replica\n".repeat(200)).expect("write");
    let missing = out.path().join("missing.db");

    for file in [&text, &missing] {
        let refused = fails(&r, &["restore", arg(file), "--force"], 2);
        assert!(refused.contains(arg(file)), "{refused}");
    }
    let refused = fails(&r, &["restore", arg(&text), "--force", "--json"], 2);
    assert!(refused.contains("not a replica backup"), "{refused}");
    assert_eq!(account_names(&r), BTreeSet::from(["ACME".to_string()]));
    assert_eq!(r.json(&["check"])["ok"], true);
}

#[test]
fn restore_refuses_while_another_process_has_the_replica_open() {
    let r = Replica::init("alice", "laptop");
    r.add("account", &["--name", "ACME"]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("laptop.db");
    r.json(&["backup", arg(&file)]);
    r.add("account", &["--name", "after the backup"]);

    // This test process holds the replica open, as `crm serve` does.
    let held = rusqlite::Connection::open(r.path().join("replica.db")).expect("open");
    let documents: i64 = held
        .query_row("SELECT count(*) FROM documents", [], |row| row.get(0))
        .expect("read");
    assert_eq!(documents, 3);
    let refused = fails(&r, &["restore", arg(&file), "--force"], 1);
    assert!(refused.contains("another process"), "{refused}");
    assert_eq!(account_names(&r).len(), 2, "nothing was changed");

    drop(held);
    r.json(&["restore", arg(&file), "--force"]);
    assert_eq!(account_names(&r), BTreeSet::from(["ACME".to_string()]));
}

#[test]
fn backup_while_another_crm_process_writes() {
    let r = Replica::init("alice", "laptop");
    let out = tempfile::tempdir().expect("tempdir");
    let stop = AtomicBool::new(false);
    let committed = AtomicUsize::new(0);
    let (first_tx, first_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                r.add("account", &["--name", &format!("live {i}")]);
                i += 1;
                committed.store(i, Ordering::SeqCst);
                if i == 1 {
                    let _ = first_tx.send(());
                }
            }
        });
        first_rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the writer adds its first account");
        for round in 0..3 {
            let file = out.path().join(format!("backup-{round}.db"));
            let before = committed.load(Ordering::SeqCst);
            let backup = r.json(&["backup", arg(&file)]);
            let copy = Replica::empty(&format!("copy {round}"));
            copy.json(&["restore", arg(&file)]);
            let names = account_names(&copy);
            assert_eq!(
                backup["records"].as_u64(),
                u64::try_from(names.len() + 1).ok(),
                "{backup}"
            );
            for i in 0..before {
                assert!(names.contains(&format!("live {i}")), "live {i} is missing");
            }
            let check = copy.json(&["check"]);
            assert_eq!(check["ok"], true, "{check}");
        }
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("the writer did not panic");
    });
    let check = r.json(&["check"]);
    assert_eq!(check["ok"], true, "{check}");
    // Each backup is one file: no temporary file, `-wal` or `-shm` beside them.
    let names: BTreeSet<String> = std::fs::read_dir(out.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "backup-0.db".into(),
            "backup-1.db".into(),
            "backup-2.db".into()
        ])
    );
}

/// `--json` prints one JSON document, even when it is an error (then on stderr, one line).
#[test]
fn json_output_parses() {
    let r = Replica::init("alice", "laptop");
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("b.db");
    let stdout = expect_success("backup", &r.run(&["backup", arg(&file), "--json"]));
    let v = parse_json("backup", &stdout);
    for key in [
        "file", "bytes", "records", "changes", "pending", "cursor", "format",
    ] {
        assert!(v.get(key).is_some(), "{key} missing: {v}");
    }
    let stdout = expect_success(
        "restore",
        &r.run(&["restore", arg(&file), "--force", "--json"]),
    );
    let v = parse_json("restore", &stdout);
    assert_eq!(v["file"], arg(&r.path().join("replica.db")), "{v}");
}
