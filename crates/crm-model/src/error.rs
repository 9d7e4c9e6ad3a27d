//! Errors of the model: what was wrong with the input, or with a document.

use crate::kind::Kind;

/// Input that breaks a record's schema. Every variant names the field and what was expected,
/// so a CLI can print it as one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("{kind} has no field {field:?}; its fields are: {known}")]
    UnknownField {
        kind: Kind,
        field: String,
        known: String,
    },
    #[error("invalid value {value:?} for {field}: expected {expected}")]
    InvalidValue {
        field: String,
        value: String,
        expected: String,
    },
    #[error("{field} is required for a {kind}")]
    Required { kind: Kind, field: String },
    #[error("{field} is set once at creation and cannot be changed")]
    Immutable { field: String },
    #[error("{field} is append-only: new values must keep every existing entry")]
    AppendOnly { field: String },
    #[error("invalid tag {tag:?}: a tag is one line of at most 100 characters without commas")]
    InvalidTag { tag: String },
    #[error("invalid custom field name {name:?}: use letters, digits and underscores")]
    InvalidCustomName { name: String },
    #[error(
        "{field} is {chars} characters long; a text field holds at most {max} characters: \
         shorten it, or keep the long document elsewhere and link to it"
    )]
    TextTooLong {
        field: String,
        chars: usize,
        max: usize,
    },
    #[error("expected FIELD=VALUE, got {0:?}")]
    MissingEquals(String),
}

/// A document that can't be read or written as a record.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("document is not a CRM record: {0}")]
    NotARecord(&'static str),
    #[error("document has unknown record kind {0:?}; it was written by a newer version")]
    UnknownKind(String),
    #[error("record schema version {found} is newer than this version supports ({supported})")]
    NewerSchema { found: u64, supported: u64 },
    #[error(transparent)]
    Invalid(#[from] ValidationError),
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
}
