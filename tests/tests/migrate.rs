//! Moving a workspace between backends with `crm-relay migrate`: SQLite → PostgreSQL →
//! SQLite, real processes, the relay on the same address each time. The relay keeps its
//! identity and every log position, so a device's next sync is the usual reconnect: its
//! cursor is known, nothing is pushed or pulled again.

use crm_tests::{Backend, Relay, Replica};
use serde_json::Value;

fn joined(relay: &Relay, workspace: &str, user: &str, device: &str) -> Replica {
    let r = Replica::init(user, device);
    let token = relay.token(workspace, user);
    r.ok(&["join", &relay.url(), "--token", &token]);
    r
}

fn sync(r: &Replica) -> Value {
    r.json(&["sync"])
}

/// Every device has pushed and pulled everything (each device's own user record included).
fn settle(devices: &[&Replica]) {
    for _ in 0..2 {
        for d in devices {
            sync(d);
        }
    }
}

/// A reconnect that finds the cursor known and nothing to exchange.
fn assert_nothing_to_do(report: &Value) {
    assert_eq!(report["reset"], false, "the cursor is known: {report}");
    assert_eq!(report["pushed"], 0, "nothing pushed again: {report}");
    assert_eq!(report["pulled"], 0, "nothing pulled again: {report}");
    assert_eq!(report["bootstrapped"], 0, "{report}");
}

#[test]
fn a_workspace_moves_to_postgres_and_back_without_any_device_syncing_again() {
    let mut relay = Relay::start();
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    let b = joined(&relay, &ws, "bob", "phone");
    for i in 0..20 {
        a.add(
            "account",
            &["--name", &format!("客户 {i}"), "--notes", "first visit"],
        );
    }
    settle(&[&a, &b]);
    let status_before = a.json(&["status"]);

    let report = relay.migrate_to(Backend::Postgres);
    assert!(report.is_object(), "{report}");
    assert_nothing_to_do(&sync(&a));
    assert_nothing_to_do(&sync(&b));
    // And the relay on PostgreSQL carries on: a new edit goes through, a new device bootstraps.
    let id = a.add("account", &["--name", "after the move"]);
    sync(&a);
    sync(&b);
    assert_eq!(b.json(&["show", &id])["name"], "after the move");
    let c = joined(&relay, &ws, "carol", "tablet");
    sync(&c);
    assert_eq!(c.list("account").len(), 21);
    settle(&[&a, &b, &c]);

    relay.migrate_to(Backend::Sqlite);
    assert_nothing_to_do(&sync(&a));
    assert_nothing_to_do(&sync(&b));
    assert_nothing_to_do(&sync(&c));
    let status_after = a.json(&["status"]);
    assert_eq!(
        status_before["relay"], status_after["relay"],
        "the device never had to be told anything"
    );
}
