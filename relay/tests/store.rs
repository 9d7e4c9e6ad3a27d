//! The storage layer on real SQLite files: what is acknowledged is committed, positions are
//! contiguous and per workspace, refused batches leave nothing behind.

mod common;

use std::sync::Arc;

use common::{Doc, hash_of, store_with_device};
use crm_relay::store::{AdminError, AuthError, PushError, RelayStore, StoreError};
use crm_relay::{Role, SqliteStore, Token};
use crm_sync::{Cursor, Envelope, MAX_FRAME_BYTES};

fn store() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open_or_create(dir.path()).expect("store");
    (dir, store)
}

#[test]
fn every_acknowledged_change_is_in_a_reopened_store() {
    let (dir, store, ws, device) = store_with_device();
    let relay_id = store.relay_id();
    let mut acked = Vec::new();
    for batch in 0..20 {
        let changes: Vec<Envelope> = (0..10)
            .map(|i| Doc::new().change("name", &format!("{batch}/{i}")))
            .collect();
        let stored = store.store_batch(ws, device, &changes).expect("stored");
        acked.extend(stored.seqs.iter().copied().zip(changes));
    }
    // What the store acknowledged is on disk: a fresh process sees all of it.
    drop(store);
    let store = SqliteStore::open(dir.path()).expect("reopen");
    assert_eq!(store.relay_id(), relay_id, "the relay keeps its identity");
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let log = store.read(ws, after, 64).expect("read");
        if log.entries.is_empty() {
            assert_eq!(log.through, after);
            break;
        }
        after = log.through;
        read.extend(log.entries);
    }
    assert_eq!(read.len(), acked.len());
    for (entry, (seq, change)) in read.iter().zip(&acked) {
        assert_eq!(entry.seq, *seq);
        assert_eq!(entry.bytes, change.bytes);
        assert_eq!(entry.doc_id, change.doc_id);
    }
    assert_eq!(store.workspaces().expect("list")[0].head, 200);
}

#[test]
fn reads_report_through_its_hash_and_the_head() {
    let (_dir, store) = store();
    let ws = store.create_workspace("acme").expect("workspace").id;
    let device = store
        .add_device(ws, "a", Role::SalesRep)
        .expect("device")
        .device
        .id;
    let empty = store.read(ws, 0, 10).expect("read");
    assert_eq!(
        (
            empty.entries.len(),
            empty.through,
            empty.through_hash,
            empty.head
        ),
        (0, 0, [0; 32], 0)
    );
    let mut doc = Doc::new();
    let changes: Vec<Envelope> = (0..5).map(|i| doc.change("n", &i.to_string())).collect();
    assert_eq!(
        store.store_batch(ws, device, &changes).expect("store").seqs,
        [1, 2, 3, 4, 5]
    );
    let first = store.read(ws, 0, 2).expect("read");
    assert_eq!(
        first.entries.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [1, 2]
    );
    assert_eq!((first.through, first.head), (2, 5));
    assert_eq!(first.through_hash, hash_of(&changes[1]));
    let rest = store.read(ws, 2, 100).expect("read");
    assert_eq!(rest.entries.len(), 3);
    assert_eq!(rest.through_hash, hash_of(&changes[4]));
    // Nothing after the head: through stays put, with its hash.
    let none = store.read(ws, 5, 100).expect("read");
    assert_eq!((none.entries.len(), none.through), (0, 5));
    assert_eq!(none.through_hash, hash_of(&changes[4]));
}

#[test]
fn a_read_fits_in_one_frame() {
    let (_dir, store) = store();
    let ws = store.create_workspace("acme").expect("workspace").id;
    let device = store
        .add_device(ws, "a", Role::SalesRep)
        .expect("device")
        .device
        .id;
    // Eight changes of about 1.5 MiB each: more than one frame's worth.
    let big = "x".repeat(1_500_000);
    for i in 0..8 {
        let mut doc = Doc::new();
        store
            .store_batch(ws, device, &[doc.change("notes", &format!("{i}{big}"))])
            .expect("store");
    }
    let mut after = 0;
    let mut frames = 0;
    while after < 8 {
        let read = store.read(ws, after, 256).expect("read");
        let frame = crm_sync::Message::Changes(crm_sync::Changes {
            entries: read.entries,
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

#[test]
fn positions_are_contiguous_under_concurrent_pushes() {
    let (_dir, store) = store();
    let store = Arc::new(store);
    let a = store.create_workspace("acme").expect("workspace").id;
    let b = store.create_workspace("globex").expect("workspace").id;
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            let ws = if t % 2 == 0 { a } else { b };
            let device = store
                .add_device(ws, "u", Role::SalesRep)
                .expect("device")
                .device
                .id;
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for _ in 0..25 {
                    let changes = vec![Doc::new().change("n", "1"), Doc::new().change("n", "2")];
                    seqs.extend(store.store_batch(ws, device, &changes).expect("store").seqs);
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
        let log = store.read(ws, 0, 1000).expect("read");
        assert_eq!(log.entries.len(), 200);
        assert_eq!(log.head, 200);
    }
}

#[test]
fn refused_batches_store_nothing() {
    let (_dir, store) = store();
    let acme = store.create_workspace("acme").expect("workspace").id;
    let globex = store.create_workspace("globex").expect("workspace").id;
    let alice = store
        .add_device(acme, "alice", Role::SalesRep)
        .expect("device")
        .device
        .id;
    let gina = store
        .add_device(globex, "gina", Role::SalesRep)
        .expect("device")
        .device
        .id;
    let mut acme_doc = Doc::new();
    store
        .store_batch(acme, alice, &[acme_doc.change("name", "ACME")])
        .expect("store");

    let garbage = Envelope {
        doc_id: [9; 16],
        kind: "account".into(),
        scope: Default::default(),
        bytes: vec![0x85, 0x6f, 0x4a, 0x83, 0, 0, 0, 0],
    };
    let err = store
        .store_batch(globex, gina, &[Doc::new().change("n", "ok"), garbage])
        .expect_err("garbage");
    assert!(
        matches!(err, PushError::InvalidChange { index: 1, .. }),
        "{err:?}"
    );

    let err = store
        .store_batch(
            globex,
            gina,
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
        .store_batch(acme, alice, &[contact])
        .expect_err("kind");
    assert!(matches!(err, PushError::KindMismatch { .. }), "{err:?}");

    // A device may only push into its own workspace.
    let err = store
        .store_batch(globex, alice, &[Doc::new().change("n", "x")])
        .expect_err("foreign device");
    assert!(matches!(err, PushError::Revoked), "{err:?}");

    assert_eq!(store.read(globex, 0, 100).expect("read").head, 0);
    assert_eq!(store.read(acme, 0, 100).expect("read").entries.len(), 1);
}

#[test]
fn authentication_checks_workspace_token_revocation_and_cursor() {
    let (_dir, store) = store();
    let acme = store.create_workspace("acme").expect("workspace").id;
    let globex = store.create_workspace("globex").expect("workspace").id;
    let added = store
        .add_device(acme, "alice", Role::SalesManager)
        .expect("device");
    let token = added.token.expose().to_string();
    let other = store
        .add_device(globex, "gina", Role::SalesRep)
        .expect("device");
    let mut doc = Doc::new();
    let change = doc.change("name", "ACME");
    store
        .store_batch(acme, added.device.id, std::slice::from_ref(&change))
        .expect("store");

    let auth = store
        .authenticate(&acme.to_string(), &token, None)
        .expect("auth");
    assert_eq!((auth.workspace, auth.device), (acme, added.device.id));
    assert_eq!(
        (auth.user.as_str(), auth.role),
        ("alice", Role::SalesManager)
    );
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

#[test]
fn only_the_token_hash_is_stored() {
    let (dir, store) = store();
    let ws = store.create_workspace("acme").expect("workspace").id;
    let added = store
        .add_device(ws, "alice", Role::SalesRep)
        .expect("device");
    let token = added.token.expose().to_string();
    assert_eq!(Token::workspace_of(&token), Some(ws));
    drop(store);
    let db = std::fs::read(dir.path().join(crm_relay::store::FILE_NAME)).expect("db");
    let wal = std::fs::read(dir.path().join("relay.db-wal")).unwrap_or_default();
    for file in [&db, &wal] {
        assert!(
            !contains(file, token.as_bytes()),
            "the token is in the database"
        );
    }
    let hash = Token::hash_of(&token);
    assert!(contains(&db, &hash) || contains(&wal, &hash), "its hash is");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn admin_input_is_validated() {
    let (dir, store) = store();
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
        store.add_device(ws.id, "", Role::SalesRep),
        Err(AdminError::InvalidInput { .. })
    ));
    assert!(matches!(
        store.revoke_device(crm_relay::DeviceId::new()),
        Err(AdminError::UnknownDevice(_))
    ));
    drop(store);
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

#[test]
fn the_latest_pushed_scope_of_a_document_is_kept() {
    let (dir, store, ws, device) = store_with_device();
    let mut doc = Doc::new();
    let mut first = doc.change("name", "ACME");
    first.scope.owner = Some([1; 16]);
    store.store_batch(ws, device, &[first]).expect("stored");
    let mut second = doc.change("grade", "vip");
    second.scope.owner = Some([2; 16]);
    second.scope.teams = vec![[3; 16], [4; 16]];
    store.store_batch(ws, device, &[second]).expect("stored");
    drop(store);
    let conn = rusqlite::Connection::open(dir.path().join("relay.db")).expect("open");
    let (owner, teams): (Option<String>, Option<String>) = conn
        .query_row("SELECT owner, teams FROM documents", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .expect("one document");
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
