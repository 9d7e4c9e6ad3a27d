//! `crm join`, `crm sync [--watch]`, `crm status`.

use anyhow::{Context, Result};
use clap::ArgMatches;
use crm_node::sync::{SyncReport, sync_once, watch, workspace_of};
use crm_store::RelayLink;
use serde_json::json;

use super::check::{quarantined_json, warn_quarantined};
use super::open;
use crate::exit::Usage;
use crate::output;

pub(crate) fn join(m: &ArgMatches, as_json: bool) -> Result<()> {
    let url = m.get_one::<String>("url").cloned().unwrap_or_default();
    let token = m.get_one::<String>("token").cloned().unwrap_or_default();
    let workspace = workspace_of(&token).map_err(|e| Usage(e.to_string()))?;
    let urls = crm_node::sync::relay_urls(&url);
    if urls.is_empty() || urls.iter().any(|u| u.chars().any(char::is_whitespace)) {
        return Err(Usage(format!(
            "invalid relay URL {url:?}: expected URL, or several separated by commas"
        ))
        .into());
    }
    let url = urls.join(",");
    let mut store = open(m)?;
    store.set_relay(&RelayLink {
        url: url.clone(),
        token: token.trim().to_string(),
    })?;
    if as_json {
        output::json(&json!({ "relay": url, "workspace": workspace }));
    } else {
        println!("joined workspace {workspace} at {url}; run `crm sync` to exchange changes");
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn report_json(r: &SyncReport) -> serde_json::Value {
    json!({
        "pushed": r.pushed,
        "pulled": r.pulled,
        "records_changed": r.records_changed,
        "head": r.head,
        "reset": r.reset,
        "bootstrapped": r.bootstrapped,
        "quarantined": r.quarantined.iter().map(quarantined_json).collect::<Vec<_>>(),
        "granted": r.granted,
        "purged": r.purged,
        "kept_out_of_scope": r.kept_out_of_scope,
        "held_foreign": r.held_foreign,
        "held_foreign_authors": r.held_foreign_authors,
        "refused": r.refused,
    })
}

/// What a sync changed in what this replica may hold, and what it could not push.
fn report_access(r: &SyncReport) {
    if r.granted > 0 {
        println!(
            "{} records entered your scope and were loaded whole",
            r.granted
        );
    }
    if r.purged > 0 {
        println!(
            "{} records left your scope and were deleted from this replica",
            r.purged
        );
    }
    if r.kept_out_of_scope > 0 {
        eprintln!(
            "warning: {} records left your scope but keep changes made here that the relay \
             has not taken; they stay on this replica",
            r.kept_out_of_scope
        );
    }
    if r.refused > 0 {
        eprintln!(
            "warning: the relay refused {} of your changes (your role may not make them); \
             their records were put back as the relay has them, and what you typed is kept: \
             see `crm rejected`",
            r.refused
        );
    }
    if r.held_foreign > 0 {
        eprintln!(
            "warning: {} changes made on this replica as {} stay here: the relay takes only \
             its user's changes (see `crm whoami`); they remain in the records' history",
            r.held_foreign,
            r.held_foreign_authors.join(", ")
        );
    }
}

pub(crate) fn whoami(m: &ArgMatches, as_json: bool) -> Result<()> {
    let store = open(m)?;
    let id = store.identity();
    let relay = store.relay()?;
    let teams: Vec<String> = id.teams.iter().map(ToString::to_string).collect();
    if as_json {
        output::json(&json!({
            "user": id.user,
            "user_id": id.user_id.map(|u| u.to_string()),
            "role": id.role.map(|r| r.as_str()),
            "teams": teams,
            "device": id.device,
            "device_id": id.device_id,
            "relay": relay.as_ref().map(|r| r.url.clone()),
        }));
        return Ok(());
    }
    let role = match (id.role, relay.is_some()) {
        (Some(r), _) => r.to_string(),
        (None, true) => "not known yet (sync once)".into(),
        (None, false) => "admin of this replica (not joined to a relay)".into(),
    };
    output::table(
        &["", ""],
        vec![
            vec!["user".into(), id.user.clone()],
            vec![
                "user id".into(),
                id.user_id.map(|u| u.to_string()).unwrap_or_default(),
            ],
            vec!["role".into(), role],
            vec!["teams".into(), teams.join(", ")],
            vec![
                "device".into(),
                match &id.device_id {
                    Some(d) => format!("{} ({d})", id.device),
                    None => id.device.clone(),
                },
            ],
            vec![
                "relay".into(),
                relay.map_or("none (run `crm join URL --token TOKEN`)".into(), |r| r.url),
            ],
        ],
    );
    Ok(())
}

pub(crate) fn sync(m: &ArgMatches, as_json: bool) -> Result<()> {
    let mut store = open(m)?;
    let rt = runtime()?;
    if m.get_flag("watch") {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        // The report of a session grows; each quarantined change is warned about once.
        let mut warned = 0;
        rt.block_on(watch(
            &mut store,
            |r| {
                warn_quarantined(r.quarantined.get(warned..).unwrap_or_default());
                warned = r.quarantined.len();
                if as_json {
                    println!("{}", report_json(r));
                } else {
                    println!(
                        "synced: pushed {}, pulled {} ({} records changed), log head {}",
                        r.pushed, r.pulled, r.records_changed, r.head
                    );
                }
            },
            stop,
        ))?;
        return Ok(());
    }
    let report = rt.block_on(sync_once(&mut store))?;
    warn_quarantined(&report.quarantined);
    if as_json {
        output::json(&report_json(&report));
    } else {
        report_access(&report);
        if report.reset {
            println!("the relay did not know this device's position; pushed everything again");
        }
        if report.bootstrapped > 0 {
            println!(
                "loaded {} records from the relay's compacted documents",
                report.bootstrapped
            );
        }
        println!(
            "pushed {} changes, pulled {} ({} records changed); up to date with the relay (log head {})",
            report.pushed, report.pulled, report.records_changed, report.head
        );
    }
    Ok(())
}

pub(crate) fn status(m: &ArgMatches, as_json: bool) -> Result<()> {
    let store = open(m)?;
    let relay = store.relay()?;
    let cursor = store.sync_cursor()?;
    let pending = store.outbox_len()?;
    let last = store.last_sync()?;
    let quarantined = store.quarantine_len()?;
    let workspace = relay.as_ref().and_then(|r| workspace_of(&r.token).ok());
    let id = store.identity();
    if as_json {
        output::json(&json!({
            "user": id.user,
            "device": id.device,
            "relay": relay.as_ref().map(|r| r.url.clone()),
            "workspace": workspace,
            "last_sync": last,
            "pending": pending,
            "cursor": cursor.map(|c| c.seq),
            "quarantined": quarantined,
        }));
        return Ok(());
    }
    let rows = vec![
        vec!["user".into(), format!("{} on {}", id.user, id.device)],
        vec![
            "relay".into(),
            relay
                .as_ref()
                .map_or("none (run `crm join URL --token TOKEN`)".into(), |r| {
                    r.url.clone()
                }),
        ],
        vec!["workspace".into(), workspace.unwrap_or_default()],
        vec!["last sync".into(), last.unwrap_or_else(|| "never".into())],
        vec!["pending changes".into(), pending.to_string()],
        vec![
            "cursor".into(),
            cursor.map_or("none".into(), |c| format!("log position {}", c.seq)),
        ],
        vec![
            "quarantined".into(),
            if quarantined == 0 {
                "0".into()
            } else {
                format!("{quarantined} change(s) from elsewhere refused (see `crm check`)")
            },
        ],
    ];
    output::pairs(rows);
    Ok(())
}
