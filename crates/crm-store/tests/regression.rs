//! One test per bug found, named for it. Each failed before its fix.

mod common;

use common::{assert_unchanged, changes_of, create, edit, replica, state};
use crm_model::automerge::ActorId;
use crm_model::{Author, Edit, FieldValue, Kind, RecordId, Stamp, ValidationError, doc};
use crm_store::{Filter, ListQuery, Problem, RemoteChange, Store};

/// `Edit::set_value` took an already typed value without checking it against the schema, so
/// an enum value outside its list, an invalid email, an int out of range or a value of the
/// wrong type reached the document (a required `name` set to an int even vanished on read).
#[test]
fn set_value_bypassed_schema_validation() {
    let (dir, mut store) = replica("alice", "laptop");
    let account = create(&mut store, Kind::Account, &[("name", "ACME")]);
    let contact = create(&mut store, Kind::Contact, &[("last_name", "李")]);
    let deal = create(&mut store, Kind::Opportunity, &[("name", "renewal")]);
    let before = state(&store);
    let cases: Vec<(&str, Kind, RecordId, &str, FieldValue)> = vec![
        (
            "enum value outside the list",
            Kind::Account,
            account,
            "grade",
            FieldValue::Text("platinum".into()),
        ),
        (
            "invalid email",
            Kind::Contact,
            contact,
            "emails",
            FieldValue::Set(["not-an-email".to_string()].into()),
        ),
        (
            "two emails in one set item",
            Kind::Contact,
            contact,
            "emails",
            FieldValue::Set(["a@x.com, b@x.com".to_string()].into()),
        ),
        (
            "int above its range",
            Kind::Opportunity,
            deal,
            "probability",
            FieldValue::Int(250),
        ),
        (
            "value of the wrong type",
            Kind::Account,
            account,
            "name",
            FieldValue::Int(7),
        ),
        (
            "multi-line text",
            Kind::Account,
            account,
            "industry",
            FieldValue::Text("a\nb".into()),
        ),
    ];
    for (what, kind, id, field, value) in cases {
        let mut e = Edit::new(kind);
        match e.set_value(field, value) {
            Err(err) => {
                assert!(
                    matches!(err, ValidationError::InvalidValue { .. }),
                    "{what}: {err}"
                );
                assert!(e.is_empty(), "{what}: a refused op must not be recorded");
            }
            // Should a value ever get past the edit, the store must still refuse it.
            Ok(_) => {
                let err = store
                    .edit(id, &e)
                    .expect_err(&format!("{what} must be refused"));
                assert!(err.is_invalid_input(), "{what}: {err}");
            }
        }
        assert_unchanged(&store, dir.path(), &before, what);
    }
    let mut e = Edit::new(Kind::Account);
    assert!(matches!(
        e.set_value("colour", FieldValue::Text("red".into())),
        Err(ValidationError::UnknownField { .. })
    ));

    // Valid typed values are normalised as typed text is.
    let mut e = Edit::new(Kind::Contact);
    e.set_value(
        "emails",
        FieldValue::Set(["Li.Lei@Example.COM".to_string()].into()),
    )
    .expect("a valid email");
    e.set_value("preferred_channel", FieldValue::Text("WeChat".into()))
        .expect("a valid channel");
    let record = store.edit(contact, &e).expect("edit");
    assert_eq!(
        record.get("emails"),
        Some(&FieldValue::Set(["li.lei@example.com".to_string()].into()))
    );
    assert_eq!(
        record.get("preferred_channel"),
        Some(&FieldValue::Text("wechat".into()))
    );
}

/// Enum input was normalised (`-` and space to `_`) but compared with the raw list, so the
/// account sizes `1-10` … `1001-5000` could never be set or filtered on.
#[test]
fn enum_values_with_a_hyphen_could_not_be_set() {
    let (_dir, mut store) = replica("alice", "laptop");
    let small = create(
        &mut store,
        Kind::Account,
        &[("name", "Small"), ("size", "11-50")],
    );
    let big = create(
        &mut store,
        Kind::Account,
        &[("name", "Big"), ("size", "5000+")],
    );
    assert_eq!(
        store.get(small).expect("small").get("size"),
        Some(&FieldValue::Text("11-50".into()))
    );
    store
        .edit(big, &edit(Kind::Account, &[("size", "1001-5000")]))
        .expect("edit size");
    let mut q = ListQuery::new(Kind::Account);
    q.filters.push(Filter::parse("size=11-50").expect("filter"));
    let rows = store.list(&q).expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, small);
    // The usual spellings of underscore names still work.
    let deal = create(
        &mut store,
        Kind::Opportunity,
        &[("name", "renewal"), ("stage", "Closed-Won")],
    );
    assert_eq!(
        store.get(deal).expect("deal").get("stage"),
        Some(&FieldValue::Text("closed_won".into()))
    );
    let mut e = Edit::new(Kind::Account);
    assert!(e.set("size", "11 50 people").is_err());
}

/// A record's creating change sent under the id of another existing record merged the two
/// records into one document whenever the existing record's root `id` won the concurrent
/// write, which depends only on the actor ids: the mismatch check read only the winner. The
/// foreign change is made with the smallest and the largest actor id, so both orders occur.
#[test]
fn creating_change_under_an_existing_id_was_merged_into_it() {
    let (dir, mut b) = replica("bob", "phone");
    let author = Author::new("alice", "laptop");
    let mut actors = vec![ActorId::from([0_u8; 16]), ActorId::from([0xff_u8; 16])];
    actors.extend((0..4).map(|_| ActorId::random()));
    for (i, actor) in actors.into_iter().enumerate() {
        let y = create(&mut b, Kind::Account, &[("name", &format!("B{i}"))]);
        let before = state(&b);
        let want = b.get(y).expect("y");
        let x = RecordId::new();
        let foreign = doc::create(
            x,
            &edit(Kind::Account, &[("name", &format!("A{i}"))]),
            Stamp {
                author: &author,
                now: chrono::Utc::now(),
            },
            actor,
        )
        .expect("foreign record");
        let bytes = foreign
            .get_last_local_change()
            .expect("creating change")
            .bytes()
            .to_vec();
        let hash = crm_model::change::verify(&bytes).expect("a change").hash();
        // Refused on its own (quarantined), not merged into y.
        let report = b
            .apply_remote_changes(&[RemoteChange { doc_id: y, bytes }])
            .expect("the batch applies");
        assert_eq!(report.applied, 0, "actor {i}");
        assert_eq!(report.quarantined.len(), 1, "actor {i}");
        let q = &report.quarantined[0];
        assert_eq!(q.doc_id, y);
        assert_eq!(q.hash, Some(hash.to_string()));
        assert_eq!(q.problem, Problem::OtherRecord);
        assert!(q.reason.contains(&x.to_string()), "{}", q.reason);
        assert_unchanged(&b, dir.path(), &before, "change under an existing id");
        assert_eq!(b.get(y).expect("y"), want, "actor {i}: y is untouched");
    }
}

/// Two handles on one replica (the CLI while `crm serve` runs): one stored changes whose
/// creating change was missing; the other, holding a cached copy of the pending document with
/// the same (empty) heads, then received the creating change and applied it to its cached copy
/// only. The changes stored by the first handle were never applied, and the stored heads and
/// projection stayed stale.
#[test]
fn pending_changes_stored_by_another_handle_were_never_applied() {
    let (_src_dir, mut src) = replica("alice", "laptop");
    let account = create(&mut src, Kind::Account, &[("name", "星光")]);
    for (field, value) in [
        ("industry", "retail"),
        ("grade", "vip"),
        ("website", "xingguang.cn"),
    ] {
        src.edit(account, &edit(Kind::Account, &[(field, value)]))
            .expect("edit");
    }
    let changes = changes_of(&src, account);
    let n = changes.len();
    let (dir, mut first) = replica("bob", "phone");
    let mut second = Store::open(dir.path()).expect("second handle");

    // `first` caches the pending document holding only the last change.
    first
        .apply_remote_changes(&changes[n - 1..])
        .expect("last change");
    // `second` stores every other change but the creating one: still pending.
    second
        .apply_remote_changes(&changes[1..n - 1])
        .expect("middle changes");
    // `first` receives the creating change and must apply everything stored.
    first
        .apply_remote_changes(&changes[..1])
        .expect("creating change");
    let want = src.get(account).expect("source");
    let heads = src.all_heads().expect("heads")[&account].clone();
    assert_eq!(first.all_heads().expect("heads")[&account], heads);
    assert_eq!(first.get(account).expect("on first"), want);
    assert_eq!(second.get(account).expect("on second"), want);
    let fresh = Store::open(dir.path()).expect("fresh handle");
    assert_eq!(fresh.all_heads().expect("heads")[&account], heads);
    let listed = fresh
        .list(&ListQuery::new(Kind::Account))
        .expect("list")
        .into_iter()
        .find(|r| r.id == account)
        .expect("listed");
    assert_eq!(listed.json["website"], "xingguang.cn");
}
