//! `crm rejected`: edits the relay refused, listed, retried and dismissed through the real
//! binary. No relay refuses edits yet on this side, so the tests settle refusals on the
//! replica file through `Store::settle_refused`, as the sync driver will.

mod common;

use common::Replica;
use crm_model::RecordId;
use crm_store::{Refused, Store};

/// The relay refuses every queued change of record `id`, as crm-node will settle it.
fn refuse_all_of(r: &Replica, id: &str, reason: &str) {
    let id: RecordId = id.parse().expect("record id");
    let mut store = Store::open(r.path()).expect("open replica");
    let refused: Vec<Refused> = store
        .outbox_batch(usize::MAX, usize::MAX)
        .expect("outbox")
        .changes
        .into_iter()
        .filter(|c| c.doc_id == id)
        .map(|c| Refused {
            local_seq: c.local_seq,
            code: 403,
            reason: reason.into(),
        })
        .collect();
    assert!(!refused.is_empty(), "record {id} has queued changes");
    let report = store.settle_refused(&refused).expect("settle");
    assert!(report.removed_changes > 0);
}

/// Every queued change acknowledged, as after a sync the relay accepted.
fn acknowledge_all(r: &Replica) {
    let mut store = Store::open(r.path()).expect("open replica");
    let seqs: Vec<i64> = store
        .outbox(usize::MAX)
        .expect("outbox")
        .into_iter()
        .map(|c| c.local_seq)
        .collect();
    store.acknowledge(&seqs).expect("acknowledge");
}

#[test]
fn refused_edits_are_listed_retried_and_dismissed() {
    let r = Replica::new("alice", "laptop");
    assert!(r.ok(&["rejected"]).contains("no refused edits"));
    assert_eq!(r.json(&["rejected"]), serde_json::json!([]));

    let acme = r.add("account", &["--name", "ACME", "--industry", "retail"]);
    acknowledge_all(&r);
    r.ok(&["account", "edit", &acme, "--industry", "manufacturing"]);
    refuse_all_of(
        &r,
        &acme,
        "your role (sales_rep) may not edit other people's accounts",
    );
    let ghost = r.add("account", &["--name", "Ghost Trading", "--tag", "prospect"]);
    refuse_all_of(&r, &ghost, "your role may not create accounts");

    // The edit is undone, the refused creation gone.
    assert_eq!(r.json(&["account", "show", &acme])["industry"], "retail");
    r.fails_in_one_line(&["account", "show", &ghost], 2);

    // Newest first, each with its fields, typed and old values, and the reason.
    let listed = r.json(&["rejected"]);
    let rows = listed.as_array().expect("a list");
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!(rows[0]["record"], ghost.as_str());
    assert_eq!(rows[0]["created"], true);
    assert_eq!(rows[0]["kind"], "account");
    assert_eq!(rows[1]["record"], acme.as_str());
    assert_eq!(rows[1]["code"], 403);
    assert_eq!(
        rows[1]["fields"],
        serde_json::json!([{"field": "industry", "typed": "manufacturing", "old": "retail"}])
    );
    let table = r.ok(&["rejected"]);
    for text in [
        "Ghost Trading",
        "industry",
        "manufacturing",
        "retail",
        "may not edit other people's accounts",
        "new account",
    ] {
        assert!(table.contains(text), "{text:?} in:\n{table}");
    }
    let edit_id = rows[1]["id"].as_i64().expect("id").to_string();
    let creation_id = rows[0]["id"].as_i64().expect("id").to_string();

    // Retried: the typed value, as a new change waiting for the relay.
    let retried = r.json(&["rejected", "retry", &edit_id]);
    assert_eq!(retried["record"]["industry"], "manufacturing");
    assert_eq!(
        r.json(&["account", "show", &acme])["industry"],
        "manufacturing"
    );
    assert_eq!(r.json(&["status"])["pending"], 2, "{}", r.json(&["status"]));
    // A refused creation, retried, is the same record again.
    let out = r.ok(&["rejected", "retry", &creation_id]);
    assert!(out.contains(&ghost), "{out}");
    let shown = r.json(&["account", "show", &ghost]);
    assert_eq!(shown["name"], "Ghost Trading");
    assert_eq!(shown["tags"], serde_json::json!(["prospect"]));
    assert_eq!(r.json(&["rejected"]), serde_json::json!([]));

    // Dismissed: gone, and the record stays as the relay has it.
    acknowledge_all(&r);
    r.ok(&["account", "edit", &acme, "--industry", "mining"]);
    refuse_all_of(&r, &acme, "no");
    let id = r.json(&["rejected"])[0]["id"]
        .as_i64()
        .expect("id")
        .to_string();
    assert!(r.ok(&["rejected", "dismiss", &id]).contains("dismissed"));
    assert_eq!(r.json(&["rejected"]), serde_json::json!([]));
    assert_eq!(
        r.json(&["account", "show", &acme])["industry"],
        "manufacturing"
    );
    r.ok(&["check"]);
}

#[test]
fn unknown_or_malformed_ids_fail_with_a_usage_error() {
    let r = Replica::new("alice", "laptop");
    for args in [
        &["rejected", "retry", "42"][..],
        &["rejected", "dismiss", "42"],
    ] {
        let err = r.refused(args);
        assert!(err.contains("no refused edit with id 42"), "{err}");
    }
    for args in [
        &["rejected", "retry", "abc"][..],
        &["rejected", "dismiss"],
        &["rejected", "retry", "99999999999999999999999"],
        &["rejected", "frobnicate"],
    ] {
        r.refused(args);
    }
}
