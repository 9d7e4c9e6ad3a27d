//! `crm-bench reports`: every report of the catalogue on a seeded replica, timed. The target:
//! a report at 50k records takes ≤ 200 ms.
//!
//! The replica is seeded once (about N records with crm-seed), or reused from `--dir` when it
//! already holds one, so the seeding cost is paid once across runs.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use crm_seed::SeedOptions;
use crm_store::Store;
use crm_store::reports::{self, ReportParams};

use crate::stats::Latency;

/// The report target, in milliseconds.
const REPORT_MS: f64 = 200.0;
/// crm-seed writes about this many records per account.
const RECORDS_PER_ACCOUNT: usize = 8;

#[derive(Debug, Args)]
pub(crate) struct ReportArgs {
    /// About how many records the replica holds.
    #[arg(long, default_value_t = 50_000)]
    records: usize,
    /// Runs of each report.
    #[arg(long, default_value_t = 15)]
    runs: usize,
    /// Keep the replica here; an existing replica there is reused as it is.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The crm-seed random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub(crate) fn main(args: ReportArgs) -> Result<()> {
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("crm-bench-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let store = if dir.join(crm_store::REPLICA_FILE).exists() {
        eprintln!("reusing the replica in {}", dir.display());
        Store::open(&dir)?
    } else {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut store = Store::init(&dir, "bench", "bench")?;
        let accounts = (args.records / RECORDS_PER_ACCOUNT).max(1);
        eprintln!("seeding {accounts} accounts with crm-seed…");
        let start = Instant::now();
        crm_seed::seed(
            &mut store,
            &SeedOptions {
                accounts,
                seed: args.seed,
            },
        )?;
        eprintln!("seeded in {:.1} s", start.elapsed().as_secs_f64());
        store
    };
    let records: u64 = crm_model::Kind::ALL
        .iter()
        .map(|k| store.count(*k, true))
        .sum::<crm_store::Result<u64>>()?;
    println!(
        "== reports on {records} records ({} runs each; target: median ≤ {REPORT_MS} ms) ==",
        args.runs
    );
    println!(
        "{:<28} {:>6} {:>10} {:>10} {:>10}  verdict",
        "report", "rows", "p50 ms", "p99 ms", "max ms"
    );
    let params = ReportParams::now();
    let mut worst: Option<(&str, f64)> = None;
    for def in reports::catalogue() {
        let mut samples: Vec<Duration> = Vec::with_capacity(args.runs);
        let mut rows = 0;
        for _ in 0..args.runs.max(1) {
            let start = Instant::now();
            let report = store
                .report(def.name, &params)
                .with_context(|| format!("report {}", def.name))?;
            samples.push(start.elapsed());
            rows = report.rows.len();
        }
        let l = Latency::of(&samples);
        let verdict = if l.p50_ms <= REPORT_MS { "ok" } else { "MISS" };
        println!(
            "{:<28} {:>6} {:>10.2} {:>10.2} {:>10.2}  {verdict}",
            def.name, rows, l.p50_ms, l.p99_ms, l.max_ms
        );
        if worst.is_none_or(|(_, ms)| l.p50_ms > ms) {
            worst = Some((def.name, l.p50_ms));
        }
    }
    if let Some((name, ms)) = worst {
        println!("slowest report: {name}, median {ms:.2} ms");
    }
    Ok(())
}
