//! Compaction folds a document's loose changes into a snapshot once there are enough of them.
//! Loading must give the same document from snapshot + loose changes, for local and remote
//! changes, for documents still waiting for their creating change, and for a second handle
//! whose cached copy went stale meanwhile.

mod common;

use common::{all_changes, changes_of, create, edit, replica, state};
use crm_model::{Edit, FieldValue, Kind, RecordId};
use crm_store::Store;

/// More edits than the compaction threshold, so at least one snapshot is written.
const EDITS: usize = 45;

fn many_edits(store: &mut Store, id: RecordId, prefix: &str) {
    for i in 0..EDITS {
        let mut e = edit(Kind::Account, &[("industry", &format!("{prefix}{i}"))]);
        if i % 5 == 0 {
            e.tag(&format!("{prefix}t{i}")).expect("valid tag");
        }
        if i % 7 == 0 {
            e.append_notes(&format!("{prefix} note {i}"))
                .expect("valid notes");
        }
        let record = store.edit(id, &e).expect("edit");
        assert_eq!(
            record.get("industry"),
            Some(&FieldValue::Text(format!("{prefix}{i}")))
        );
    }
}

#[test]
fn a_compacted_record_reloads_with_its_latest_values_and_whole_history() {
    let (dir, mut a) = replica("alice", "laptop");
    let id = create(&mut a, Kind::Account, &[("name", "ACME")]);
    many_edits(&mut a, id, "i");
    let want = a.get(id).expect("record");
    assert_eq!(want.tags.len(), EDITS.div_ceil(5));
    let history_len = a.history(id).expect("history").len();
    assert_eq!(history_len, 1 + EDITS);
    let before = state(&a);
    drop(a);

    let mut a = Store::open(dir.path()).expect("reopen");
    assert_eq!(a.get(id).expect("record"), want);
    assert_eq!(a.history(id).expect("history").len(), history_len);
    assert_eq!(state(&a), before);
    assert_eq!(
        changes_of(&a, id).len(),
        1 + EDITS,
        "folded changes stay in the log for peers"
    );

    // Writing on top of the snapshot works, and survives another reopen and a reindex.
    a.edit(id, &edit(Kind::Account, &[("grade", "key")]))
        .expect("edit after reopen");
    many_edits(&mut a, id, "j");
    let want = a.get(id).expect("record");
    drop(a);
    let mut a = Store::open(dir.path()).expect("reopen again");
    assert_eq!(a.get(id).expect("record"), want);
    assert_eq!(a.history(id).expect("history").len(), 2 + 2 * EDITS);
    let dump = a.projection_dump().expect("dump");
    a.reindex().expect("reindex");
    assert_eq!(a.projection_dump().expect("dump"), dump);
}

#[test]
fn a_replica_receiving_many_changes_at_once_compacts_them() {
    let (_da, mut a) = replica("alice", "laptop");
    let id = create(&mut a, Kind::Account, &[("name", "ACME")]);
    many_edits(&mut a, id, "i");
    let want = a.get(id).expect("record");
    let (dir, mut b) = replica("bob", "phone");
    let report = b.merge_from(&a).expect("merge");
    assert_eq!(report.applied, all_changes(&a).len());
    assert_eq!(b.get(id).expect("record"), want);
    drop(b);
    let mut b = Store::open(dir.path()).expect("reopen");
    assert_eq!(b.get(id).expect("record"), want);
    assert_eq!(b.history(id).expect("history").len(), 1 + EDITS);
    assert_eq!(
        b.all_heads().expect("heads")[&id],
        a.all_heads().expect("heads")[&id]
    );
    // Bob keeps editing the compacted copy; alice gets it all back.
    b.edit(id, &edit(Kind::Account, &[("industry", "bob")]))
        .expect("edit on b");
    a.merge_from(&b).expect("merge back");
    assert_eq!(a.get(id).expect("a"), b.get(id).expect("b"));
}

#[test]
fn changes_waiting_for_their_creating_change_survive_compaction() {
    let (_da, mut a) = replica("alice", "laptop");
    let id = create(&mut a, Kind::Account, &[("name", "ACME")]);
    many_edits(&mut a, id, "i");
    let want = a.get(id).expect("record");
    let changes = changes_of(&a, id);
    let (dir, mut b) = replica("bob", "phone");
    // Everything but the creating change, in two batches: more loose changes than the
    // compaction threshold, none of them applicable yet.
    let (creating, rest) = changes.split_first().expect("changes");
    let (early, late) = rest.split_at(rest.len() / 2);
    b.apply_remote_changes(late).expect("late half");
    b.apply_remote_changes(early).expect("early half");
    assert!(
        b.get(id).is_err(),
        "not readable before its creating change"
    );
    drop(b);
    let mut b = Store::open(dir.path()).expect("reopen");
    let report = b
        .apply_remote_changes(std::slice::from_ref(creating))
        .expect("creating change");
    assert_eq!(report.changed, vec![id]);
    assert_eq!(b.get(id).expect("record"), want);
    assert_eq!(
        b.all_heads().expect("heads")[&id],
        a.all_heads().expect("heads")[&id]
    );
    drop(b);
    let mut b = Store::open(dir.path()).expect("reopen");
    assert_eq!(b.get(id).expect("record"), want);
}

#[test]
fn a_stale_cached_copy_is_reloaded_after_another_handle_compacted() {
    let (dir, mut a) = replica("alice", "laptop");
    let id = create(&mut a, Kind::Account, &[("name", "ACME")]);
    let mut other = Store::open(dir.path()).expect("second handle");
    // The second handle caches the document as it is now.
    let old = other.get(id).expect("record");
    assert!(old.get("industry").is_none());
    many_edits(&mut a, id, "i");
    // Its next write must start from the compacted document, not its cached copy.
    let mut e = Edit::new(Kind::Account);
    e.set("grade", "vip").expect("valid");
    let record = other.edit(id, &e).expect("edit from the stale handle");
    assert_eq!(
        record.get("industry"),
        Some(&FieldValue::Text(format!("i{}", EDITS - 1)))
    );
    assert_eq!(record.get("grade"), Some(&FieldValue::Text("vip".into())));
    assert!(record.conflicts.is_empty(), "{:?}", record.conflicts);
    let fresh_record = Store::open(dir.path())
        .expect("fresh")
        .get(id)
        .expect("record");
    assert_eq!(fresh_record, record);
    assert_eq!(a.get(id).expect("record"), record);
}
