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
//!   A change that cannot be applied is quarantined on its own ([`Quarantined`]), never the
//!   batch; [`Store::outbox_batch`] checks every change against its hash before it is pushed,
//!   and [`Store::check`] checks a whole replica.
//! - Reads come from projections ([`Store::list`] with a [`ListQuery`], [`Store::search`],
//!   [`Store::conflicts`]) or, for one record, from its document ([`Store::get`],
//!   [`Store::history`]).
//!
//! - Bulk writes ([`Store::write_batch`], [`Store::write_atomic`]) write many records in one
//!   transaction, each still its own change; [`Store::duplicate_groups`] finds likely
//!   duplicates by normalised keys and [`Store::merge_records`] merges them.
//!
//! - [`Store::backup`] copies a replica to a file while other processes write it,
//!   [`Store::verify_file`] checks that a file is a replica, and [`Store::restore`] puts a
//!   copy back in place of a replica, never leaving a half-written one ([`BackupError`],
//!   [`ReplicaSummary`]).
//!
//! - Access control, the device half ([`RelayIdentity`], [`Store::adopt_identity`]): the relay
//!   names the replica's user, role, teams and device, and sends only the records the user
//!   may see; [`Store::purge_record`], [`Store::sweep_except`] and [`Store::wipe`] remove
//!   the records that leave that scope, leaving nothing of them readable in the file
//!   ([`Purge`], [`PurgeReport`], [`WipeReport`]), but never unsent local changes.
//!
//! - Edits the relay refused ([`Refused`]): [`Store::settle_refused`] takes them and what
//!   builds on them out of the replica, rebuilds the records without them and keeps them as
//!   [`RejectedEdit`]s, which the user retries ([`Store::retry_rejected`]) or dismisses
//!   ([`Store::dismiss_rejected`]).
//!
//! Documents are never all in memory: a bounded cache holds the few most recently used, and
//! is checked against the stored heads so another process's writes are never overwritten.

mod access;
mod backup;
mod batch;
mod bootstrap;
mod bulk;
mod check;
mod checkpoint;
pub mod dashboard;
mod dedup;
mod error;
pub mod flows;
mod history;
mod parallel;
mod projection;
mod quarantine;
mod query;
mod record_merge;
mod refused;
mod remote;
mod replica;
pub mod reports;
mod schema;
mod sync;

pub use access::{Adoption, OutOfScope, Purge, PurgeReport, RelayIdentity, WipeReport};
pub use backup::{BackupError, IfExists, ReplicaSummary};
pub use batch::{BatchOp, Written};
pub use bootstrap::{PreparedDocuments, RemoteDocument};
pub use check::{CheckKind, CheckProblem, CheckReport};
pub use dedup::{
    DedupKey, DuplicateGroup, DuplicateMember, KeyKind, KeySeen, KeyedRecord, name_key,
    phone_digits, record_keys,
};
pub use error::{Result, StoreError};
pub use history::{FieldChange, TimelineEntry};
pub use quarantine::{Origin, Problem, Quarantined};
pub use query::{Cmp, Conflict, Filter, ListQuery, ListRow, SearchHit};
pub use record_merge::MergeReport;
pub use refused::{Refused, RejectedEdit, RejectedField, SettleReport};
pub use remote::{ApplyReport, LoggedChange, PulledChange, RemoteChange};
pub use replica::{Identity, REPLICA_FILE, ReadOnly, Store};
pub use sync::{DamagedChange, ForeignChange, OutboxBatch, OutboxChange, RelayLink, SyncCursor};
