//! A replica in a temporary directory driven through the real `crm` binary, shared by the
//! CLI's end-to-end tests.

// Each test binary uses a part of this.
#![allow(dead_code)]

use std::path::Path;

use assert_cmd::Command;
use serde_json::Value;

/// The kinds whose lists a refused command must leave as they were, unless a test names its
/// own with [`Replica::watching`].
const WATCHED: &[&str] = &["account", "contact", "opportunity", "ticket", "activity"];

pub(crate) struct Replica {
    dir: tempfile::TempDir,
    watched: &'static [&'static str],
}

impl Replica {
    /// `crm init` for `user` on `device` in a fresh directory.
    pub(crate) fn new(user: &str, device: &str) -> Replica {
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Replica {
            dir,
            watched: WATCHED,
        };
        r.ok(&["init", "--user", user, "--device", device]);
        r
    }

    /// The kinds [`Replica::snapshot`] lists.
    pub(crate) fn watching(mut self, kinds: &'static [&'static str]) -> Replica {
        self.watched = kinds;
        self
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn path_str(&self) -> &str {
        self.path().to_str().expect("utf-8 path")
    }

    pub(crate) fn run(&self, args: &[&str]) -> std::process::Output {
        Command::cargo_bin("crm")
            .expect("crm binary")
            .env_remove("CRM_HOME")
            .arg("--data-dir")
            .arg(self.path())
            .args(args)
            .output()
            .expect("run crm")
    }

    /// Runs a command that must succeed; returns stdout.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "crm {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8 output")
    }

    /// Runs a command with `--json` that must succeed; returns what it printed.
    pub(crate) fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("crm {args:?}: bad JSON {e}: {out}"))
    }

    /// Runs a command that must fail with `code` and an `error` message; returns stderr.
    pub(crate) fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "crm {args:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8(out.stderr).expect("utf-8");
        assert!(err.starts_with("error"), "{err}");
        err
    }

    /// [`Replica::fails`], with the message on one line.
    pub(crate) fn fails_in_one_line(&self, args: &[&str], code: i32) -> String {
        let err = self.fails(args, code);
        assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
        err
    }

    /// Runs a command that must be refused (exit 2, one `error:` line) and change nothing a
    /// user can read; returns the message.
    pub(crate) fn refused(&self, args: &[&str]) -> String {
        let before = self.snapshot();
        let err = self.fails_in_one_line(args, 2);
        assert_eq!(before, self.snapshot(), "crm {args:?} changed the replica");
        err
    }

    /// `KIND add ARGS…`; returns the new record's id.
    pub(crate) fn add(&self, kind: &str, args: &[&str]) -> String {
        let mut all = vec![kind, "add"];
        all.extend_from_slice(args);
        self.ok(&all).trim().to_string()
    }

    /// Merges this replica and `other` both ways, as an offline device does on reconnect.
    pub(crate) fn merge_both_ways(&self, other: &Replica) {
        self.ok(&["merge-from", other.path_str(), "--both-ways"]);
    }

    /// The id of the user named `name`.
    pub(crate) fn user_id(&self, name: &str) -> String {
        let users = self.json(&["user", "list", "--name", name]);
        users[0]["id"].as_str().expect("user id").to_string()
    }

    /// Every list of the watched kinds and the conflicts: what a user can read, to prove a
    /// failed command changed nothing. SLA clocks are left out: they count down with the
    /// wall clock.
    pub(crate) fn snapshot(&self) -> Vec<Value> {
        self.watched
            .iter()
            .map(|k| self.json(&[k, "list", "--archived", "--limit", "1000"]))
            .chain(std::iter::once(self.json(&["conflicts"])))
            .map(|mut v| {
                for row in v.as_array_mut().into_iter().flatten() {
                    if let Some(o) = row.as_object_mut() {
                        o.remove("sla");
                    }
                }
                v
            })
            .collect()
    }
}

/// The `id` of a record printed as JSON.
pub(crate) fn id(v: &Value) -> String {
    v["id"].as_str().expect("id").to_string()
}
