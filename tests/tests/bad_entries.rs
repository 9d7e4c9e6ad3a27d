//! Issue 12, failures 1 and 5, end to end: real `crm-relay` and `crm` processes, with the
//! relay's log or a device's replica damaged on disk.
//!
//! - A change of record X filed under record Y in the relay's log made every device refuse
//!   the pulled batch (or the bootstrap page) on every try: sync stopped for the workspace,
//!   and a fresh device received nothing.
//! - A flipped bit in a device's stored change was pushed as it was, and the damaged change
//!   reached every device with no error anywhere.

use crm_model::RecordId;
use crm_tests::{Backend, Relay, Replica};
use serde_json::Value;

crm_tests::on_every_backend!(
    a_change_filed_under_another_record_in_the_relays_log_stopped_sync_for_everyone,
);

fn joined(relay: &Relay, workspace: &str, user: &str, device: &str) -> Replica {
    let r = Replica::init(user, device);
    let token = relay.token(workspace, user);
    r.ok(&["join", &relay.url(), "--token", &token]);
    r
}

fn uuid_bytes(id: &str) -> Vec<u8> {
    id.parse::<RecordId>()
        .expect("a record id")
        .as_uuid()
        .as_bytes()
        .to_vec()
}

fn a_change_filed_under_another_record_in_the_relays_log_stopped_sync_for_everyone(
    backend: Backend,
) {
    let mut relay = Relay::start_on(backend);
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    // Synced once, the replica acts as the relay's alice: each record below is one change
    // (none is claimed later from the replica's local user).
    a.json(&["sync"]);
    let x = a.add("account", &["--name", "X Ltd"]);
    let y = a.add("account", &["--name", "Y Ltd"]);
    let z = a.add("account", &["--name", "Z Ltd"]);
    a.json(&["sync"]);

    // What a relay before the fix stored when a device pushed X's change under Y's id (a
    // log that may reach PostgreSQL too, migrated from an older SQLite relay).
    relay.kill();
    match backend {
        Backend::Sqlite => {
            let conn = rusqlite::Connection::open(relay.data().join("relay.db")).expect("relay.db");
            let moved = conn
                .execute(
                    "UPDATE changes SET doc_id = ?2 WHERE doc_id = ?1",
                    [uuid_bytes(&x), uuid_bytes(&y)],
                )
                .expect("poison the log");
            assert_eq!(moved, 1);
            // Whatever the compactor made from the clean log goes: the relay serves the log.
            conn.execute("DELETE FROM snapshots", [])
                .expect("snapshots");
        }
        Backend::Postgres => {
            let url = relay.database_url().expect("a PostgreSQL relay");
            let mut client = postgres::Client::connect(url, postgres::NoTls).expect("connect");
            let (x, y): (uuid::Uuid, uuid::Uuid) = (
                x.parse::<RecordId>().expect("id").as_uuid().to_owned(),
                y.parse::<RecordId>().expect("id").as_uuid().to_owned(),
            );
            let moved = client
                .execute(
                    "UPDATE changes SET doc_id = $2 WHERE doc_id = $1",
                    &[&x, &y],
                )
                .expect("poison the log");
            assert_eq!(moved, 1);
            client
                .batch_execute("DELETE FROM snapshots")
                .expect("snapshots");
        }
    }
    relay.restart();

    // A fresh device: its first sync goes through, with the bad entry set aside.
    let b = joined(&relay, &ws, "bob", "phone");
    let out = b.run(&["sync", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "crm sync failed: {stderr}");
    assert_eq!(
        stderr.matches("warning: quarantined").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains(&y), "{stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("json");
    let q = &report["quarantined"];
    assert_eq!(q.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(q[0]["record"], y.as_str());
    assert_eq!(q[0]["problem"], "other_record");
    assert_eq!(q[0]["origin"], "relay");
    assert!(q[0]["position"].as_u64().is_some(), "{report}");
    assert_eq!(b.json(&["show", &y])["name"], "Y Ltd");
    assert_eq!(b.json(&["show", &z])["name"], "Z Ltd");
    assert_eq!(b.json(&["status"])["quarantined"], 1);
    // The cursor moved past it: the next sync has nothing to say about it.
    let again = b.run(&["sync"]);
    assert!(again.status.success());
    assert!(
        !String::from_utf8_lossy(&again.stderr).contains("quarantined"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // The device that made the records syncs on too.
    a.ok(&["account", "edit", &z, "--industry", "retail"]);
    a.json(&["sync"]);
    b.json(&["sync"]);
    assert_eq!(b.json(&["show", &z])["industry"], "retail");
}

#[test]
fn a_flipped_bit_in_a_devices_replica_spread_to_every_device() {
    let relay = Relay::start();
    let ws = relay.workspace("acme");
    let a = joined(&relay, &ws, "alice", "laptop");
    let b = joined(&relay, &ws, "bob", "phone");
    let r = a.add("account", &["--name", "ACME"]);
    a.json(&["sync"]);
    b.json(&["sync"]);

    // Offline on a: an edit that rots on disk, an edit on top of it, another record.
    a.ok(&["account", "edit", &r, "--name", "ACME Holdings"]);
    crm_tests::flip_newest_change_of(a.path(), &r);
    a.ok(&["account", "edit", &r, "--industry", "retail"]);
    let s = a.add("account", &["--name", "Bolt"]);

    let out = a.run(&["sync"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(stderr.contains(&r), "{stderr}");
    assert!(stderr.contains("crm check"), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let check = a.run(&["check"]);
    assert_eq!(check.status.code(), Some(1));

    // Everything else went out; the damaged edit and the one on top of it did not.
    b.json(&["sync"]);
    assert_eq!(b.json(&["show", &s])["name"], "Bolt");
    let shown = b.json(&["show", &r]);
    assert_eq!(shown["name"], "ACME");
    assert!(shown.get("industry").is_none_or(Value::is_null), "{shown}");
    assert_eq!(a.json(&["status"])["pending"], 2);
}

/// The relay now refuses a change whose record or dependencies it does not have (its log is
/// causally closed per record). A replica that took a record from another one with an older
/// `crm merge-from` (which did not queue what it took) and edited it would be refused on
/// every push; on `424` it queues every change it has, once, and the push goes through.
#[test]
fn edits_on_a_record_merged_by_an_older_build_reach_the_relay() {
    let relay = Relay::start();
    let ws = relay.workspace("acme");
    let usb = Replica::init("alice", "desktop");
    let x = usb.add("account", &["--name", "X Ltd"]);
    let a = joined(&relay, &ws, "alice", "laptop");
    // Synced once: the relay knows its cursor, so nothing is queued again on connecting.
    a.json(&["sync"]);
    a.merge_from(&usb);
    // What an older merge left: the merged changes stored, none of them queued.
    {
        let conn = rusqlite::Connection::open(a.path().join("replica.db")).expect("replica.db");
        conn.execute("DELETE FROM outbox", []).expect("outbox");
    }
    a.ok(&["account", "edit", &x, "--industry", "retail"]);

    let out = a.run(&["sync", "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "crm sync failed: {stderr}");
    assert_eq!(a.json(&["status"])["pending"], 0);

    let b = joined(&relay, &ws, "bob", "phone");
    b.json(&["sync"]);
    let shown = b.json(&["show", &x]);
    assert_eq!(
        (shown["name"].as_str(), shown["industry"].as_str()),
        (Some("X Ltd"), Some("retail"))
    );
}
