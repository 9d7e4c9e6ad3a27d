//! Deterministic multi-device sync through a relay that knows no users: every device ends
//! with every record. The simulator is in `simulator/`; access control is in
//! `sim_access.rs`.

#[allow(dead_code, reason = "each test file uses a part of the simulator")]
mod simulator;

use crm_model::Kind;
use crm_sync::{Envelope, ErrorCode};
use simulator::{World, account, assert_converged, set};

#[test]
fn offline_edits_on_three_devices_converge_through_the_relay() {
    for seed in 1..=5 {
        let mut w = World::new(3);
        // Device 0 creates a shared record and everyone syncs.
        let shared = account(&mut w.devices[0].store, "ACME");
        for d in 0..3 {
            w.connect(d);
        }
        w.run_until_quiescent(seed);
        assert_converged(&w);
        // Everyone goes offline and edits.
        for d in 0..3 {
            w.disconnect(d);
        }
        set(&mut w.devices[0].store, shared, "industry", "retail");
        set(&mut w.devices[1].store, shared, "website", "acme.cn");
        for d in 0..3 {
            set(
                &mut w.devices[d].store,
                shared,
                "grade",
                ["vip", "key", "low"][d],
            );
            for i in 0..20 {
                account(&mut w.devices[d].store, &format!("device {d} account {i}"));
            }
        }
        for d in 0..3 {
            w.connect(d);
        }
        w.run_until_quiescent(seed * 7);
        assert_converged(&w);
        let record = w.devices[2].store.get(shared).expect("shared");
        assert_eq!(
            record.get("industry").map(|v| v.display()),
            Some("retail".into())
        );
        assert_eq!(
            record.get("website").map(|v| v.display()),
            Some("acme.cn".into())
        );
        assert_eq!(
            record.conflicts["grade"].len(),
            3,
            "all three grades stay visible"
        );
        // Live: an edit while connected reaches the others.
        w.edit(1, |s| set(s, shared, "industry", "wholesale"));
        w.run_until_quiescent(seed * 13);
        assert_converged(&w);
        let record = w.devices[0].store.get(shared).expect("shared");
        assert_eq!(
            record.get("industry").map(|v| v.display()),
            Some("wholesale".into())
        );
    }
}

#[test]
fn a_reconnect_with_nothing_new_costs_the_same_whatever_the_size() {
    let mut costs = Vec::new();
    for records in [20, 400] {
        let mut w = World::new(2);
        for i in 0..records {
            account(&mut w.devices[0].store, &format!("account {i}"));
        }
        w.connect(0);
        w.connect(1);
        w.run_until_quiescent(3);
        assert_converged(&w);
        w.disconnect(0);
        w.disconnect(1);
        let (up, down, frames) = (w.bytes_to_relay, w.bytes_to_device, w.frames);
        w.connect(1);
        w.run_until_quiescent(5);
        assert!(w.devices[1].synced);
        let cost = (
            w.bytes_to_relay - up + w.bytes_to_device - down,
            w.frames - frames,
        );
        assert!(cost.0 < 1024, "reconnect cost {} bytes", cost.0);
        costs.push(cost);
    }
    // Two frames (Hello, Welcome) either way; the bytes differ only by the varint width of
    // the cursor and head (a few bytes), not by anything per record.
    assert_eq!(costs[0].1, costs[1].1, "frames");
    assert!(costs[1].0.abs_diff(costs[0].0) <= 8, "{costs:?}");
}

#[test]
fn a_relay_restored_from_an_older_backup_gets_everything_back() {
    let mut w = World::new(3);
    let a = account(&mut w.devices[0].store, "before the backup");
    w.connect(0);
    w.connect(1);
    w.run_until_quiescent(1);
    let backup = w.log.clone();
    // After the backup: more work reaches the relay, then the relay is restored.
    w.edit(0, |s| set(s, a, "industry", "lost in the restore"));
    w.edit(1, |s| {
        account(s, "also lost in the restore");
    });
    w.run_until_quiescent(2);
    assert!(w.devices[0].synced && w.devices[1].synced);
    w.disconnect(0);
    w.disconnect(1);
    w.log = backup;
    // A third device joins the restored relay and writes first, so positions are reused.
    account(&mut w.devices[2].store, "written after the restore");
    w.connect(2);
    w.run_until_quiescent(3);
    w.connect(0);
    w.connect(1);
    w.run_until_quiescent(4);
    // A fresh device then gets everything, including what the backup had lost.
    w.run_until_quiescent(5);
    assert_converged(&w);
    let record = w.devices[2].store.get(a).expect("present");
    assert_eq!(
        record.get("industry").map(|v| v.display()),
        Some("lost in the restore".into())
    );
    assert_eq!(
        w.devices[2]
            .store
            .count(Kind::Account, false)
            .expect("count"),
        3
    );
}

#[test]
fn bad_and_revoked_tokens_are_refused_with_a_code() {
    let mut w = World::new(2);
    account(&mut w.devices[0].store, "kept locally");
    w.tokens.insert("token0".into(), false);
    w.tokens.remove("token1");
    w.connect(0);
    w.connect(1);
    w.run_until_quiescent(1);
    assert_eq!(
        w.devices[0].closed_with.as_ref().map(|e| e.code),
        Some(ErrorCode::REVOKED)
    );
    assert_eq!(
        w.devices[1].closed_with.as_ref().map(|e| e.code),
        Some(ErrorCode::UNAUTHENTICATED)
    );
    assert_eq!(w.log.head(), 0, "nothing stored");
    assert!(
        w.devices[0].store.outbox_len().expect("outbox") > 0,
        "local work stays in the outbox"
    );
}

#[test]
fn a_slow_reader_holds_at_most_one_window() {
    let mut w = World::new(2);
    w.window = 40;
    for i in 0..300 {
        account(&mut w.devices[0].store, &format!("account {i}"));
    }
    w.connect(0);
    w.run_until_quiescent(1);
    w.stalled.push(1);
    w.connect(1);
    w.run_until_quiescent(2);
    let session = w.sessions.get(&1).expect("session open");
    assert!(session.unconfirmed() <= 40, "{}", session.unconfirmed());
    assert!(!w.devices[1].synced);
    // Once it reads again it catches up.
    w.stalled.clear();
    w.disconnect(1);
    w.connect(1);
    w.run_until_quiescent(3);
    assert_converged(&w);
}

#[test]
fn a_pushed_batch_with_garbage_is_refused_whole() {
    let mut w = World::new(1);
    account(&mut w.devices[0].store, "valid");
    w.connect(0);
    w.run_until_quiescent(1);
    let head = w.log.head();
    let result = w.log.store(
        &[
            Envelope {
                doc_id: [1; 16],
                kind: "account".into(),
                scope: Default::default(),
                bytes: w.devices[0].store.changes_after(0, 1).expect("log")[0]
                    .change
                    .bytes
                    .clone(),
            },
            Envelope {
                doc_id: [2; 16],
                kind: "account".into(),
                scope: Default::default(),
                bytes: b"not an automerge change".to_vec(),
            },
        ],
        None,
    );
    assert_eq!(result.map_err(|e| e.code), Err(ErrorCode::INVALID_CHANGE));
    assert_eq!(w.log.head(), head);
}

/// The device refuses local changes over the relay's limit at edit time with the model's
/// constant: it must be the protocol's.
#[test]
fn the_models_change_limit_is_the_protocols() {
    assert_eq!(crm_model::MAX_CHANGE_BYTES, crm_sync::MAX_CHANGE_BYTES);
}
