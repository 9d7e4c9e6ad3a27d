//! Workflow commands: the business verbs added to the record commands (`crm lead convert`,
//! `crm ticket resolve`, …) and the workflow commands of their own (`crm reminders`, …).
//! One file per area; each offers its verbs for a kind, its top-level commands, and runs them.
//! Every step is ordinary record changes through the Store, so it syncs like any edit.

mod sales;
mod service;

use anyhow::Result;
use clap::{ArgMatches, Command};
use crm_model::Kind;

/// The extra verbs of `crm KIND`.
pub(crate) fn verbs(kind: Kind) -> Vec<Command> {
    let mut verbs = sales::verbs(kind);
    verbs.extend(service::verbs(kind));
    verbs
}

/// The workflow commands under `crm` itself.
pub(crate) fn commands() -> Vec<Command> {
    let mut commands = sales::commands();
    commands.extend(service::commands());
    commands
}

/// Runs `crm KIND VERB`, or `None` when VERB is not a workflow verb of KIND.
pub(crate) fn run_verb(kind: Kind, verb: &str, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    sales::run_verb(kind, verb, m, json).or_else(|| service::run_verb(kind, verb, m, json))
}

/// Runs `crm NAME`, or `None` when NAME is not a workflow command.
pub(crate) fn run_command(name: &str, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    sales::run_command(name, m, json).or_else(|| service::run_command(name, m, json))
}

/// Extra flags of `crm KIND show`.
pub(crate) fn show_args(kind: Kind) -> Vec<clap::Arg> {
    service::show_args(kind)
}

/// Runs `crm KIND show` for kinds that show more than the record, or `None`.
pub(crate) fn show(kind: Kind, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    service::show(kind, m, json)
}

/// Computed columns `crm KIND list` adds (e.g. a ticket's SLA clocks): (key, per row the
/// JSON value and the table cell).
#[allow(clippy::type_complexity, reason = "a list of named columns of cells")]
pub(crate) fn list_columns(
    kind: Kind,
    store: &crm_store::Store,
    rows: &[crm_store::ListRow],
) -> Result<Vec<(&'static str, Vec<(serde_json::Value, String)>)>> {
    service::list_columns(kind, store, rows)
}
