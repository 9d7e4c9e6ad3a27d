//! Edits the relay refuses: `Store::settle_refused` takes them (and what builds on them) out of
//! a real replica file, rebuilds the records from what was accepted, keeps what was typed,
//! and `retry_rejected` / `dismiss_rejected` settle it with the user.

mod common;

use common::{changes_of, create, edit, replica};
use crm_model::automerge::Change;
use crm_model::{FieldValue, Kind, RecordId, Role};
use crm_store::{
    ListQuery, PulledChange, Refused, RejectedEdit, RelayIdentity, RemoteChange, Store, StoreError,
    SyncCursor,
};
use serde_json::json;

/// The outbox entries (local_seq) of record `id` that a relay would be offered, oldest first.
fn queued_of(store: &Store, id: RecordId) -> Vec<i64> {
    store
        .outbox_batch(usize::MAX, usize::MAX)
        .expect("outbox")
        .changes
        .into_iter()
        .filter(|c| c.doc_id == id)
        .map(|c| c.local_seq)
        .collect()
}

/// Every change a relay would be offered, acknowledged as it would.
fn acknowledge_all(store: &mut Store) {
    let seqs: Vec<i64> = store
        .outbox(usize::MAX)
        .expect("outbox")
        .into_iter()
        .map(|c| c.local_seq)
        .collect();
    store.acknowledge(&seqs).expect("acknowledge");
}

fn refusal(local_seq: i64, reason: &str) -> Refused {
    Refused {
        local_seq,
        code: 403,
        reason: reason.into(),
    }
}

/// The one refused edit of the replica.
fn only_rejected(store: &Store) -> RejectedEdit {
    let mut all = store.rejected().expect("rejected");
    assert_eq!(all.len(), 1, "{all:?}");
    all.remove(0)
}

fn field<'a>(rejected: &'a RejectedEdit, name: &str) -> &'a crm_store::RejectedField {
    rejected
        .fields
        .iter()
        .find(|f| f.field == name)
        .unwrap_or_else(|| panic!("{name} is among the refused fields: {rejected:?}"))
}

fn titles(store: &Store, kind: Kind) -> Vec<String> {
    store
        .list(&ListQuery::new(kind))
        .expect("list")
        .into_iter()
        .map(|r| r.title)
        .collect()
}

fn found(store: &Store, text: &str) -> Vec<RecordId> {
    store
        .search(text, None, true, 50)
        .expect("search")
        .into_iter()
        .map(|h| h.id)
        .collect()
}

fn assert_checks(dir: &std::path::Path) {
    let report = Store::check(dir).expect("check runs");
    assert!(report.is_clean(), "crm check: {:?}", report.problems);
}

fn text(s: &str) -> Option<FieldValue> {
    Some(FieldValue::Text(s.into()))
}

/// The actor of each change of record `id` stored in the replica.
fn actors_of(store: &Store, id: RecordId) -> Vec<Vec<u8>> {
    changes_of(store, id)
        .into_iter()
        .map(|c| {
            Change::from_bytes(c.bytes)
                .expect("a change")
                .actor_id()
                .to_bytes()
                .to_vec()
        })
        .collect()
}

#[test]
fn a_refused_edit_and_the_edit_built_on_it_leave_the_record_as_the_relay_has_it() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(
        &mut store,
        Kind::Account,
        &[("name", "ACME"), ("industry", "retail")],
    );
    acknowledge_all(&mut store);
    let mut e = edit(
        Kind::Account,
        &[("name", "ACME Global"), ("industry", "manufacturing")],
    );
    e.tag("vip").expect("tag");
    store.edit(id, &e).expect("the edit");
    let mut notes = crm_model::Edit::new(Kind::Account);
    notes.replace_notes("call back on Monday").expect("notes");
    store.edit(id, &notes).expect("a later edit, built on it");
    let queued = queued_of(&store, id);
    assert_eq!(queued.len(), 2);
    assert_eq!(found(&store, "Global"), vec![id]);

    // The relay refuses the first; the second builds on it and goes too.
    let report = store
        .settle_refused(&[refusal(queued[0], "your role may not edit this account")])
        .expect("settle");
    assert_eq!(report.removed_changes, 2);
    assert_eq!(report.rebuilt, vec![id]);
    assert!(report.removed_records.is_empty());
    assert_eq!(report.ignored, 0);

    // The document is as the relay has it…
    let record = store.get(id).expect("the record stays");
    assert_eq!(record.get("name"), text("ACME").as_ref());
    assert_eq!(record.get("industry"), text("retail").as_ref());
    assert!(record.tags.is_empty(), "{:?}", record.tags);
    assert_eq!(record.notes, "");
    // …and so are the query tables and the full-text index.
    assert_eq!(titles(&store, Kind::Account), vec!["ACME".to_string()]);
    assert!(found(&store, "Global").is_empty());
    assert!(found(&store, "Monday").is_empty());
    assert_eq!(found(&store, "ACME"), vec![id]);
    let mut q = ListQuery::new(Kind::Account);
    q.tags.push("vip".into());
    assert!(store.list(&q).expect("list by tag").is_empty());
    assert_eq!(
        store.outbox_len().expect("outbox"),
        1,
        "only the local user"
    );
    assert!(queued_of(&store, id).is_empty());
    assert_eq!(changes_of(&store, id).len(), 1, "the creation alone");

    // What was typed is kept, field by field, with the value the record has now.
    let rejected = only_rejected(&store);
    assert_eq!(rejected.record, id);
    assert_eq!(rejected.kind, Kind::Account);
    assert_eq!(rejected.title, "ACME");
    assert!(!rejected.created);
    assert_eq!(rejected.code, 403);
    assert_eq!(rejected.reason, "your role may not edit this account");
    assert_eq!(rejected.changes, 2);
    assert!(rejected.made_at.is_some());
    let industry = field(&rejected, "industry");
    assert_eq!(
        (&industry.typed, &industry.old),
        (&json!("manufacturing"), &json!("retail"))
    );
    assert_eq!(field(&rejected, "name").typed, json!("ACME Global"));
    assert_eq!(field(&rejected, "tags").typed, json!(["vip"]));
    assert_eq!(
        field(&rejected, "notes").typed,
        json!("call back on Monday")
    );
    assert_eq!(rejected.fields.len(), 4, "{:?}", rejected.fields);
    assert_checks(dir.path());

    // The same after reopening.
    drop(store);
    let mut store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.get(id).expect("get").get("name"),
        text("ACME").as_ref()
    );
    assert_eq!(only_rejected(&store).id, rejected.id);

    // Retried: one new change with every typed value, queued for the relay.
    let record = store.retry_rejected(rejected.id).expect("retry");
    assert_eq!(record.get("industry"), text("manufacturing").as_ref());
    assert_eq!(record.get("name"), text("ACME Global").as_ref());
    assert!(record.tags.contains("vip"));
    assert_eq!(record.notes, "call back on Monday");
    assert_eq!(queued_of(&store, id).len(), 1);
    assert!(store.rejected().expect("rejected").is_empty());
    assert_eq!(found(&store, "Global"), vec![id]);
    assert_checks(dir.path());
}

#[test]
fn a_change_pulled_after_the_refused_one_survives_the_rebuild() {
    let (dir, mut alice) = replica("alice", "laptop");
    let (_bob_dir, mut bob) = replica("bob", "phone");
    let id = create(&mut alice, Kind::Account, &[("name", "星光贸易")]);
    acknowledge_all(&mut alice);
    bob.apply_remote_changes(&changes_of(&alice, id))
        .expect("bob has it");

    alice
        .edit(id, &edit(Kind::Account, &[("industry", "零售")]))
        .expect("alice's edit");
    let refused = queued_of(&alice, id);
    bob.edit(id, &edit(Kind::Account, &[("phones", "+86 755 1234 5678")]))
        .expect("bob's edit");
    let bobs = changes_of(&bob, id).pop().expect("bob's change");
    alice
        .apply_pulled(
            &[PulledChange {
                seq: 2,
                change: bobs.clone(),
            }],
            SyncCursor {
                relay_id: [1; 16],
                seq: 2,
                hash: [2; 32],
            },
        )
        .expect("pull");
    let phone = alice.get(id).expect("get").get("phones").cloned();
    assert!(phone.is_some());

    alice
        .settle_refused(&[refusal(refused[0], "read-only role")])
        .expect("settle");
    let record = alice.get(id).expect("get");
    assert_eq!(record.get("industry"), None, "the refused edit is gone");
    assert_eq!(record.get("phones"), phone.as_ref(), "bob's edit stays");
    let stored: Vec<RemoteChange> = changes_of(&alice, id);
    assert!(stored.contains(&bobs));
    assert_eq!(stored.len(), 2, "the creation and bob's change");
    let row = alice.list(&ListQuery::new(Kind::Account)).expect("list");
    assert_eq!(row.len(), 1);
    assert!(row[0].json.get("phones").is_some(), "{}", row[0].json);
    assert!(row[0].json.get("industry").is_none(), "{}", row[0].json);
    let industry = only_rejected(&alice);
    let industry = field(&industry, "industry");
    assert_eq!(
        (&industry.typed, &industry.old),
        (&json!("零售"), &json!(null))
    );
    assert_eq!(alice.get_cursor_seq(), 2);
    assert_checks(dir.path());
}

/// The cursor's position, to check a settlement leaves it alone.
trait CursorSeq {
    fn get_cursor_seq(&self) -> u64;
}

impl CursorSeq for Store {
    fn get_cursor_seq(&self) -> u64 {
        self.sync_cursor().expect("cursor").map_or(0, |c| c.seq)
    }
}

#[test]
fn a_refused_creation_removes_the_record_and_a_retry_creates_it_again() {
    let (dir, mut store) = replica("alice", "laptop");
    let keep = create(&mut store, Kind::Account, &[("name", "Keep Ltd")]);
    let mut e = edit(
        Kind::Account,
        &[("name", "Ghost Trading"), ("industry", "retail")],
    );
    e.tag("prospect").expect("tag");
    e.replace_notes("met at the fair").expect("notes");
    let ghost = store.create(&e).expect("create").id;
    let ghost_seq = queued_of(&store, ghost);
    assert_eq!(found(&store, "Ghost"), vec![ghost]);

    let report = store
        .settle_refused(&[refusal(ghost_seq[0], "your role may not create accounts")])
        .expect("settle");
    assert_eq!(report.removed_records, vec![ghost]);
    assert!(matches!(store.get(ghost), Err(StoreError::NotFound(_))));
    assert_eq!(titles(&store, Kind::Account), vec!["Keep Ltd".to_string()]);
    assert!(found(&store, "Ghost").is_empty());
    assert!(found(&store, "fair").is_empty());
    assert!(changes_of(&store, ghost).is_empty());
    assert!(!store.all_heads().expect("heads").contains_key(&ghost));
    assert_eq!(
        queued_of(&store, keep).len(),
        1,
        "the other record's creation waits"
    );

    // Every field the user set is kept.
    let rejected = only_rejected(&store);
    assert!(rejected.created);
    assert_eq!(rejected.title, "Ghost Trading");
    let name = field(&rejected, "name");
    assert_eq!(
        (&name.typed, &name.old),
        (&json!("Ghost Trading"), &json!(null))
    );
    assert_eq!(field(&rejected, "industry").typed, json!("retail"));
    assert_eq!(field(&rejected, "tags").typed, json!(["prospect"]));
    assert_eq!(field(&rejected, "notes").typed, json!("met at the fair"));
    let owner = field(&rejected, "owner");
    assert!(owner.typed.is_string(), "the owner it was given: {owner:?}");
    assert_checks(dir.path());

    let record = store.retry_rejected(rejected.id).expect("retry");
    assert_eq!(record.id, ghost, "the same id");
    assert_eq!(record.get("name"), text("Ghost Trading").as_ref());
    assert_eq!(record.get("industry"), text("retail").as_ref());
    assert!(record.tags.contains("prospect"));
    assert_eq!(record.notes, "met at the fair");
    assert_eq!(queued_of(&store, ghost).len(), 1, "in the outbox");
    assert_eq!(found(&store, "Ghost"), vec![ghost]);
    assert!(store.rejected().expect("rejected").is_empty());
    assert_checks(dir.path());
    drop(store);
    let mut store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.get(ghost).expect("get").get("name"),
        text("Ghost Trading").as_ref()
    );
}

#[test]
fn one_settlement_refuses_one_record_while_another_records_change_is_acknowledged() {
    let (dir, mut store) = replica("alice", "laptop");
    let a = create(&mut store, Kind::Account, &[("name", "Alpha")]);
    let b = create(&mut store, Kind::Contact, &[("last_name", "Bea")]);
    acknowledge_all(&mut store);
    store
        .edit(a, &edit(Kind::Account, &[("industry", "energy")]))
        .expect("edit a");
    store
        .edit(b, &edit(Kind::Contact, &[("title", "CFO")]))
        .expect("edit b");
    let (ra, rb) = (queued_of(&store, a), queued_of(&store, b));
    // The relay's answer: b's change stored, a's refused.
    let report = store
        .settle_refused(&[refusal(ra[0], "not yours")])
        .expect("settle");
    store.acknowledge(&rb).expect("acknowledge");
    assert_eq!(report.rebuilt, vec![a]);
    assert_eq!(store.get(a).expect("a").get("industry"), None);
    assert_eq!(store.get(b).expect("b").get("title"), text("CFO").as_ref());
    assert_eq!(changes_of(&store, b).len(), 2);
    assert!(queued_of(&store, a).is_empty() && queued_of(&store, b).is_empty());
    assert_eq!(only_rejected(&store).record, a);
    assert_checks(dir.path());
}

#[test]
fn settling_twice_is_harmless_and_unknown_refusals_are_ignored() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "Alpha")]);
    let creation = queued_of(&store, id)[0];
    acknowledge_all(&mut store);
    store
        .edit(id, &edit(Kind::Account, &[("industry", "energy")]))
        .expect("edit");
    let seq = queued_of(&store, id)[0];
    let refusals = [
        refusal(seq, "no"),
        refusal(seq, "no"),
        refusal(9_999, "gone"),
    ];
    let first = store.settle_refused(&refusals).expect("settle");
    assert_eq!(first.removed_changes, 1);
    assert_eq!(
        first.ignored, 1,
        "the unknown one; the repeat is the same change"
    );
    let heads = store.all_heads().expect("heads");
    let second = store.settle_refused(&refusals).expect("settle again");
    assert_eq!(second.removed_changes, 0);
    assert_eq!(second.ignored, 3);
    assert!(second.rejected.is_empty());
    assert_eq!(store.all_heads().expect("heads"), heads);
    assert_eq!(store.rejected().expect("rejected").len(), 1);
    assert_eq!(store.rejected_count().expect("count"), 1);
    // An acknowledged change is not the outbox's any more: a late refusal of it is ignored.
    let late = store
        .settle_refused(&[refusal(creation, "late")])
        .expect("settle");
    assert_eq!(late.removed_changes, 0);
    assert_eq!(late.ignored, 1);
    assert!(store.get(id).is_ok());
    assert_checks(dir.path());
}

#[test]
fn dismissed_edits_are_gone_and_unknown_ids_are_a_clear_error() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "Alpha")]);
    acknowledge_all(&mut store);
    store
        .edit(id, &edit(Kind::Account, &[("industry", "energy")]))
        .expect("edit");
    store
        .settle_refused(&[refusal(queued_of(&store, id)[0], "no")])
        .expect("settle");
    let rejected = only_rejected(&store);
    store.dismiss_rejected(rejected.id).expect("dismiss");
    assert!(store.rejected().expect("rejected").is_empty());
    assert_eq!(store.get(id).expect("get").get("industry"), None);
    assert!(queued_of(&store, id).is_empty(), "nothing made again");

    for err in [
        store
            .dismiss_rejected(rejected.id)
            .expect_err("dismissed already"),
        store
            .retry_rejected(rejected.id)
            .expect_err("dismissed already"),
        store.retry_rejected(-3).expect_err("never one"),
    ] {
        assert!(matches!(err, StoreError::NoRejectedEdit(_)), "{err:?}");
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("no refused edit with id"), "{err}");
    }
    assert_checks(dir.path());
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

#[test]
fn a_retry_the_current_role_does_not_allow_is_refused_here_and_the_edit_kept() {
    let (dir, mut store) = replica("alice", "laptop");
    let campaign = create(&mut store, Kind::Campaign, &[("name", "Spring fair")]);
    store
        .settle_refused(&[refusal(queued_of(&store, campaign)[0], "no campaigns")])
        .expect("settle");
    let user = user_from_relay(&mut store, "alice");
    store
        .adopt_identity(&RelayIdentity {
            user_id: user,
            user_name: "alice".into(),
            role: Role::SalesRep,
            teams: Vec::new(),
            device_id: "dev-1".into(),
            access_key: [7; 32],
        })
        .expect("adopt");
    let rejected = only_rejected(&store);
    let err = store
        .retry_rejected(rejected.id)
        .expect_err("a rep creates no campaign");
    assert!(matches!(err, StoreError::Rejected(_)), "{err:?}");
    assert!(err.to_string().contains("sales_rep"), "{err}");
    assert_eq!(only_rejected(&store), rejected, "kept as it was");
    assert!(matches!(store.get(campaign), Err(StoreError::NotFound(_))));
    assert_checks(dir.path());
}

#[test]
fn the_session_that_made_a_refused_change_writes_the_record_under_a_fresh_actor() {
    let (dir, mut node) = replica("alice", "laptop");
    let id = create(&mut node, Kind::Account, &[("name", "Alpha")]);
    acknowledge_all(&mut node);
    // Another process (say `crm serve`) makes the edit; the sync driver settles it.
    let mut web = Store::open(dir.path()).expect("a second session");
    web.edit(id, &edit(Kind::Account, &[("industry", "energy")]))
        .expect("edit");
    let refused_actor = actors_of(&node, id).pop().expect("the edit's actor");
    node.settle_refused(&[refusal(queued_of(&node, id)[0], "no")])
        .expect("settle");
    // Its next change of the record must not repeat the refused change's (actor, seq).
    web.edit(id, &edit(Kind::Account, &[("industry", "mining")]))
        .expect("edit again");
    let actors = actors_of(&node, id);
    assert_eq!(actors.len(), 2);
    assert_ne!(actors[1], refused_actor);
    // Nor does the settling session's own next change, nor a retry.
    let retried = node.retry_rejected(only_rejected(&node).id).expect("retry");
    assert_eq!(retried.get("industry"), text("energy").as_ref());
    assert!(
        actors_of(&node, id)
            .iter()
            .skip(1)
            .all(|a| *a != refused_actor)
    );
    assert_checks(dir.path());
}

#[test]
fn a_refused_edit_folded_into_the_snapshot_is_taken_out_of_it() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "Alpha")]);
    acknowledge_all(&mut store);
    store
        .edit(id, &edit(Kind::Account, &[("industry", "energy")]))
        .expect("the refused edit");
    let refused = queued_of(&store, id)[0];
    // Enough later edits that the document is compacted with the refused one in its snapshot.
    for i in 0..40 {
        store
            .edit(id, &edit(Kind::Account, &[("employees", &i.to_string())]))
            .expect("edit");
    }
    let report = store
        .settle_refused(&[refusal(refused, "no")])
        .expect("settle");
    assert_eq!(report.removed_changes, 41);
    let record = store.get(id).expect("get");
    assert_eq!(record.get("industry"), None);
    assert_eq!(record.get("employees"), None);
    assert_eq!(changes_of(&store, id).len(), 1);
    assert_eq!(only_rejected(&store).changes, 41);
    assert_checks(dir.path());
    drop(store);
    let mut store = Store::open(dir.path()).expect("reopen");
    assert_eq!(
        store.get(id).expect("get").get("name"),
        text("Alpha").as_ref()
    );
    // And it still takes edits.
    store
        .edit(id, &edit(Kind::Account, &[("industry", "retail")]))
        .expect("edit");
    assert_checks(dir.path());
}

#[test]
fn a_replica_of_format_3_gets_the_refused_edits_tables() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "ACME")]);
    drop(store);
    {
        let conn =
            rusqlite::Connection::open(dir.path().join(crm_store::REPLICA_FILE)).expect("open db");
        conn.execute_batch(
            "DROP TABLE refused_changes; DROP TABLE refused_edits; DROP TABLE refused_actors; \
             PRAGMA user_version = 3;",
        )
        .expect("make it format 3");
    }
    let mut store = Store::open(dir.path()).expect("open upgrades");
    store
        .settle_refused(&[refusal(queued_of(&store, id)[0], "no")])
        .expect("settle");
    assert!(only_rejected(&store).created);
}
