//! The sending half of a connection, shared by `/v1/sync` and `/v1/bootstrap` sessions, and
//! the bound on the relay's memory for data its devices have not read.
//!
//! A session queues frames ([`Outbound::frame`]); a writer task ([`Outbound::start`]) sends
//! them, each within `Config::write_timeout`. A device that does not read makes only its own
//! session wait. Every queued frame counts, until the socket has taken it, against the
//! session's unsent bytes and the relay's ([`crate::Config::max_unsent_bytes`], 256 MiB by
//! default): **slow readers are dropped, not buffered**.
//!
//! - A session that already has unsent data waits, before queueing a frame that would take
//!   the relay's total past the budget, until its writer has sent what it queued. A session
//!   with nothing unsent may always queue one frame, so a device that reads is slowed by
//!   others' backlog, never dropped for it (the connection cap bounds those frames).
//! - While the total is above half the budget, a writer that has not got a frame into the
//!   socket within [`STALL_UNDER_PRESSURE`] drops its session, freeing its queue: the
//!   devices that stopped reading go, long before their write timeout, and reconnect later
//!   from their cursor if they still can.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::{mpsc, watch};
use tracing::Instrument as _;

use crate::metrics::Metrics;
use crate::server::Shared;

/// How long a closing session waits for the device to finish the close handshake, so the
/// device reads the error frame before the connection goes.
const CLOSE_LINGER: Duration = Duration::from_secs(2);
/// Under memory pressure, how long a frame may wait for the socket before its session is
/// dropped as a slow reader.
pub(crate) const STALL_UNDER_PRESSURE: Duration = Duration::from_secs(2);
/// How often a waiting writer looks at the pressure.
const PRESSURE_CHECK: Duration = Duration::from_millis(250);

/// What the writer task sends.
enum Out {
    Frame(Counted),
    /// Send a close frame and stop.
    Close(u16),
}

/// A queued frame, counted against its session's and the relay's unsent bytes until dropped
/// (sent, or thrown away with its session).
struct Counted {
    frame: Vec<u8>,
    len: usize,
    mine: Arc<watch::Sender<usize>>,
    shared: Arc<Shared>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.mine.send_modify(|m| *m -= self.len);
        self.shared
            .metrics
            .unsent
            .fetch_sub(self.len, Ordering::AcqRel);
    }
}

/// The frame was not queued: the writer stopped (the device went away, did not read in time,
/// or was dropped as a slow reader).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Gone;

/// The sending half of one connection.
pub(crate) struct Outbound {
    tx: mpsc::Sender<Out>,
    /// This session's queued bytes.
    mine: Arc<watch::Sender<usize>>,
    shared: Arc<Shared>,
}

/// The writer task of a connection.
pub(crate) struct Writer(tokio::task::JoinHandle<()>);

impl Outbound {
    /// Starts the writer task of `sink`, with room for `queue` frames.
    pub(crate) fn start(
        sink: SplitSink<WebSocket, WsMessage>,
        shared: Arc<Shared>,
        queue: usize,
    ) -> (Outbound, Writer) {
        let (tx, rx) = mpsc::channel(queue.max(1));
        let writer = tokio::spawn(write_frames(sink, rx, shared.clone()).in_current_span());
        let out = Outbound {
            tx,
            mine: Arc::new(watch::channel(0).0),
            shared,
        };
        (out, Writer(writer))
    }

    /// Queues one frame, waiting while the queue is full, or while this session has frames
    /// queued and the relay's unread data is at its budget (see the module's doc).
    pub(crate) async fn frame(&self, frame: Vec<u8>) -> Result<(), Gone> {
        let len = frame.len();
        let budget = self.shared.config.max_unsent_bytes;
        let over = |total: usize| total.saturating_add(len) > budget;
        if *self.mine.borrow() > 0 && over(self.shared.metrics.unsent.load(Ordering::Acquire)) {
            let mut mine = self.mine.subscribe();
            tokio::select! {
                _ = mine.wait_for(|m| *m == 0) => {}
                () = self.tx.closed() => return Err(Gone),
            }
        }
        self.mine.send_modify(|m| *m += len);
        self.shared.metrics.unsent.fetch_add(len, Ordering::AcqRel);
        let counted = Counted {
            frame,
            len,
            mine: self.mine.clone(),
            shared: self.shared.clone(),
        };
        self.tx.send(Out::Frame(counted)).await.map_err(|_| Gone)
    }

    /// Queues a close frame; the writer stops after it.
    pub(crate) async fn close(&self, code: u16) {
        let _ = self.tx.send(Out::Close(code)).await;
    }

    /// Resolves once the writer has stopped.
    pub(crate) async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Ends the connection: lets the writer send what is queued (an error frame and the
    /// close, say), then gives the device a moment to answer the close so it surely reads
    /// the error first.
    pub(crate) async fn finish(self, writer: Writer, mut stream: SplitStream<WebSocket>) {
        let timeout = self.shared.config.write_timeout;
        drop(self.tx);
        let _ = tokio::time::timeout(timeout, writer.0).await;
        let _ = tokio::time::timeout(CLOSE_LINGER, async {
            while let Some(Ok(_)) = stream.next().await {}
        })
        .await;
    }
}

/// Sends queued frames to the device until a close, the end of the queue or an abort. A
/// frame must reach the socket within the write timeout, and within
/// [`STALL_UNDER_PRESSURE`] while the relay's unread data is above half its budget.
async fn write_frames(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut frames: mpsc::Receiver<Out>,
    shared: Arc<Shared>,
) {
    let timeout = shared.config.write_timeout;
    let pressure = shared.config.max_unsent_bytes / 2;
    loop {
        let Some(out) = frames.recv().await else {
            break;
        };
        match out {
            Out::Frame(mut counted) => {
                let bytes = std::mem::take(&mut counted.frame);
                let len = counted.len;
                let send = sink.send(WsMessage::Binary(bytes.into()));
                tokio::pin!(send);
                let started = tokio::time::Instant::now();
                let mut check = tokio::time::interval(PRESSURE_CHECK);
                let result = loop {
                    tokio::select! {
                        result = &mut send => break Some(result),
                        _ = check.tick() => {
                            let waited = started.elapsed();
                            if waited >= timeout {
                                tracing::info!("the device did not read for {timeout:?}; dropping it");
                                break None;
                            }
                            if waited >= STALL_UNDER_PRESSURE
                                && shared.metrics.unsent.load(Ordering::Acquire) > pressure
                            {
                                Metrics::add(&shared.metrics.slow_readers_dropped, 1);
                                tracing::info!(
                                    waited = ?waited,
                                    "dropping a slow reader: the relay is short of memory for unread data"
                                );
                                break None;
                            }
                        }
                    }
                };
                // The frame is the socket's now (or thrown away): it no longer counts.
                drop(counted);
                match result {
                    Some(Ok(())) => Metrics::add(&shared.metrics.bytes_sent, len),
                    Some(Err(e)) => {
                        tracing::debug!(error = %e, "writing to the socket failed");
                        return;
                    }
                    None => return,
                }
            }
            Out::Close(code) => {
                let close = WsMessage::Close(Some(CloseFrame {
                    code,
                    reason: "".into(),
                }));
                let _ = tokio::time::timeout(timeout, sink.send(close)).await;
                return;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, sink.close()).await;
}
