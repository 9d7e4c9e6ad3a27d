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
    /// The changes the relay refused, as `code reason`. Every benchmark change is one its
    /// user may make, so [`Client::next_ack`] turns any refusal into an error.
    pub(crate) refused: Vec<String>,
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
    /// The cursor after the last `Changes` frame applied: a later client can start there.
    pub(crate) cursor: Option<Cursor>,
    pub(crate) error: Option<String>,
}

/// A connected lightweight device.
pub(crate) struct Client {
    index: usize,
    push: mpsc::UnboundedSender<Vec<Envelope>>,
    acks: mpsc::UnboundedReceiver<Acked>,
    /// The last log position this client applied.
    pub(crate) applied: Arc<AtomicU64>,
    /// Log entries this client received (every `Changes` frame, recording or not).
    pub(crate) entries: Arc<AtomicU64>,
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
        let entries = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(
            index,
            ws,
            machine,
            cursor,
            push_rx,
            ack_tx,
            Counters {
                applied: applied.clone(),
                entries: entries.clone(),
            },
            shared,
        ));
        Ok(Client {
            index,
            push,
            acks,
            applied,
            entries,
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

    /// The next acknowledgement, waiting at most `wait`; an error if the relay refused any
    /// of its changes.
    pub(crate) async fn next_ack(&mut self, wait: Duration) -> Result<Acked> {
        let acked = tokio::time::timeout(wait, self.acks.recv())
            .await
            .with_context(|| format!("device {}: no Ack in time", self.index))?
            .with_context(|| format!("device {}: the client's session has ended", self.index))?;
        self.accepted(acked)
    }

    /// An acknowledgement already received, if any; an error if the relay refused any of its
    /// changes.
    pub(crate) fn try_ack(&mut self) -> Result<Option<Acked>> {
        match self.acks.try_recv() {
            Ok(acked) => self.accepted(acked).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// `acked`, unless the relay refused a change of it: every change the benchmark makes is
    /// one its device's user may make, so a refusal is a bug of the benchmark or the relay.
    fn accepted(&self, acked: Acked) -> Result<Acked> {
        if let Some(first) = acked.refused.first() {
            bail!(
                "device {}: the relay refused {} of the {} changes of a push, the first with {first}",
                self.index,
                acked.refused.len(),
                acked.refused.len() + acked.seqs.len(),
            );
        }
        Ok(acked)
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

/// What a client's task counts for the benchmark while it runs.
struct Counters {
    /// The last log position applied.
    applied: Arc<AtomicU64>,
    /// Log entries received.
    entries: Arc<AtomicU64>,
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
    counters: Counters,
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
                        counters
                            .entries
                            .fetch_add(entries.len() as u64, Ordering::Relaxed);
                        counters.applied.fetch_max(cursor.seq, Ordering::Relaxed);
                        end.cursor = Some(cursor);
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
                        let refused = ack
                            .results
                            .iter()
                            .filter_map(|o| match o {
                                crm_sync::Outcome::Refused(why) => {
                                    Some(format!("{} {}", why.code, why.reason))
                                }
                                crm_sync::Outcome::Stored(_) => None,
                            })
                            .collect();
                        let _ = ack_tx.send(Acked {
                            sent: in_flight_sent.take().unwrap_or(frame_at),
                            acked: frame_at,
                            seqs: ack.results.iter().filter_map(crm_sync::Outcome::seq).collect(),
                            refused,
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

/// A lightweight device of the live measurements: its token and who it writes as.
#[derive(Clone, Debug)]
pub(crate) struct LiveDevice {
    pub(crate) token: String,
    pub(crate) identity: Identity,
}

/// Who a lightweight device writes as, and the record it writes: what makes its changes
/// ones the relay accepts from its token.
#[derive(Clone, Debug)]
pub(crate) struct Identity {
    /// The author its commit messages name: the token's user, by name (a device bound to no
    /// user) or with the user's and the device's relay ids (a device of a directory user, as
    /// a replica names them once it adopted the relay's identity).
    pub(crate) author: Author,
    /// `Account` (created with a name, then `industry` edits) or `Contact` (created with a
    /// last name, then `title` edits: support agents may create contacts, not accounts).
    pub(crate) kind: Kind,
    /// The record's owner: the writer's own user, or none for a device bound to no user.
    pub(crate) owner: Option<RecordId>,
    /// The teams the record names (who else sees it).
    pub(crate) teams: Vec<RecordId>,
}

impl Identity {
    /// A device bound to no user (`Relay::add_unbound_device`, an admin's): its changes
    /// name its device name as their author, and its accounts have no owner and no teams.
    pub(crate) fn unbound(device_name: &str) -> Identity {
        Identity {
            author: Author::new(device_name, format!("{device_name}-device")),
            kind: Kind::Account,
            owner: None,
            teams: Vec::new(),
        }
    }

    /// The envelope's scope of the record (the relay derives its own from the change; a
    /// device's store fills it in the same way).
    fn scope(&self) -> crm_sync::Scope {
        crm_sync::Scope {
            owner: self.owner.map(|o| *o.as_uuid().as_bytes()),
            assignee: None,
            teams: self.teams.iter().map(|t| *t.as_uuid().as_bytes()).collect(),
        }
    }
}

/// Makes realistic small changes: a record created with `crm_model::doc::create`, then
/// one-field edits with `crm_model::doc::apply_edit`, as a device's store would, authored
/// and scoped as its [`Identity`] says.
pub(crate) struct Writer {
    id: RecordId,
    doc: Option<Automerge>,
    identity: Identity,
    /// Names the record, so the writers of a run are told apart.
    label: String,
    edits: u64,
}

impl Writer {
    pub(crate) fn new(identity: &Identity, label: &str) -> Writer {
        Writer {
            id: RecordId::new(),
            doc: None,
            identity: identity.clone(),
            label: label.to_string(),
            edits: 0,
        }
    }

    /// The field each edit changes.
    fn edited_field(&self) -> &'static str {
        match self.identity.kind {
            Kind::Contact => "title",
            _ => "industry",
        }
    }

    /// The next change: the record's creation the first time, then an edit of one field.
    pub(crate) fn next(&mut self) -> Result<Envelope> {
        let kind = self.identity.kind;
        let field = self.edited_field();
        let stamp = Stamp {
            author: &self.identity.author,
            now: chrono::Utc::now(),
        };
        let change = match &mut self.doc {
            None => {
                let mut e = Edit::new(kind);
                let (title, first) = match kind {
                    Kind::Account => ("name", "software"),
                    Kind::Contact => ("last_name", "engineer"),
                    other => {
                        bail!("the benchmark's writers make accounts and contacts, not {other}")
                    }
                };
                e.set(title, &format!("Bench {}", self.label))?;
                e.set(field, first)?;
                if let Some(owner) = self.identity.owner {
                    e.set("owner", &owner.to_string())?;
                }
                if !self.identity.teams.is_empty() {
                    let teams: Vec<String> = self
                        .identity
                        .teams
                        .iter()
                        .map(ToString::to_string)
                        .collect();
                    e.set("teams", &teams.join(","))?;
                }
                let actor = crm_model::automerge::ActorId::random();
                let doc = crm_model::doc::create(self.id, &e, stamp, actor)?;
                let change = doc.get_last_local_change();
                self.doc = Some(doc);
                change
            }
            Some(doc) => {
                self.edits += 1;
                let mut e = Edit::new(kind);
                e.set(field, &format!("{field} {}", self.edits))?;
                if crm_model::doc::apply_edit(doc, &e, stamp)?.is_none() {
                    bail!("an edit changed nothing");
                }
                doc.get_last_local_change()
            }
        };
        let change = change.context("the change just made")?;
        Ok(Envelope {
            doc_id: *self.id.as_uuid().as_bytes(),
            kind: kind.as_str().to_string(),
            scope: self.identity.scope(),
            bytes: change.raw_bytes().to_vec(),
        })
    }
}
