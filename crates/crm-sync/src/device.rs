//! The device end of a sync session, sans-IO.
//!
//! The driver feeds [`DeviceInput`]s and carries out the returned [`DeviceEffect`]s in order:
//! it sends frames, reads the outbox, applies pulled entries together with the new cursor in
//! one store transaction, and drops acknowledged changes from the outbox.
//!
//! A push is cut by count (`push_batch`) and by encoded bytes (`push_bytes`, at most
//! [`PUSH_BYTES`]), so no frame a device sends is over [`MAX_FRAME_BYTES`]: the oldest
//! changes that fit go, the others wait for the next push. A change over
//! [`MAX_CHANGE_BYTES`] is never sent; the session ends with [`DeviceEffect::Unpushable`]
//! naming it.

use crate::error::ErrorCode;
use crate::message::{
    Access, Cursor, DocId, DocState, Entry, Envelope, ErrorFrame, Hello, MAX_CHANGE_BYTES,
    MAX_FRAME_BYTES, MIN_PROTOCOL_VERSION, Message, Outcome, PROTOCOL_VERSION, PUSH_OVERHEAD_BYTES,
    Push, Received, Refusal, RelayId, Resume,
};

/// Most encoded bytes of one `Push`: half the frame limit. A change as large as the relay
/// accepts ([`MAX_CHANGE_BYTES`]) fits with its envelope, and the frame stays far from
/// [`MAX_FRAME_BYTES`] whatever the envelopes hold.
pub const PUSH_BYTES: usize = MAX_FRAME_BYTES / 2;

/// What a device needs to open a session.
#[derive(Clone, Debug)]
pub struct DeviceConfig {
    pub workspace: String,
    pub token: String,
    /// Most changes per `Push`.
    pub push_batch: usize,
    /// Most encoded bytes per `Push` (taken as [`PUSH_BYTES`] when larger). A single change
    /// is pushed alone when it is larger than this.
    pub push_bytes: usize,
}

/// A local change waiting in the outbox, with its local log position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    pub local_seq: i64,
    pub envelope: Envelope,
}

#[derive(Debug)]
pub enum DeviceInput<'a> {
    /// The socket is open. `cursor` is the one stored for this relay, if any.
    Connected { cursor: Option<Cursor> },
    /// A frame from the relay.
    Frame(&'a [u8]),
    /// Answer to [`DeviceEffect::ReadOutbox`]: the oldest waiting changes (none: all pushed).
    Outbox(Vec<Outgoing>),
    /// Answer to [`DeviceEffect::Apply`]: the entries and the cursor are stored.
    Applied(Cursor),
    /// New local changes are in the outbox.
    LocalChanges,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DeviceEffect {
    Send(Vec<u8>),
    /// Read the oldest outbox changes (acknowledged ones are gone by then): at most `limit`,
    /// and once their change bytes add up to `bytes`, no more (always at least one). The
    /// machine pushes the oldest of them that fit a push; the others are read again later.
    ReadOutbox {
        limit: usize,
        bytes: usize,
    },
    /// Apply these entries and store `cursor`, in one transaction; then answer `Applied`.
    Apply {
        entries: Vec<Entry>,
        cursor: Cursor,
    },
    /// The relay decided a push: `stored` local changes are stored durably (drop them from
    /// the outbox); `refused` ones were not stored and never will be (settle them: take them
    /// and every local change built on them out of the outbox, keep what the user typed, and
    /// rebuild their documents from what remains).
    Acknowledged {
        stored: Vec<i64>,
        refused: Vec<(i64, Refusal)>,
    },
    /// Who the relay says this device's user is and what they may see (from `Welcome`, and
    /// again whenever it changes). A device whose stored access key differs re-syncs its
    /// scope after this session.
    Access(Access),
    /// Documents that entered the scope: store them whole (like bootstrap pages). They come
    /// before the `Changes` that moves the cursor past them.
    Grant(Vec<DocState>),
    /// Documents that left the scope: delete every trace (keeping unpushed local changes).
    Purge(Vec<DocId>),
    /// The relay does not know this device's cursor: forget it and put every change back in
    /// the outbox (the relay may have lost any of them).
    Reset {
        relay_id: RelayId,
    },
    /// The oldest change of the outbox is larger than a relay accepts for one change (an
    /// older build stored it without checking): it can never be pushed, and the changes after
    /// it wait behind it. Nothing was sent; the session is over.
    Unpushable {
        local_seq: i64,
        doc_id: DocId,
        kind: String,
        bytes: usize,
    },
    /// Everything local is acknowledged and everything in the log up to its head is applied.
    Synced,
    /// The session is over. `error` is the relay's reason, or ours for a broken frame.
    Close {
        error: Option<ErrorFrame>,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Disconnected,
    AwaitWelcome,
    Ready,
    Closed,
}

/// The device's side of one connection.
#[derive(Debug)]
pub struct DeviceSync {
    config: DeviceConfig,
    phase: Phase,
    relay_id: Option<RelayId>,
    applied: u64,
    head: u64,
    next_batch: u64,
    /// The push waiting for its `Ack`: batch number and the local positions in it.
    in_flight: Option<(u64, Vec<i64>)>,
    reading_outbox: bool,
    /// New local changes arrived while a push or read was under way.
    more_local: bool,
    outbox_empty: bool,
    synced_reported: bool,
}

impl DeviceSync {
    pub fn new(config: DeviceConfig) -> Self {
        Self {
            config,
            phase: Phase::Disconnected,
            relay_id: None,
            applied: 0,
            head: 0,
            next_batch: 1,
            in_flight: None,
            reading_outbox: false,
            more_local: false,
            outbox_empty: false,
            synced_reported: false,
        }
    }

    /// Whether every local change is acknowledged and the log is applied up to its head.
    pub fn is_synced(&self) -> bool {
        self.phase == Phase::Ready
            && self.in_flight.is_none()
            && !self.reading_outbox
            && self.outbox_empty
            && !self.more_local
            && self.applied >= self.head
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The log's head as last reported by the relay.
    pub fn head(&self) -> u64 {
        self.head
    }

    pub fn handle(&mut self, input: DeviceInput<'_>) -> Vec<DeviceEffect> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        match input {
            DeviceInput::Connected { cursor } => {
                *self = Self::new(self.config.clone());
                self.phase = Phase::AwaitWelcome;
                if let Some(c) = &cursor {
                    self.applied = c.seq;
                }
                out.push(DeviceEffect::Send(
                    Message::Hello(Hello {
                        min_protocol: MIN_PROTOCOL_VERSION,
                        max_protocol: PROTOCOL_VERSION,
                        workspace: self.config.workspace.clone(),
                        token: self.config.token.clone(),
                        cursor,
                    })
                    .encode(),
                ));
            }
            DeviceInput::Frame(frame) => match Message::decode(frame) {
                Ok(message) => self.on_message(message, &mut out),
                Err(e) => self.fail(ErrorCode::from(&e), e.to_string(), &mut out),
            },
            DeviceInput::Outbox(mut changes) => {
                self.reading_outbox = false;
                if self.phase != Phase::Ready {
                    return out;
                }
                let fit = self.fitting(&changes);
                if fit == 0
                    && let Some(first) = changes.first()
                {
                    self.phase = Phase::Closed;
                    out.push(DeviceEffect::Unpushable {
                        local_seq: first.local_seq,
                        doc_id: first.envelope.doc_id,
                        kind: first.envelope.kind.clone(),
                        bytes: first.envelope.bytes.len(),
                    });
                    return out;
                }
                // The others stay in the outbox and are read again after the `Ack`.
                changes.truncate(fit);
                if changes.is_empty() {
                    self.outbox_empty = true;
                    if std::mem::take(&mut self.more_local) {
                        self.read_outbox(&mut out);
                    }
                } else {
                    self.outbox_empty = false;
                    let batch = self.next_batch;
                    self.next_batch += 1;
                    let seqs = changes.iter().map(|c| c.local_seq).collect();
                    self.in_flight = Some((batch, seqs));
                    out.push(DeviceEffect::Send(
                        Message::Push(Push {
                            batch,
                            changes: changes.into_iter().map(|c| c.envelope).collect(),
                        })
                        .encode(),
                    ));
                }
            }
            DeviceInput::Applied(cursor) => {
                self.applied = self.applied.max(cursor.seq);
                out.push(DeviceEffect::Send(
                    Message::Received(Received { seq: cursor.seq }).encode(),
                ));
            }
            DeviceInput::LocalChanges => {
                self.synced_reported = false;
                if self.phase == Phase::Ready && self.in_flight.is_none() && !self.reading_outbox {
                    self.read_outbox(&mut out);
                } else {
                    self.more_local = true;
                }
            }
        }
        self.report_synced(&mut out);
        out
    }

    fn on_message(&mut self, message: Message, out: &mut Vec<DeviceEffect>) {
        match (&self.phase, message) {
            (_, Message::Error(e)) => {
                self.phase = Phase::Closed;
                out.push(DeviceEffect::Close { error: Some(e) });
            }
            (Phase::AwaitWelcome, Message::Welcome(w)) => {
                if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&w.protocol) {
                    return self.fail(
                        ErrorCode::PROTOCOL_MISMATCH,
                        format!(
                            "relay chose protocol {}, device speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                            w.protocol
                        ),
                        out,
                    );
                }
                self.phase = Phase::Ready;
                self.relay_id = Some(w.relay_id);
                self.head = w.head;
                out.push(DeviceEffect::Access(w.access));
                if w.resume == Resume::FromStart {
                    self.applied = 0;
                    out.push(DeviceEffect::Reset {
                        relay_id: w.relay_id,
                    });
                }
                self.read_outbox(out);
            }
            (Phase::Ready, Message::Ack(ack)) => match self.in_flight.take() {
                Some((batch, seqs)) if batch == ack.batch && seqs.len() == ack.results.len() => {
                    // The log now holds the stored changes at these positions: the session is
                    // in sync once they are applied too (the relay streams them back like any
                    // other), so the next connection does not fetch them.
                    let mut stored = Vec::with_capacity(seqs.len());
                    let mut refused = Vec::new();
                    for (local, outcome) in seqs.into_iter().zip(ack.results) {
                        match outcome {
                            Outcome::Stored(seq) => {
                                self.head = self.head.max(seq);
                                stored.push(local);
                            }
                            Outcome::Refused(why) => refused.push((local, why)),
                        }
                    }
                    out.push(DeviceEffect::Acknowledged { stored, refused });
                    self.read_outbox(out);
                }
                _ => self.fail(
                    ErrorCode::UNEXPECTED_MESSAGE,
                    format!("Ack of batch {} that is not in flight", ack.batch),
                    out,
                ),
            },
            (Phase::Ready, Message::Changes(c)) => {
                if c.through <= self.applied && !c.entries.is_empty() {
                    return self.fail(
                        ErrorCode::UNEXPECTED_MESSAGE,
                        format!(
                            "Changes through {} but the cursor is at {}",
                            c.through, self.applied
                        ),
                        out,
                    );
                }
                self.head = self.head.max(c.head);
                let Some(relay_id) = self.relay_id else {
                    return;
                };
                out.push(DeviceEffect::Apply {
                    entries: c.entries,
                    cursor: Cursor {
                        relay_id,
                        seq: c.through,
                        hash: c.through_hash,
                    },
                });
            }
            (Phase::Ready, Message::Access(a)) => out.push(DeviceEffect::Access(a)),
            (Phase::Ready, Message::Grant(g)) => out.push(DeviceEffect::Grant(g.docs)),
            (Phase::Ready, Message::Purge(p)) => out.push(DeviceEffect::Purge(p.docs)),
            (_, other) => self.fail(
                ErrorCode::UNEXPECTED_MESSAGE,
                format!("unexpected {} from the relay", other.name()),
                out,
            ),
        }
    }

    fn read_outbox(&mut self, out: &mut Vec<DeviceEffect>) {
        self.reading_outbox = true;
        self.more_local = false;
        out.push(DeviceEffect::ReadOutbox {
            limit: self.config.push_batch.max(1),
            bytes: self.push_bytes(),
        });
    }

    fn push_bytes(&self) -> usize {
        self.config.push_bytes.min(PUSH_BYTES)
    }

    /// How many of the oldest `changes` go in the next push: as many as fit its count and
    /// bytes, and at least the first unless it is over [`MAX_CHANGE_BYTES`] (then none).
    fn fitting(&self, changes: &[Outgoing]) -> usize {
        let mut size = PUSH_OVERHEAD_BYTES;
        let mut fit = 0;
        for change in changes.iter().take(self.config.push_batch.max(1)) {
            if change.envelope.bytes.len() > MAX_CHANGE_BYTES {
                break;
            }
            let len = change.envelope.encoded_len();
            if fit > 0 && size + len > self.push_bytes() {
                break;
            }
            size += len;
            fit += 1;
        }
        fit
    }

    fn report_synced(&mut self, out: &mut Vec<DeviceEffect>) {
        if self.is_synced() && !self.synced_reported {
            self.synced_reported = true;
            out.push(DeviceEffect::Synced);
        } else if !self.is_synced() {
            self.synced_reported = false;
        }
    }

    fn fail(&mut self, code: ErrorCode, message: String, out: &mut Vec<DeviceEffect>) {
        let error = ErrorFrame { code, message };
        out.push(DeviceEffect::Send(Message::Error(error.clone()).encode()));
        out.push(DeviceEffect::Close { error: Some(error) });
        self.phase = Phase::Closed;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Ack, Scope, Welcome};

    fn ready() -> DeviceSync {
        ready_with(PUSH_BYTES)
    }

    fn ready_with(push_bytes: usize) -> DeviceSync {
        let mut device = DeviceSync::new(DeviceConfig {
            workspace: "acme".into(),
            token: "t".into(),
            push_batch: 500,
            push_bytes,
        });
        device.handle(DeviceInput::Connected { cursor: None });
        let welcome = Message::Welcome(Welcome {
            protocol: PROTOCOL_VERSION,
            relay_id: [1; 16],
            head: 0,
            resume: Resume::FromCursor,
            access: Access::default(),
        })
        .encode();
        let effects = device.handle(DeviceInput::Frame(&welcome));
        assert!(
            effects
                .iter()
                .any(|e| matches!(e, DeviceEffect::ReadOutbox { .. }))
        );
        device
    }

    fn change(local_seq: i64, bytes: usize) -> Outgoing {
        Outgoing {
            local_seq,
            envelope: Envelope {
                doc_id: [2; 16],
                kind: "account".into(),
                scope: Scope {
                    owner: Some([3; 16]),
                    assignee: Some([5; 16]),
                    teams: vec![[4; 16]],
                },
                bytes: vec![9; bytes],
            },
        }
    }

    fn pushed(effects: &[DeviceEffect]) -> Option<(usize, Push)> {
        effects.iter().find_map(|e| match e {
            DeviceEffect::Send(frame) => match Message::decode(frame) {
                Ok(Message::Push(p)) => Some((frame.len(), p)),
                _ => None,
            },
            _ => None,
        })
    }

    /// Issue 12, failure 2: 600 changes of 24 KB went out as one push over the frame limit.
    #[test]
    fn a_large_outbox_is_pushed_in_frames_under_the_limit_in_order() {
        let mut device = ready();
        let mut outbox: Vec<Outgoing> = (1..=600).map(|i| change(i, 24_000)).collect();
        let mut pushes = 0;
        while !outbox.is_empty() {
            let effects = device.handle(DeviceInput::Outbox(outbox.clone()));
            let (len, push) = pushed(&effects).expect("a push");
            assert!(len <= PUSH_BYTES, "{len}");
            let sent: Vec<i64> = outbox[..push.changes.len()]
                .iter()
                .map(|c| c.local_seq)
                .collect();
            assert_eq!(sent[0], outbox[0].local_seq, "oldest first");
            let effects = device.handle(DeviceInput::Frame(
                &Message::Ack(Ack {
                    batch: push.batch,
                    results: sent.iter().map(|s| Outcome::Stored(*s as u64)).collect(),
                })
                .encode(),
            ));
            assert!(effects.contains(&DeviceEffect::Acknowledged {
                stored: sent.clone(),
                refused: Vec::new()
            }));
            assert!(effects.iter().any(
                |e| matches!(e, DeviceEffect::ReadOutbox { bytes, .. } if *bytes <= PUSH_BYTES)
            ));
            outbox.drain(..sent.len());
            pushes += 1;
        }
        assert!(pushes >= 4, "{pushes} pushes");
    }

    #[test]
    fn a_change_larger_than_the_push_budget_goes_alone() {
        let mut device = ready_with(10_000);
        let effects = device.handle(DeviceInput::Outbox(vec![change(1, 20_000), change(2, 10)]));
        assert_eq!(pushed(&effects).map(|(_, p)| p.changes.len()), Some(1));
    }

    /// A change over the relay's limit (stored by an older build) is never sent: the session
    /// ends naming it, after pushing what comes before it.
    #[test]
    fn an_outbox_change_over_the_limit_is_never_sent() {
        let mut device = ready();
        let outbox = vec![
            change(1, 10),
            change(2, MAX_CHANGE_BYTES + 1),
            change(3, 10),
        ];
        let effects = device.handle(DeviceInput::Outbox(outbox.clone()));
        let (_, push) = pushed(&effects).expect("the change before it goes");
        assert_eq!(push.changes.len(), 1);
        device.handle(DeviceInput::Frame(
            &Message::Ack(Ack {
                batch: push.batch,
                results: vec![Outcome::Stored(1)],
            })
            .encode(),
        ));
        let effects = device.handle(DeviceInput::Outbox(outbox[1..].to_vec()));
        assert!(pushed(&effects).is_none(), "{effects:?}");
        assert!(effects.contains(&DeviceEffect::Unpushable {
            local_seq: 2,
            doc_id: [2; 16],
            kind: "account".into(),
            bytes: MAX_CHANGE_BYTES + 1,
        }));
        assert!(device.is_closed());
    }
}
