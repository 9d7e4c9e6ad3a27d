//! A record's history is its audit log: every change, from every replica, with its user,
//! device, time and the fields it changed (old → new).

mod common;

use std::collections::BTreeMap;

use common::{create, edit, replica};
use crm_model::{Edit, Kind};
use crm_store::{FieldChange, TimelineEntry};
use serde_json::{Value as Json, json};

fn change(field: &str, old: Json, new: Json) -> FieldChange {
    FieldChange {
        field: field.into(),
        old,
        new,
    }
}

fn by_hash(entries: &[TimelineEntry]) -> BTreeMap<String, TimelineEntry> {
    entries
        .iter()
        .map(|e| (e.hash.clone(), e.clone()))
        .collect()
}

#[test]
fn history_lists_every_change_of_both_replicas_with_author_and_values() {
    let started = chrono::Utc::now() - chrono::Duration::seconds(2);
    let (_da, mut a) = replica("alice", "laptop");
    let (_db, mut b) = replica("bob", "phone");
    let id = create(&mut a, Kind::Account, &[("name", "ACME")]);
    a.edit(id, &edit(Kind::Account, &[("name", "ACME Ltd")]))
        .expect("rename");
    b.merge_from(&a).expect("merge to b");

    // Offline on both sides: different fields, and one field on both.
    let mut eb = Edit::new(Kind::Account);
    eb.set("industry", "retail").expect("valid");
    eb.tag("vip").expect("valid");
    b.edit(id, &eb).expect("edit on b");
    b.edit(id, &edit(Kind::Account, &[("lifecycle", "contacted")]))
        .expect("lifecycle on b");
    a.edit(id, &edit(Kind::Account, &[("grade", "vip")]))
        .expect("grade on a");
    a.edit(id, &edit(Kind::Account, &[("lifecycle", "active")]))
        .expect("lifecycle on a");
    let mut notes = Edit::new(Kind::Account);
    notes.append_notes("called 李雷").expect("valid");
    a.edit(id, &notes).expect("notes on a");
    a.set_archived(id, true).expect("archive on a");

    a.merge_from(&b).expect("merge to a");
    b.merge_from(&a).expect("merge to b");

    let on_a = a.history(id).expect("history on a");
    let on_b = b.history(id).expect("history on b");
    assert_eq!(on_a.len(), 8, "{on_a:#?}");
    assert_eq!(by_hash(&on_a), by_hash(&on_b), "same timeline on both");

    // The creating change comes first and is the only one marked created.
    let first = &on_a[0];
    assert!(first.created);
    assert_eq!(first.user.as_deref(), Some("alice"));
    assert_eq!(first.device.as_deref(), Some("laptop"));
    assert!(
        first
            .changes
            .contains(&change("name", Json::Null, json!("ACME"))),
        "{first:#?}"
    );
    assert!(
        first
            .changes
            .contains(&change("grade", Json::Null, json!("normal")))
    );
    assert_eq!(on_a.iter().filter(|e| e.created).count(), 1);

    // Every later change, whichever replica made it, shows exactly what its author changed,
    // diffed against its own parents (not what it merged).
    let expected: Vec<(&str, &str, Vec<FieldChange>)> = vec![
        (
            "alice",
            "laptop",
            vec![change("name", json!("ACME"), json!("ACME Ltd"))],
        ),
        (
            "bob",
            "phone",
            vec![
                change("industry", Json::Null, json!("retail")),
                change("tags", json!([]), json!(["vip"])),
            ],
        ),
        (
            "bob",
            "phone",
            vec![change("lifecycle", json!("prospect"), json!("contacted"))],
        ),
        (
            "alice",
            "laptop",
            vec![change("grade", json!("normal"), json!("vip"))],
        ),
        (
            "alice",
            "laptop",
            vec![change("lifecycle", json!("prospect"), json!("active"))],
        ),
        (
            "alice",
            "laptop",
            vec![change("notes", json!(""), json!("called 李雷"))],
        ),
        (
            "alice",
            "laptop",
            vec![change("archived", json!(false), json!(true))],
        ),
    ];
    let mut later: Vec<&TimelineEntry> = on_a[1..].iter().collect();
    for (user, device, changes) in expected {
        let pos = later
            .iter()
            .position(|e| {
                e.user.as_deref() == Some(user)
                    && e.device.as_deref() == Some(device)
                    && e.changes == changes
            })
            .unwrap_or_else(|| panic!("no entry by {user}@{device} with {changes:?} in {on_a:#?}"));
        let entry = later.remove(pos);
        assert!(!entry.created);
    }
    assert!(later.is_empty(), "unexpected entries: {later:#?}");

    for entry in &on_a {
        let time = entry.time.expect("every change has a time");
        assert!(time >= started, "{time} is before the test started");
        assert!(time <= chrono::Utc::now() + chrono::Duration::seconds(2));
    }

    // The concurrent lifecycle edits left a conflict; resolving it is one more entry.
    assert_eq!(a.conflicts(Some(id)).expect("conflicts").len(), 1);
    a.resolve(id, "lifecycle", "loyal").expect("resolve");
    let after = a.history(id).expect("history");
    assert_eq!(after.len(), 9);
    let last = after.last().expect("an entry");
    assert_eq!(last.user.as_deref(), Some("alice"));
    assert_eq!(last.changes.len(), 1, "{last:#?}");
    assert_eq!(last.changes[0].field, "lifecycle");
    assert_eq!(last.changes[0].new, json!("loyal"));
}

#[test]
fn history_survives_a_reopen_and_skips_no_op_edits() {
    let (dir, mut a) = replica("alice", "laptop");
    let id = create(&mut a, Kind::Contact, &[("last_name", "李")]);
    a.edit(id, &edit(Kind::Contact, &[("title", "CEO")]))
        .expect("edit");
    a.edit(id, &edit(Kind::Contact, &[("title", "CEO")]))
        .expect("no-op edit");
    a.edit(id, &edit(Kind::Contact, &[("decision_maker", "yes")]))
        .expect("edit");
    let before = a.history(id).expect("history");
    assert_eq!(before.len(), 3, "the no-op edit is no change: {before:#?}");
    drop(a);
    let mut a = crm_store::Store::open(dir.path()).expect("reopen");
    assert_eq!(a.history(id).expect("history"), before);
    assert_eq!(
        before[2].changes,
        vec![change("decision_maker", Json::Null, json!(true))]
    );
}
