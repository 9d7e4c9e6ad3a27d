//! The relay under clients that hold its resources without using them (issue 12, failure
//! 6): sessions that never read, TCP connections that never speak HTTP, more connections
//! than the relay has files for.

mod common;

use std::time::Duration;

use common::{Client, Doc, PATIENCE, Relay, hello};
use crm_relay::Config;
use crm_sync::Envelope;
use futures_util::SinkExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A value of `len` characters that deflate cannot shrink much (changes are compressed).
fn noise(len: usize, seed: u64) -> String {
    let mut x = seed.wrapping_mul(2).wrapping_add(1);
    let mut bytes = vec![0u8; len];
    for b in &mut bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = b'!' + (x % 90) as u8;
    }
    String::from_utf8(bytes).expect("ASCII")
}

/// Waits until `metric` (a line of /metrics) reaches `at_least`.
async fn wait_for_metric(relay: &Relay, metric: &str, at_least: u64) {
    tokio::time::timeout(PATIENCE, async {
        loop {
            let text = relay.state.metrics().render();
            let value = text
                .lines()
                .find_map(|l| l.strip_prefix(metric)?.trim().parse::<u64>().ok())
                .unwrap_or(0);
            if value >= at_least {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{metric} reaches {at_least} in time"));
}

/// Issue 12, failure 6: each session that never read held about 60 MiB for 30 s, and
/// nothing bounded their total (20 of them took a relay of 7 MiB to 1.2 GiB). Now the relay
/// keeps at most its budget for unread data: sessions that stop reading are dropped within
/// seconds once it is short, not buffered until their write timeout, and a device that reads
/// still gets everything.
#[tokio::test]
async fn sessions_that_never_read_are_dropped_when_the_relay_is_short_of_memory() {
    let relay = Relay::start_with(Config {
        max_unsent_bytes: 4 << 20,
        // Far longer than the test's patience: a drop can only come from the memory bound.
        write_timeout: Duration::from_secs(600),
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    // About 12 MiB of changes, pushed 3 MiB at a time.
    let mut doc = Doc::new();
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let mut changes: Vec<Envelope> = vec![doc.change("name", "ACME")];
    changes.extend((0..12).map(|i| doc.change("blob", &noise(1 << 20, i + 1))));
    for (batch, chunk) in changes.chunks(3).enumerate() {
        a.push(batch as u64 + 1, chunk.to_vec()).await;
    }
    drop(a);
    let head = changes.len() as u64;

    // Three devices that say Hello and never read, with receive buffers as small as the
    // kernel allows, so their frames stay queued in the relay.
    let mut stalled = Vec::new();
    for i in 0..3 {
        let (_, token) = relay.device(ws, &format!("slow{i}"));
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("buffer");
        let stream = socket.connect(relay.addr).await.expect("connect");
        let (mut ws_stream, _) = tokio_tungstenite::client_async(relay.url(), stream)
            .await
            .expect("handshake");
        ws_stream
            .send(WsMessage::Binary(hello(ws, &token, None).encode().into()))
            .await
            .expect("hello");
        stalled.push(ws_stream);
    }
    wait_for_metric(&relay, "crm_relay_slow_readers_dropped_total", 3).await;
    wait_for_metric(&relay, "crm_relay_connections", 0).await;
    let text = relay.state.metrics().render();
    assert!(text.contains("crm_relay_unsent_bytes 0\n"), "{text}");

    // A device that reads gets the whole log.
    let (mut b, welcome) = Client::join(&relay, ws, &bob, None).await;
    assert_eq!(welcome.head, head);
    let (entries, through, _) = b.pull_until(head).await;
    assert_eq!((entries.len() as u64, through), (head, head));
}

/// Reads from a raw connection until the relay closes it; returns what it said.
async fn until_closed(stream: &mut tokio::net::TcpStream) -> String {
    let mut said = Vec::new();
    tokio::time::timeout(PATIENCE, stream.read_to_end(&mut said))
        .await
        .expect("the relay closes the connection in time")
        .expect("read");
    String::from_utf8_lossy(&said).into_owned()
}

/// Issue 12, failure 6: TCP connections that never finished their HTTP request (nothing
/// sent, or headers trickled in) were never closed; about 20,000 of them used up the relay's
/// files. Each must now send its headers within the header timeout.
#[tokio::test]
async fn connections_that_never_finish_their_request_are_closed() {
    let relay = Relay::start_with(Config {
        header_timeout: Duration::from_millis(300),
        ..Config::default()
    })
    .await;
    let mut silent = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("connect");
    let mut trickle = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("connect");
    trickle
        .write_all(b"GET /v1/sync HTTP/1.1\r\nHost: relay\r\nUpgrade: websocket\r\n")
        .await
        .expect("write");
    let said = until_closed(&mut silent).await;
    assert!(!said.contains("101"), "{said}");
    let said = until_closed(&mut trickle).await;
    assert!(!said.contains("101"), "{said}");

    // An upgraded session is not an HTTP request any more: it outlives the timeout.
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    tokio::time::sleep(Duration::from_millis(900)).await;
    a.ping().await;
}

/// Issue 12, failure 6: past a connection cap below the file limit, new connections are
/// closed at once (and counted), the open sessions go on, and once the idle connections
/// time out the relay answers `/healthz` again.
#[tokio::test]
async fn past_its_connection_cap_the_relay_closes_new_connections_and_recovers() {
    let relay = Relay::start_with(Config {
        max_connections: 4,
        header_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (mut a, _) = Client::join(&relay, ws, &alice, None).await;
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(
            tokio::net::TcpStream::connect(relay.addr)
                .await
                .expect("connect"),
        );
    }
    // The fifth connection is one too many: closed without a word, long before any timeout.
    let started = std::time::Instant::now();
    let mut extra = tokio::net::TcpStream::connect(relay.addr)
        .await
        .expect("connect");
    let said = until_closed(&mut extra).await;
    assert!(said.is_empty(), "{said}");
    assert!(started.elapsed() < Duration::from_millis(500));
    wait_for_metric(&relay, "crm_relay_connections_refused_total", 1).await;
    // The session that was open keeps working.
    let mut doc = Doc::new();
    assert_eq!(a.push(1, vec![doc.change("name", "ACME")]).await.seqs, [1]);
    // The idle connections time out; the relay serves again.
    for mut conn in idle {
        until_closed(&mut conn).await;
    }
    let (status, body) = common::http_get(relay.addr, "/healthz").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
}
