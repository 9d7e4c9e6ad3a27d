//! The relay end of a sync session, sans-IO.
//!
//! One [`RelaySync`] per connection. The driver authenticates, stores batches durably (and
//! only then lets the machine acknowledge them), reads the log, and tells the machine when
//! other devices extend the log. At most `window` log positions are unconfirmed by the device
//! at any time, so a slow reader holds a bounded amount of the relay's memory and never
//! stalls anyone else.

use crate::error::{DecodeError, ErrorCode};
use crate::message::{
    Access, Ack, Changes, Cursor, DocId, DocState, Entry, Envelope, ErrorFrame, Grant, Hash,
    MIN_PROTOCOL_VERSION, Message, Outcome, PROTOCOL_VERSION, Purge, RelayId, Resume, Welcome,
};

/// Limits of one session.
#[derive(Clone, Debug)]
pub struct RelayConfig {
    pub relay_id: RelayId,
    /// Most log positions sent but not yet confirmed by the device.
    pub window: u64,
    /// Most entries per `Changes` frame.
    pub read_batch: usize,
}

/// What authentication found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authorized {
    /// The workspace log's head.
    pub head: u64,
    /// Whether the device's cursor names a position of this log with the same change hash.
    pub cursor_known: bool,
    /// The device's user and what they may see, for `Welcome`.
    pub access: Access,
}

/// One frame of a [`LogRead`], in the order the device must apply them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadFrame {
    /// Entries up to and including `through` (ascending), `through_hash` the change's at
    /// `through`.
    Changes {
        entries: Vec<Entry>,
        through: u64,
        through_hash: Hash,
    },
    /// Documents that entered the device's scope at the next position.
    Grant(Vec<DocState>),
    /// Documents that left the device's scope at the next position.
    Purge(Vec<DocId>),
}

/// The answer to [`RelayEffect::Read`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogRead {
    /// What to send, in order: entries after the requested position that this device may
    /// see, and the grants and purges of documents whose scope changed on the way. The last
    /// frame is a `Changes` through the last position examined (entries the device may not
    /// see are skipped, not sent); there are none when nothing was read.
    pub frames: Vec<ReadFrame>,
    pub head: u64,
}

impl LogRead {
    /// A read of plain entries, none of which changed anyone's scope.
    pub fn entries(entries: Vec<Entry>, through: u64, through_hash: Hash, head: u64) -> Self {
        Self {
            frames: vec![ReadFrame::Changes {
                entries,
                through,
                through_hash,
            }],
            head,
        }
    }

    /// The last position examined.
    pub fn through(&self) -> u64 {
        self.frames
            .iter()
            .filter_map(|f| match f {
                ReadFrame::Changes { through, .. } => Some(*through),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }
}

#[derive(Debug)]
pub enum RelayInput<'a> {
    Frame(&'a [u8]),
    /// Answer to [`RelayEffect::Authenticate`].
    Authenticated(Result<Authorized, ErrorFrame>),
    /// Answer to [`RelayEffect::Store`]: each change's outcome (its log position once
    /// durably committed, or why it was refused), or why the whole batch was.
    Stored(Result<Vec<Outcome>, ErrorFrame>),
    /// Answer to [`RelayEffect::Read`].
    Read(LogRead),
    /// Another session extended the log.
    NewHead(u64),
    /// The device's user's access changed (role, teams, the role's matrix): tell the device,
    /// which re-syncs its scope.
    Access(Access),
    /// The relay is stopping.
    ShuttingDown,
}

#[derive(Debug, PartialEq, Eq)]
pub enum RelayEffect {
    Send(Vec<u8>),
    /// Check the token for the workspace, and the cursor against the log.
    Authenticate {
        workspace: String,
        token: String,
        cursor: Option<Cursor>,
    },
    /// Validate and store a pushed batch in one transaction; answer `Stored`.
    Store {
        batch: u64,
        changes: Vec<Envelope>,
    },
    /// Read up to `limit` log positions after `after`; answer `Read`.
    Read {
        after: u64,
        limit: usize,
    },
    /// Close the socket (after sending whatever precedes this effect).
    Close,
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    AwaitHello,
    Authenticating,
    Ready,
    Closed,
}

/// The relay's side of one connection.
#[derive(Debug)]
pub struct RelaySync {
    config: RelayConfig,
    phase: Phase,
    protocol: u16,
    head: u64,
    /// The last log position sent (or skipped) to the device.
    sent: u64,
    /// The last log position the device confirmed as applied.
    confirmed: u64,
    reading: bool,
    storing: Option<u64>,
    /// The cursor given in `Hello`, until authentication says whether it is known.
    cursor: Option<Cursor>,
}

impl RelaySync {
    pub fn new(config: RelayConfig) -> Self {
        Self {
            config,
            phase: Phase::AwaitHello,
            protocol: PROTOCOL_VERSION,
            head: 0,
            sent: 0,
            confirmed: 0,
            reading: false,
            storing: None,
            cursor: None,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// Log positions sent but not confirmed: bounded by the window.
    pub fn unconfirmed(&self) -> u64 {
        self.sent - self.confirmed
    }

    /// How far behind the head this device is.
    pub fn lag(&self) -> u64 {
        self.head.saturating_sub(self.confirmed)
    }

    pub fn handle(&mut self, input: RelayInput<'_>) -> Vec<RelayEffect> {
        let mut out = Vec::new();
        if self.phase == Phase::Closed {
            return out;
        }
        match input {
            RelayInput::Frame(frame) => match Message::decode(frame) {
                Ok(message) => self.on_message(message, &mut out),
                Err(e) => self.on_decode_error(&e, &mut out),
            },
            RelayInput::Authenticated(result) => {
                if self.phase != Phase::Authenticating {
                    return out;
                }
                match result {
                    Ok(auth) => {
                        self.phase = Phase::Ready;
                        self.head = auth.head;
                        let resume = match (self.cursor.take(), auth.cursor_known) {
                            (Some(c), true) => {
                                self.sent = c.seq;
                                self.confirmed = c.seq;
                                Resume::FromCursor
                            }
                            _ => Resume::FromStart,
                        };
                        out.push(RelayEffect::Send(
                            Message::Welcome(Welcome {
                                protocol: self.protocol,
                                relay_id: self.config.relay_id,
                                head: self.head,
                                resume,
                                access: auth.access,
                            })
                            .encode(),
                        ));
                        self.maybe_read(&mut out);
                    }
                    Err(e) => self.close_with(e, &mut out),
                }
            }
            RelayInput::Stored(result) => {
                let Some(batch) = self.storing.take() else {
                    return out;
                };
                match result {
                    Ok(results) => {
                        if let Some(max) = results.iter().filter_map(Outcome::seq).max() {
                            self.head = self.head.max(max);
                        }
                        out.push(RelayEffect::Send(
                            Message::Ack(Ack { batch, results }).encode(),
                        ));
                        self.maybe_read(&mut out);
                    }
                    Err(e) => self.close_with(e, &mut out),
                }
            }
            RelayInput::Read(read) => {
                self.reading = false;
                if self.phase != Phase::Ready {
                    return out;
                }
                self.head = self.head.max(read.head);
                for frame in read.frames {
                    match frame {
                        ReadFrame::Changes {
                            entries,
                            through,
                            through_hash,
                        } => {
                            if through > self.sent {
                                self.sent = through;
                                out.push(RelayEffect::Send(
                                    Message::Changes(Changes {
                                        entries,
                                        through,
                                        through_hash,
                                        head: self.head,
                                    })
                                    .encode(),
                                ));
                            }
                        }
                        ReadFrame::Grant(docs) => {
                            out.push(RelayEffect::Send(Message::Grant(Grant { docs }).encode()))
                        }
                        ReadFrame::Purge(docs) => {
                            out.push(RelayEffect::Send(Message::Purge(Purge { docs }).encode()))
                        }
                    }
                }
                self.maybe_read(&mut out);
            }
            RelayInput::NewHead(head) => {
                self.head = self.head.max(head);
                self.maybe_read(&mut out);
            }
            RelayInput::Access(access) => {
                if self.phase == Phase::Ready {
                    out.push(RelayEffect::Send(Message::Access(access).encode()));
                }
            }
            RelayInput::ShuttingDown => self.close_with(
                ErrorFrame {
                    code: ErrorCode::GOING_AWAY,
                    message: "the relay is shutting down; reconnect later".into(),
                },
                &mut out,
            ),
        }
        out
    }

    fn on_message(&mut self, message: Message, out: &mut Vec<RelayEffect>) {
        match (&self.phase, message) {
            (_, Message::Error(_)) => {
                self.phase = Phase::Closed;
                out.push(RelayEffect::Close);
            }
            (Phase::AwaitHello, Message::Hello(hello)) => {
                let lo = hello.min_protocol.max(MIN_PROTOCOL_VERSION);
                let hi = hello.max_protocol.min(PROTOCOL_VERSION);
                if lo > hi {
                    return self.close_with(
                        ErrorFrame {
                            code: ErrorCode::PROTOCOL_MISMATCH,
                            message: format!(
                                "device speaks protocol {}..={}, relay speaks {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}",
                                hello.min_protocol, hello.max_protocol
                            ),
                        },
                        out,
                    );
                }
                self.protocol = hi;
                self.phase = Phase::Authenticating;
                self.cursor = hello.cursor.filter(|c| c.relay_id == self.config.relay_id);
                out.push(RelayEffect::Authenticate {
                    workspace: hello.workspace,
                    token: hello.token,
                    cursor: self.cursor,
                });
            }
            (Phase::Ready, Message::Push(push)) => {
                if self.storing.is_some() {
                    return self.close_with(
                        ErrorFrame {
                            code: ErrorCode::UNEXPECTED_MESSAGE,
                            message: "a second Push before the first was acknowledged".into(),
                        },
                        out,
                    );
                }
                self.storing = Some(push.batch);
                out.push(RelayEffect::Store {
                    batch: push.batch,
                    changes: push.changes,
                });
            }
            (Phase::Ready, Message::Received(r)) => {
                if r.seq > self.sent {
                    return self.close_with(
                        ErrorFrame {
                            code: ErrorCode::UNEXPECTED_MESSAGE,
                            message: format!(
                                "Received {} beyond what was sent ({})",
                                r.seq, self.sent
                            ),
                        },
                        out,
                    );
                }
                self.confirmed = self.confirmed.max(r.seq);
                self.maybe_read(out);
            }
            (_, other) => self.close_with(
                ErrorFrame {
                    code: ErrorCode::UNEXPECTED_MESSAGE,
                    message: format!("unexpected {} now", other.name()),
                },
                out,
            ),
        }
    }

    fn on_decode_error(&mut self, e: &DecodeError, out: &mut Vec<RelayEffect>) {
        self.close_with(
            ErrorFrame {
                code: ErrorCode::from(e),
                message: e.to_string(),
            },
            out,
        );
    }

    fn maybe_read(&mut self, out: &mut Vec<RelayEffect>) {
        if self.phase != Phase::Ready || self.reading || self.sent >= self.head {
            return;
        }
        let room = self.config.window.saturating_sub(self.unconfirmed());
        if room == 0 {
            return;
        }
        let limit = usize::try_from(room)
            .unwrap_or(usize::MAX)
            .min(self.config.read_batch);
        self.reading = true;
        out.push(RelayEffect::Read {
            after: self.sent,
            limit,
        });
    }

    fn close_with(&mut self, error: ErrorFrame, out: &mut Vec<RelayEffect>) {
        out.push(RelayEffect::Send(Message::Error(error).encode()));
        out.push(RelayEffect::Close);
        self.phase = Phase::Closed;
    }
}
