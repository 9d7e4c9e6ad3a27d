//! `apply_documents`: a fresh replica loaded from a relay's snapshots ends up equal to one
//! that replayed every change, and can still hand every change to a peer.

mod common;

use std::collections::BTreeMap;

use common::{all_changes, create, edit, replica, state};
use crm_model::Kind;
use crm_model::RecordId;
use crm_model::automerge::{Automerge, Change};
use crm_store::{RemoteDocument, Store, StoreError, SyncCursor};

/// A replica with records of several kinds, some edited many times.
fn source() -> (tempfile::TempDir, Store) {
    let (dir, mut store) = replica("alice", "laptop");
    for i in 0..40 {
        let account = create(
            &mut store,
            Kind::Account,
            &[("name", &format!("深圳星光贸易 {i}"))],
        );
        if i % 3 == 0 {
            for grade in ["vip", "normal", "vip"] {
                store
                    .edit(account, &edit(Kind::Account, &[("grade", grade)]))
                    .expect("edit");
            }
        }
        let deal = create(
            &mut store,
            Kind::Opportunity,
            &[
                ("name", &format!("Renewal {i}")),
                ("account", &account.to_string()),
            ],
        );
        if i % 2 == 0 {
            store
                .edit(deal, &edit(Kind::Opportunity, &[("stage", "proposal")]))
                .expect("edit");
        }
        if i % 5 == 0 {
            let mut tags = crm_model::Edit::new(Kind::Account);
            tags.tag("north").expect("tag");
            store.edit(account, &tags).expect("tag");
        }
    }
    (dir, store)
}

/// The source's documents as a relay would send them: for every other document a snapshot
/// of its first changes and the rest loose, for the others no snapshot at all.
fn documents(src: &Store) -> Vec<RemoteDocument> {
    let mut by_doc: BTreeMap<RecordId, Vec<Vec<u8>>> = BTreeMap::new();
    for c in all_changes(src) {
        by_doc.entry(c.doc_id).or_default().push(c.bytes);
    }
    by_doc
        .into_iter()
        .enumerate()
        .map(|(i, (doc_id, changes))| {
            if i % 2 == 1 {
                return RemoteDocument {
                    doc_id,
                    snapshot: Vec::new(),
                    hashes: Vec::new(),
                    changes,
                };
            }
            let folded = changes.len().div_ceil(2);
            let mut doc = Automerge::new();
            let parsed: Vec<Change> = changes[..folded]
                .iter()
                .map(|b| Change::try_from(b.as_slice()).expect("a change"))
                .collect();
            let hashes = parsed.iter().map(|c| c.hash().0).collect();
            doc.apply_changes(parsed).expect("apply");
            RemoteDocument {
                doc_id,
                snapshot: doc.save(),
                hashes,
                changes: changes[folded..].to_vec(),
            }
        })
        .collect()
}

fn cursor(seq: u64) -> SyncCursor {
    SyncCursor {
        relay_id: [7; 16],
        seq,
        hash: [9; 32],
    }
}

/// What the comparisons look at: heads, projections and conflicts (not the local change log,
/// whose order and local rows differ).
fn view(store: &Store) -> String {
    let s = state(store);
    format!("{:?}", (s.heads, s.projection, s.conflicts))
}

#[test]
fn a_replica_loaded_from_snapshots_equals_one_that_replayed_every_change() {
    let (_src_dir, src) = source();
    let docs = documents(&src);
    assert!(
        docs.iter()
            .any(|d| !d.snapshot.is_empty() && !d.changes.is_empty())
    );

    let (_dir, mut fresh) = replica("bob", "phone");
    let (half, rest) = docs.split_at(docs.len() / 2);
    let first = fresh
        .apply_documents(half.to_vec(), None)
        .expect("first page");
    assert_eq!(first.changed.len(), half.len());
    assert_eq!(
        fresh.sync_cursor().expect("cursor"),
        None,
        "not before the last page"
    );
    fresh
        .apply_documents(rest.to_vec(), Some(cursor(42)))
        .expect("last page");
    assert_eq!(fresh.sync_cursor().expect("cursor"), Some(cursor(42)));

    let (_dir2, mut replayed) = replica("bob", "phone");
    replayed
        .apply_remote_changes(&all_changes(&src))
        .expect("replay");
    // The fresh replicas' own user records differ; compare the source's documents.
    let of_source = |s: &Store| {
        let heads = s.all_heads().expect("heads");
        src.all_heads()
            .expect("heads")
            .into_keys()
            .map(|id| (id, heads.get(&id).cloned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(of_source(&fresh), of_source(&replayed));
    assert!(of_source(&fresh).iter().all(|(_, h)| h.is_some()));
    let search = |s: &Store| {
        s.search("星光", Some(Kind::Account), false, 100)
            .expect("search")
            .len()
    };
    assert_eq!(search(&fresh), 40);
    assert_eq!(search(&fresh), search(&replayed));
    let mut q = crm_store::ListQuery::new(Kind::Opportunity);
    q.filters.push(crm_store::Filter {
        field: "stage".into(),
        cmp: crm_store::Cmp::Eq,
        value: "proposal".into(),
    });
    assert_eq!(fresh.list(&q).expect("list").len(), 20);

    // Edits after the bootstrap load the snapshot and work.
    let some = src
        .all_heads()
        .expect("heads")
        .into_keys()
        .next()
        .expect("a record");
    let kind = fresh.kind_of(some).expect("kind");
    let mut tag = crm_model::Edit::new(kind);
    tag.tag("after-bootstrap").expect("tag");
    fresh.edit(some, &tag).expect("edit after the bootstrap");

    // Every change can still be handed on, with its bytes taken out of the snapshots:
    // a third replica merging from the bootstrapped one converges too.
    let every = all_changes(&fresh);
    assert!(every.iter().all(|c| !c.bytes.is_empty()));
    for c in &every {
        Change::try_from(c.bytes.as_slice()).expect("real change bytes");
    }
    let (_dir3, mut third) = replica("carol", "desk");
    third.merge_from(&fresh).expect("merge_from");
    assert_eq!(
        third.all_heads().expect("heads").get(&some),
        fresh.all_heads().expect("heads").get(&some)
    );
    assert_eq!(of_source(&third).len(), of_source(&fresh).len());

    // A relay that lost everything gets every change pushed again, with bytes.
    let queued = fresh.reset_sync().expect("reset");
    assert!(queued > 100, "{queued}");
    let outbox = fresh.outbox(usize::MAX).expect("outbox");
    // Every change but the creation of the replica's own local User record, which never
    // leaves it (see `Store::init`).
    assert_eq!(outbox.len(), every.len() - 1, "every change is queued");
    assert!(outbox.iter().all(|c| !c.bytes.is_empty()));
}

#[test]
fn a_page_applied_twice_or_to_a_replica_that_has_the_documents_merges() {
    let (_src_dir, src) = source();
    let docs = documents(&src);
    let (_dir, mut fresh) = replica("bob", "phone");
    fresh
        .apply_documents(docs.clone(), Some(cursor(1)))
        .expect("page");
    let before = view(&fresh);
    let again = fresh
        .apply_documents(docs.clone(), Some(cursor(2)))
        .expect("again");
    assert_eq!(again.applied, 0);
    assert!(again.changed.is_empty());
    assert_eq!(view(&fresh), before);
    assert_eq!(fresh.sync_cursor().expect("cursor"), Some(cursor(2)));

    // The source itself (it has every document) merges the page without a change.
    let (_d, mut other) = replica("alice", "laptop");
    other
        .apply_remote_changes(&all_changes(&src))
        .expect("replay");
    let before = view(&other);
    other.apply_documents(docs, None).expect("known documents");
    assert_eq!(view(&other), before);
}

#[test]
fn a_snapshot_that_is_not_what_it_claims_refuses_the_page_whole() {
    let (_src_dir, src) = source();
    let good = documents(&src);
    let (dir, mut fresh) = replica("bob", "phone");
    let before = state(&fresh);

    let mut wrong_hashes = good.clone();
    let victim = wrong_hashes
        .iter_mut()
        .rev()
        .find(|d| !d.snapshot.is_empty())
        .expect("a snapshot");
    victim.hashes.pop();
    let err = fresh
        .apply_documents(wrong_hashes, Some(cursor(5)))
        .expect_err("a missing hash");
    assert!(matches!(err, StoreError::InvalidDocument { .. }), "{err}");

    let mut garbage = good.clone();
    garbage[0].snapshot = b"not a document".to_vec();
    let err = fresh
        .apply_documents(garbage, Some(cursor(5)))
        .expect_err("garbage");
    assert!(matches!(err, StoreError::InvalidDocument { .. }), "{err}");

    let mut bad_change = good.clone();
    let loose = bad_change
        .iter_mut()
        .find(|d| !d.changes.is_empty())
        .expect("loose changes");
    loose.changes.push(vec![1, 2, 3]);
    assert!(fresh.apply_documents(bad_change, None).is_err());

    common::assert_unchanged(&fresh, dir.path(), &before, "refused pages");
}
