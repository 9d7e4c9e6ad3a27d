//! `crm check`: verify the whole replica (see `crm_store::Store::check`); prints what it
//! found and exits 1 when the replica has a problem. It writes nothing.

use anyhow::Result;
use clap::ArgMatches;
use crm_store::{CheckReport, Quarantined, Store};
use serde_json::json;

use super::data_dir;
use crate::output;

/// The replica has problems; the report was printed.
#[derive(Debug, thiserror::Error)]
#[error("the replica has {0} problem(s); see above")]
pub(crate) struct ProblemsFound(u64);

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let dir = data_dir(m)?;
    let report = Store::check(&dir)?;
    if as_json {
        output::json(&report_json(&report));
    } else {
        print_report(&report);
    }
    if report.is_clean() {
        Ok(())
    } else {
        let n = u64::try_from(report.problems.len()).unwrap_or(u64::MAX) + report.omitted;
        Err(ProblemsFound(n).into())
    }
}

fn report_json(r: &CheckReport) -> serde_json::Value {
    json!({
        "ok": r.is_clean(),
        "documents": r.documents,
        "changes": r.changes,
        "problems": r.problems.iter().map(|p| json!({
            "kind": p.kind.as_str(),
            "record": p.record.map(|id| id.to_string()),
            "detail": p.detail,
            "repair": p.repair,
        })).collect::<Vec<_>>(),
        "omitted": r.omitted,
        "quarantined": r.quarantined.iter().map(quarantined_json).collect::<Vec<_>>(),
    })
}

/// A quarantined change as `--json` prints it (also used by `crm sync` and `crm merge-from`).
pub(crate) fn quarantined_json(q: &Quarantined) -> serde_json::Value {
    let (origin, position, peer) = match &q.origin {
        crm_store::Origin::Relay { seq } => ("relay", Some(*seq), None),
        crm_store::Origin::Bootstrap => ("bootstrap", None, None),
        crm_store::Origin::Replica { id } => ("replica", None, Some(id.clone())),
        crm_store::Origin::Remote => ("remote", None, None),
    };
    json!({
        "record": q.doc_id.to_string(),
        "hash": q.hash,
        "problem": q.problem.as_str(),
        "reason": q.reason,
        "origin": origin,
        "position": position,
        "peer": peer,
        "at": q.at,
    })
}

/// One warning line per quarantined change, on stderr.
pub(crate) fn warn_quarantined(entries: &[Quarantined]) {
    for q in entries {
        eprintln!("warning: quarantined a change it cannot apply: {q}");
    }
}

fn print_report(r: &CheckReport) {
    println!("checked {} records and {} changes", r.documents, r.changes);
    for p in &r.problems {
        let record = p
            .record
            .map(|id| format!("record {id}: "))
            .unwrap_or_default();
        println!("problem ({}): {record}{}", p.kind.as_str(), p.detail);
        println!("  repair: {}", p.repair);
    }
    if r.omitted > 0 {
        println!("… and {} more problems", r.omitted);
    }
    if !r.quarantined.is_empty() {
        println!(
            "quarantined: {} change(s) from elsewhere, refused and never applied (not damage to this replica):",
            r.quarantined.len()
        );
        for q in &r.quarantined {
            println!("  {q}, at {}", q.at);
        }
    }
    if r.is_clean() {
        println!("no problems found");
    }
}
