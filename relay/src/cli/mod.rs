//! The command line: clap definitions and dispatch. One file per command group.

mod device;
pub(crate) mod exit;
mod output;
mod serve;
mod workspace;

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "crm-relay",
    version,
    about = "The self-hosted relay of the local-first CRM: syncs every device of a workspace",
    after_help = "Exit codes: 0 success, 1 runtime error, 2 usage error."
)]
pub(crate) struct Cli {
    /// The relay's data directory (its database is DIR/relay.db).
    #[arg(long, value_name = "DIR", env = "CRM_RELAY_DATA", global = true)]
    data: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the relay: WebSocket sync at /v1/sync and /v1/bootstrap, /healthz and /metrics.
    Serve(serve::Args),
    /// Create and list workspaces (isolated teams, each with its own change log).
    #[command(subcommand)]
    Workspace(workspace::Command),
    /// Add, list and revoke devices and their tokens.
    #[command(subcommand)]
    Device(device::Command),
}

impl Cli {
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let data = cli
        .data
        .ok_or_else(|| exit::Usage("--data DIR is required (or set CRM_RELAY_DATA)".into()))?;
    match cli.command {
        Command::Serve(args) => serve::run(&data, args),
        Command::Workspace(command) => workspace::run(&data, command),
        Command::Device(command) => device::run(&data, command),
    }
}

/// The store in `data`, made if `create` and it does not exist yet.
fn open(data: &Path, create: bool) -> anyhow::Result<crm_relay::SqliteStore> {
    Ok(if create {
        crm_relay::SqliteStore::open_or_create(data)?
    } else {
        crm_relay::SqliteStore::open(data)?
    })
}
