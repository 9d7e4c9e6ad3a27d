//! `GET /v1/bootstrap`: a new device's first sync, from the relay's document snapshots
//! instead of the whole change log (docs/PROTOCOL.md, "Bootstrap").
//!
//! The device says `Hello` (authenticated exactly as on `/v1/sync`); the relay fixes the log
//! position `B` it will serve (the head at that moment), answers `Welcome { head: B }` and
//! sends the workspace's documents in pages (`Documents`), each document as its snapshot
//! plus the changes up to `B` the snapshot lacks. The last page carries the cursor at `B`,
//! from which the device continues on `/v1/sync`. At most [`PAGES_IN_FLIGHT`] pages
//! ([`BYTES_IN_FLIGHT`] bytes past the first) are unconfirmed (`DocumentsReceived`) at a time, and one page is read at a time on a blocking
//! thread, so a session holds a few pages of memory whatever the workspace's size.
//!
//! The exchange is short and one-way, so it is driven here directly rather than by a
//! sans-IO machine like `/v1/sync`; the socket plumbing is the sync session's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{WebSocket, close_code};
use crm_sync::{
    Cursor, DocId, Documents, ErrorCode, ErrorFrame, Hello, MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION,
    Message, PROTOCOL_VERSION, Resume, Welcome,
};
use futures_util::StreamExt as _;
use futures_util::stream::SplitStream;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::hub::Slot;
use crate::ids::WorkspaceId;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::server::{AppState, Shared};
use crate::service::DocumentsPage;
use crate::session::{Incoming, counted};
use crate::store::{AuthError, StoreError};

/// The largest page: the frame limit less room for the page's own fields.
pub(crate) const MAX_PAGE_BYTES: usize = MAX_FRAME_BYTES - (64 << 10);
/// Pages sent and not yet confirmed by the device: enough that the device finds several
/// waiting when it finishes applying some, and applies them in one transaction…
const PAGES_IN_FLIGHT: u64 = 8;
/// …and, beyond the first, no more than this many bytes of them, so a slow device holds a
/// bounded part of the relay's memory however large the pages.
const BYTES_IN_FLIGHT: usize = 16 << 20;

/// How a bootstrap ends.
enum End {
    /// Every page was sent and confirmed: a normal close.
    Done,
    /// This error frame, then a close.
    Refused(ErrorFrame),
    /// The device hung up or said `Error`: nothing more to say.
    Gone,
}

fn refused(code: ErrorCode, message: String) -> End {
    End::Refused(ErrorFrame { code, message })
}

fn unexpected(message: &Message) -> End {
    refused(
        ErrorCode::UNEXPECTED_MESSAGE,
        format!("unexpected {} on /v1/bootstrap", message.name()),
    )
}

fn going_away() -> End {
    refused(
        ErrorCode::GOING_AWAY,
        "the relay is shutting down; reconnect later".into(),
    )
}

pub(crate) async fn run(state: AppState, socket: WebSocket) {
    let shared = state.shared;
    let span = tracing::info_span!(
        "bootstrap",
        id = shared.next_session.fetch_add(1, Ordering::Relaxed),
        workspace = tracing::field::Empty,
        device = tracing::field::Empty
    );
    counted(&shared, span, serve_socket(shared.clone(), socket)).await;
}

async fn serve_socket(shared: Arc<Shared>, socket: WebSocket) {
    let config = shared.config.clone();
    let (sink, stream) = socket.split();
    // Room for every page in flight and the error and close after them.
    let queue = config.outgoing_frames.max(PAGES_IN_FLIGHT as usize + 2);
    let (out, writer) = Outbound::start(sink, shared.clone(), queue);
    let mut bootstrap = Bootstrap {
        shared,
        stream,
        out,
        slot: None,
    };
    match bootstrap.exchange().await {
        End::Done => {
            tracing::debug!("bootstrap complete");
            bootstrap.out.close(close_code::NORMAL).await;
        }
        End::Refused(error) => {
            bootstrap.shared.metrics.rejected(error.code);
            if error.code == ErrorCode::GOING_AWAY {
                tracing::debug!("going away");
            } else {
                tracing::info!(code = %error.code, message = %error.message, "bootstrap refused");
            }
            let frame = Message::Error(error).encode();
            if bootstrap.out.frame(frame).await.is_ok() {
                bootstrap.out.close(close_code::NORMAL).await;
            }
        }
        End::Gone => {}
    }
    let Bootstrap {
        out, stream, slot, ..
    } = bootstrap;
    out.finish(writer, stream).await;
    drop(slot);
}

struct Bootstrap {
    shared: Arc<Shared>,
    stream: SplitStream<WebSocket>,
    out: Outbound,
    /// The session's place among its workspace's connections, once authenticated.
    slot: Option<Slot>,
}

impl Bootstrap {
    async fn exchange(&mut self) -> End {
        let hello = match self.hello().await {
            Ok(hello) => hello,
            Err(end) => return end,
        };
        let lo = hello.min_protocol.max(MIN_PROTOCOL_VERSION);
        let hi = hello.max_protocol.min(PROTOCOL_VERSION);
        if lo > hi {
            return refused(
                ErrorCode::PROTOCOL_MISMATCH,
                format!(
                    "device speaks protocol {}..={}, relay speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                    hello.min_protocol, hello.max_protocol
                ),
            );
        }
        // The cursor means nothing here: a bootstrap always starts from nothing.
        let Hello {
            workspace, token, ..
        } = hello;
        let store = self.shared.relay.clone();
        let auth =
            tokio::task::spawn_blocking(move || store.authenticate(&workspace, &token, None)).await;
        let auth = match auth {
            Ok(Ok(auth)) => auth,
            Ok(Err(e)) => {
                if let AuthError::Store(inner) = &e {
                    tracing::error!(error = %crate::error_chain(inner), "authentication failed");
                }
                return End::Refused(e.to_frame());
            }
            Err(_) => return internal("the relay failed; try again later"),
        };
        let span = tracing::Span::current();
        span.record("workspace", tracing::field::display(auth.workspace));
        span.record("device", tracing::field::display(auth.device));
        match self
            .shared
            .hub
            .join(auth.workspace, auth.device, auth.authorized.head)
        {
            Ok((slot, _)) => self.slot = Some(slot),
            Err(why) => return End::Refused(crate::session::full(&why, &self.shared.config)),
        }
        tracing::info!(user = %auth.user, role = %auth.role, "bootstrap authenticated");
        let workspace = auth.workspace;
        let store = self.shared.relay.clone();
        let (head, hash) = match tokio::task::spawn_blocking(move || store.head(workspace)).await {
            Ok(Ok(head)) => head,
            Ok(Err(e)) => return self.read_failed(&e),
            Err(_) => return internal("the relay failed; try again later"),
        };
        let relay_id = self.shared.relay.relay_id();
        let welcome = Message::Welcome(Welcome {
            protocol: hi,
            relay_id,
            head,
            resume: Resume::FromStart,
            access: auth.authorized.access.clone(),
        });
        if self.out.frame(welcome.encode()).await.is_err() {
            return End::Gone;
        }
        let done = Cursor {
            relay_id,
            seq: head,
            hash,
        };
        self.send_pages(workspace, done, auth.viewer.clone()).await
    }

    /// Waits for the device's `Hello`.
    async fn hello(&mut self) -> Result<Hello, End> {
        let timeout = self.shared.config.hello_timeout;
        let deadline = Instant::now() + timeout;
        let mut shutdown = self.shared.shutdown.subscribe();
        loop {
            tokio::select! {
                frame = self.stream.next() => match self.message(frame)? {
                    Some(Message::Hello(hello)) => return Ok(hello),
                    Some(other) => return Err(unexpected(&other)),
                    None => {}
                },
                () = stopping(&mut shutdown) => return Err(going_away()),
                () = tokio::time::sleep_until(deadline) => {
                    return Err(refused(
                        ErrorCode::UNAUTHENTICATED,
                        format!("no Hello within {} s", timeout.as_secs()),
                    ));
                }
            }
        }
    }

    /// Sends every page of the workspace's documents as of log position `done.seq`, at most
    /// `PAGES_IN_FLIGHT` unconfirmed, until the device has confirmed the last.
    async fn send_pages(
        &mut self,
        workspace: WorkspaceId,
        done: Cursor,
        viewer: Option<std::sync::Arc<crm_model::Viewer>>,
    ) -> End {
        let config = self.shared.config.clone();
        let page_bytes = config.bootstrap_page_bytes.min(MAX_PAGE_BYTES);
        let (read_tx, mut read_rx) = mpsc::channel(1);
        let mut after: Option<DocId> = None;
        // Pages sent and confirmed, as counts: pages `confirmed..sent` are in flight.
        let (mut sent, mut confirmed) = (0u64, 0u64);
        // The sizes of the pages in flight, oldest first.
        let mut in_flight: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
        let mut reading = false;
        let mut last_sent = false;
        // While pages are in flight: when the device must have confirmed one more.
        let mut deadline: Option<Instant> = None;
        let mut shutdown = self.shared.shutdown.subscribe();
        loop {
            if last_sent && confirmed == sent {
                return End::Done;
            }
            let room = sent == confirmed
                || (sent - confirmed < PAGES_IN_FLIGHT
                    && in_flight.iter().sum::<usize>() < BYTES_IN_FLIGHT);
            if !reading && !last_sent && room {
                reading = true;
                let (store, read_tx) = (self.shared.relay.clone(), read_tx.clone());
                let viewer = viewer.clone();
                tokio::task::spawn_blocking(move || {
                    let page = store.documents_page(
                        workspace,
                        after,
                        done.seq,
                        page_bytes,
                        viewer.as_deref(),
                    );
                    // The session may be gone: then nobody wants the page.
                    let _ = read_tx.try_send(page);
                });
            }
            tokio::select! {
                frame = self.stream.next() => match self.message(frame) {
                    Ok(Some(Message::DocumentsReceived(r))) => {
                        if r.page >= sent {
                            return refused(
                                ErrorCode::UNEXPECTED_MESSAGE,
                                format!("DocumentsReceived for page {} before it was sent", r.page),
                            );
                        }
                        while confirmed <= r.page {
                            in_flight.pop_front();
                            confirmed += 1;
                        }
                        deadline = (confirmed < sent).then(|| Instant::now() + config.write_timeout);
                    }
                    Ok(Some(other)) => return unexpected(&other),
                    Ok(None) => {}
                    Err(end) => return end,
                },
                Some(read) = read_rx.recv() => {
                    reading = false;
                    let page = match read {
                        Ok(page) => page,
                        Err(e) => return self.read_failed(&e),
                    };
                    let DocumentsPage { docs, next } = page;
                    let last = next.is_none();
                    let count = docs.len();
                    let frame = Message::Documents(Documents {
                        page: sent,
                        docs,
                        done: last.then_some(done),
                    })
                    .encode();
                    if frame.is_empty() || frame.len() > MAX_FRAME_BYTES {
                        tracing::error!(bytes = frame.len(), "a bootstrap page does not fit in a frame");
                        return internal("the relay could not send a page; try again later");
                    }
                    tracing::debug!(page = sent, documents = count, bytes = frame.len(), "page");
                    in_flight.push_back(frame.len());
                    if self.out.frame(frame).await.is_err() {
                        return End::Gone;
                    }
                    Metrics::add(&self.shared.metrics.bootstrap_pages, 1);
                    sent += 1;
                    after = next;
                    last_sent = last;
                    if deadline.is_none() {
                        deadline = Some(Instant::now() + config.write_timeout);
                    }
                }
                () = stopping(&mut shutdown) => return going_away(),
                () = revoked(self.slot.as_ref()) => {
                    return refused(ErrorCode::REVOKED, crate::session::revoked_message());
                }
                () = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                    return refused(
                        ErrorCode::UNEXPECTED_MESSAGE,
                        format!(
                            "no DocumentsReceived for page {confirmed} within {} s",
                            config.write_timeout.as_secs()
                        ),
                    );
                }
                () = self.out.closed() => {
                    tracing::debug!("the device stopped reading; dropping the session");
                    return End::Gone;
                }
            }
        }
    }

    /// The protocol message in what the socket gave, `None` for frames to skip, or how the
    /// session ends.
    fn message(
        &self,
        frame: Option<Result<axum::extract::ws::Message, axum::Error>>,
    ) -> Result<Option<Message>, End> {
        match Incoming::of(frame) {
            Incoming::Frame(bytes) => {
                Metrics::add(&self.shared.metrics.bytes_received, bytes.len());
                match Message::decode(&bytes) {
                    Ok(Message::Error(e)) => {
                        tracing::debug!(code = %e.code, message = %e.message, "the device gave up");
                        Err(End::Gone)
                    }
                    Ok(message) => Ok(Some(message)),
                    Err(e) => Err(refused(ErrorCode::from(&e), e.to_string())),
                }
            }
            Incoming::Skip => Ok(None),
            Incoming::Closed => Err(End::Gone),
            Incoming::Refused(e) => Err(End::Refused(e)),
        }
    }

    fn read_failed(&self, e: &StoreError) -> End {
        match e {
            // The device falls back to the log, which has no such limit.
            StoreError::DocumentTooLarge { .. } => {
                tracing::warn!(error = %e, "a document does not fit in a bootstrap page");
                internal(&e.to_string())
            }
            _ => {
                tracing::error!(error = %crate::error_chain(e), "reading documents failed");
                internal("the relay could not read its documents; try again later")
            }
        }
    }
}

/// Resolves once the relay starts shutting down (and holds no lock on the flag after).
async fn stopping(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Resolves once the session's device is revoked; never before it has joined.
async fn revoked(slot: Option<&Slot>) {
    match slot {
        Some(slot) => slot.revoked().await,
        None => std::future::pending().await,
    }
}

fn internal(message: &str) -> End {
    refused(ErrorCode::INTERNAL, message.into())
}

#[cfg(test)]
mod tests {
    /// Issue 12, failure 7: docs/PROTOCOL.md said 8 pages in flight in its text and 2 in its
    /// limits table. Both must say what this code does.
    #[test]
    fn the_protocol_doc_states_the_pages_in_flight_the_code_allows() {
        let doc = include_str!("../../docs/PROTOCOL.md");
        let flowing = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let text = format!(
            "At most {} pages (and, past the first, {} MiB)",
            super::PAGES_IN_FLIGHT,
            super::BYTES_IN_FLIGHT >> 20
        );
        assert!(
            flowing.contains(&text),
            "the Bootstrap section lacks {text:?}"
        );
        let row = doc
            .lines()
            .find(|l| l.starts_with("| pages in flight on `/v1/bootstrap` |"))
            .expect("a limits row for the pages in flight");
        let expected = format!(
            "| pages in flight on `/v1/bootstrap` | {}, and {} MiB past the first |",
            super::PAGES_IN_FLIGHT,
            super::BYTES_IN_FLIGHT >> 20
        );
        assert_eq!(row, expected);
    }
}
