//! A relay's refusal is reported as what it is (issue 12, failure 2).
//!
//! The relay here is a stand-in on loopback with a frame limit far below the protocol's, so a
//! push goes over it: like the real relay at its limit, it answers `Error 413` and closes
//! without reading the rest of the frame, which resets the connection under the device's
//! send. The device used to report only "connection reset by peer".

use crm_model::{Edit, Kind};
use crm_node::sync::{SyncError, sync_once};
use crm_store::{RelayLink, Store};
use crm_sync::{ErrorCode, ErrorFrame, Message, Resume, Welcome};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The stand-in relay's frame limit.
const LIMIT: usize = 64 << 10;

/// The handshake: `/v1/sync` only.
#[allow(
    clippy::result_large_err,
    reason = "tungstenite's handshake callback returns its error response by value"
)]
fn only_sync(request: &Request, response: Response) -> Result<Response, ErrorResponse> {
    if request.uri().path() == "/v1/sync" {
        Ok(response)
    } else {
        let mut refused = ErrorResponse::new(None);
        *refused.status_mut() = tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND;
        Err(refused)
    }
}

/// Serves one device session: no `/v1/bootstrap` (404, so the device uses the log), a
/// `Welcome` to its `Hello`, and `Error 413` to a frame over [`LIMIT`].
async fn refusing_relay(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let config = WebSocketConfig::default()
            .max_message_size(Some(LIMIT))
            .max_frame_size(Some(LIMIT));
        let Ok(mut ws) =
            tokio_tungstenite::accept_hdr_async_with_config(stream, only_sync, Some(config)).await
        else {
            continue;
        };
        while let Some(frame) = ws.next().await {
            let reply = match frame {
                Ok(WsMessage::Binary(bytes)) => match Message::decode(&bytes) {
                    Ok(Message::Hello(_)) => Message::Welcome(Welcome {
                        protocol: crm_sync::PROTOCOL_VERSION,
                        relay_id: [7; 16],
                        head: 0,
                        resume: Resume::FromStart,
                        access: Default::default(),
                    }),
                    _ => continue,
                },
                Ok(_) => continue,
                Err(_) => {
                    let refusal = Message::Error(ErrorFrame {
                        code: ErrorCode::TOO_LARGE,
                        message: format!("frames are limited to {LIMIT} bytes"),
                    });
                    let _ = ws.send(WsMessage::Binary(refusal.encode().into())).await;
                    // Closed without reading the rest of the frame, as the relay does.
                    break;
                }
            };
            if ws
                .send(WsMessage::Binary(reply.encode().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    }
}

/// A pseudo-random string of `n` Chinese characters.
fn noise(n: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .filter_map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_u32(0x4E00 + (state % 20_000) as u32)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_refusing_a_push_mid_frame_is_reported_as_413_not_a_reset() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(refusing_relay(listener));

    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
    // About 6 MB of changes: one push (under the protocol's limits) far over this relay's.
    for i in 0..150 {
        let mut e = Edit::new(Kind::Account);
        e.set("name", &format!("Account {i}")).expect("valid");
        for f in 0..12 {
            e.set(&format!("custom.f{f}"), &noise(1_000, i * 100 + f))
                .expect("valid");
        }
        store.create(&e).expect("create");
    }
    store
        .set_relay(&RelayLink {
            url: format!("http://{addr}"),
            token: "crm1.0192f0c4-1d2e-7a3b-9c4d-5e6f7a8b9c0d.abcdefghijklmnopqrstuvwxyz".into(),
        })
        .expect("join");

    let err = sync_once(&mut store).await.expect_err("refused");
    let SyncError::Refused(frame) = &err else {
        panic!("expected the relay's refusal, got: {err}");
    };
    assert_eq!(frame.code, ErrorCode::TOO_LARGE);
    let message = err.to_string();
    assert!(
        message.starts_with("the relay refused: 413 (too large) — frames are limited to"),
        "{message}"
    );
    assert!(!err.is_transient(), "a refusal needs a person: {message}");
    // Nothing was acknowledged: every change still waits.
    assert_eq!(store.outbox_len().expect("outbox"), 151);
}
