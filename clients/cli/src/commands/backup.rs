//! `crm backup FILE` and `crm restore FILE`: a copy of the device's replica taken while other
//! processes write it, and that copy put back (see `crm_store::Store::backup` and
//! `crm_store::Store::restore`, which do the work and the checks).

use std::path::PathBuf;

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};
use crm_store::{IfExists, ReplicaSummary, Store};
use serde_json::json;

use super::data_dir;
use crate::exit::Usage;
use crate::output;

/// What `crm restore --help` says after the options: what a restore brings back and what it
/// loses.
const RESTORE_AFTER_HELP: &str = "\
The restored replica is the backup as it was: its records, its outbox (local changes not yet
acknowledged by the relay) and its sync cursor. The next `crm sync` resumes from that cursor:
the relay sends everything it received after it, including this device's own edits that
reached the relay after the backup, and the outbox is pushed again (pushes are idempotent).
Edits made on this device after the backup that never reached the relay are lost.

Stop `crm serve` and `crm sync --watch` first: a restore refuses to replace a replica that
another process has open.";

pub(crate) fn backup_command() -> Command {
    Command::new("backup")
        .about(
            "Copy this device's replica to FILE (safe while `crm serve` or `crm sync --watch` \
             run), then check the copy",
        )
        .arg(file_arg("Where to write the copy"))
        .arg(force_arg("Replace FILE if it exists"))
        .after_help(
            "FILE holds the device's relay token: keep it as private as the device.\n\
             Put it back with `crm restore FILE`.",
        )
}

pub(crate) fn restore_command() -> Command {
    Command::new("restore")
        .about("Replace this device's replica with a backup made by `crm backup`")
        .arg(file_arg("The backup to restore; checked before anything is replaced"))
        .arg(force_arg(
            "Replace the replica this device already has (its edits that never reached the relay are lost)",
        ))
        .after_help(RESTORE_AFTER_HELP)
}

fn file_arg(help: &'static str) -> Arg {
    Arg::new("file")
        .required(true)
        .value_name("FILE")
        .value_parser(clap::value_parser!(PathBuf))
        .help(help)
}

fn force_arg(help: &'static str) -> Arg {
    Arg::new("force")
        .long("force")
        .action(ArgAction::SetTrue)
        .help(help)
}

fn file_and_mode(m: &ArgMatches) -> Result<(PathBuf, IfExists)> {
    let file = m
        .get_one::<PathBuf>("file")
        .ok_or_else(|| Usage("which file?".into()))?
        .clone();
    let if_exists = if m.get_flag("force") {
        IfExists::Replace
    } else {
        IfExists::Refuse
    };
    Ok((file, if_exists))
}

pub(crate) fn backup(m: &ArgMatches, as_json: bool) -> Result<()> {
    let dir = data_dir(m)?;
    let (file, if_exists) = file_and_mode(m)?;
    let summary = Store::backup(&dir, &file, if_exists)?;
    if as_json {
        output::json(&summary_json(&summary));
        return Ok(());
    }
    println!(
        "wrote {}: {} records, {} changes, {} bytes (checked)",
        summary.path.display(),
        summary.records,
        summary.changes,
        summary.bytes
    );
    println!("{}", cursor_line(&summary));
    Ok(())
}

pub(crate) fn restore(m: &ArgMatches, as_json: bool) -> Result<()> {
    let dir = data_dir(m)?;
    let (file, if_exists) = file_and_mode(m)?;
    let summary = Store::restore(&dir, &file, if_exists)?;
    if as_json {
        let mut out = summary_json(&summary);
        out["from"] = json!(file.display().to_string());
        output::json(&out);
        return Ok(());
    }
    println!(
        "restored {} from {}: {} records, {} changes, {} bytes",
        summary.path.display(),
        file.display(),
        summary.records,
        summary.changes,
        summary.bytes
    );
    println!("{}", cursor_line(&summary));
    Ok(())
}

/// Where the next sync of this copy starts, and what it pushes again.
fn cursor_line(s: &ReplicaSummary) -> String {
    let from = match s.cursor {
        Some(seq) => {
            format!("sync cursor: relay log position {seq}; a sync of this copy resumes from there")
        }
        None => "no sync cursor: a sync of this copy pulls the relay's whole log".into(),
    };
    match s.pending {
        0 => from,
        n => format!("{from}, and pushes its {n} local change(s) not yet acknowledged"),
    }
}

fn summary_json(s: &ReplicaSummary) -> serde_json::Value {
    json!({
        "file": s.path.display().to_string(),
        "bytes": s.bytes,
        "records": s.records,
        "changes": s.changes,
        "pending": s.pending,
        "cursor": s.cursor,
        "format": s.format,
        "replica_id": s.replica_id,
        "user": s.user,
        "device": s.device,
    })
}
