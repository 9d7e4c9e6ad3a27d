//! `crm export KIND --format csv|json`: records of one kind, filtered like `crm KIND list`,
//! to stdout or a file. The CSV has a header row of field names (what `crm import` maps back
//! automatically), UTF-8, with a byte-order mark on request for Excel.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Arg, ArgAction, ArgMatches, Command};
use crm_model::Kind;
use crm_store::{Filter, ListQuery};
use serde_json::Value as Json;

use super::open;
use crate::exit::Usage;

/// Rows read from the projection per query, so memory stays flat for any size.
const PAGE: usize = 1_000;

/// Columns after the schema fields.
const TRAILING: &[&str] = &["tags", "notes", "archived", "created_at", "created_by"];

pub(crate) fn command() -> Command {
    Command::new("export")
        .about("Export records of one kind as CSV or JSON")
        .arg(Arg::new("kind").required(true).value_name("KIND"))
        .arg(
            Arg::new("format")
                .long("format")
                .value_name("FORMAT")
                .value_parser(["csv", "json"])
                .default_value("csv"),
        )
        .arg(
            Arg::new("where")
                .long("where")
                .value_name("FIELD OP VALUE")
                .action(ArgAction::Append)
                .help("Filter, OP one of = != < <= > >= ~ (contains), e.g. industry=retail"),
        )
        .arg(
            Arg::new("tag")
                .long("tag")
                .value_name("TAG")
                .action(ArgAction::Append)
                .help("Only records with this tag"),
        )
        .arg(
            Arg::new("archived")
                .long("archived")
                .action(ArgAction::SetTrue)
                .help("Include archived records"),
        )
        .arg(
            Arg::new("output")
                .long("output")
                .short('o')
                .value_name("FILE")
                .help("Write to FILE instead of stdout"),
        )
        .arg(
            Arg::new("bom").long("bom").action(ArgAction::SetTrue).help(
                "Start the CSV with a UTF-8 byte-order mark (so Excel reads Chinese text right)",
            ),
        )
}

pub(crate) fn run(m: &ArgMatches) -> Result<()> {
    let kind: Kind = m
        .get_one::<String>("kind")
        .ok_or_else(|| Usage("missing KIND".into()))?
        .parse()?;
    let mut q = ListQuery::new(kind);
    for w in m.get_many::<String>("where").into_iter().flatten() {
        q.filters.push(Filter::parse(w)?);
    }
    q.tags = m
        .get_many::<String>("tag")
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    q.include_archived = m.get_flag("archived");
    q.sort = Some("created_at".into());
    q.limit = PAGE;
    let store = open(m)?;
    // Check the filters before creating the output file.
    store.list(&ListQuery {
        limit: 0,
        ..q.clone()
    })?;
    let out: Box<dyn Write> = match m.get_one::<String>("output") {
        Some(path) => {
            let path = PathBuf::from(path);
            Box::new(
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?,
            )
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let mut out = BufWriter::new(out);
    let csv = m.get_one::<String>("format").map(String::as_str) != Some("json");
    let columns: Vec<&str> = std::iter::once("id")
        .chain(kind.schema().all_fields().map(|f| f.name))
        .chain(TRAILING.iter().copied())
        .collect();
    let mut n = 0usize;
    if csv {
        if m.get_flag("bom") {
            out.write_all("\u{FEFF}".as_bytes())?;
        }
        let mut writer = csv::Writer::from_writer(&mut out);
        writer.write_record(&columns)?;
        loop {
            let rows = store.list(&q)?;
            for row in &rows {
                writer.write_record(columns.iter().map(|c| cell(row.json.get(*c))))?;
            }
            n += rows.len();
            if rows.len() < PAGE {
                break;
            }
            q.offset += PAGE;
        }
        writer.flush()?;
    } else {
        out.write_all(b"[")?;
        loop {
            let rows = store.list(&q)?;
            for row in &rows {
                out.write_all(if n == 0 { b"\n" } else { b",\n" })?;
                serde_json::to_writer(&mut out, &row.json)?;
                n += 1;
            }
            if rows.len() < PAGE {
                break;
            }
            q.offset += PAGE;
        }
        out.write_all(b"\n]\n")?;
    }
    out.flush().context("writing the export")?;
    if let Some(path) = m.get_one::<String>("output") {
        eprintln!("exported {n} {} to {path}", kind.plural().replace('_', " "));
    }
    Ok(())
}

/// A JSON value as a CSV cell: text as is, lists joined with ", " (as import splits them),
/// anything structured as JSON.
fn cell(value: Option<&Json>) -> String {
    match value {
        None | Some(Json::Null) => String::new(),
        Some(Json::String(s)) => s.clone(),
        Some(Json::Array(items)) if items.iter().all(Json::is_string) => items
            .iter()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn cells_are_flat_text() {
        assert_eq!(
            super::cell(Some(&json!(["a@x.cn", "b@x.cn"]))),
            "a@x.cn, b@x.cn"
        );
        assert_eq!(super::cell(Some(&json!(12))), "12");
        assert_eq!(super::cell(Some(&json!("深圳"))), "深圳");
        assert_eq!(super::cell(None), "");
        assert_eq!(
            super::cell(Some(&json!([{"qty": "1"}]))),
            r#"[{"qty":"1"}]"#
        );
    }
}
