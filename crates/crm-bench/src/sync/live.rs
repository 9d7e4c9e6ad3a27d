//! Lightweight devices for the live measurements: a WebSocket and a
//! `crm_sync::device::DeviceSync` each, but no replica. A client applies every `Changes`
//! frame at once (it answers `Applied` without storing anything) and its outbox holds only
//! what the benchmark hands it, so a hundred of them cost little besides their sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crm_model::automerge::Automerge;
use crm_model::{Author, Edit, Kind, RecordId, Stamp};
use crm_sync::device::{DeviceConfig, DeviceEffect, DeviceInput, DeviceSync, Outgoing};
use crm_sync::{Cursor, DocId, DocState, Envelope, Message};
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A push the relay acknowledged.
#[derive(Debug)]
pub(crate) struct Acked {
    /// When the `Push` frame was handed to the socket.
    pub(crate) sent: Instant,
    /// When the `Ack` frame was read.
    pub(crate) acked: Instant,
    /// The log positions of its changes.
    pub(crate) seqs: Vec<u64>,
}

/// What a client saw, returned when it ends.
#[derive(Debug, Default)]
pub(crate) struct ClientEnd {
    /// Each log position received while recording was on, with when its frame was read.
    pub(crate) received: Vec<(u64, Instant)>,
    /// Each document granted while recording was on (`Grant`: it entered the user's scope),
    /// whole, with when its frame was read.
    pub(crate) granted: Vec<(Instant, DocState)>,
    /// Each document purged while recording was on (`Purge`: it left the user's scope).
    pub(crate) purged: Vec<(Instant, DocId)>,
    pub(crate) error: Option<String>,
}

/// A connected lightweight device.
pub(crate) struct Client {
    push: mpsc::UnboundedSender<Vec<Envelope>>,
    acks: mpsc::UnboundedReceiver<Acked>,
    /// The last log position this client applied.
    pub(crate) applied: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<ClientEnd>,
}

/// Shared by every client of a run.
#[derive(Clone)]
pub(crate) struct Shared {
    /// While true, clients keep the position and arrival time of what they receive.
    pub(crate) recording: Arc<AtomicBool>,
    /// Each client sends its index here when it first reports `Synced`.
    pub(crate) synced: mpsc::UnboundedSender<usize>,
}

impl Client {
    /// Connects to `url`, says `Hello` with `cursor` and runs the session in a task.
    pub(crate) async fn connect(
        index: usize,
        url: &str,
        workspace: &str,
        token: &str,
        cursor: Option<Cursor>,
        nodelay: bool,
        shared: Shared,
    ) -> Result<Client> {
        let (ws, _) = tokio::time::timeout(
            Duration::from_secs(10),
            tokio_tungstenite::connect_async_with_config(url, None, nodelay),
        )
        .await
        .context("connecting to the relay timed out")?
        .context("connecting to the relay")?;
        let machine = DeviceSync::new(DeviceConfig {
            workspace: workspace.to_string(),
            token: token.to_string(),
            push_batch: 500,
            push_bytes: crm_sync::device::PUSH_BYTES,
        });
        let (push, push_rx) = mpsc::unbounded_channel();
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let applied = Arc::new(AtomicU64::new(cursor.map_or(0, |c| c.seq)));
        let task = tokio::spawn(run(
            index,
            ws,
            machine,
            cursor,
            push_rx,
            ack_tx,
            applied.clone(),
            shared,
        ));
        Ok(Client {
            push,
            acks,
            applied,
            task,
        })
    }

    /// Queues changes in this client's outbox; it pushes them as soon as no push is in
    /// flight.
    pub(crate) fn push(&self, changes: Vec<Envelope>) -> Result<()> {
        self.push
            .send(changes)
            .map_err(|_| anyhow!("the client's session has ended"))
    }

    /// The next acknowledgement, waiting at most `wait`.
    pub(crate) async fn next_ack(&mut self, wait: Duration) -> Result<Acked> {
        tokio::time::timeout(wait, self.acks.recv())
            .await
            .context("no Ack in time")?
            .context("the client's session has ended")
    }

    /// An acknowledgement already received, if any.
    pub(crate) fn try_ack(&mut self) -> Option<Acked> {
        self.acks.try_recv().ok()
    }

    /// Closes the connection and returns what the client saw.
    pub(crate) async fn finish(self) -> ClientEnd {
        drop(self.push);
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(end)) => end,
            Ok(Err(e)) => ClientEnd {
                error: Some(format!("the client task failed: {e}")),
                ..ClientEnd::default()
            },
            Err(_) => ClientEnd {
                error: Some("the client did not close in time".into()),
                ..ClientEnd::default()
            },
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

#[allow(
    clippy::too_many_arguments,
    reason = "the task's whole state, handed over once"
)]
async fn run(
    index: usize,
    mut ws: Ws,
    mut machine: DeviceSync,
    cursor: Option<Cursor>,
    mut push_rx: mpsc::UnboundedReceiver<Vec<Envelope>>,
    ack_tx: mpsc::UnboundedSender<Acked>,
    applied: Arc<AtomicU64>,
    shared: Shared,
) -> ClientEnd {
    let mut end = ClientEnd::default();
    let from_start = cursor.is_none();
    // Local changes with their local positions, oldest first, until acknowledged.
    let mut outbox: std::collections::VecDeque<Outgoing> = Default::default();
    let mut next_local: i64 = 1;
    let mut in_flight_sent: Option<Instant> = None;
    let mut reported_synced = false;
    let mut frame_at = Instant::now();
    let mut pending = machine.handle(DeviceInput::Connected { cursor });
    loop {
        while !pending.is_empty() {
            let mut next = Vec::new();
            for effect in pending {
                match effect {
                    DeviceEffect::Send(frame) => {
                        // Postcard's first byte is the variant: 2 is `Push`.
                        let is_push = frame.first() == Some(&2);
                        if is_push {
                            in_flight_sent = Some(Instant::now());
                        }
                        if let Err(e) = ws.send(WsMessage::Binary(frame.into())).await {
                            end.error = Some(format!("sending: {e}"));
                            return end;
                        }
                    }
                    DeviceEffect::ReadOutbox { limit, .. } => {
                        let batch = outbox.iter().take(limit).cloned().collect();
                        next.extend(machine.handle(DeviceInput::Outbox(batch)));
                    }
                    DeviceEffect::Apply { entries, cursor } => {
                        if shared.recording.load(Ordering::Relaxed) {
                            end.received
                                .extend(entries.iter().map(|e| (e.seq, frame_at)));
                        }
                        applied.fetch_max(cursor.seq, Ordering::Relaxed);
                        next.extend(machine.handle(DeviceInput::Applied(cursor)));
                    }
                    // The device's user and access: nothing to store without a replica.
                    DeviceEffect::Access(_) => {}
                    // Only `crm-bench access` gives devices users who are not admins.
                    DeviceEffect::Grant(docs) => {
                        if shared.recording.load(Ordering::Relaxed) {
                            end.granted.extend(docs.into_iter().map(|d| (frame_at, d)));
                        }
                    }
                    DeviceEffect::Purge(ids) => {
                        if shared.recording.load(Ordering::Relaxed) {
                            end.purged.extend(ids.into_iter().map(|d| (frame_at, d)));
                        }
                    }
                    DeviceEffect::Acknowledged { stored, refused } => {
                        // Every benchmark edit is one its user may make: a refusal is a bug.
                        if let Some((seq, why)) = refused.first() {
                            end.error = Some(format!(
                                "the relay refused local change {seq}: {} {}",
                                why.code, why.reason
                            ));
                            let _ = ws.close(None).await;
                            return end;
                        }
                        // Pushes go oldest first: the acknowledged ones are at the front.
                        outbox.drain(..stored.len().min(outbox.len()));
                    }
                    DeviceEffect::Unpushable { local_seq, .. } => {
                        end.error = Some(format!("local change {local_seq} is too large to push"));
                        let _ = ws.close(None).await;
                        return end;
                    }
                    // A device that said no cursor reads the log from its start.
                    DeviceEffect::Reset { .. } if from_start => {}
                    DeviceEffect::Reset { .. } => {
                        end.error = Some("the relay did not know the cursor (FromStart)".into());
                        let _ = ws.close(None).await;
                        return end;
                    }
                    DeviceEffect::Synced => {
                        if !reported_synced {
                            reported_synced = true;
                            let _ = shared.synced.send(index);
                        }
                    }
                    DeviceEffect::Close { error } => {
                        end.error = Some(match error {
                            Some(e) => format!("closed by the relay: {} {}", e.code, e.message),
                            None => "closed".into(),
                        });
                        let _ = ws.close(None).await;
                        return end;
                    }
                }
            }
            pending = next;
        }
        tokio::select! {
            frame = ws.next() => match frame {
                Some(Ok(WsMessage::Binary(bytes))) => {
                    frame_at = Instant::now();
                    // 3 is `Ack`: note which log positions the push got.
                    if bytes.first() == Some(&3)
                        && let Ok(Message::Ack(ack)) = Message::decode(&bytes)
                    {
                        let _ = ack_tx.send(Acked {
                            sent: in_flight_sent.take().unwrap_or(frame_at),
                            acked: frame_at,
                            seqs: ack.results.iter().filter_map(crm_sync::Outcome::seq).collect(),
                        });
                    }
                    pending = machine.handle(DeviceInput::Frame(&bytes));
                }
                Some(Ok(WsMessage::Close(_))) | None => {
                    end.error = Some("the relay closed the connection".into());
                    return end;
                }
                Some(Err(e)) => {
                    end.error = Some(format!("reading: {e}"));
                    return end;
                }
                Some(Ok(_)) => {}
            },
            changes = push_rx.recv() => match changes {
                Some(changes) => {
                    outbox.extend(changes.into_iter().map(|envelope| {
                        let local_seq = next_local;
                        next_local += 1;
                        Outgoing { local_seq, envelope }
                    }));
                    pending = machine.handle(DeviceInput::LocalChanges);
                }
                None => {
                    let _ = ws.close(None).await;
                    return end;
                }
            },
        }
    }
}

/// Makes realistic small changes: an account record created with `crm_model::doc::create`,
/// then one-field edits with `crm_model::doc::apply_edit`, as a device's store would.
pub(crate) struct Writer {
    id: RecordId,
    doc: Option<Automerge>,
    author: Author,
    edits: u64,
}

impl Writer {
    pub(crate) fn new(user: &str) -> Writer {
        Writer {
            id: RecordId::new(),
            doc: None,
            author: Author::new(user, format!("{user}-device")),
            edits: 0,
        }
    }

    /// The next change: the record's creation the first time, then an edit of `industry`.
    pub(crate) fn next(&mut self) -> Result<Envelope> {
        let stamp = Stamp {
            author: &self.author,
            now: chrono::Utc::now(),
        };
        let change = match &mut self.doc {
            None => {
                let mut e = Edit::new(Kind::Account);
                e.set("name", &format!("Bench pusher {}", self.author.user))?;
                e.set("industry", "software")?;
                let actor = crm_model::automerge::ActorId::random();
                let doc = crm_model::doc::create(self.id, &e, stamp, actor)?;
                let change = doc.get_last_local_change();
                self.doc = Some(doc);
                change
            }
            Some(doc) => {
                self.edits += 1;
                let mut e = Edit::new(Kind::Account);
                e.set("industry", &format!("industry {}", self.edits))?;
                if crm_model::doc::apply_edit(doc, &e, stamp)?.is_none() {
                    bail!("an edit changed nothing");
                }
                doc.get_last_local_change()
            }
        };
        let change = change.context("the change just made")?;
        Ok(Envelope {
            doc_id: *self.id.as_uuid().as_bytes(),
            kind: Kind::Account.as_str().to_string(),
            scope: Default::default(),
            bytes: change.raw_bytes().to_vec(),
        })
    }
}
