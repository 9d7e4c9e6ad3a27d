//! A fresh device's first sync from the relay's document snapshots (`/v1/bootstrap`, see
//! docs/PROTOCOL.md): pages of compacted documents instead of the whole change log, then the
//! cursor the ordinary sync resumes from.
//!
//! Anything short of a refusal of the device itself (an unknown or revoked token, no shared
//! protocol version) makes the device fall back to replaying the log, which gives the same
//! result: a relay without the endpoint, a document too large for a page, a page that does
//! not check out. Pages applied before that stay; the log replay then finds their changes
//! already stored.

use crm_model::RecordId;
use crm_store::{PreparedDocuments, RelayLink, RemoteDocument, Store, SyncCursor};
use crm_sync::{
    DocumentsReceived, ErrorCode, Hello, MIN_PROTOCOL_VERSION, Message, PROTOCOL_VERSION,
};
use futures_util::{FutureExt as _, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::sync::{
    CONNECT_TIMEOUT, IDLE_TIMEOUT, SUSPEND_INDEXES_BEHIND, SyncError, SyncReport, sync_url,
    workspace_of,
};

/// Documents applied in one transaction at most (pages that arrived together).
const DOCUMENTS_AT_ONCE: usize = 8_192;

/// The WebSocket URL of a relay's bootstrap endpoint.
pub fn bootstrap_url(base: &str) -> String {
    let sync = sync_url(base);
    match sync.strip_suffix("/v1/sync") {
        Some(root) => format!("{root}/v1/bootstrap"),
        None => sync,
    }
}

/// Loads the relay's documents into `store` and sets its cursor. `Ok(false)`: the relay could
/// not bootstrap this device, which syncs from the log instead.
pub(crate) async fn bootstrap(
    store: &mut Store,
    link: &RelayLink,
    report: &mut SyncReport,
) -> Result<bool, SyncError> {
    let workspace = workspace_of(&link.token)?;
    let url = bootstrap_url(&link.url);
    let connected = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::connect_async_with_config(url.as_str(), None, true),
    )
    .await
    .map_err(|_| SyncError::Unreachable {
        url: url.clone(),
        reason: "timed out".into(),
    })?;
    let mut ws = match connected {
        Ok((ws, _)) => ws,
        // An older relay answers the upgrade with 404.
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            tracing::info!(status = %response.status(), "no bootstrap endpoint; syncing from the log");
            return Ok(false);
        }
        Err(e) => {
            return Err(SyncError::Unreachable {
                url,
                reason: e.to_string(),
            });
        }
    };
    let lost = |e: tokio_tungstenite::tungstenite::Error| SyncError::Lost(e.to_string());
    let hello = Message::Hello(Hello {
        min_protocol: MIN_PROTOCOL_VERSION,
        max_protocol: PROTOCOL_VERSION,
        workspace,
        token: link.token.clone(),
        cursor: None,
    });
    ws.send(WsMessage::Binary(hello.encode().into()))
        .await
        .map_err(lost)?;
    let mut welcomed = false;
    // Every document the relay sends: after a change of the user's access, what the replica
    // holds beyond them is out of its scope now and is purged.
    let mut sent: std::collections::HashSet<RecordId> = std::collections::HashSet::new();
    let mut access: Option<crm_sync::Access> = None;
    // Documents received and being built, written once the next pages arrive.
    let mut earlier: Option<PreparedDocuments> = None;
    loop {
        let frame = tokio::time::timeout(IDLE_TIMEOUT, ws.next())
            .await
            .map_err(|_| SyncError::Lost("the relay stopped answering".into()))?;
        let Some(first) = message(frame)? else {
            continue;
        };
        let mut messages = vec![first];
        // Pages already waiting go into the same transaction.
        let mut documents = 0;
        while let Some(Message::Documents(d)) = messages.last()
            && d.done.is_none()
            && documents + d.docs.len() < DOCUMENTS_AT_ONCE
        {
            documents += d.docs.len();
            let Some(frame) = ws.next().now_or_never() else {
                break;
            };
            if let Some(m) = message(frame)? {
                messages.push(m);
            }
        }
        let mut docs = Vec::new();
        let mut last_page = None;
        let mut done = None;
        for m in messages {
            match m {
                Message::Welcome(w) if !welcomed => {
                    welcomed = true;
                    crate::sync::adopt(store, &w.access, report)?;
                    access = Some(w.access.clone());
                    if w.head >= SUSPEND_INDEXES_BEHIND {
                        store.suspend_read_indexes()?;
                    }
                }
                Message::Documents(d) if welcomed && done.is_none() => {
                    last_page = Some(d.page);
                    done = d.done;
                    sent.extend(
                        d.docs
                            .iter()
                            .map(|s| RecordId::from_uuid(uuid::Uuid::from_bytes(s.doc_id))),
                    );
                    docs.extend(d.docs.into_iter().map(|s| RemoteDocument {
                        doc_id: RecordId::from_uuid(uuid::Uuid::from_bytes(s.doc_id)),
                        snapshot: s.snapshot,
                        hashes: s.hashes,
                        changes: s.changes.into_iter().map(|c| c.into_vec()).collect(),
                    }));
                }
                Message::Error(e) if refuses_the_device(e.code) => {
                    return Err(SyncError::Refused(e));
                }
                other => {
                    tracing::warn!(
                        message = other.name(),
                        "the relay's bootstrap stopped; syncing from the log"
                    );
                    let _ = ws.close(None).await;
                    return Ok(false);
                }
            }
        }
        let Some(page) = last_page else { continue };
        let cursor = done.map(|c| SyncCursor {
            relay_id: c.relay_id,
            seq: c.seq,
            hash: c.hash,
        });
        // These pages are built on worker threads from now on, while the pages before them
        // are written: the relay may send the next ones meanwhile, so they are confirmed
        // now. At most two batches wait in memory, besides the relay's pages in flight.
        let prepared = PreparedDocuments::start(docs);
        let applied = if cursor.is_none() {
            send(&mut ws, page).await?;
            match earlier.replace(prepared) {
                Some(batch) => apply(store, batch, None, report)?,
                None => true,
            }
        } else {
            let mut applied = true;
            if let Some(batch) = earlier.take() {
                applied = apply(store, batch, None, report)?;
            }
            applied && apply(store, prepared, cursor, report)?
        };
        if !applied {
            let _ = ws.close(None).await;
            return Ok(false);
        }
        if cursor.is_some() {
            send(&mut ws, page).await?;
            let _ = ws.close(None).await;
            if let Some(access) = access.filter(|a| a.user != [0; 16]) {
                // A re-sync after the user's access changed: the relay sent everything the
                // user may see; the rest goes (local changes not pushed yet stay).
                if store.access_key() != Some(access.key) {
                    let swept = store.sweep_except(&sent)?;
                    report.purged += usize::try_from(swept.removed).unwrap_or(usize::MAX);
                    report.kept_out_of_scope += swept.kept_ids.len();
                    // The scope is settled: take the relay's identity as it is now (role,
                    // teams, key).
                    store.adopt_identity(&crate::sync::identity_of(&access)?)?;
                }
            }
            return Ok(true);
        }
    }
}

/// Writes a batch of documents; `Ok(false)` when the store refused one of them (the device
/// then syncs from the log).
fn apply(
    store: &mut Store,
    batch: PreparedDocuments,
    cursor: Option<SyncCursor>,
    report: &mut SyncReport,
) -> Result<bool, SyncError> {
    let count = batch.len();
    match store.apply_prepared(batch, cursor) {
        Ok(applied) => {
            report.pulled += applied.applied;
            report.records_changed += applied.changed.len();
            report.bootstrapped += count;
            report.quarantined.extend(applied.quarantined);
            Ok(true)
        }
        Err(e @ crm_store::StoreError::InvalidDocument { .. }) => {
            tracing::warn!(error = %e, "a bootstrap page was refused; syncing from the log");
            Ok(false)
        }
        Err(e) => Err(e.into()),
    }
}

/// Confirms the pages up to `page`.
async fn send(ws: &mut Ws, page: u64) -> Result<(), SyncError> {
    let received = Message::DocumentsReceived(DocumentsReceived { page });
    ws.send(WsMessage::Binary(received.encode().into()))
        .await
        .map_err(|e| SyncError::Lost(e.to_string()))
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Errors about the device itself: the log sync would be refused the same way.
fn refuses_the_device(code: ErrorCode) -> bool {
    [
        ErrorCode::UNAUTHENTICATED,
        ErrorCode::REVOKED,
        ErrorCode::FORBIDDEN,
        ErrorCode::UNKNOWN_WORKSPACE,
    ]
    .contains(&code)
}

type WsResult = Option<Result<WsMessage, tokio_tungstenite::tungstenite::Error>>;

/// The protocol message of a frame of the bootstrap connection; `None` for pings and pongs.
/// A frame that does not decode comes back as an error message, which ends the bootstrap.
fn message(frame: WsResult) -> Result<Option<Message>, SyncError> {
    match frame {
        None | Some(Ok(WsMessage::Close(_))) => Err(SyncError::Lost(
            "the relay closed the bootstrap connection".into(),
        )),
        Some(Err(e)) => Err(SyncError::Lost(e.to_string())),
        Some(Ok(WsMessage::Binary(bytes))) => {
            Ok(Some(Message::decode(&bytes).unwrap_or_else(|e| {
                Message::Error(crm_sync::ErrorFrame {
                    code: ErrorCode::MALFORMED_FRAME,
                    message: format!("the relay sent a bad frame: {e}"),
                })
            })))
        }
        Some(Ok(WsMessage::Text(_))) => Ok(Some(Message::Error(crm_sync::ErrorFrame {
            code: ErrorCode::MALFORMED_FRAME,
            message: "the relay sent a text frame".into(),
        }))),
        Some(Ok(_)) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_endpoint_sits_beside_the_sync_endpoint() {
        assert_eq!(
            bootstrap_url("127.0.0.1:7070"),
            "ws://127.0.0.1:7070/v1/bootstrap"
        );
        assert_eq!(
            bootstrap_url("https://crm.example.com/v1/sync"),
            "wss://crm.example.com/v1/bootstrap"
        );
    }
}
