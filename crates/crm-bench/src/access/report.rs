//! The access benchmark's tables.

use std::fmt::Write as _;

use super::{
    ADMIN_SLOWDOWN_MAX, FreshSyncs, NOTHING_NEW_MAX_BYTES, NOTHING_NEW_MAX_MESSAGES,
    PROPAGATION_P99_MS, Plan, SizeResult, median, messages,
};
use crate::Machine;
use crate::stats::Latency;

pub(super) fn header(machine: &Machine, plan: &Plan) -> String {
    format!(
        "crm-bench access — {} ({} cores), {}; relay on {}; {} devices, {} edits every {} ms, \
         {} runs per fresh-sync variant, {} reassignments\n",
        machine.cpu,
        machine.cores,
        machine.os,
        plan.backend,
        plan.devices,
        plan.pushes,
        plan.interval_ms,
        plan.runs,
        plan.reassignments
    )
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn kib(bytes: f64) -> String {
    if bytes >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", bytes / 1024.0 / 1024.0)
    } else {
        format!("{:.1} KiB", bytes / 1024.0)
    }
}

fn sync_row(out: &mut String, label: &str, s: &FreshSyncs, base: Option<&FreshSyncs>) {
    let runs: Vec<String> = s.runs.iter().map(|r| format!("{:.2}", r.wall_s)).collect();
    let ratio = base.map_or(String::new(), |b| {
        format!("{:.2}×", s.median_s() / b.median_s())
    });
    let _ = writeln!(
        out,
        "  {label:<44} {:>7} docs  {:>7.2} s  [{}]  ↓ {:>10}  relay CPU {:.2} s  {ratio}",
        s.documents,
        s.median_s(),
        runs.join(", "),
        kib(s.median_down_bytes()),
        s.median_relay_cpu_s(),
    );
}

fn latency(l: &Latency) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (n = {})",
        l.p50_ms, l.p99_ms, l.max_ms, l.n
    )
}

pub(super) fn size(r: &SizeResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n== {} records: {} accounts, {} documents, {} log entries; {} active users; teams {} ==",
        r.target_records,
        r.accounts,
        r.documents,
        r.log_rows,
        r.users,
        r.teams
            .iter()
            .map(|(n, m)| format!("{n} ({m})"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "seeding {:.1} s; the admin's first push {:.2} s\n",
        r.seed_s, r.source_push.wall_s
    );
    let _ = writeln!(
        out,
        "1. Fresh-device sync (median of runs [each run], bytes received, relay CPU, ratio):"
    );
    sync_row(
        &mut out,
        &format!("sales rep {}, own scope", r.rep_name),
        &r.rep,
        Some(&r.small_admin),
    );
    sync_row(
        &mut out,
        &format!("admin, workspace of {} accounts", r.small_accounts),
        &r.small_admin,
        None,
    );
    sync_row(
        &mut out,
        "admin bound to a user (unfiltered path)",
        &r.admin_bound,
        Some(&r.admin_unbound),
    );
    sync_row(
        &mut out,
        "admin device bound to no user (baseline)",
        &r.admin_unbound,
        None,
    );
    if !r.all_seeing_filtered.runs.is_empty() {
        sync_row(
            &mut out,
            &format!("sees all but {} (filtered path)", r.all_seeing_except),
            &r.all_seeing_filtered,
            Some(&r.admin_unbound),
        );
    }
    let rep_per_doc = r.rep.median_s() / r.rep.documents.max(1) as f64;
    let small_per_doc = r.small_admin.median_s() / r.small_admin.documents.max(1) as f64;
    let _ = writeln!(
        out,
        "  rep / unfiltered of about as many documents: {:.2}× (per document {:.0} vs {:.0} µs: {:.2}×)",
        r.rep.median_s() / r.small_admin.median_s(),
        rep_per_doc * 1e6,
        small_per_doc * 1e6,
        rep_per_doc / small_per_doc
    );
    let bound = r.admin_bound.median_s() / r.admin_unbound.median_s();
    let _ = writeln!(
        out,
        "  admin bound / unbound: {bound:.2}× (target ≤ {ADMIN_SLOWDOWN_MAX:.2}×: {})",
        verdict(bound <= ADMIN_SLOWDOWN_MAX)
    );
    if !r.all_seeing_filtered.runs.is_empty() {
        let f = r.all_seeing_filtered.median_s() / r.admin_unbound.median_s();
        let _ = writeln!(
            out,
            "  the whole workspace through the filtered path / unfiltered: {f:.2}×"
        );
    }

    let _ = writeln!(out, "\n2. The rep's reconnect with nothing new:");
    for s in &r.reconnects {
        let (m, b) = messages(&s.traffic);
        let _ = writeln!(
            out,
            "  {:.2} ms, {m} messages (↑ {} ↓ {}), {b} B of messages, {} B on the wire",
            s.wall_s * 1e3,
            s.traffic.up.messages,
            s.traffic.down.messages,
            s.traffic.up.wire_bytes + s.traffic.down.wire_bytes
        );
    }
    let worst = r
        .reconnects
        .iter()
        .map(|s| messages(&s.traffic))
        .fold((0, 0), |(m, b), (m2, b2)| (m.max(m2), b.max(b2)));
    let _ = writeln!(
        out,
        "  median {:.2} ms; target {NOTHING_NEW_MAX_MESSAGES} messages and < {NOTHING_NEW_MAX_BYTES} B: {}",
        median(r.reconnects.iter().map(|s| s.wall_s * 1e3)),
        verdict(worst.0 <= NOTHING_NEW_MAX_MESSAGES && worst.1 < NOTHING_NEW_MAX_BYTES)
    );

    let _ = writeln!(out, "\n3. Live propagation, devices of mixed roles:");
    let p = &r.propagation;
    let _ = writeln!(
        out,
        "  {} devices ({}); {} edits by a rep of one team; median {} receivers per edit",
        p.devices,
        p.roles
            .iter()
            .map(|(r, n)| format!("{n} {r}"))
            .collect::<Vec<_>>()
            .join(", "),
        p.pushes,
        p.receivers_median
    );
    let _ = writeln!(out, "  every receiver:   {}", latency(&p.receivers));
    let _ = writeln!(out, "  slowest per edit: {}", latency(&p.slowest_receiver));
    let _ = writeln!(out, "  push → Ack:       {}", latency(&p.push_to_ack));
    let _ = writeln!(
        out,
        "  missing {}, delivered to a device that may not see it {}; relay CPU {:.2} s; \
         p99 target ≤ {PROPAGATION_P99_MS} ms: {}",
        p.missing,
        p.leaked,
        p.relay_cpu_s,
        verdict(p.receivers.p99_ms <= PROPAGATION_P99_MS)
    );

    let _ = writeln!(
        out,
        "\n4. Filtering cost: `crm_relay::service::filter` in this process over the whole log \
         (reads of 256 rows), median of 5:"
    );
    for f in &r.filter {
        let _ = writeln!(
            out,
            "  {:<44} {:>7.0} ns per entry  ({} of {} entries sent, {} reads with a grant)",
            f.viewer, f.ns_per_row, f.sent, f.rows, f.needs_store
        );
    }
    let _ = writeln!(
        out,
        "  the relay process's CPU while one device reads the whole log from position 0 (10 ms ticks):"
    );
    for l in &r.log_reads {
        let cpu = median(l.relay_cpu_s.iter().copied());
        let _ = writeln!(
            out,
            "  {:<44} {:.2} s CPU ({:.1} µs per entry), {:.2} s wall  [{}]",
            l.viewer,
            cpu,
            cpu * 1e6 / l.rows.max(1) as f64,
            median(l.wall_s.iter().copied()),
            l.relay_cpu_s
                .iter()
                .map(|c| format!("{c:.2}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }

    let m = &r.reassignments;
    let _ = writeln!(
        out,
        "\n5. Reassignments ({}, an account given to a rep of the other team by the admin's device):",
        m.count
    );
    let _ = writeln!(
        out,
        "  Grant at the new owner's devices: {}",
        latency(&m.grant_new_owner)
    );
    let _ = writeln!(
        out,
        "  Grant at the new team's devices:  {}",
        latency(&m.grant_new_team)
    );
    let _ = writeln!(
        out,
        "  Purge at the old team's devices:  {}",
        latency(&m.purge_old_team)
    );
    let _ = writeln!(
        out,
        "  push → Ack:                       {}",
        latency(&m.push_to_ack)
    );
    let _ = writeln!(
        out,
        "  missing grants {}, missing purges {}, grants not whole {}, unexpected {}",
        m.missing_grants, m.missing_purges, m.incomplete_grants, m.unexpected
    );
    if !r.client_errors.is_empty() {
        let _ = writeln!(out, "\ndevice errors: {}", r.client_errors.join("; "));
    }
    out
}
