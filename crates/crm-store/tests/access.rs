//! Access control on the device: purging records that leave the user's scope (nothing of
//! them readable in the file afterwards, unsent changes never lost), sweeps, wipes, and
//! the identity the relay gives a replica.

mod common;

use std::collections::HashSet;
use std::path::Path;

use common::{changes_of, create, edit, replica};
use crm_model::automerge::Change;
use crm_model::{Author, FieldValue, Kind, RecordId, Role};
use crm_store::{BatchOp, Purge, RelayIdentity, Store, StoreError};

/// Every change of the outbox, acknowledged as the relay would.
fn acknowledge_all(store: &mut Store) {
    let seqs: Vec<i64> = store
        .outbox(usize::MAX)
        .expect("outbox")
        .into_iter()
        .map(|c| c.local_seq)
        .collect();
    store.acknowledge(&seqs).expect("acknowledge");
}

/// The raw bytes of the replica file and of its WAL, when there is one.
fn file_bytes(dir: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for name in ["replica.db", "replica.db-wal"] {
        let path = dir.join(name);
        if path.exists() {
            bytes.extend(std::fs::read(&path).expect("read replica file"));
        }
    }
    bytes
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The tables (shadow tables of the full-text index included) with a value holding `needle`.
fn tables_holding(dir: &Path, needle: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(
        dir.join(crm_store::REPLICA_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open replica");
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .expect("tables")
        .query_map([], |r| r.get(0))
        .expect("tables")
        .collect::<rusqlite::Result<_>>()
        .expect("tables");
    assert!(tables.len() > 20, "every table is read: {tables:?}");
    let mut holding = Vec::new();
    for table in tables {
        let mut stmt = conn
            .prepare(&format!("SELECT * FROM \"{table}\""))
            .expect("select");
        let columns = stmt.column_count();
        let mut rows = stmt.query([]).expect("rows");
        while let Some(row) = rows.next().expect("row") {
            let found = (0..columns).any(|i| match row.get_ref(i).expect("value") {
                rusqlite::types::ValueRef::Text(b) | rusqlite::types::ValueRef::Blob(b) => {
                    contains(b, needle.as_bytes())
                }
                _ => false,
            });
            if found {
                holding.push(table.clone());
                break;
            }
        }
    }
    holding
}

fn assert_clean(dir: &Path) {
    let report = Store::check(dir).expect("check");
    assert!(report.is_clean(), "check: {:?}", report.problems);
}

fn ids(store: &Store) -> HashSet<RecordId> {
    store.all_heads().expect("heads").into_keys().collect()
}

/// The User record `Store::init` made for the replica's user, while it is the replica's user.
fn local_user(store: &Store) -> RecordId {
    store
        .identity()
        .user_id
        .expect("init makes a local User record")
}

/// A record with a unique marker in its name, notes, tags, history and references, edited
/// often enough to be compacted into a snapshot.
fn marked_record(store: &mut Store, marker: &str) -> RecordId {
    let account = create(store, Kind::Account, &[("name", "Northwind")]);
    let mut e = edit(
        Kind::Opportunity,
        &[
            ("name", marker),
            ("account", &account.to_string()),
            ("stage", "prospecting"),
        ],
    );
    e.replace_notes(&format!("notes of {marker}"))
        .expect("notes");
    e.tag("secret").expect("tag");
    let id = store.create(&e).expect("create").id;
    for (i, stage) in ["qualification", "proposal", "negotiation"]
        .iter()
        .cycle()
        .take(40)
        .enumerate()
    {
        let mut e = edit(
            Kind::Opportunity,
            &[
                ("stage", stage),
                ("next_step", &format!("{marker} step {i}")),
            ],
        );
        e.append_notes(&format!("{marker} call {i}"))
            .expect("notes");
        store.edit(id, &e).expect("edit");
    }
    id
}

#[test]
fn a_purge_leaves_no_trace_of_the_record_in_the_file() {
    let (dir, mut store) = replica("alice", "laptop");
    let me = local_user(&store);
    let marker = format!("PurgeMe-星光-{}", uuid::Uuid::now_v7());
    let id = marked_record(&mut store, &marker);
    let other = create(&mut store, Kind::Account, &[("name", "Stays")]);
    // A refused change of the record sits in the quarantine.
    let report = store
        .apply_remote_changes(&[crm_store::RemoteChange {
            doc_id: id,
            bytes: format!("garbage {marker}").into_bytes(),
        }])
        .expect("apply");
    assert_eq!(report.quarantined.len(), 1);
    acknowledge_all(&mut store);
    assert!(
        contains(&file_bytes(dir.path()), marker.as_bytes()),
        "the marker is in the file before the purge"
    );
    assert!(!tables_holding(dir.path(), &id.to_string()).is_empty());

    assert_eq!(store.purge_record(id).expect("purge"), Purge::Removed);

    let bytes = file_bytes(dir.path());
    assert!(
        !contains(&bytes, marker.as_bytes()),
        "marker left in the file"
    );
    assert!(
        !contains(&bytes, id.to_string().as_bytes()),
        "record id left in the file"
    );
    assert_eq!(
        tables_holding(dir.path(), &id.to_string()),
        Vec::<String>::new()
    );
    assert_eq!(tables_holding(dir.path(), &marker), Vec::<String>::new());
    assert!(matches!(store.get(id), Err(StoreError::NotFound(_))));
    assert!(
        store
            .search("PurgeMe", None, true, 10)
            .expect("search")
            .is_empty()
    );
    assert_eq!(store.quarantine_len().expect("quarantine"), 0);
    assert_eq!(
        ids(&store).len(),
        3,
        "the account, `other` and the local User record stay"
    );
    assert!(store.get(other).is_ok());
    assert!(store.get(me).is_ok());
    assert_clean(dir.path());
    // Purging again finds nothing.
    assert_eq!(store.purge_record(id).expect("purge"), Purge::Absent);
    drop(store);
    assert!(!contains(&file_bytes(dir.path()), marker.as_bytes()));
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(ids(&store).len(), 3);
    assert_clean(dir.path());
}

#[test]
fn a_record_with_unsent_changes_is_kept_and_listed() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "Typed offline")]);
    acknowledge_all(&mut store);
    store
        .edit(id, &edit(Kind::Account, &[("industry", "retail")]))
        .expect("edit");
    store
        .edit(id, &edit(Kind::Account, &[("industry", "mining")]))
        .expect("edit");
    let before = common::state(&store);

    assert_eq!(
        store.purge_record(id).expect("purge"),
        Purge::Kept { pending: 2 }
    );
    assert_eq!(common::state(&store), before, "nothing was deleted");
    let record = store.get(id).expect("still readable");
    assert_eq!(
        record.get("industry"),
        Some(&FieldValue::Text("mining".into()))
    );
    let listed = store.out_of_scope().expect("out of scope");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, id);
    assert_eq!(listed[0].reason, "purge");
    // Asked again: still kept, listed once, since the first request.
    assert!(matches!(
        store.purge_record(id).expect("purge"),
        Purge::Kept { .. }
    ));
    assert_eq!(store.out_of_scope().expect("out of scope"), listed);

    // Once the relay has the changes, the record goes, and so does its listing.
    acknowledge_all(&mut store);
    assert_eq!(store.purge_record(id).expect("purge"), Purge::Removed);
    assert!(store.out_of_scope().expect("out of scope").is_empty());
    assert_eq!(
        ids(&store),
        HashSet::from([local_user(&store)]),
        "only the local User record is left"
    );
    assert_clean(dir.path());
}

/// `n` accounts, written in one batch and acknowledged.
fn accounts(store: &mut Store, n: usize) -> Vec<RecordId> {
    let ops: Vec<BatchOp> = (0..n)
        .map(|i| BatchOp::Create(edit(Kind::Account, &[("name", &format!("Account {i}"))])))
        .collect();
    let written = store.write_atomic(&ops).expect("batch");
    acknowledge_all(store);
    written.into_iter().map(|w| w.id).collect()
}

#[test]
fn purge_records_and_sweep_keep_exactly_their_sets() {
    let (dir, mut store) = replica("alice", "laptop");
    let me = local_user(&store);
    let all = accounts(&mut store, 400);
    // Every tenth record has an unsent edit.
    let pending: HashSet<RecordId> = all.iter().step_by(10).copied().collect();
    for id in &pending {
        store
            .edit(*id, &edit(Kind::Account, &[("industry", "retail")]))
            .expect("edit");
    }

    let (first, rest) = all.split_at(100);
    let mut asked = first.to_vec();
    let stranger = RecordId::new();
    asked.push(stranger);
    let report = store.purge_records(&asked).expect("purge");
    let kept_first: HashSet<RecordId> = first
        .iter()
        .filter(|id| pending.contains(id))
        .copied()
        .collect();
    assert_eq!(report.kept, 10);
    assert_eq!(report.removed, 90);
    assert_eq!(report.absent, 1);
    assert_eq!(
        report.kept_ids.iter().copied().collect::<HashSet<_>>(),
        kept_first
    );
    let mut expected: HashSet<RecordId> = rest.iter().copied().collect();
    expected.extend(&kept_first);
    expected.insert(me);
    assert_eq!(
        ids(&store),
        expected,
        "the rest, the kept and the local user"
    );
    assert_clean(dir.path());

    // Access changed: only half of the rest is still the user's.
    let keep: HashSet<RecordId> = rest.iter().step_by(2).copied().collect();
    let report = store.sweep_except(&keep).expect("sweep");
    let kept_accounts: HashSet<RecordId> = all
        .iter()
        .filter(|id| pending.contains(id) && !keep.contains(id))
        .copied()
        .collect();
    // The local User record is not in the set either, and its creation is never pushed, so
    // never acknowledged: it is kept like any record with unsent changes.
    let mut kept_now = kept_accounts.clone();
    kept_now.insert(me);
    assert_eq!(
        report.kept_ids.iter().copied().collect::<HashSet<_>>(),
        kept_now
    );
    assert_eq!(report.kept, u64::try_from(kept_now.len()).expect("fits"));
    assert_eq!(
        report.removed,
        u64::try_from(300 - keep.len() - (kept_accounts.len() - kept_first.len())).expect("fits")
    );
    let mut expected: HashSet<RecordId> = keep.clone();
    expected.extend(&kept_now);
    assert_eq!(ids(&store), expected);
    let listed: HashSet<RecordId> = store
        .out_of_scope()
        .expect("listed")
        .into_iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(listed, kept_now);
    assert_eq!(store.count(Kind::Account, true).expect("count"), 160);
    assert_clean(dir.path());

    // Access back for a kept record: it is no longer listed.
    let back = *kept_accounts.iter().next().expect("one kept");
    let mut keep = keep;
    keep.insert(back);
    let report = store.sweep_except(&keep).expect("sweep");
    assert_eq!(report.removed, 0);
    assert_eq!(
        report.kept,
        u64::try_from(kept_now.len() - 1).expect("fits")
    );
    assert!(
        !store
            .out_of_scope()
            .expect("listed")
            .iter()
            .any(|o| o.id == back)
    );
}

#[test]
fn wipe_counts_unsent_changes_and_leaves_no_record() {
    let (dir, mut store) = replica("alice", "laptop");
    let marker = format!("WipeMe-星光-{}", uuid::Uuid::now_v7());
    let id = marked_record(&mut store, &marker);
    acknowledge_all(&mut store);
    store
        .edit(id, &edit(Kind::Opportunity, &[("next_step", "call back")]))
        .expect("edit");
    create(&mut store, Kind::Account, &[("name", "Unsent")]);
    let identity = store.identity().clone();
    // The two typed here, and the creation of the local User record, never pushed.
    let pending = store.outbox_len().expect("outbox");
    assert_eq!(pending, 3);

    let report = store.wipe().expect("wipe");
    assert_eq!(
        report.records, 4,
        "the opportunity, its account, `Unsent` and the local User record"
    );
    assert_eq!(report.pending_changes, 3);
    assert!(ids(&store).is_empty());
    assert_eq!(store.outbox_len().expect("outbox"), 0);
    assert!(store.changes_after(0, 10).expect("changes").is_empty());
    assert!(store.sync_cursor().expect("cursor").is_none());
    assert!(store.projection_dump().expect("dump").is_empty());
    assert_eq!(store.identity(), &identity);
    let bytes = file_bytes(dir.path());
    assert!(
        !contains(&bytes, marker.as_bytes()),
        "marker left in the file"
    );
    assert!(!contains(&bytes, id.to_string().as_bytes()));
    assert_clean(dir.path());
    // The replica works on. The User record its identity names went with the rest, so the
    // new record names its owner.
    let carol = create(&mut store, Kind::User, &[("name", "Carol")]);
    create(
        &mut store,
        Kind::Account,
        &[("name", "After"), ("owner", &carol.to_string())],
    );
    assert_eq!(ids(&store).len(), 2);
}

#[test]
fn init_creates_a_local_user_that_is_never_pushed_and_goes_once_claimed() {
    let (dir, mut store) = replica("alice", "laptop");
    let me = local_user(&store);
    assert_eq!(ids(&store), HashSet::from([me]), "exactly one record");
    let record = store.get(me).expect("the local user");
    assert_eq!(record.kind, Kind::User);
    assert_eq!(record.get("name"), Some(&FieldValue::Text("alice".into())));
    assert_eq!(record.get("role"), Some(&FieldValue::Text("admin".into())));
    assert_eq!(store.identity().role, None);
    assert_eq!(store.access_key(), None);
    // Its creation is a local change, but never offered for a push.
    assert_eq!(store.outbox_len().expect("outbox"), 1);
    let batch = store.outbox_batch(usize::MAX, usize::MAX).expect("batch");
    assert!(batch.changes.is_empty(), "{:?}", batch.changes);
    assert!(batch.damaged.is_empty());

    // What the user makes is theirs, and is offered; the local User record still is not.
    let mine = create(&mut store, Kind::Account, &[("name", "Mine")]);
    let ticket = create(
        &mut store,
        Kind::Ticket,
        &[("subject", "Printer"), ("assignee", &me.to_string())],
    );
    store
        .edit(me, &edit(Kind::User, &[("email", "alice@example.com")]))
        .expect("edit the local user");
    assert_eq!(owner(&mut store, mine), Some(FieldValue::Ref(me)));
    assert_eq!(owner(&mut store, ticket), Some(FieldValue::Ref(me)));
    let offered: Vec<RecordId> = store
        .outbox_batch(usize::MAX, usize::MAX)
        .expect("batch")
        .changes
        .iter()
        .map(|c| c.doc_id)
        .collect();
    assert_eq!(offered, vec![mine, ticket]);
    drop(store);
    let mut store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.identity().user_id, Some(me));
    assert_eq!(store.outbox(usize::MAX).expect("outbox").len(), 2);

    assert!(!tables_holding(dir.path(), &me.to_string()).is_empty());

    // The replica joins a relay, whose User record for the user has arrived.
    let user = user_from_relay(&mut store, "Alice Smith");
    let adoption = store
        .adopt_identity(&relay_identity(user, "Alice Smith"))
        .expect("adopt");
    assert_eq!(adoption.renamed_from.as_deref(), Some("alice"));
    assert_eq!(
        adoption.foreign_pending, 2,
        "the two creations, not the local User record's changes"
    );
    assert_eq!(adoption.claimed, 2);
    assert_eq!(adoption.unclaimed, 0);
    assert_eq!(owner(&mut store, mine), Some(FieldValue::Ref(user)));
    let claimed = store.get(ticket).expect("ticket");
    assert_eq!(claimed.get("owner"), Some(&FieldValue::Ref(user)));
    assert_eq!(claimed.get("assignee"), Some(&FieldValue::Ref(user)));
    assert!(matches!(store.get(me), Err(StoreError::NotFound(_))));
    assert_eq!(ids(&store), HashSet::from([user, mine, ticket]));
    assert_eq!(store.identity().user_id, Some(user));
    // Its changes left the outbox with it. The two creations were made as alice, whom the
    // relay does not know as this device's user: they are held (reported, never offered),
    // and so are the claims built on them.
    let queued = store.outbox_len().expect("outbox");
    assert_eq!(queued, 4, "two creations and two claims");
    let batch = store.outbox_batch(usize::MAX, usize::MAX).expect("batch");
    assert!(batch.changes.is_empty());
    assert_eq!(batch.foreign.len(), 2);
    assert!(batch.foreign.iter().all(|f| f.author == "alice"));
    // No row of it is left, nor any value naming it but the replica's note of its id (so
    // that a record of that id never leaves the replica).
    assert_eq!(
        tables_holding(dir.path(), &me.to_string()),
        vec!["meta".to_string()]
    );
    assert_clean(dir.path());
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(ids(&store), HashSet::from([user, mine, ticket]));
    assert_eq!(store.identity().user_id, Some(user));
}

/// A User record as the relay delivers it: written by an admin elsewhere.
fn user_from_relay(store: &mut Store, name: &str) -> RecordId {
    let (_admin_dir, mut admin) = replica("root", "admin-laptop");
    let user = create(
        &mut admin,
        Kind::User,
        &[("name", name), ("role", "sales_rep")],
    );
    store
        .apply_remote_changes(&changes_of(&admin, user))
        .expect("apply");
    user
}

fn relay_identity(user_id: RecordId, name: &str) -> RelayIdentity {
    RelayIdentity {
        user_id,
        user_name: name.into(),
        role: Role::SalesRep,
        teams: vec![RecordId::new()],
        device_id: "dev-42".into(),
        access_key: [7; 32],
    }
}

fn owner(store: &mut Store, id: RecordId) -> Option<FieldValue> {
    store.get(id).expect("get").get("owner").cloned()
}

/// A record with no owner: created (owned by the replica's user), then left without one.
fn ownerless(store: &mut Store, name: &str) -> RecordId {
    let id = create(store, Kind::Account, &[("name", name)]);
    let mut e = crm_model::Edit::new(Kind::Account);
    e.unset("owner").expect("unset");
    store.edit(id, &e).expect("edit");
    assert_eq!(owner(store, id), None);
    id
}

#[test]
fn adopting_the_relays_identity_renames_claims_and_counts_foreign_changes() {
    let (dir, mut store) = replica("alice", "laptop");
    let me = local_user(&store);
    let user = user_from_relay(&mut store, "Alice Smith");
    let someone = user_from_relay(&mut store, "Bob");
    let mine = create(&mut store, Kind::Account, &[("name", "Mine")]);
    assert_eq!(owner(&mut store, mine), Some(FieldValue::Ref(me)));
    let orphan = ownerless(&mut store, "Orphan");
    let owned = create(
        &mut store,
        Kind::Account,
        &[("name", "Bob's"), ("owner", &someone.to_string())],
    );
    // Changes of the same name elsewhere are not this replica's creations.
    let (_other_dir, mut other) = replica("alice", "phone");
    let elsewhere = ownerless(&mut other, "Elsewhere");
    store
        .apply_remote_changes(&changes_of(&other, elsewhere))
        .expect("apply");
    // Five typed here, and the local User record's creation, which is never pushed.
    assert_eq!(store.outbox_len().expect("outbox"), 5);
    assert_eq!(store.outbox(usize::MAX).expect("outbox").len(), 4);

    let identity = relay_identity(user, "Alice Smith");
    let adoption = store.adopt_identity(&identity).expect("adopt");
    assert_eq!(adoption.renamed_from.as_deref(), Some("alice"));
    assert_eq!(
        adoption.foreign_pending, 4,
        "every unsent change typed here by alice"
    );
    assert_eq!(
        adoption.claimed, 2,
        "what the local user owned, and the orphan"
    );
    assert_eq!(adoption.unclaimed, 0);
    assert_eq!(owner(&mut store, mine), Some(FieldValue::Ref(user)));
    assert_eq!(owner(&mut store, orphan), Some(FieldValue::Ref(user)));
    assert_eq!(owner(&mut store, owned), Some(FieldValue::Ref(someone)));
    assert_eq!(owner(&mut store, elsewhere), None);
    assert!(matches!(store.get(me), Err(StoreError::NotFound(_))));

    // The claim is a new change authored by the relay's user and device, with their ids.
    let last = changes_of(&store, mine).pop().expect("a change");
    let change = Change::from_bytes(last.bytes).expect("change");
    let author = Author::from_message(change.message()).expect("author");
    assert_eq!(
        author,
        Author::new("Alice Smith", "laptop").with_ids(user.to_string(), "dev-42")
    );
    // So is every new change.
    let new = create(&mut store, Kind::Account, &[("name", "New")]);
    let change = Change::from_bytes(changes_of(&store, new).remove(0).bytes).expect("change");
    assert_eq!(
        Author::from_message(change.message()).map(|a| a.user),
        Some("Alice Smith".into())
    );
    assert_eq!(owner(&mut store, new), Some(FieldValue::Ref(user)));

    // The identity is stored; the key is never shown.
    let shown = format!("{:?}", store.identity());
    assert!(!shown.contains("0707"), "{shown}");
    drop(store);
    let mut store = Store::open(dir.path()).expect("reopen");
    let stored = store.identity().clone();
    assert_eq!(stored.user, "Alice Smith");
    assert_eq!(stored.user_id, Some(user));
    assert_eq!(stored.role, Some(Role::SalesRep));
    assert_eq!(stored.teams, identity.teams);
    assert_eq!(stored.device_id.as_deref(), Some("dev-42"));
    assert_eq!(store.access_key(), Some([7; 32]));
    store.set_access_key([9; 32]).expect("key");
    assert_eq!(store.access_key(), Some([9; 32]));
    // Adopting again under the same name: no rename, nothing foreign but what was.
    let again = store.adopt_identity(&identity).expect("adopt again");
    assert_eq!(again.renamed_from, None);
    assert_eq!(again.claimed, 0);
    assert_eq!(again.foreign_pending, 4);
    assert_clean(dir.path());
}

#[test]
fn claims_wait_for_the_users_record() {
    let (_dir, mut store) = replica("alice", "laptop");
    let me = local_user(&store);
    let mine = create(&mut store, Kind::Account, &[("name", "Mine")]);
    let orphan = ownerless(&mut store, "Orphan");
    let (_admin_dir, mut admin) = replica("root", "admin-laptop");
    let user = create(&mut admin, Kind::User, &[("name", "alice")]);

    let adoption = store
        .adopt_identity(&relay_identity(user, "alice"))
        .expect("adopt");
    assert_eq!(adoption.renamed_from, None);
    assert_eq!(adoption.foreign_pending, 0);
    assert_eq!(adoption.claimed, 0);
    assert_eq!(adoption.unclaimed, 2);
    assert_eq!(owner(&mut store, mine), Some(FieldValue::Ref(me)));
    assert_eq!(owner(&mut store, orphan), None);
    // The local User record stays until the claims are made, and is still never pushed.
    assert!(store.get(me).is_ok());
    assert_eq!(store.claim_unowned().expect("claim"), 0);
    assert!(
        store
            .outbox(usize::MAX)
            .expect("outbox")
            .iter()
            .all(|c| c.doc_id != me)
    );

    store
        .apply_remote_changes(&changes_of(&admin, user))
        .expect("the user's record arrives");
    assert_eq!(store.claim_unowned().expect("claim"), 2);
    assert_eq!(owner(&mut store, mine), Some(FieldValue::Ref(user)));
    assert_eq!(owner(&mut store, orphan), Some(FieldValue::Ref(user)));
    assert!(matches!(store.get(me), Err(StoreError::NotFound(_))));
    assert_eq!(store.claim_unowned().expect("claim"), 0);
}

#[test]
fn adopting_refuses_a_name_on_several_lines() {
    let (_dir, mut store) = replica("alice", "laptop");
    let me = local_user(&store);
    let err = store
        .adopt_identity(&relay_identity(RecordId::new(), "alice\nroot"))
        .expect_err("refused");
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(store.identity().user_id, Some(me));
    assert_eq!(store.identity().user, "alice");
    assert!(store.get(me).is_ok());
}

/// Replicas of format 2 (before `out_of_scope`) are upgraded when opened.
#[test]
fn a_replica_of_format_2_gets_the_out_of_scope_table() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "ACME")]);
    drop(store);
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(crm_store::REPLICA_FILE)).expect("open db");
        conn.execute_batch("DROP TABLE out_of_scope; PRAGMA user_version = 2;")
            .expect("make it format 2");
    }
    let mut store = Store::open(dir.path()).expect("open upgrades");
    assert_eq!(
        store.purge_record(id).expect("purge"),
        Purge::Kept { pending: 1 }
    );
    assert_eq!(store.out_of_scope().expect("listed").len(), 1);
}
