//! `crm merge-from OTHER_DATA_DIR [--both-ways]`: sync two replicas without a network.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ArgMatches;
use crm_store::{ApplyReport, Store};
use serde_json::json;

use super::check::{quarantined_json, warn_quarantined};
use super::open;
use crate::exit::Usage;
use crate::output;

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let mut store = open(m)?;
    let other_dir = PathBuf::from(
        m.get_one::<String>("other")
            .ok_or_else(|| Usage("missing OTHER_DATA_DIR".into()))?,
    );
    let mut other =
        Store::open(&other_dir).with_context(|| format!("cannot open {}", other_dir.display()))?;
    if other.identity().replica_id == store.identity().replica_id {
        return Err(Usage(format!("{} is this replica itself", other_dir.display())).into());
    }
    let into_here = store.merge_from(&other)?;
    warn_quarantined(&into_here.quarantined);
    let into_other = if m.get_flag("both-ways") {
        let report = other.merge_from(&store)?;
        warn_quarantined(&report.quarantined);
        Some(report)
    } else {
        None
    };
    if as_json {
        let report = |r: &ApplyReport| {
            json!({
                "applied": r.applied,
                "duplicates": r.duplicates,
                "records_changed": r.changed.len(),
                "quarantined": r.quarantined.iter().map(quarantined_json).collect::<Vec<_>>(),
            })
        };
        output::json(&json!({
            "into_this": report(&into_here),
            "into_other": into_other.as_ref().map(report),
        }));
    } else {
        println!(
            "merged {} new changes from {} ({} already here); {} records changed",
            into_here.applied,
            other_dir.display(),
            into_here.duplicates,
            into_here.changed.len()
        );
        if let Some(r) = into_other {
            println!(
                "merged {} new changes into {}; {} records changed",
                r.applied,
                other_dir.display(),
                r.changed.len()
            );
        }
    }
    Ok(())
}
