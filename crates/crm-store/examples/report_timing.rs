//! Times every report of the catalogue, and the on-device sales look-ups (lead duplicate
//! check, reminders, birthdays), on an existing replica: the median of several runs each.
//!
//!     cargo run --release -p crm-store --example report_timing -- DATA_DIR [RUNS]
//!
//! Seed a replica first, e.g. `crm --data-dir DIR init --user u --device d` and
//! `crm --data-dir DIR seed --accounts 6250` (about 50k records).

use std::time::Instant;

use crm_store::Store;
use crm_store::reports::{ReportParams, catalogue};

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

/// Time this thread has spent on a CPU, in milliseconds (Linux): on a machine shared with
/// other work, the wall clock also counts the time spent waiting for a core.
fn cpu_ms() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = stat.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e6)
}

/// Median wall-clock and on-CPU milliseconds of `runs` calls, after one warm-up call (the
/// first read of a table pulls its pages into the cache).
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, Option<f64>) {
    let _ = f();
    let mut wall = Vec::with_capacity(runs);
    let mut cpu = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (start, cpu_start) = (Instant::now(), cpu_ms());
        let _ = std::hint::black_box(f());
        wall.push(start.elapsed().as_secs_f64() * 1000.0);
        if let (Some(a), Some(b)) = (cpu_start, cpu_ms()) {
            cpu.push(b - a);
        }
    }
    let cpu = (cpu.len() == runs).then(|| median(cpu));
    (median(wall), cpu)
}

fn show(what: &str, (wall, cpu): (f64, Option<f64>)) {
    match cpu {
        Some(cpu) => println!("{what:<32} {wall:>9.2} ms wall {cpu:>9.2} ms cpu"),
        None => println!("{what:<32} {wall:>9.2} ms wall"),
    }
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
    println!(
        "{total} records in {dir}; median of {runs} runs after one warm-up; cpu = time on a core (the machine may be shared)"
    );
    let params = ReportParams::now();
    for def in catalogue() {
        let rows = store.report(def.name, &params)?.rows.len();
        let t = time(runs, || store.report(def.name, &params));
        show(&format!("report {} ({rows} rows)", def.name), t);
    }
    let t = time(runs, || {
        store.lead_duplicates(
            Some("nobody@example.com"),
            Some("+86 755 1234 5678"),
            Some("深圳星光贸易有限公司"),
        )
    });
    show("lead duplicate check", t);
    let now = chrono::Utc::now();
    let t = time(runs, || {
        store.reminders(now, chrono::Duration::days(7), None)
    });
    show("reminders (everyone, 7d)", t);
    let today = now.date_naive();
    let t = time(runs, || store.birthdays(today, 30));
    show("birthdays (30d)", t);
    Ok(())
}
