//! Helpers shared by the integration tests: building edits, capturing a replica's whole
//! observable state, moving changes between replicas, and a small seeded shuffler.

// Each test file compiles this module on its own and uses only some of the helpers.
#![allow(
    dead_code,
    reason = "every test crate uses a different subset of the helpers"
)]

use std::collections::BTreeMap;
use std::path::Path;

use crm_model::{Edit, Kind, RecordId};
use crm_store::{RemoteChange, Store};
use serde_json::Value as Json;

/// An edit of `kind` setting each `(field, value)` through the user-facing parser.
pub(crate) fn edit(kind: Kind, fields: &[(&str, &str)]) -> Edit {
    let mut e = Edit::new(kind);
    for (field, value) in fields {
        e.set(field, value).expect("test edits use valid values");
    }
    e
}

/// Creates a record of `kind` with the given fields.
pub(crate) fn create(store: &mut Store, kind: Kind, fields: &[(&str, &str)]) -> RecordId {
    store.create(&edit(kind, fields)).expect("create record").id
}

/// A new replica in a fresh temporary directory.
pub(crate) fn replica(user: &str, device: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::init(dir.path(), user, device).expect("init replica");
    (dir, store)
}

/// Everything a client can observe of a replica, for "nothing changed" and "identical"
/// assertions.
#[derive(Debug, PartialEq)]
pub(crate) struct State {
    pub(crate) heads: BTreeMap<RecordId, Vec<u8>>,
    pub(crate) projection: Vec<Json>,
    pub(crate) changes: Vec<RemoteChange>,
    pub(crate) outbox: u64,
    pub(crate) conflicts: Vec<String>,
}

pub(crate) fn state(store: &Store) -> State {
    State {
        heads: store.all_heads().expect("all_heads"),
        projection: store.projection_dump().expect("projection_dump"),
        changes: all_changes(store),
        outbox: store.outbox_len().expect("outbox_len"),
        conflicts: {
            // Sorted: the list order may follow local row numbers.
            let mut all: Vec<String> = store
                .conflicts(None)
                .expect("conflicts")
                .into_iter()
                .map(|c| format!("{} {} {:?}", c.id, c.field, c.values))
                .collect();
            all.sort();
            all
        },
    }
}

/// Asserts the replica (as stored, and as seen by a fresh `Store::open`) still is `before`.
pub(crate) fn assert_unchanged(store: &Store, dir: &Path, before: &State, what: &str) {
    assert_eq!(&state(store), before, "{what}: the replica changed");
    let reopened = Store::open(dir).expect("the replica still opens");
    assert_eq!(
        &state(&reopened),
        before,
        "{what}: the reopened replica differs"
    );
}

/// Every change in the replica's log, in log order.
pub(crate) fn all_changes(store: &Store) -> Vec<RemoteChange> {
    store
        .changes_after(0, usize::MAX)
        .expect("changes_after")
        .into_iter()
        .map(|l| l.change)
        .collect()
}

/// The changes of one document, in log order (creation first for a local record).
pub(crate) fn changes_of(store: &Store, id: RecordId) -> Vec<RemoteChange> {
    all_changes(store)
        .into_iter()
        .filter(|c| c.doc_id == id)
        .collect()
}

/// `get(id).to_json()` of every readable record, keyed by id.
pub(crate) fn records(store: &mut Store) -> BTreeMap<RecordId, Json> {
    let ids: Vec<RecordId> = store.all_heads().expect("all_heads").into_keys().collect();
    ids.into_iter()
        .map(|id| {
            (
                id,
                store.get(id).expect("every record is readable").to_json(),
            )
        })
        .collect()
}

/// A seeded splitmix64: deterministic shuffles for tests without pulling in `rand`.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next_u64() % u64::try_from(n).expect("fits")).expect("fits")
    }

    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
