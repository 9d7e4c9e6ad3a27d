//! The real `crm-relay` binary: admin commands on a real data directory, their JSON shapes
//! and exit codes, and `serve` answering and stopping on SIGTERM.

use std::io::{Read as _, Write as _};
use std::path::Path;

mod common;

use assert_cmd::Command;
use serde_json::Value;

struct Relay {
    dir: tempfile::TempDir,
}

impl Relay {
    fn new() -> Relay {
        Relay {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }

    fn cmd(&self, args: &[&str]) -> std::process::Output {
        Command::cargo_bin("crm-relay")
            .expect("crm-relay binary")
            .env_remove("CRM_RELAY_DATA")
            .arg("--data")
            .arg(self.data())
            .args(args)
            .output()
            .expect("run")
    }

    /// Runs a command that must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args);
        assert!(
            out.status.success(),
            "crm-relay {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: bad JSON {e}: {out}"))
    }

    /// Runs a command that must fail with `code` and a one-line error; returns the line.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.cmd(args);
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        assert!(stderr.starts_with("error: "), "{stderr}");
        stderr
    }
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

#[test]
fn workspaces_are_created_and_listed() {
    let relay = Relay::new();
    let id = relay.ok(&["workspace", "create", "acme"]);
    let id = id.trim();
    assert!(uuid::Uuid::try_parse(id).is_ok(), "{id}");
    let created = relay.json(&["workspace", "create", "华南销售"]);
    assert_eq!(keys(&created), ["created_at", "head", "id", "name"]);
    assert_eq!(created["name"], "华南销售");
    assert_eq!(created["head"], 0);

    let list = relay.json(&["workspace", "list"]);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["id"], id);
    assert_eq!(list[0]["name"], "acme");
    assert_eq!(list[1]["id"], created["id"]);
    let table = relay.ok(&["workspace", "list"]);
    assert!(
        table.contains("acme") && table.contains("华南销售"),
        "{table}"
    );

    let error = relay.fails(&["workspace", "create", "acme"], 2);
    assert!(error.contains("already exists"), "{error}");
    relay.fails(&["workspace", "create", ""], 2);
}

#[test]
fn a_device_token_is_printed_once_and_only_its_hash_is_kept() {
    let relay = Relay::new();
    let ws = relay
        .ok(&["workspace", "create", "acme"])
        .trim()
        .to_string();
    relay.ok(&[
        "user",
        "add",
        "--workspace",
        "acme",
        "--name",
        "alice",
        "--role",
        "sales_rep",
    ]);
    let out = relay.ok(&["device", "add", "--workspace", "acme", "--user", "alice"]);
    let token = out
        .lines()
        .find_map(|l| l.strip_prefix("token"))
        .expect("a token line")
        .trim()
        .to_string();
    assert!(token.starts_with(&format!("crm1.{ws}.")), "{token}");
    assert_eq!(token.len(), "crm1.".len() + 36 + 1 + 43);

    relay.ok(&[
        "user",
        "add",
        "--workspace",
        &ws,
        "--name",
        "bob",
        "--role",
        "support_agent",
    ]);
    let added = relay.json(&["device", "add", "--workspace", &ws, "--user", "bob"]);
    assert_eq!(
        keys(&added),
        [
            "created_at",
            "id",
            "last_seen_at",
            "revoked_at",
            "role",
            "token",
            "user",
            "user_id",
            "wiped_at",
            "workspace"
        ]
    );
    assert_eq!(added["workspace"], ws.as_str());
    assert_eq!(added["role"], "support_agent");
    assert_eq!(added["revoked_at"], Value::Null);
    let bob_token = added["token"].as_str().expect("token").to_string();

    // Listing never shows a token.
    let list = relay.json(&["device", "list"]);
    let list = list.as_array().expect("array");
    assert_eq!(list.len(), 2);
    assert_eq!(
        keys(&list[0]),
        [
            "created_at",
            "id",
            "last_seen_at",
            "revoked_at",
            "role",
            "user",
            "user_id",
            "wiped_at",
            "workspace"
        ]
    );
    assert_eq!(list[0]["user"], "alice");
    assert_eq!(list[0]["role"], "sales_rep");
    let table = relay.ok(&["device", "list"]);
    assert!(!table.contains(&token) && !table.contains(&bob_token));

    // The database holds the SHA-256 of each token and never the token.
    let db = rusqlite::Connection::open(relay.data().join("relay.db")).expect("db");
    let hashes: Vec<Vec<u8>> = db
        .prepare("SELECT token_hash FROM devices WHERE user_id IS NOT NULL ORDER BY created_at")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(hashes, [sha256(&token), sha256(&bob_token)]);
    drop(db);
    for file in ["relay.db", "relay.db-wal"] {
        let bytes = std::fs::read(relay.data().join(file)).unwrap_or_default();
        for t in [&token, &bob_token] {
            assert!(
                !bytes.windows(t.len()).any(|w| w == t.as_bytes()),
                "a token is in {file}"
            );
        }
    }
}

fn sha256(text: &str) -> Vec<u8> {
    crm_relay::Token::hash_of(text).to_vec()
}

#[test]
fn devices_are_listed_per_workspace_and_revoked() {
    let relay = Relay::new();
    relay.ok(&["workspace", "create", "acme"]);
    let globex = relay
        .ok(&["workspace", "create", "globex"])
        .trim()
        .to_string();
    relay.ok(&[
        "user",
        "add",
        "--workspace",
        "acme",
        "--name",
        "alice",
        "--role",
        "sales_rep",
    ]);
    relay.ok(&[
        "user",
        "add",
        "--workspace",
        "globex",
        "--name",
        "gina",
        "--role",
        "admin",
    ]);
    let alice = relay.json(&["device", "add", "--workspace", "acme", "--user", "alice"]);
    relay.json(&["device", "add", "--workspace", "globex", "--user", "gina"]);
    let only = relay.json(&["device", "list", "--workspace", &globex]);
    let only = only.as_array().expect("array");
    assert_eq!(only.len(), 1);
    assert_eq!(only[0]["user"], "gina");
    assert_eq!(only[0]["role"], "admin");

    let id = alice["id"].as_str().expect("id");
    let revoked = relay.json(&["device", "revoke", id]);
    assert_eq!(revoked["id"], id);
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    let out = relay.ok(&["device", "revoke", id]);
    assert!(out.contains("revoked"), "{out}");
    let list = relay.json(&["device", "list", "--workspace", "acme"]);
    assert_eq!(
        list[0]["revoked_at"], revoked["revoked_at"],
        "the first revocation stands"
    );
}

#[test]
fn bad_input_fails_with_a_usage_exit_code_and_changes_nothing() {
    let relay = Relay::new();
    relay.ok(&["workspace", "create", "acme"]);
    let error = relay.fails(
        &[
            "user",
            "add",
            "--workspace",
            "acme",
            "--name",
            "a",
            "--role",
            "boss",
        ],
        2,
    );
    assert!(
        error.contains("sales_rep"),
        "the error names the roles: {error}"
    );
    let error = relay.fails(&["device", "add", "--workspace", "nope", "--user", "a"], 2);
    assert!(error.contains("nope"), "{error}");
    relay.fails(&["device", "add", "--workspace", "acme"], 2);
    relay.fails(&["device", "add", "--workspace", "acme", "--user", " "], 2);
    let error = relay.fails(
        &["device", "add", "--workspace", "acme", "--user", "zed"],
        2,
    );
    assert!(error.contains("user add"), "names the way out: {error}");
    relay.fails(&["device", "revoke", "not-a-uuid"], 2);
    relay.fails(&["device", "revoke", &uuid::Uuid::now_v7().to_string()], 2);
    relay.fails(&["device", "list", "--workspace", "nope"], 2);
    relay.fails(&["workspace", "frobnicate"], 2);
    assert_eq!(relay.json(&["device", "list"]), Value::Array(vec![]));

    // No --data at all.
    let out = Command::cargo_bin("crm-relay")
        .expect("binary")
        .env_remove("CRM_RELAY_DATA")
        .args(["workspace", "list"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--data"));
    // A data directory with no relay in it is a runtime error.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = Command::cargo_bin("crm-relay")
        .expect("binary")
        .env("CRM_RELAY_DATA", empty.path())
        .args(["device", "list"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no relay data"));
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let relay = Relay::new();
    relay.ok(&["workspace", "create", "acme"]);
    // With the compactor (the default), and without.
    for extra in [&[][..], &["--no-compact"][..]] {
        let data = relay.data().display().to_string();
        let serving = common::Serving::start(&["--data", &data], extra);
        let addr = &serving.addr;
        let mut http = std::net::TcpStream::connect(addr).expect("connect");
        http.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        write!(
            http,
            "GET /healthz HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("write");
        let mut response = String::new();
        http.read_to_string(&mut response).expect("read");
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.ends_with("ok"), "{response}");
        serving.stop();
    }
}

/// Regression: `serve` on PostgreSQL aborted at shutdown (exit code 134): the synchronous
/// client's connections were closed on a thread of the async runtime, where it cannot block.
#[test]
fn serve_on_postgres_stops_with_exit_code_0_on_sigterm() {
    let db = common::TestDatabase::create();
    let out = Command::cargo_bin("crm-relay")
        .expect("binary")
        .env_remove("CRM_RELAY_DATA")
        .args(["--database", &db.url, "workspace", "create", "acme"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the compactor the server's state held the store's last reference.
    for extra in [&[][..], &["--no-compact"][..]] {
        common::Serving::start(&["--database", &db.url], extra).stop();
    }
}
