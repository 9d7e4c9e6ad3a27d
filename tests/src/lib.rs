//! Helpers for the cross-process tests in `tests/*.rs`: they find the real `crm` binary and
//! run it as separate OS processes on replica directories, the way a user (or `crm serve`
//! next to the CLI) does.
//!
//! The binary is not built here. `cargo test --workspace` builds it, because crm-cli has
//! integration tests; it lands in `target/<profile>/crm`, next to the `deps/` directory that
//! holds the test executables. Set `CRM_BIN` to use another binary.

mod backend;

pub use backend::{Backend, TestDatabase};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, OnceLock};

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

    /// Every record of `kind`, sorted by id, without the SLA clocks of tickets.
    pub fn list_by_id(&self, kind: &str) -> Vec<Value> {
        let mut rows = self.list(kind);
        rows.sort_by(|a, b| id_of(a).cmp(id_of(b)));
        // A ticket's SLA clock (`minutes_left`) counts down with the wall clock, so two
        // listings a minute apart differ in it: it is not part of the replica's state.
        for row in &mut rows {
            if let Some(o) = row.as_object_mut() {
                o.remove("sla");
            }
        }
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

/// The path of another binary of the workspace (e.g. `crm-relay`), found like [`crm_bin`].
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    exe.ancestors()
        .skip(1)
        .take(3)
        .map(|dir| dir.join(&file))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the `{name}` binary was not found in target/<profile>/ above {}: build it \
                 first with `cargo test --workspace`",
                exe.display()
            )
        })
}

/// A real `crm-relay` process serving a data directory (SQLite) or a PostgreSQL database on a
/// loopback port.
#[derive(Debug)]
pub struct Relay {
    dir: tempfile::TempDir,
    /// The PostgreSQL database, shared by the relay processes of one test.
    db: Option<Arc<TestDatabase>>,
    child: Option<Child>,
    pub addr: String,
}

impl Relay {
    /// Starts a relay over SQLite on a free port.
    pub fn start() -> Relay {
        Self::start_on(Backend::Sqlite)
    }

    /// Starts a relay over a new store of `backend` on a free port.
    pub fn start_on(backend: Backend) -> Relay {
        let db = (backend == Backend::Postgres).then(|| Arc::new(TestDatabase::create()));
        let mut relay = Relay {
            dir: tempfile::tempdir().expect("tempdir"),
            db,
            child: None,
            addr: "127.0.0.1:0".into(),
        };
        relay.spawn();
        relay
    }

    /// Another relay process on the same PostgreSQL database, on a free port.
    pub fn another_process(&self) -> Relay {
        assert!(
            self.db.is_some(),
            "only PostgreSQL is shared by several processes"
        );
        let mut relay = Relay {
            dir: tempfile::tempdir().expect("tempdir"),
            db: self.db.clone(),
            child: None,
            addr: "127.0.0.1:0".into(),
        };
        relay.spawn();
        relay
    }

    pub fn backend(&self) -> Backend {
        if self.db.is_some() {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// The data directory of a relay over SQLite.
    pub fn data(&self) -> &Path {
        assert!(
            self.db.is_none(),
            "a PostgreSQL relay has no data directory"
        );
        self.dir.path()
    }

    /// `--data DIR` or `--database URL`: where this relay's store is.
    pub fn database_args(&self) -> Vec<std::ffi::OsString> {
        match &self.db {
            Some(db) => vec!["--database".into(), db.url.clone().into()],
            None => vec!["--data".into(), self.dir.path().into()],
        }
    }

    /// `sqlite:DIR` or the PostgreSQL URL: this relay's database as `--database` takes it.
    pub fn database(&self) -> String {
        match &self.db {
            Some(db) => db.url.clone(),
            None => format!("sqlite:{}", self.dir.path().display()),
        }
    }

    /// Stops the relay (SIGTERM), copies its database into a new store of `backend` with
    /// `crm-relay migrate`, and serves that on the same address. Returns the migration's
    /// JSON report.
    pub fn migrate_to(&mut self, backend: Backend) -> Value {
        let status = self.terminate();
        assert!(status.success(), "the relay must stop cleanly: {status}");
        let dir = tempfile::tempdir().expect("tempdir");
        let db = (backend == Backend::Postgres).then(|| Arc::new(TestDatabase::create()));
        let to = match &db {
            Some(db) => db.url.clone(),
            None => format!("sqlite:{}", dir.path().display()),
        };
        let out = Command::new(workspace_bin("crm-relay"))
            .args(["migrate", "--from", &self.database(), "--to", &to, "--json"])
            .stdin(Stdio::null())
            .output()
            .expect("run crm-relay migrate");
        let stdout = expect_success("crm-relay migrate", &out);
        self.dir = dir;
        self.db = db;
        self.spawn();
        parse_json("crm-relay migrate", &stdout)
    }

    /// A number from the relay's `/metrics`.
    pub fn metric(&self, name: &str) -> Option<f64> {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&self.addr).ok()?;
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut text = String::new();
        conn.read_to_string(&mut text).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Waits until the relay has at least `n` open sessions.
    pub fn wait_for_sessions(&self, n: usize) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while self.metric("crm_relay_connections").unwrap_or(0.0) < n as f64 {
            assert!(
                std::time::Instant::now() < deadline,
                "the relay did not get {n} sessions"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// The URL of a PostgreSQL relay's database.
    pub fn database_url(&self) -> Option<&str> {
        self.db.as_ref().map(|db| db.url.as_str())
    }

    /// The process id of the running relay.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn spawn(&mut self) {
        use std::io::BufRead;
        // The port of a killed relay is free again at once, but allow the OS a moment.
        for attempt in 0..50 {
            let mut child = Command::new(workspace_bin("crm-relay"))
                .args(self.database_args())
                .args(["serve", "--listen", &self.addr])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start crm-relay");
            let stdout = child.stdout.take().expect("stdout");
            let mut line = String::new();
            let _ = std::io::BufReader::new(stdout).read_line(&mut line);
            if let Some(addr) = line.trim().strip_prefix("listening on ") {
                self.addr = addr.to_string();
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(
                attempt < 49,
                "crm-relay did not start on {}: {line:?}",
                self.addr
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then wait for the graceful exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("relay running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
        child.wait().expect("relay exit")
    }

    /// Starts the relay again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// Runs an admin command against the relay's data; returns its JSON output.
    pub fn admin(&self, args: &[&str]) -> Value {
        let out = Command::new(workspace_bin("crm-relay"))
            .args(self.database_args())
            .args(args)
            .arg("--json")
            .stdin(Stdio::null())
            .output()
            .expect("run crm-relay");
        let stdout = expect_success(&format!("crm-relay {args:?}"), &out);
        parse_json("crm-relay", &stdout)
    }

    /// Creates a workspace; returns its id.
    pub fn workspace(&self, name: &str) -> String {
        self.admin(&["workspace", "create", name])["id"]
            .as_str()
            .expect("workspace id")
            .to_string()
    }

    /// Adds a device for `user`, an admin (added first when the directory lacks them);
    /// returns its token.
    pub fn token(&self, workspace: &str, user: &str) -> String {
        self.token_as(workspace, user, "admin")
    }

    /// Adds a device for `user` with `role` (the user is added first when the directory
    /// lacks them); returns its token.
    pub fn token_as(&self, workspace: &str, user: &str, role: &str) -> String {
        let users = self.admin(&["user", "list", "--workspace", workspace]);
        let known = users
            .as_array()
            .is_some_and(|u| u.iter().any(|u| u["name"] == user));
        if !known {
            self.admin(&[
                "user",
                "add",
                "--workspace",
                workspace,
                "--name",
                user,
                "--role",
                role,
            ]);
        }
        self.admin(&["device", "add", "--workspace", workspace, "--user", user])["token"]
            .as_str()
            .expect("token")
            .to_string()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Damages the newest stored change of record `id` in the replica in `dir` the way a failing
/// disk would: one flipped bit, chosen so that the bytes still parse as a change (what
/// Automerge's parser alone accepts; only the checksum tells). The replica must not be open
/// for writing elsewhere.
pub fn flip_newest_change_of(dir: &Path, id: &str) {
    let conn = rusqlite::Connection::open(dir.join("replica.db")).expect("replica.db");
    let (seq, good): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT c.seq, c.bytes FROM changes c JOIN documents d ON d.docno = c.docno
             WHERE d.id = ?1 ORDER BY c.seq DESC LIMIT 1",
            [id],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .expect("a change");
    let bad = (8..good.len())
        .rev()
        .find_map(|i| {
            let mut bytes = good.clone();
            bytes[i] ^= 0x01;
            crm_model::automerge::Change::try_from(bytes.as_slice())
                .is_ok()
                .then_some(bytes)
        })
        .expect("a flip that parses");
    conn.execute(
        "UPDATE changes SET bytes = ?2 WHERE seq = ?1",
        rusqlite::params![seq, bad],
    )
    .expect("flip");
}
