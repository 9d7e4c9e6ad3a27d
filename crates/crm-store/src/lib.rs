//! The device replica: one SQLite file holding every record's Automerge document, its changes,
//! the projection tables the clients query, and the outbox of local changes.
//!
//! - [`Store`] opens ([`Store::open`]) or creates ([`Store::init`]) a replica in a data
//!   directory and checks that it is one this build can read.
//! - Local writes ([`Store::create`], [`Store::edit`], [`Store::set_archived`],
//!   [`Store::resolve`]) load the document on demand, apply an [`crm_model::Edit`] as one
//!   Automerge change, and store the change, the document's new heads, its projection rows and
//!   an outbox entry in one transaction.
//! - [`Store::apply_remote_changes`] is the heart of sync: it takes [`RemoteChange`]s in any
//!   order, with duplicates, and applies them idempotently, documents and projections together.
//! - Reads come from projections ([`Store::list`] with a [`ListQuery`], [`Store::search`],
//!   [`Store::conflicts`]) or, for one record, from its document ([`Store::get`],
//!   [`Store::history`]).
//!
//! Documents are never all in memory: a bounded cache holds the few most recently used, and
//! is checked against the stored heads so another process's writes are never overwritten.

mod checkpoint;
pub mod dashboard;
mod error;
mod history;
mod projection;
mod query;
mod remote;
mod replica;
mod schema;
mod sync;

pub use error::{Result, StoreError};
pub use history::{FieldChange, TimelineEntry};
pub use query::{Cmp, Conflict, Filter, ListQuery, ListRow, SearchHit};
pub use remote::{ApplyReport, LoggedChange, RemoteChange};
pub use replica::{Identity, REPLICA_FILE, Store};
pub use sync::{OutboxChange, RelayLink, SyncCursor};
