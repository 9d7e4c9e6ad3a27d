//! `crm-bench import`: the import and duplicate-detection benchmark.
//!
//! 1. Writes a CSV file of N account rows (default 100,000; Chinese and Latin names, emails,
//!    phones, websites, about 1% repeated rows and 0.5% bad emails) and imports it into a
//!    fresh replica through `crm_import::import`, the code `crm import` runs: wall time,
//!    rows per second, and the process's resident memory every 10% of the rows and at its
//!    peak, to show that memory stays flat.
//! 2. Creates M accounts (default 50,000) with about 2% planted duplicates in another fresh
//!    replica (batch writes) and times `Store::duplicate_groups` over them.
//!
//! It prints figures and asserts nothing about timings.

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use crm_import::{ImportOptions, Mapping, Source, SourceOptions};
use crm_model::{Edit, Kind};
use crm_store::{BatchOp, Store};

use crate::mem::Rss;

/// Memory counts as flat when the last sample is at most this multiple of the first.
const FLAT_MAX: f64 = 1.25;

/// The targets of issue 5.
const IMPORT_SECONDS: f64 = 60.0;
const DEDUP_SECONDS: f64 = 2.0;

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    /// Rows of the imported CSV file.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Accounts in the replica that duplicate detection scans.
    #[arg(long, default_value_t = 50_000)]
    accounts: usize,
    /// Keep the file and the replicas here instead of a temporary directory.
    #[arg(long, value_name = "DIR")]
    dir: Option<std::path::PathBuf>,
}

const CITIES: &[&str] = &[
    "深圳", "上海", "北京", "杭州", "成都", "广州", "南京", "武汉",
];
const TRADES: &[&str] = &[
    "贸易", "科技", "物流", "电子", "食品", "建材", "医疗", "教育",
];
const INDUSTRIES: &[&str] = &["retail", "software", "logistics", "manufacturing", "food"];

/// The i-th generated account: name, email, phone, website, industry.
fn account(i: usize) -> [String; 5] {
    let name = if i.is_multiple_of(3) {
        format!("Company {i} Trading Ltd")
    } else {
        format!(
            "{}{}{}{}有限公司",
            CITIES[i % CITIES.len()],
            i,
            TRADES[(i / 7) % TRADES.len()],
            if i.is_multiple_of(2) { "" } else { "服务" }
        )
    };
    [
        name,
        format!("contact{i}@example{}.cn", i % 97),
        format!(
            "+86 {} {:04} {:04}",
            130 + i % 60,
            (i / 10_000) % 10_000,
            i % 10_000
        ),
        format!("www.company{i}.cn"),
        INDUSTRIES[i % INDUSTRIES.len()].to_string(),
    ]
}

fn write_csv(path: &Path, rows: usize) -> Result<()> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::new(file);
    writeln!(w, "公司名称,邮箱,电话,网址,行业,备注")?;
    for i in 0..rows {
        // About 1% of the rows repeat an earlier row's email; 0.5% have a bad email.
        let mut a = account(i);
        if i % 100 == 99 {
            a = account(i - 50);
            a[0] = format!("{} (dup)", a[0]);
        } else if i % 200 == 101 {
            a[1] = format!("broken-email-{i}");
        }
        writeln!(
            w,
            "\"{}\",{},{},{},{},imported row {i}",
            a[0], a[1], a[2], a[3], a[4]
        )?;
    }
    w.flush()?;
    Ok(())
}

fn kib(v: Option<u64>) -> String {
    v.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

pub(crate) fn main(args: ImportArgs) -> Result<()> {
    if args.rows == 0 || args.accounts == 0 {
        bail!("--rows and --accounts must be above 0");
    }
    let temp;
    let dir = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.clone()
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("crm-bench-import-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };

    println!(
        "crm-bench import: {} CSV rows, duplicate detection over {} accounts",
        args.rows, args.accounts
    );
    let csv = dir.join("accounts.csv");
    write_csv(&csv, args.rows)?;
    let size = std::fs::metadata(&csv)?.len();
    println!(
        "file: {} ({:.1} MiB)",
        csv.display(),
        size as f64 / 1_048_576.0
    );

    let replica = dir.join("import-replica");
    let mut store = Store::init(&replica, "bench", "bench").context("creating the replica")?;
    let rss_before = Rss::now();
    let started = Instant::now();
    let mut source = Source::open(&csv, &SourceOptions::default())?;
    let mapping = Mapping::build(Kind::Account, source.headers(), None, &[])?;
    let step = (args.rows / 10).max(1);
    let mut samples: Vec<(usize, f64, Option<u64>)> = Vec::new();
    let mut n = 0usize;
    let summary = crm_import::import(
        &mut store,
        &mut source,
        &mapping,
        &ImportOptions::default(),
        |_, _| {
            n += 1;
            if n.is_multiple_of(step) {
                samples.push((n, started.elapsed().as_secs_f64(), Rss::now().current_kib));
            }
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let rss_after = Rss::now();
    println!(
        "import: {} rows in {seconds:.1} s ({:.0} rows/s): {} created, {} duplicates, {} errors",
        summary.rows,
        summary.rows as f64 / seconds,
        summary.created,
        summary.duplicates,
        summary.errors
    );
    println!("resident memory while importing (rows, seconds, RSS):");
    for (rows, at, rss) in &samples {
        println!("  {rows:>8}  {at:>6.1} s  {}", kib(*rss));
    }
    println!(
        "RSS before {} · after {} · peak of the process {}",
        kib(rss_before.current_kib),
        kib(rss_after.current_kib),
        kib(rss_after.peak_kib)
    );
    let fast = seconds <= IMPORT_SECONDS * args.rows as f64 / 100_000.0;
    // Flat: the last sample within 25 % of the first (10 % of the rows), as for the relay.
    let growth = match (samples.first(), samples.last()) {
        (Some((_, _, Some(first))), Some((_, _, Some(last)))) if *first > 0 => {
            Some(*last as f64 / *first as f64)
        }
        _ => None,
    };
    let flat = growth.is_some_and(|g| g <= FLAT_MAX);
    println!(
        "target: ≤ {IMPORT_SECONDS:.0} s for 100k rows → {}; flat memory (last/first sample {} ≤ {FLAT_MAX}×) → {}",
        if fast { "met" } else { "MISSED" },
        growth.map_or_else(|| "n/a".into(), |g| format!("{g:.2}×")),
        if flat { "met" } else { "MISSED" }
    );
    drop(store);

    // Duplicate detection over a replica of `accounts` accounts with planted duplicates.
    let replica = dir.join("dedup-replica");
    let mut store = Store::init(&replica, "bench", "bench").context("creating the replica")?;
    let started = Instant::now();
    let mut planted = 0;
    for chunk in (0..args.accounts).collect::<Vec<_>>().chunks(1_000) {
        let mut ops = Vec::with_capacity(chunk.len());
        for &i in chunk {
            let mut a = account(i);
            // Every 50th account is another device's copy of an earlier one: another name
            // spelling, the same email.
            if i % 50 == 49 {
                a = account(i - 25);
                a[0] = a[0].to_uppercase();
                planted += 1;
            }
            let mut e = Edit::new(Kind::Account);
            e.set("name", &a[0])?;
            e.set("emails", &a[1])?;
            e.set("phones", &a[2])?;
            e.set("website", &a[3])?;
            e.set("industry", &a[4])?;
            ops.push(BatchOp::Create(e));
        }
        for r in store.write_batch(&ops)? {
            r?;
        }
    }
    println!(
        "dedup replica: {} accounts ({planted} planted duplicates) written in {:.1} s",
        args.accounts,
        started.elapsed().as_secs_f64()
    );
    let mut times = Vec::new();
    let mut groups = 0;
    for _ in 0..5 {
        let t = Instant::now();
        groups = store.duplicate_groups(Kind::Account)?.len();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    println!(
        "duplicate_groups(account): {groups} groups; median of 5 runs {:.0} ms (min {:.0}, max {:.0})",
        median * 1000.0,
        times[0] * 1000.0,
        times[times.len() - 1] * 1000.0
    );
    println!(
        "target: ≤ {DEDUP_SECONDS:.0} s over 50k accounts → {}",
        if median <= DEDUP_SECONDS {
            "met"
        } else {
            "MISSED"
        }
    );
    Ok(())
}
