//! Basic life cycle of a replica: create, edit, list, search, merge two replicas.

use crm_model::{Edit, Kind};
use crm_store::{ListQuery, Store};

fn account(name: &str) -> Edit {
    let mut e = Edit::new(Kind::Account);
    e.set("name", name).expect("valid");
    e
}

#[test]
fn create_edit_list_search_and_merge() {
    let dir_a = tempfile::tempdir().expect("tempdir");
    let dir_b = tempfile::tempdir().expect("tempdir");
    let mut a = Store::init(dir_a.path(), "alice", "laptop").expect("init a");
    let mut b = Store::init(dir_b.path(), "bob", "phone").expect("init b");
    let acme = a.create(&account("深圳星光贸易有限公司")).expect("create");
    let mut e = Edit::new(Kind::Account);
    e.set("industry", "retail").expect("valid");
    e.tag("vip").expect("valid");
    a.edit(acme.id, &e).expect("edit");
    let rows = a.list(&ListQuery::new(Kind::Account)).expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].json["industry"], "retail");
    assert_eq!(a.search("星光", None, false, 10).expect("search").len(), 1);
    assert_eq!(
        a.search("星光贸易", None, false, 10).expect("search").len(),
        1
    );
    assert_eq!(
        a.search("retail", None, false, 10).expect("search").len(),
        1
    );

    let report = b.merge_from(&a).expect("merge");
    assert!(report.applied >= 3, "{report:?}");
    let again = b.merge_from(&a).expect("merge again");
    assert_eq!(again.applied, 0);
    let on_b = b.get(acme.id).expect("present on b");
    assert_eq!(on_b, a.get(acme.id).expect("present on a"));

    // Concurrent edits of one field show as a conflict on both sides.
    let mut ea = Edit::new(Kind::Account);
    ea.set("grade", "vip").expect("valid");
    a.edit(acme.id, &ea).expect("edit a");
    let mut eb = Edit::new(Kind::Account);
    eb.set("grade", "key").expect("valid");
    b.edit(acme.id, &eb).expect("edit b");
    b.merge_from(&a).expect("merge");
    a.merge_from(&b).expect("merge");
    assert_eq!(a.conflicts(Some(acme.id)).expect("conflicts").len(), 1);
    assert_eq!(b.conflicts(None).expect("conflicts").len(), 1);
    b.resolve(acme.id, "grade", "vip").expect("resolve");
    a.merge_from(&b).expect("merge");
    assert!(a.conflicts(None).expect("conflicts").is_empty());
    let history = a.history(acme.id).expect("history");
    assert!(history.len() >= 4, "{history:?}");
    assert!(history[0].created);
}

#[test]
fn outbox_changes_carry_the_record_scope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
    let mut team = Edit::new(Kind::Team);
    team.set("name", "华南销售部").expect("valid");
    let team = store.create(&team).expect("team").id;
    let mut e = account("ACME");
    e.set("teams", &team.to_string()).expect("valid");
    let acme = store.create(&e).expect("create").id;
    let me = store.identity().user_id.expect("own user record");
    let outbox = store.outbox(100).expect("outbox");
    let change = outbox
        .iter()
        .find(|c| c.doc_id == acme)
        .expect("the account's change");
    assert_eq!(change.kind, "account");
    assert_eq!(change.owner, Some(me));
    assert_eq!(change.teams, vec![team]);
    store.acknowledge(&[change.local_seq]).expect("ack");
    assert!(
        store
            .outbox(100)
            .expect("outbox")
            .iter()
            .all(|c| c.doc_id != acme)
    );
}
