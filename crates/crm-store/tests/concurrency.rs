//! Several handles writing one replica at once (the CLI while `crm serve` runs). Each handle
//! writes under its own actor id and loads, changes and saves a document inside one
//! `BEGIN IMMEDIATE` transaction, so no two changes share an (actor, seq) and no write is lost.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Barrier};
use std::thread;

use common::{changes_of, create, edit, replica};
use crm_model::automerge::Change;
use crm_model::{Edit, FieldValue, Kind, RecordId};
use crm_store::{ListQuery, RemoteChange, Store};

const EDITS: usize = 100;

fn text(s: &str) -> Option<FieldValue> {
    Some(FieldValue::Text(s.into()))
}

/// Every change of the record has a distinct (actor, seq); returns the actors.
fn assert_unique_actor_seq(changes: &[RemoteChange]) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut actors = BTreeSet::new();
    for c in changes {
        let change = Change::from_bytes(c.bytes.clone()).expect("stored change parses");
        let actor = change.actor_id().to_hex_string();
        assert!(
            seen.insert((actor.clone(), change.seq())),
            "two changes with actor {actor} and seq {}",
            change.seq()
        );
        actors.insert(actor);
    }
    actors
}

fn writer(dir: &Path, id: RecordId, me: usize, start: &Barrier) {
    let mut store = Store::open(dir).expect("open in thread");
    start.wait();
    for i in 0..EDITS {
        let own_field = if me == 0 { "industry" } else { "source" };
        let mine = format!("t{me}-{i}");
        let mut e = edit(
            Kind::Account,
            &[(own_field, &mine), ("billing_address", &mine)],
        );
        if i % 10 == 0 {
            e.tag(&mine).expect("valid tag");
        }
        let record = store
            .edit(id, &e)
            .unwrap_or_else(|err| panic!("thread {me}, edit {i}: {err}"));
        assert_eq!(record.get(own_field).cloned(), text(&mine));
        assert_eq!(record.get("billing_address").cloned(), text(&mine));
        assert!(record.tags.contains(&format!("t{me}-0")));
        assert!(record.conflicts.is_empty(), "{:?}", record.conflicts);
    }
}

#[test]
fn two_threads_editing_one_record_lose_nothing() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "ACME")]);
    let outbox = store.outbox_len().expect("outbox");
    drop(store);

    let start = Arc::new(Barrier::new(3));
    let handles: Vec<_> = (0..2)
        .map(|me| {
            let dir = dir.path().to_path_buf();
            let start = Arc::clone(&start);
            thread::spawn(move || writer(&dir, id, me, &start))
        })
        .collect();
    // A reader on a third handle always sees a whole record.
    let reader = {
        let dir = dir.path().to_path_buf();
        let start = Arc::clone(&start);
        thread::spawn(move || {
            let mut store = Store::open(&dir).expect("open reader");
            start.wait();
            for _ in 0..EDITS {
                let record = store.get(id).expect("readable while written");
                assert_eq!(record.get("name").cloned(), text("ACME"));
                let rows = store.list(&ListQuery::new(Kind::Account)).expect("list");
                assert_eq!(rows.len(), 1);
                assert_eq!(rows[0].json["name"], "ACME");
            }
        })
    };
    for h in handles {
        h.join().expect("writer thread");
    }
    reader.join().expect("reader thread");

    let mut store = Store::open(dir.path()).expect("fresh open");
    let record = store.get(id).expect("record");
    assert_eq!(
        record.get("industry").cloned(),
        text(&format!("t0-{}", EDITS - 1))
    );
    assert_eq!(
        record.get("source").cloned(),
        text(&format!("t1-{}", EDITS - 1))
    );
    let last = record.get("billing_address").expect("billing address");
    assert!(
        *last == FieldValue::Text(format!("t0-{}", EDITS - 1))
            || *last == FieldValue::Text(format!("t1-{}", EDITS - 1)),
        "{last:?}"
    );
    assert!(
        record.conflicts.is_empty(),
        "sequential writes never conflict"
    );
    for me in 0..2 {
        for i in (0..EDITS).step_by(10) {
            assert!(record.tags.contains(&format!("t{me}-{i}")));
        }
    }
    assert_eq!(store.history(id).expect("history").len(), 1 + 2 * EDITS);
    assert_eq!(
        store.outbox_len().expect("outbox"),
        outbox + 2 * u64::try_from(EDITS).expect("fits")
    );
    let changes = changes_of(&store, id);
    assert_eq!(changes.len(), 1 + 2 * EDITS);
    let actors = assert_unique_actor_seq(&changes);
    assert_eq!(actors.len(), 3, "the creating session and one per thread");
    // The projection agrees with the document.
    let row = store
        .list(&ListQuery::new(Kind::Account))
        .expect("list")
        .into_iter()
        .next()
        .expect("row");
    assert_eq!(row.json, record.to_json());
}

#[test]
fn two_handles_alternating_in_one_thread_see_each_others_writes() {
    let (dir, mut a) = replica("alice", "laptop");
    let id = create(&mut a, Kind::Contact, &[("last_name", "李")]);
    let mut b = Store::open(dir.path()).expect("second handle");
    for i in 0..20 {
        let (store, field) = if i % 2 == 0 {
            (&mut a, "title")
        } else {
            (&mut b, "department")
        };
        let value = format!("v{i}");
        let record = store
            .edit(id, &edit(Kind::Contact, &[(field, &value)]))
            .expect("edit");
        assert_eq!(record.get(field).cloned(), text(&value));
        if i > 0 {
            let other = if i % 2 == 0 { "department" } else { "title" };
            assert_eq!(
                record.get(other).cloned(),
                text(&format!("v{}", i - 1)),
                "handle sees the other's last write"
            );
        }
    }
    assert_eq!(a.get(id).expect("a"), b.get(id).expect("b"));
    assert_eq!(a.history(id).expect("history").len(), 21);
    assert_unique_actor_seq(&changes_of(&a, id));
}

#[test]
fn remote_changes_and_local_edits_of_one_record_at_once() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "ACME")]);
    drop(store);
    // A remote replica with its own edits of the same record.
    let (_rdir, mut remote) = replica("bob", "phone");
    remote
        .merge_from(&Store::open(dir.path()).expect("open"))
        .expect("merge");
    for i in 0..EDITS {
        remote
            .edit(id, &edit(Kind::Account, &[("industry", &format!("r{i}"))]))
            .expect("remote edit");
    }
    let incoming = changes_of(&remote, id)
        .into_iter()
        .skip(1)
        .collect::<Vec<_>>();
    assert_eq!(incoming.len(), EDITS);

    let start = Arc::new(Barrier::new(2));
    let applier = {
        let dir = dir.path().to_path_buf();
        let start = Arc::clone(&start);
        thread::spawn(move || {
            let mut store = Store::open(&dir).expect("open applier");
            start.wait();
            for batch in incoming.chunks(5) {
                store.apply_remote_changes(batch).expect("apply batch");
            }
        })
    };
    let editor = {
        let dir = dir.path().to_path_buf();
        let start = Arc::clone(&start);
        thread::spawn(move || {
            let mut store = Store::open(&dir).expect("open editor");
            start.wait();
            for i in 0..EDITS {
                let mut e = Edit::new(Kind::Account);
                e.set("source", &format!("l{i}")).expect("valid");
                store.edit(id, &e).expect("local edit");
            }
        })
    };
    applier.join().expect("applier");
    editor.join().expect("editor");

    let mut store = Store::open(dir.path()).expect("fresh open");
    let record = store.get(id).expect("record");
    assert_eq!(
        record.get("industry").cloned(),
        text(&format!("r{}", EDITS - 1))
    );
    assert_eq!(
        record.get("source").cloned(),
        text(&format!("l{}", EDITS - 1))
    );
    assert_eq!(store.history(id).expect("history").len(), 1 + 2 * EDITS);
    // Everything merges back into the remote replica without a gap.
    remote.merge_from(&store).expect("merge back");
    assert_eq!(remote.get(id).expect("remote"), record);
    assert_eq!(
        remote.all_heads().expect("heads")[&id],
        store.all_heads().expect("heads")[&id]
    );
}
