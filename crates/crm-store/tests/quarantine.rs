//! Issue 12, failure 1 (device half) and failure 5 (pull side): one bad entry in a pulled
//! batch or a merged replica costs one record at most, never the log. Each test is named for
//! the failure it pins; on the code before the fix each batch below was refused whole (or
//! applied a damaged change), on every try.

mod common;

use common::{changes_of, create, edit, replica};
use crm_model::automerge::Change;
use crm_model::{Author, FieldValue, Kind, RecordId, Stamp, doc};
use crm_store::{
    Origin, Problem, PulledChange, RemoteChange, RemoteDocument, Store, StoreError, SyncCursor,
};

fn cursor(seq: u64) -> SyncCursor {
    SyncCursor {
        relay_id: [7; 16],
        seq,
        hash: [seq.to_le_bytes()[0]; 32],
    }
}

/// Changes as a relay's log would number them, from position `from`.
fn numbered(changes: &[RemoteChange], from: u64) -> Vec<PulledChange> {
    changes
        .iter()
        .zip(from..)
        .map(|(change, seq)| PulledChange {
            seq,
            change: change.clone(),
        })
        .collect()
}

fn name(store: &mut Store, id: RecordId) -> Option<FieldValue> {
    store.get(id).expect("record").get("name").cloned()
}

/// A relay stored a change of record X under an envelope naming record Y. Every device then
/// refused the whole pulled batch ("record Y: a change claims to belong to record X") on every
/// try, so sync stopped for the whole workspace. Now the entry is quarantined, everything
/// else applies and the cursor moves past it; X's real changes still apply when they come.
#[test]
fn a_change_of_another_record_under_a_pulled_entry_stopped_every_pull() {
    // X is made on another device than Y and Z (another Automerge actor).
    let (_x_dir, mut other) = replica("dave", "desktop");
    let x = create(&mut other, Kind::Account, &[("name", "X Ltd")]);
    let (_src_dir, mut src) = replica("alice", "laptop");
    src.merge_from(&other).expect("merge");
    let y = create(&mut src, Kind::Account, &[("name", "Y Ltd")]);
    let z = create(&mut src, Kind::Account, &[("name", "Z Ltd")]);
    let x_created = changes_of(&src, x)[0].clone();

    // A device that never saw X: X's creating change arrives under Y, between Y's and Z's.
    let (_dir, mut fresh) = replica("bob", "phone");
    let mut log = changes_of(&src, y);
    log.push(RemoteChange {
        doc_id: y,
        bytes: x_created.bytes.clone(),
    });
    let poisoned_at = u64::try_from(log.len()).expect("small");
    log.extend(changes_of(&src, z));
    let end = u64::try_from(log.len()).expect("small");
    let report = fresh
        .apply_pulled(&numbered(&log, 1), cursor(end))
        .expect("the pull goes on past the poisoned entry");
    assert_eq!(report.applied, log.len() - 1);
    assert_eq!(report.quarantined.len(), 1);
    let q = &report.quarantined[0];
    assert_eq!(q.doc_id, y);
    assert_eq!(q.problem, Problem::OtherRecord);
    assert_eq!(q.origin, Origin::Relay { seq: poisoned_at });
    assert!(q.reason.contains(&x.to_string()), "{}", q.reason);
    assert_eq!(fresh.sync_cursor().expect("cursor"), Some(cursor(end)));
    assert_eq!(name(&mut fresh, y), Some(FieldValue::Text("Y Ltd".into())));
    assert_eq!(name(&mut fresh, z), Some(FieldValue::Text("Z Ltd".into())));
    assert_eq!(fresh.quarantined().expect("list"), report.quarantined);
    // X's own entry comes later in the log: it is not "already stored", it applies.
    let later = fresh
        .apply_pulled(&numbered(&[x_created], end + 1), cursor(end + 1))
        .expect("X");
    assert_eq!(later.applied, 1);
    assert!(later.quarantined.is_empty());
    assert_eq!(name(&mut fresh, x), Some(FieldValue::Text("X Ltd".into())));

    // A device that has X: an edit of X arrives under Y. Before, it was stored as a change
    // of Y waiting forever, and X's real copy of it was then skipped as "already stored".
    let (_dir2, mut old) = replica("carol", "tablet");
    let all: Vec<RemoteChange> = [x, y, z]
        .into_iter()
        .flat_map(|id| changes_of(&src, id))
        .collect();
    let n = u64::try_from(all.len()).expect("small");
    old.apply_pulled(&numbered(&all, 1), cursor(n))
        .expect("first pull");
    src.edit(x, &edit(Kind::Account, &[("name", "X Holdings")]))
        .expect("edit x");
    let x_edit = changes_of(&src, x).pop().expect("the edit");
    let under_y = RemoteChange {
        doc_id: y,
        bytes: x_edit.bytes.clone(),
    };
    let report = old
        .apply_pulled(&numbered(&[under_y], n + 1), cursor(n + 1))
        .expect("pull");
    assert_eq!(report.applied, 0);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].problem, Problem::OtherRecord);
    assert_eq!(old.sync_cursor().expect("cursor"), Some(cursor(n + 1)));
    let report = old
        .apply_pulled(&numbered(&[x_edit], n + 2), cursor(n + 2))
        .expect("pull");
    assert_eq!((report.applied, report.duplicates), (1, 0));
    assert_eq!(
        name(&mut old, x),
        Some(FieldValue::Text("X Holdings".into()))
    );
    assert_eq!(name(&mut old, y), Some(FieldValue::Text("Y Ltd".into())));
}

/// The bytes of `change` with one bit flipped where the change still parses: a damaged change
/// that Automerge's parser alone accepts, with other contents under another hash.
fn flipped(change: &[u8]) -> Vec<u8> {
    (8..change.len())
        .rev()
        .find_map(|i| {
            let mut bytes = change.to_vec();
            bytes[i] ^= 0x01;
            Change::try_from(bytes.as_slice()).is_ok().then_some(bytes)
        })
        .expect("a bit whose flip still parses")
}

/// A pulled entry with a flipped bit that still parses was applied as a different change,
/// silently (or, when it did not parse, refused the whole batch on every try). Now its
/// checksum is verified and it is quarantined alone.
#[test]
fn a_damaged_pulled_entry_was_applied_or_stopped_every_pull() {
    let (_src_dir, mut src) = replica("alice", "laptop");
    let a = create(&mut src, Kind::Account, &[("name", "ACME")]);
    src.edit(a, &edit(Kind::Account, &[("industry", "retail")]))
        .expect("edit");
    let b = create(&mut src, Kind::Account, &[("name", "Bolt")]);
    let mut log = changes_of(&src, a);
    log.extend(changes_of(&src, b));
    let good = log[1].bytes.clone();
    log[1].bytes = flipped(&good);
    let (_dir, mut dev) = replica("bob", "phone");
    let end = u64::try_from(log.len()).expect("small");
    let report = dev
        .apply_pulled(&numbered(&log, 10), cursor(end + 9))
        .expect("pull");
    assert_eq!(report.applied, log.len() - 1);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].problem, Problem::Damaged);
    assert_eq!(report.quarantined[0].origin, Origin::Relay { seq: 11 });
    assert_eq!(dev.sync_cursor().expect("cursor"), Some(cursor(end + 9)));
    assert_eq!(
        dev.get(a).expect("a").get("industry"),
        None,
        "the damaged edit is not applied"
    );
    assert_eq!(name(&mut dev, b), Some(FieldValue::Text("Bolt".into())));
    // The good copy, when it comes, applies.
    let report = dev
        .apply_pulled(
            &numbered(
                &[RemoteChange {
                    doc_id: a,
                    bytes: good,
                }],
                end + 10,
            ),
            cursor(end + 10),
        )
        .expect("pull");
    assert_eq!(report.applied, 1);
    assert_eq!(
        dev.get(a).expect("a").get("industry"),
        Some(&FieldValue::Text("retail".into()))
    );
}

/// A change Automerge refuses (a second change with an actor and sequence number the
/// document already has) failed the whole batch. Now only that change is quarantined, and
/// the record's other changes in the batch apply.
#[test]
fn a_change_the_document_refuses_stopped_every_pull() {
    let (_src_dir, mut src) = replica("alice", "laptop");
    let y = create(&mut src, Kind::Account, &[("name", "Y Ltd")]);
    src.edit(y, &edit(Kind::Account, &[("grade", "vip")]))
        .expect("edit");
    let ys = changes_of(&src, y);
    let actor = Change::try_from(ys[0].bytes.as_slice())
        .expect("a change")
        .actor_id()
        .clone();
    // Another record created by Y's actor: its first change has Y's (actor, seq 1).
    let author = Author::new("mallory", "laptop");
    let other = doc::create(
        RecordId::new(),
        &edit(Kind::Account, &[("name", "Other")]),
        Stamp {
            author: &author,
            now: chrono::Utc::now(),
        },
        actor,
    )
    .expect("doc");
    let clash = other
        .get_last_local_change()
        .expect("its change")
        .raw_bytes()
        .to_vec();
    let (_dir, mut dev) = replica("bob", "phone");
    let batch = vec![
        ys[0].clone(),
        RemoteChange {
            doc_id: y,
            bytes: clash,
        },
        ys[1].clone(),
    ];
    let report = dev
        .apply_pulled(&numbered(&batch, 1), cursor(3))
        .expect("pull");
    assert_eq!(report.applied, 2);
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(report.quarantined[0].problem, Problem::Refused);
    assert_eq!(report.quarantined[0].origin, Origin::Relay { seq: 2 });
    let record = dev.get(y).expect("y");
    assert_eq!(record.get("name"), Some(&FieldValue::Text("Y Ltd".into())));
    assert_eq!(record.get("grade"), Some(&FieldValue::Text("vip".into())));
}

/// A relay's bootstrap page holding a document with another record's change failed the
/// device's first sync outright ("a change claims to belong to record …"). The page is now
/// refused as invalid, which makes the device sync from the log, where the entry is
/// quarantined on its own.
#[test]
fn a_bootstrap_page_with_another_records_change_failed_the_first_sync() {
    let (_src_dir, mut src) = replica("alice", "laptop");
    let x = create(&mut src, Kind::Account, &[("name", "X Ltd")]);
    let y = create(&mut src, Kind::Account, &[("name", "Y Ltd")]);
    let mut changes: Vec<Vec<u8>> = changes_of(&src, y).into_iter().map(|c| c.bytes).collect();
    changes.push(changes_of(&src, x)[0].bytes.clone());
    let (_dir, mut dev) = replica("bob", "phone");
    let page = vec![RemoteDocument {
        doc_id: y,
        snapshot: Vec::new(),
        hashes: Vec::new(),
        changes,
    }];
    match dev.apply_documents(page, Some(cursor(3))) {
        Err(StoreError::InvalidDocument { id, .. }) => assert_eq!(id, y),
        other => panic!("expected InvalidDocument, got {other:?}"),
    }
    assert_eq!(dev.sync_cursor().expect("cursor"), None);
}

/// A bootstrap page whose document holds a change this device already stores as another
/// record's failed the first sync with an SQLite constraint error. It is refused as invalid
/// instead, so the device syncs from the log.
#[test]
fn a_bootstrap_page_with_a_change_stored_under_another_record_failed_the_first_sync() {
    let (_x_dir, mut other) = replica("dave", "desktop");
    let x = create(&mut other, Kind::Account, &[("name", "X Ltd")]);
    other
        .edit(x, &edit(Kind::Account, &[("grade", "vip")]))
        .expect("edit");
    let (_src_dir, mut src) = replica("alice", "laptop");
    let y = create(&mut src, Kind::Account, &[("name", "Y Ltd")]);
    let (_dir, mut dev) = replica("bob", "phone");
    dev.apply_remote_changes(&changes_of(&other, x)).expect("x");
    let mut changes: Vec<Vec<u8>> = changes_of(&src, y).into_iter().map(|c| c.bytes).collect();
    changes.push(changes_of(&other, x).pop().expect("x's edit").bytes);
    let page = vec![RemoteDocument {
        doc_id: y,
        snapshot: Vec::new(),
        hashes: Vec::new(),
        changes,
    }];
    match dev.apply_documents(page, Some(cursor(3))) {
        Err(StoreError::InvalidDocument { id, .. }) => assert_eq!(id, y),
        other => panic!("expected InvalidDocument, got {other:?}"),
    }
    assert_eq!(dev.sync_cursor().expect("cursor"), None);
}

/// `merge_from` queues what it takes, each change after the ones it builds on, even when the
/// other replica stored them out of order (changes that came before their dependencies):
/// the relay refuses a change whose dependencies it lacks, so a record that came on a USB
/// stick must be pushable, history first, before the edits made on it here.
#[test]
fn merged_changes_are_queued_for_the_relay_in_causal_order() {
    let (_a_dir, mut a) = replica("alice", "laptop");
    let r = create(&mut a, Kind::Account, &[("name", "ACME")]);
    for grade in ["vip", "normal", "key", "vip"] {
        a.edit(r, &edit(Kind::Account, &[("grade", grade)]))
            .expect("edit");
    }
    // A replica that got r's changes newest first: its log is not causal.
    let (_m_dir, mut middle) = replica("mel", "usb");
    for change in changes_of(&a, r).into_iter().rev() {
        middle.apply_remote_changes(&[change]).expect("one change");
    }
    assert_eq!(
        middle.get(r).expect("r").get("grade"),
        Some(&FieldValue::Text("vip".into()))
    );
    let (_b_dir, mut b) = replica("bob", "phone");
    let before = b.outbox_len().expect("outbox");
    let report = b.merge_from(&middle).expect("merge");
    assert!(report.quarantined.is_empty());
    b.edit(r, &edit(Kind::Account, &[("industry", "retail")]))
        .expect("edit here");
    let history = changes_of(&a, r).len();
    // Middle's own user record and r's history, then the edit made here.
    let outbox = b.outbox(usize::MAX).expect("outbox");
    assert!(
        outbox.len() > usize::try_from(before).expect("small") + history,
        "{} queued",
        outbox.len()
    );
    let mut pushed = std::collections::HashSet::new();
    for c in &outbox {
        let change = Change::try_from(c.bytes.as_slice()).expect("a change");
        for dep in change.deps() {
            assert!(
                pushed.contains(dep),
                "{} is queued before a change it builds on",
                change.hash()
            );
        }
        pushed.insert(change.hash());
    }
    let mine = outbox.last().expect("the edit here");
    assert_eq!(mine.doc_id, r);
}

/// A pending change (its dependencies never arrived) taken from another replica is queued
/// but not pushed while it waits, and holds up nothing else.
#[test]
fn a_merged_change_waiting_for_its_dependencies_is_not_pushed() {
    let (_a_dir, mut a) = replica("alice", "laptop");
    let r = create(&mut a, Kind::Account, &[("name", "ACME")]);
    a.edit(r, &edit(Kind::Account, &[("grade", "vip")]))
        .expect("edit");
    let edit_only = changes_of(&a, r).pop().expect("the edit");
    let (_m_dir, mut middle) = replica("mel", "usb");
    middle.apply_remote_changes(&[edit_only]).expect("pending");
    let (_b_dir, mut b) = replica("bob", "phone");
    let s = create(&mut b, Kind::Account, &[("name", "Mine")]);
    b.merge_from(&middle).expect("merge");
    let outbox = b.outbox(usize::MAX).expect("outbox");
    assert!(
        outbox.iter().all(|c| c.doc_id != r),
        "the pending change waits"
    );
    assert!(outbox.iter().any(|c| c.doc_id == s));
}

fn store_rejected(dir: &std::path::Path) -> u64 {
    Store::open(dir)
        .expect("open")
        .rejected_count()
        .expect("refused edits")
}

/// Replicas of format 1 (before quarantine) are upgraded in place when opened.
#[test]
fn a_replica_of_the_previous_format_is_upgraded_when_opened() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "ACME")]);
    drop(store);
    let path = dir.path().join(crm_store::REPLICA_FILE);
    {
        let conn = rusqlite::Connection::open(&path).expect("open db");
        conn.execute_batch(
            "DROP TABLE quarantine; DROP TABLE out_of_scope; DROP TABLE refused_changes; \
             DROP TABLE refused_edits; DROP TABLE refused_actors; PRAGMA user_version = 1;",
        )
        .expect("make it format 1");
    }
    let mut store = Store::open(dir.path()).expect("open upgrades");
    assert_eq!(store.quarantine_len().expect("quarantine"), 0);
    assert_eq!(name(&mut store, id), Some(FieldValue::Text("ACME".into())));
    drop(store);
    let conn = rusqlite::Connection::open(&path).expect("open db");
    let version: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, 4);
    assert_eq!(
        store_rejected(dir.path()),
        0,
        "the refused edits' tables are there too"
    );
    // The quarantine table works after the upgrade.
    let mut store = Store::open(dir.path()).expect("open again");
    let report = store
        .apply_remote_changes(&[RemoteChange {
            doc_id: id,
            bytes: vec![1, 2, 3],
        }])
        .expect("garbage");
    assert_eq!(report.quarantined.len(), 1);
    assert_eq!(store.quarantine_len().expect("quarantine"), 1);
}
