//! `crm init` and `crm schema`.

use anyhow::Result;
use clap::ArgMatches;
use crm_model::Kind;
use crm_store::Store;
use serde_json::json;

use super::data_dir;
use crate::exit::Usage;
use crate::output;

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let dir = data_dir(m)?;
    let user = m
        .get_one::<String>("user")
        .map(String::as_str)
        .unwrap_or_default();
    let device = m
        .get_one::<String>("device")
        .map(String::as_str)
        .unwrap_or_default();
    let store = Store::init(&dir, user, device)?;
    let id = store.identity();
    if as_json {
        output::json(&json!({
            "data_dir": dir.display().to_string(),
            "replica_id": id.replica_id,
            "user": id.user,
            "user_id": id.user_id.map(|u| u.to_string()),
            "device": id.device,
        }));
    } else {
        println!(
            "created a replica for {} on {} in {}",
            id.user,
            id.device,
            dir.display()
        );
    }
    Ok(())
}

pub(crate) fn schema(m: &ArgMatches, as_json: bool) -> Result<()> {
    let Some(kind) = m.get_one::<String>("kind") else {
        if as_json {
            output::json(&json!(
                Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()
            ));
        } else {
            output::table(
                &["kind", "command", "fields"],
                Kind::ALL
                    .iter()
                    .map(|k| {
                        vec![
                            k.as_str().into(),
                            format!(
                                "crm {} add|list|show|edit|archive|restore",
                                k.command_name()
                            ),
                            k.schema().all_fields().count().to_string(),
                        ]
                    })
                    .collect(),
            );
        }
        return Ok(());
    };
    let kind: Kind = kind
        .parse()
        .map_err(|e: crm_model::UnknownKind| Usage(e.to_string()))?;
    let fields: Vec<_> = kind.schema().all_fields().collect();
    if as_json {
        output::json(&json!(
            fields
                .iter()
                .map(|f| json!({
                    "name": f.name,
                    "type": f.ty.describe(),
                    "merge": f.rule_code(),
                    "required": f.required,
                    "filter": f.filter,
                    "default": f.default,
                }))
                .collect::<Vec<_>>()
        ));
    } else {
        output::table(
            &["field", "type", "merge", "required", "default"],
            fields
                .iter()
                .map(|f| {
                    vec![
                        f.name.into(),
                        f.ty.describe(),
                        f.rule_code(),
                        if f.required {
                            "yes".into()
                        } else {
                            String::new()
                        },
                        f.default.unwrap_or_default().into(),
                    ]
                })
                .collect(),
        );
        println!("every record also has: tags [S], notes [T], archived [L], custom.NAME [L]");
    }
    Ok(())
}
