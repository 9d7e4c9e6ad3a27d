//! `crm-relay`: the self-hosted relay that merges a team's changes by log shipping.
//!
//! - [`store::RelayStore`] is everything the relay keeps: workspaces, devices (tokens stored
//!   only as SHA-256 hashes), a directory of documents and, per workspace, a change log
//!   numbered by sequence. [`store::SqliteStore`] implements it in one SQLite file.
//! - [`server::app`] is the router (`/v1/sync`, `/healthz`, `/metrics`);
//!   [`server::serve`] runs it on a listener until a shutdown future resolves, then closes
//!   every session gracefully.
//! - Each WebSocket connection is a session task driving the sans-IO
//!   `crm_sync::relay::RelaySync`: the machine decides what to send; the session does the
//!   storage work on blocking threads and wakes when another session extends its workspace's
//!   log (a per-workspace `watch` of the head, in the hub).
//! - [`token::Token`] is a device's bearer token, `crm1.<workspace>.<secret>`.
//!
//! The relay parses a change only to validate it and never loads a document, so its memory
//! does not grow with the number of records.

mod hub;
mod ids;
mod metrics;
pub mod server;
mod session;
pub mod store;
pub mod token;

pub use ids::{DeviceId, ParseError, Role, WorkspaceId};
pub use metrics::Metrics;
pub use server::{AppState, Config, app, serve};
pub use store::{RelayStore, SqliteStore};
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
