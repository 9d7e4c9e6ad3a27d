//! Bad input of every kind is refused with a typed error and leaves the replica exactly as it
//! was: same heads, same projections, same change log and outbox, and the file still opens.

mod common;

use std::path::Path;

use common::{Rng, assert_unchanged, create, edit, replica, state};
use crm_model::{DocError, Edit, FieldValue, Kind, RecordId, ValidationError};
use crm_store::{REPLICA_FILE, Store, StoreError};

/// A replica with an account, a contact at it and an opportunity on it.
struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    account: RecordId,
    contact: RecordId,
    deal: RecordId,
}

fn fixture() -> Fixture {
    let (dir, mut store) = replica("alice", "laptop");
    let account = create(&mut store, Kind::Account, &[("name", "ACME 深圳")]);
    let contact = create(
        &mut store,
        Kind::Contact,
        &[("last_name", "李"), ("account", &account.to_string())],
    );
    let deal = create(
        &mut store,
        Kind::Opportunity,
        &[
            ("name", "ACME renewal"),
            ("account", &account.to_string()),
            ("probability", "40"),
        ],
    );
    Fixture {
        dir,
        store,
        account,
        contact,
        deal,
    }
}

#[test]
fn values_that_break_the_schema_are_refused_while_the_edit_is_built() {
    let mut e = Edit::new(Kind::Account);
    assert!(matches!(
        e.set("colour", "red"),
        Err(ValidationError::UnknownField { kind: Kind::Account, ref field, .. }) if field == "colour"
    ));
    assert!(matches!(
        e.set("grade", "platinum"),
        Err(ValidationError::InvalidValue { ref field, .. }) if field == "grade"
    ));
    let mut c = Edit::new(Kind::Contact);
    assert!(matches!(
        c.set("emails", "li@example.com, not-an-email"),
        Err(ValidationError::InvalidValue { ref field, .. }) if field == "emails"
    ));
    let mut o = Edit::new(Kind::Opportunity);
    for bad in ["101", "-1", "forty", "4.5", ""] {
        assert!(
            matches!(
                o.set("probability", bad),
                Err(ValidationError::InvalidValue { ref field, .. }) if field == "probability"
            ),
            "probability={bad:?} must be refused"
        );
    }
    assert!(matches!(
        o.unset("name"),
        Err(ValidationError::Required { .. })
    ));
    assert!(e.is_empty() && c.is_empty() && o.is_empty());

    // What is left of those edits (nothing) changes nothing in a replica.
    let mut f = fixture();
    let before = state(&f.store);
    f.store.edit(f.account, &e).expect("empty edit");
    f.store.edit(f.contact, &c).expect("empty edit");
    f.store.edit(f.deal, &o).expect("empty edit");
    assert_unchanged(&f.store, f.dir.path(), &before, "refused values");
}

#[test]
fn reference_to_a_missing_record_is_refused() {
    let mut f = fixture();
    let before = state(&f.store);
    let ghost = RecordId::new();
    let e = edit(Kind::Contact, &[("account", &ghost.to_string())]);
    match f.store.edit(f.contact, &e) {
        Err(StoreError::MissingReference { field, id }) => {
            assert_eq!(field, "account");
            assert_eq!(id, ghost);
        }
        other => panic!("expected MissingReference, got {other:?}"),
    }
    assert_unchanged(&f.store, f.dir.path(), &before, "missing reference on edit");

    // In a set of references, one missing id spoils the whole edit.
    let e = edit(
        Kind::Contact,
        &[(
            "other_accounts",
            &format!("{}, {}", f.account, RecordId::new()),
        )],
    );
    assert!(matches!(
        f.store.edit(f.contact, &e),
        Err(StoreError::MissingReference { ref field, .. }) if field == "other_accounts"
    ));
    assert_unchanged(
        &f.store,
        f.dir.path(),
        &before,
        "missing reference in a set",
    );

    // On create, nothing of the new record is stored.
    let e = edit(
        Kind::Opportunity,
        &[("name", "ghost deal"), ("account", &ghost.to_string())],
    );
    assert!(matches!(
        f.store.create(&e),
        Err(StoreError::MissingReference { .. })
    ));
    assert_unchanged(
        &f.store,
        f.dir.path(),
        &before,
        "missing reference on create",
    );
}

#[test]
fn reference_to_a_record_of_the_wrong_kind_is_refused() {
    let mut f = fixture();
    let before = state(&f.store);
    let e = edit(Kind::Contact, &[("account", &f.deal.to_string())]);
    match f.store.edit(f.contact, &e) {
        Err(StoreError::WrongReference {
            field,
            id,
            expected,
            found,
        }) => {
            assert_eq!(field, "account");
            assert_eq!(id, f.deal);
            assert_eq!(expected, "account");
            assert_eq!(found, Kind::Opportunity);
        }
        other => panic!("expected WrongReference, got {other:?}"),
    }
    // The owner of a record must be a user, not an account.
    let e = edit(Kind::Opportunity, &[("owner", &f.account.to_string())]);
    assert!(matches!(
        f.store.edit(f.deal, &e),
        Err(StoreError::WrongReference {
            found: Kind::Account,
            ..
        })
    ));
    let e = edit(
        Kind::Contact,
        &[("last_name", "王"), ("account", &f.contact.to_string())],
    );
    assert!(matches!(
        f.store.create(&e),
        Err(StoreError::WrongReference {
            found: Kind::Contact,
            ..
        })
    ));
    assert_unchanged(&f.store, f.dir.path(), &before, "wrong reference");
}

#[test]
fn unknown_ids_are_not_found() {
    let mut f = fixture();
    let before = state(&f.store);
    let ghost = RecordId::new();
    let e = edit(Kind::Account, &[("industry", "retail")]);
    assert!(matches!(f.store.edit(ghost, &e), Err(StoreError::NotFound(id)) if id == ghost));
    assert!(matches!(f.store.get(ghost), Err(StoreError::NotFound(_))));
    assert!(matches!(
        f.store.history(ghost),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        f.store.set_archived(ghost, true),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        f.store.resolve(ghost, "grade", "vip"),
        Err(StoreError::NotFound(_))
    ));
    assert_unchanged(&f.store, f.dir.path(), &before, "unknown id");
}

#[test]
fn an_edit_of_another_kind_is_refused() {
    let mut f = fixture();
    let before = state(&f.store);
    let e = edit(Kind::Contact, &[("title", "CEO")]);
    match f.store.edit(f.account, &e) {
        Err(StoreError::WrongKind {
            id,
            expected,
            found,
        }) => {
            assert_eq!(id, f.account);
            assert_eq!(expected, Kind::Contact);
            assert_eq!(found, Kind::Account);
        }
        other => panic!("expected WrongKind, got {other:?}"),
    }
    assert!(matches!(
        f.store.get_kind(Kind::Contact, f.account),
        Err(StoreError::WrongKind { .. })
    ));
    assert_unchanged(&f.store, f.dir.path(), &before, "edit of another kind");
}

#[test]
fn resolving_a_field_without_conflict_is_refused() {
    let mut f = fixture();
    let before = state(&f.store);
    match f.store.resolve(f.account, "grade", "vip") {
        Err(StoreError::NoConflict { id, field }) => {
            assert_eq!(id, f.account);
            assert_eq!(field, "grade");
        }
        other => panic!("expected NoConflict, got {other:?}"),
    }
    assert!(matches!(
        f.store.resolve(f.account, "colour", "red"),
        Err(StoreError::NoConflict { .. })
    ));
    assert_unchanged(&f.store, f.dir.path(), &before, "resolve without conflict");
}

#[test]
fn an_edit_that_changes_nothing_stores_nothing() {
    let mut f = fixture();
    let before = state(&f.store);
    let e = edit(Kind::Account, &[("name", "ACME 深圳")]);
    let record = f.store.edit(f.account, &e).expect("no-op edit");
    assert_eq!(
        record.get("name"),
        Some(&FieldValue::Text("ACME 深圳".into()))
    );
    let mut untag = Edit::new(Kind::Account);
    untag.untag("never-there").expect("valid tag");
    f.store.edit(f.account, &untag).expect("no-op untag");
    f.store
        .set_archived(f.account, false)
        .expect("no-op restore");
    assert_unchanged(&f.store, f.dir.path(), &before, "no-op edits");
}

#[test]
fn a_failed_create_does_not_use_up_a_ticket_number() {
    let mut f = fixture();
    let bad = edit(
        Kind::Ticket,
        &[
            ("subject", "printer"),
            ("contact", &RecordId::new().to_string()),
        ],
    );
    assert!(matches!(
        f.store.create(&bad),
        Err(StoreError::MissingReference { .. })
    ));
    let good = edit(Kind::Ticket, &[("subject", "printer")]);
    let ticket = f.store.create(&good).expect("create ticket");
    assert_eq!(
        ticket.get("number"),
        Some(&FieldValue::Text("T-laptop-1".into()))
    );
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read file")
}

#[test]
fn open_refuses_a_directory_without_a_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        Store::open(dir.path()),
        Err(StoreError::NotAReplica { .. })
    ));
    assert!(matches!(
        Store::open(&dir.path().join("missing")),
        Err(StoreError::NotAReplica { .. })
    ));
    assert!(
        std::fs::read_dir(dir.path())
            .expect("read dir")
            .next()
            .is_none(),
        "open must not create anything"
    );
}

#[test]
fn open_refuses_random_bytes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(REPLICA_FILE);
    let mut rng = Rng::new(7);
    let bytes: Vec<u8> = (0..8192).map(|_| rng.next_u64().to_le_bytes()[0]).collect();
    std::fs::write(&path, &bytes).expect("write");
    let err = Store::open(dir.path()).expect_err("random bytes are no replica");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert_eq!(file_bytes(&path), bytes, "open must not write to the file");
}

#[test]
fn open_refuses_an_empty_file_with_a_clear_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(REPLICA_FILE);
    std::fs::write(&path, b"").expect("empty file");
    let err = Store::open(dir.path()).expect_err("an empty file is no replica");
    assert!(matches!(err, StoreError::EmptyFile { .. }), "{err:?}");
    assert!(err.to_string().contains("crm init"), "{err}");
    assert_eq!(
        file_bytes(&path),
        Vec::<u8>::new(),
        "open must not write to the file"
    );
}

#[test]
fn open_refuses_a_foreign_sqlite_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(REPLICA_FILE);
    {
        let conn = rusqlite::Connection::open(&path).expect("create foreign db");
        conn.execute_batch(
            "CREATE TABLE documents (id TEXT); INSERT INTO documents VALUES ('not ours');",
        )
        .expect("write foreign db");
    }
    let bytes = file_bytes(&path);
    let err = Store::open(dir.path()).expect_err("a foreign database is no replica");
    assert!(matches!(err, StoreError::Foreign { .. }), "{err:?}");
    assert_eq!(file_bytes(&path), bytes, "open must not write to the file");
    assert!(matches!(
        Store::init(dir.path(), "alice", "laptop"),
        Err(StoreError::AlreadyInitialized { .. })
    ));
    assert_eq!(file_bytes(&path), bytes, "init must not write to the file");
}

#[test]
fn open_refuses_a_database_with_our_id_but_without_our_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(REPLICA_FILE);
    {
        let conn = rusqlite::Connection::open(&path).expect("create db");
        conn.pragma_update(None, "application_id", 0x4352_4D31_i64)
            .expect("set application id");
        conn.execute_batch("CREATE TABLE other (x);")
            .expect("write db");
    }
    let err = Store::open(dir.path()).expect_err("no documents table");
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
}

#[test]
fn open_refuses_a_replica_of_a_newer_format() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "ACME")]);
    drop(store);
    let format: i64 = {
        let conn = rusqlite::Connection::open(dir.path().join(REPLICA_FILE)).expect("open db");
        let format = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .expect("user_version");
        conn.pragma_update(None, "user_version", 99_i64)
            .expect("set user_version");
        format
    };
    match Store::open(dir.path()) {
        Err(StoreError::NewerVersion { found, supported }) => {
            assert_eq!(found, 99);
            assert!(supported < 99);
        }
        other => panic!("expected NewerVersion, got {other:?}"),
    }
    // Back at the supported version, the data is all there.
    {
        let conn = rusqlite::Connection::open(dir.path().join(REPLICA_FILE)).expect("open db");
        conn.pragma_update(None, "user_version", format)
            .expect("set user_version");
    }
    let mut store = Store::open(dir.path()).expect("open");
    assert_eq!(
        store.get(id).expect("record").get("name"),
        Some(&FieldValue::Text("ACME".into()))
    );
}

#[test]
fn init_refuses_an_existing_replica_and_leaves_it_alone() {
    let mut f = fixture();
    let before = state(&f.store);
    let identity = f.store.identity().clone();
    match Store::init(f.dir.path(), "mallory", "other") {
        Err(StoreError::AlreadyInitialized { dir }) => assert_eq!(dir, f.dir.path()),
        other => panic!("expected AlreadyInitialized, got {other:?}"),
    }
    assert_unchanged(&f.store, f.dir.path(), &before, "init over a replica");
    let reopened = Store::open(f.dir.path()).expect("open");
    assert_eq!(reopened.identity(), &identity);
    // The open store still works.
    f.store
        .edit(f.account, &edit(Kind::Account, &[("industry", "retail")]))
        .expect("edit after refused init");
}

#[test]
fn init_refuses_a_blank_user_without_creating_a_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (user, device) in [("", "laptop"), ("alice", "  "), ("a\nb", "laptop")] {
        let err = Store::init(dir.path(), user, device).expect_err("invalid identity");
        assert!(
            matches!(
                err,
                StoreError::Invalid(ValidationError::InvalidValue { .. })
            ),
            "{err:?}"
        );
        assert!(!dir.path().join(REPLICA_FILE).exists());
    }
}

#[test]
fn document_errors_of_invalid_input_count_as_invalid_input() {
    // An immutable field written twice fails inside the document mapping; the error is still
    // the caller's, and nothing is stored.
    let (dir, mut store) = replica("alice", "laptop");
    let ticket = create(
        &mut store,
        Kind::Ticket,
        &[("subject", "printer"), ("channel", "phone")],
    );
    let before = state(&store);
    let err = store
        .edit(ticket, &edit(Kind::Ticket, &[("channel", "email")]))
        .expect_err("channel is immutable");
    assert!(
        matches!(
            &err,
            StoreError::Document { source, .. }
                if matches!(**source, DocError::Invalid(ValidationError::Immutable { .. }))
        ),
        "{err:?}"
    );
    assert!(err.is_invalid_input());
    assert_unchanged(&store, dir.path(), &before, "immutable field");
    // The cached document was not left with the refused change in it.
    let ok = store
        .edit(ticket, &edit(Kind::Ticket, &[("priority", "high")]))
        .expect("a valid edit after a refused one");
    assert_eq!(ok.get("channel"), Some(&FieldValue::Text("phone".into())));
}
