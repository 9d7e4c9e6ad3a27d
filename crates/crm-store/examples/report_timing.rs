//! Times every report of the catalogue, and the on-device sales look-ups (lead duplicate
//! check, reminders, birthdays), on an existing replica: the median of several runs each.
//!
//!     cargo run --release -p crm-store --example report_timing -- DATA_DIR [RUNS]
//!
//! Seed a replica first, e.g. `crm --data-dir DIR init --user u --device d` and
//! `crm --data-dir DIR seed --accounts 6250` (about 50k records).

use std::time::{Duration, Instant};

use crm_store::Store;
use crm_store::reports::{ReportParams, catalogue};

fn median(mut samples: Vec<Duration>) -> f64 {
    samples.sort();
    samples[samples.len() / 2].as_secs_f64() * 1000.0
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> f64 {
    // One warm-up run: the first read of a table pulls its pages into the cache.
    let _ = f();
    median(
        (0..runs)
            .map(|_| {
                let start = Instant::now();
                let _ = std::hint::black_box(f());
                start.elapsed()
            })
            .collect(),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = args.next().ok_or("usage: report_timing DATA_DIR [RUNS]")?;
    let runs: usize = args
        .next()
        .map(|r| r.parse())
        .transpose()?
        .unwrap_or(7)
        .max(1);
    let store = Store::open(std::path::Path::new(&dir))?;
    let total: u64 = crm_model::Kind::ALL
        .iter()
        .map(|k| store.count(*k, true))
        .sum::<Result<u64, _>>()?;
    println!("{total} records in {dir}; median of {runs} runs after one warm-up");
    let params = ReportParams::now();
    for def in catalogue() {
        let rows = store.report(def.name, &params)?.rows.len();
        let ms = time(runs, || store.report(def.name, &params));
        println!("report {:<22} {:>8.2} ms  ({rows} rows)", def.name, ms);
    }
    let ms = time(runs, || {
        store.lead_duplicates(
            Some("nobody@example.com"),
            Some("+86 755 1234 5678"),
            Some("深圳星光贸易有限公司"),
        )
    });
    println!("lead duplicate check        {ms:>8.2} ms");
    let now = chrono::Utc::now();
    let ms = time(runs, || {
        store.reminders(now, chrono::Duration::days(7), None)
    });
    println!("reminders (everyone, 7d)    {ms:>8.2} ms");
    let today = now.date_naive();
    let ms = time(runs, || store.birthdays(today, 30));
    println!("birthdays (30d)             {ms:>8.2} ms");
    Ok(())
}
