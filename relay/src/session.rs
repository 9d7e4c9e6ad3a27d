//! One sync session: the tokio driver of a `RelaySync` for one WebSocket connection.
//!
//! The session task owns the state machine and the socket's reading half. A writer task owns
//! the writing half and drains a bounded queue of frames (see the outbound module), so a
//! device that does not read makes only its own session wait, and is dropped after
//! `Config::write_timeout`, or sooner when the relay is short of memory for unread data. Store work
//! runs on blocking threads; its answers come back through a channel, so the session keeps
//! reading frames while a batch is being stored or the log read. Nothing here holds a lock
//! across an `.await`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::ws::{Message as WsMessage, WebSocket, close_code};
use crm_sync::relay::{LogRead, RelayConfig, RelayEffect, RelayInput, RelaySync};
use crm_sync::{ErrorCode, ErrorFrame, Message};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tracing::Instrument;

use crate::hub::{Full, Slot};
use crate::ids::WorkspaceId;
use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::server::{AppState, Shared};
use crate::service::{Authenticated, Filtered, Pusher, StoredBatch};
use crate::store::{PushError, StoreError};

/// Answers of blocking store work.
enum Done {
    Stored(Result<StoredBatch, PushError>),
    Read(Result<LogRead, StoreError>),
}

/// A session's identity once authenticated.
struct Joined {
    workspace: WorkspaceId,
    slot: Slot,
    head: watch::Receiver<u64>,
    /// The device as the store had it, to re-decide its user's access.
    row: crate::store::Device,
    pusher: Pusher,
    /// What the user may see; `None`: everything.
    viewer: Option<Arc<crm_model::Viewer>>,
    /// The access key last told to the device.
    key: [u8; 32],
    access: watch::Receiver<u64>,
}

pub(crate) async fn run(state: AppState, socket: WebSocket) {
    let shared = state.shared;
    let span = tracing::info_span!(
        "session",
        id = shared.next_session.fetch_add(1, Ordering::Relaxed),
        workspace = tracing::field::Empty,
        device = tracing::field::Empty
    );
    counted(&shared, span, Session::new(shared.clone()).run(socket)).await;
}

/// Runs one connection's `serve` inside `span`, counted meanwhile in the sessions shutdown
/// waits for and in the connections gauge (`/v1/sync` and `/v1/bootstrap` alike).
pub(crate) async fn counted(
    shared: &Arc<Shared>,
    span: tracing::Span,
    serve: impl std::future::Future<Output = ()>,
) {
    shared.sessions.send_modify(|n| *n += 1);
    shared.metrics.connections.fetch_add(1, Ordering::Relaxed);
    async {
        tracing::debug!("connected");
        serve.await;
        tracing::debug!("disconnected");
    }
    .instrument(span)
    .await;
    shared.metrics.connections.fetch_sub(1, Ordering::Relaxed);
    shared.sessions.send_modify(|n| *n -= 1);
}

struct Session {
    shared: Arc<Shared>,
    machine: RelaySync,
    joined: Option<Joined>,
    storing: bool,
    closed: bool,
    /// This session's share of the lag gauge.
    lag: i64,
}

impl Session {
    fn new(shared: Arc<Shared>) -> Session {
        let machine = RelaySync::new(RelayConfig {
            relay_id: shared.relay.relay_id(),
            // A zero window or batch would never send anything (or read in a loop).
            window: shared.config.window.max(1),
            read_batch: shared
                .config
                .read_batch
                .clamp(1, crm_sync::MAX_BATCH_CHANGES),
        });
        Session {
            shared,
            machine,
            joined: None,
            storing: false,
            closed: false,
            lag: 0,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let config = self.shared.config.clone();
        let (sink, mut stream) = socket.split();
        let (out, writer) = Outbound::start(sink, self.shared.clone(), config.outgoing_frames);
        // At most one store and one read are in flight.
        let (done_tx, mut done_rx) = mpsc::channel(4);
        let mut shutdown = self.shared.shutdown.subscribe();
        let mut shutting_down = false;
        let hello_deadline = Instant::now() + config.hello_timeout;
        while !self.closed {
            if shutting_down && !self.storing {
                // The in-flight store (if any) was answered first, so its Ack went out.
                let effects = self.machine.handle(RelayInput::ShuttingDown);
                self.execute(effects, &out, &done_tx).await;
                break;
            }
            let mut reconsider = false;
            let effects = tokio::select! {
                frame = stream.next() => match Incoming::of(frame) {
                    Incoming::Frame(bytes) => {
                        Metrics::add(&self.shared.metrics.bytes_received, bytes.len());
                        self.machine.handle(RelayInput::Frame(&bytes))
                    }
                    Incoming::Refused(e) => refuse(e.code, e.message),
                    Incoming::Skip => continue,
                    Incoming::Closed => break,
                },
                Some(done) = done_rx.recv() => self.on_done(done),
                Some(event) = next_event(self.joined.as_mut()) => match event {
                    Event::Head(head) => self.machine.handle(RelayInput::NewHead(head)),
                    Event::Revoked => refuse(ErrorCode::REVOKED, revoked_message()),
                    Event::Access => {
                        reconsider = true;
                        Vec::new()
                    }
                },
                _ = shutdown.wait_for(|s| *s), if !shutting_down => {
                    shutting_down = true;
                    continue;
                }
                () = tokio::time::sleep_until(hello_deadline), if self.joined.is_none() => refuse(
                    ErrorCode::UNAUTHENTICATED,
                    format!("no Hello within {} s", config.hello_timeout.as_secs()),
                ),
                () = out.closed() => {
                    tracing::debug!("the device stopped reading; dropping the session");
                    break;
                }
            };
            self.execute(effects, &out, &done_tx).await;
            if reconsider && !self.closed {
                let effects = self.reconsider_access().await;
                self.execute(effects, &out, &done_tx).await;
            }
        }
        out.finish(writer, stream).await;
        self.shared
            .metrics
            .lag
            .fetch_sub(self.lag, Ordering::Relaxed);
    }

    fn on_done(&mut self, done: Done) -> Vec<RelayEffect> {
        match done {
            Done::Stored(result) => {
                self.storing = false;
                let result = match result {
                    Ok(batch) => {
                        let metrics = &self.shared.metrics;
                        Metrics::add(&metrics.changes_stored, batch.stored);
                        Metrics::add(&metrics.duplicate_changes, batch.duplicates);
                        tracing::debug!(
                            stored = batch.stored,
                            duplicates = batch.duplicates,
                            refused = batch.refused,
                            head = batch.head,
                            "batch stored"
                        );
                        if batch.refused > 0 {
                            Metrics::add(&metrics.changes_refused, batch.refused);
                            tracing::info!(
                                refused = batch.refused,
                                "changes refused by write authorization"
                            );
                        }
                        if batch.stored > 0
                            && let Some(j) = &self.joined
                        {
                            j.slot.publish_batch(batch.head, batch.tail);
                        }
                        Ok(batch.outcomes)
                    }
                    Err(e) => {
                        if let PushError::Store(inner) = &e {
                            tracing::error!(error = %crate::error_chain(inner), "storing a batch failed");
                        }
                        Err(e.to_frame())
                    }
                };
                self.machine.handle(RelayInput::Stored(result))
            }
            Done::Read(Ok(read)) => self.machine.handle(RelayInput::Read(read)),
            Done::Read(Err(e)) => {
                tracing::error!(error = %crate::error_chain(&e), "reading the log failed");
                refuse(
                    ErrorCode::INTERNAL,
                    "the relay could not read its log; try again later".into(),
                )
            }
        }
    }

    /// Carries out effects in order, feeding the machine the answers of those it must wait
    /// for (authentication) and starting the others (store, read) in the background.
    async fn execute(
        &mut self,
        effects: Vec<RelayEffect>,
        out: &Outbound,
        done: &mpsc::Sender<Done>,
    ) {
        let mut queue = VecDeque::from(effects);
        while let Some(effect) = queue.pop_front() {
            match effect {
                RelayEffect::Send(frame) => {
                    if matches!(queue.front(), Some(RelayEffect::Close)) {
                        self.note_refusal(&frame);
                    }
                    if out.frame(frame).await.is_err() {
                        self.closed = true;
                        return;
                    }
                }
                RelayEffect::Authenticate {
                    workspace,
                    token,
                    cursor,
                } => {
                    let store = self.shared.relay.clone();
                    let answer = tokio::task::spawn_blocking(move || {
                        store.authenticate(&workspace, &token, cursor.as_ref())
                    })
                    .await;
                    let answer = match answer {
                        Ok(Ok(auth)) => self.join(auth),
                        Ok(Err(e)) => {
                            if let crate::store::AuthError::Store(inner) = &e {
                                tracing::error!(error = %crate::error_chain(inner), "authentication failed");
                            }
                            Err(e.to_frame())
                        }
                        Err(_) => Err(internal()),
                    };
                    queue.extend(self.machine.handle(RelayInput::Authenticated(answer)));
                }
                RelayEffect::Store { changes, .. } => {
                    Metrics::add(&self.shared.metrics.pushes, 1);
                    let Some(joined) = &self.joined else {
                        queue.extend(self.machine.handle(RelayInput::Stored(Err(internal()))));
                        continue;
                    };
                    if !joined.slot.allow_push(std::time::Instant::now()) {
                        let limited = ErrorFrame {
                            code: ErrorCode::RATE_LIMITED,
                            message: format!(
                                "more than {} pushes a second; reconnect later",
                                self.shared.config.pushes_per_second
                            ),
                        };
                        queue.extend(self.machine.handle(RelayInput::Stored(Err(limited))));
                        continue;
                    }
                    self.storing = true;
                    let (store, done) = (self.shared.relay.clone(), done.clone());
                    let (workspace, pusher) = (joined.workspace, joined.pusher.clone());
                    tokio::task::spawn_blocking(move || {
                        let result = store.store_batch(workspace, &pusher, &changes);
                        // The session may be gone; the batch is stored all the same, and the
                        // device gets its Ack when it pushes it again.
                        let _ = done.try_send(Done::Stored(result));
                    });
                }
                RelayEffect::Read { after, limit } => {
                    let Some(joined) = &self.joined else {
                        continue;
                    };
                    // At the live edge: the batch just stored, without reading it back, filtered
                    // for this session's user (a grant needs the store: then read as usual).
                    if let Some(raw) = joined.slot.tail(after, limit)
                        && let Filtered::Read(read) =
                            crate::service::filter(&raw, joined.viewer.as_deref())
                    {
                        Metrics::add(&self.shared.metrics.tail_reads, 1);
                        queue.extend(self.machine.handle(RelayInput::Read(read)));
                        continue;
                    }
                    let (store, done) = (self.shared.relay.clone(), done.clone());
                    let workspace = joined.workspace;
                    let viewer = joined.viewer.clone();
                    tokio::task::spawn_blocking(move || {
                        let read = store.read(workspace, after, limit, viewer.as_deref());
                        let _ = done.try_send(Done::Read(read));
                    });
                }
                RelayEffect::Close => {
                    self.closed = true;
                    out.close(close_code::NORMAL).await;
                    return;
                }
            }
        }
        self.update_lag();
    }

    /// Admits an authenticated device to its workspace, within the workspace's limit.
    fn join(&mut self, auth: Authenticated) -> Result<crm_sync::relay::Authorized, ErrorFrame> {
        let span = tracing::Span::current();
        span.record("workspace", tracing::field::display(auth.workspace));
        span.record("device", tracing::field::display(auth.device));
        let (slot, head) = self
            .shared
            .hub
            .join(auth.workspace, auth.device, auth.authorized.head)
            .map_err(|why| full(&why, &self.shared.config))?;
        tracing::info!(user = %auth.user, role = %auth.role, "authenticated");
        let slot_access = slot.access();
        self.joined = Some(Joined {
            workspace: auth.workspace,
            slot,
            head,
            row: auth.row,
            pusher: auth.pusher,
            viewer: auth.viewer,
            key: auth.authorized.access.key,
            access: slot_access,
        });
        Ok(auth.authorized)
    }

    /// The workspace's directory or role matrix changed: re-decide what this session's user
    /// may see. When it changed for them, the device is told (`Access`) and re-syncs its
    /// scope; a user made inactive or removed is refused.
    async fn reconsider_access(&mut self) -> Vec<RelayEffect> {
        let Some(joined) = &self.joined else {
            return Vec::new();
        };
        let (relay, workspace, row) = (
            self.shared.relay.clone(),
            joined.workspace,
            joined.row.clone(),
        );
        let decided = tokio::task::spawn_blocking(move || relay.viewer_of(workspace, &row)).await;
        match decided {
            Ok(Ok((viewer, access, _))) => {
                let Some(joined) = self.joined.as_mut() else {
                    return Vec::new();
                };
                if access.key == joined.key {
                    return Vec::new();
                }
                tracing::info!(role = %access.role, "the user's access changed");
                joined.key = access.key;
                joined.viewer = viewer;
                joined.pusher.user = access.name.clone();
                self.machine.handle(RelayInput::Access(access))
            }
            Ok(Err(e)) => {
                let frame = e.to_frame();
                refuse(frame.code, frame.message)
            }
            Err(_) => Vec::new(),
        }
    }

    fn note_refusal(&self, frame: &[u8]) {
        if let Ok(Message::Error(e)) = Message::decode(frame) {
            self.shared.metrics.rejected(e.code);
            if e.code == ErrorCode::GOING_AWAY {
                tracing::debug!("going away");
            } else {
                tracing::info!(code = %e.code, message = %e.message, "session refused");
            }
        }
    }

    fn update_lag(&mut self) {
        let lag = i64::try_from(self.machine.lag()).unwrap_or(i64::MAX);
        self.shared
            .metrics
            .lag
            .fetch_add(lag - self.lag, Ordering::Relaxed);
        self.lag = lag;
    }
}

/// What the session's workspace says to it once joined.
enum Event {
    /// The log's head moved.
    Head(u64),
    /// The device's token was revoked: the session ends now.
    Revoked,
    /// The workspace's access version moved.
    Access,
}

/// The next event of the session's workspace; never resolves before authentication.
async fn next_event(joined: Option<&mut Joined>) -> Option<Event> {
    match joined {
        Some(j) => tokio::select! {
            biased;
            () = j.slot.revoked() => Some(Event::Revoked),
            changed = j.access.changed() => {
                changed.ok()?;
                j.access.borrow_and_update();
                Some(Event::Access)
            }
            changed = j.head.changed() => {
                changed.ok()?;
                Some(Event::Head(*j.head.borrow_and_update()))
            }
        },
        None => std::future::pending().await,
    }
}

/// What a session of a revoked device is told as it is closed.
pub(crate) fn revoked_message() -> String {
    "this device's token was revoked; ask an admin for a new one".into()
}

/// The refusal of a session that may not join its workspace.
pub(crate) fn full(why: &Full, config: &crate::server::Config) -> ErrorFrame {
    ErrorFrame {
        code: ErrorCode::RATE_LIMITED,
        message: match why {
            Full::Workspace => format!(
                "the workspace has its maximum of {} connections; try again later",
                config.max_connections_per_workspace
            ),
            Full::Device => format!(
                "this device already has its maximum of {} open connections; close one or \
                 try again later",
                config.max_sessions_per_device
            ),
        },
    }
}

/// An error frame and a close, for refusals the driver finds itself.
fn refuse(code: ErrorCode, message: String) -> Vec<RelayEffect> {
    vec![
        RelayEffect::Send(Message::Error(ErrorFrame { code, message }).encode()),
        RelayEffect::Close,
    ]
}

fn internal() -> ErrorFrame {
    ErrorFrame {
        code: ErrorCode::INTERNAL,
        message: "the relay failed; try again later".into(),
    }
}

/// What a read from the socket means to a session.
pub(crate) enum Incoming {
    /// A binary frame: one protocol message.
    Frame(axum::body::Bytes),
    /// A frame the protocol has no business with (pings are answered by the socket itself).
    Skip,
    /// The device closed the connection, or it broke.
    Closed,
    /// A frame the session must refuse with this error.
    Refused(ErrorFrame),
}

impl Incoming {
    pub(crate) fn of(frame: Option<Result<WsMessage, axum::Error>>) -> Incoming {
        match frame {
            Some(Ok(WsMessage::Binary(bytes))) => Incoming::Frame(bytes),
            Some(Ok(WsMessage::Text(_))) => Incoming::Refused(ErrorFrame {
                code: ErrorCode::MALFORMED_FRAME,
                message: "text frames are not part of the protocol; send binary frames".into(),
            }),
            Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => Incoming::Skip,
            Some(Ok(WsMessage::Close(_))) | None => Incoming::Closed,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "reading the socket failed");
                // The socket stops reading a frame at the limit; its error names no kind.
                let text = e.to_string();
                if text.contains("too long") || text.contains("too big") {
                    Incoming::Refused(ErrorFrame {
                        code: ErrorCode::TOO_LARGE,
                        message: format!(
                            "frames are limited to {} bytes",
                            crm_sync::MAX_FRAME_BYTES
                        ),
                    })
                } else {
                    Incoming::Closed
                }
            }
        }
    }
}
