//! A replica that cannot be written is read, not called corrupted (issue 12, failure 7): a
//! read-only file, a read-only directory, a full disk. The real `crm` binary on real files.
//!
//! Permissions do not bind root, so as root the commands run as user `nobody` (`setpriv`).
//! A full disk is simulated with a file-size limit of 0 on the `crm` process (`ulimit -f 0`,
//! with SIGXFSZ ignored so a write fails with EFBIG instead of killing it): nothing it writes
//! can grow a file, as on a full disk, whoever runs the test.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crm_tests::{Replica, crm_bin};

/// The commands that only read, each of which must work.
fn reads(id: &str) -> Vec<Vec<String>> {
    let owned = |args: &[&str]| args.iter().map(|a| a.to_string()).collect();
    vec![
        owned(&["account", "list"]),
        owned(&["show", id]),
        owned(&["search", "星光"]),
        owned(&["history", id]),
        owned(&["report", "funnel"]),
        owned(&["status"]),
        owned(&["export", "account"]),
    ]
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// How to run `crm`: a shell line run before `exec` (e.g. a `ulimit`), and whether to run it
/// as an unprivileged user when the test runs as root (for permissions to bind it).
#[derive(Clone, Copy)]
struct Way<'a> {
    prefix: &'a str,
    unprivileged: bool,
}

/// `crm --data-dir DIR ARGS…` run `way`.
fn run(dir: &Path, args: &[String], way: Way<'_>) -> Output {
    let prefix = way.prefix;
    let mut line = format!("{prefix} exec \"$0\" --data-dir \"$1\"");
    for i in 0..args.len() {
        line.push_str(&format!(" \"${}\"", i + 2));
    }
    let mut cmd = if way.unprivileged && is_root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
        ]);
        c
    } else {
        let mut c = Command::new("sh");
        c.arg("-c");
        c
    };
    cmd.arg(line)
        .arg(crm_bin())
        .arg(dir)
        .args(args)
        .env_remove("CRM_HOME")
        .env_remove("CRM_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("sh runs")
}

/// As a user the replica's permissions bind.
const NOBODY: Way<'static> = Way {
    prefix: "",
    unprivileged: true,
};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A replica with one account, readable by anyone.
fn replica() -> (Replica, String) {
    let r = Replica::init("alice", "laptop");
    let id = r.add("account", &["--name", "星光贸易", "--notes", "first visit"]);
    std::fs::set_permissions(r.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the directory");
    (r, id)
}

fn set_mode(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

/// Every read works; a write fails with `expected` in its message, never "corrupted"; the
/// replica is unchanged.
fn reads_work_and_writes_say_why(dir: &Path, id: &str, way: Way<'_>, expected: &str) {
    for args in reads(id) {
        let out = run(dir, &args, way);
        assert!(
            out.status.success(),
            "crm {args:?} failed: {}",
            text(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "crm {args:?} printed nothing");
    }
    let shown = run(dir, &["show".into(), id.into(), "--json".into()], way);
    assert!(text(&shown.stdout).contains("first visit"));

    let write = run(
        dir,
        &["account".into(), "add".into(), "--name".into(), "X".into()],
        way,
    );
    let stderr = text(&write.stderr);
    assert_eq!(write.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(expected) && !stderr.contains("corrupt"),
        "{stderr}"
    );
}

/// Issue 12, failure 7: a read-only replica file was reported as "corrupted or not an SQLite
/// database", and a user might delete a good replica after reading that.
#[test]
fn a_read_only_replica_file_is_read_and_said_to_be_read_only() {
    let (r, id) = replica();
    let db = r.path().join("replica.db");
    set_mode(&db, 0o444);
    reads_work_and_writes_say_why(r.path(), &id, NOBODY, "read-only");
    set_mode(&db, 0o644);
    assert_eq!(r.list("account").len(), 1);
}

/// Issue 12, failure 7: the same in a read-only directory, where SQLite cannot make the
/// files a WAL reader shares.
#[test]
fn a_replica_in_a_read_only_directory_is_read_and_said_to_be_read_only() {
    let (r, id) = replica();
    let db = r.path().join("replica.db");
    set_mode(&db, 0o444);
    set_mode(r.path(), 0o555);
    reads_work_and_writes_say_why(r.path(), &id, NOBODY, "read-only");
    set_mode(r.path(), 0o755);
    set_mode(&db, 0o644);
    assert_eq!(r.list("account").len(), 1);
}

/// Issue 12, failure 7: with the disk full even reads failed (opening wrote, and SQLite
/// could not make its shared-memory file).
#[test]
fn reads_work_with_the_disk_full() {
    let (r, id) = replica();
    let full = Way {
        prefix: "trap '' XFSZ; ulimit -f 0;",
        unprivileged: false,
    };
    reads_work_and_writes_say_why(r.path(), &id, full, "disk is full");
    assert_eq!(r.list("account").len(), 1);
    // Writable again once there is room.
    r.add("account", &["--name", "After"]);
}
