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
