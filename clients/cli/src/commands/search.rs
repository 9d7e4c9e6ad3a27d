//! `crm search TEXT`.

use anyhow::Result;
use clap::ArgMatches;
use crm_model::Kind;
use serde_json::json;

use super::open;
use crate::output;

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let text = m
        .get_many::<String>("text")
        .into_iter()
        .flatten()
        .cloned()
        .collect::<Vec<_>>()
        .join(" ");
    let kind = m
        .get_one::<String>("kind")
        .map(|k| k.parse::<Kind>())
        .transpose()?;
    let limit = m.get_one::<usize>("limit").copied().unwrap_or(50);
    let store = open(m)?;
    let hits = store.search(&text, kind, m.get_flag("archived"), limit)?;
    if as_json {
        output::json(&json!(
            hits.iter()
                .map(|h| json!({
                    "id": h.id.to_string(),
                    "kind": h.kind.as_str(),
                    "title": h.title,
                    "archived": h.archived,
                }))
                .collect::<Vec<_>>()
        ));
    } else {
        output::table(
            &["id", "kind", "title"],
            hits.iter()
                .map(|h| {
                    vec![
                        h.id.to_string(),
                        h.kind.to_string(),
                        output::one_line(&h.title, 60),
                    ]
                })
                .collect(),
        );
    }
    Ok(())
}
