//! The readable report of `crm-bench sync`: one section per size, then a summary beside the
//! targets.

use std::fmt::Write as _;

use super::proxy::Counts;
use super::roles::{Comparison, Roles};
use super::{
    AUTHZ_THROUGHPUT_RATIO_MIN, NOTHING_NEW_MAX_BYTES, PROPAGATION_P99_MS, Plan, RELAY_RSS_GROWTH,
    SYNC_OVER_LOAD_MAX, Session, SizeResult,
};
use crate::Machine;
use crate::mem::Rss;
use crate::report::{bytes, int, mib, ms, ok, pad, summary_row, summary_verdict};
use crate::stats::Latency;

pub(crate) fn header(machine: &Machine, plan: &Plan) -> String {
    let sizes: Vec<String> = plan.sizes.iter().map(|n| int(*n as f64)).collect();
    format!(
        "crm-bench sync: the sync benchmark{}\nmachine: {} ({} cores), {}\nrelay: {} on {} (the live devices split between the processes)\nsizes: {} records, each with its own crm-relay process (serve {}); {} live devices{}{}\n",
        if plan.quick { " (--quick)" } else { "" },
        machine.cpu,
        machine.cores,
        machine.os,
        if plan.relays == 1 {
            "1 process".to_string()
        } else {
            format!("{} processes", plan.relays)
        },
        plan.backend,
        sizes.join(", "),
        plan.relay_args.join(" "),
        plan.devices,
        if plan.nodelay { " (TCP_NODELAY)" } else { "" },
        match plan.roles {
            Roles::Admin => String::new(),
            Roles::Mixed => format!(
                "\nroles: the live phases run with the admins' devices and with devices of mixed roles, {} round(s), alternating which goes first",
                plan.rounds
            ),
        },
    )
}

fn secs(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        ms(s * 1e3)
    }
}

/// CPU time, read from `/proc` in 10 ms ticks.
fn cpu(s: f64) -> String {
    if s < 0.01 { "< 10 ms".into() } else { secs(s) }
}

/// Messages and bytes both ways: `↑` device → relay, `↓` relay → device.
fn traffic(t: &Counts) -> String {
    format!(
        "{:>6} ↑ {:>7} ↓ {:>10} ↑ {:>10} ↓ {:>10} ↑ {:>10} ↓",
        int(t.up.messages as f64),
        int(t.down.messages as f64),
        bytes(t.up.message_bytes),
        bytes(t.down.message_bytes),
        bytes(t.up.wire_bytes),
        bytes(t.down.wire_bytes),
    )
}

const SESSION_COLS: usize = 40;

fn session_row(out: &mut String, name: &str, s: &Session) {
    let _ = writeln!(
        out,
        "  {} {:>9}  {}  {:>6} {:>6}  {:>8} {:>8}",
        pad(name, SESSION_COLS),
        secs(s.wall_s),
        traffic(&s.traffic),
        int(s.pushed as f64),
        int(s.pulled as f64),
        cpu(s.relay_cpu_s),
        cpu(s.device_cpu_s),
    );
}

fn latency_row(out: &mut String, name: &str, l: &Latency, target: &str) {
    let _ = writeln!(
        out,
        "    {} {:>10} {:>10} {:>10} {:>10}   {target}",
        pad(name, 44),
        int(l.n as f64),
        ms(l.p50_ms),
        ms(l.p99_ms),
        ms(l.max_ms),
    );
}

fn rss(r: &Rss) -> String {
    format!("{} / {}", mib(r.current_kib), mib(r.peak_kib))
}

pub(crate) fn size(r: &SizeResult, plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} records: crm-seed with {} accounts → {} documents, {} changes in the relay's log ==",
        int(r.target_records as f64),
        int(r.accounts as f64),
        int(r.records as f64),
        int(r.full_sync.head as f64),
    );
    let _ = writeln!(
        out,
        "  (seeding the source replica took {:.1} s; it is setup, not a sync figure)",
        r.seed_s
    );
    let _ = writeln!(
        out,
        "  {} {:>9}  {:>6}   {:>7}   {:>10}   {:>10}   {:>10}   {:>10}    {:>6} {:>6}  {:>8} {:>8}",
        pad("crm_node::sync::sync_once, via the proxy", SESSION_COLS),
        "wall",
        "msgs",
        "msgs",
        "msg bytes",
        "msg bytes",
        "wire",
        "wire",
        "pushed",
        "pulled",
        "relay CPU",
        "dev CPU",
    );
    session_row(
        &mut out,
        "source's first sync (pushes everything)",
        &r.source_push,
    );
    session_row(&mut out, "fresh device: full sync", &r.full_sync);
    session_row(&mut out, "reconnect, nothing new", &r.reconnect_nothing_new);
    session_row(
        &mut out,
        &format!("source pushes 1 % edits ({} records)", r.edited_records),
        &r.push_edits,
    );
    session_row(
        &mut out,
        "fresh device: reconnect after 1 %",
        &r.reconnect_after_edits,
    );
    let _ = writeln!(
        out,
        "  (↑ device → relay, ↓ relay → device; msg bytes are the encoded protocol messages, wire bytes every TCP byte incl. the HTTP upgrade and WebSocket framing)"
    );
    let _ = writeln!(
        out,
        "  the relay compacted {} documents in the background after the source's push: {} (relay CPU {}); the fresh device then loaded {} documents from its snapshots",
        int(r.compaction.documents as f64),
        secs(r.compaction.wall_s),
        secs(r.compaction.relay_cpu_s),
        int(r.full_sync.bootstrapped as f64),
    );
    let _ = writeln!(
        out,
        "  fresh device after the full sync: {} of {} documents with heads other than the source's{}",
        int(r.full_sync_mismatched as f64),
        int(r.records as f64),
        if r.full_sync_mismatched == 0 {
            " (converged)"
        } else {
            " — NOT CONVERGED"
        },
    );
    let l = &r.load;
    let runs: Vec<String> = l.load_runs_s.iter().map(|s| secs(*s)).collect();
    let _ = writeln!(
        out,
        "  Automerge baseline: {} documents, {} changes ({}); building them from their changes {}; saved {}; Automerge::load of all: {} (runs: {})",
        int(l.documents as f64),
        int(l.changes as f64),
        bytes(l.change_bytes),
        secs(l.apply_changes_s),
        bytes(l.saved_bytes),
        secs(l.load_s),
        runs.join(", "),
    );
    let _ = writeln!(
        out,
        "  full sync / Automerge::load: {:.1}× ({} vs {}), {} records/s   target ≤ {SYNC_OVER_LOAD_MAX}×  {}",
        r.full_sync_over_load,
        secs(r.full_sync.wall_s),
        secs(l.load_s),
        int(r.records as f64 / r.full_sync.wall_s.max(1e-9)),
        ok(r.full_sync_over_load <= SYNC_OVER_LOAD_MAX),
    );
    let nothing = &r.reconnect_nothing_new.traffic;
    let wire = nothing.up.wire_bytes + nothing.down.wire_bytes;
    let _ = writeln!(
        out,
        "  reconnect with nothing new: {} messages, {} of messages, {} on the wire both ways   target < {} B  {}",
        nothing.up.messages + nothing.down.messages,
        bytes(nothing.up.message_bytes + nothing.down.message_bytes),
        bytes(wire),
        NOTHING_NEW_MAX_BYTES,
        ok(wire < NOTHING_NEW_MAX_BYTES),
    );
    if !r.relay_metrics.is_empty() {
        let get = |k: &str| {
            r.relay_metrics
                .get(&format!("crm_relay_{k}"))
                .map_or_else(|| "?".into(), |v| int(*v))
        };
        let _ = writeln!(
            out,
            "  relay /metrics so far: bytes_received_total {}, bytes_sent_total {}, pushes_total {}, changes_stored_total {}",
            get("bytes_received_total"),
            get("bytes_sent_total"),
            get("pushes_total"),
            get("changes_stored_total"),
        );
    }

    let p = &r.propagation;
    if r.roles.is_some() {
        let _ = writeln!(
            out,
            "  (the live figures below are the admins' run of round 1; the comparison with mixed roles follows them)"
        );
    }
    let _ = writeln!(
        out,
        "  propagation: {} devices connected (in {:.2} s), device 0 pushes one change every {} ms, {} pushes; relay CPU {:.2} s over {:.1} s",
        p.devices, p.connect_s, p.interval_ms, p.pushes, p.relay_cpu_s, p.wall_s,
    );
    let _ = writeln!(
        out,
        "    {} {:>10} {:>10} {:>10} {:>10}",
        pad("", 44),
        "samples",
        "p50",
        "p99",
        "max"
    );
    latency_row(
        &mut out,
        "push → Changes read, every receiver",
        &p.all_receivers,
        &format!(
            "p99 ≤ {PROPAGATION_P99_MS} ms  {}",
            ok(p.all_receivers.p99_ms <= PROPAGATION_P99_MS)
        ),
    );
    latency_row(
        &mut out,
        "push → Changes read, slowest receiver",
        &p.slowest_receiver,
        "",
    );
    latency_row(&mut out, "push → Ack at the pusher", &p.push_to_ack, "");
    let warm: Vec<String> = p.warm_up_ms.iter().map(|v| ms(*v)).collect();
    let _ = writeln!(
        out,
        "    (untimed warm-up before: {} pushes, each until every device had it: {})",
        p.warm_up_ms.len(),
        warm.join(", ")
    );
    if p.missing > 0 {
        let _ = writeln!(out, "    MISSING: {} (push, receiver) pairs", p.missing);
    }
    let _ = writeln!(
        out,
        "  throughput ({} devices connected; every change goes to all of them):",
        plan.devices
    );
    for t in &r.throughput {
        let _ = writeln!(
            out,
            "    {} pushing {} changes per push: {} pushes/s ({} changes/s) over {:.1} s; push→Ack p50 {}, p99 {}; all devices caught up {} after the last Ack; relay CPU {:.2} s{}",
            t.pushing_devices,
            t.changes_per_push,
            int(t.pushes_per_s),
            int(t.changes_per_s),
            t.wall_s,
            ms(t.push_to_ack.p50_ms),
            ms(t.push_to_ack.p99_ms),
            ms(t.fan_out_catch_up_ms),
            t.relay_cpu_s,
            t.relay_pushes
                .map(|n| format!(" (relay counted {} pushes)", int(n)))
                .unwrap_or_default(),
        );
    }
    let m = &r.relay_memory;
    let _ = writeln!(
        out,
        "  relay memory, VmRSS / VmHWM: started {} · after the source's push {} · after the full sync {} · after the reconnects {} · {} devices connected {}",
        rss(&m.started),
        rss(&m.after_source_push),
        rss(&m.after_full_sync),
        rss(&m.after_reconnects),
        plan.devices,
        rss(&m.devices_connected),
    );
    let _ = writeln!(
        out,
        "    largest VmRSS sampled: during propagation {}, during throughput {}; at the end {} (VmHWM = the relay's peak)",
        mib(m.latency_max_rss_kib),
        mib(m.throughput_max_rss_kib),
        rss(&m.end),
    );
    let _ = writeln!(out, "  relay database: {}", bytes(r.relay_db_bytes));
    if let Some(c) = &r.roles {
        roles(&mut out, c, plan);
    }
    for e in &r.client_errors {
        let _ = writeln!(out, "  client error: {e}");
    }
    out
}

/// A figure of every round, in brackets.
fn each(values: &[f64], fmt: impl Fn(f64) -> String) -> String {
    let v: Vec<String> = values.iter().map(|v| fmt(*v)).collect();
    format!("[{}]", v.join(", "))
}

/// The admin/mixed comparison of one size (`--roles mixed`).
fn roles(out: &mut String, c: &Comparison, plan: &Plan) {
    let o = &c.organisation;
    let _ = writeln!(
        out,
        "  write authorization: {} round(s) on this relay and data, each a run with the admins' devices (bound to no user) and one with devices of users of mixed roles",
        c.rounds
    );
    let _ = writeln!(
        out,
        "    mixed: {} teams, {} sales managers (one team each), {} sales reps, {} support agents; pushers: {}; every record names every team, so every device receives every change in both runs",
        o.teams,
        o.sales_managers,
        o.sales_reps,
        o.support_agents,
        c.pusher_roles.join(", "),
    );
    let two = |v: f64| format!("{v:.2}");
    let _ = writeln!(
        out,
        "    {} {:>9} {:>9} {:>7}   each round: admin / mixed / ratio",
        pad("pushes/s (median of the rounds)", 40),
        "admin",
        "mixed",
        "ratio"
    );
    for t in &c.throughput {
        let _ = writeln!(
            out,
            "    {} {:>9} {:>9} {:>7}   {} / {} / {}   ≥ {AUTHZ_THROUGHPUT_RATIO_MIN}  {}",
            pad(
                &format!("{} device(s) × {} changes", t.pushing_devices, plan.batch),
                40
            ),
            int(t.admin_median),
            int(t.mixed_median),
            two(t.ratio),
            each(&t.admin_pushes_per_s, int),
            each(&t.mixed_pushes_per_s, int),
            each(&t.round_ratios, two),
            ok(t.ratio >= AUTHZ_THROUGHPUT_RATIO_MIN),
        );
        let _ = writeln!(
            out,
            "      relay CPU per push {} / {}; entries received per change stored {:.1} / {:.1}",
            ms(t.admin_relay_cpu_ms_per_push),
            ms(t.mixed_relay_cpu_ms_per_push),
            t.admin_entries_per_change,
            t.mixed_entries_per_change,
        );
    }
    let _ = writeln!(
        out,
        "    {} {:>10} {:>10} {:>10} {:>10}",
        pad("propagation, every receiver, all rounds", 40),
        "samples",
        "p50",
        "p99",
        "max"
    );
    for (name, l, missing) in [
        ("admin", &c.admin_propagation, c.admin_missing),
        ("mixed", &c.mixed_propagation, c.mixed_missing),
    ] {
        let _ = writeln!(
            out,
            "    {} {:>10} {:>10} {:>10} {:>10}   p99 ≤ {PROPAGATION_P99_MS} ms  {}{}",
            pad(name, 40),
            int(l.n as f64),
            ms(l.p50_ms),
            ms(l.p99_ms),
            ms(l.max_ms),
            ok(l.p99_ms <= PROPAGATION_P99_MS),
            if missing > 0 {
                format!("; MISSING {missing} (push, receiver) pairs")
            } else {
                String::new()
            },
        );
    }
    let _ = writeln!(
        out,
        "    push → Ack p50 at the propagation pusher (median of the rounds): admin {}, mixed {}",
        ms(c.admin_push_to_ack_p50_ms),
        ms(c.mixed_push_to_ack_p50_ms),
    );
    for run in &c.runs {
        let p = &run.propagation;
        let pushes: Vec<String> = run
            .throughput
            .iter()
            .map(|t| {
                format!(
                    "{}×{} {}/s",
                    t.pushing_devices,
                    t.changes_per_push,
                    int(t.pushes_per_s)
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "    round {} {}: propagation p50 {} p99 {}, push → Ack p50 {}, relay CPU {:.2} s; {}; {} client errors",
            run.round,
            run.roles.as_str(),
            ms(p.all_receivers.p50_ms),
            ms(p.all_receivers.p99_ms),
            ms(p.push_to_ack.p50_ms),
            p.relay_cpu_s,
            pushes.join(", "),
            run.errors.len(),
        );
    }
}

pub(crate) fn summary(results: &[SizeResult], plan: &Plan) -> String {
    let mut out = String::new();
    let (Some(first), Some(last)) = (results.first(), results.last()) else {
        return out;
    };
    const COLS: usize = 52;
    let _ = writeln!(out, "\n== summary ==");
    let mut head = format!("  {}", pad("figure", COLS));
    for r in results {
        let _ = write!(head, " {:>12}", int(r.target_records as f64));
    }
    let _ = writeln!(head, " {:>9}   target", "last/first");
    out.push_str(&head);
    let mut row =
        |name: &str,
         get: &dyn Fn(&SizeResult) -> f64,
         fmt: &dyn Fn(f64) -> String,
         target: String| { summary_row(&mut out, results, COLS, name, get, fmt, target) };
    let verdict = |pass: &dyn Fn(&SizeResult) -> bool, limit: &str| {
        summary_verdict(results, |r| r.target_records, pass, limit)
    };
    let n = |v: f64| int(v);
    let b = |v: f64| bytes(v as u64);
    row("documents", &|r| r.records as f64, &n, String::new());
    row(
        "changes in the relay's log",
        &|r| r.full_sync.head as f64,
        &n,
        String::new(),
    );
    row(
        "full sync: wall time",
        &|r| r.full_sync.wall_s,
        &secs,
        verdict(&|r| r.full_sync_mismatched == 0, "completes, converged"),
    );
    row(
        "full sync: records/s",
        &|r| r.records as f64 / r.full_sync.wall_s.max(1e-9),
        &n,
        String::new(),
    );
    row(
        "full sync: messages ↓",
        &|r| r.full_sync.traffic.down.messages as f64,
        &|v| format!("↓ {}", int(v)),
        String::new(),
    );
    row(
        "full sync: message bytes ↓",
        &|r| r.full_sync.traffic.down.message_bytes as f64,
        &b,
        String::new(),
    );
    row(
        "full sync: wire bytes both ways",
        &|r| (r.full_sync.traffic.up.wire_bytes + r.full_sync.traffic.down.wire_bytes) as f64,
        &b,
        String::new(),
    );
    row(
        "Automerge::load of every document",
        &|r| r.load.load_s,
        &secs,
        String::new(),
    );
    row(
        "full sync / Automerge::load",
        &|r| r.full_sync_over_load,
        &|v| format!("{v:.1}×"),
        verdict(
            &|r| r.full_sync_over_load <= SYNC_OVER_LOAD_MAX,
            &format!("≤ {SYNC_OVER_LOAD_MAX}×"),
        ),
    );
    row(
        "reconnect, nothing new: messages",
        &|r| {
            let t = &r.reconnect_nothing_new.traffic;
            (t.up.messages + t.down.messages) as f64
        },
        &n,
        String::new(),
    );
    row(
        "reconnect, nothing new: message bytes",
        &|r| {
            let t = &r.reconnect_nothing_new.traffic;
            (t.up.message_bytes + t.down.message_bytes) as f64
        },
        &|v| format!("{} B", int(v)),
        String::new(),
    );
    row(
        "reconnect, nothing new: wire bytes",
        &|r| {
            let t = &r.reconnect_nothing_new.traffic;
            (t.up.wire_bytes + t.down.wire_bytes) as f64
        },
        &|v| format!("{} B", int(v)),
        verdict(
            &|r| {
                let t = &r.reconnect_nothing_new.traffic;
                t.up.wire_bytes + t.down.wire_bytes < NOTHING_NEW_MAX_BYTES
            },
            &format!("< {NOTHING_NEW_MAX_BYTES} B"),
        ),
    );
    row(
        "reconnect, nothing new: wall",
        &|r| r.reconnect_nothing_new.wall_s,
        &secs,
        String::new(),
    );
    row(
        "reconnect after 1 %: messages both ways",
        &|r| {
            let t = &r.reconnect_after_edits.traffic;
            (t.up.messages + t.down.messages) as f64
        },
        &n,
        String::new(),
    );
    row(
        "reconnect after 1 %: message bytes ↓",
        &|r| r.reconnect_after_edits.traffic.down.message_bytes as f64,
        &b,
        String::new(),
    );
    row(
        "reconnect after 1 %: wall",
        &|r| r.reconnect_after_edits.wall_s,
        &secs,
        String::new(),
    );
    row(
        &format!("propagation p50, {} devices (all receivers)", plan.devices),
        &|r| r.propagation.all_receivers.p50_ms,
        &ms,
        String::new(),
    );
    row(
        &format!("propagation p99, {} devices (all receivers)", plan.devices),
        &|r| r.propagation.all_receivers.p99_ms,
        &ms,
        verdict(
            &|r| r.propagation.all_receivers.p99_ms <= PROPAGATION_P99_MS,
            &format!("≤ {PROPAGATION_P99_MS} ms"),
        ),
    );
    row(
        "propagation p99 (slowest receiver per push)",
        &|r| r.propagation.slowest_receiver.p99_ms,
        &ms,
        String::new(),
    );
    row(
        "push → Ack p50 (pusher)",
        &|r| r.propagation.push_to_ack.p50_ms,
        &ms,
        String::new(),
    );
    for (i, t) in first.throughput.iter().enumerate() {
        row(
            &format!(
                "pushes/s, {} device(s) × {} changes",
                t.pushing_devices, t.changes_per_push
            ),
            &|r| r.throughput.get(i).map_or(f64::NAN, |t| t.pushes_per_s),
            &n,
            String::new(),
        );
    }
    if plan.roles == Roles::Mixed {
        for (i, t) in first.throughput.iter().enumerate() {
            let ratio = move |r: &SizeResult| {
                r.roles
                    .as_ref()
                    .and_then(|c| c.throughput.get(i))
                    .map_or(f64::NAN, |t| t.ratio)
            };
            row(
                &format!("pushes/s mixed ÷ admin, {} device(s)", t.pushing_devices),
                &ratio,
                &|v| format!("{v:.2}"),
                verdict(
                    &|r| ratio(r) >= AUTHZ_THROUGHPUT_RATIO_MIN,
                    &format!("≥ {AUTHZ_THROUGHPUT_RATIO_MIN}"),
                ),
            );
        }
        for (name, admin) in [("admin", true), ("mixed", false)] {
            let p99 = move |r: &SizeResult| {
                r.roles.as_ref().map_or(f64::NAN, |c| {
                    if admin {
                        c.admin_propagation.p99_ms
                    } else {
                        c.mixed_propagation.p99_ms
                    }
                })
            };
            row(
                &format!("propagation p99, {name} devices, all rounds"),
                &p99,
                &ms,
                verdict(
                    &|r| p99(r) <= PROPAGATION_P99_MS,
                    &format!("≤ {PROPAGATION_P99_MS} ms"),
                ),
            );
        }
    }
    let kib = |v: Option<u64>| v.map_or(f64::NAN, |k| k as f64);
    let mib_of = |v: f64| mib(Some(v as u64));
    let flat = |get: &dyn Fn(&SizeResult) -> f64| {
        let ratio = get(last) / get(first);
        if results.len() > 1 {
            format!(
                "flat (≤ {RELAY_RSS_GROWTH}×)  {}",
                ok(ratio <= RELAY_RSS_GROWTH)
            )
        } else {
            String::new()
        }
    };
    let before_live = |r: &SizeResult| kib(r.relay_memory.after_reconnects.peak_kib);
    row(
        "relay peak RSS before the live devices",
        &before_live,
        &mib_of,
        flat(&before_live),
    );
    let under_load = |r: &SizeResult| {
        kib(r
            .relay_memory
            .latency_max_rss_kib
            .max(r.relay_memory.throughput_max_rss_kib))
    };
    row(
        &format!("relay max RSS, {} devices + pushes", plan.devices),
        &under_load,
        &mib_of,
        flat(&under_load),
    );
    let peak = |r: &SizeResult| kib(r.relay_memory.end.peak_kib);
    row(
        "relay peak RSS over the whole run",
        &peak,
        &mib_of,
        flat(&peak),
    );
    out
}
