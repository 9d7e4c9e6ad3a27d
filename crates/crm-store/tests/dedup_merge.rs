//! Duplicate detection and merging: two devices create the same customer offline, the
//! duplicates are found after they sync, and the merge keeps every history and reference.

mod common;

use common::{create, edit, replica};
use crm_model::{FieldValue, Kind};
use crm_store::{KeyKind, StoreError};

#[test]
fn records_created_offline_on_two_devices_form_a_group_and_merge_keeping_history() {
    let (_a_dir, mut laptop) = replica("alice", "laptop");
    let (_b_dir, mut phone) = replica("bob", "phone");
    // The same customer, typed differently on each device while offline.
    let a = create(
        &mut laptop,
        Kind::Account,
        &[
            ("name", "深圳星光贸易有限公司"),
            ("emails", "info@star.cn"),
            ("industry", "retail"),
        ],
    );
    laptop
        .edit(a, &edit(Kind::Account, &[("grade", "key")]))
        .expect("edit");
    let b = create(
        &mut phone,
        Kind::Account,
        &[
            ("name", "深圳 星光贸易"),
            ("phones", "+86 755 1234 5678"),
            ("website", "star.cn"),
            ("emails", "INFO@star.cn, sales@star.cn"),
        ],
    );
    let mut tagged = edit(Kind::Account, &[]);
    tagged.tag("展会").expect("tag");
    tagged.append_notes("在深圳展会上认识").expect("notes");
    phone.edit(b, &tagged).expect("tag");
    // A contact and a deal on the phone point at the phone's copy.
    let b_id = b.to_string();
    let contact = create(
        &mut phone,
        Kind::Contact,
        &[("last_name", "王"), ("account", &b_id)],
    );
    let deal = create(
        &mut phone,
        Kind::Opportunity,
        &[
            ("name", "2026 续约"),
            ("account", &b_id),
            ("amount", "12000"),
        ],
    );
    // An unrelated account is never grouped.
    create(&mut laptop, Kind::Account, &[("name", "Northwind Traders")]);

    laptop.merge_from(&phone).expect("sync");
    let groups = laptop.duplicate_groups(Kind::Account).expect("groups");
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let ids: Vec<_> = groups[0].members.iter().map(|m| m.id).collect();
    assert!(ids.contains(&a) && ids.contains(&b));
    let shared: Vec<KeyKind> = groups[0].shared.iter().map(|k| k.kind).collect();
    assert!(
        shared.contains(&KeyKind::Email) && shared.contains(&KeyKind::Name),
        "{shared:?}"
    );

    let b_history = laptop.history(b).expect("history").len();
    let report = laptop
        .merge_records(a, &[b], &[("industry".into(), b)])
        .expect_err("b has no industry to take");
    assert!(report.is_invalid_input());
    let report = laptop.merge_records(a, &[b], &[]).expect("merge");
    assert_eq!(report.merged, vec![b]);
    let mut repointed = report.repointed.clone();
    repointed.sort();
    let mut expected = vec![contact, deal];
    expected.sort();
    assert_eq!(repointed, expected);

    let survivor = laptop.get(a).expect("survivor");
    // Kept its own values, filled the empty ones, united sets and tags, appended notes.
    assert_eq!(
        survivor.get("industry"),
        Some(&FieldValue::Text("retail".into()))
    );
    assert_eq!(
        survivor.get("website"),
        Some(&FieldValue::Text("star.cn".into()))
    );
    assert_eq!(
        survivor.get("emails"),
        Some(&FieldValue::Set(
            ["info@star.cn", "sales@star.cn"].map(String::from).into()
        ))
    );
    assert!(survivor.tags.contains("展会"));
    assert!(
        survivor.notes.contains("在深圳展会上认识"),
        "{}",
        survivor.notes
    );
    assert!(!survivor.archived);

    // The loser is archived and points at the survivor; its history is all still there.
    let loser = laptop.get(b).expect("loser");
    assert!(loser.archived);
    assert_eq!(loser.get("merged_into"), Some(&FieldValue::Ref(a)));
    assert_eq!(laptop.history(b).expect("history").len(), b_history + 1);

    // References now point at the survivor, and the references index agrees.
    for id in [contact, deal] {
        let r = laptop.get(id).expect("referrer");
        assert_eq!(r.get("account"), Some(&FieldValue::Ref(a)));
    }
    let mut q = crm_store::ListQuery::new(Kind::Opportunity);
    q.filters
        .push(crm_store::Filter::parse(&format!("account={a}")).expect("filter"));
    assert_eq!(laptop.list(&q).expect("list").len(), 1);

    // No group is left, and the merge is ordinary changes: the phone gets it by syncing.
    assert!(
        laptop
            .duplicate_groups(Kind::Account)
            .expect("groups")
            .is_empty()
    );
    phone.merge_from(&laptop).expect("sync back");
    assert!(phone.get(b).expect("loser on phone").archived);
    assert_eq!(
        phone.get(contact).expect("contact").get("account"),
        Some(&FieldValue::Ref(a))
    );

    // Merging again is refused with a reason.
    let again = laptop
        .merge_records(a, &[b], &[])
        .expect_err("merged already");
    assert!(matches!(again, StoreError::CannotMerge { .. }), "{again}");
    let own = laptop.merge_records(a, &[a], &[]).expect_err("self");
    assert!(own.is_invalid_input());
}

#[test]
fn take_chooses_a_losers_value_and_self_references_are_dropped() {
    let (_dir, mut store) = replica("alice", "laptop");
    let a = create(
        &mut store,
        Kind::Account,
        &[("name", "ACME Trading Co., Ltd."), ("industry", "retail")],
    );
    let a_id = a.to_string();
    let b = create(
        &mut store,
        Kind::Account,
        &[
            ("name", "Acme Trading Inc"),
            ("industry", "wholesale"),
            ("parent", &a_id),
        ],
    );
    let groups = store.duplicate_groups(Kind::Account).expect("groups");
    assert_eq!(groups.len(), 1);
    store
        .merge_records(a, &[b], &[("industry".into(), b)])
        .expect("merge");
    let survivor = store.get(a).expect("get");
    assert_eq!(
        survivor.get("industry"),
        Some(&FieldValue::Text("wholesale".into()))
    );
    // b's parent was a itself: the survivor does not become its own parent.
    assert_eq!(survivor.get("parent"), None);
    assert_eq!(store.count(Kind::Account, false).expect("count"), 1);
}

#[test]
fn grouping_50_accounts_with_shared_keys_is_transitive() {
    let (_dir, mut store) = replica("alice", "laptop");
    // x shares an email with y, y a phone with z: one group of three.
    let x = create(
        &mut store,
        Kind::Account,
        &[("name", "X1"), ("emails", "a@x.cn")],
    );
    let y = create(
        &mut store,
        Kind::Account,
        &[
            ("name", "Y2"),
            ("emails", "a@x.cn"),
            ("phones", "0755 1234 5678"),
        ],
    );
    let z = create(
        &mut store,
        Kind::Account,
        &[("name", "Z3"), ("phones", "+86 755 1234 5678")],
    );
    for i in 0..50 {
        create(
            &mut store,
            Kind::Account,
            &[("name", &format!("Unique {i}"))],
        );
    }
    let groups = store.duplicate_groups(Kind::Account).expect("groups");
    assert_eq!(groups.len(), 1, "{groups:#?}");
    let mut ids: Vec<_> = groups[0].members.iter().map(|m| m.id).collect();
    ids.sort();
    let mut want = vec![x, y, z];
    want.sort();
    assert_eq!(ids, want);
}
