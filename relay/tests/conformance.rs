//! The conformance suite of the storage backends: every case runs on SQLite (a real file)
//! and on PostgreSQL (a fresh database), through the relay's operations. What is
//! acknowledged is committed, positions are contiguous and per workspace, duplicates keep
//! their first position, refused batches leave nothing behind, reads stay in their
//! workspace, tokens are stored as hashes. Snapshots and pages: `snapshots.rs`.

mod common;

use common::{Backend, Doc, TestStore, hash_of, store_with_device};
use crm_relay::store::{AdminError, AuthError, LogExtent, PushError, Row, StoreError};
use crm_relay::{Relay, Role, SqliteStore, Token};
use crm_sync::{Cursor, Envelope, MAX_FRAME_BYTES};

crm_tests::on_every_backend!(
    every_acknowledged_change_is_in_a_reopened_store,
    reads_report_through_its_hash_and_the_head,
    a_read_fits_in_one_frame,
    positions_are_contiguous_under_concurrent_pushes,
    duplicates_keep_their_first_position_within_and_across_batches,
    refused_batches_store_nothing,
    authentication_checks_workspace_token_revocation_and_cursor,
    only_the_token_hash_is_stored,
    admin_input_is_validated,
    the_latest_pushed_scope_of_a_document_is_kept,
    devices_are_listed_per_workspace_and_revoked_since,
    a_connection_records_when_the_device_was_last_seen,
    readers_never_see_a_gap_while_several_processes_push,
    workspaces_are_isolated,
    the_log_and_directory_read_back_as_stored,
    an_export_imported_into_an_empty_store_is_the_same_store,
    the_directory_matrix_scopes_and_wipes_are_stored,
);

/// The workspaces "acme" and "globex", with a device of alice's in the first and of gina's
/// in the second.
fn two_workspaces(
    store: &Relay,
) -> (
    crm_relay::WorkspaceId,
    crm_relay::WorkspaceId,
    crm_relay::DeviceId,
    crm_relay::DeviceId,
) {
    let acme = store.create_workspace("acme").expect("workspace").id;
    let globex = store.create_workspace("globex").expect("workspace").id;
    let device = |ws, user| {
        store
            .add_unbound_device(ws, user)
            .expect("device")
            .device
            .id
    };
    (acme, globex, device(acme, "alice"), device(globex, "gina"))
}

fn store(backend: Backend) -> (TestStore, Relay) {
    let place = TestStore::new(backend);
    let store = place.relay();
    (place, store)
}

fn every_acknowledged_change_is_in_a_reopened_store(b: Backend) {
    let (dir, store, ws, device) = store_with_device(b);
    let relay_id = store.relay_id();
    let mut acked = Vec::new();
    for batch in 0..20 {
        let changes: Vec<Envelope> = (0..10)
            .map(|i| Doc::new().change("name", &format!("{batch}/{i}")))
            .collect();
        let stored = store
            .store_batch(ws, &crm_relay::service::Pusher::admin(device), &changes)
            .expect("stored");
        acked.extend(stored.seqs.iter().copied().zip(changes));
    }
    // What the store acknowledged is on disk: a fresh process sees all of it.
    drop(store);
    let store = dir.relay();
    assert_eq!(store.relay_id(), relay_id, "the relay keeps its identity");
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let log = store.read_raw(ws, after, 64).expect("read");
        if log.rows.is_empty() {
            assert_eq!(log.through, after);
            break;
        }
        after = log.through;
        read.extend(log.rows);
    }
    assert_eq!(read.len(), acked.len());
    for (entry, (seq, change)) in read.iter().zip(&acked) {
        assert_eq!(entry.seq, *seq);
        assert_eq!(entry.bytes, change.bytes);
        assert_eq!(entry.doc_id, change.doc_id);
    }
    assert_eq!(store.workspaces().expect("list")[0].head, 200);
}

fn reads_report_through_its_hash_and_the_head(b: Backend) {
    let (_dir, store) = store(b);
    let ws = store.create_workspace("acme").expect("workspace").id;
    let device = store.add_unbound_device(ws, "a").expect("device").device.id;
    let empty = store.read_raw(ws, 0, 10).expect("read");
    assert_eq!(
        (
            empty.rows.len(),
            empty.through,
            empty.through_hash,
            empty.head
        ),
        (0, 0, [0; 32], 0)
    );
    let mut doc = Doc::new();
    let changes: Vec<Envelope> = (0..5).map(|i| doc.change("n", &i.to_string())).collect();
    assert_eq!(
        store
            .store_batch(ws, &crm_relay::service::Pusher::admin(device), &changes)
            .expect("store")
            .seqs,
        [1, 2, 3, 4, 5]
    );
    let first = store.read_raw(ws, 0, 2).expect("read");
    assert_eq!(first.rows.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
    assert_eq!((first.through, first.head), (2, 5));
    assert_eq!(first.through_hash, hash_of(&changes[1]));
    let rest = store.read_raw(ws, 2, 100).expect("read");
    assert_eq!(rest.rows.len(), 3);
    assert_eq!(rest.through_hash, hash_of(&changes[4]));
    // Nothing after the head: through stays put, with its hash.
    let none = store.read_raw(ws, 5, 100).expect("read");
    assert_eq!((none.rows.len(), none.through), (0, 5));
    assert_eq!(none.through_hash, hash_of(&changes[4]));
}

fn a_read_fits_in_one_frame(b: Backend) {
    let (_dir, store) = store(b);
    let ws = store.create_workspace("acme").expect("workspace").id;
    let device = store.add_unbound_device(ws, "a").expect("device").device.id;
    // Eight changes of about 1.5 MiB each: more than one frame's worth.
    let big = "x".repeat(1_500_000);
    for i in 0..8 {
        let mut doc = Doc::new();
        store
            .store_batch(
                ws,
                &crm_relay::service::Pusher::admin(device),
                &[doc.change("notes", &format!("{i}{big}"))],
            )
            .expect("store");
    }
    let mut after = 0;
    let mut frames = 0;
    while after < 8 {
        let read = store.read_raw(ws, after, 256).expect("read");
        let frame = crm_sync::Message::Changes(crm_sync::Changes {
            entries: read
                .rows
                .iter()
                .map(|r| crm_sync::Entry {
                    seq: r.seq,
                    doc_id: r.doc_id,
                    bytes: r.bytes.clone(),
                })
                .collect(),
            through: read.through,
            through_hash: read.through_hash,
            head: read.head,
        })
        .encode();
        assert!(frame.len() <= MAX_FRAME_BYTES, "{}", frame.len());
        crm_sync::Message::decode(&frame).expect("the device can decode it");
        after = read.through;
        frames += 1;
    }
    assert!(frames >= 2, "{frames}");
}

fn positions_are_contiguous_under_concurrent_pushes(b: Backend) {
    let (_dir, store) = store(b);
    let a = store.create_workspace("acme").expect("workspace").id;
    let b = store.create_workspace("globex").expect("workspace").id;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let ws = if t % 2 == 0 { a } else { b };
            let device = store.add_unbound_device(ws, "u").expect("device").device.id;
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for _ in 0..25 {
                    let changes = vec![Doc::new().change("n", "1"), Doc::new().change("n", "2")];
                    seqs.extend(
                        store
                            .store_batch(ws, &crm_relay::service::Pusher::admin(device), &changes)
                            .expect("store")
                            .seqs,
                    );
                }
                (ws, seqs)
            })
        })
        .collect();
    let mut per_ws: std::collections::HashMap<_, Vec<u64>> = Default::default();
    for t in threads {
        let (ws, seqs) = t.join().expect("thread");
        per_ws.entry(ws).or_default().extend(seqs);
    }
    for (ws, mut seqs) in per_ws {
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=200).collect::<Vec<u64>>(),
            "each workspace counts from 1"
        );
        let log = store.read_raw(ws, 0, 1000).expect("read");
        assert_eq!(log.rows.len(), 200);
        assert_eq!(log.head, 200);
    }
}

fn refused_batches_store_nothing(b: Backend) {
    let (_dir, store) = store(b);
    let (acme, globex, alice, gina) = two_workspaces(&store);
    let mut acme_doc = Doc::new();
    store
        .store_batch(
            acme,
            &crm_relay::service::Pusher::admin(alice),
            &[acme_doc.change("name", "ACME")],
        )
        .expect("store");

    let garbage = Envelope {
        doc_id: [9; 16],
        kind: "account".into(),
        scope: Default::default(),
        bytes: vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0],
    };
    let err = store
        .store_batch(
            globex,
            &crm_relay::service::Pusher::admin(gina),
            &[Doc::new().change("n", "ok"), garbage],
        )
        .expect_err("garbage");
    assert!(
        matches!(err, PushError::InvalidChange { index: 1, .. }),
        "{err:?}"
    );

    let err = store
        .store_batch(
            globex,
            &crm_relay::service::Pusher::admin(gina),
            &[
                Doc::new().change("n", "ok"),
                acme_doc.change("name", "mine now"),
            ],
        )
        .expect_err("another workspace's document");
    assert!(
        matches!(err, PushError::WrongWorkspace { index: 1, .. }),
        "{err:?}"
    );
    assert_eq!(err.to_frame().code, crm_sync::ErrorCode::WRONG_WORKSPACE);

    let mut contact = acme_doc.change("name", "a contact now?");
    contact.kind = "contact".into();
    let err = store
        .store_batch(acme, &crm_relay::service::Pusher::admin(alice), &[contact])
        .expect_err("kind");
    assert!(matches!(err, PushError::KindMismatch { .. }), "{err:?}");

    // A device may only push into its own workspace.
    let err = store
        .store_batch(
            globex,
            &crm_relay::service::Pusher::admin(alice),
            &[Doc::new().change("n", "x")],
        )
        .expect_err("foreign device");
    assert!(matches!(err, PushError::Revoked), "{err:?}");

    assert_eq!(store.read_raw(globex, 0, 100).expect("read").head, 0);
    assert_eq!(store.read_raw(acme, 0, 100).expect("read").rows.len(), 1);
}

fn authentication_checks_workspace_token_revocation_and_cursor(b: Backend) {
    let (_dir, store) = store(b);
    let acme = store.create_workspace("acme").expect("workspace").id;
    let globex = store.create_workspace("globex").expect("workspace").id;
    let added = store.add_unbound_device(acme, "alice").expect("device");
    let token = added.token.expose().to_string();
    let other = store.add_unbound_device(globex, "gina").expect("device");
    let mut doc = Doc::new();
    let change = doc.change("name", "ACME");
    store
        .store_batch(
            acme,
            &crm_relay::service::Pusher::admin(added.device.id),
            std::slice::from_ref(&change),
        )
        .expect("store");

    let auth = store
        .authenticate(&acme.to_string(), &token, None)
        .expect("auth");
    assert_eq!((auth.workspace, auth.device), (acme, added.device.id));
    assert_eq!((auth.user.as_str(), auth.role), ("alice", Role::Admin));
    assert_eq!(
        (auth.authorized.head, auth.authorized.cursor_known),
        (1, false)
    );
    let cursor = |seq, hash| Cursor {
        relay_id: store.relay_id(),
        seq,
        hash,
    };
    let known = |c: Cursor| {
        store
            .authenticate(&acme.to_string(), &token, Some(&c))
            .expect("auth")
            .authorized
            .cursor_known
    };
    assert!(known(cursor(1, hash_of(&change))));
    assert!(!known(cursor(1, [1; 32])));
    assert!(!known(cursor(2, hash_of(&change))));
    assert!(!known(cursor(0, [0; 32])));

    let refused = |ws: &str, token: &str| store.authenticate(ws, token, None).expect_err("refused");
    assert!(matches!(
        refused(&acme.to_string(), ""),
        AuthError::Unauthenticated
    ));
    assert!(matches!(
        refused(&acme.to_string(), other.token.expose()),
        AuthError::OtherWorkspace
    ));
    assert!(matches!(
        refused("acme", &token),
        AuthError::UnknownWorkspace(_)
    ));
    assert!(matches!(
        refused(&uuid::Uuid::now_v7().to_string(), &token),
        AuthError::UnknownWorkspace(_)
    ));
    let revoked = store.revoke_device(added.device.id).expect("revoke");
    assert!(revoked.revoked_at.is_some());
    assert!(matches!(
        refused(&acme.to_string(), &token),
        AuthError::Revoked
    ));
    // Revoking again keeps the first time.
    assert_eq!(
        store.revoke_device(added.device.id).expect("again"),
        revoked
    );
}

fn only_the_token_hash_is_stored(b: Backend) {
    let (dir, store) = store(b);
    let ws = store.create_workspace("acme").expect("workspace").id;
    let added = store.add_unbound_device(ws, "alice").expect("device");
    let token = added.token.expose().to_string();
    assert_eq!(Token::workspace_of(&token), Some(ws));
    drop(store);
    assert!(!dir.holds(token.as_bytes()), "the token is in the database");
    assert!(dir.holds(&Token::hash_of(&token)), "its hash is");
}

fn admin_input_is_validated(b: Backend) {
    let (dir, store) = store(b);
    assert!(matches!(
        store.create_workspace("  "),
        Err(AdminError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.create_workspace(&uuid::Uuid::now_v7().to_string()),
        Err(AdminError::InvalidInput { .. })
    ));
    let ws = store.create_workspace(" 华南销售 ").expect("workspace");
    assert_eq!(ws.name, "华南销售");
    assert!(matches!(
        store.create_workspace("华南销售"),
        Err(AdminError::DuplicateName(_))
    ));
    assert_eq!(store.find_workspace("华南销售").expect("by name").id, ws.id);
    assert_eq!(
        store.find_workspace(&ws.id.to_string()).expect("by id").id,
        ws.id
    );
    assert!(matches!(
        store.find_workspace("nope"),
        Err(AdminError::UnknownWorkspace(_))
    ));
    assert!(matches!(
        store.add_unbound_device(ws.id, ""),
        Err(AdminError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.revoke_device(crm_relay::DeviceId::new()),
        Err(AdminError::UnknownDevice(_))
    ));
    let _ = dir;
}

#[test]
fn a_sqlite_file_of_something_else_is_refused_and_a_missing_one_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A SQLite file of something else is refused and left alone.
    let foreign = tempfile::tempdir().expect("tempdir");
    let conn = rusqlite::Connection::open(foreign.path().join("relay.db")).expect("open");
    conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .expect("create");
    drop(conn);
    assert!(matches!(
        SqliteStore::open(foreign.path()),
        Err(StoreError::Foreign(_))
    ));
    assert!(matches!(
        SqliteStore::open(&dir.path().join("missing")),
        Err(StoreError::Missing(_))
    ));
}

fn the_latest_pushed_scope_of_a_document_is_kept(b: Backend) {
    let (dir, store, ws, device) = store_with_device(b);
    let mut doc = Doc::new();
    let first = doc.scoped(
        "name",
        "ACME",
        crm_sync::Scope {
            owner: Some([1; 16]),
            ..Default::default()
        },
    );
    store
        .store_batch(ws, &crm_relay::service::Pusher::admin(device), &[first])
        .expect("stored");
    // The scope is read from the change, not from what its envelope claims.
    let mut second = doc.scoped(
        "grade",
        "vip",
        crm_sync::Scope {
            owner: Some([2; 16]),
            assignee: None,
            teams: vec![[3; 16], [4; 16]],
        },
    );
    second.scope = crm_sync::Scope {
        owner: Some([7; 16]),
        ..Default::default()
    };
    let doc_id = second.doc_id;
    store
        .store_batch(ws, &crm_relay::service::Pusher::admin(device), &[second])
        .expect("stored");
    let (owner, teams) = dir.scope(doc_id);
    assert_eq!(owner, Some(uuid::Uuid::from_bytes([2; 16]).to_string()));
    assert_eq!(
        teams,
        Some(format!(
            "{},{}",
            uuid::Uuid::from_bytes([3; 16]),
            uuid::Uuid::from_bytes([4; 16])
        ))
    );
}

fn duplicates_keep_their_first_position_within_and_across_batches(b: Backend) {
    let (_dir, store, ws, device) = store_with_device(b);
    let mut doc = Doc::new();
    let a = doc.change("name", "A");
    let c = doc.change("name", "C");
    let first = store
        .store_batch(
            ws,
            &crm_relay::service::Pusher::admin(device),
            &[a.clone(), a.clone(), c.clone()],
        )
        .expect("stored");
    assert_eq!(first.seqs, [1, 1, 2]);
    assert_eq!((first.stored, first.duplicates, first.head), (2, 1, 2));
    let again = store
        .store_batch(
            ws,
            &crm_relay::service::Pusher::admin(device),
            &[c.clone(), a.clone()],
        )
        .expect("stored");
    assert_eq!(again.seqs, [2, 1]);
    assert_eq!((again.stored, again.duplicates, again.head), (0, 2, 2));
    assert_eq!(again.tail, None, "nothing new, nothing to fan out");
    assert_eq!(store.read_raw(ws, 0, 10).expect("read").rows.len(), 2);
}

fn devices_are_listed_per_workspace_and_revoked_since(b: Backend) {
    let (_dir, store) = store(b);
    let acme = store.create_workspace("acme").expect("workspace").id;
    let globex = store.create_workspace("globex").expect("workspace").id;
    let a = store.add_unbound_device(acme, "alice").expect("device");
    let g = store.add_unbound_device(globex, "gina").expect("device");
    let all = store.devices(None).expect("devices");
    assert_eq!(all.len(), 2);
    assert_eq!(all[0], a.device, "every field round-trips");
    assert_eq!(
        store.devices(Some(globex)).expect("devices"),
        std::slice::from_ref(&g.device)
    );
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    assert!(store.revoked_since(before).expect("revoked").is_empty());
    let revoked = store.revoke_device(g.device.id).expect("revoke");
    let since = store.revoked_since(before).expect("revoked");
    assert_eq!(since, [revoked]);
    let later = chrono::Utc::now() + chrono::TimeDelta::seconds(1);
    assert!(store.revoked_since(later).expect("revoked").is_empty());
    let names: Vec<String> = store
        .workspaces()
        .expect("workspaces")
        .into_iter()
        .map(|w| w.name)
        .collect();
    assert_eq!(names, ["acme", "globex"]);
}

fn a_connection_records_when_the_device_was_last_seen(b: Backend) {
    let (_dir, store) = store(b);
    let ws = store.create_workspace("acme").expect("workspace").id;
    let added = store.add_unbound_device(ws, "alice").expect("device");
    assert_eq!(store.devices(None).expect("devices")[0].last_seen_at, None);
    let before = chrono::Utc::now() - chrono::TimeDelta::seconds(1);
    store
        .authenticate(&ws.to_string(), added.token.expose(), None)
        .expect("auth");
    let seen = store.devices(None).expect("devices")[0]
        .last_seen_at
        .expect("seen");
    assert!(seen >= before, "{seen} {before}");
}

/// Several stores over the same data (as several relay processes) push into one workspace
/// while a reader follows the log: every read it makes is contiguous from where it asked,
/// never skipping a position that shows up later.
fn readers_never_see_a_gap_while_several_processes_push(b: Backend) {
    let (place, store) = store(b);
    let ws = store.create_workspace("acme").expect("workspace").id;
    let pushers: Vec<_> = (0..4)
        .map(|_| {
            let relay = place.relay();
            let device = relay.add_unbound_device(ws, "u").expect("device").device.id;
            std::thread::spawn(move || {
                for _ in 0..30 {
                    let changes = vec![Doc::new().change("n", "1"), Doc::new().change("n", "2")];
                    relay
                        .store_batch(ws, &crm_relay::service::Pusher::admin(device), &changes)
                        .expect("store");
                }
            })
        })
        .collect();
    let reader = place.relay();
    let mut after = 0;
    let mut reads = 0;
    while after < 240 {
        let read = reader.read_raw(ws, after, 7).expect("read");
        for (i, e) in read.rows.iter().enumerate() {
            assert_eq!(e.seq, after + 1 + i as u64, "a gap after {after}");
        }
        assert!(read.head >= read.through);
        after = read.through;
        reads += 1;
        assert!(reads < 100_000, "the reader never caught up");
    }
    for p in pushers {
        p.join().expect("pusher");
    }
    assert_eq!(reader.head(ws).expect("head").0, 240);
}

fn workspaces_are_isolated(b: Backend) {
    let (_dir, store) = store(b);
    let (acme, globex, alice, gina) = two_workspaces(&store);
    let shared = Doc::new().change("name", "same bytes");
    store
        .store_batch(
            acme,
            &crm_relay::service::Pusher::admin(alice),
            std::slice::from_ref(&shared),
        )
        .expect("acme");
    // The same change in another workspace is that workspace's own, at its own position.
    let err = store
        .store_batch(
            globex,
            &crm_relay::service::Pusher::admin(gina),
            std::slice::from_ref(&shared),
        )
        .expect_err("the document is acme's");
    assert!(matches!(err, PushError::WrongWorkspace { .. }), "{err:?}");
    store
        .store_batch(
            globex,
            &crm_relay::service::Pusher::admin(gina),
            &[Doc::new().change("name", "G")],
        )
        .expect("globex");
    assert_eq!(
        store.read_raw(acme, 0, 10).expect("read").rows[0].bytes,
        shared.bytes
    );
    let g = store.read_raw(globex, 0, 10).expect("read");
    assert_eq!((g.rows.len(), g.head), (1, 1));
    assert_ne!(g.rows[0].bytes, shared.bytes);
}

#[test]
fn a_postgres_database_of_something_else_is_refused_and_a_missing_relay_reported() {
    let db = common::TestDatabase::create();
    let database = crm_relay::store::Database::Postgres(db.url.clone());
    // Opening without creating, before any relay made its schema there.
    assert!(matches!(
        database.open(false).err(),
        Some(StoreError::Missing(_))
    ));
    let mut client = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    client
        .batch_execute("CREATE TABLE changes (x int)")
        .expect("another application's table");
    assert!(matches!(
        database.open(true).err(),
        Some(StoreError::Foreign(_))
    ));
}

#[test]
fn a_postgres_schema_newer_than_this_build_is_refused() {
    let place = TestStore::new(Backend::Postgres);
    drop(place.open());
    place
        .pg()
        .batch_execute("UPDATE crm_relay_schema SET version = version + 1")
        .expect("a newer schema");
    assert!(matches!(
        place.database.open(true).err(),
        Some(StoreError::Newer { .. })
    ));
}

#[test]
fn an_unreachable_postgres_is_a_connection_error_naming_it_without_its_password() {
    let database = crm_relay::store::Database::Postgres(
        "postgres://relay:s3cret@127.0.0.1:1/crm?connect_timeout=2".into(),
    );
    let Err(err) = database.open(true) else {
        panic!("nothing listens on port 1");
    };
    assert!(matches!(err, StoreError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn several_processes_starting_together_migrate_once() {
    let place = TestStore::new(Backend::Postgres);
    let opened: Vec<_> = (0..4)
        .map(|_| {
            let database = place.database.clone();
            std::thread::spawn(move || database.open(true).expect("open").relay_id())
        })
        .collect();
    let ids: std::collections::HashSet<_> = opened
        .into_iter()
        .map(|t| t.join().expect("open"))
        .collect();
    assert_eq!(ids.len(), 1, "one relay identity");
}

fn the_log_and_directory_read_back_as_stored(b: Backend) {
    let (_dir, store, ws, device) = store_with_device(b);
    let backend = store.store();
    assert_eq!(
        backend.log_extent(ws).expect("extent"),
        Some(LogExtent::default())
    );
    let (mut a, mut z) = (
        Doc::with_actor([1; 16], b"a"),
        Doc::with_actor([9; 16], b"z"),
    );
    let mut first = z.change("name", "Z");
    first.scope.owner = Some([5; 16]);
    let batch = [first, a.change("name", "A"), z.change("city", "C")];
    store
        .store_batch(ws, &crm_relay::service::Pusher::admin(device), &batch)
        .expect("stored");
    assert_eq!(
        backend.log_extent(ws).expect("extent"),
        Some(LogExtent {
            head: 3,
            changes: 3,
            first: Some(1),
            last: Some(3)
        })
    );
    assert_eq!(
        backend
            .log_extent(crm_relay::WorkspaceId::new())
            .expect("extent"),
        None
    );

    let mut rows = Vec::new();
    backend
        .changes(ws, 1, 10, &mut |row| {
            rows.push(row);
            true
        })
        .expect("changes");
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(rows[0].bytes, batch[1].bytes);
    assert_eq!(rows[0].hash, hash_of(&batch[1]));
    assert_eq!((rows[1].doc_id, rows[1].author), ([9; 16], device));
    assert_eq!(
        rows[1].deps,
        hash_of(&batch[0]).to_vec(),
        "the deps as stored"
    );

    let mut docs = Vec::new();
    backend
        .document_rows(ws, None, 10, &mut |row| {
            docs.push(row);
            true
        })
        .expect("documents");
    assert_eq!(docs.len(), 2);
    assert_eq!(docs[0].doc_id, [1; 16], "in id order");
    assert_eq!(
        (docs[1].first_seq, docs[1].last_seq, docs[1].snap_seq),
        (1, 3, 0)
    );
    assert_eq!(docs[1].owner, None, "the latest pushed scope");
    let mut after = Vec::new();
    backend
        .document_rows(ws, Some([1; 16]), 10, &mut |row| {
            after.push(row.doc_id);
            true
        })
        .expect("documents");
    assert_eq!(after, [[9; 16]]);

    let mut log = Vec::new();
    backend
        .document_log(ws, [9; 16], &mut |seq, hash| {
            log.push((seq, hash));
            true
        })
        .expect("log");
    assert_eq!(log, [(1, hash_of(&batch[0])), (3, hash_of(&batch[2]))]);
    assert_eq!(backend.count_documents(ws).expect("count"), 2);
    assert!(backend.size().expect("size") > 0);
}

fn an_export_imported_into_an_empty_store_is_the_same_store(b: Backend) {
    let (_dir, store, ws, device) = store_with_device(b);
    let mut doc = Doc::new();
    let mut first = doc.change("name", "A");
    first.scope.teams = vec![[3; 16]];
    store
        .store_batch(
            ws,
            &crm_relay::service::Pusher::admin(device),
            &[first, Doc::new().change("name", "B")],
        )
        .expect("stored");
    store.compact(10).expect("compacted");
    store
        .store_batch(
            ws,
            &crm_relay::service::Pusher::admin(device),
            &[doc.change("city", "成都")],
        )
        .expect("stored");
    let other = store.add_unbound_device(ws, "bob").expect("device");
    store.revoke_device(other.device.id).expect("revoked");
    store.create_workspace("empty").expect("workspace");
    let export = |relay: &Relay| {
        let mut rows = Vec::new();
        relay
            .store()
            .export(&mut |row| {
                rows.push(row);
                true
            })
            .expect("export");
        rows
    };
    let rows = export(&store);
    let count = |f: fn(&Row) -> bool| rows.iter().filter(|r| f(r)).count();
    assert_eq!(count(|r| matches!(r, Row::Workspace(_))), 2);
    assert_eq!(count(|r| matches!(r, Row::Device(_))), 2);
    assert_eq!(count(|r| matches!(r, Row::Document(_))), 2);
    assert_eq!(count(|r| matches!(r, Row::Change(_))), 3);
    assert_eq!(count(|r| matches!(r, Row::Snapshot(_))), 2);

    let target = TestStore::new(b);
    let copy = Relay::new(
        target
            .database
            .create_with_identity(store.relay_id())
            .expect("an empty store"),
    );
    // In two transactions, cut anywhere: each is a stretch of the export's order.
    let (one, two) = rows.split_at(4);
    copy.store().import(one).expect("import");
    copy.store().import(two).expect("import");
    assert_eq!(export(&copy), rows);
    assert_eq!(copy.relay_id(), store.relay_id());
    assert_eq!(copy.head(ws).expect("head"), store.head(ws).expect("head"));

    // A second import of the same rows fails whole.
    assert!(copy.store().import(&rows[..1]).is_err());
    assert_eq!(export(&copy), rows);
    // A store with a relay in it is not a target.
    assert!(matches!(
        target.database.create_with_identity(store.relay_id()),
        Err(StoreError::NotEmpty(_))
    ));
}

#[test]
fn a_postgres_database_of_the_previous_schema_is_migrated_when_opened() {
    let place = TestStore::new(Backend::Postgres);
    drop(place.open());
    // What schema 1 left: its tables, compressed byte columns, version 1.
    place
        .pg()
        .batch_execute(
            "ALTER TABLE changes ALTER COLUMN bytes SET STORAGE EXTENDED;
             ALTER TABLE snapshots ALTER COLUMN bytes SET STORAGE EXTENDED;
             ALTER TABLE snapshots ALTER COLUMN hashes SET STORAGE EXTENDED;
             ALTER TABLE documents DROP COLUMN scope, DROP COLUMN attrs;
             ALTER TABLE changes DROP COLUMN scope, DROP COLUMN prev_scope;
             ALTER TABLE workspaces DROP COLUMN matrix, DROP COLUMN access_version;
             ALTER TABLE devices DROP COLUMN user_id, DROP COLUMN wiped_at;
             ALTER TABLE documents DROP COLUMN shape;
             DROP INDEX documents_directory;
             UPDATE crm_relay_schema SET version = 1",
        )
        .expect("a schema-1 database");
    let store = place.open();
    assert_eq!(store.schema_version().expect("version"), 4);
    let storage: Vec<String> = place
        .pg()
        .query(
            "SELECT attrelid::regclass::text || '.' || attname || '=' || attstorage::text
             FROM pg_attribute
             WHERE attrelid IN ('changes'::regclass, 'snapshots'::regclass)
               AND attname IN ('bytes', 'hashes')
             ORDER BY 1",
            &[],
        )
        .expect("storage")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        storage,
        ["changes.bytes=e", "snapshots.bytes=e", "snapshots.hashes=e"]
    );
}

/// The synchronous PostgreSQL client closes a connection on a runtime of its own; a store
/// dropped inside an async context (by a task, at the end of `block_on`) aborted the process.
#[test]
fn a_postgres_store_dropped_in_an_async_context_closes_its_connections_cleanly() {
    let place = TestStore::new(Backend::Postgres);
    let store = place.open();
    // A pooled connection and the compaction lease's connection are open.
    store.ping().expect("ping");
    assert!(store.compaction_lease().expect("lease"));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async move { drop(store) });
}

/// Access control's storage: user and team records projected into the directory (and the
/// access version bumped with them), the role matrix, each change's scope and the scope it
/// moved its record from, documents' latest scope, wiped devices.
fn the_directory_matrix_scopes_and_wipes_are_stored(backend: Backend) {
    let (_place, store) = store(backend);
    let ws = store.create_workspace("acme").expect("workspace").id;
    let v0 = store.access_versions(&[ws]).expect("versions")[0].1;
    let south = store.add_team(ws, "South", None).expect("team");
    let rui = store
        .add_user(
            ws,
            "rui",
            Some("rui@example.com"),
            Role::SalesRep,
            &["South".into()],
        )
        .expect("user");
    assert_eq!(rui.teams, vec![south.id]);
    assert_eq!(rui.email.as_deref(), Some("rui@example.com"));
    let v1 = store.access_versions(&[ws]).expect("versions")[0].1;
    assert!(v1 > v0, "the directory moved the access version");
    let edited = store
        .edit_user(
            ws,
            "rui",
            &crm_relay::service::UserEdit {
                role: Some(Role::SalesManager),
                active: Some(false),
                ..Default::default()
            },
        )
        .expect("edit");
    assert_eq!((edited.role, edited.active), (Role::SalesManager, false));
    let team = store
        .edit_team(
            ws,
            "South",
            &crm_relay::service::TeamEdit {
                manager: Some("rui".into()),
                ..Default::default()
            },
        )
        .expect("team");
    assert_eq!(team.manager, Some(rui.id));
    assert!(matches!(
        store.add_user(ws, "RUI", None, Role::SalesRep, &[]),
        Err(AdminError::DuplicateUser(_))
    ));
    assert!(matches!(
        store.add_user(ws, "zed", None, Role::SalesRep, &["Nowhere".into()]),
        Err(AdminError::UnknownTeam(_))
    ));
    let state = store.access_state(ws).expect("state");
    assert_eq!(state.directory.users.len(), 1);
    assert_eq!(state.directory.teams.len(), 1);

    // The matrix: a cell changed, kept, and the version moved; protected cells refused.
    let before = store.access_versions(&[ws]).expect("versions")[0].1;
    store
        .set_level(
            ws,
            Role::SalesRep,
            crm_model::Kind::Ticket,
            crm_model::Action::Read,
            crm_model::Level::All,
        )
        .expect("set");
    assert!(store.access_versions(&[ws]).expect("versions")[0].1 > before);
    assert_eq!(
        store.access_state(ws).expect("state").matrix.level(
            Role::SalesRep,
            crm_model::Kind::Ticket,
            crm_model::Action::Read
        ),
        crm_model::Level::All
    );
    assert!(
        store
            .set_level(
                ws,
                Role::Admin,
                crm_model::Kind::Ticket,
                crm_model::Action::Read,
                crm_model::Level::None
            )
            .is_err()
    );

    // Scopes: a change's scope, and the scope it moved its record from.
    let device = store
        .add_unbound_device(ws, "alice")
        .expect("device")
        .device
        .id;
    let owner = |o: u8| crm_sync::Scope {
        owner: Some([o; 16]),
        assignee: None,
        teams: vec![[9; 16]],
    };
    let mut doc = Doc::new();
    let first = doc.scoped("name", "ACME", owner(1));
    let same = doc.scoped("industry", "retail", owner(1));
    let moved = doc.scoped("grade", "vip", owner(2));
    store
        .store_batch(
            ws,
            &crm_relay::service::Pusher::admin(device),
            &[first, same, moved],
        )
        .expect("store");
    let rows = store.read_raw(ws, 0, 100).expect("read").rows;
    let mine: Vec<_> = rows.iter().filter(|r| r.doc_id == doc.id).collect();
    assert_eq!(mine.len(), 3);
    let text = |o: u8| {
        crm_relay::store::encode_scope(&crm_model::Scope {
            owner: Some(crm_model::RecordId::from_uuid(uuid::Uuid::from_bytes(
                [o; 16],
            ))),
            assignee: None,
            teams: vec![crm_model::RecordId::from_uuid(uuid::Uuid::from_bytes(
                [9; 16],
            ))],
        })
    };
    assert_eq!(mine[0].kind, "account");
    assert_eq!(
        (mine[0].scope.clone(), mine[0].prev_scope.clone()),
        (text(1), None)
    );
    assert_eq!(
        (mine[1].scope.clone(), mine[1].prev_scope.clone()),
        (text(1), None)
    );
    assert_eq!(
        (mine[2].scope.clone(), mine[2].prev_scope.clone()),
        (text(2), text(1))
    );
    assert_eq!(
        store.store().document_scope(ws, doc.id).expect("scope"),
        Some(("account".to_string(), text(2)))
    );

    // A wiped device is revoked and marked wiped, once.
    let wiped = store.wipe_device(device).expect("wipe");
    assert!(wiped.revoked_at.is_some() && wiped.wiped_at.is_some());
    let again = store.wipe_device(device).expect("wipe");
    assert_eq!(again.wiped_at, wiped.wiped_at);
}
