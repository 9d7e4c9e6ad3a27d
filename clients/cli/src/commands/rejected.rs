//! `crm rejected`, `crm rejected retry ID`, `crm rejected dismiss ID`: the edits the relay
//! refused (see `crm_store::Store::settle_refused`), and what to do with each.

use anyhow::Result;
use clap::{Arg, ArgMatches, Command};
use crm_store::{RejectedEdit, RejectedField};
use serde_json::{Value as Json, json};

use super::open;
use crate::exit::Usage;
use crate::output;

pub(crate) fn command() -> Command {
    let id = || {
        Arg::new("id")
            .required(true)
            .value_name("ID")
            .value_parser(clap::value_parser!(i64))
            .help("The refused edit's id, as `crm rejected` lists it")
    };
    Command::new("rejected")
        .about("Edits the relay refused: list them, make one again or drop it")
        .subcommand(
            Command::new("retry")
                .about("Make a refused edit again, as a new change (your role must allow it now)")
                .arg(id()),
        )
        .subcommand(
            Command::new("dismiss")
                .about("Drop a refused edit: what it typed is discarded")
                .arg(id()),
        )
}

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    match m.subcommand() {
        None => list(m, as_json),
        Some(("retry", sub)) => retry(sub, as_json),
        Some(("dismiss", sub)) => dismiss(sub, as_json),
        Some((other, _)) => Err(Usage(format!("unknown command `crm rejected {other}`")).into()),
    }
}

fn id_of(m: &ArgMatches) -> Result<i64> {
    m.get_one::<i64>("id")
        .copied()
        .ok_or_else(|| Usage("which refused edit? give its ID".into()).into())
}

fn list(m: &ArgMatches, as_json: bool) -> Result<()> {
    let store = open(m)?;
    let all = store.rejected()?;
    if as_json {
        output::json(&serde_json::to_value(&all)?);
        return Ok(());
    }
    if all.is_empty() {
        println!("no refused edits");
        return Ok(());
    }
    let rows = all.iter().map(row).collect();
    output::table(
        &[
            "id",
            "record",
            "field",
            "typed",
            "now",
            "made",
            "refused by the relay",
        ],
        rows,
    );
    println!(
        "`crm rejected retry ID` makes one again as a new change; `crm rejected dismiss ID` drops it"
    );
    Ok(())
}

/// One refused edit as a table row; its fields one per line.
fn row(e: &RejectedEdit) -> Vec<String> {
    let record = format!(
        "{}{} {}\n{}",
        if e.created { "new " } else { "" },
        e.kind.as_str().replace('_', " "),
        output::one_line(&e.title, 40),
        e.record
    );
    let column = |f: fn(&RejectedField) -> &Json| {
        e.fields
            .iter()
            .map(|field| blank(output::cell(Some(f(field)))))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let fields = if e.fields.is_empty() {
        "(no visible change)".to_string()
    } else {
        e.fields
            .iter()
            .map(|f| f.field.clone())
            .collect::<Vec<_>>()
            .join("\n")
    };
    vec![
        e.id.to_string(),
        record,
        fields,
        column(|f| &f.typed),
        column(|f| &f.old),
        e.made_at.clone().unwrap_or_default(),
        format!("{} {}", e.code, output::one_line(&e.reason, 60)),
    ]
}

fn blank(s: String) -> String {
    if s.is_empty() { "∅".into() } else { s }
}

fn retry(m: &ArgMatches, as_json: bool) -> Result<()> {
    let id = id_of(m)?;
    let mut store = open(m)?;
    let record = store.retry_rejected(id)?;
    if as_json {
        output::json(&json!({ "retried": id, "record": record.to_json() }));
    } else {
        println!(
            "made refused edit {id} again: {} {} ({}); it goes to the relay at the next `crm sync`",
            record.kind.as_str().replace('_', " "),
            record.title(),
            record.id
        );
    }
    Ok(())
}

fn dismiss(m: &ArgMatches, as_json: bool) -> Result<()> {
    let id = id_of(m)?;
    let mut store = open(m)?;
    store.dismiss_rejected(id)?;
    if as_json {
        output::json(&json!({ "dismissed": id }));
    } else {
        println!("dismissed refused edit {id}");
    }
    Ok(())
}
