//! `crm KIND add|list|show|edit|archive|restore` and `crm show ID`.

use anyhow::Result;
use clap::ArgMatches;
use crm_model::{Edit, Kind};
use crm_store::{Filter, ListQuery};
use serde_json::json;

use super::{open, parse_id};
use crate::cli::field_flags;
use crate::exit::Usage;
use crate::output;

pub(crate) fn run(kind: Kind, m: &ArgMatches, as_json: bool) -> Result<()> {
    let Some((verb, sub)) = m.subcommand() else {
        return Err(Usage(format!(
            "missing command; see `crm {} --help`",
            kind.command_name()
        ))
        .into());
    };
    match verb {
        "add" => add(kind, sub, as_json),
        "list" => list(kind, sub, as_json),
        "show" => {
            if let Some(result) = super::flows::show(kind, sub, as_json) {
                return result;
            }
            let mut store = open(sub)?;
            let record = store.get_kind(kind, parse_id(sub, "id")?)?;
            print_record(&store, &record, as_json)
        }
        "edit" => edit(kind, sub, as_json),
        "archive" | "restore" => {
            let mut store = open(sub)?;
            let id = parse_id(sub, "id")?;
            store.get_kind(kind, id)?;
            let record = store.set_archived(id, verb == "archive")?;
            if as_json {
                output::json(&record.to_json());
            } else {
                println!(
                    "{} {} {}",
                    if verb == "archive" {
                        "archived"
                    } else {
                        "restored"
                    },
                    kind,
                    id
                );
            }
            Ok(())
        }
        other => super::flows::run_verb(kind, other, sub, as_json)
            .unwrap_or_else(|| Err(Usage(format!("unknown command {other:?}")).into())),
    }
}

pub(crate) fn show_any(m: &ArgMatches, as_json: bool) -> Result<()> {
    let mut store = open(m)?;
    let record = store.get(parse_id(m, "id")?)?;
    print_record(&store, &record, as_json)
}

fn print_record(store: &crm_store::Store, record: &crm_model::Record, as_json: bool) -> Result<()> {
    if as_json {
        output::json(&record.to_json());
    } else {
        let titles = store.titles(&output::referenced(record))?;
        output::record(record, &titles);
    }
    Ok(())
}

/// Builds the edit from the shared field syntax: field flags, `--set`, `--unset`, `--tag`,
/// `--untag`, `--notes`, `--append-notes`.
fn build_edit(kind: Kind, m: &ArgMatches) -> Result<Edit> {
    let mut edit = Edit::new(kind);
    for field in field_flags(kind) {
        if let Some(v) = m.get_one::<String>(field.name) {
            edit.set(field.name, v)?;
        }
    }
    for s in m.get_many::<String>("set").into_iter().flatten() {
        edit.set_assignment(s)?;
    }
    for f in m.get_many::<String>("unset").into_iter().flatten() {
        edit.unset(f)?;
    }
    for t in m.get_many::<String>("tag").into_iter().flatten() {
        edit.tag(t)?;
    }
    for t in m.get_many::<String>("untag").into_iter().flatten() {
        edit.untag(t)?;
    }
    if let Some(n) = m.get_one::<String>("notes") {
        edit.replace_notes(n)?;
    }
    if let Some(n) = m.get_one::<String>("append-notes") {
        edit.append_notes(n)?;
    }
    Ok(edit)
}

fn add(kind: Kind, m: &ArgMatches, as_json: bool) -> Result<()> {
    let edit = build_edit(kind, m)?;
    let mut store = open(m)?;
    let record = store.create(&edit)?;
    if as_json {
        output::json(&record.to_json());
    } else {
        println!("{}", record.id);
    }
    Ok(())
}

fn edit(kind: Kind, m: &ArgMatches, as_json: bool) -> Result<()> {
    let id = parse_id(m, "id")?;
    let edit = build_edit(kind, m)?;
    if edit.is_empty() {
        return Err(Usage("nothing to change: give --set, --unset, --tag, --untag, --notes, --append-notes or a field flag".into()).into());
    }
    let mut store = open(m)?;
    store.get_kind(kind, id)?;
    let record = store.edit(id, &edit)?;
    print_record(&store, &record, as_json)
}

fn list(kind: Kind, m: &ArgMatches, as_json: bool) -> Result<()> {
    let mut q = ListQuery::new(kind);
    for w in m.get_many::<String>("where").into_iter().flatten() {
        q.filters.push(Filter::parse(w)?);
    }
    for field in field_flags(kind).filter(|f| f.filter) {
        if let Some(v) = m.get_one::<String>(field.name) {
            q.filters.push(Filter {
                field: field.name.into(),
                cmp: crm_store::Cmp::Eq,
                value: v.clone(),
            });
        }
    }
    q.tags = m
        .get_many::<String>("tag")
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    q.include_archived = m.get_flag("archived");
    q.limit = m.get_one::<usize>("limit").copied().unwrap_or(50);
    q.offset = m.get_one::<usize>("offset").copied().unwrap_or(0);
    q.sort = m.get_one::<String>("sort").cloned();
    q.descending = m.get_flag("desc");
    let store = open(m)?;
    let rows = store.list(&q)?;
    let computed = super::flows::list_columns(kind, &store, &rows)?;
    if as_json {
        output::json(&json!(
            rows.iter()
                .enumerate()
                .map(|(i, r)| {
                    let mut json = r.json.clone();
                    if let Some(obj) = json.as_object_mut() {
                        for (key, values) in &computed {
                            obj.insert((*key).into(), values[i].0.clone());
                        }
                    }
                    json
                })
                .collect::<Vec<_>>()
        ));
        return Ok(());
    }
    let columns: Vec<&str> = kind
        .schema()
        .all_fields()
        .filter(|f| f.filter && !f.title && f.name != "owner")
        .map(|f| f.name)
        .take(4)
        .collect();
    let mut header = vec!["id", "title"];
    header.extend(columns.iter().copied());
    header.extend(computed.iter().map(|(key, _)| *key));
    header.push("tags");
    if q.include_archived {
        header.push("archived");
    }
    let refs: Vec<crm_model::RecordId> = rows
        .iter()
        .flat_map(|r| {
            columns
                .iter()
                .filter_map(|c| r.json.get(*c)?.as_str()?.parse().ok())
        })
        .collect();
    let titles = store.titles(&refs)?;
    let ref_columns: Vec<bool> = columns
        .iter()
        .map(|c| {
            kind.schema()
                .field(c)
                .is_some_and(|f| matches!(f.ty, crm_model::FieldType::Ref(_)))
        })
        .collect();
    let table_rows = rows
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let mut row = vec![r.id.to_string(), output::one_line(&r.title, 40)];
            row.extend(columns.iter().zip(&ref_columns).map(|(c, is_ref)| {
                match (is_ref, r.json.get(*c).and_then(|v| v.as_str())) {
                    (true, Some(id)) => output::reference(id, &titles),
                    _ => output::cell(r.json.get(*c)),
                }
            }));
            row.extend(computed.iter().map(|(_, values)| values[i].1.clone()));
            row.push(output::cell(r.json.get("tags")));
            if q.include_archived {
                row.push(output::cell(r.json.get("archived")));
            }
            row
        })
        .collect();
    output::table(&header, table_rows);
    Ok(())
}
