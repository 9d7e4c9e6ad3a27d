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
    })
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
