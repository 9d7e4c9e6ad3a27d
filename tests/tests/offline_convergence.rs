//! Three devices work offline on the same records, then exchange replicas with
//! `crm merge-from` in a ring: they converge to identical records and listings, keep every
//! user's work, show the one real conflict everywhere and settle it everywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crm_tests::{Replica, id_of};
use serde_json::{Value, json};

/// The kinds the test creates (users come with each replica).
const KINDS: [&str; 4] = ["user", "account", "contact", "opportunity"];

/// Everything a user can list, per kind, in the order `list` prints it.
fn listings(r: &Replica) -> BTreeMap<&'static str, Vec<Value>> {
    KINDS.iter().map(|k| (*k, r.list(k))).collect()
}

/// The same, each kind sorted by id.
fn listings_by_id(r: &Replica) -> BTreeMap<&'static str, Vec<Value>> {
    KINDS.iter().map(|k| (*k, r.list_by_id(k))).collect()
}

/// Ring exchanges (a ← b, b ← c, c ← a) until a whole round applies nothing. Returns how many
/// rounds moved changes. Bounded: three replicas need at most two.
fn exchange_until_quiet(ring: &[&Replica; 3]) -> usize {
    for round in 0..4 {
        let mut applied = 0;
        for i in 0..3 {
            let (into, from) = (ring[i], ring[(i + 1) % 3]);
            let report = into.merge_from(from);
            applied += report["into_this"]["applied"]
                .as_u64()
                .unwrap_or_else(|| panic!("merge report without a count: {report}"));
        }
        if applied == 0 {
            return round;
        }
    }
    panic!("the ring still moved changes after 4 rounds");
}

fn strings(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{v} is not an array"))
        .iter()
        .map(|x| {
            x.as_str()
                .unwrap_or_else(|| panic!("{x} is not a string"))
                .to_string()
        })
        .collect()
}

/// Every record id any of the replicas lists, of the kinds above.
fn all_ids(ring: &[&Replica; 3]) -> BTreeSet<String> {
    ring.iter()
        .flat_map(|r| KINDS.iter().flat_map(move |k| r.list(k)))
        .map(|rec| id_of(&rec).to_string())
        .collect()
}

/// Asserts that the three replicas hold the same records and list them the same way.
fn assert_identical(ring: &[&Replica; 3], ids: &BTreeSet<String>) {
    let [a, b, c] = *ring;
    for id in ids {
        let on_a = a.json(&["show", id]);
        assert_eq!(
            on_a,
            b.json(&["show", id]),
            "record {id} on laptop vs phone"
        );
        assert_eq!(
            on_a,
            c.json(&["show", id]),
            "record {id} on laptop vs desktop"
        );
    }
    let (la, lb, lc) = (listings_by_id(a), listings_by_id(b), listings_by_id(c));
    assert_eq!(la, lb, "listings (by id) on laptop vs phone");
    assert_eq!(la, lc, "listings (by id) on laptop vs desktop");
    // The same query prints the same records in the same order on every device.
    let order = |r: &Replica| -> BTreeMap<&'static str, Vec<String>> {
        listings(r)
            .into_iter()
            .map(|(k, rows)| (k, rows.iter().map(|x| id_of(x).to_string()).collect()))
            .collect()
    };
    let (oa, ob, oc) = (order(a), order(b), order(c));
    assert_eq!(oa, ob, "list order on laptop vs phone");
    assert_eq!(oa, oc, "list order on laptop vs desktop");
    let (la, lb, lc) = (listings(a), listings(b), listings(c));
    assert_eq!(la, lb, "listings in list order on laptop vs phone");
    assert_eq!(la, lc, "listings in list order on laptop vs desktop");
    let conflicts = a.json(&["conflicts"]);
    assert_eq!(
        conflicts,
        b.json(&["conflicts"]),
        "conflicts laptop vs phone"
    );
    assert_eq!(
        conflicts,
        c.json(&["conflicts"]),
        "conflicts laptop vs desktop"
    );
}

#[test]
fn three_replicas_converge_offline() {
    let started = Instant::now();
    let a = Replica::init("alice", "laptop");
    let b = Replica::init("bob", "phone");
    let c = Replica::init("carol", "desktop");
    let ring = [&a, &b, &c];

    // Alice's starting data, handed to the others.
    let acme = a.add(
        "account",
        &[
            "--name",
            "ACME",
            "--tag",
            "legacy",
            "--notes",
            "first meeting",
        ],
    );
    let globex = a.add("account", &["--name", "Globex"]);
    let wang = a.add(
        "contact",
        &[
            "--last-name",
            "Wang",
            "--first-name",
            "Fang",
            "--account",
            &acme,
        ],
    );
    let smith = a.add("contact", &["--last-name", "Smith", "--account", &globex]);
    let deal = a.add(
        "opportunity",
        &[
            "--name",
            "ACME renewal",
            "--account",
            &acme,
            "--primary-contact",
            &wang,
            "--amount",
            "1000",
        ],
    );
    let bob = id_of(&b.list("user")[0]).to_string();
    for other in [&b, &c] {
        let report = a.json(&["merge-from", other.arg(), "--both-ways"]);
        assert!(
            report["into_other"]["applied"].as_u64() >= Some(5),
            "{report}"
        );
    }
    for id in [&acme, &globex, &wang, &smith, &deal] {
        let on_a = a.json(&["show", id]);
        assert_eq!(on_a, b.json(&["show", id]));
        assert_eq!(on_a, c.json(&["show", id]));
    }

    // Offline work. On ACME: a different field each, the same field (grade) on all three,
    // tags on each, notes replaced on one device and appended on the others.
    let acme_a = a.json(&[
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
        "rewritten by alice",
    ]);
    let acme_b = b.json(&[
        "account",
        "edit",
        &acme,
        "--website",
        "https://www.acme.cn/",
        "--grade",
        "key",
        "--tag",
        "south",
        "--untag",
        "legacy",
        "--append-notes",
        "from bob",
    ]);
    let acme_c = c.json(&[
        "account",
        "edit",
        &acme,
        "--employees",
        "120",
        "--grade",
        "low",
        "--tag",
        "east",
        "--append-notes",
        "from carol",
    ]);
    // Smith: archived on the phone while the desktop edits it.
    b.ok(&["contact", "archive", &smith]);
    let smith_c = c.json(&["contact", "edit", &smith, "--title", "CTO", "--tag", "vip"]);
    // The deal: each device something else.
    a.ok(&["opportunity", "edit", &deal, "--stage", "proposal"]);
    b.ok(&["opportunity", "edit", &deal, "--tag", "hot"]);
    let deal_c = c.json(&["opportunity", "edit", &deal, "--amount", "2500"]);
    // Bob's own user record: given a role by alice and by carol.
    a.ok(&["user", "edit", &bob, "--role", "sales_manager"]);
    c.ok(&["user", "edit", &bob, "--role", "support_agent"]);
    // A new record on every device.
    let initech = a.add("account", &["--name", "Initech"]);
    let li = b.add("contact", &["--last-name", "Li", "--account", &globex]);
    let expansion = c.add(
        "opportunity",
        &[
            "--name",
            "Globex expansion",
            "--account",
            &globex,
            "--primary-contact",
            &smith,
        ],
    );
    // Still offline: nobody has the others' new records yet.
    for (r, id) in [(&b, &initech), (&c, &li), (&a, &expansion)] {
        assert_eq!(r.run(&["show", id]).status.code(), Some(2), "{id}");
    }

    let rounds = exchange_until_quiet(&ring);
    assert!(
        rounds >= 2,
        "a ring of three needs two rounds, took {rounds}"
    );

    let ids = all_ids(&ring);
    for id in [
        &acme, &globex, &wang, &smith, &deal, &initech, &li, &expansion,
    ] {
        assert!(ids.contains(id.as_str()), "{id} missing");
    }
    assert_eq!(ids.len(), 3 + 8, "three users and eight records: {ids:?}");
    assert_identical(&ring, &ids);

    // Nothing anyone did was lost.
    let merged = a.json(&["account", "show", &acme]);
    assert_eq!(merged["industry"], acme_a["industry"]);
    assert_eq!(merged["website"], acme_b["website"]);
    assert_eq!(merged["employees"], acme_c["employees"]);
    assert_eq!(
        strings(&merged["tags"]),
        ["east", "north", "south"].map(String::from).into(),
        "tags added everywhere, legacy removed: {merged}"
    );
    let notes = merged["notes"].as_str().expect("notes");
    for line in ["rewritten by alice", "from bob", "from carol"] {
        assert!(notes.contains(line), "{line:?} missing from {notes:?}");
    }
    assert!(
        !notes.contains("first meeting"),
        "alice replaced the notes she saw: {notes:?}"
    );
    let smith_now = a.json(&["contact", "show", &smith]);
    assert_eq!(smith_now["archived"], true, "{smith_now}");
    assert_eq!(smith_now["title"], smith_c["title"]);
    assert_eq!(smith_now["tags"], json!(["vip"]));
    let deal_now = a.json(&["opportunity", "show", &deal]);
    assert_eq!(deal_now["stage"], "proposal");
    assert_eq!(deal_now["amount"], deal_c["amount"]);
    assert_eq!(deal_now["tags"], json!(["hot"]));
    assert!(
        a.list("contact").iter().any(|x| id_of(x) == li)
            && a.json(&["opportunity", "list", "--account", &globex])
                .as_array()
                .is_some_and(|o| o.iter().any(|x| id_of(x) == expansion)),
        "new records are listed and queryable"
    );

    // Two conflicts, the same everywhere (assert_identical compared them): ACME's grade with
    // the three values, bob's role with the two.
    for r in ring {
        let conflicts = r.json(&["conflicts"]);
        let list = conflicts.as_array().expect("conflicts");
        assert_eq!(list.len(), 2, "only the grade and the role: {conflicts}");
        let grade = list
            .iter()
            .find(|x| x["id"] == acme.as_str())
            .unwrap_or_else(|| panic!("no conflict on ACME: {conflicts}"));
        assert_eq!(grade["field"], "grade");
        assert_eq!(
            strings(&grade["values"]),
            ["key", "low", "vip"].map(String::from).into(),
            "{conflicts}"
        );
        let shown = r.json(&["account", "show", &acme]);
        assert_eq!(shown["grade"], grade["values"][0], "shown value first");
        assert_eq!(shown["conflicts"]["grade"], grade["values"]);
        let role = list
            .iter()
            .find(|x| x["id"] == bob.as_str())
            .unwrap_or_else(|| panic!("no conflict on bob: {conflicts}"));
        assert_eq!(role["field"], "role");
        assert_eq!(
            strings(&role["values"]),
            ["sales_manager", "support_agent"].map(String::from).into(),
            "{conflicts}"
        );
    }

    // Settled on two devices, propagated: gone everywhere. The phone picks a grade other
    // than the one shown; the desktop keeps the role that shows.
    let grades = b.json(&["conflicts", &acme])[0]["values"].clone();
    let (grade_shown, grade_chosen) = (grades[0].clone(), grades[1].clone());
    let grade_arg = grade_chosen.as_str().expect("a grade").to_string();
    b.ok(&["resolve", &acme, "grade", &grade_arg]);
    let role_shown = c.json(&["conflicts", &bob])[0]["values"][0].clone();
    let role_arg = role_shown.as_str().expect("a role").to_string();
    c.ok(&["resolve", &bob, "role", &role_arg]);
    assert_eq!(b.json(&["conflicts"]).as_array().map(Vec::len), Some(1));
    assert_eq!(a.json(&["conflicts"]).as_array().map(Vec::len), Some(2));
    exchange_until_quiet(&ring);
    assert_identical(&ring, &ids);
    let history = a.json(&["history", &acme]);
    let bob_history = a.json(&["history", &bob]);
    // The same changes everywhere. Concurrent changes are listed in the order each replica
    // received them (Automerge's causal order), so compare them by hash.
    let by_hash = |h: &Value| -> BTreeMap<String, Value> {
        h.as_array()
            .expect("history")
            .iter()
            .map(|e| (e["hash"].as_str().expect("hash").to_string(), e.clone()))
            .collect()
    };
    for r in ring {
        assert_eq!(r.json(&["conflicts"]), json!([]), "on {}", r.device);
        let shown = r.json(&["account", "show", &acme]);
        assert_eq!(shown["grade"], grade_chosen);
        assert!(shown.get("conflicts").is_none(), "{shown}");
        let here = r.json(&["history", &acme]);
        assert_eq!(by_hash(&here), by_hash(&history), "on {}", r.device);
        // Causal order: the creation first, the resolution (which saw everything) last.
        assert_eq!(here[0]["created"], true, "on {}", r.device);
        let last = &here[4];
        assert_eq!(last["device"], "phone", "the resolution last: {here}");
        assert_eq!(
            last["changes"],
            json!([{"field": "grade", "old": grade_shown, "new": grade_chosen}]),
            "on {}",
            r.device
        );
        let user = r.json(&["user", "show", &bob]);
        assert_eq!(user["role"], role_shown);
        assert!(user.get("conflicts").is_none(), "{user}");
        let here = r.json(&["history", &bob]);
        assert_eq!(by_hash(&here), by_hash(&bob_history), "on {}", r.device);
        let last = here.as_array().and_then(|h| h.last()).expect("an entry");
        assert_eq!(
            (&last["user"], &last["device"]),
            (&json!("carol"), &json!("desktop")),
            "the resolution last: {here}"
        );
    }
    let entries = history.as_array().expect("history");
    // Created, three offline edits, the resolution.
    assert_eq!(entries.len(), 5, "{history}");
    let devices: BTreeSet<&str> = entries
        .iter()
        .filter_map(|e| e["device"].as_str())
        .collect();
    assert_eq!(devices, BTreeSet::from(["desktop", "laptop", "phone"]));
    let users: BTreeSet<&str> = entries.iter().filter_map(|e| e["user"].as_str()).collect();
    assert_eq!(users, BTreeSet::from(["alice", "bob", "carol"]));
    eprintln!(
        "three_replicas_converge_offline: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
