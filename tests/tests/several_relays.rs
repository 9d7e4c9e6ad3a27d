//! Several relay processes on one PostgreSQL database, each a real `crm-relay serve`, with
//! devices connected to each: a push stored by one process reaches devices of the other
//! live; a process killed during a push loop loses nothing acknowledged, its devices carry
//! on through the other address `crm join` was given; concurrent pushers on both processes
//! leave one contiguous log.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crm_tests::{Backend, Relay, Replica};
use serde_json::Value;

fn joined(url: &str, relay: &Relay, workspace: &str, user: &str, device: &str) -> Replica {
    let r = Replica::init(user, device);
    let token = relay.token(workspace, user);
    r.ok(&["join", url, "--token", &token]);
    r
}

fn sync(r: &Replica) -> Value {
    r.json(&["sync"])
}

/// Waits until record `id` is on `r` (its `crm sync --watch` applied it), or fails with `why`.
fn arrives(r: &Replica, id: &str, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !r.run(&["show", id, "--json"]).status.success() {
        assert!(Instant::now() < deadline, "{why}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn names(r: &Replica) -> BTreeSet<String> {
    r.list("account")
        .iter()
        .filter_map(|a| a["name"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_push_to_one_process_reaches_a_device_watching_the_other_live() {
    let a_relay = Relay::start_on(Backend::Postgres);
    let b_relay = a_relay.another_process();
    let ws = a_relay.workspace("acme");
    let a = joined(&a_relay.url(), &a_relay, &ws, "alice", "laptop");
    let b = joined(&b_relay.url(), &a_relay, &ws, "bob", "phone");
    sync(&b);
    let mut watcher = b.spawn(&["sync", "--watch"]);
    // The watcher is connected to the second process before the pushes.
    b_relay.wait_for_sessions(1);
    for i in 0..5 {
        let id = a.add("account", &["--name", &format!("华南 {i}")]);
        sync(&a);
        arrives(
            &b,
            &id,
            "a change stored through one process never reached the other's device",
        );
    }
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(names(&a), names(&b));
}

#[test]
fn a_process_killed_during_a_push_loop_loses_nothing_acknowledged() {
    let mut a_relay = Relay::start_on(Backend::Postgres);
    let b_relay = a_relay.another_process();
    let ws = a_relay.workspace("acme");
    // The device knows both addresses: the first that answers is used.
    let both = format!("{},{}", a_relay.url(), b_relay.url());
    let a = joined(&both, &a_relay, &ws, "alice", "laptop");
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let mut written: Vec<String> = Vec::new();
    for i in 0..24 {
        let name = format!("account {i}");
        a.add("account", &["--name", &name]);
        written.push(name);
        if i == 12 {
            // Killed in the middle of a push.
            let mut pushing = a
                .command(&["sync"])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("crm sync");
            std::thread::sleep(Duration::from_millis(15));
            a_relay.kill();
            if pushing.wait().expect("crm sync exit").success() {
                acknowledged.extend(written.iter().cloned());
            }
            continue;
        }
        let out = a.run(&["sync", "--json"]);
        assert!(
            out.status.success(),
            "with one process gone, sync goes through the other: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        acknowledged.extend(written.iter().cloned());
    }
    let fresh = joined(&b_relay.url(), &b_relay, &ws, "auditor", "fresh");
    sync(&fresh);
    let seen = names(&fresh);
    let missing: Vec<&String> = acknowledged.difference(&seen).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert_eq!(
        seen.len(),
        written.len(),
        "every change went through in the end"
    );
}

#[test]
fn concurrent_pushers_on_two_processes_leave_one_contiguous_log() {
    let a_relay = Relay::start_on(Backend::Postgres);
    let b_relay = a_relay.another_process();
    let ws = a_relay.workspace("acme");
    let devices: Vec<Replica> = (0..4)
        .map(|i| {
            let relay = if i % 2 == 0 { &a_relay } else { &b_relay };
            joined(&relay.url(), &a_relay, &ws, &format!("user{i}"), "laptop")
        })
        .collect();
    std::thread::scope(|s| {
        for (i, d) in devices.iter().enumerate() {
            s.spawn(move || {
                for n in 0..8 {
                    d.add("account", &["--name", &format!("{i}/{n}")]);
                    sync(d);
                }
            });
        }
    });
    for d in &devices {
        sync(d);
    }
    let reference = names(&devices[0]);
    assert_eq!(reference.len(), 32);
    for d in &devices {
        assert_eq!(names(d), reference);
    }
    let mut client = postgres::Client::connect(
        a_relay.database_url().expect("a PostgreSQL relay"),
        postgres::NoTls,
    )
    .expect("connect");
    let seqs: Vec<i64> = client
        .query("SELECT seq FROM changes ORDER BY seq", &[])
        .expect("the log")
        .iter()
        .map(|r| r.get(0))
        .collect();
    let expected: Vec<i64> = (1..=i64::try_from(seqs.len()).expect("small")).collect();
    assert_eq!(seqs, expected, "one contiguous log");
    let head: i64 = client
        .query_one("SELECT head FROM workspaces", &[])
        .expect("head")
        .get(0);
    assert_eq!(head, i64::try_from(seqs.len()).expect("small"));
}

/// The connection a process listens on is cut (a database restart, a proxy timeout): the
/// process listens again and raises every workspace to its stored head, so what was
/// committed meanwhile still reaches its devices.
#[test]
fn a_lost_listening_connection_misses_nothing() {
    let a_relay = Relay::start_on(Backend::Postgres);
    let b_relay = a_relay.another_process();
    let ws = a_relay.workspace("acme");
    let a = joined(&a_relay.url(), &a_relay, &ws, "alice", "laptop");
    let b = joined(&b_relay.url(), &a_relay, &ws, "bob", "phone");
    sync(&b);
    let mut watcher = b.spawn(&["sync", "--watch"]);
    b_relay.wait_for_sessions(1);
    let mut admin = postgres::Client::connect(
        a_relay.database_url().expect("a PostgreSQL relay"),
        postgres::NoTls,
    )
    .expect("connect");
    let cut: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query LIKE 'LISTEN%'",
            &[],
        )
        .expect("cut the listeners")
        .get(0);
    assert!(cut >= 2, "both processes listen: {cut}");
    // Committed while nobody listens.
    let id = a.add("account", &["--name", "while deaf"]);
    sync(&a);
    arrives(
        &b,
        &id,
        "a change committed while the listener was down never arrived",
    );
    let _ = watcher.kill();
    let _ = watcher.wait();
}

/// An admin's device changes a rep's team through one process; the rep's device, watching
/// the other, is told at once (the other process notices the workspace's access version
/// move in the database), re-syncs its scope and receives the team's records, live.
#[test]
fn an_access_change_made_through_one_process_reaches_a_device_watching_the_other() {
    let a_relay = Relay::start_on(Backend::Postgres);
    let b_relay = a_relay.another_process();
    let ws = a_relay.workspace("acme");
    for team in ["South", "North"] {
        a_relay.admin(&["team", "add", "--workspace", &ws, "--name", team]);
    }
    let teams = a_relay.admin(&["team", "list", "--workspace", &ws]);
    let south = teams
        .as_array()
        .and_then(|t| t.iter().find(|t| t["name"] == "South"))
        .and_then(|t| t["id"].as_str())
        .expect("South")
        .to_string();
    a_relay.admin(&[
        "user",
        "add",
        "--workspace",
        &ws,
        "--name",
        "ola",
        "--role",
        "sales_rep",
        "--team",
        "North",
    ]);
    let admin = joined(&a_relay.url(), &a_relay, &ws, "root", "admin-laptop");
    sync(&admin);
    let shared = admin.add(
        "account",
        &["--name", "南方客户", "--set", &format!("teams={south}")],
    );
    sync(&admin);
    let ola = joined(&b_relay.url(), &a_relay, &ws, "ola", "phone");
    sync(&ola);
    assert!(
        !ola.run(&["show", &shared, "--json"]).status.success(),
        "North does not see South's account"
    );
    let ola_id = ola.json(&["whoami"])["user_id"]
        .as_str()
        .expect("ola's id")
        .to_string();
    let mut watcher = ola.spawn(&["sync", "--watch"]);
    b_relay.wait_for_sessions(1);
    // The admin's device moves ola to South: an ordinary edit of her user record, pushed to
    // the first process.
    admin.ok(&["user", "edit", &ola_id, "--set", &format!("teams={south}")]);
    sync(&admin);
    arrives(
        &ola,
        &shared,
        "a team change pushed through one process never reached the device on the other",
    );
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert_eq!(ola.json(&["whoami"])["teams"][0], south.as_str());
}
