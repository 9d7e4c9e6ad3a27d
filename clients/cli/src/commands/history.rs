//! `crm history ID`, `crm conflicts [ID]`, `crm resolve ID FIELD VALUE`.

use anyhow::Result;
use clap::ArgMatches;
use serde_json::json;

use super::{open, parse_id};
use crate::output;

pub(crate) fn history(m: &ArgMatches, as_json: bool) -> Result<()> {
    let mut store = open(m)?;
    let timeline = store.history(parse_id(m, "id")?)?;
    if as_json {
        output::json(&json!(timeline));
        return Ok(());
    }
    let rows = timeline
        .iter()
        .map(|e| {
            let what = if e.created {
                let fields: Vec<String> = e
                    .changes
                    .iter()
                    .filter(|c| !c.new.is_null())
                    .map(|c| format!("{} = {}", c.field, output::cell(Some(&c.new))))
                    .collect();
                format!("created\n{}", fields.join("\n"))
            } else if e.changes.is_empty() {
                "(merged, no visible change)".into()
            } else {
                e.changes
                    .iter()
                    .map(|c| {
                        format!(
                            "{}: {} → {}",
                            c.field,
                            blank(output::cell(Some(&c.old))),
                            blank(output::cell(Some(&c.new)))
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            vec![
                e.time
                    .as_ref()
                    .map(crm_model::format_time)
                    .unwrap_or_default(),
                e.user.clone().unwrap_or_else(|| "?".into()),
                e.device.clone().unwrap_or_else(|| "?".into()),
                what,
            ]
        })
        .collect();
    output::table(&["time", "user", "device", "change"], rows);
    Ok(())
}

fn blank(s: String) -> String {
    if s.is_empty() { "∅".into() } else { s }
}

pub(crate) fn conflicts(m: &ArgMatches, as_json: bool) -> Result<()> {
    let id = match m.get_one::<String>("id") {
        Some(_) => Some(parse_id(m, "id")?),
        None => None,
    };
    let mut store = open(m)?;
    if let Some(id) = id {
        // An unknown id is an error, not an empty list.
        store.get(id)?;
    }
    let conflicts = store.conflicts(id)?;
    if as_json {
        output::json(&json!(
            conflicts
                .iter()
                .map(|c| json!({
                    "id": c.id.to_string(),
                    "kind": c.kind.as_str(),
                    "title": c.title,
                    "field": c.field,
                    "values": c.values,
                }))
                .collect::<Vec<_>>()
        ));
    } else {
        output::table(
            &["id", "kind", "title", "field", "values (shown first)"],
            conflicts
                .iter()
                .map(|c| {
                    vec![
                        c.id.to_string(),
                        c.kind.to_string(),
                        output::one_line(&c.title, 30),
                        c.field.clone(),
                        output::conflict_values(&c.values),
                    ]
                })
                .collect(),
        );
    }
    Ok(())
}

pub(crate) fn resolve(m: &ArgMatches, as_json: bool) -> Result<()> {
    let id = parse_id(m, "id")?;
    let field = m
        .get_one::<String>("field")
        .map(String::as_str)
        .unwrap_or_default();
    let value = m
        .get_one::<String>("value")
        .map(String::as_str)
        .unwrap_or_default();
    let mut store = open(m)?;
    let record = store.resolve(id, field, value)?;
    if as_json {
        output::json(&record.to_json());
    } else {
        println!("resolved {field} of {id}");
    }
    Ok(())
}
