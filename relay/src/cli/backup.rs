//! `crm-relay backup FILE` and `crm-relay restore FILE`: SQLite only. A PostgreSQL relay is
//! backed up and restored with `pg_dump` and `pg_restore`, which the error says exactly.

use std::path::PathBuf;

use anyhow::Context as _;
use crm_relay::service::backup::{self, WorkspaceHead};
use crm_relay::store::Database;

use super::{exit, output};

#[derive(Debug, clap::Args)]
pub(crate) struct BackupArgs {
    /// The file to write (a SQLite database, checked before it is put in place).
    file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub(crate) struct RestoreArgs {
    /// A backup written by `crm-relay backup` (or any copy of a relay.db).
    file: PathBuf,
    /// Replace the relay database that is there.
    #[arg(long)]
    force: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) fn backup(database: &Database, args: BackupArgs) -> anyhow::Result<()> {
    let dir = match database {
        Database::Sqlite(dir) => dir,
        Database::Postgres(_) => {
            return Err(exit::Usage(format!(
                "backup copies a SQLite relay; back up PostgreSQL with pg_dump: \
                 `pg_dump --format=custom --file {file} {database}` (restore it with \
                 `pg_restore --clean --if-exists --dbname {database} {file}`)",
                file = args.file.display(),
            ))
            .into());
        }
    };
    let report = backup::backup(dir, &args.file, args.force).with_context(|| {
        format!(
            "cannot back up {} to {}",
            dir.display(),
            args.file.display()
        )
    })?;
    if args.json {
        output::json(&report)?;
    } else {
        println!(
            "backed up to {} ({} bytes), checked: {}",
            report.file.display(),
            report.bytes,
            summary(&report.workspaces)
        );
    }
    Ok(())
}

pub(crate) fn restore(database: &Database, args: RestoreArgs) -> anyhow::Result<()> {
    let dir = match database {
        Database::Sqlite(dir) => dir,
        Database::Postgres(_) => {
            return Err(exit::Usage(format!(
                "restore puts a SQLite backup in place; restore PostgreSQL with pg_restore: \
                 `pg_restore --clean --if-exists --dbname {database} {file}` (from \
                 `pg_dump --format=custom --file {file} {database}`)",
                file = args.file.display(),
            ))
            .into());
        }
    };
    let report = backup::restore(&args.file, dir, args.force).with_context(|| {
        format!(
            "cannot restore {} into {}",
            args.file.display(),
            dir.display()
        )
    })?;
    if args.json {
        output::json(&report)?;
    } else {
        println!(
            "restored {} as {} (relay {}), checked: {}",
            args.file.display(),
            report.file.display(),
            report.relay_id,
            summary(&report.workspaces)
        );
        if report.format_before < report.format {
            println!(
                "upgraded from format {} to {}",
                report.format_before, report.format
            );
        }
        eprintln!(
            "Devices resume from their cursors; a device that synced past this backup starts \
             over and pushes what it has again."
        );
    }
    Ok(())
}

fn summary(workspaces: &[WorkspaceHead]) -> String {
    if workspaces.is_empty() {
        return "no workspaces".into();
    }
    workspaces
        .iter()
        .map(|w| format!("{} at {}", w.name, w.head))
        .collect::<Vec<_>>()
        .join(", ")
}
