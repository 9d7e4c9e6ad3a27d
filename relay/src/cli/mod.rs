//! The command line: clap definitions and dispatch. One file per command group.

mod backup;
mod device;
mod directory;
pub(crate) mod exit;
mod migrate;
mod output;
mod serve;
mod stats;
mod verify;
mod workspace;

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use crm_relay::Relay;
use crm_relay::store::Database;

#[derive(Debug, Parser)]
#[command(
    name = "crm-relay",
    version,
    about = "The self-hosted relay of the local-first CRM: syncs every device of a workspace",
    after_help = "Exit codes: 0 success, 1 runtime error, 2 usage error."
)]
pub(crate) struct Cli {
    /// The relay's data directory (its database is DIR/relay.db): the same as
    /// `--database sqlite:DIR`.
    #[arg(long, value_name = "DIR", env = "CRM_RELAY_DATA", global = true)]
    data: Option<PathBuf>,
    /// The relay's database: `sqlite:DIR` (one file, DIR/relay.db) or
    /// `postgres://USER@HOST:PORT/DB` (several relay processes may share it).
    #[arg(long, value_name = "URL", env = "CRM_RELAY_DATABASE", global = true)]
    database: Option<String>,
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
    /// Add, list and change the workspace's users (who they are, their role and teams).
    #[command(subcommand)]
    User(directory::UserCommand),
    /// Add, list and change the workspace's teams.
    #[command(subcommand)]
    Team(directory::TeamCommand),
    /// Show and change the workspace's role matrix.
    #[command(subcommand)]
    Role(directory::RoleCommand),
    /// Create the database's schema, or bring it up to this build's version, and exit
    /// (`serve` and every other command do this too when they start).
    MigrateSchema {
        #[arg(long)]
        json: bool,
    },
    /// Copy a SQLite relay's database to FILE, consistently, while the relay serves.
    Backup(backup::BackupArgs),
    /// Put a backup in place as the relay's database (stop the relay first).
    Restore(backup::RestoreArgs),
    /// Check that the database is sound: hashes, positions, documents, snapshots.
    Verify(verify::Args),
    /// Count each workspace's devices, records and changes, and the database's size.
    Stats(stats::Args),
    /// Copy everything into another, empty database (SQLite or PostgreSQL), then check it.
    Migrate(migrate::Args),
}

impl Cli {
    pub(crate) fn is_serve(&self) -> bool {
        matches!(self.command, Command::Serve(_))
    }
}

pub(crate) fn run(cli: Cli) -> anyhow::Result<()> {
    let database = match (cli.database, cli.data) {
        (Some(url), None) => Some(
            url.parse::<Database>()
                .map_err(|e| exit::Usage(e.to_string()))?,
        ),
        (None, Some(dir)) => Some(Database::Sqlite(dir)),
        (Some(_), Some(_)) => {
            return Err(exit::Usage(
                "give --database or --data, not both (--data DIR is --database sqlite:DIR)".into(),
            )
            .into());
        }
        (None, None) => None,
    };
    match cli.command {
        Command::Serve(args) => serve::run(&required(database)?, args),
        Command::Workspace(command) => workspace::run(&required(database)?, command),
        Command::Device(command) => device::run(&required(database)?, command),
        Command::User(command) => directory::users(&required(database)?, command),
        Command::Team(command) => directory::teams(&required(database)?, command),
        Command::Role(command) => directory::roles(&required(database)?, command),
        Command::Backup(args) => backup::backup(&required(database)?, args),
        Command::Restore(args) => backup::restore(&required(database)?, args),
        Command::Verify(args) => verify::run(&required(database)?, args),
        Command::Stats(args) => stats::run(&required(database)?, args),
        // `migrate` names its databases itself; its source defaults to the global one.
        Command::Migrate(args) => migrate::run(database.as_ref(), args),
        Command::MigrateSchema { json } => {
            let store = required(database)?.open(true)?;
            let (backend, location) = (store.backend(), store.location());
            let version = store.schema_version()?;
            if json {
                output::json(&serde_json::json!({
                    "backend": backend,
                    "database": location,
                    "schema_version": version,
                    "relay_id": uuid::Uuid::from_bytes(store.relay_id()),
                }))?;
            } else {
                println!("{location}: schema version {version} ({backend})");
            }
            Ok(())
        }
    }
}

fn required(database: Option<Database>) -> anyhow::Result<Database> {
    Ok(database.ok_or_else(|| {
        exit::Usage(
            "--database URL or --data DIR is required (or set CRM_RELAY_DATABASE or \
             CRM_RELAY_DATA)"
                .into(),
        )
    })?)
}

/// The relay over `database`, made if `create` and it does not exist yet.
fn open(database: &Database, create: bool) -> anyhow::Result<Relay> {
    Ok(Relay::new(database.open(create)?))
}
