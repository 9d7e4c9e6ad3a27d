//! `apply_remote_changes`: idempotent, order-independent, all-or-nothing for what applies, and
//! strict about which document a change belongs to (what is not applied is quarantined).

mod common;

use std::collections::BTreeSet;

use common::{Rng, all_changes, changes_of, create, edit, records, replica, state};
use crm_model::automerge::{ActorId, Automerge, ROOT, transaction::Transactable};
use crm_model::{FieldValue, Kind, RecordId};
use crm_store::{ListQuery, Origin, Problem, RemoteChange, Store, StoreError};

/// A replica with a few records and several changes on each.
struct Source {
    _dir: tempfile::TempDir,
    store: Store,
    account: RecordId,
    contact: RecordId,
    deal: RecordId,
}

fn source() -> Source {
    let (dir, mut store) = replica("alice", "laptop");
    let account = create(&mut store, Kind::Account, &[("name", "深圳星光贸易")]);
    for (field, value) in [
        ("industry", "retail"),
        ("grade", "vip"),
        ("website", "https://www.xingguang.cn/"),
    ] {
        store
            .edit(account, &edit(Kind::Account, &[(field, value)]))
            .expect("edit account");
    }
    let mut notes = crm_model::Edit::new(Kind::Account);
    notes.tag("north").expect("tag");
    notes.replace_notes("met at the fair").expect("notes");
    store.edit(account, &notes).expect("edit account");
    let contact = create(
        &mut store,
        Kind::Contact,
        &[("last_name", "李"), ("account", &account.to_string())],
    );
    store
        .edit(contact, &edit(Kind::Contact, &[("title", "CEO")]))
        .expect("edit contact");
    let deal = create(
        &mut store,
        Kind::Opportunity,
        &[("name", "星光 renewal"), ("account", &account.to_string())],
    );
    store
        .edit(deal, &edit(Kind::Opportunity, &[("stage", "proposal")]))
        .expect("edit deal");
    store.set_archived(deal, true).expect("archive");
    Source {
        _dir: dir,
        store,
        account,
        contact,
        deal,
    }
}

fn ids(store: &Store, kind: Kind) -> BTreeSet<RecordId> {
    let mut q = ListQuery::new(kind);
    q.include_archived = true;
    q.limit = 1000;
    store
        .list(&q)
        .expect("list")
        .into_iter()
        .map(|r| r.id)
        .collect()
}

#[test]
fn applying_the_same_batch_twice_changes_nothing_the_second_time() {
    let mut src = source();
    let batch = all_changes(&src.store);
    let (_dir, mut b) = replica("bob", "phone");
    let outbox = b.outbox_len().expect("outbox");
    let first = b.apply_remote_changes(&batch).expect("apply");
    assert_eq!(first.applied, batch.len());
    assert_eq!(first.duplicates, 0);
    let docs: BTreeSet<RecordId> = batch.iter().map(|c| c.doc_id).collect();
    assert_eq!(first.changed.iter().copied().collect::<BTreeSet<_>>(), docs);
    let after_first = state(&b);

    let second = b.apply_remote_changes(&batch).expect("apply again");
    assert_eq!(second.applied, 0);
    assert_eq!(second.duplicates, batch.len());
    assert!(second.changed.is_empty(), "{second:?}");
    assert_eq!(state(&b), after_first);
    assert_eq!(
        b.outbox_len().expect("outbox"),
        outbox,
        "remote changes are not ours to push"
    );

    // Duplicates inside one batch count once as applied, then as duplicates.
    let (_dir2, mut c) = replica("carol", "desktop");
    let mut doubled = batch.clone();
    doubled.extend(batch.iter().cloned());
    let report = c.apply_remote_changes(&doubled).expect("apply doubled");
    assert_eq!(report.applied, batch.len());
    assert_eq!(report.duplicates, batch.len());

    for id in [src.account, src.contact, src.deal] {
        let want = src.store.get(id).expect("source record");
        assert_eq!(b.get(id).expect("on b"), want);
        assert_eq!(c.get(id).expect("on c"), want);
    }
}

#[test]
fn a_later_change_before_its_creating_change_waits_unlisted() {
    let mut src = source();
    let account_changes = changes_of(&src.store, src.account);
    assert!(account_changes.len() >= 4);
    let (dir, mut b) = replica("bob", "phone");

    // The last two changes first: the record can't be read yet.
    let n = account_changes.len();
    let report = b
        .apply_remote_changes(&account_changes[n - 1..])
        .expect("apply last");
    assert_eq!(report.applied, 1);
    assert!(report.changed.is_empty(), "nothing readable changed");
    b.apply_remote_changes(&account_changes[n - 2..n - 1])
        .expect("apply second to last");
    assert!(!ids(&b, Kind::Account).contains(&src.account));
    assert!(matches!(b.get(src.account), Err(StoreError::NotFound(_))));
    assert!(matches!(
        b.kind_of(src.account),
        Err(StoreError::NotFound(_))
    ));
    assert!(b.search("星光", None, true, 10).expect("search").is_empty());
    assert!(matches!(
        b.edit(src.account, &edit(Kind::Account, &[("industry", "x")])),
        Err(StoreError::NotFound(_))
    ));
    // A reference to a record that is not readable yet is a missing reference.
    let e = edit(
        Kind::Contact,
        &[("last_name", "王"), ("account", &src.account.to_string())],
    );
    assert!(matches!(
        b.create(&e),
        Err(StoreError::MissingReference { .. })
    ));
    // Pending changes survive a reopen.
    drop(b);
    let mut b = Store::open(dir.path()).expect("reopen");
    assert!(b.all_heads().expect("heads").contains_key(&src.account));

    // The rest, creating change last: everything applies at once.
    let mut rest = account_changes[..n - 2].to_vec();
    rest.reverse();
    let report = b.apply_remote_changes(&rest).expect("apply rest");
    assert_eq!(report.applied, n - 2);
    assert_eq!(report.changed, vec![src.account]);
    assert!(ids(&b, Kind::Account).contains(&src.account));
    assert_eq!(
        b.get(src.account).expect("readable now"),
        src.store.get(src.account).expect("source")
    );
    assert_eq!(b.search("星光", None, true, 10).expect("search").len(), 1);
    assert_eq!(
        b.all_heads().expect("heads")[&src.account],
        src.store.all_heads().expect("heads")[&src.account]
    );
}

#[test]
fn any_order_and_any_batching_gives_the_same_replica() {
    let mut src = source();
    let changes = all_changes(&src.store);
    let want_records = records(&mut src.store);
    for seed in 0..12_u64 {
        let mut rng = Rng::new(seed);
        let mut order = changes.clone();
        rng.shuffle(&mut order);
        // Always start with a non-creating change of the account, so its document is pending.
        let account_changes = changes_of(&src.store, src.account);
        let late = account_changes.last().expect("account changes").clone();
        order.retain(|c| c != &late);
        order.insert(0, late);
        let (_dir, mut b) = replica("bob", "phone");
        let mut rest = &order[..];
        let mut first = true;
        while !rest.is_empty() {
            let take = if first { 1 } else { 1 + rng.below(4) }.min(rest.len());
            first = false;
            let (batch, tail) = rest.split_at(take);
            b.apply_remote_changes(batch).expect("apply batch");
            rest = tail;
        }
        // Every record of alice's arrived intact.
        let src_heads = src.store.all_heads().expect("heads");
        let b_heads = b.all_heads().expect("heads");
        for (id, heads) in &src_heads {
            assert_eq!(b_heads.get(id), Some(heads), "seed {seed}: heads of {id}");
        }
        let on_b = records(&mut b);
        for (id, json) in &want_records {
            assert_eq!(&on_b[id], json, "seed {seed}: record {id}");
        }
        // A replica that got alice's changes in log order, then bob's, is identical to bob
        // once bob has its user record too.
        let (_dir_m, mut m) = replica("mia", "tablet");
        m.merge_from(&src.store).expect("merge in order");
        m.merge_from(&b).expect("merge bob");
        b.merge_from(&m).expect("merge back");
        assert_eq!(m.all_heads().expect("heads"), b.all_heads().expect("heads"));
        assert_eq!(
            m.projection_dump().expect("dump"),
            b.projection_dump().expect("dump"),
            "seed {seed}"
        );
        assert_eq!(records(&mut m), records(&mut b), "seed {seed}");
    }
}

/// Garbage in a batch is quarantined on its own: every valid change around it applies, in the
/// same transaction, exactly as it would have without the garbage.
#[test]
fn a_batch_with_garbage_applies_everything_but_the_garbage() {
    let src = source();
    let changes = all_changes(&src.store);
    let valid = changes[2].clone();
    let mut truncated = changes[3].clone();
    truncated.bytes.truncate(truncated.bytes.len() / 2);
    let mut flipped = changes[3].clone();
    let last = flipped.bytes.len() - 1;
    flipped.bytes[last] ^= 0x5a;
    let mut rng = Rng::new(99);
    let random: Vec<u8> = (0..200).map(|_| rng.next_u64().to_le_bytes()[3]).collect();
    let mut whole_doc = Automerge::new();
    let mut tx = whole_doc.transaction();
    tx.put(ROOT, "kind", "account").expect("put");
    tx.commit();
    let saved = whole_doc.save();
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("random bytes", random),
        ("truncated change", truncated.bytes),
        ("change with a flipped byte", flipped.bytes),
        ("saved document", saved),
    ];
    // What the valid changes alone give.
    let (_control_dir, mut control) = replica("carol", "tablet");
    control
        .apply_remote_changes(&changes[..2])
        .expect("apply first two");
    control
        .apply_remote_changes(&[valid.clone(), changes[4].clone()])
        .expect("apply valid");
    for (what, bytes) in garbage {
        let (_dir, mut b) = replica("bob", "phone");
        b.apply_remote_changes(&changes[..2])
            .expect("apply first two");
        let batch = vec![
            valid.clone(),
            RemoteChange {
                doc_id: valid.doc_id,
                bytes: bytes.clone(),
            },
            changes[4].clone(),
        ];
        let report = b.apply_remote_changes(&batch).expect(what);
        assert_eq!(report.applied, 2, "{what}");
        assert_eq!(report.quarantined.len(), 1, "{what}");
        let q = &report.quarantined[0];
        assert_eq!(q.doc_id, valid.doc_id, "{what}");
        assert!(
            matches!(q.problem, Problem::Unreadable | Problem::Damaged),
            "{what}: {q:?}"
        );
        assert_eq!(q.origin, Origin::Remote);
        assert_eq!(b.quarantined().expect("list").len(), 1, "{what}");
        for id in [src.account, src.contact, src.deal] {
            assert_eq!(
                b.all_heads().expect("heads").get(&id),
                control.all_heads().expect("heads").get(&id),
                "{what}"
            );
        }
        // The same garbage again is reported again but kept once.
        let again = b.apply_remote_changes(&batch[1..2]).expect(what);
        assert_eq!(again.quarantined.len(), 1, "{what}");
        assert_eq!(b.quarantine_len().expect("len"), 1, "{what}");
    }
}

/// A record's creating change sent under an id no record has: quarantined, and no document
/// is made for that id; the other records of the batch apply.
#[test]
fn a_creating_change_sent_under_a_new_id_is_quarantined() {
    let src = source();
    let creating = changes_of(&src.store, src.account)[0].clone();
    let (_dir, mut b) = replica("bob", "phone");
    let other = changes_of(&src.store, src.contact);
    let wrong = RecordId::new();
    let mut batch = other.clone();
    batch.push(RemoteChange {
        doc_id: wrong,
        bytes: creating.bytes,
    });
    let report = b.apply_remote_changes(&batch).expect("the batch applies");
    assert_eq!(report.applied, other.len());
    assert_eq!(report.quarantined.len(), 1);
    let q = &report.quarantined[0];
    assert_eq!(q.doc_id, wrong);
    assert_eq!(q.problem, Problem::OtherRecord);
    assert!(q.reason.contains(&src.account.to_string()), "{}", q.reason);
    let heads = b.all_heads().expect("heads");
    assert!(!heads.contains_key(&wrong));
    assert!(heads.contains_key(&src.contact));
}

#[test]
fn changes_after_pages_through_the_whole_log_once() {
    let src = source();
    let all = src.store.changes_after(0, usize::MAX).expect("all");
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = src.store.changes_after(after, 3).expect("page");
        assert!(page.len() <= 3);
        let Some(last) = page.last() else { break };
        after = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq));
    let hashes: BTreeSet<&[u8]> = all.iter().map(|l| l.change.bytes.as_slice()).collect();
    assert_eq!(hashes.len(), all.len(), "no change is listed twice");
    let last = all.last().expect("a change").seq;
    assert!(
        src.store
            .changes_after(last, 10)
            .expect("after the end")
            .is_empty()
    );
}

#[test]
fn merge_from_makes_two_replicas_identical() {
    let mut src = source();
    let (_dir, mut b) = replica("bob", "phone");
    let report = b.merge_from(&src.store).expect("merge");
    assert_eq!(report.applied, all_changes(&src.store).len());
    src.store.merge_from(&b).expect("merge back");
    assert_eq!(state(&b).heads, state(&src.store).heads);
    assert_eq!(
        b.projection_dump().expect("dump"),
        src.store.projection_dump().expect("dump")
    );
    assert_eq!(records(&mut b), records(&mut src.store));
    // The archived deal stays archived and hidden from default lists on the copy.
    assert!(b.get(src.deal).expect("deal").archived);
    assert!(
        b.list(&ListQuery::new(Kind::Opportunity))
            .expect("list")
            .is_empty()
    );
    assert_eq!(
        b.get(src.contact).expect("contact").get("account"),
        Some(&FieldValue::Ref(src.account))
    );
}

#[test]
fn a_document_of_an_unknown_kind_is_kept_but_not_listed() {
    let (dir, mut b) = replica("bob", "phone");
    let id = RecordId::new();
    let mut doc = Automerge::new().with_actor(ActorId::random());
    let mut tx = doc.transaction();
    tx.put(ROOT, "kind", "spaceship").expect("put");
    tx.put(ROOT, "schema", 1_u64).expect("put");
    tx.put(ROOT, "id", id.to_string()).expect("put");
    tx.commit();
    let change = doc
        .get_last_local_change()
        .expect("change")
        .raw_bytes()
        .to_vec();
    let before = b.projection_dump().expect("dump");
    let report = b
        .apply_remote_changes(&[RemoteChange {
            doc_id: id,
            bytes: change,
        }])
        .expect("a newer kind is kept for a newer build");
    assert_eq!(report.applied, 1);
    assert!(b.all_heads().expect("heads").contains_key(&id));
    assert!(matches!(b.kind_of(id), Err(StoreError::NotFound(_))));
    assert_eq!(b.projection_dump().expect("dump"), before);
    b.reindex().expect("reindex skips it");
    assert_eq!(b.projection_dump().expect("dump"), before);
    drop(b);
    let b = Store::open(dir.path()).expect("reopen");
    assert!(b.all_heads().expect("heads").contains_key(&id));
    // It travels on to peers like any other change.
    assert!(all_changes(&b).iter().any(|c| c.doc_id == id));
}

/// Search hits for `text` as sorted record ids.
fn hits(store: &Store, text: &str) -> Vec<RecordId> {
    let mut ids: Vec<RecordId> = store
        .search(text, None, true, 10_000)
        .expect("search")
        .into_iter()
        .map(|h| h.id)
        .collect();
    ids.sort();
    ids
}

/// A batch of many new records is built on worker threads while the writer stores them (and
/// the full-text rows go in at the commit): the replica must end up with exactly what the
/// source has, and what applying the changes one at a time gives, search included.
#[test]
fn a_large_batch_of_new_records_matches_the_source_and_one_at_a_time() {
    let (_s, mut source) = replica("alice", "laptop");
    let mut ids = Vec::new();
    for i in 0..60 {
        let name = if i % 2 == 0 {
            format!("深圳星光贸易{i}有限公司")
        } else {
            format!("Northwind Traders {i}")
        };
        let account = create(&mut source, Kind::Account, &[("name", &name)]);
        let mut more = crm_model::Edit::new(Kind::Account);
        more.tag(if i % 3 == 0 { "华南" } else { "north" })
            .expect("tag");
        more.replace_notes(&format!("visit {i}")).expect("notes");
        source.edit(account, &more).expect("edit");
        let account_id = account.to_string();
        let contact = create(
            &mut source,
            Kind::Contact,
            &[("last_name", "王"), ("account", &account_id)],
        );
        let deal = create(
            &mut source,
            Kind::Opportunity,
            &[("name", &format!("Deal {i}")), ("account", &account_id)],
        );
        source
            .edit(deal, &edit(Kind::Opportunity, &[("stage", "proposal")]))
            .expect("stage");
        ids.extend([account, contact, deal]);
    }
    let changes = all_changes(&source);
    let mut batch = changes.clone();
    Rng::new(7).shuffle(&mut batch);
    batch.push(batch[5].clone());

    let (_b, mut bulk) = replica("bob", "phone");
    let report = bulk.apply_remote_changes(&batch).expect("bulk apply");
    assert_eq!(report.applied, changes.len());
    assert_eq!(report.duplicates, 1);
    let (_o, mut single) = replica("carol", "tablet");
    for change in &changes {
        single
            .apply_remote_changes(std::slice::from_ref(change))
            .expect("apply one");
    }

    let want = records(&mut source);
    for store in [&mut bulk, &mut single] {
        let got = records(store);
        for id in &ids {
            assert_eq!(got.get(id), want.get(id), "record {id}");
        }
    }
    for text in ["星光贸易", "Northwind", "华南", "visit 4", "王"] {
        let want = hits(&source, text);
        assert!(!want.is_empty(), "{text} finds something on the source");
        assert_eq!(hits(&bulk, text), want, "search {text} after one batch");
        assert_eq!(hits(&single, text), want, "search {text} one at a time");
    }
    let mut stage = ListQuery::new(Kind::Opportunity);
    stage
        .filters
        .push(crm_store::Filter::parse("stage=proposal").expect("filter"));
    stage.limit = 1_000;
    assert_eq!(bulk.list(&stage).expect("list").len(), 60);
}
