//! Helpers for the cross-process tests in `tests/*.rs`: they find the real `crm` binary and
//! run it as separate OS processes on replica directories, the way a user (or `crm serve`
//! next to the CLI) does.
//!
//! The binary is not built here. `cargo test --workspace` builds it, because crm-cli has
//! integration tests; it lands in `target/<profile>/crm`, next to the `deps/` directory that
//! holds the test executables. Set `CRM_BIN` to use another binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;

/// The environment variable that overrides where the `crm` binary is.
pub const BIN_ENV: &str = "CRM_BIN";

/// Every record kind, as the CLI names them.
pub const KINDS: [&str; 18] = [
    "user",
    "team",
    "account",
    "account-relation",
    "contact",
    "lead",
    "opportunity",
    "activity",
    "campaign",
    "campaign-member",
    "ticket",
    "article",
    "survey",
    "survey-response",
    "product",
    "quote",
    "contract",
    "order",
];

/// The path of the `crm` binary: `$CRM_BIN`, else `target/<profile>/crm` next to the running
/// test executable (`target/<profile>/deps/NAME-HASH`). Panics with what to do when missing.
pub fn crm_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(find_bin)
}

fn find_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os(BIN_ENV).filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "{BIN_ENV}={} is not a file; point it at a built `crm` binary or unset it",
            bin.display()
        );
        return bin;
    }
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let name = format!("crm{}", std::env::consts::EXE_SUFFIX);
    // deps/ first, then target/<profile>/ (and one more level, for a test run from there).
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(&name))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the `crm` binary was not found in target/<profile>/ above {}: build it first \
                 with `cargo test --workspace` (which builds crm-cli's binary), or \
                 `cargo build -p crm-cli`, or set {BIN_ENV} to its path",
                exe.display()
            )
        })
}

/// A `crm` command on the replica in `dir`, with `CRM_HOME` removed so only `--data-dir`
/// counts. Stdin is closed.
pub fn crm(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(crm_bin());
    cmd.env_remove("CRM_HOME")
        .env_remove("RUST_LOG")
        .arg("--data-dir")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null());
    cmd
}

/// Asserts that a finished `crm` command succeeded; returns its stdout.
pub fn expect_success(what: &str, out: &Output) -> String {
    assert!(
        out.status.success(),
        "crm {what} exited with {}: stderr {:?} stdout {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout),
    );
    String::from_utf8(out.stdout.clone()).expect("crm prints UTF-8")
}

/// Parses a command's JSON output.
pub fn parse_json(what: &str, stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("crm {what}: bad JSON ({e}): {stdout}"))
}

/// A replica in a temporary data directory, removed when dropped.
#[derive(Debug)]
pub struct Replica {
    dir: tempfile::TempDir,
    pub device: String,
}

impl Replica {
    /// `crm init --user USER --device DEVICE` in a fresh temporary directory.
    pub fn init(user: &str, device: &str) -> Replica {
        let r = Replica::empty(device);
        r.ok(&["init", "--user", user, "--device", device]);
        r
    }

    /// A fresh temporary directory with no replica in it yet (for `crm demo`).
    pub fn empty(device: &str) -> Replica {
        Replica {
            dir: tempfile::Builder::new()
                .prefix("crm-tests-")
                .tempdir()
                .expect("a temporary directory"),
            device: device.into(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The data directory as an argument for another replica's `merge-from`.
    pub fn arg(&self) -> &str {
        self.path().to_str().expect("a UTF-8 temporary path")
    }

    /// A `crm` command on this replica, not started.
    pub fn command(&self, args: &[&str]) -> Command {
        crm(self.path(), args)
    }

    /// Runs a command to completion, whatever its outcome.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("crm starts")
    }

    /// Starts a command without waiting for it; its output is discarded.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("crm starts")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        expect_success(&format!("{args:?} on {}", self.device), &self.run(args))
    }

    /// Runs a command with `--json` that must succeed; returns the parsed output.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        parse_json(&format!("{args:?} on {}", self.device), &out)
    }

    /// `crm KIND add ARGS…`; returns the new record's id.
    pub fn add(&self, kind: &str, args: &[&str]) -> String {
        let mut all = vec![kind, "add"];
        all.extend_from_slice(args);
        let id = self.ok(&all).trim().to_string();
        assert_eq!(id.len(), 36, "crm {kind} add printed {id:?}, not an id");
        id
    }

    /// Every record of `kind`, archived ones too, as `crm KIND list` prints them.
    pub fn list(&self, kind: &str) -> Vec<Value> {
        match self.json(&[kind, "list", "--archived", "--limit", "1000000"]) {
            Value::Array(rows) => rows,
            other => panic!("crm {kind} list --json printed {other}, not an array"),
        }
    }

    /// Every record of `kind`, sorted by id.
    pub fn list_by_id(&self, kind: &str) -> Vec<Value> {
        let mut rows = self.list(kind);
        rows.sort_by(|a, b| id_of(a).cmp(id_of(b)));
        rows
    }

    /// `merge-from OTHER` (this replica takes the other's changes); returns the JSON report.
    pub fn merge_from(&self, other: &Replica) -> Value {
        self.json(&["merge-from", other.arg()])
    }
}

/// The `id` of a JSON record.
pub fn id_of(record: &Value) -> &str {
    record["id"]
        .as_str()
        .unwrap_or_else(|| panic!("record without an id: {record}"))
}
