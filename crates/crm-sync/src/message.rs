//! The wire messages and their binary encoding.
//!
//! Each WebSocket binary frame carries exactly one [`Message`], encoded with postcard: a
//! compact, non-self-describing serde format with varint integers and a documented, stable
//! wire format. Frames are already delimited by WebSocket, so no length prefix is needed, and
//! postcard keeps a `Changes` batch within a few bytes of the raw Automerge change bytes.
//! `Hello` is variant 0 and its fields never change meaning, so every protocol version can
//! read the first frame and answer a version mismatch with a proper error.

use serde::{Deserialize, Serialize};

use crate::error::{DecodeError, ErrorCode};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 3;
/// The oldest protocol version this build still speaks. Version 1 devices cannot purge
/// records that leave their user's scope, and version 2 devices cannot settle a change the
/// relay refuses on its own (their `Ack` has no per-change outcome), so a relay that
/// authorizes writes refuses both.
pub const MIN_PROTOCOL_VERSION: u16 = 3;

/// Largest frame either side accepts, in bytes.
pub const MAX_FRAME_BYTES: usize = 8 << 20;
/// Most changes in one `Push` or `Changes` batch.
pub const MAX_BATCH_CHANGES: usize = 1_000;
/// Largest single Automerge change, in bytes.
pub const MAX_CHANGE_BYTES: usize = 2 << 20;
/// Longest workspace name, token, kind or error message, in bytes.
pub const MAX_TEXT_BYTES: usize = 1_024;
/// Most changes of one document in a bootstrap page (in its snapshot, and after it).
pub const MAX_DOC_CHANGES: usize = 1 << 20;
/// Most teams in one record's scope.
pub const MAX_SCOPE_TEAMS: usize = 64;
/// Longest role matrix an `Access` carries, in bytes.
pub const MAX_MATRIX_BYTES: usize = 64 << 10;

/// A record (document) id: the 16 bytes of its UUID.
pub type DocId = [u8; 16];
/// An Automerge change hash.
pub type Hash = [u8; 32];
/// A relay's identity: the 16 bytes of a UUID made when its store was created.
pub type RelayId = [u8; 16];

/// Where a device is in a relay's change log: it has applied every change up to and
/// including `seq`, and the change at `seq` had hash `hash`. The hash lets a relay notice a
/// cursor it cannot honour (it was restored from an older backup and reassigned the seq).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub relay_id: RelayId,
    pub seq: u64,
    pub hash: Hash,
}

/// Device → relay, first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    pub min_protocol: u16,
    pub max_protocol: u16,
    pub workspace: String,
    pub token: String,
    pub cursor: Option<Cursor>,
}

/// How the device must continue after `Welcome`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Resume {
    /// The relay knows the cursor; changes follow from there.
    FromCursor,
    /// The relay does not know the cursor (none given, another relay, or a relay restored
    /// from an older backup): the device pushes every change it has and pulls from the start.
    /// Both are idempotent, so nothing is lost or doubled.
    FromStart,
}

/// Relay → device, answer to `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    pub protocol: u16,
    pub relay_id: RelayId,
    /// The last sequence number of the workspace's log.
    pub head: u64,
    pub resume: Resume,
    /// Who the token belongs to and what they may see.
    pub access: Access,
}

/// Relay → device: the device's user as the relay's directory has them, and a digest of
/// everything that decides which records they may see. Sent in `Welcome`, and again as a
/// message of its own when it changes during a session (a role or team change). A device
/// whose stored key differs re-syncs its scope: it loads what it may see now and purges the
/// rest.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// The relay's id of this device.
    pub device: DocId,
    /// The user's record id.
    pub user: DocId,
    pub name: String,
    pub role: String,
    /// The teams the user belongs to or manages.
    pub teams: Vec<DocId>,
    pub key: Hash,
    /// The workspace's changes to the built-in role matrix (JSON, `[]` when none), so the
    /// device refuses what the relay would, before writing.
    pub matrix: String,
}

/// Relay → device on `/v1/sync`: documents that entered the device's scope at a log
/// position (a record reassigned to its user, say), each whole: its snapshot and changes,
/// as a bootstrap page carries them. Sent before the `Changes` frame that moves the cursor
/// past that position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub docs: Vec<DocState>,
}

/// Relay → device on `/v1/sync`: documents that left the device's scope at a log position.
/// The device deletes every trace of them (keeping, visibly, any local change it has not
/// pushed yet). Sent before the `Changes` frame that moves the cursor past that position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purge {
    pub docs: Vec<DocId>,
}

/// The visibility scope of a record as the pushing device sees it after the change: its
/// owner and teams (user and team record ids). The relay keeps the latest per document, so
/// filtering what a device receives by role and scope needs no protocol change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scope {
    pub owner: Option<DocId>,
    /// The assignee of a ticket or an activity: like the owner, it is "own" to them.
    pub assignee: Option<DocId>,
    pub teams: Vec<DocId>,
}

/// One change with its routing envelope. The relay reads only the envelope; it parses the
/// change bytes just to validate them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub doc_id: DocId,
    pub kind: String,
    pub scope: Scope,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

impl Envelope {
    /// The bytes this envelope takes in an encoded `Push`, exactly (postcard: fixed arrays as
    /// their bytes, lengths and counts as varints).
    pub fn encoded_len(&self) -> usize {
        let owner = 1 + self.scope.owner.map_or(0, |o| o.len());
        let assignee = 1 + self.scope.assignee.map_or(0, |o| o.len());
        16 + varint_len(self.kind.len())
            + self.kind.len()
            + owner
            + assignee
            + varint_len(self.scope.teams.len())
            + self.scope.teams.len() * 16
            + varint_len(self.bytes.len())
            + self.bytes.len()
    }
}

/// The bytes of a postcard varint of `n`.
fn varint_len(n: usize) -> usize {
    let bits = usize::BITS - n.leading_zeros();
    (bits.max(1) as usize).div_ceil(7)
}

/// Most bytes a `Push` takes besides its envelopes: the variant, the batch number and the
/// count of changes, each a varint.
pub const PUSH_OVERHEAD_BYTES: usize = 1 + 10 + 10;

/// Device → relay: local changes. One push is in flight at a time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Push {
    pub batch: u64,
    pub changes: Vec<Envelope>,
}

/// Relay → device: the batch is decided, and what was stored is stored durably.
/// `results[i]` is the outcome of `changes[i]`: its log position (its earlier position for a
/// duplicate), or why the relay refused it (version 3). A refused change is not stored and
/// reaches nobody; neither does any change of the batch that builds on it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub batch: u64,
    pub results: Vec<Outcome>,
}

/// What the relay did with one pushed change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Stored at this log position.
    Stored(u64),
    /// Not stored: the user may not make this change (`403`), it names another author
    /// (`419`), or it builds on a change refused before it (`428`).
    Refused(Refusal),
}

impl Outcome {
    /// The log position of a stored change.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Outcome::Stored(seq) => Some(*seq),
            Outcome::Refused(_) => None,
        }
    }
}

/// Why one pushed change was refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    pub code: ErrorCode,
    pub reason: String,
}

/// One change of the relay's log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub doc_id: DocId,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// Relay → device: the log entries after the device's cursor up to and including `through`
/// (ascending; entries the device may not see are left out), the hash of the change at
/// `through`, and the log's head. Once applied, `(through, through_hash)` is the cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    pub entries: Vec<Entry>,
    pub through: u64,
    pub through_hash: Hash,
    pub head: u64,
}

/// Device → relay: every entry up to `seq` is applied durably. Also the flow-control credit:
/// the relay keeps only a bounded number of unconfirmed entries in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    pub seq: u64,
}

/// Either side: the session is over because of this. The socket closes after it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorFrame {
    pub code: ErrorCode,
    pub message: String,
}

/// One document as the relay has it, for a device's bootstrap (`/v1/bootstrap`): its
/// compacted snapshot (`Automerge::save`; empty when the relay has made none yet) with the
/// hash of every change the snapshot holds, and the log's changes of the document that the
/// snapshot does not hold, in log order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocState {
    pub doc_id: DocId,
    #[serde(with = "serde_bytes")]
    pub snapshot: Vec<u8>,
    pub hashes: Vec<Hash>,
    pub changes: Vec<serde_bytes::ByteBuf>,
}

/// Relay → device on `/v1/bootstrap`: page `page` (from 0) of the workspace's documents, in
/// document id order, each as of at least the log position of `done`. The last page carries
/// `done`: once every page is applied, the device's cursor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Documents {
    pub page: u64,
    pub docs: Vec<DocState>,
    pub done: Option<Cursor>,
}

/// Device → relay on `/v1/bootstrap`: the device has taken every page up to `page` in hand
/// (flow control; a device confirms the last page once it is stored with the cursor). The
/// relay keeps at most a few pages unconfirmed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentsReceived {
    pub page: u64,
}

/// Every message of the protocol. The variant order is part of the wire format.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    Hello(Hello),
    Welcome(Welcome),
    Push(Push),
    Ack(Ack),
    Changes(Changes),
    Received(Received),
    Error(ErrorFrame),
    // Appended: used on `/v1/bootstrap` only.
    Documents(Documents),
    DocumentsReceived(DocumentsReceived),
    // Version 2: access control.
    Access(Access),
    Grant(Grant),
    Purge(Purge),
}

impl Message {
    /// The frame bytes of this message.
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain structs into a Vec cannot fail; an empty frame would be refused
        // by the peer as malformed, which is the right outcome should it ever happen.
        postcard::to_allocvec(self).unwrap_or_default()
    }

    /// Reads one message from a frame, enforcing every limit. Garbage is a typed error,
    /// never a panic.
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        if frame.len() > MAX_FRAME_BYTES {
            return Err(DecodeError::TooLarge {
                len: frame.len(),
                max: MAX_FRAME_BYTES,
            });
        }
        let (message, rest): (Message, &[u8]) =
            postcard::take_from_bytes(frame).map_err(DecodeError::Malformed)?;
        if !rest.is_empty() {
            return Err(DecodeError::Trailing(rest.len()));
        }
        message.check_limits()?;
        Ok(message)
    }

    /// A short name for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Welcome(_) => "Welcome",
            Message::Push(_) => "Push",
            Message::Ack(_) => "Ack",
            Message::Changes(_) => "Changes",
            Message::Received(_) => "Received",
            Message::Error(_) => "Error",
            Message::Documents(_) => "Documents",
            Message::DocumentsReceived(_) => "DocumentsReceived",
            Message::Access(_) => "Access",
            Message::Grant(_) => "Grant",
            Message::Purge(_) => "Purge",
        }
    }

    fn check_limits(&self) -> Result<(), DecodeError> {
        let text = |what: &'static str, s: &str| limit(what, s.len(), MAX_TEXT_BYTES);
        match self {
            Message::Hello(h) => {
                text("workspace", &h.workspace)?;
                text("token", &h.token)
            }
            Message::Push(p) => {
                limit("batch", p.changes.len(), MAX_BATCH_CHANGES)?;
                for c in &p.changes {
                    text("kind", &c.kind)?;
                    limit("teams", c.scope.teams.len(), MAX_SCOPE_TEAMS)?;
                    limit("change", c.bytes.len(), MAX_CHANGE_BYTES)?;
                }
                Ok(())
            }
            Message::Ack(a) => {
                limit("ack", a.results.len(), MAX_BATCH_CHANGES)?;
                for outcome in &a.results {
                    if let Outcome::Refused(r) = outcome {
                        text("reason", &r.reason)?;
                    }
                }
                Ok(())
            }
            Message::Changes(c) => {
                limit("batch", c.entries.len(), MAX_BATCH_CHANGES)?;
                let mut last = 0;
                for e in &c.entries {
                    limit("change", e.bytes.len(), MAX_CHANGE_BYTES)?;
                    if e.seq <= last || e.seq > c.through {
                        return Err(DecodeError::Unordered);
                    }
                    last = e.seq;
                }
                Ok(())
            }
            Message::Error(e) => text("message", &e.message),
            Message::Access(a) => {
                text("name", &a.name)?;
                text("role", &a.role)?;
                limit("matrix", a.matrix.len(), MAX_MATRIX_BYTES)?;
                limit("teams", a.teams.len(), MAX_SCOPE_TEAMS)
            }
            Message::Purge(p) => limit("documents", p.docs.len(), MAX_BATCH_CHANGES),
            Message::Grant(Grant { docs }) | Message::Documents(Documents { docs, .. }) => {
                limit("documents", docs.len(), MAX_BATCH_CHANGES)?;
                for doc in docs {
                    limit("hashes", doc.hashes.len(), MAX_DOC_CHANGES)?;
                    limit("changes", doc.changes.len(), MAX_DOC_CHANGES)?;
                    for c in &doc.changes {
                        limit("change", c.len(), MAX_CHANGE_BYTES)?;
                    }
                }
                Ok(())
            }
            Message::Welcome(w) => {
                text("name", &w.access.name)?;
                text("role", &w.access.role)?;
                limit("matrix", w.access.matrix.len(), MAX_MATRIX_BYTES)?;
                limit("teams", w.access.teams.len(), MAX_SCOPE_TEAMS)
            }
            Message::Received(_) | Message::DocumentsReceived(_) => Ok(()),
        }
    }
}

fn limit(what: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::OverLimit { what, len, max });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Vec<Message> {
        vec![
            Message::Hello(Hello {
                min_protocol: 1,
                max_protocol: 1,
                workspace: "acme".into(),
                token: "t0k3n".into(),
                cursor: Some(Cursor {
                    relay_id: [7; 16],
                    seq: 42,
                    hash: [9; 32],
                }),
            }),
            Message::Welcome(Welcome {
                protocol: 1,
                relay_id: [1; 16],
                head: 1_000_000,
                resume: Resume::FromStart,
                access: Access::default(),
            }),
            Message::Push(Push {
                batch: 3,
                changes: vec![Envelope {
                    doc_id: [2; 16],
                    kind: "account".into(),
                    scope: Scope {
                        owner: Some([8; 16]),
                        assignee: None,
                        teams: vec![[9; 16]],
                    },
                    bytes: vec![0x85, 0x6f, 0x4a, 0x83, 1, 2, 3],
                }],
            }),
            Message::Ack(Ack {
                batch: 3,
                results: vec![
                    Outcome::Stored(17),
                    Outcome::Refused(Refusal {
                        code: ErrorCode::FORBIDDEN,
                        reason: "a sales_rep may not change the owner".into(),
                    }),
                ],
            }),
            Message::Changes(Changes {
                entries: vec![
                    Entry {
                        seq: 5,
                        doc_id: [3; 16],
                        bytes: vec![1; 100],
                    },
                    Entry {
                        seq: 9,
                        doc_id: [4; 16],
                        bytes: vec![],
                    },
                ],
                through: 9,
                through_hash: [5; 32],
                head: 9,
            }),
            Message::Received(Received { seq: 9 }),
            Message::Error(ErrorFrame {
                code: ErrorCode::PROTOCOL_MISMATCH,
                message: "device speaks 2..=3, relay 1..=1".into(),
            }),
            Message::Documents(Documents {
                page: 3,
                docs: vec![DocState {
                    doc_id: [6; 16],
                    snapshot: vec![0x85, 0x6f, 0x4a, 0x83, 9],
                    hashes: vec![[1; 32], [2; 32]],
                    changes: vec![serde_bytes::ByteBuf::from(vec![4; 20])],
                }],
                done: Some(Cursor {
                    relay_id: [7; 16],
                    seq: 42,
                    hash: [9; 32],
                }),
            }),
            Message::DocumentsReceived(DocumentsReceived { page: 3 }),
        ]
    }

    #[test]
    fn every_message_round_trips() {
        for m in sample() {
            assert_eq!(Message::decode(&m.encode()), Ok(m.clone()), "{}", m.name());
        }
    }

    #[test]
    fn hello_is_variant_zero() {
        assert_eq!(sample()[0].encode()[0], 0);
    }

    #[test]
    fn change_bytes_travel_with_little_overhead() {
        let m = Message::Changes(Changes {
            entries: vec![Entry {
                seq: 1_000,
                doc_id: [0; 16],
                bytes: vec![0; 300],
            }],
            through: 1_000,
            through_hash: [0; 32],
            head: 1_000,
        });
        assert!(
            m.encode().len() < 300 + 16 + 32 + 12,
            "{}",
            m.encode().len()
        );
    }

    proptest! {
        #[test]
        fn envelopes_know_their_encoded_length(
            kind in "[a-z_]{0,200}",
            owner in proptest::option::of(any::<[u8; 16]>()),
            teams in 0usize..70,
            bytes in 0usize..20_000,
            batch in any::<u64>(),
            count in 0usize..3,
        ) {
            let envelope = Envelope {
                doc_id: [3; 16],
                kind,
                scope: Scope { owner, assignee: owner, teams: vec![[1; 16]; teams] },
                bytes: vec![7; bytes],
            };
            let changes = vec![envelope.clone(); count];
            let frame = Message::Push(Push { batch, changes }).encode();
            let envelopes = count * envelope.encoded_len();
            prop_assert!(frame.len() >= envelopes);
            prop_assert!(frame.len() <= envelopes + PUSH_OVERHEAD_BYTES);
            let mut one = postcard::to_allocvec(&envelope).expect("encodes");
            prop_assert_eq!(one.len(), envelope.encoded_len());
            one.clear();
        }
    }

    #[test]
    fn limits_are_enforced() {
        let big = Message::Push(Push {
            batch: 1,
            changes: (0..=MAX_BATCH_CHANGES)
                .map(|_| Envelope {
                    doc_id: [0; 16],
                    kind: "account".into(),
                    scope: Scope::default(),
                    bytes: vec![],
                })
                .collect(),
        });
        assert!(matches!(
            Message::decode(&big.encode()),
            Err(DecodeError::OverLimit { what: "batch", .. })
        ));
        assert!(matches!(
            Message::decode(&vec![0; MAX_FRAME_BYTES + 1]),
            Err(DecodeError::TooLarge { .. })
        ));
        let mut trailing = sample()[5].encode();
        trailing.push(0);
        assert_eq!(Message::decode(&trailing), Err(DecodeError::Trailing(1)));
        let unordered = Message::Changes(Changes {
            entries: vec![
                Entry {
                    seq: 2,
                    doc_id: [0; 16],
                    bytes: vec![],
                },
                Entry {
                    seq: 2,
                    doc_id: [0; 16],
                    bytes: vec![],
                },
            ],
            through: 2,
            through_hash: [0; 32],
            head: 2,
        });
        assert_eq!(
            Message::decode(&unordered.encode()),
            Err(DecodeError::Unordered)
        );
        assert!(Message::decode(&[]).is_err());
        assert!(Message::decode(&[200]).is_err());
    }

    proptest! {
        #[test]
        fn random_frames_never_panic(frame in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Message::decode(&frame);
        }

        #[test]
        fn mutated_frames_never_panic(
            which in 0usize..9,
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut frame = sample()[which].encode();
            for (at, byte) in flips {
                let i = at.index(frame.len());
                frame[i] = byte;
            }
            let _ = Message::decode(&frame);
            let keep = cut.index(frame.len() + 1);
            frame.truncate(keep);
            let _ = Message::decode(&frame);
        }
    }
}
