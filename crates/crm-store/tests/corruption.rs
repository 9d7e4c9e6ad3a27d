//! Issue 12, failure 5 (device half): one flipped bit in a replica's stored change bytes
//! erased a record's field on every device with no error anywhere, because the device pushed
//! stored bytes without checking them against their hash. Now the outbox verifies every
//! change before it goes out, recovers it from the document's snapshot when it can, and
//! `Store::check` verifies a whole replica without writing anything.

mod common;

use common::{create, edit, replica, state};
use crm_model::automerge::{Change, ChangeHash};
use crm_model::{Kind, RecordId};
use crm_store::{CheckKind, REPLICA_FILE, Store, StoreError};

/// Flips one bit of the stored bytes of change `seq` (a bit whose flip still parses: what
/// Automerge's parser alone accepts); returns the good bytes.
fn flip_stored(dir: &std::path::Path, seq: i64) -> Vec<u8> {
    let conn = rusqlite::Connection::open(dir.join(REPLICA_FILE)).expect("open db");
    let good: Vec<u8> = conn
        .query_row("SELECT bytes FROM changes WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .expect("the change");
    let bad = (8..good.len())
        .rev()
        .find_map(|i| {
            let mut bytes = good.clone();
            bytes[i] ^= 0x01;
            Change::try_from(bytes.as_slice()).is_ok().then_some(bytes)
        })
        .expect("a bit whose flip still parses");
    conn.execute(
        "UPDATE changes SET bytes = ?2 WHERE seq = ?1",
        rusqlite::params![seq, bad],
    )
    .expect("flip");
    good
}

/// The log position and hash of the newest change of the replica.
fn newest(dir: &std::path::Path) -> (i64, ChangeHash) {
    let conn = rusqlite::Connection::open(dir.join(REPLICA_FILE)).expect("open db");
    let (seq, hash): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT seq, hash FROM changes ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .expect("a change");
    (seq, ChangeHash::try_from(hash.as_slice()).expect("a hash"))
}

/// A replica with a damaged local change waiting to be pushed: the record's edit is damaged,
/// a later edit of the same record builds on it, another record is untouched.
struct Damaged {
    dir: tempfile::TempDir,
    store: Store,
    record: RecordId,
    other: RecordId,
    damaged: ChangeHash,
}

fn damaged() -> Damaged {
    let (dir, mut store) = replica("alice", "laptop");
    let record = create(&mut store, Kind::Account, &[("name", "ACME")]);
    store
        .edit(record, &edit(Kind::Account, &[("industry", "retail")]))
        .expect("edit");
    let (seq, damaged) = newest(dir.path());
    store
        .edit(record, &edit(Kind::Account, &[("grade", "vip")]))
        .expect("edit on top");
    let other = create(&mut store, Kind::Account, &[("name", "Bolt")]);
    drop(store);
    flip_stored(dir.path(), seq);
    let store = Store::open(dir.path()).expect("open");
    Damaged {
        dir,
        store,
        record,
        other,
        damaged,
    }
}

/// A flipped bit in a change waiting in the outbox was pushed as it was: every device then
/// applied the damaged change. Now it is not pushed, nor the change that builds on it; the
/// other records' changes still go; the sync's error names the record and `crm check`.
#[test]
fn a_flipped_bit_in_an_outbox_change_was_pushed_to_every_device() {
    let d = damaged();
    let batch = d.store.outbox_batch(500, usize::MAX).expect("outbox");
    let pushed: Vec<ChangeHash> = batch
        .changes
        .iter()
        .map(|c| {
            Change::try_from(c.bytes.as_slice())
                .expect("a change")
                .hash()
        })
        .collect();
    assert!(
        !pushed.contains(&d.damaged),
        "the damaged change is not pushed"
    );
    // The record's creation goes; its damaged edit and the edit on top of it do not.
    assert_eq!(
        batch
            .changes
            .iter()
            .filter(|c| c.doc_id == d.record)
            .count(),
        1
    );
    assert!(batch.changes.iter().any(|c| c.doc_id == d.other));
    for c in &batch.changes {
        crm_model::change::verify(&c.bytes).expect("only verified bytes are pushed");
    }
    assert_eq!(batch.damaged.len(), 1);
    assert_eq!(batch.damaged[0].doc_id, d.record);
    assert_eq!(batch.damaged[0].hash, d.damaged.to_string());
    match batch.damage() {
        Some(e @ StoreError::DamagedChanges { .. }) => {
            let message = e.to_string();
            assert!(message.contains(&d.record.to_string()), "{message}");
            assert!(message.contains("crm check"), "{message}");
        }
        other => panic!("expected DamagedChanges, got {other:?}"),
    }
    // `outbox` (what a push reads) agrees.
    assert_eq!(d.store.outbox(500).expect("outbox"), batch.changes);

    let report = Store::check(d.dir.path()).expect("check");
    assert!(!report.is_clean());
    let problem = report
        .problems
        .iter()
        .find(|p| p.kind == CheckKind::DamagedChange)
        .expect("the damaged change is reported");
    assert_eq!(problem.record, Some(d.record));
    assert!(problem.detail.contains(&d.damaged.to_string()));
}

/// A damaged change that the document's snapshot holds (it was compacted) is taken from the
/// snapshot, pushed with its good bytes, and its row repaired.
#[test]
fn a_damaged_outbox_change_held_in_a_snapshot_is_recovered() {
    let (dir, mut store) = replica("alice", "laptop");
    let record = create(&mut store, Kind::Account, &[("name", "ACME")]);
    store
        .edit(record, &edit(Kind::Account, &[("industry", "retail")]))
        .expect("edit");
    let (seq, hash) = newest(dir.path());
    // Enough edits to fold the loose changes into a snapshot.
    for i in 0..40 {
        store
            .edit(
                record,
                &edit(
                    Kind::Account,
                    &[("website", &format!("https://{i}.example"))],
                ),
            )
            .expect("edit");
    }
    drop(store);
    let good = flip_stored(dir.path(), seq);
    let store = Store::open(dir.path()).expect("open");
    let before = Store::check(dir.path()).expect("check");
    let problem = before
        .problems
        .iter()
        .find(|p| p.kind == CheckKind::DamagedChange)
        .expect("reported");
    assert!(problem.repair.contains("snapshot"), "{}", problem.repair);

    let batch = store.outbox_batch(500, usize::MAX).expect("outbox");
    assert!(batch.damaged.is_empty());
    let pushed = batch
        .changes
        .iter()
        .find(|c| {
            Change::try_from(c.bytes.as_slice())
                .map(|c| c.hash() == hash)
                .unwrap_or(false)
        })
        .expect("the recovered change is pushed");
    crm_model::change::verify_hash(&pushed.bytes, &hash).expect("with good bytes");
    let conn = rusqlite::Connection::open(dir.path().join(REPLICA_FILE)).expect("open db");
    let stored: Vec<u8> = conn
        .query_row("SELECT bytes FROM changes WHERE seq = ?1", [seq], |r| {
            r.get(0)
        })
        .expect("row");
    assert_eq!(stored, good, "the row is repaired");
    assert!(Store::check(dir.path()).expect("check").is_clean());
}

/// `Store::check` finds nothing wrong in a healthy replica, and writes nothing.
#[test]
fn a_clean_replica_checks_clean_and_check_writes_nothing() {
    let (dir, mut store) = replica("alice", "laptop");
    let a = create(&mut store, Kind::Account, &[("name", "深圳星光")]);
    let mut tags = crm_model::Edit::new(Kind::Account);
    tags.tag("vip").expect("tag");
    tags.replace_notes("首次拜访").expect("notes");
    store.edit(a, &tags).expect("edit");
    create(
        &mut store,
        Kind::Contact,
        &[("last_name", "王"), ("account", &a.to_string())],
    );
    let deal = create(
        &mut store,
        Kind::Opportunity,
        &[("name", "Renewal"), ("account", &a.to_string())],
    );
    for stage in ["proposal", "negotiation"] {
        store
            .edit(deal, &edit(Kind::Opportunity, &[("stage", stage)]))
            .expect("stage");
    }
    let before = state(&store);
    drop(store);
    let file = dir.path().join(REPLICA_FILE);
    let bytes = std::fs::read(&file).expect("read");
    let report = Store::check(dir.path()).expect("check");
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.documents, 4, "the user record and three records");
    assert!(report.changes >= 6);
    assert!(report.quarantined.is_empty());
    assert_eq!(
        std::fs::read(&file).expect("read"),
        bytes,
        "nothing written"
    );
    assert_eq!(state(&Store::open(dir.path()).expect("open")), before);
}

/// A projection row that no longer matches its document is reported, with `crm reindex` as
/// the repair; after a reindex the replica checks clean.
#[test]
fn a_tampered_projection_row_is_reported() {
    let (dir, mut store) = replica("alice", "laptop");
    let a = create(&mut store, Kind::Account, &[("name", "ACME")]);
    drop(store);
    {
        let conn = rusqlite::Connection::open(dir.path().join(REPLICA_FILE)).expect("db");
        conn.execute(
            "UPDATE rec_account SET f_name = 'EVIL', title = 'EVIL' WHERE id = ?1",
            [a.to_string()],
        )
        .expect("tamper");
        conn.execute(
            "DELETE FROM search WHERE rowid = (SELECT docno FROM documents WHERE id = ?1)",
            [a.to_string()],
        )
        .expect("tamper");
    }
    let report = Store::check(dir.path()).expect("check");
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert_eq!(p.kind, CheckKind::Projection);
    assert_eq!(p.record, Some(a));
    assert!(p.detail.contains("f_name"), "{}", p.detail);
    assert!(p.detail.contains("search"), "{}", p.detail);
    assert!(p.repair.contains("crm reindex"), "{}", p.repair);
    Store::open(dir.path())
        .expect("open")
        .reindex()
        .expect("reindex");
    assert!(Store::check(dir.path()).expect("check").is_clean());
}

/// A change stored without bytes (a bootstrap keeps them in the snapshot) that the snapshot
/// does not hold is reported, and so is a directory that is not a replica.
#[test]
fn a_change_missing_from_its_snapshot_is_reported() {
    let (dir, mut store) = replica("alice", "laptop");
    let a = create(&mut store, Kind::Account, &[("name", "ACME")]);
    drop(store);
    {
        let conn = rusqlite::Connection::open(dir.path().join(REPLICA_FILE)).expect("db");
        conn.execute(
            "UPDATE changes SET bytes = x'' WHERE docno = (SELECT docno FROM documents WHERE id = ?1)",
            [a.to_string()],
        )
        .expect("tamper");
    }
    let report = Store::check(dir.path()).expect("check");
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.kind == CheckKind::MissingChange && p.record == Some(a)),
        "{:?}",
        report.problems
    );
    let empty = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        Store::check(empty.path()),
        Err(StoreError::NotAReplica { .. })
    ));
}
