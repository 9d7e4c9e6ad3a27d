//! The readable report: one table per size, then a summary across sizes with the targets.

use std::fmt::Write as _;

use crate::Machine;
use crate::run::{QueryTiming, SizeResult};
use crate::stats::Latency;

/// The foundation targets the figures are compared with.
pub(crate) const EDIT_P50_MS: f64 = 0.5;
pub(crate) const EDIT_P99_MS: f64 = 2.0;
pub(crate) const LIST_MS: f64 = 10.0;
pub(crate) const SEARCH_MS: f64 = 20.0;
/// "RSS not growing with record count": the peak RSS of the largest size may be at most this
/// many times that of the smallest (allocator and SQLite page-cache noise).
pub(crate) const RSS_GROWTH: f64 = 1.25;

pub(crate) fn header(machine: &Machine, sizes: &[usize], quick: bool) -> String {
    let sizes: Vec<String> = sizes.iter().map(|n| int(*n as f64)).collect();
    format!(
        "crm-bench: foundation benchmark{}\nmachine: {} ({} cores), {}\nsizes: {} records, each in a fresh replica and its own process\n",
        if quick { " (--quick)" } else { "" },
        machine.cpu,
        machine.cores,
        machine.os,
        sizes.join(", "),
    )
}

pub(crate) fn ok(pass: bool) -> &'static str {
    if pass { "ok" } else { "MISS" }
}

/// A duration in milliseconds with three significant digits.
pub(crate) fn ms(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0} ms")
    } else if v >= 10.0 {
        format!("{v:.1} ms")
    } else if v >= 1.0 {
        format!("{v:.2} ms")
    } else {
        format!("{v:.3} ms")
    }
}

/// An integer with thousands separators.
pub(crate) fn int(v: f64) -> String {
    let s = format!("{:.0}", v.round());
    let (sign, digits) = s.strip_prefix('-').map_or(("", s.as_str()), |d| ("-", d));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    format!("{sign}{out}")
}

pub(crate) fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

pub(crate) fn bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else if b >= 1 << 10 {
        format!("{:.1} KiB", b as f64 / 1024.0)
    } else {
        format!("{b} B")
    }
}

/// How many terminal columns `s` takes: CJK characters take two.
fn width(s: &str) -> usize {
    s.chars()
        .map(|c| match u32::from(c) {
            0x1100..=0x115F
            | 0x2E80..=0x303E
            | 0x3041..=0x33FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA000..=0xA4CF
            | 0xAC00..=0xD7A3
            | 0xF900..=0xFAFF
            | 0xFE30..=0xFE4F
            | 0xFF00..=0xFF60
            | 0xFFE0..=0xFFE6 => 2,
            _ => 1,
        })
        .sum()
}

/// `s` padded with spaces to `cols` terminal columns.
pub(crate) fn pad(s: &str, cols: usize) -> String {
    format!("{s}{}", " ".repeat(cols.saturating_sub(width(s))))
}

const NAME_COLS: usize = 58;

/// One row of a summary table: the figure at each size, the last/first ratio, the target.
pub(crate) fn summary_row<T>(
    out: &mut String,
    results: &[T],
    cols: usize,
    name: &str,
    get: &dyn Fn(&T) -> f64,
    fmt: &dyn Fn(f64) -> String,
    target: String,
) {
    let mut line = format!("  {}", pad(name, cols));
    for r in results {
        let _ = write!(line, " {:>12}", fmt(get(r)));
    }
    let ratio = match (results.first(), results.last()) {
        (Some(first), Some(last)) if get(first) > 0.0 => get(last) / get(first),
        _ => f64::NAN,
    };
    let _ = writeln!(line, " {:>9}   {target}", format!("{ratio:.2}×"));
    out.push_str(&line);
}

/// `LIMIT  ok`, or `LIMIT  MISS at` the sizes that failed `pass`.
pub(crate) fn summary_verdict<T>(
    results: &[T],
    records: impl Fn(&T) -> usize,
    pass: &dyn Fn(&T) -> bool,
    limit: &str,
) -> String {
    let misses: Vec<String> = results
        .iter()
        .filter(|r| !pass(r))
        .map(|r| int(records(r) as f64))
        .collect();
    if misses.is_empty() {
        format!("{limit}  ok")
    } else {
        format!("{limit}  MISS at {}", misses.join(", "))
    }
}

fn latency_row(out: &mut String, name: &str, l: &Latency, target: &str, verdict: &str) {
    let _ = writeln!(
        out,
        "  {} {:>10} {:>10} {:>10}   {} {verdict}",
        pad(name, NAME_COLS),
        ms(l.p50_ms),
        ms(l.p99_ms),
        ms(l.max_ms),
        pad(target, 16),
    );
}

fn query_row(out: &mut String, q: &QueryTiming, limit_ms: f64, unit: &str) {
    let name = format!("{} [{} {unit}]", q.name, q.rows);
    latency_row(
        out,
        &name,
        &q.latency,
        &format!("≤ {limit_ms} ms"),
        ok(q.latency.p50_ms <= limit_ms),
    );
}

/// The table of one size.
pub(crate) fn size(r: &SizeResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} records: crm-seed with {} accounts (seed data through Store::create/edit), {} records in the replica ==",
        int(r.target_records as f64),
        int(r.accounts as f64),
        int(r.records as f64),
    );
    let counts: Vec<String> = r.counts.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(out, "  records: {}", counts.join(" · "));
    let _ = writeln!(
        out,
        "  {} {:>10} {:>10} {:>10}   {} verdict",
        pad("measurement", NAME_COLS),
        "median",
        "p99",
        "max",
        pad("target", 16),
    );
    latency_row(
        &mut out,
        &format!("create, per Store::create call (n={})", r.create.n),
        &r.create,
        "—",
        "",
    );
    let _ = writeln!(
        out,
        "    total {:.1} s in Store::create ({} records/s, mean {}); seeding wall time {:.1} s",
        r.create.total_s,
        int(r.create.n as f64 / r.create.total_s.max(1e-9)),
        ms(r.create.mean_ms),
        r.seed_wall_s,
    );
    latency_row(
        &mut out,
        &format!(
            "stage moves while seeding, Store::edit (n={})",
            r.seed_moves.n
        ),
        &r.seed_moves,
        "—",
        "",
    );
    latency_row(
        &mut out,
        &format!("edit one account field + commit (n={})", r.edit.n),
        &r.edit,
        &format!("≤ {EDIT_P50_MS} / ≤ {EDIT_P99_MS} ms"),
        ok(r.edit.p50_ms <= EDIT_P50_MS && r.edit.p99_ms <= EDIT_P99_MS),
    );
    latency_row(
        &mut out,
        &format!(
            "  same, recently used accounts (cached, n={})",
            r.edit_cached.n
        ),
        &r.edit_cached,
        "",
        "",
    );
    for q in &r.lists {
        query_row(&mut out, q, LIST_MS, "rows");
    }
    for q in &r.searches {
        query_row(&mut out, q, SEARCH_MS, "hits");
    }
    let d = &r.disk;
    let _ = writeln!(
        out,
        "  disk: {} = {} bytes/record (replica.db {}, WAL {} after checkpoint, {} before)",
        bytes(d.db_bytes + d.wal_bytes),
        int(d.bytes_per_record),
        bytes(d.db_bytes),
        bytes(d.wal_bytes),
        bytes(d.wal_bytes_before),
    );
    if !d.breakdown.is_empty() {
        let parts: Vec<String> = d
            .breakdown
            .iter()
            .map(|(name, b)| format!("{name} {}", bytes(*b)))
            .collect();
        let _ = writeln!(out, "    {}", parts.join(" · "));
    }
    let _ = writeln!(
        out,
        "  memory: peak RSS (VmHWM) {}, current RSS (VmRSS) {}; after seeding: peak {}, current {}",
        mib(r.rss.peak_kib),
        mib(r.rss.current_kib),
        mib(r.rss_after_seed.peak_kib),
        mib(r.rss_after_seed.current_kib),
    );
    out
}

/// The summary across sizes: each figure per size, the ratio of the largest size to the
/// smallest, and the target.
pub(crate) fn summary(results: &[SizeResult]) -> String {
    let mut out = String::new();
    let (Some(first), Some(last)) = (results.first(), results.last()) else {
        return out;
    };
    let _ = writeln!(out, "\n== summary ==");
    let mut head = format!("  {}", pad("figure", NAME_COLS));
    for r in results {
        let _ = write!(head, " {:>12}", int(r.target_records as f64));
    }
    let short = |n: usize| {
        if n.is_multiple_of(1000) {
            format!("{}k", n / 1000)
        } else {
            n.to_string()
        }
    };
    let ratio_name = format!(
        "{}/{}",
        short(last.target_records),
        short(first.target_records)
    );
    let _ = writeln!(out, "{head} {ratio_name:>9}   target");

    let mut row = |name: &str,
                   get: &dyn Fn(&SizeResult) -> f64,
                   fmt: &dyn Fn(f64) -> String,
                   target: String| {
        summary_row(&mut out, results, NAME_COLS, name, get, fmt, target)
    };
    let verdict = |pass: &dyn Fn(&SizeResult) -> bool, limit: &str| {
        summary_verdict(results, |r| r.target_records, pass, limit)
    };

    row(
        "records in the replica",
        &|r| r.records as f64,
        &int,
        String::new(),
    );
    row(
        "create p50 per record",
        &|r| r.create.p50_ms,
        &ms,
        String::new(),
    );
    row(
        "create p99 per record",
        &|r| r.create.p99_ms,
        &ms,
        String::new(),
    );
    row(
        "create total (s)",
        &|r| r.create.total_s,
        &|v| format!("{v:.1} s"),
        String::new(),
    );
    row(
        "edit p50",
        &|r| r.edit.p50_ms,
        &ms,
        verdict(
            &|r| r.edit.p50_ms <= EDIT_P50_MS,
            &format!("≤ {EDIT_P50_MS} ms"),
        ),
    );
    row(
        "edit p99",
        &|r| r.edit.p99_ms,
        &ms,
        verdict(
            &|r| r.edit.p99_ms <= EDIT_P99_MS,
            &format!("≤ {EDIT_P99_MS} ms"),
        ),
    );
    row(
        "edit p50, cached document",
        &|r| r.edit_cached.p50_ms,
        &ms,
        String::new(),
    );
    row(
        "edit p99, cached document",
        &|r| r.edit_cached.p99_ms,
        &ms,
        String::new(),
    );
    for (i, q) in first.lists.iter().enumerate() {
        row(
            &format!("{} (median)", q.name),
            &|r| r.lists.get(i).map_or(f64::NAN, |q| q.latency.p50_ms),
            &ms,
            verdict(
                &|r| r.lists.get(i).is_some_and(|q| q.latency.p50_ms <= LIST_MS),
                &format!("≤ {LIST_MS} ms"),
            ),
        );
    }
    for (i, q) in first.searches.iter().enumerate() {
        row(
            &format!("{} (median)", q.name),
            &|r| r.searches.get(i).map_or(f64::NAN, |q| q.latency.p50_ms),
            &ms,
            verdict(
                &|r| {
                    r.searches
                        .get(i)
                        .is_some_and(|q| q.latency.p50_ms <= SEARCH_MS)
                },
                &format!("≤ {SEARCH_MS} ms"),
            ),
        );
    }
    row(
        "bytes on disk per record",
        &|r| r.disk.bytes_per_record,
        &int,
        String::new(),
    );
    let kib = |v: Option<u64>| v.map_or(f64::NAN, |k| k as f64);
    let mib_of = |v: f64| mib(Some(v as u64));
    let peak_ratio = kib(last.rss.peak_kib) / kib(first.rss.peak_kib);
    row(
        "peak RSS (VmHWM)",
        &|r| kib(r.rss.peak_kib),
        &mib_of,
        if results.len() > 1 {
            format!(
                "not growing (≤ {RSS_GROWTH}×)  {}",
                ok(peak_ratio <= RSS_GROWTH)
            )
        } else {
            String::new()
        },
    );
    row(
        "current RSS (VmRSS) at the end",
        &|r| kib(r.rss.current_kib),
        &mib_of,
        String::new(),
    );
    out
}
