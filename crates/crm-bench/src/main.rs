//! `crm-bench`: the foundation benchmark of the device replica. It prints figures; it asserts
//! nothing about timings.
//!
//! For each size N (`--records 10000,50000` by default) it fills a fresh replica with about N
//! realistic records from `crm-seed` through the store API, timing every `Store::create`,
//! then measures one-field edits, filtered lists of 50 rows, full-text searches, bytes on
//! disk per record and the resident memory of the process. Every size runs in its own child
//! process (this binary re-executed with the hidden `--single N`), so each size's peak RSS
//! is its own. The parent prints a table per size and a summary beside the targets, or
//! everything as JSON with `--json`.
//!
//! - [`run`] measures one size in the current process ([`run::SizeResult`]).
//! - [`report`] formats the tables; [`stats`] summarises latency samples; [`mem`] reads RSS.
//!
//! `crm-bench reports` times every report of the catalogue ([`reports`]).
//!
//! `crm-bench sync` is the sync benchmark instead: a fresh device's full sync, reconnects,
//! live propagation with many devices, push throughput and the relay's memory ([`sync`]).
//! `crm-bench reports` times every report of the catalogue on a seeded replica ([`reports`]).
//! `crm-bench import` times a 100k-row CSV import and duplicate detection ([`import`]).
//!
//! `crm-bench web` benchmarks the web UI: list and record page server time and live-update
//! latency over a seeded replica ([`web`]).
//!
//! `crm-bench access` benchmarks access control: filtered fresh syncs, a rep's reconnect,
//! live propagation to devices of mixed roles, the relay's cost per filtered entry, grants
//! and purges ([`access`]).
//!
//! `crm-bench text` times replacing a long text (notes) three ways and through
//! `Store::edit` ([`text`]).

mod access;
mod import;
mod mem;
mod report;
mod reports;
mod run;
mod stats;
mod sync;
mod text;
mod web;

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

use crate::run::{Plan, SizeResult};

/// Foundation benchmark of the CRM replica: create, edit, list, search, disk, memory. The
/// `sync` command benchmarks sync with a relay instead.
#[derive(Debug, Parser)]
#[command(name = "crm-bench", version)]
struct Args {
    /// Record counts to measure, each in a fresh replica [default: 10000,50000; with --quick
    /// 2000,10000].
    #[arg(long, value_delimiter = ',', value_name = "N1,N2,…")]
    records: Option<Vec<usize>>,
    /// A smaller run: smaller default sizes and fewer repetitions.
    #[arg(long)]
    quick: bool,
    /// Put the replicas here (DIR/records-N) and keep them, instead of temporary directories.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// The crm-seed random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Measure one size in this process and print its result as JSON (used by the parent).
    #[arg(long, hide = true, value_name = "N")]
    single: Option<usize>,
    #[command(subcommand)]
    command: Option<Bench>,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The sync benchmark: a fresh device's full sync, reconnects, live propagation with many
    /// devices, push throughput and the relay's memory.
    Sync(sync::SyncArgs),
    /// The access-control benchmark: a rep's filtered fresh sync against unfiltered ones,
    /// reconnects, live propagation to devices of mixed roles, filtering cost, grants and
    /// purges.
    Access(access::AccessArgs),
    /// Every report of `crm report` on a replica of about 50k records, against the 200 ms
    /// target.
    Reports(reports::ReportsArgs),
    /// The import benchmark: a 100k-row CSV import (time, memory) and duplicate detection
    /// over 50k accounts.
    Import(import::ImportArgs),
    /// The web UI benchmark: list and record page server time, live-update latency.
    Web(web::WebArgs),
    /// Replacing a long text (notes): Automerge's diff, a whole splice and the model's
    /// trimmed splice at 5 KB to 1 MB, and `Store::edit` replacing notes.
    Text(text::TextArgs),
}

/// What the figures were measured on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub(crate) cpu: String,
    pub(crate) cores: usize,
    pub(crate) os: String,
}

impl Machine {
    fn this() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown CPU".to_string(), |(_, m)| m.trim().to_string());
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
        }
    }
}

#[derive(Debug, Serialize)]
struct JsonReport<'a> {
    machine: Machine,
    quick: bool,
    seed: u64,
    targets: serde_json::Value,
    sizes: &'a [SizeResult],
}

fn main() -> Result<()> {
    let mut args = Args::parse();
    match args.command.take() {
        Some(Bench::Sync(sync_args)) => return sync::main(sync_args),
        Some(Bench::Access(access_args)) => return access::main(access_args),
        Some(Bench::Reports(report_args)) => return reports::main(report_args),
        Some(Bench::Import(import_args)) => return import::main(import_args),
        Some(Bench::Web(web_args)) => return web::main(web_args),
        Some(Bench::Text(text_args)) => return text::main(text_args),
        None => {}
    }
    let plan = Plan::new(args.quick);
    if let Some(n) = args.single {
        return single(n, &args, plan);
    }
    let sizes = args.records.clone().unwrap_or_else(|| {
        if args.quick {
            vec![2_000, 10_000]
        } else {
            vec![10_000, 50_000]
        }
    });
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("--records needs one or more record counts above 0, like 10000,50000");
    }
    let machine = Machine::this();
    if !args.json {
        print!("{}", report::header(&machine, &sizes, args.quick));
    }
    let exe = std::env::current_exe().context("finding this program to run each size")?;
    let mut results = Vec::new();
    for n in &sizes {
        let mut child = Command::new(&exe);
        child
            .args(["--single", &n.to_string(), "--seed", &args.seed.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if args.quick {
            child.arg("--quick");
        }
        if let Some(dir) = &args.dir {
            child.arg("--dir").arg(dir.join(format!("records-{n}")));
        }
        let out = child
            .output()
            .with_context(|| format!("running {} for {n} records", exe.display()))?;
        if !out.status.success() {
            bail!("the run for {n} records failed ({})", out.status);
        }
        let result: SizeResult = serde_json::from_slice(&out.stdout)
            .with_context(|| format!("reading the result of the run for {n} records"))?;
        if !args.json {
            print!("{}", report::size(&result));
        }
        results.push(result);
    }
    if args.json {
        let report = JsonReport {
            machine,
            quick: args.quick,
            seed: args.seed,
            targets: serde_json::json!({
                "edit_p50_ms": report::EDIT_P50_MS,
                "edit_p99_ms": report::EDIT_P99_MS,
                "list_median_ms": report::LIST_MS,
                "search_median_ms": report::SEARCH_MS,
                "peak_rss_growth_max": report::RSS_GROWTH,
            }),
            sizes: &results,
        };
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report::summary(&results));
    }
    Ok(())
}

/// The child's side: measures one size and prints the result as one line of JSON.
fn single(n: usize, args: &Args, plan: Plan) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("crm-bench-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let result = run::run(n, args.seed, plan, &dir)?;
    println!("{}", serde_json::to_string(&result)?);
    Ok(())
}
