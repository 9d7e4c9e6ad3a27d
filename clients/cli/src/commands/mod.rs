//! One module per command group; `run` dispatches the parsed command line.

pub(crate) mod backup;
mod check;
pub(crate) mod dedup;
mod demo;
pub(crate) mod export;
pub(crate) mod flows;
mod history;
pub(crate) mod import;
mod init;
mod merge;
mod record;
pub(crate) mod rejected;
mod report;
mod search;
mod serve;
mod sync;

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ArgMatches;
use crm_model::{Kind, RecordId};
use crm_store::Store;

use crate::exit::Usage;

pub(crate) fn run(m: &ArgMatches) -> Result<()> {
    let json = m.get_flag("json");
    let Some((name, sub)) = m.subcommand() else {
        return Err(Usage("no command given; see `crm --help`".into()).into());
    };
    match name {
        "init" => init::run(sub, json),
        "show" => record::show_any(sub, json),
        "search" => search::run(sub, json),
        "history" => history::history(sub, json),
        "conflicts" => history::conflicts(sub, json),
        "resolve" => history::resolve(sub, json),
        "merge-from" => merge::run(sub, json),
        "join" => sync::join(sub, json),
        "sync" => sync::sync(sub, json),
        "status" => sync::status(sub, json),
        "whoami" => sync::whoami(sub, json),
        "check" => check::run(sub, json),
        "rejected" => rejected::run(sub, json),
        "backup" => backup::backup(sub, json),
        "restore" => backup::restore(sub, json),
        "reindex" => {
            let mut store = open(sub)?;
            let n = store.reindex().context("reindex failed")?;
            if json {
                crate::output::json(&serde_json::json!({ "records": n }));
            } else {
                println!("rebuilt the projections of {n} records");
            }
            Ok(())
        }
        "schema" => init::schema(sub, json),
        "report" => report::run(sub, json),
        "demo" => demo::run(sub, json),
        "seed" => demo::seed(sub, json),
        "import" => import::run(sub, json),
        "export" => export::run(sub),
        "duplicates" => dedup::duplicates(sub, json),
        "merge" => dedup::merge(sub, json),
        "serve" => serve::run(sub, json),
        "completions" => {
            let shell = *sub
                .get_one::<clap_complete::Shell>("shell")
                .ok_or_else(|| Usage("which shell?".into()))?;
            clap_complete::generate(
                shell,
                &mut crate::cli::command(),
                "crm",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        name => {
            if let Some(result) = flows::run_command(name, sub, json) {
                return result;
            }
            let kind: Kind = name.parse()?;
            record::run(kind, sub, json)
        }
    }
}

/// The data directory: `--data-dir`, else `CRM_HOME`, else the platform's data dir.
pub(crate) fn data_dir(m: &ArgMatches) -> Result<PathBuf> {
    if let Some(dir) = m.get_one::<String>("data-dir") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("CRM_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    dirs::data_dir()
        .map(|d| d.join("crm"))
        .context("no data directory: pass --data-dir DIR or set CRM_HOME")
}

pub(crate) fn open(m: &ArgMatches) -> Result<Store> {
    let dir = data_dir(m)?;
    Ok(Store::open(&dir)?)
}

pub(crate) fn parse_id(m: &ArgMatches, arg: &str) -> Result<RecordId> {
    let raw = m
        .get_one::<String>(arg)
        .ok_or_else(|| Usage(format!("missing {arg}")))?;
    Ok(raw.parse()?)
}
