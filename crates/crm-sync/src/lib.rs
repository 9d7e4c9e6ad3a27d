//! The sync protocol between devices and the relay, sans-IO.
//!
//! - [`Message`] is every frame of the protocol, with [`Message::encode`] and a bounded,
//!   panic-free [`Message::decode`]. Errors sent to a peer carry an [`ErrorCode`].
//! - [`device::DeviceSync`] and [`relay::RelaySync`] are the two ends' state machines. Each
//!   takes inputs (a frame, the answer to an effect it asked for) and returns effects as data
//!   (send these bytes, store this batch, apply these entries). They own no socket, timer or
//!   database; the tokio drivers in the device node and the relay do. That keeps every
//!   multi-device scenario testable deterministically, in memory.
//!
//! The protocol ships a change log: the relay numbers every change it stores with a
//! per-workspace sequence number, and a device resumes from its cursor, so a reconnect costs
//! the same whatever the size of the workspace. See docs/PROTOCOL.md.

pub mod device;
mod error;
mod message;
pub mod relay;

pub use error::{DecodeError, ErrorCode};
pub use message::{
    Access, Ack, Changes, Cursor, DocId, DocState, Documents, DocumentsReceived, Entry, Envelope,
    ErrorFrame, Grant, Hash, Hello, MAX_BATCH_CHANGES, MAX_CHANGE_BYTES, MAX_DOC_CHANGES,
    MAX_FRAME_BYTES, MAX_MATRIX_BYTES, MAX_SCOPE_TEAMS, MAX_TEXT_BYTES, MIN_PROTOCOL_VERSION,
    Message, Outcome, PROTOCOL_VERSION, PUSH_OVERHEAD_BYTES, Purge, Push, Received, Refusal,
    RelayId, Resume, Scope, Welcome,
};
