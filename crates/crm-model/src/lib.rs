//! The CRM domain, pure: record kinds, their field schemas, validation, and the mapping
//! between a record and its Automerge document. No I/O, no SQL, no async.
//!
//! - [`Kind`] names a record kind; [`Kind::schema`] gives its [`Schema`], a list of
//!   [`FieldDef`]s, each with a [`FieldType`] and a [`MergeRule`].
//! - [`FieldValue::parse`] turns what a user typed into a validated, typed value.
//! - An [`Edit`] is a validated list of [`Op`]s (set, unset, tag, notes, archive).
//! - [`doc::create`] and [`doc::apply_edit`] turn an edit into one Automerge change whose
//!   commit message names the [`Author`] (user and device) and whose time is the edit's;
//!   [`doc::read`] materialises a [`Record`] (optionally as of some heads), including the
//!   fields that hold concurrent values.
//! - [`change::verify`] checks change bytes from elsewhere (parse and checksum), and
//!   [`change::creation`] reads which record a dependency-free change creates.

pub mod access;
mod author;
pub mod change;
pub mod doc;
mod edit;
mod error;
mod id;
mod kind;
pub mod kinds;
mod record;
mod schema;
pub mod shape;
mod value;

pub use access::{Action, Directory, Level, Matrix, Role, Scope, Viewer, authorize_write};
pub use author::{Author, millis_to_time};
pub use change::MAX_CHANGE_BYTES;
pub use doc::{SCHEMA_VERSION, Stamp};
pub use edit::{Edit, Op};
pub use error::{DocError, ValidationError};
pub use id::{ParseIdError, RecordId};
pub use kind::{Kind, UnknownKind};
pub use record::{HistoryEntry, RESERVED_KEYS, Record};
pub use schema::{COMMON_FIELDS, FieldDef, FieldType, MergeRule, Schema, SetOf};
pub use value::{
    Amount, FieldValue, LineItem, MAX_PROSE_CHARS, MAX_TEXT_CHARS, ParseAmountError, format_time,
    normalize_domain, normalize_email, normalize_phone, phone_key,
};

/// The automerge crate this model is built on, so callers use the same version.
pub use automerge;
