//! `crm-bench reports`: how long every report of the catalogue (`crm report NAME`) takes on a
//! replica of about N records (50,000 by default), against the 200 ms target. Reports are SQL
//! over the projections, so their cost grows with the tables they scan, not with documents.
//!
//! It seeds a fresh replica with `crm-seed` (about 8 records per account), or measures an
//! existing one (`--replica DIR`, e.g. one kept by `crm-bench --dir`), then runs each report
//! `--runs` times and prints the median and the slowest run.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crm_seed::SeedOptions;
use crm_store::Store;
use crm_store::reports::{self, ReportParams};
use serde::Serialize;

/// The target for one report at 50k records.
const REPORT_MS: f64 = 200.0;
const RECORDS_PER_ACCOUNT: usize = 8;

#[derive(Debug, clap::Args)]
pub(crate) struct ReportsArgs {
    /// About how many records to seed into a fresh replica.
    #[arg(long, default_value_t = 50_000)]
    records: usize,
    /// Measure this existing replica instead of seeding one.
    #[arg(long, value_name = "DIR")]
    replica: Option<PathBuf>,
    /// How many times to run each report.
    #[arg(long, default_value_t = 20)]
    runs: usize,
    /// The crm-seed random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Timing {
    report: &'static str,
    group: &'static str,
    rows: usize,
    median_ms: f64,
    max_ms: f64,
    /// The median on-CPU time of the measuring thread: what the report costs when the
    /// machine is shared (wall time includes waiting for a core).
    median_cpu_ms: Option<f64>,
    within_target: bool,
}

/// This thread's on-CPU time so far (Linux `/proc/thread-self/schedstat`), in nanoseconds.
fn cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub(crate) fn main(args: ReportsArgs) -> Result<()> {
    let temp;
    let store = match &args.replica {
        Some(dir) => Store::open(dir).with_context(|| format!("opening {}", dir.display()))?,
        None => {
            temp = tempfile::Builder::new()
                .prefix("crm-bench-reports-")
                .tempdir()?;
            let mut store = Store::init(temp.path(), "bench", "bench")?;
            let accounts = (args.records / RECORDS_PER_ACCOUNT).max(1);
            eprintln!("seeding {accounts} accounts with crm-seed…");
            let start = Instant::now();
            let report = crm_seed::seed(
                &mut store,
                &SeedOptions {
                    accounts,
                    seed: args.seed,
                },
            )?;
            eprintln!(
                "seeded {} records in {:.0} s",
                report.total(),
                start.elapsed().as_secs_f64()
            );
            store
        }
    };
    let records: u64 = crm_model::Kind::ALL
        .iter()
        .map(|k| store.count(*k, true))
        .sum::<Result<u64, _>>()?;
    let params = ReportParams::now();
    let runs = args.runs.max(1);
    let mut timings = Vec::new();
    for def in reports::catalogue() {
        let mut samples = Vec::with_capacity(runs);
        let mut cpu = Vec::with_capacity(runs);
        let mut rows = 0;
        for _ in 0..runs {
            let cpu_start = cpu_ns();
            let start = Instant::now();
            let report = store
                .report(def.name, &params)
                .with_context(|| format!("report {}", def.name))?;
            samples.push(start.elapsed());
            if let (Some(a), Some(b)) = (cpu_start, cpu_ns()) {
                cpu.push(b.saturating_sub(a));
            }
            rows = report.rows.len();
        }
        samples.sort();
        cpu.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let median = ms(samples[samples.len() / 2]);
        let median_cpu_ms = cpu.get(cpu.len() / 2).map(|ns| *ns as f64 / 1e6);
        timings.push(Timing {
            report: def.name,
            group: def.group,
            rows,
            median_ms: median,
            max_ms: samples.last().copied().map_or(0.0, ms),
            median_cpu_ms,
            within_target: median <= REPORT_MS,
        });
    }
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "records": records,
                "runs": runs,
                "target_ms": REPORT_MS,
                "reports": timings,
            }))?
        );
        return Ok(());
    }
    println!("Reports on {records} records ({runs} runs each; target ≤ {REPORT_MS} ms)");
    println!(
        "{:<20} {:<10} {:>6} {:>11} {:>9} {:>15}  verdict",
        "report", "group", "rows", "median ms", "max ms", "median CPU ms"
    );
    for t in &timings {
        println!(
            "{:<20} {:<10} {:>6} {:>11.1} {:>9.1} {:>15}  {}",
            t.report,
            t.group,
            t.rows,
            t.median_ms,
            t.max_ms,
            t.median_cpu_ms
                .map_or_else(|| "–".to_string(), |c| format!("{c:.1}")),
            if t.within_target { "ok" } else { "SLOW" }
        );
    }
    Ok(())
}
