//! `crm-relay`: the self-hosted relay that merges a team's changes by log shipping.
//!
//! - [`store::RelayStore`] is the storage interface: workspaces, devices (tokens stored only
//!   as SHA-256 hashes), a directory of documents, per workspace a change log numbered by
//!   sequence, and document snapshots, in plain statements. [`store::SqliteStore`]
//!   implements it in one SQLite file, [`store::PostgresStore`] in a PostgreSQL database
//!   shared by several relay processes.
//! - [`service::Relay`] is the policy above it, the same for every backend: the push rule,
//!   authentication, revocation and cursor checks, read budgets, compaction and bootstrap
//!   pages.
//! - [`server::app`] is the router (`/v1/sync`, `/v1/bootstrap`, `/healthz`, `/metrics`);
//!   [`server::serve`] runs it and the compactor on a listener until a shutdown future
//!   resolves, then closes every session gracefully.
//! - Each WebSocket connection is a session task driving the sans-IO
//!   `crm_sync::relay::RelaySync`: the machine decides what to send; the session does the
//!   storage work on blocking threads and wakes when another session extends its workspace's
//!   log (a per-workspace `watch` of the head, in the hub).
//! - [`token::Token`] is a device's bearer token, `crm1.<workspace>.<secret>`.
//!
//! - The compactor (a background task of `serve`) keeps a snapshot of every document, so a
//!   new device's first sync (`/v1/bootstrap`) loads documents page by page instead of
//!   replaying the log.
//! - The operations, above the trait like the rest of the policy: [`Relay::verify`] checks a
//!   store one workspace and one document at a time, [`Relay::stats`] counts it,
//!   [`service::migrate::migrate`] copies every row into an empty store of either backend, and
//!   [`service::backup`] backs up and restores a SQLite store.
//!
//! The relay parses a change to validate it, and builds one document at a time to compact
//! it; it never holds every document, so its memory does not grow with the number of
//! records.

mod bootstrap;
mod compactor;
mod heads;
mod hub;
mod ids;
mod metrics;
mod outbound;
mod revocation;
pub mod server;
pub mod service;
mod session;
pub mod store;
pub mod token;
mod validate;

pub use ids::{DeviceId, ParseError, Role, WorkspaceId};
pub use metrics::Metrics;
pub use server::{AppState, Config, app, serve};
pub use service::Relay;
pub use store::{PostgresStore, RelayStore, SqliteStore};
pub use token::Token;

/// An error and its causes on one line, for logs.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
