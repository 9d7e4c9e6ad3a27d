//! `/v1/bootstrap` over real WebSocket connections: a new device gets every document as
//! pages of snapshots and loose changes, with flow control, and every refusal ends with an
//! error frame and a close.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{Client, Doc, PATIENCE, Relay, hash_of, heads_of, hello, http_get, load};
use crm_relay::Config;
use crm_sync::{
    Cursor, DocId, DocState, Documents, DocumentsReceived, ErrorCode, Hello, Message,
    PROTOCOL_VERSION, Push, Resume,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A relay whose tests run the compactor themselves, with small pages.
async fn relay(page_bytes: usize) -> Relay {
    Relay::start_with(Config {
        compact: false,
        bootstrap_page_bytes: page_bytes,
        ..Config::default()
    })
    .await
}

/// Receives and confirms pages until the last; returns them.
async fn receive_all(client: &mut Client) -> Vec<Documents> {
    let mut pages = Vec::new();
    loop {
        match client.recv().await {
            Message::Documents(page) => {
                assert_eq!(page.page, pages.len() as u64, "pages come in order");
                client
                    .send(&Message::DocumentsReceived(DocumentsReceived {
                        page: page.page,
                    }))
                    .await;
                let last = page.done.is_some();
                pages.push(page);
                if last {
                    return pages;
                }
            }
            other => panic!("expected Documents, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_new_device_loads_every_document_from_pages() {
    let relay = relay(4_096).await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let mut docs: Vec<Doc> = (0..30).map(|_| Doc::new()).collect();
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    for round in 0..3 {
        let batch = docs
            .iter_mut()
            .map(|d| d.change("name", &format!("{round}")))
            .collect();
        a.push(round + 1, batch).await;
    }
    assert_eq!(relay.store.compact(64).expect("compact"), 30);
    // One change after compaction: it travels beside its document's snapshot.
    let last = docs[7].change("stage", "won");
    a.push(4, vec![last.clone()]).await;

    let (mut b, welcome) = Client::bootstrap(&relay, ws, &bob).await;
    assert_eq!(welcome.protocol, PROTOCOL_VERSION);
    assert_eq!(welcome.relay_id, relay.store.relay_id());
    assert_eq!((welcome.head, welcome.resume), (91, Resume::FromStart));
    let pages = receive_all(&mut b).await;
    assert!(pages.len() > 2, "{} pages", pages.len());
    assert_eq!(
        pages.last().and_then(|p| p.done),
        Some(Cursor {
            relay_id: relay.store.relay_id(),
            seq: 91,
            hash: hash_of(&last),
        })
    );
    assert!(pages[..pages.len() - 1].iter().all(|p| p.done.is_none()));
    let states: Vec<DocState> = pages.into_iter().flat_map(|p| p.docs).collect();
    let mut ids: Vec<DocId> = states.iter().map(|s| s.doc_id).collect();
    assert!(ids.is_sorted(), "documents in id order");
    ids.dedup();
    assert_eq!(ids.len(), 30, "every document once");
    let mut by_id: HashMap<DocId, Doc> = docs.into_iter().map(|d| (d.id, d)).collect();
    for state in &states {
        let doc = by_id.get_mut(&state.doc_id).expect("a pushed document");
        assert!(!state.snapshot.is_empty());
        assert_eq!(heads_of(&load(state)), doc.heads());
        let loose = usize::from(state.doc_id == last.doc_id);
        assert_eq!(state.changes.len(), loose);
    }
    // Everything confirmed: the relay closes the socket.
    b.expect_closed().await;
}

#[tokio::test]
async fn documents_not_compacted_yet_come_as_changes() {
    let relay = relay(crm_relay::Config::default().bootstrap_page_bytes).await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let mut doc = Doc::new();
    let changes = vec![doc.change("name", "ACME"), doc.change("city", "Beijing")];
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    a.push(1, changes.clone()).await;
    let (mut b, _) = Client::bootstrap(&relay, ws, &bob).await;
    let pages = receive_all(&mut b).await;
    assert_eq!(pages.len(), 1);
    let state = &pages[0].docs[0];
    assert!(state.snapshot.is_empty());
    let bytes: Vec<Vec<u8>> = state.changes.iter().map(|c| c.to_vec()).collect();
    assert_eq!(bytes, [changes[0].bytes.clone(), changes[1].bytes.clone()]);
    assert_eq!(heads_of(&load(state)), doc.heads());
}

#[tokio::test]
async fn an_empty_workspace_is_one_empty_last_page() {
    let relay = relay(4_096).await;
    let ws = relay.workspace("acme");
    let (_, bob) = relay.device(ws, "bob");
    let (mut b, welcome) = Client::bootstrap(&relay, ws, &bob).await;
    assert_eq!(welcome.head, 0);
    let pages = receive_all(&mut b).await;
    assert_eq!(pages.len(), 1);
    assert!(pages[0].docs.is_empty());
    assert_eq!(
        pages[0].done,
        Some(Cursor {
            relay_id: relay.store.relay_id(),
            seq: 0,
            hash: [0; 32],
        })
    );
    b.expect_closed().await;
}

#[tokio::test]
async fn at_most_eight_pages_are_unconfirmed() {
    let relay = relay(1_000).await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let changes = (0..120)
        .map(|i| Doc::new().change("name", &format!("record {i}")))
        .collect();
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    a.push(1, changes).await;
    while relay.store.compact(64).expect("compact") > 0 {}

    let (mut b, _) = Client::bootstrap(&relay, ws, &bob).await;
    for expected in 0..8 {
        match b.recv().await {
            Message::Documents(page) => {
                assert_eq!(page.page, expected);
                assert!(page.done.is_none(), "more than 16 pages expected");
            }
            other => panic!("expected Documents, got {other:?}"),
        }
    }
    assert!(
        b.recv_within(Duration::from_millis(300)).await.is_none(),
        "no ninth page before a confirmation"
    );
    // Confirming page 1 confirms page 0 too: two more may come.
    b.send(&Message::DocumentsReceived(DocumentsReceived { page: 1 }))
        .await;
    for expected in 8..10 {
        match b.recv().await {
            Message::Documents(page) => assert_eq!(page.page, expected),
            other => panic!("expected Documents, got {other:?}"),
        }
    }
    assert!(
        b.recv_within(Duration::from_millis(300)).await.is_none(),
        "no eleventh page before a confirmation"
    );
}

#[tokio::test]
async fn refusals_end_with_an_error_and_a_close() {
    let relay = relay(4_096).await;
    let ws = relay.workspace("acme");
    let other = relay.workspace("globex");
    let (device, token) = relay.device(ws, "alice");
    let (_, other_token) = relay.device(other, "gina");

    let refused = |workspace: String, token: String| {
        Message::Hello(Hello {
            min_protocol: 1,
            max_protocol: PROTOCOL_VERSION,
            workspace,
            token,
            cursor: None,
        })
    };
    for (what, first, code) in [
        (
            "an unknown token",
            refused(ws.to_string(), format!("crm1.{ws}.{}", "A".repeat(43))),
            ErrorCode::UNAUTHENTICATED,
        ),
        (
            "no token",
            refused(ws.to_string(), String::new()),
            ErrorCode::UNAUTHENTICATED,
        ),
        (
            "another workspace's token",
            refused(ws.to_string(), other_token),
            ErrorCode::UNKNOWN_WORKSPACE,
        ),
        (
            "a protocol the relay does not speak",
            Message::Hello(Hello {
                min_protocol: 7,
                max_protocol: 9,
                workspace: ws.to_string(),
                token: token.clone(),
                cursor: None,
            }),
            ErrorCode::PROTOCOL_MISMATCH,
        ),
        (
            "a first message other than Hello",
            Message::DocumentsReceived(DocumentsReceived { page: 0 }),
            ErrorCode::UNEXPECTED_MESSAGE,
        ),
    ] {
        let mut client = Client::connect_bootstrap(&relay).await;
        client.send(&first).await;
        assert_eq!(client.expect_error().await.code, code, "{what}");
    }

    let mut client = Client::connect_bootstrap(&relay).await;
    client
        .send_raw(WsMessage::Binary(vec![200, 1, 2].into()))
        .await;
    assert_eq!(client.expect_error().await.code, ErrorCode::MALFORMED_FRAME);
    let mut client = Client::connect_bootstrap(&relay).await;
    client.send_raw(WsMessage::Text("hello?".into())).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::MALFORMED_FRAME);

    // After the Welcome: a push, or a confirmation of a page not sent.
    let (mut client, _) = Client::bootstrap(&relay, ws, &token).await;
    client
        .send(&Message::Push(Push {
            batch: 1,
            changes: vec![Doc::new().change("n", "1")],
        }))
        .await;
    assert_eq!(
        client.expect_error().await.code,
        ErrorCode::UNEXPECTED_MESSAGE
    );
    assert!(relay.log(ws).is_empty(), "nothing is stored");
    let (mut client, _) = Client::bootstrap(&relay, ws, &token).await;
    client
        .send(&Message::DocumentsReceived(DocumentsReceived { page: 5 }))
        .await;
    let error = client.expect_error().await;
    assert_eq!(error.code, ErrorCode::UNEXPECTED_MESSAGE);
    assert!(error.message.contains("page 5"), "{}", error.message);

    relay.store.revoke_device(device).expect("revoke");
    let mut client = Client::connect_bootstrap(&relay).await;
    client.send(&hello(ws, &token, None)).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::REVOKED);

    let metrics = relay.state.metrics();
    assert!(metrics.rejected_count(ErrorCode::UNEXPECTED_MESSAGE) >= 3);
}

#[tokio::test]
async fn a_connection_without_hello_is_dropped() {
    let relay = Relay::start_with(Config {
        hello_timeout: Duration::from_millis(200),
        compact: false,
        ..Config::default()
    })
    .await;
    let mut client = Client::connect_bootstrap(&relay).await;
    assert_eq!(client.expect_error().await.code, ErrorCode::UNAUTHENTICATED);
}

#[tokio::test]
async fn a_page_left_unconfirmed_ends_the_bootstrap() {
    let relay = Relay::start_with(Config {
        write_timeout: Duration::from_millis(300),
        compact: false,
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    a.push(1, vec![Doc::new().change("n", "1")]).await;
    let (mut b, _) = Client::bootstrap(&relay, ws, &alice).await;
    match b.recv().await {
        Message::Documents(page) => assert!(page.done.is_some()),
        other => panic!("expected Documents, got {other:?}"),
    }
    let error = b.expect_error().await;
    assert_eq!(error.code, ErrorCode::UNEXPECTED_MESSAGE);
    assert!(
        error.message.contains("DocumentsReceived"),
        "{}",
        error.message
    );
}

#[tokio::test]
async fn a_document_too_large_for_a_page_ends_with_an_error() {
    let relay = relay(200).await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    a.push(1, vec![Doc::new().change("notes", &"x".repeat(1_000))])
        .await;
    let (mut b, _) = Client::bootstrap(&relay, ws, &alice).await;
    let error = b.expect_error().await;
    assert_eq!(error.code, ErrorCode::INTERNAL);
    assert!(error.message.contains("too large"), "{}", error.message);
}

#[tokio::test]
async fn shutdown_says_going_away_to_a_bootstrap() {
    let relay = relay(1_000).await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let changes = (0..40).map(|_| Doc::new().change("n", "1")).collect();
    a.push(1, changes).await;
    drop(a);
    let (mut b, _) = Client::bootstrap(&relay, ws, &alice).await;
    let state = relay.state.clone();
    let stopping = tokio::spawn(relay.stop());
    assert_eq!(b.expect_error().await.code, ErrorCode::GOING_AWAY);
    stopping.await.expect("stopped");
    assert_eq!(state.metrics().connections(), 0);
}

#[tokio::test]
async fn the_compactor_runs_in_the_background() {
    let relay = Relay::start().await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let mut docs: Vec<Doc> = (0..5).map(|_| Doc::new()).collect();
    let batch = docs.iter_mut().map(|d| d.change("name", "x")).collect();
    a.push(1, batch).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while relay.state.metrics().documents_compacted() < 5 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the compactor compacts in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(relay.store.stale_documents().expect("count"), 0);
    let page = relay
        .store
        .documents_page(ws, None, 5, usize::MAX, None)
        .expect("page");
    assert!(page.docs.iter().all(|d| d.hashes.len() == 1));
    // The stale gauge is counted at least every second.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let (_, body) = http_get(relay.addr, "/metrics").await;
    for line in [
        "crm_relay_documents_compacted_total 5",
        "crm_relay_documents_stale 0",
        "# TYPE crm_relay_documents_stale gauge",
        "# TYPE crm_relay_bootstrap_pages_total counter",
    ] {
        assert!(
            body.lines().any(|l| l == line),
            "{line:?} missing from\n{body}"
        );
    }
    relay.stop().await;
}
