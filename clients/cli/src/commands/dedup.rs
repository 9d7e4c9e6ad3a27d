//! `crm duplicates [KIND]` lists likely duplicate records; `crm merge SURVIVOR LOSER...`
//! merges them (not to be confused with `crm merge-from`, which merges replicas).

use anyhow::Result;
use clap::{Arg, ArgAction, ArgMatches, Command};
use crm_model::{Kind, RecordId};
use serde_json::json;

use super::open;
use crate::exit::Usage;
use crate::output;

/// The kinds `crm duplicates` checks when none is named.
const DEFAULT_KINDS: &[Kind] = &[Kind::Account, Kind::Contact, Kind::Lead];

pub(crate) fn duplicates_command() -> Command {
    Command::new("duplicates")
        .about("List groups of likely duplicate records (same normalised email, phone, domain or name)")
        .arg(
            Arg::new("kind")
                .value_name("KIND")
                .help("Only this kind [default: accounts, contacts and leads]"),
        )
}

pub(crate) fn merge_command() -> Command {
    Command::new("merge")
        .about(
            "Merge duplicate records into SURVIVOR: fill its empty fields, unite sets, tags and notes, \
             re-point every reference, mark the others merged_into and archive them (history is kept)",
        )
        .arg(Arg::new("survivor").required(true).value_name("SURVIVOR").help("The record that stays"))
        .arg(
            Arg::new("losers")
                .required(true)
                .num_args(1..)
                .value_name("LOSER")
                .help("The records merged into it"),
        )
        .arg(
            Arg::new("take")
                .long("take")
                .value_name("FIELD=LOSER")
                .action(ArgAction::Append)
                .help("Take FIELD from this loser even where the survivor has a value"),
        )
}

pub(crate) fn duplicates(m: &ArgMatches, as_json: bool) -> Result<()> {
    let kinds: Vec<Kind> = match m.get_one::<String>("kind") {
        Some(k) => vec![k.parse()?],
        None => DEFAULT_KINDS.to_vec(),
    };
    let store = open(m)?;
    let mut groups = Vec::new();
    for kind in kinds {
        groups.extend(store.duplicate_groups(kind)?);
    }
    if as_json {
        output::json(&json!(groups));
        return Ok(());
    }
    if groups.is_empty() {
        println!("no likely duplicates");
        return Ok(());
    }
    let mut rows = Vec::new();
    for (i, g) in groups.iter().enumerate() {
        let shared = g
            .shared
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        for (j, member) in g.members.iter().enumerate() {
            rows.push(vec![
                if j == 0 {
                    (i + 1).to_string()
                } else {
                    String::new()
                },
                if j == 0 {
                    g.kind.to_string()
                } else {
                    String::new()
                },
                member.id.to_string(),
                output::one_line(&member.title, 40),
                member.created_at.clone().unwrap_or_default(),
                member.created_by.clone().unwrap_or_default(),
                if j == 0 {
                    output::one_line(&shared, 60)
                } else {
                    String::new()
                },
            ]);
        }
    }
    output::table(
        &[
            "group",
            "kind",
            "id",
            "title",
            "created",
            "by",
            "shared keys",
        ],
        rows,
    );
    println!(
        "{} group(s); merge one with `crm merge SURVIVOR LOSER...` (the oldest is listed first)",
        groups.len()
    );
    Ok(())
}

pub(crate) fn merge(m: &ArgMatches, as_json: bool) -> Result<()> {
    let parse = |s: &String| -> Result<RecordId> { Ok(s.parse()?) };
    let survivor = parse(
        m.get_one::<String>("survivor")
            .ok_or_else(|| Usage("missing SURVIVOR".into()))?,
    )?;
    let losers: Vec<RecordId> = m
        .get_many::<String>("losers")
        .into_iter()
        .flatten()
        .map(parse)
        .collect::<Result<_>>()?;
    let mut take = Vec::new();
    for t in m.get_many::<String>("take").into_iter().flatten() {
        let (field, id) = t
            .split_once('=')
            .ok_or_else(|| Usage(format!("--take {t:?}: expected FIELD=LOSER_ID")))?;
        take.push((field.trim().to_string(), id.trim().parse::<RecordId>()?));
    }
    let mut store = open(m)?;
    let report = store.merge_records(survivor, &losers, &take)?;
    let record = store.get(survivor)?;
    if as_json {
        output::json(&json!({ "merge": report, "survivor": record.to_json() }));
        return Ok(());
    }
    println!(
        "merged {} record(s) into {} ({}); fields taken: {}; references re-pointed in {} record(s)",
        report.merged.len(),
        record.title(),
        survivor,
        if report.fields_taken.is_empty() {
            "none".to_string()
        } else {
            report.fields_taken.join(", ")
        },
        report.repointed.len()
    );
    Ok(())
}
