//! Document snapshots, on every backend (part of the conformance suite): the compactor folds
//! every change of a document into its snapshot, and bootstrap pages give each document
//! once, as of a log position, with whatever its snapshot lacks. Logs written before the
//! push rule exist only in SQLite files (and in databases migrated from them): the cases
//! on such logs run on SQLite.

mod common;

use std::collections::HashSet;

use common::{Backend, Doc, TestStore, hash_of, heads_of, load, store_with_device};
use crm_relay::store::StoreError;
use crm_relay::{DeviceId, Relay, WorkspaceId};
use crm_sync::{DocId, DocState, Documents, Envelope, MAX_BATCH_CHANGES, Message};

crm_tests::on_every_backend!(
    compacted_documents_load_with_every_change_and_later_changes_come_loose,
    compaction_takes_at_most_its_limit,
    pages_cover_every_document_once_in_id_order_within_their_size,
    a_page_holds_at_most_the_batch_limit_of_documents,
    through_leaves_out_later_documents_and_changes,
    a_document_larger_than_a_page_is_an_error,
    the_head_and_its_hash,
    pages_read_only_their_workspace,
    a_second_process_compacts_only_when_the_first_lets_go,
    regression_a_page_filled_by_its_documents_still_sends_the_first_with_its_changes,
);

struct Fixture {
    dir: TestStore,
    store: Relay,
    ws: WorkspaceId,
    device: DeviceId,
}

fn fixture(backend: Backend) -> Fixture {
    let (dir, store, ws, device) = store_with_device(backend);
    Fixture {
        dir,
        store,
        ws,
        device,
    }
}

impl Fixture {
    fn push(&self, changes: &[Envelope]) -> Vec<u64> {
        self.store
            .store_batch(
                self.ws,
                &crm_relay::service::Pusher::admin(self.device),
                changes,
            )
            .expect("stored")
            .seqs
    }

    /// Appends changes to the log as a relay did before it checked that each change belongs
    /// to its record (see the push rule in docs/PROTOCOL.md): such logs exist, and the
    /// compactor and bootstrap must still serve them.
    fn push_unchecked(&self, changes: &[Envelope], dir: &std::path::Path) {
        let conn = rusqlite::Connection::open(dir.join(crm_relay::store::FILE_NAME)).expect("open");
        for c in changes {
            let change = automerge::Change::try_from(c.bytes.as_slice()).expect("a change");
            let seq: i64 = conn
                .query_row(
                    "UPDATE workspaces SET head = head + 1 WHERE id = ?1 RETURNING head",
                    [self.ws],
                    |r| r.get(0),
                )
                .expect("head");
            let deps: Vec<u8> = change.deps().iter().flat_map(|h| h.0).collect();
            conn.execute(
                "INSERT INTO documents (doc_id, workspace, kind, first_seq, created_by, last_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4)
                 ON CONFLICT (doc_id) DO UPDATE SET last_seq = excluded.last_seq",
                rusqlite::params![c.doc_id.as_slice(), self.ws, c.kind, seq, self.device],
            )
            .expect("document");
            conn.execute(
                "INSERT INTO changes
                 (workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8)",
                rusqlite::params![
                    self.ws,
                    seq,
                    change.hash().0.as_slice(),
                    c.doc_id.as_slice(),
                    c.kind,
                    deps,
                    self.device,
                    c.bytes
                ],
            )
            .expect("change");
        }
    }

    /// Every document of the workspace as of `through`, page by page.
    fn all_documents(&self, through: u64, max_bytes: usize) -> Vec<DocState> {
        let mut docs = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .documents_page(self.ws, after, through, max_bytes, None)
                .expect("page");
            assert!(!page.docs.is_empty() || after.is_none(), "no empty page");
            docs.extend(page.docs);
            match page.next {
                Some(next) => after = Some(next),
                None => return docs,
            }
        }
    }
}

fn find(docs: &[DocState], id: DocId) -> &DocState {
    docs.iter()
        .find(|d| d.doc_id == id)
        .expect("the document is on a page")
}

fn compacted_documents_load_with_every_change_and_later_changes_come_loose(b: Backend) {
    let f = fixture(b);
    let mut docs: Vec<Doc> = (0..3).map(|_| Doc::new()).collect();
    // Interleaved across batches, as devices push them.
    for round in 0..4 {
        let batch: Vec<Envelope> = docs
            .iter_mut()
            .map(|d| d.change("name", &format!("v{round}")))
            .collect();
        f.push(&batch);
    }
    assert_eq!(f.store.stale_documents().expect("count"), 3);

    // Before compaction: no snapshot, every change from the log in order.
    for state in f.all_documents(12, usize::MAX) {
        assert!(state.snapshot.is_empty() && state.hashes.is_empty());
        assert_eq!(state.changes.len(), 4);
        let doc = docs.iter_mut().find(|d| d.id == state.doc_id).expect("doc");
        assert_eq!(heads_of(&load(&state)), doc.heads());
    }

    assert_eq!(f.store.compact(64).expect("compact"), 3);
    assert_eq!(f.store.stale_documents().expect("count"), 0);
    assert_eq!(f.store.compact(64).expect("compact"), 0, "nothing left");
    let pages = f.all_documents(12, usize::MAX);
    assert_eq!(pages.len(), 3);
    for doc in &mut docs {
        let state = find(&pages, doc.id);
        assert!(!state.snapshot.is_empty());
        assert_eq!(state.hashes.len(), 4);
        assert!(state.changes.is_empty(), "the snapshot holds every change");
        assert_eq!(heads_of(&load(state)), doc.heads());
    }

    // A change after compaction travels beside the snapshot until the next compaction.
    let later = docs[0].change("industry", "retail");
    assert_eq!(f.push(std::slice::from_ref(&later)), [13]);
    assert_eq!(f.store.stale_documents().expect("count"), 1);
    let pages = f.all_documents(13, usize::MAX);
    let state = find(&pages, docs[0].id);
    assert_eq!(state.hashes.len(), 4);
    assert_eq!(
        state.changes.iter().map(|c| c.to_vec()).collect::<Vec<_>>(),
        std::slice::from_ref(&later.bytes)
    );
    assert_eq!(heads_of(&load(state)), docs[0].heads());

    assert_eq!(f.store.compact(64).expect("compact"), 1);
    let pages = f.all_documents(13, usize::MAX);
    let state = find(&pages, docs[0].id);
    assert_eq!((state.hashes.len(), state.changes.len()), (5, 0));
    assert_eq!(heads_of(&load(state)), docs[0].heads());
}

fn compaction_takes_at_most_its_limit(b: Backend) {
    let f = fixture(b);
    let changes: Vec<Envelope> = (0..10).map(|_| Doc::new().change("n", "1")).collect();
    f.push(&changes);
    assert_eq!(f.store.compact(4).expect("compact"), 4);
    assert_eq!(f.store.stale_documents().expect("count"), 6);
    assert_eq!(f.store.compact(0).expect("compact"), 0);
    assert_eq!(f.store.compact(100).expect("compact"), 6);
    assert_eq!(f.store.stale_documents().expect("count"), 0);
}

fn pages_cover_every_document_once_in_id_order_within_their_size(b: Backend) {
    let f = fixture(b);
    let mut docs: Vec<Doc> = (0..40).map(|_| Doc::new()).collect();
    let batch: Vec<Envelope> = docs
        .iter_mut()
        .flat_map(|d| [d.change("name", "ACME"), d.change("city", "Shanghai")])
        .collect();
    f.push(&batch);
    // Half compacted, half not: both kinds of document share the pages.
    f.store.compact(20).expect("compact");
    let max_bytes = 2_000;
    let mut after = None;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = f
            .store
            .documents_page(f.ws, after, 80, max_bytes, None)
            .expect("page");
        pages += 1;
        assert!(!page.docs.is_empty());
        let frame = Message::Documents(Documents {
            page: pages,
            docs: page.docs.clone(),
            done: None,
        })
        .encode();
        assert!(frame.len() <= max_bytes, "{} > {max_bytes}", frame.len());
        seen.extend(page.docs.iter().map(|d| d.doc_id));
        for state in &page.docs {
            let doc = docs.iter_mut().find(|d| d.id == state.doc_id).expect("doc");
            assert_eq!(heads_of(&load(state)), doc.heads());
        }
        match page.next {
            Some(next) => {
                assert_eq!(Some(&next), seen.last(), "next is the page's last document");
                after = Some(next);
            }
            None => break,
        }
    }
    assert!(pages > 2, "{pages} pages");
    let mut expected: Vec<DocId> = docs.iter().map(|d| d.id).collect();
    expected.sort();
    assert_eq!(seen, expected, "every document once, in id order");
}

fn a_page_holds_at_most_the_batch_limit_of_documents(b: Backend) {
    let f = fixture(b);
    let changes: Vec<Envelope> = (0..=MAX_BATCH_CHANGES)
        .map(|_| Doc::new().change("n", "1"))
        .collect();
    f.push(&changes[..MAX_BATCH_CHANGES]);
    f.push(&changes[MAX_BATCH_CHANGES..]);
    let through = changes.len() as u64;
    let first = f
        .store
        .documents_page(f.ws, None, through, usize::MAX, None)
        .expect("page");
    assert_eq!(first.docs.len(), MAX_BATCH_CHANGES);
    assert_eq!(first.next, first.docs.last().map(|d| d.doc_id));
    let second = f
        .store
        .documents_page(f.ws, first.next, through, usize::MAX, None)
        .expect("page");
    assert_eq!((second.docs.len(), second.next), (1, None));
}

/// Regression: a page counted every document it might hold before reading their changes, so
/// when the documents alone came near the page's size the first document's first change
/// "did not fit" and the page failed as `DocumentTooLarge` (a bootstrap then ended with an
/// internal error), although that document alone fits easily.
fn regression_a_page_filled_by_its_documents_still_sends_the_first_with_its_changes(b: Backend) {
    let f = fixture(b);
    let mut docs: Vec<Doc> = (0..40).map(|_| Doc::new()).collect();
    let batch: Vec<Envelope> = docs.iter_mut().map(|d| d.change("n", "1")).collect();
    f.push(&batch);
    // Snapshots for half, so a page holds both kinds; one of those has a later change.
    f.store.compact(20).expect("compact");
    let first = docs.iter_mut().min_by_key(|d| d.id).expect("a document");
    let first_id = first.id;
    f.push(&[first.change("n", "2")]);
    let max_bytes = 1_000;
    let mut after = None;
    let mut seen = Vec::new();
    loop {
        let page = f
            .store
            .documents_page(f.ws, after, 41, max_bytes, None)
            .expect("every document fits a page");
        assert!(!page.docs.is_empty());
        let frame = Message::Documents(Documents {
            page: 0,
            docs: page.docs.clone(),
            done: None,
        })
        .encode();
        assert!(frame.len() <= max_bytes, "{} > {max_bytes}", frame.len());
        seen.extend(page.docs.iter().map(|d| d.doc_id));
        for state in &page.docs {
            let doc = docs.iter_mut().find(|d| d.id == state.doc_id).expect("doc");
            assert_eq!(heads_of(&load(state)), doc.heads());
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 40);
    assert_eq!(seen[0], first_id);
}

fn through_leaves_out_later_documents_and_changes(b: Backend) {
    let f = fixture(b);
    let mut a = Doc::new();
    let mut b = Doc::new();
    let a1 = a.change("name", "A");
    let a2 = a.change("name", "A2");
    f.push(&[a1.clone(), a2.clone()]);
    f.push(&[b.change("name", "B")]);
    let a4 = a.change("name", "A4");
    f.push(std::slice::from_ref(&a4));

    let docs = f.all_documents(2, usize::MAX);
    assert_eq!(docs.len(), 1, "B is after position 2");
    let changes: Vec<Vec<u8>> = docs[0].changes.iter().map(|c| c.to_vec()).collect();
    assert_eq!(changes, [a1.bytes.clone(), a2.bytes.clone()]);

    let docs = f.all_documents(3, usize::MAX);
    assert_eq!(docs.len(), 2);
    assert_eq!(find(&docs, a.id).changes.len(), 2, "a4 is after position 3");

    // A snapshot made later than `through` is sent as it is, with nothing besides.
    f.store.compact(64).expect("compact");
    let docs = f.all_documents(2, usize::MAX);
    assert_eq!(docs.len(), 1);
    assert_eq!((docs[0].hashes.len(), docs[0].changes.len()), (3, 0));
    assert_eq!(heads_of(&load(&docs[0])), a.heads());
}

fn a_document_larger_than_a_page_is_an_error(b: Backend) {
    let f = fixture(b);
    let mut small = Doc::new();
    let mut big = Doc::new();
    f.push(&[small.change("n", "1")]);
    f.push(&[big.change("notes", &"x".repeat(5_000))]);
    let err = f
        .store
        .documents_page(f.ws, None, 2, 10, None)
        .expect_err("too large");
    assert!(matches!(err, StoreError::DocumentTooLarge { .. }), "{err}");
    assert!(err.to_string().contains("too large"), "{err}");
    // Once the smaller document (if it sorts first) is sent alone, the big one still fails.
    let pages = f.store.documents_page(f.ws, None, 2, 1_000, None);
    match pages {
        Ok(page) => {
            assert_eq!(page.docs.len(), 1);
            assert_eq!(page.docs[0].doc_id, small.id);
            assert!(matches!(
                f.store.documents_page(f.ws, page.next, 2, 1_000, None),
                Err(StoreError::DocumentTooLarge { .. })
            ));
        }
        Err(StoreError::DocumentTooLarge { doc, .. }) => {
            assert_eq!(*doc.as_bytes(), big.id);
        }
        Err(e) => panic!("unexpected {e}"),
    }
}

#[test]
fn a_document_that_does_not_build_is_sent_from_the_log_and_not_retried() {
    let f = fixture(Backend::Sqlite);
    // The push rule refuses the second creation today; an older relay stored it.
    let id = *uuid::Uuid::now_v7().as_bytes();
    // Two different changes with the same actor and sequence number: each is a valid
    // change, together they are no document.
    let one = Doc::with_actor(id, b"same actor").change("name", "one");
    let two = Doc::with_actor(id, b"same actor").change("name", "two");
    f.push_unchecked(&[one.clone(), two.clone()], f.dir.dir());
    assert_eq!(f.store.compact(64).expect("compact"), 1);
    assert_eq!(f.store.stale_documents().expect("count"), 0, "not retried");
    assert_eq!(f.store.compact(64).expect("compact"), 0);
    let docs = f.all_documents(2, usize::MAX);
    assert_eq!(docs.len(), 1);
    assert!(docs[0].snapshot.is_empty() && docs[0].hashes.is_empty());
    let changes: Vec<Vec<u8>> = docs[0].changes.iter().map(|c| c.to_vec()).collect();
    assert_eq!(changes, [one.bytes, two.bytes]);
}

#[test]
fn changes_missing_their_dependencies_travel_beside_the_snapshot() {
    let f = fixture(Backend::Sqlite);
    let mut doc = Doc::new();
    let c1 = doc.change("n", "1");
    let c2 = doc.change("n", "2");
    let c3 = doc.change("n", "3");

    // Only a change whose dependency is missing: nothing to snapshot. (The push rule
    // refuses such a change today; an older relay stored it.)
    f.push_unchecked(std::slice::from_ref(&c3), f.dir.dir());
    assert_eq!(f.store.compact(64).expect("compact"), 1);
    let docs = f.all_documents(1, usize::MAX);
    assert!(docs[0].snapshot.is_empty());
    assert_eq!(docs[0].changes.len(), 1);

    // c1 arrives: the snapshot holds it; c3 still waits for c2 and comes from the log.
    f.push_unchecked(std::slice::from_ref(&c1), f.dir.dir());
    assert_eq!(f.store.compact(64).expect("compact"), 1);
    let docs = f.all_documents(2, usize::MAX);
    assert_eq!(docs[0].hashes, [hash_of(&c1)]);
    let loose: Vec<Vec<u8>> = docs[0].changes.iter().map(|c| c.to_vec()).collect();
    assert_eq!(loose, std::slice::from_ref(&c3.bytes));

    // c2 arrives: everything is in the snapshot.
    f.push(std::slice::from_ref(&c2));
    assert_eq!(f.store.compact(64).expect("compact"), 1);
    let docs = f.all_documents(3, usize::MAX);
    let held: HashSet<[u8; 32]> = docs[0].hashes.iter().copied().collect();
    let all: HashSet<[u8; 32]> = [&c1, &c2, &c3].into_iter().map(hash_of).collect();
    assert_eq!(held, all);
    assert!(docs[0].changes.is_empty());
    assert_eq!(heads_of(&load(&docs[0])), doc.heads());
}

fn the_head_and_its_hash(b: Backend) {
    let f = fixture(b);
    assert_eq!(f.store.head(f.ws).expect("head"), (0, [0; 32]));
    let mut doc = Doc::new();
    let changes = [doc.change("n", "1"), doc.change("n", "2")];
    f.push(&changes);
    assert_eq!(f.store.head(f.ws).expect("head"), (2, hash_of(&changes[1])));
}

fn pages_read_only_their_workspace(b: Backend) {
    let f = fixture(b);
    let other = f.store.create_workspace("globex").expect("workspace").id;
    let gina = f
        .store
        .add_unbound_device(other, "gina")
        .expect("device")
        .device
        .id;
    f.push(&[Doc::new().change("n", "acme")]);
    f.store
        .store_batch(
            other,
            &crm_relay::service::Pusher::admin(gina),
            &[Doc::new().change("n", "globex")],
        )
        .expect("stored");
    f.store.compact(64).expect("compact");
    let page = f
        .store
        .documents_page(other, None, 1, usize::MAX, None)
        .expect("page");
    assert_eq!(page.docs.len(), 1);
    let doc = load(&page.docs[0]);
    let value = automerge::ReadDoc::get(&doc, automerge::ROOT, "n")
        .expect("read")
        .map(|(v, _)| v.to_string());
    assert_eq!(value.as_deref(), Some("\"globex\""));
}

/// Two processes on one database: one compacts, the other does not while the first holds
/// the lease, and takes over once the first is gone.
fn a_second_process_compacts_only_when_the_first_lets_go(b: Backend) {
    let f = fixture(b);
    f.push(&[
        Doc::new().change("name", "A"),
        Doc::new().change("name", "B"),
    ]);
    let first = f.dir.relay();
    let second = f.dir.relay();
    assert_eq!(first.compact(10).expect("compact"), 2);
    f.push(&[Doc::new().change("name", "C")]);
    match b {
        // One process serves a SQLite file: there is no one to wait for.
        Backend::Sqlite => assert_eq!(second.compact(10).expect("compact"), 1),
        Backend::Postgres => {
            assert_eq!(
                second.compact(10).expect("compact"),
                0,
                "the first holds the lease"
            );
            drop(first);
            let mut taken = 0;
            for _ in 0..100 {
                taken = second.compact(10).expect("compact");
                if taken > 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            assert_eq!(taken, 1, "the second takes over once the first is gone");
        }
    }
}
