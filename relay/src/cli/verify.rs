//! `crm-relay verify`: the report of [`crm_relay::Relay::verify`]; exit code 1 when it found
//! problems.

use crm_relay::service::VerifyReport;
use crm_relay::store::Database;

use super::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[arg(long)]
    json: bool,
}

/// The store is not sound: the report has been printed.
#[derive(Debug, thiserror::Error)]
#[error("verify found {0} problems in the relay database")]
pub(crate) struct Unsound(u64);

pub(crate) fn run(database: &Database, args: Args) -> anyhow::Result<()> {
    let relay = super::open(database, false)?;
    let report = relay.verify()?;
    if args.json {
        output::json(&report)?;
    } else {
        print(&report);
    }
    if !report.is_sound() {
        return Err(Unsound(report.problem_count).into());
    }
    Ok(())
}

fn print(report: &VerifyReport) {
    println!(
        "checked {} workspaces, {} changes, {} documents, {} snapshots",
        report.workspaces, report.changes, report.documents, report.snapshots
    );
    if report.is_sound() {
        println!("no problems found");
        return;
    }
    output::table(
        &["PROBLEM", "WORKSPACE", "SEQ", "DOCUMENT", "DETAIL"],
        report
            .problems
            .iter()
            .map(|p| {
                vec![
                    serde_json::to_value(p.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    p.workspace.to_string(),
                    p.seq.map(|s| s.to_string()).unwrap_or_default(),
                    p.doc.map(|d| d.to_string()).unwrap_or_default(),
                    p.detail.clone(),
                ]
            })
            .collect(),
    );
    let unlisted = report.problem_count - report.problems.len() as u64;
    if unlisted > 0 {
        println!("and {unlisted} more problems");
    }
}
