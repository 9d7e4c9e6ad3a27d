//! Errors: decoding failures, and the error codes sent to a peer before closing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A frame that is not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("malformed frame: {0}")]
    Malformed(postcard::Error),
    #[error("{0} trailing bytes after the message")]
    Trailing(usize),
    #[error("{what} of {len} is over the limit of {max}")]
    OverLimit {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("log entries out of order")]
    Unordered,
}

/// Why a session ended, as sent in an `Error` frame. A number rather than an enum on the wire
/// so a peer can carry codes it does not know yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// No token, or one the relay does not know.
    pub const UNAUTHENTICATED: ErrorCode = ErrorCode(401);
    /// The token was revoked.
    pub const REVOKED: ErrorCode = ErrorCode(402);
    /// The device may not do this (its role or scope forbids it).
    pub const FORBIDDEN: ErrorCode = ErrorCode(403);
    /// A pushed change's author (its commit message) is not the token's user and device.
    pub const WRONG_AUTHOR: ErrorCode = ErrorCode(419);
    /// A pushed change builds on a change the relay refused (in the same push, or one the
    /// device was told about): it is refused too.
    pub const BUILDS_ON_REFUSED: ErrorCode = ErrorCode(428);
    /// An admin wiped this device (`crm-relay device revoke --wipe`): it deletes every record
    /// of the workspace it holds.
    pub const WIPED: ErrorCode = ErrorCode(410);
    /// The workspace does not exist, or the token belongs to another one.
    pub const UNKNOWN_WORKSPACE: ErrorCode = ErrorCode(404);
    /// The document belongs to another workspace.
    pub const WRONG_WORKSPACE: ErrorCode = ErrorCode(409);
    /// The peers share no protocol version.
    pub const PROTOCOL_MISMATCH: ErrorCode = ErrorCode(426);
    /// The frame could not be decoded.
    pub const MALFORMED_FRAME: ErrorCode = ErrorCode(400);
    /// A frame over a size limit.
    pub const TOO_LARGE: ErrorCode = ErrorCode(413);
    /// A valid message at the wrong time.
    pub const UNEXPECTED_MESSAGE: ErrorCode = ErrorCode(422);
    /// Change bytes that are not an Automerge change.
    pub const INVALID_CHANGE: ErrorCode = ErrorCode(415);
    /// A pushed change depends on changes the relay does not have (its record's creation, or
    /// a change it builds on): the device must push those first.
    pub const MISSING_DEPENDENCY: ErrorCode = ErrorCode(424);
    /// The device sends faster than it may.
    pub const RATE_LIMITED: ErrorCode = ErrorCode(429);
    /// The other side failed; try again later.
    pub const INTERNAL: ErrorCode = ErrorCode(500);
    /// The relay is shutting down; reconnect later.
    pub const GOING_AWAY: ErrorCode = ErrorCode(503);

    /// Whether reconnecting later may succeed without anyone changing anything.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::INTERNAL | Self::GOING_AWAY | Self::RATE_LIMITED)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::UNAUTHENTICATED => "unauthenticated",
            Self::REVOKED => "token revoked",
            Self::FORBIDDEN => "forbidden",
            Self::WRONG_AUTHOR => "wrong author",
            Self::WIPED => "device wiped",
            Self::BUILDS_ON_REFUSED => "builds on a refused change",
            Self::UNKNOWN_WORKSPACE => "unknown workspace",
            Self::WRONG_WORKSPACE => "wrong workspace",
            Self::PROTOCOL_MISMATCH => "protocol mismatch",
            Self::MALFORMED_FRAME => "malformed frame",
            Self::TOO_LARGE => "too large",
            Self::UNEXPECTED_MESSAGE => "unexpected message",
            Self::INVALID_CHANGE => "invalid change",
            Self::MISSING_DEPENDENCY => "missing dependency",
            Self::RATE_LIMITED => "rate limited",
            Self::INTERNAL => "internal error",
            Self::GOING_AWAY => "going away",
            _ => "unknown error",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.0, self.name())
    }
}

impl From<&DecodeError> for ErrorCode {
    fn from(e: &DecodeError) -> Self {
        match e {
            DecodeError::TooLarge { .. } | DecodeError::OverLimit { .. } => ErrorCode::TOO_LARGE,
            DecodeError::Malformed(_) | DecodeError::Trailing(_) | DecodeError::Unordered => {
                ErrorCode::MALFORMED_FRAME
            }
        }
    }
}
