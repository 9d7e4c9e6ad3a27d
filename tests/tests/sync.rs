//! Sync through a real relay: the `crm-relay` and `crm` binaries as separate processes on
//! loopback, with real replica files, real WebSocket connections, and real kills, on each of
//! the relay's storage backends (SQLite, and a fresh PostgreSQL database).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crm_tests::{Backend, KINDS, Relay, Replica};
use serde_json::Value;

crm_tests::on_every_backend!(
    three_devices_converge_through_a_relay,
    live_changes_reach_a_watching_device,
    workspaces_are_isolated_and_bad_tokens_refused,
    the_relay_restarts_gracefully_and_devices_carry_on,
    acknowledged_changes_survive_relay_kills,
    a_device_killed_during_a_pull_stays_consistent,
    a_fresh_device_loads_the_relays_compacted_documents,
);

/// Every record of every kind, by id: what a user could see.
fn everything(r: &Replica) -> Vec<Vec<Value>> {
    KINDS.iter().map(|k| r.list_by_id(k)).collect()
}

fn joined(relay: &Relay, workspace: &str, user: &str, device: &str) -> Replica {
    let r = Replica::init(user, device);
    let token = relay.token(workspace, user);
    r.ok(&["join", &relay.url(), "--token", &token]);
    r
}

fn sync(r: &Replica) -> Value {
    r.json(&["sync"])
}

fn three_devices_converge_through_a_relay(backend: Backend) {
    let relay = Relay::start_on(backend);
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    let b = joined(&relay, &ws, "bob", "phone");
    let c = joined(&relay, &ws, "carol", "desktop");
    let acme = a.add(
        "account",
        &["--name", "深圳星光贸易有限公司", "--tag", "key"],
    );
    let contact = a.add(
        "contact",
        &[
            "--last-name",
            "王",
            "--first-name",
            "芳",
            "--account",
            &acme,
        ],
    );
    assert_eq!(sync(&a)["pushed"].as_u64().map(|n| n >= 2), Some(true));
    sync(&b);
    sync(&c);
    assert_eq!(
        b.json(&["account", "show", &acme])["name"],
        "深圳星光贸易有限公司"
    );

    // Everyone offline: different fields, the same field, tags, notes, new records.
    a.ok(&[
        "account",
        "edit",
        &acme,
        "--industry",
        "retail",
        "--grade",
        "vip",
        "--tag",
        "north",
        "--notes",
        "alice's notes",
    ]);
    b.ok(&[
        "account",
        "edit",
        &acme,
        "--website",
        "xingguang.cn",
        "--grade",
        "key",
        "--tag",
        "south",
        "--append-notes",
        "bob was here",
    ]);
    c.ok(&["account", "edit", &acme, "--grade", "low", "--untag", "key"]);
    c.ok(&["contact", "edit", &contact, "--title", "采购经理"]);
    for (r, name) in [
        (&a, "From laptop"),
        (&b, "From phone"),
        (&c, "From desktop"),
    ] {
        r.add("account", &["--name", name]);
        r.add("ticket", &["--subject", &format!("ticket {name}")]);
    }
    for r in [&a, &b, &c, &a, &b] {
        sync(r);
    }
    let reference = everything(&a);
    assert_eq!(everything(&b), reference);
    assert_eq!(everything(&c), reference);
    let shown = a.json(&["account", "show", &acme]);
    assert_eq!(shown["industry"], "retail");
    assert_eq!(shown["website"], "xingguang.cn");
    assert_eq!(shown["tags"], serde_json::json!(["north", "south"]));
    let notes = shown["notes"].as_str().expect("notes");
    assert!(
        notes.contains("alice's notes") && notes.contains("bob was here"),
        "{notes}"
    );
    assert_eq!(
        shown["conflicts"]["grade"].as_array().map(Vec::len),
        Some(3)
    );
    assert_eq!(a.json(&["contact", "show", &contact])["title"], "采购经理");
    // Ticket numbers stay per device (provisional) and all three tickets exist everywhere.
    assert_eq!(b.list("ticket").len(), 3);
    for r in [&a, &b, &c] {
        assert_eq!(r.json(&["conflicts"]).as_array().map(Vec::len), Some(1));
        assert_eq!(r.json(&["status"])["pending"], 0);
    }
    // Resolve on one device; it clears everywhere.
    c.ok(&["resolve", &acme, "grade", "vip"]);
    for r in [&c, &a, &b] {
        sync(r);
    }
    for r in [&a, &b, &c] {
        assert_eq!(r.json(&["conflicts"]), serde_json::json!([]));
        assert_eq!(r.json(&["account", "show", &acme])["grade"], "vip");
    }
    // Nothing new: a reconnect pulls and pushes nothing.
    let again = sync(&a);
    assert_eq!(
        (again["pushed"].as_u64(), again["pulled"].as_u64()),
        (Some(0), Some(0))
    );
}

fn live_changes_reach_a_watching_device(backend: Backend) {
    let relay = Relay::start_on(backend);
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    let b = joined(&relay, &ws, "bob", "phone");
    let mut watcher = b.spawn(&["sync", "--watch"]);
    let id = a.add("account", &["--name", "Live Ltd"]);
    sync(&a);
    let deadline = Instant::now() + Duration::from_secs(20);
    let arrived = loop {
        let out = b.run(&["account", "show", &id, "--json"]);
        if out.status.success() {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // And a local edit on the watching device is pushed without another command.
    if arrived {
        b.ok(&["account", "edit", &id, "--industry", "from the watcher"]);
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    let pushed = arrived
        && loop {
            sync(&a);
            if a.json(&["account", "show", &id])["industry"] == "from the watcher" {
                break true;
            }
            if Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_millis(100));
        };
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(arrived, "the live change did not reach the watching device");
    assert!(pushed, "the watching device did not push its local edit");
}

fn workspaces_are_isolated_and_bad_tokens_refused(backend: Backend) {
    let relay = Relay::start_on(backend);
    let acme = relay.workspace("acme");
    let other = relay.workspace("other");
    let a = joined(&relay, &acme, "alice", "laptop");
    let b = joined(&relay, &other, "eve", "laptop");
    a.add("account", &["--name", "ACME secret"]);
    sync(&a);
    sync(&b);
    assert!(
        b.list("account").is_empty(),
        "a device of another workspace must receive nothing"
    );

    // A made-up token, and a revoked one: clear error, exit 1, local work stays pending.
    let c = Replica::init("mallory", "laptop");
    let fake = format!("crm1.{acme}.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    c.ok(&["join", &relay.url(), "--token", &fake]);
    c.add("account", &["--name", "never leaves"]);
    let out = c.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("401") || err.contains("unauthenticated"),
        "{err}"
    );
    assert!(c.json(&["status"])["pending"].as_u64() > Some(0));

    let devices = relay.admin(&["device", "list", "--workspace", "acme"]);
    let alice = devices
        .as_array()
        .expect("devices")
        .iter()
        .find(|d| d["user"] == "alice")
        .expect("alice's device")["id"]
        .as_str()
        .expect("id")
        .to_string();
    relay.admin(&["device", "revoke", &alice]);
    a.add("account", &["--name", "after revoke"]);
    let out = a.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("revoked"));
    assert_eq!(
        a.json(&["status"])["pending"].as_u64().map(|n| n > 0),
        Some(true)
    );

    // A bad token format is a usage error; an unreachable relay a runtime error.
    let out = c.run(&["join", &relay.url(), "--token", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
    let d = Replica::init("dave", "laptop");
    let token = relay.token(&acme, "dave");
    d.ok(&["join", "127.0.0.1:9", "--token", &token]);
    let out = d.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

fn the_relay_restarts_gracefully_and_devices_carry_on(backend: Backend) {
    let mut relay = Relay::start_on(backend);
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    let b = joined(&relay, &ws, "bob", "phone");
    for i in 0..30 {
        a.add("account", &["--name", &format!("before restart {i}")]);
    }
    sync(&a);
    let status = relay.terminate();
    assert!(status.success(), "SIGTERM must exit cleanly: {status}");
    a.add("account", &["--name", "while the relay was down"]);
    let out = a.run(&["sync"]);
    assert_eq!(out.status.code(), Some(1), "no relay: the sync must fail");
    relay.restart();
    sync(&a);
    sync(&b);
    sync(&a);
    assert_eq!(b.list("account").len(), 31);
    assert_eq!(everything(&a), everything(&b));
}

/// The relay killed with SIGKILL again and again while a device pushes in a loop: every
/// change a `crm sync` reported as acknowledged survives and reaches a fresh device.
fn acknowledged_changes_survive_relay_kills(backend: Backend) {
    let kills: usize = std::env::var("CRM_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut relay = Relay::start_on(backend);
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    let mut acknowledged: BTreeSet<String> = BTreeSet::new();
    let mut written: Vec<String> = Vec::new();
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut i = 0;
    for _ in 0..kills {
        // A few pushes, then a kill at a varying moment during the next one.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        for _ in 0..3 {
            let name = format!("account {i}");
            i += 1;
            a.add("account", &["--name", &name, "--notes", &"x".repeat(200)]);
            written.push(name);
            if a.run(&["sync"]).status.success() {
                acknowledged.extend(written.iter().cloned());
            }
        }
        let name = format!("account {i}");
        i += 1;
        a.add("account", &["--name", &name]);
        written.push(name);
        let mut pushing = a
            .command(&["sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("crm sync");
        std::thread::sleep(Duration::from_millis(rng % 40));
        relay.kill();
        let status = pushing.wait().expect("crm sync exit");
        if status.success() {
            acknowledged.extend(written.iter().cloned());
        }
        relay.restart();
    }
    assert!(
        acknowledged.len() >= kills,
        "the loop must get pushes through: {}",
        acknowledged.len()
    );
    // A fresh device gets every acknowledged change.
    let fresh = joined(&relay, &ws, "auditor", "fresh");
    sync(&fresh);
    let names: BTreeSet<String> = fresh
        .list("account")
        .iter()
        .filter_map(|r| r["name"].as_str().map(String::from))
        .collect();
    let missing: Vec<&String> = acknowledged.difference(&names).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    // And once the device syncs again, everything it wrote is there too.
    sync(&a);
    sync(&fresh);
    assert_eq!(fresh.list("account").len(), written.len());
}

/// A device killed while pulling a big workspace is left consistent: its projections match
/// its documents, and its cursor is never ahead of what it applied (the next sync completes
/// the replica exactly).
fn a_device_killed_during_a_pull_stays_consistent(backend: Backend) {
    let relay = Relay::start_on(backend);
    let ws = relay.workspace("acme");
    let source = Replica::init("sam", "source");
    source.ok(&["seed", "--accounts", "80"]);
    let token = relay.token(&ws, "sam");
    source.ok(&["join", &relay.url(), "--token", &token]);
    sync(&source);
    let target = joined(&relay, &ws, "bob", "phone");
    let mut partial = 0;
    for delay in [30u64, 120, 250, 400, 700] {
        let mut pulling = target
            .command(&["sync"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("crm sync");
        std::thread::sleep(Duration::from_millis(delay));
        let _ = pulling.kill();
        let _ = pulling.wait();
        let before = everything(&target);
        let records: usize = before.iter().map(Vec::len).sum();
        if records > 1 && records < everything(&source).iter().map(Vec::len).sum::<usize>() {
            partial += 1;
        }
        target.ok(&["reindex"]);
        assert_eq!(
            everything(&target),
            before,
            "projections after a kill at {delay} ms"
        );
    }
    // The next sync completes the replica exactly: nothing was skipped.
    sync(&target);
    sync(&source);
    assert_eq!(everything(&target), everything(&source));
    eprintln!("{partial} of 5 kills left a partly pulled replica");
}

fn a_fresh_device_loads_the_relays_compacted_documents(backend: Backend) {
    let relay = Relay::start_on(backend);
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    let mut accounts = Vec::new();
    for i in 0..12 {
        let id = a.add(
            "account",
            &["--name", &format!("深圳星光贸易 {i}"), "--tag", "key"],
        );
        a.ok(&[
            "account",
            "edit",
            &id,
            "--grade",
            "vip",
            "--notes",
            "met at the fair",
        ]);
        accounts.push(id);
    }
    let deal = a.add(
        "opportunity",
        &["--name", "星光 renewal", "--account", &accounts[0]],
    );
    a.ok(&["opportunity", "stage", &deal, "proposal"]);
    sync(&a);

    // The relay compacts in the background; wait until it has, as a relay up for a while has.
    let deadline = Instant::now() + Duration::from_secs(30);
    // (The stale gauge is recounted at most once a second, so the compacted count is checked.)
    while relay.metric("crm_relay_documents_stale") != Some(0.0)
        || relay
            .metric("crm_relay_documents_compacted_total")
            .unwrap_or(0.0)
            < 14.0
    {
        assert!(Instant::now() < deadline, "the relay did not compact");
        std::thread::sleep(Duration::from_millis(50));
    }
    // One more edit after the compaction: it comes beside its document's snapshot.
    a.ok(&["account", "edit", &accounts[1], "--industry", "retail"]);
    sync(&a);

    let b = joined(&relay, &ws, "bob", "phone");
    let report = sync(&b);
    assert!(
        report["bootstrapped"].as_u64().unwrap_or(0) >= 14,
        "{report}"
    );
    assert_eq!(report["reset"], false, "{report}");
    sync(&a);
    assert_eq!(everything(&a), everything(&b));
    assert_eq!(
        b.json(&["account", "show", &accounts[1]])["industry"],
        "retail"
    );
    let found = b.json(&["search", "星光"]);
    assert!(found.as_array().is_some_and(|f| f.len() >= 13), "{found}");

    // The bootstrapped device edits and syncs like any other; a third device replays it all.
    b.ok(&["account", "edit", &accounts[0], "--grade", "normal"]);
    assert_eq!(sync(&b)["pushed"].as_u64(), Some(1));
    sync(&a);
    assert_eq!(
        a.json(&["account", "show", &accounts[0]])["grade"],
        "normal"
    );
    let c = joined(&relay, &ws, "carol", "desktop");
    sync(&c);
    sync(&a);
    sync(&b);
    assert_eq!(everything(&a), everything(&c));
    assert_eq!(everything(&b), everything(&c));
    // Nothing the bootstrap stored in snapshots only is lost for a peer: a replica merging
    // from the bootstrapped one gets every record.
    let d = Replica::init("dave", "tablet");
    d.merge_from(&b);
    for id in &accounts {
        assert_eq!(d.json(&["account", "show", id])["id"], id.as_str());
    }
}
