//! `crm-relay migrate --from URL --to URL`: every row into a new, empty database of either
//! backend, keeping the relay's identity, then checked.

use anyhow::Context as _;
use crm_relay::Relay;
use crm_relay::service::migrate::{self, MigrateReport};
use crm_relay::store::{Database, FILE_NAME};

use super::{exit, output};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The database to copy: `sqlite:DIR` or `postgres://…` (default: --database or --data).
    #[arg(long, value_name = "URL")]
    from: Option<String>,
    /// An empty database to copy into: `sqlite:DIR` (DIR without a relay.db) or
    /// `postgres://…` (a database without a relay's tables).
    #[arg(long, value_name = "URL")]
    to: String,
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(global: Option<&Database>, args: Args) -> anyhow::Result<()> {
    let parse = |url: &str| {
        url.parse::<Database>()
            .map_err(|e| anyhow::Error::new(exit::Usage(e.to_string())))
    };
    let from = match (&args.from, global) {
        (Some(url), _) => parse(url)?,
        (None, Some(database)) => database.clone(),
        (None, None) => {
            return Err(exit::Usage(
                "--from URL is required (or --database URL / --data DIR)".into(),
            )
            .into());
        }
    };
    let to = parse(&args.to)?;
    if from == to {
        return Err(exit::Usage(format!("--from and --to are the same database ({from})")).into());
    }
    let source = Relay::new(
        from.open(false)
            .with_context(|| format!("cannot open the source {from}"))?,
    );
    let target = Relay::new(
        to.create_with_identity(source.relay_id())
            .with_context(|| format!("cannot create the target {to}"))?,
    );
    let report = match migrate::migrate(&source, &target) {
        Ok(report) => report,
        Err(e) => {
            drop(target);
            let left = discard(&to);
            return Err(
                anyhow::Error::new(e).context(format!("cannot migrate {from} to {to}; {left}"))
            );
        }
    };
    if args.json {
        output::json(&report)?;
    } else {
        print(&report, &from, &to);
    }
    Ok(())
}

/// Removes a failed copy when it is a file this command made; says what is left.
fn discard(to: &Database) -> String {
    match to {
        Database::Sqlite(dir) => {
            let db = dir.join(FILE_NAME);
            for suffix in ["", "-wal", "-shm"] {
                let mut name = db.as_os_str().to_owned();
                name.push(suffix);
                let _ = std::fs::remove_file(std::path::PathBuf::from(name));
            }
            format!("the partial copy {} was removed", db.display())
        }
        Database::Postgres(_) => format!(
            "the target holds a partial copy: drop and recreate that database before migrating \
             into it again ({to})"
        ),
    }
}

fn print(report: &MigrateReport, from: &Database, to: &Database) {
    let c = &report.copied;
    println!(
        "copied {} workspaces, {} devices, {} documents, {} changes and {} snapshots from {from} \
         to {to} (relay {})",
        c.workspaces, c.devices, c.documents, c.changes, c.snapshots, report.relay_id
    );
    println!(
        "verified the copy ({} changes, {} documents, {} snapshots); heads as in the source: {}",
        report.verify.changes,
        report.verify.documents,
        report.verify.snapshots,
        if report.workspaces.is_empty() {
            "no workspaces".into()
        } else {
            report
                .workspaces
                .iter()
                .map(|w| format!("{} at {}", w.name, w.head))
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    for id in &report.moved_on {
        eprintln!(
            "warning: workspace {id} received changes during the copy; the copy has them up to \
             its head above (stop the relay before migrating: devices push what the target \
             lacks again)"
        );
    }
}
