//! Write authorization end to end (issue 14), with a real relay and real `crm` processes: an
//! edit made offline under a role the user has lost by the time it reaches the relay is
//! refused, kept on the device with what was typed, never reaches anyone, and the device
//! converges with the relay; once the right is back, `crm rejected retry` makes it again.

use crm_tests::{Relay, Replica};
use serde_json::Value;

/// A replica of `user`'s, joined and synced.
fn device_of(relay: &Relay, ws: &str, user: &str, device: &str) -> Replica {
    let r = Replica::init(user, device);
    let token = relay.token(ws, user);
    r.ok(&["join", &relay.url(), "--token", &token]);
    r.json(&["sync"]);
    r
}

fn user(relay: &Relay, ws: &str, name: &str, role: &str, team: &str) {
    relay.admin(&[
        "user",
        "add",
        "--workspace",
        ws,
        "--name",
        name,
        "--role",
        role,
        "--team",
        team,
    ]);
}

fn move_to(relay: &Relay, ws: &str, name: &str, team: &str) {
    relay.admin(&["user", "edit", "--workspace", ws, name, "--team", team]);
}

/// Every change of a record as `crm history` lists them, as text.
fn history(r: &Replica, id: &str) -> String {
    r.json(&["history", id]).to_string()
}

#[test]
fn an_edit_made_offline_under_a_lost_role_is_refused_kept_and_retried() {
    let relay = Relay::start();
    let ws = relay.workspace("acme");
    let admin = device_of(&relay, &ws, "root", "admin-laptop");
    for team in ["South", "North"] {
        relay.admin(&["team", "add", "--workspace", &ws, "--name", team]);
    }
    user(&relay, &ws, "rui", "sales_rep", "South");
    user(&relay, &ws, "sam", "sales_rep", "South");
    user(&relay, &ws, "ola", "sales_rep", "North");
    // Reps read every deal but edit only their teams': so a rep moved to another team still
    // holds the deal, and may no longer change it.
    relay.admin(&[
        "role",
        "set",
        "--workspace",
        &ws,
        "sales_rep",
        "opportunity",
        "read",
        "all",
    ]);
    let rui = device_of(&relay, &ws, "rui", "rui-laptop");
    let sam = device_of(&relay, &ws, "sam", "sam-phone");
    let ola = device_of(&relay, &ws, "ola", "ola-laptop");

    // Sam's deal; Rui, his teammate, may edit it.
    let deal = sam.add(
        "opportunity",
        &["--name", "华南大单 Big deal", "--amount", "50000"],
    );
    sam.json(&["sync"]);
    rui.json(&["sync"]);
    assert_eq!(
        rui.json(&["show", &deal])["amount"],
        sam.json(&["show", &deal])["amount"]
    );

    // Offline, Rui raises the amount; meanwhile the admin moves him to North.
    rui.ok(&["opportunity", "edit", &deal, "--set", "amount=90000"]);
    assert_eq!(rui.json(&["status"])["pending"], 1);
    move_to(&relay, &ws, "rui", "North");

    // He syncs: the relay refuses the edit, the device keeps it and shows it.
    let report = rui.json(&["sync"]);
    assert_eq!(report["refused"], 1, "{report}");
    assert_eq!(
        rui.json(&["status"])["pending"],
        0,
        "nothing waits to be pushed"
    );
    let rejected = rui.json(&["rejected"]);
    let rows = rejected.as_array().expect("a list");
    assert_eq!(rows.len(), 1, "{rejected}");
    let row = &rows[0];
    let text = row.to_string();
    assert!(text.contains("90000"), "the value typed: {text}");
    assert!(text.contains("50000"), "the value before: {text}");
    assert!(text.contains("amount"), "{text}");
    assert_eq!(row["code"], 403, "{text}");
    assert!(
        row["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sales_rep")),
        "{text}"
    );
    // The human listing says the same.
    let listing = rui.ok(&["rejected"]);
    assert!(
        listing.contains("90000") && listing.contains("amount"),
        "{listing}"
    );

    // Rui's deal is the relay's again, and nobody else ever saw 90000.
    admin.json(&["sync"]);
    sam.json(&["sync"]);
    ola.json(&["sync"]);
    let relays = admin.json(&["show", &deal]);
    assert_eq!(relays["amount"], sam.json(&["show", &deal])["amount"]);
    assert_eq!(rui.json(&["show", &deal]), relays, "the device converged");
    for r in [&admin, &sam, &ola, &rui] {
        assert!(
            !history(r, &deal).contains("90000"),
            "no trace of the refused edit"
        );
    }
    assert_eq!(rui.json(&["check"])["ok"], Value::Bool(true));

    // Dismissing is for edits one gives up; Rui instead waits for his team back and
    // retries.
    move_to(&relay, &ws, "rui", "South");
    rui.json(&["sync"]);
    let id = row["id"].to_string();
    rui.ok(&["rejected", "retry", &id]);
    assert!(
        rui.json(&["rejected"])
            .as_array()
            .is_some_and(Vec::is_empty)
    );
    let report = rui.json(&["sync"]);
    assert_eq!(report["refused"], 0, "{report}");
    sam.json(&["sync"]);
    let amount = sam.json(&["show", &deal])["amount"].to_string();
    assert!(
        amount.contains("90000"),
        "the retried edit reached sam: {amount}"
    );

    // A rejected id that does not exist is a clear error, not a panic.
    let out = rui.run(&["rejected", "dismiss", "999999"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("999999"), "{err}");
}
