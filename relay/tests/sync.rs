//! The relay over real WebSocket connections on 127.0.0.1, with a real SQLite store.

mod common;

use std::time::Duration;

use common::{Backend, Client, Doc, Relay, hash_of, hello, http_get};
use crm_relay::Config;
use crm_sync::{Cursor, Envelope, ErrorCode, Hello, Message, PROTOCOL_VERSION, Push, Resume};
use tokio_tungstenite::tungstenite::Message as WsMessage;

crate::on_every_backend_async!(
    a_change_pushed_under_another_records_id_is_refused_and_sync_goes_on,
    a_change_with_a_broken_checksum_is_refused,
    missing_invalid_and_revoked_tokens_are_refused,
    another_workspaces_document_is_refused,
    malformed_frames_are_refused_and_others_keep_going,
    a_frame_over_the_size_limit_is_cut_off_and_others_keep_going,
    duplicates_are_acknowledged_with_their_first_position_and_stored_once,
    a_batch_with_one_invalid_change_is_refused_whole,
);

#[tokio::test]
async fn pushed_changes_are_pulled_by_a_second_device() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let mut doc = Doc::new();
    let changes = vec![doc.change("name", "ACME"), doc.change("industry", "retail")];

    let (mut a, welcome) = Client::join(&relay, ws, &alice, None).await;
    assert_eq!(welcome.protocol, PROTOCOL_VERSION);
    assert_eq!(welcome.relay_id, relay.store.relay_id());
    assert_eq!((welcome.head, welcome.resume), (0, Resume::FromStart));
    let ack = a.push(1, changes.clone()).await;
    assert_eq!(ack.seqs, vec![1, 2]);

    let (mut b, welcome) = Client::join(&relay, ws, &bob, None).await;
    assert_eq!(welcome.head, 2);
    let (entries, through, through_hash) = b.pull_until(2).await;
    assert_eq!(through, 2);
    assert_eq!(through_hash, hash_of(&changes[1]));
    assert_eq!(entries.len(), 2);
    for (entry, change) in entries.iter().zip(&changes) {
        assert_eq!(entry.doc_id, doc.id);
        assert_eq!(entry.bytes, change.bytes);
    }
    assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);

    // Bob resumes from his cursor later: nothing is sent again, only what is new.
    drop(b);
    let more = doc.change("website", "acme.cn");
    a.push(2, vec![more.clone()]).await;
    let cursor = Cursor {
        relay_id: relay.store.relay_id(),
        seq: through,
        hash: through_hash,
    };
    let (mut b, welcome) = Client::join(&relay, ws, &bob, Some(cursor)).await;
    assert_eq!((welcome.head, welcome.resume), (3, Resume::FromCursor));
    let (entries, through, _) = b.pull_until(3).await;
    assert_eq!(through, 3);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].bytes, more.bytes);
}

#[tokio::test]
async fn a_cursor_the_relay_does_not_know_starts_over() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let mut doc = Doc::new();
    let (mut a, _) = Client::join(&relay, ws, &token, None).await;
    a.push(1, vec![doc.change("name", "ACME")]).await;
    drop(a);
    // Position 1 with another hash: this relay's log was restored or replaced.
    let cursor = Cursor {
        relay_id: relay.store.relay_id(),
        seq: 1,
        hash: [7; 32],
    };
    let (mut a, welcome) = Client::join(&relay, ws, &token, Some(cursor)).await;
    assert_eq!(welcome.resume, Resume::FromStart);
    let (entries, _, _) = a.pull_until(1).await;
    assert_eq!(entries.len(), 1);
}

async fn duplicates_are_acknowledged_with_their_first_position_and_stored_once(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let mut doc = Doc::new();
    let first = doc.change("name", "ACME");
    let second = doc.change("industry", "retail");
    let (mut a, _) = Client::join(&relay, ws, &token, None).await;
    assert_eq!(a.push(1, vec![first.clone()]).await.seqs, [1]);
    // The same change again, in the same batch twice, and beside a new one.
    let ack = a
        .push(
            2,
            vec![first.clone(), second.clone(), first.clone(), second.clone()],
        )
        .await;
    assert_eq!(ack.seqs, [1, 2, 1, 2]);
    drop(a);
    // Another connection (a device re-pushing its outbox after a reconnect) gets the same.
    let (mut a, welcome) = Client::join(&relay, ws, &token, None).await;
    assert_eq!(welcome.head, 2);
    assert_eq!(a.push(1, vec![second, first]).await.seqs, [2, 1]);
    assert_eq!(relay.log(ws).len(), 2);
    let metrics = relay.state.metrics().render();
    assert!(
        metrics.contains("crm_relay_changes_stored_total 2\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("crm_relay_duplicate_changes_total 5\n"),
        "{metrics}"
    );
}

async fn a_batch_with_one_invalid_change_is_refused_whole(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let mut doc = Doc::new();
    let (mut b, _) = Client::join(&relay, ws, &bob, None).await;
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    a.send(&Message::Push(Push {
        batch: 1,
        changes: vec![
            doc.change("name", "ACME"),
            Envelope {
                doc_id: doc.id,
                kind: "account".into(),
                scope: Default::default(),
                bytes: b"not an automerge change".to_vec(),
            },
        ],
    }))
    .await;
    let error = a.expect_error().await;
    assert_eq!(error.code, ErrorCode::INVALID_CHANGE);
    assert!(error.message.contains("change 1"), "{}", error.message);
    assert!(relay.log(ws).is_empty(), "nothing of the batch is stored");

    // Bob never noticed: his session goes on and sees the next valid push.
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let valid = doc.change("name", "ACME");
    assert_eq!(a.push(1, vec![valid.clone()]).await.seqs, [1]);
    let (entries, _, _) = b.pull_until(1).await;
    assert_eq!(entries[0].bytes, valid.bytes);
    let metrics = relay.state.metrics().render();
    assert!(
        metrics.contains("crm_relay_rejected_total{code=\"415\",reason=\"invalid change\"} 1"),
        "{metrics}"
    );
}

/// Issue 12, failure 1: a valid change of record X pushed under an envelope naming record Y
/// was acknowledged and stored, and every device then refused every pull ("a change claims
/// to belong to record X"), for good. The relay now refuses it, stores nothing of its
/// batch, and everyone else syncs on.
async fn a_change_pushed_under_another_records_id_is_refused_and_sync_goes_on(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let ws = relay.workspace("acme");
    let (_, mallory) = relay.device(ws, "mallory");
    let (_, bob) = relay.device(ws, "bob");
    let (mut x, mut y) = (Doc::new(), Doc::new());
    let (mut m, _) = Client::join(&relay, ws, &mallory, None).await;
    assert_eq!(m.push(1, vec![y.change("name", "Y")]).await.seqs, [1]);
    let x_created = x.change("name", "X");

    // X's creation under Y's id (Y exists), and under an id the relay has never seen.
    for doc_id in [y.id, *uuid::Uuid::now_v7().as_bytes()] {
        let mut forged = x_created.clone();
        forged.doc_id = doc_id;
        refused(&relay, ws, &mallory, forged, "creates record").await;
    }
    // X's edit under Y's id, once X exists.
    drop(m);
    let (mut m, _) = Client::join(&relay, ws, &mallory, None).await;
    assert_eq!(m.push(1, vec![x_created.clone()]).await.seqs, [2]);
    let mut forged = x.change("industry", "retail");
    forged.doc_id = y.id;
    refused(
        &relay,
        ws,
        &mallory,
        forged,
        "depends on a change of record",
    )
    .await;
    assert_eq!(relay.log(ws).len(), 2, "nothing refused is stored");

    // Bob pulls the whole log, and every entry is a change of the record it is filed under.
    let (mut b, welcome) = Client::join(&relay, ws, &bob, None).await;
    let (entries, _, _) = b.pull_until(welcome.head).await;
    assert_eq!(entries.len(), 2);
    for entry in entries {
        let mut doc = automerge::Automerge::new();
        doc.apply_changes([automerge::Change::try_from(entry.bytes.as_slice()).expect("change")])
            .expect("applies");
        let id = automerge::ReadDoc::get(&doc, automerge::ROOT, "id")
            .expect("read")
            .map(|(v, _)| v.as_str().map(str::to_string));
        assert_eq!(
            id,
            Some(Some(uuid::Uuid::from_bytes(entry.doc_id).to_string()))
        );
    }
}

/// Issue 12, failure 5: the relay acknowledged a change whose Automerge checksum was broken
/// (Automerge's parser does not check it), so damaged bytes spread to every device.
async fn a_change_with_a_broken_checksum_is_refused(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let mut doc = Doc::new();
    let mut damaged = doc.change("name", "ACME");
    // The checksum's first byte: the rest still parses as a change.
    damaged.bytes[4] ^= 0x01;
    assert!(automerge::Change::try_from(damaged.bytes.as_slice()).is_ok());
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    a.send(&Message::Push(Push {
        batch: 1,
        changes: vec![damaged],
    }))
    .await;
    let error = a.expect_error().await;
    assert_eq!(error.code, ErrorCode::INVALID_CHANGE);
    assert!(error.message.contains("checksum"), "{}", error.message);
    assert!(relay.log(ws).is_empty());
}

/// Pushes `forged` alone on a new connection and expects the relay to refuse it as a change
/// of another record.
async fn refused(
    relay: &Relay,
    ws: crm_relay::WorkspaceId,
    token: &str,
    forged: Envelope,
    expect: &str,
) {
    let (mut m, _) = Client::join(relay, ws, token, None).await;
    m.send(&Message::Push(Push {
        batch: 7,
        changes: vec![forged],
    }))
    .await;
    let error = m.expect_error().await;
    assert_eq!(error.code, ErrorCode::INVALID_CHANGE, "{}", error.message);
    assert!(
        error.message.contains("does not belong to record") && error.message.contains(expect),
        "{}",
        error.message
    );
}

async fn missing_invalid_and_revoked_tokens_are_refused(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let ws = relay.workspace("acme");
    let other = relay.workspace("globex");
    let (device, token) = relay.device(ws, "alice");
    let (_, other_token) = relay.device(other, "mallory");
    let forged = format!("crm1.{ws}.{}", "A".repeat(43));
    for (what, workspace, token, code) in [
        (
            "missing",
            ws.to_string(),
            String::new(),
            ErrorCode::UNAUTHENTICATED,
        ),
        (
            "garbage",
            ws.to_string(),
            "let me in".into(),
            ErrorCode::UNAUTHENTICATED,
        ),
        (
            "unknown",
            ws.to_string(),
            forged,
            ErrorCode::UNAUTHENTICATED,
        ),
        (
            "another workspace's",
            ws.to_string(),
            other_token,
            ErrorCode::UNKNOWN_WORKSPACE,
        ),
        (
            "unknown workspace",
            uuid::Uuid::now_v7().to_string(),
            token.clone(),
            ErrorCode::UNKNOWN_WORKSPACE,
        ),
        (
            "workspace by name",
            "acme".into(),
            token.clone(),
            ErrorCode::UNKNOWN_WORKSPACE,
        ),
    ] {
        let mut client = Client::connect(&relay).await;
        client
            .send(&Message::Hello(Hello {
                min_protocol: 1,
                max_protocol: PROTOCOL_VERSION,
                workspace,
                token,
                cursor: None,
            }))
            .await;
        assert_eq!(client.expect_error().await.code, code, "{what} token");
    }
    // A revoked token: refused at the next connection, and at the next push of a session
    // that was open when it was revoked.
    let (mut open, _) = Client::join(&relay, ws, &token, None).await;
    relay.blocking(|| relay.store.revoke_device(device).expect("revoke"));
    let mut client = Client::connect(&relay).await;
    client.send(&hello(ws, &token, None)).await;
    let error = client.expect_error().await;
    assert_eq!(error.code, ErrorCode::REVOKED);
    open.send(&Message::Push(Push {
        batch: 1,
        changes: vec![Doc::new().change("name", "x")],
    }))
    .await;
    assert_eq!(open.expect_error().await.code, ErrorCode::REVOKED);
    assert!(relay.log(ws).is_empty());
}

async fn another_workspaces_document_is_refused(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let acme = relay.workspace("acme");
    let globex = relay.workspace("globex");
    let (_, alice) = relay.device(acme, "alice");
    let (_, mallory) = relay.device(globex, "mallory");
    let mut doc = Doc::new();
    let (mut a, _) = Client::join(&relay, acme, &alice, None).await;
    a.push(1, vec![doc.change("name", "ACME")]).await;

    let (mut m, _) = Client::join(&relay, globex, &mallory, None).await;
    let mut own = Doc::new();
    m.send(&Message::Push(Push {
        batch: 1,
        changes: vec![own.change("name", "Globex"), doc.change("name", "hijacked")],
    }))
    .await;
    let error = m.expect_error().await;
    assert_eq!(error.code, ErrorCode::WRONG_WORKSPACE);
    assert!(
        relay.log(globex).is_empty(),
        "nothing of the batch is stored"
    );
    assert_eq!(relay.log(acme).len(), 1);
}

async fn malformed_frames_are_refused_and_others_keep_going(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let (mut bystander, _) = Client::join(&relay, ws, &token, None).await;

    let mut client = Client::connect(&relay).await;
    client
        .send_raw(WsMessage::Binary(vec![200, 1, 2, 3].into()))
        .await;
    assert_eq!(client.expect_error().await.code, ErrorCode::MALFORMED_FRAME);

    let mut client = Client::connect(&relay).await;
    client.send_raw(WsMessage::Text("hello?".into())).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::MALFORMED_FRAME);

    // Garbage after the handshake, too.
    let (mut client, _) = Client::join(&relay, ws, &token, None).await;
    let mut frame = Message::Push(Push {
        batch: 1,
        changes: vec![],
    })
    .encode();
    frame.push(0);
    client.send_raw(WsMessage::Binary(frame.into())).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::MALFORMED_FRAME);

    let ack = bystander
        .push(1, vec![Doc::new().change("name", "still fine")])
        .await;
    assert_eq!(ack.seqs, [1]);
}

#[tokio::test]
async fn a_protocol_version_mismatch_names_both_versions() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let mut client = Client::connect(&relay).await;
    client
        .send(&Message::Hello(Hello {
            min_protocol: 7,
            max_protocol: 9,
            workspace: ws.to_string(),
            token,
            cursor: None,
        }))
        .await;
    let error = client.expect_error().await;
    assert_eq!(error.code, ErrorCode::PROTOCOL_MISMATCH);
    assert!(error.message.contains("7..=9"), "{}", error.message);
    assert!(
        error.message.contains(&format!("..={PROTOCOL_VERSION}")),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_device_of_another_workspace_never_sees_its_changes() {
    let relay = Relay::start().await;
    let acme = relay.workspace("acme");
    let globex = relay.workspace("globex");
    let (_, alice) = relay.device(acme, "alice");
    let (_, gina) = relay.device(globex, "gina");
    let (mut g, welcome) = Client::join(&relay, globex, &gina, None).await;
    assert_eq!(welcome.head, 0);
    let (mut a, _) = Client::join(&relay, acme, &alice, None).await;
    for batch in 1..=3 {
        a.push(batch, vec![Doc::new().change("name", "acme only")])
            .await;
    }
    // Globex's first change gets position 1 of its own log, and it is all Gina receives.
    let mine = Doc::new().change("name", "globex");
    assert_eq!(g.push(1, vec![mine.clone()]).await.seqs, [1]);
    let (entries, through, _) = g.pull_until(1).await;
    assert_eq!(through, 1);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].bytes, mine.bytes);
    // A fresh Globex session starts from a log of one.
    drop(g);
    let (_, welcome) = Client::join(&relay, globex, &gina, None).await;
    assert_eq!(welcome.head, 1);
}

#[tokio::test]
async fn live_changes_reach_a_connected_device() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let (mut b, _) = Client::join(&relay, ws, &bob, None).await;
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let mut doc = Doc::new();
    for i in 1..=5u64 {
        let change = doc.change("stage", &format!("stage {i}"));
        assert_eq!(a.push(i, vec![change.clone()]).await.seqs, [i]);
        // Bob is told without asking.
        let (entries, through, _) = b.pull_until(i).await;
        assert_eq!(through, i);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].bytes, change.bytes);
    }
}

#[tokio::test]
async fn devices_at_the_live_edge_get_the_batch_just_stored_as_the_log_holds_it() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let (_, carol) = relay.device(ws, "carol");
    let (mut b, _) = Client::join(&relay, ws, &bob, None).await;
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let (mut doc, mut other) = (Doc::new(), Doc::new());
    let first = doc.change("name", "ACME");
    a.push(1, vec![first.clone()]).await;
    let (entries, _, hash) = b.pull_until(1).await;
    assert_eq!(entries.len(), 1);
    assert_eq!((entries[0].seq, hash), (1, hash_of(&first)));

    // A batch repeating a stored change: only the new ones come, in order, with the hash of
    // the last.
    let (second, third) = (doc.change("stage", "won"), other.change("name", "Other"));
    let ack = a
        .push(2, vec![first.clone(), second.clone(), third.clone()])
        .await;
    assert_eq!(ack.seqs, [1, 2, 3]);
    let (entries, through, hash) = b.pull_until(3).await;
    let got: Vec<(u64, Vec<u8>)> = entries.into_iter().map(|e| (e.seq, e.bytes)).collect();
    assert_eq!(got, [(2, second.bytes.clone()), (3, third.bytes.clone())]);
    assert_eq!((through, hash), (3, hash_of(&third)));
    let (_, body) = http_get(relay.addr, "/metrics").await;
    let tail_reads: u64 = body
        .lines()
        .find_map(|l| l.strip_prefix("crm_relay_tail_reads_total "))
        .and_then(|n| n.parse().ok())
        .expect("crm_relay_tail_reads_total");
    assert!(tail_reads >= 2, "{tail_reads} reads answered from the tail");

    // A device starting from the beginning reads the store, and gets the same log.
    let (mut c, _) = Client::join(&relay, ws, &carol, None).await;
    let (entries, through, hash) = c.pull_until(3).await;
    let got: Vec<(u64, Vec<u8>)> = entries.into_iter().map(|e| (e.seq, e.bytes)).collect();
    assert_eq!((through, hash), (3, hash_of(&third)));
    assert_eq!(got, [(1, first.bytes), (2, second.bytes), (3, third.bytes)]);
}

#[tokio::test]
async fn a_slow_reader_is_sent_at_most_one_window() {
    let relay = Relay::start_with(Config {
        window: 10,
        read_batch: 4,
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let changes: Vec<Envelope> = (0..30)
        .map(|i| Doc::new().change("n", &i.to_string()))
        .collect();
    a.push(1, changes).await;
    // Bob never confirms: he gets 10 positions, then nothing until he does.
    let (mut b, _) = Client::join(&relay, ws, &bob, None).await;
    let mut sent = 0;
    while sent < 10 {
        match b.recv().await {
            Message::Changes(c) => {
                assert!(c.entries.len() <= 4);
                sent = c.through;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(sent, 10);
    // Alice is not held up by him.
    assert_eq!(
        a.push(2, vec![Doc::new().change("n", "more")]).await.seqs,
        [31]
    );
    // Once Bob confirms, the rest comes.
    b.send(&Message::Received(crm_sync::Received { seq: 10 }))
        .await;
    let (entries, through, _) = b.pull_until(31).await;
    assert_eq!(through, 31);
    assert_eq!(entries.len(), 21);
}

#[tokio::test]
async fn pushes_beyond_the_rate_limit_are_refused() {
    let relay = Relay::start_with(Config {
        pushes_per_second: 2,
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &token, None).await;
    let mut doc = Doc::new();
    a.push(1, vec![doc.change("n", "1")]).await;
    a.push(2, vec![doc.change("n", "2")]).await;
    a.send(&Message::Push(Push {
        batch: 3,
        changes: vec![doc.change("n", "3")],
    }))
    .await;
    let error = a.expect_error().await;
    assert_eq!(error.code, ErrorCode::RATE_LIMITED);
    assert_eq!(relay.log(ws).len(), 2);
}

#[tokio::test]
async fn a_workspace_takes_at_most_its_limit_of_connections() {
    let relay = Relay::start_with(Config {
        max_connections_per_workspace: 1,
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let other = relay.workspace("globex");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let (_, gina) = relay.device(other, "gina");
    let (first, _) = Client::join(&relay, ws, &alice, None).await;
    let mut second = Client::connect(&relay).await;
    second.send(&hello(ws, &bob, None)).await;
    assert_eq!(second.expect_error().await.code, ErrorCode::RATE_LIMITED);
    // Other workspaces are not affected, and the slot frees when the first leaves.
    let _g = Client::join(&relay, other, &gina, None).await;
    let mut open = relay.state.open_sessions();
    drop(first);
    tokio::time::timeout(common::PATIENCE, open.wait_for(|n| *n == 1))
        .await
        .expect("the first session ends in time")
        .expect("the relay runs");
    let (_again, welcome) = Client::join(&relay, ws, &bob, None).await;
    assert_eq!(welcome.head, 0);
}

/// Issue 12, failure 6: one token opening the workspace's every connection locked every
/// other device out with 429.
#[tokio::test]
async fn one_device_cannot_take_its_workspaces_every_connection() {
    let relay = Relay::start_with(Config {
        max_connections_per_workspace: 4,
        max_sessions_per_device: 2,
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let (_, mallory) = relay.device(ws, "mallory");
    let (_, bob) = relay.device(ws, "bob");
    let _one = Client::join(&relay, ws, &mallory, None).await;
    let _two = Client::join(&relay, ws, &mallory, None).await;
    for bootstrap in [false, true] {
        let mut third = if bootstrap {
            Client::connect_bootstrap(&relay).await
        } else {
            Client::connect(&relay).await
        };
        third.send(&hello(ws, &mallory, None)).await;
        let error = third.expect_error().await;
        assert_eq!(error.code, ErrorCode::RATE_LIMITED);
        assert!(error.message.contains("this device"), "{}", error.message);
    }
    let (_b, welcome) = Client::join(&relay, ws, &bob, None).await;
    assert_eq!(welcome.head, 0);
}

/// Issue 12, failure 4: after `crm-relay device revoke`, the device's open `crm sync --watch`
/// kept receiving changes made after the revocation. Its sessions now end with 402 at once
/// (within the relay's revocation poll), sync and bootstrap alike.
#[tokio::test]
async fn revoking_a_device_closes_its_open_sessions() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (device, mallory) = relay.device(ws, "mallory");
    let (_, bob) = relay.device(ws, "bob");
    let mut doc = Doc::new();
    let (mut b, _) = Client::join(&relay, ws, &bob, None).await;
    b.push(1, vec![doc.change("name", "ACME")]).await;
    let (mut m, welcome) = Client::join(&relay, ws, &mallory, None).await;
    m.pull_until(welcome.head).await;
    let (mut boot, _) = Client::bootstrap(&relay, ws, &mallory).await;

    // Revoked as the admin command does it: from another handle on the relay's database.
    let admin = crm_relay::Relay::new(std::sync::Arc::new(
        crm_relay::SqliteStore::open(relay.dir.path()).expect("store"),
    ));
    admin.revoke_device(device).expect("revoke");
    let error = m.expect_error().await;
    assert_eq!(error.code, ErrorCode::REVOKED, "{}", error.message);
    // The bootstrap session may finish its pages first; it never outlives the revocation.
    loop {
        match boot.try_recv().await {
            Some(Message::Error(e)) => {
                assert_eq!(e.code, ErrorCode::REVOKED);
                break;
            }
            Some(Message::Documents(d)) if d.done.is_none() => {}
            Some(Message::Documents(d)) => {
                boot.send(&Message::DocumentsReceived(crm_sync::DocumentsReceived {
                    page: d.page,
                }))
                .await;
            }
            None => break,
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    // Bob goes on; mallory cannot come back.
    b.push(2, vec![doc.change("industry", "retail")]).await;
    let mut again = Client::connect(&relay).await;
    again.send(&hello(ws, &mallory, None)).await;
    assert_eq!(again.expect_error().await.code, ErrorCode::REVOKED);
}

#[tokio::test]
async fn a_connection_without_hello_is_dropped() {
    let relay = Relay::start_with(Config {
        hello_timeout: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let mut client = Client::connect(&relay).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::UNAUTHENTICATED);
}

#[tokio::test]
async fn shutdown_says_going_away_to_every_session() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let (mut b, _) = Client::join(&relay, ws, &bob, None).await;
    let mut c = Client::connect(&relay).await;
    // A push in flight as shutdown starts is stored and acknowledged before the goodbye.
    let change = Doc::new().change("name", "last words");
    a.send(&Message::Push(Push {
        batch: 1,
        changes: vec![change],
    }))
    .await;
    let state = relay.state.clone();
    let store = relay.store.clone();
    let addr = relay.addr;
    let stopping = tokio::spawn(relay.stop());
    let mut acked = false;
    let error = loop {
        match a.recv().await {
            Message::Ack(ack) => {
                assert_eq!(ack.results, [crm_sync::Outcome::Stored(1)]);
                acked = true;
            }
            Message::Changes(_) => {}
            Message::Error(e) => break e,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(error.code, ErrorCode::GOING_AWAY);
    assert!(error.code.is_transient());
    a.expect_closed().await;
    // The push was either stored and acknowledged before the goodbye, or not taken at all.
    let stored = store.read_raw(ws, 0, 10).expect("read").rows.len();
    assert_eq!(stored, usize::from(acked));
    assert_eq!(b.expect_error().await.code, ErrorCode::GOING_AWAY);
    assert_eq!(c.expect_error().await.code, ErrorCode::GOING_AWAY);
    stopping.await.expect("stopped");
    assert_eq!(state.metrics().connections(), 0);
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn health_and_metrics_answer() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let (status, body) = http_get(relay.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));

    let (mut a, _) = Client::join(&relay, ws, &token, None).await;
    a.push(1, vec![Doc::new().change("name", "ACME")]).await;
    let (status, body) = http_get(relay.addr, "/metrics").await;
    assert_eq!(status, 200);
    for line in [
        "# TYPE crm_relay_connections gauge",
        "crm_relay_connections 1",
        "crm_relay_pushes_total 1",
        "crm_relay_changes_stored_total 1",
        "crm_relay_duplicate_changes_total 0",
        "# TYPE crm_relay_bytes_received_total counter",
        "# TYPE crm_relay_bytes_sent_total counter",
        "# TYPE crm_relay_lag_entries gauge",
        "# TYPE crm_relay_rejected_total counter",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line:?} missing from\n{body}"
        );
    }
    let (status, _) = http_get(relay.addr, "/nope").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn pings_are_answered() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &token, None).await;
    a.ping().await;
}

async fn a_frame_over_the_size_limit_is_cut_off_and_others_keep_going(backend: Backend) {
    let relay = Relay::start_on(backend).await;
    let ws = relay.workspace("acme");
    let (_, token) = relay.device(ws, "alice");
    let (mut bystander, _) = Client::join(&relay, ws, &token, None).await;
    let (mut a, _) = Client::join(&relay, ws, &token, None).await;
    // The relay stops reading at the limit, so the sender may see its write fail; if the
    // error frame got through first, it names the limit.
    a.send_lossy(WsMessage::Binary(
        vec![2; crm_sync::MAX_FRAME_BYTES + 1].into(),
    ))
    .await;
    match a.try_recv().await {
        Some(Message::Error(e)) => assert_eq!(e.code, ErrorCode::TOO_LARGE),
        Some(other) => panic!("unexpected {other:?}"),
        None => {}
    }
    assert!(relay.log(ws).is_empty());
    let ack = bystander
        .push(1, vec![Doc::new().change("name", "fine")])
        .await;
    assert_eq!(ack.seqs, [1]);
}
