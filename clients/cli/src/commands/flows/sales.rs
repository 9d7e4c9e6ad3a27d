//! Workflow commands of the sales area.

use anyhow::Result;
use clap::{ArgMatches, Command};
use crm_model::Kind;

pub(super) fn verbs(_kind: Kind) -> Vec<Command> {
    Vec::new()
}

pub(super) fn commands() -> Vec<Command> {
    Vec::new()
}

pub(super) fn run_verb(
    _kind: Kind,
    _verb: &str,
    _m: &ArgMatches,
    _json: bool,
) -> Option<Result<()>> {
    None
}

pub(super) fn run_command(_name: &str, _m: &ArgMatches, _json: bool) -> Option<Result<()>> {
    None
}
