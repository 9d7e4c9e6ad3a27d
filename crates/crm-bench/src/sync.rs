//! `crm-bench sync`: the sync benchmark. For each workspace size N, against a `crm-relay`
//! process of its own (so the relay's RSS and CPU time are its own):
//!
//! 1. seeds a source replica with crm-seed (N/8 accounts) and pushes it to the relay with
//!    `crm_node::sync::sync_once`;
//! 2. times a fresh replica's first `sync_once` (the full sync), through a counting proxy
//!    that counts messages and bytes both ways, and, in the same run, `Automerge::load` of
//!    every document of the source replica (each saved with `Automerge::save`);
//! 3. measures a reconnect with nothing new, and one after 1 % of the records changed;
//! 4. connects `--devices` lightweight devices (a `DeviceSync` each, no replica) straight to
//!    the relay, times the propagation of pushes from one of them to all the others, then the
//!    sustained push rate of one or several devices pushing small batches back to back;
//! 5. reads the relay's `VmRSS`/`VmHWM` after every step and samples it under load.
//!
//! With `--roles mixed` step 4 runs twice per round on the same relay and data, once with
//! the admins' devices and once with devices of users of mixed roles, and the report
//! compares them: what write authorization and filtering cost live ([`roles`]).
//!
//! - [`proxy`] is the counting proxy; [`process`] runs the relay and reads `/proc`;
//!   [`live`] holds the lightweight devices; [`roles`] the mixed organisation and the
//!   comparison; [`report`] formats the tables.

pub(crate) mod live;
pub(crate) mod process;
pub(crate) mod proxy;
mod report;
mod roles;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_model::automerge::{Automerge, Change};
use crm_model::{Edit, RecordId};
use crm_seed::SeedOptions;
use crm_store::{RelayLink, Store};
use crm_sync::{Cursor, Envelope};
use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::Machine;
use crate::mem::Rss;
use crate::stats::Latency;
use live::{Client, LiveDevice, Writer};
use process::{RelayProcess, RssSampler};
use proxy::{Counts, Proxy};
use roles::{Comparison, LiveRun, Roles};

/// Targets of the sync issue (§7).
pub(crate) const NOTHING_NEW_MAX_BYTES: u64 = 1_000;
pub(crate) const SYNC_OVER_LOAD_MAX: f64 = 2.0;
pub(crate) const PROPAGATION_P99_MS: f64 = 15.0;
/// Write authorization (issue 14): the mixed roles' pushes/s at least this fraction of the
/// admins' in the same run (the checks cost no more than 15 % of throughput).
pub(crate) const AUTHZ_THROUGHPUT_RATIO_MIN: f64 = 0.85;
/// "Relay memory stays flat": its peak RSS at the largest size at most this many times that
/// at the smallest, as for the replica.
pub(crate) const RELAY_RSS_GROWTH: f64 = crate::report::RSS_GROWTH;

/// The user the two replicas write as: their devices (bound to no user) carry this name,
/// which the relay's author rule compares their changes' author with.
pub(crate) const REPLICA_USER: &str = "bench";

/// Pushes made before the propagation is timed.
const WARM_UP_PUSHES: usize = 5;

/// crm-seed writes about this many records per account.
const RECORDS_PER_ACCOUNT: usize = 8;

/// Sync benchmark: fresh-device sync, reconnects, live propagation with many devices, push
/// throughput and the relay's memory.
#[derive(Debug, clap::Args)]
pub(crate) struct SyncArgs {
    /// Workspace sizes in records, each with a relay of its own [default: 10000,50000; with
    /// --quick 2000,10000].
    #[arg(long, value_delimiter = ',', value_name = "N1,N2,…")]
    records: Option<Vec<usize>>,
    /// Devices connected at once for the live measurements.
    #[arg(long, default_value_t = 100, value_name = "N")]
    devices: usize,
    /// Pushes timed for the propagation latency [default: 500; with --quick 200].
    #[arg(long, value_name = "N")]
    pushes: Option<usize>,
    /// Milliseconds between two of those pushes.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    interval_ms: u64,
    /// How many devices push at once in the throughput measurement; one measurement each.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,4",
        value_name = "N1,N2,…"
    )]
    pushers: Vec<usize>,
    /// Changes per push in the throughput measurement.
    #[arg(long, default_value_t = 10, value_name = "N")]
    batch: usize,
    /// Seconds of each throughput measurement [default: 5; with --quick 2].
    #[arg(long, value_name = "S")]
    throughput_secs: Option<f64>,
    /// Smaller sizes and fewer pushes.
    #[arg(long)]
    quick: bool,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// The crm-seed random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the replicas and the relay's data in DIR/records-N instead of temporary
    /// directories.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The crm-relay binary [default: crm-relay next to this program].
    #[arg(long, value_name = "PATH")]
    relay: Option<PathBuf>,
    /// Leave Nagle's algorithm on for the lightweight devices' sockets (crm-node's sync
    /// driver turns it off, so by default they do too).
    #[arg(long)]
    nagle: bool,
    /// Run the relay on PostgreSQL: the server's maintenance database, e.g.
    /// postgres://postgres@127.0.0.1:5432/postgres. Each size gets a database of its own,
    /// dropped at the end. [default: SQLite in the run's directory]
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// Relay processes on the one database (PostgreSQL only); the live devices are split
    /// between them, so propagation crosses processes.
    #[arg(long, default_value_t = 1, value_name = "N")]
    relays: usize,
    /// Whose devices run the live measurements. `mixed` runs them twice on the same relay
    /// and data, with the admins' devices and with devices of sales reps, sales managers and
    /// support agents, and compares pushes/s and propagation (write authorization's cost).
    #[arg(long, value_enum, default_value_t = Roles::Admin, value_name = "ROLES")]
    roles: Roles,
    /// With --roles mixed: rounds of the comparison, each one admin run and one mixed run,
    /// in alternating order (admin first in odd rounds); medians over the rounds.
    #[arg(long, default_value_t = 1, value_name = "N")]
    rounds: usize,
}

/// What one run does, resolved from the arguments.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Plan {
    pub(crate) sizes: Vec<usize>,
    pub(crate) devices: usize,
    pub(crate) pushes: usize,
    pub(crate) interval_ms: u64,
    pub(crate) pushers: Vec<usize>,
    pub(crate) batch: usize,
    pub(crate) throughput_secs: f64,
    pub(crate) load_runs: usize,
    pub(crate) quick: bool,
    pub(crate) seed: u64,
    pub(crate) nodelay: bool,
    /// Passed to `crm-relay serve`.
    pub(crate) relay_args: Vec<String>,
    /// `sqlite` or `postgres`.
    pub(crate) backend: &'static str,
    /// Relay processes serving the database.
    pub(crate) relays: usize,
    /// Whose devices run the live measurements.
    pub(crate) roles: Roles,
    /// Rounds of the admin/mixed comparison.
    pub(crate) rounds: usize,
    #[serde(skip)]
    postgres: Option<String>,
    #[serde(skip)]
    relay_bin: PathBuf,
    #[serde(skip)]
    dir: Option<PathBuf>,
}

/// One sync session of a real replica (`crm_node::sync::sync_once`), through the proxy.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Session {
    pub(crate) wall_s: f64,
    pub(crate) pushed: usize,
    pub(crate) pulled: usize,
    pub(crate) records_changed: usize,
    /// The relay's log head at the end.
    pub(crate) head: u64,
    pub(crate) reset: bool,
    /// Documents loaded from the relay's snapshots instead of replayed.
    pub(crate) bootstrapped: usize,
    pub(crate) traffic: Counts,
    /// CPU seconds the relay process used during the session.
    pub(crate) relay_cpu_s: f64,
    /// CPU seconds this process used: the device's sync driver and replica, and the proxy.
    pub(crate) device_cpu_s: f64,
}

/// `Automerge::load` of every document of the source replica, the yardstick of the full sync.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LoadBaseline {
    pub(crate) documents: usize,
    pub(crate) changes: usize,
    pub(crate) change_bytes: u64,
    /// Bytes of every document saved with `Automerge::save`.
    pub(crate) saved_bytes: u64,
    /// Building each document from its changes (`Change::try_from` + `apply_changes`).
    pub(crate) apply_changes_s: f64,
    /// Each run of loading every saved document.
    pub(crate) load_runs_s: Vec<f64>,
    /// Their median.
    pub(crate) load_s: f64,
}

/// The relay's memory after each step (KiB, from `/proc/PID/status`).
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct RelayMemory {
    pub(crate) started: Rss,
    pub(crate) after_source_push: Rss,
    pub(crate) after_full_sync: Rss,
    pub(crate) after_reconnects: Rss,
    pub(crate) devices_connected: Rss,
    /// The largest `VmRSS` sampled every 20 ms while the latency pushes ran.
    pub(crate) latency_max_rss_kib: Option<u64>,
    /// The largest `VmRSS` sampled while the throughput pushes ran.
    pub(crate) throughput_max_rss_kib: Option<u64>,
    /// At the end; its `peak_kib` is the relay's peak over the whole run.
    pub(crate) end: Rss,
}

/// Propagation from one device to every other connected device.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Propagation {
    pub(crate) devices: usize,
    pub(crate) pushes: usize,
    pub(crate) interval_ms: u64,
    /// From a `Push` frame handed to device A's socket until a receiving device read the
    /// `Changes` frame holding it; one sample per (push, receiving device).
    pub(crate) all_receivers: Latency,
    /// Per push, the slowest receiving device.
    pub(crate) slowest_receiver: Latency,
    /// From the `Push` to its `Ack` at device A (the relay's durable commit).
    pub(crate) push_to_ack: Latency,
    /// (push, receiver) pairs never received.
    pub(crate) missing: usize,
    /// The warm-up pushes, each from its `Push` until every other device had it (polled
    /// every 0.5 ms), in order; the first is the first push after the devices connected.
    pub(crate) warm_up_ms: Vec<f64>,
    pub(crate) connect_s: f64,
    pub(crate) relay_cpu_s: f64,
    pub(crate) wall_s: f64,
}

/// Pushes back to back for a while.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Throughput {
    pub(crate) pushing_devices: usize,
    pub(crate) changes_per_push: usize,
    pub(crate) pushes: usize,
    pub(crate) changes: usize,
    pub(crate) wall_s: f64,
    pub(crate) pushes_per_s: f64,
    pub(crate) changes_per_s: f64,
    pub(crate) push_to_ack: Latency,
    /// After the last Ack, until every connected device had applied everything.
    pub(crate) fan_out_catch_up_ms: f64,
    pub(crate) relay_cpu_s: f64,
    /// The relay's `pushes_total` metric over the measurement.
    pub(crate) relay_pushes: Option<f64>,
    /// Log entries the connected devices received, per change stored.
    pub(crate) entries_per_change: f64,
}

/// Everything measured at one size.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SizeResult {
    pub(crate) target_records: usize,
    pub(crate) accounts: usize,
    /// Documents in the source replica (the seeded records and its user).
    pub(crate) records: usize,
    pub(crate) seed_s: f64,
    pub(crate) source_push: Session,
    /// The relay's background compaction of what the source pushed (see `wait_compacted`).
    pub(crate) compaction: Compaction,
    pub(crate) load: LoadBaseline,
    pub(crate) full_sync: Session,
    /// Documents of the source whose heads differ on the fresh device after the full sync.
    pub(crate) full_sync_mismatched: usize,
    pub(crate) full_sync_over_load: f64,
    pub(crate) reconnect_nothing_new: Session,
    pub(crate) edited_records: usize,
    pub(crate) push_edits: Session,
    pub(crate) reconnect_after_edits: Session,
    /// The relay's `/metrics` after the reconnects.
    pub(crate) relay_metrics: BTreeMap<String, f64>,
    pub(crate) propagation: Propagation,
    pub(crate) throughput: Vec<Throughput>,
    pub(crate) relay_memory: RelayMemory,
    pub(crate) relay_db_bytes: u64,
    pub(crate) client_errors: Vec<String>,
    /// With `--roles mixed`: the admins' runs against the mixed roles' runs. `propagation`
    /// and `throughput` above are then the first admins' run.
    pub(crate) roles: Option<Comparison>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    machine: Machine,
    plan: &'a Plan,
    targets: serde_json::Value,
    sizes: &'a [SizeResult],
}

pub(crate) fn main(args: SyncArgs) -> Result<()> {
    let print_json = args.json;
    let plan = plan(args)?;
    let machine = Machine::this();
    if !print_json {
        print!("{}", report::header(&machine, &plan));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut results = Vec::new();
    for &n in &plan.sizes {
        let result = run_size(n, &plan, &runtime)?;
        if !print_json {
            print!("{}", report::size(&result, &plan));
        }
        results.push(result);
    }
    if print_json {
        let json = JsonReport {
            machine,
            plan: &plan,
            targets: serde_json::json!({
                "reconnect_nothing_new_max_bytes": NOTHING_NEW_MAX_BYTES,
                "full_sync_over_load_max": SYNC_OVER_LOAD_MAX,
                "propagation_p99_max_ms": PROPAGATION_P99_MS,
                "authz_throughput_ratio_min": AUTHZ_THROUGHPUT_RATIO_MIN,
                "relay_peak_rss_growth_max": RELAY_RSS_GROWTH,
            }),
            sizes: &results,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        print!("{}", report::summary(&results, &plan));
    }
    Ok(())
}

fn plan(args: SyncArgs) -> Result<Plan> {
    let sizes = args.records.unwrap_or_else(|| {
        if args.quick {
            vec![2_000, 10_000]
        } else {
            vec![10_000, 50_000]
        }
    });
    if sizes.is_empty() || sizes.contains(&0) {
        bail!("--records needs one or more record counts above 0, like 10000,50000");
    }
    if args.devices < 2 {
        bail!("--devices needs at least 2 (one pushes, the others receive)");
    }
    if args.rounds == 0 || (args.rounds > 1 && args.roles != Roles::Mixed) {
        bail!(
            "--rounds needs at least 1, and more than 1 needs --roles mixed (it repeats the admin/mixed comparison)"
        );
    }
    if args.relays == 0 || (args.relays > 1 && args.postgres.is_none()) {
        bail!(
            "--relays needs at least 1, and more than 1 needs --postgres URL (one SQLite file has one relay)"
        );
    }
    let relay_bin = match args.relay {
        Some(p) => p,
        None => std::env::current_exe()
            .context("finding this program")?
            .with_file_name(format!("crm-relay{}", std::env::consts::EXE_SUFFIX)),
    };
    if !relay_bin.exists() {
        bail!(
            "no relay binary at {}: build it with `cargo build --release -p crm-relay`, or pass --relay PATH",
            relay_bin.display()
        );
    }
    let pushers: Vec<usize> = args
        .pushers
        .iter()
        .map(|k| (*k).clamp(1, args.devices))
        .collect();
    Ok(Plan {
        sizes,
        devices: args.devices,
        pushes: args
            .pushes
            .unwrap_or(if args.quick { 200 } else { 500 })
            .max(1),
        interval_ms: args.interval_ms,
        pushers,
        batch: args.batch.clamp(1, 500),
        throughput_secs: args
            .throughput_secs
            .unwrap_or(if args.quick { 2.0 } else { 5.0 }),
        load_runs: if args.quick { 1 } else { 3 },
        quick: args.quick,
        seed: args.seed,
        nodelay: !args.nagle,
        // The throughput measurement pushes as fast as Acks come back, which the default
        // rate limit (100 pushes a second per device) would refuse; the connection limit
        // (1000 per workspace) is the default.
        relay_args: vec!["--max-pushes-per-second".into(), "1000000".into()],
        relay_bin,
        dir: args.dir,
        backend: if args.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        relays: args.relays,
        roles: args.roles,
        rounds: args.rounds,
        postgres: args.postgres,
    })
}

fn run_size(n: usize, plan: &Plan, runtime: &tokio::runtime::Runtime) -> Result<SizeResult> {
    let progress = |what: &str| eprintln!("[sync, {n} records] {what}");
    let temp;
    let dir = match &plan.dir {
        Some(dir) => {
            let dir = dir.join(format!("records-{n}"));
            if dir.exists() {
                bail!("{} exists; pass another --dir", dir.display());
            }
            dir
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("crm-bench-sync-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let relay_dir = dir.join("relay");
    std::fs::create_dir_all(&relay_dir)?;
    // The PostgreSQL client blocks (it runs a runtime of its own): outside the async runtime.
    let database = match &plan.postgres {
        Some(server) => Some(process::PostgresDatabase::create(server, n)?),
        None => None,
    };
    let url = database.as_ref().map(|d| d.url.clone());
    // Two replicas (the source and the fresh device) and the live devices.
    let setup = process::setup(&relay_dir, url.as_deref(), plan.devices, plan.roles)?;
    let mut relays = Vec::with_capacity(plan.relays);
    for i in 0..plan.relays {
        let log_dir = relay_dir.join(format!("process-{i}"));
        std::fs::create_dir_all(&log_dir)?;
        relays.push(RelayProcess::start(
            &plan.relay_bin,
            &relay_dir,
            &log_dir,
            url.as_deref(),
            &plan.relay_args,
        )?);
    }
    let result = runtime.block_on(measure(n, plan, &dir, &relays, &setup, progress));
    if result.is_err() {
        for relay in &relays {
            eprintln!("a relay's log ends with:\n{}", relay.log_tail());
        }
    }
    let mut result = result?;
    result.relay_memory.end = relays[0].rss();
    for relay in relays {
        relay.stop()?;
    }
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    result.relay_db_bytes = match database {
        Some(db) => db.size()?,
        None => {
            size(&relay_dir.join(crm_relay::store::FILE_NAME))
                + size(&relay_dir.join(format!("{}-wal", crm_relay::store::FILE_NAME)))
        }
    };
    Ok(result)
}

async fn measure(
    n: usize,
    plan: &Plan,
    dir: &Path,
    relays: &[RelayProcess],
    setup: &process::Setup,
    progress: impl Fn(&str),
) -> Result<SizeResult> {
    // The real replicas sync with the first process; the live devices are split between all.
    let relay = &relays[0];
    let mut memory = RelayMemory {
        started: relay.rss(),
        ..RelayMemory::default()
    };
    let proxy = Proxy::start(relay.addr).await?;

    let accounts = (n / RECORDS_PER_ACCOUNT).max(1);
    progress(&format!(
        "seeding the source replica ({accounts} accounts)…"
    ));
    let mut source = Store::init(&dir.join("source"), REPLICA_USER, "source")?;
    let start = Instant::now();
    crm_seed::seed(
        &mut source,
        &SeedOptions {
            accounts,
            seed: plan.seed,
        },
    )?;
    let seed_s = start.elapsed().as_secs_f64();
    source.set_relay(&RelayLink {
        url: proxy.url(),
        token: setup.replica_tokens[0].clone(),
    })?;
    progress("the source pushes everything (its first sync)…");
    let source_push = session(&mut source, &proxy, relay).await?;
    memory.after_source_push = relay.rss();
    progress("waiting for the relay to compact the documents…");
    let compaction = wait_compacted(relay, source.all_heads()?.len()).await?;

    progress("Automerge::save / load of every document…");
    let load = load_baseline(&source, plan.load_runs)?;

    progress("a fresh device's full sync…");
    let mut fresh = Store::init(&dir.join("fresh"), REPLICA_USER, "fresh")?;
    fresh.set_relay(&RelayLink {
        url: proxy.url(),
        token: setup.replica_tokens[1].clone(),
    })?;
    let full_sync = session(&mut fresh, &proxy, relay).await?;
    anyhow::ensure!(
        !fresh.read_indexes_suspended()?,
        "the fresh device's read indexes were not built again after its full sync"
    );
    memory.after_full_sync = relay.rss();
    let source_heads = source.all_heads()?;
    let fresh_heads = fresh.all_heads()?;
    let full_sync_mismatched = source_heads
        .iter()
        .filter(|(id, heads)| fresh_heads.get(id) != Some(heads))
        .count();
    let records = source_heads.len();
    drop((source_heads, fresh_heads));

    progress("reconnect with nothing new…");
    let reconnect_nothing_new = session(&mut fresh, &proxy, relay).await?;

    let edited_records = (records / 100).max(1);
    progress(&format!(
        "editing {edited_records} records (1 %) on the source…"
    ));
    edit_some(&mut source, edited_records, plan.seed)?;
    let push_edits = session(&mut source, &proxy, relay).await?;
    progress("reconnect after 1 % changed…");
    let reconnect_after_edits = session(&mut fresh, &proxy, relay).await?;
    memory.after_reconnects = relay.rss();
    let relay_metrics = process::scrape(relay.addr).await.unwrap_or_default();
    drop(proxy);

    let cursor = fresh
        .sync_cursor()?
        .context("the fresh device has no cursor after syncing")?;
    let cursor = Cursor {
        relay_id: cursor.relay_id,
        seq: cursor.seq,
        hash: cursor.hash,
    };
    drop((source, fresh));
    let (propagation, throughput, client_errors, roles) = match &setup.organisation {
        None => {
            let run = live_phase(
                plan,
                relays,
                &setup.workspace,
                &setup.unbound,
                cursor,
                &mut memory,
                &progress,
            )
            .await?;
            (run.propagation, run.throughput, run.errors, None)
        }
        Some(organisation) => {
            let mut cursor = cursor;
            let mut runs: Vec<LiveRun> = Vec::with_capacity(2 * plan.rounds);
            for round in 1..=plan.rounds {
                // Alternating order, so a drift of the machine or the relay over the run
                // (a growing log, a warmer cache) weighs on both sides alike.
                let order = if round % 2 == 1 {
                    [Roles::Admin, Roles::Mixed]
                } else {
                    [Roles::Mixed, Roles::Admin]
                };
                for roles in order {
                    progress(&format!(
                        "round {round} of {}: the {} devices…",
                        plan.rounds,
                        roles.as_str()
                    ));
                    let devices = match roles {
                        Roles::Admin => &setup.unbound,
                        Roles::Mixed => &organisation.devices,
                    };
                    let run = live_phase(
                        plan,
                        relays,
                        &setup.workspace,
                        devices,
                        cursor,
                        &mut memory,
                        &progress,
                    )
                    .await
                    .with_context(|| {
                        format!("round {round}, the {} devices' run", roles.as_str())
                    })?;
                    cursor = run.end_cursor.unwrap_or(cursor);
                    runs.push(LiveRun {
                        round,
                        roles,
                        propagation: run.propagation,
                        throughput: run.throughput,
                        errors: run.errors,
                        receiver_samples: run.receiver_samples,
                    });
                }
            }
            let first_admin = runs
                .iter()
                .find(|r| r.roles == Roles::Admin)
                .context("no admins' run")?;
            let (propagation, throughput) = (
                first_admin.propagation.clone(),
                first_admin.throughput.clone(),
            );
            let errors = runs
                .iter()
                .flat_map(|r| {
                    r.errors
                        .iter()
                        .map(move |e| format!("round {} {}: {e}", r.round, r.roles.as_str()))
                })
                .collect();
            let comparison = roles::compare(organisation, &plan.pushers, runs);
            (propagation, throughput, errors, Some(comparison))
        }
    };

    let full_sync_over_load = full_sync.wall_s / load.load_s.max(1e-9);
    Ok(SizeResult {
        target_records: n,
        accounts,
        records,
        seed_s,
        source_push,
        compaction,
        load,
        full_sync,
        full_sync_mismatched,
        full_sync_over_load,
        reconnect_nothing_new,
        edited_records,
        push_edits,
        reconnect_after_edits,
        relay_metrics,
        propagation,
        throughput,
        relay_memory: memory,
        relay_db_bytes: 0,
        client_errors,
        roles,
    })
}

/// The relay's compaction of the documents the source pushed: it runs in the background
/// after pushes, so a fresh device is measured once it is done, as it would find a relay that
/// has been running for a while.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Compaction {
    /// From the end of the source's push until no document waits for compaction.
    pub(crate) wall_s: f64,
    /// The relay's CPU time meanwhile.
    pub(crate) relay_cpu_s: f64,
    /// Documents compacted since the relay started.
    pub(crate) documents: u64,
}

/// Waits (up to 10 minutes) until the relay's `/metrics` shows no stale document and at least
/// `documents` compacted (the stale gauge is recounted at most once a second).
pub(crate) async fn wait_compacted(relay: &RelayProcess, documents: usize) -> Result<Compaction> {
    let start = Instant::now();
    let cpu = relay.cpu_s();
    loop {
        let metrics = process::scrape(relay.addr).await?;
        let stale = metrics
            .get("crm_relay_documents_stale")
            .context("the relay reports no crm_relay_documents_stale")?;
        let compacted = metrics
            .get("crm_relay_documents_compacted_total")
            .copied()
            .unwrap_or(0.0) as u64;
        if *stale == 0.0 && compacted >= documents as u64 {
            return Ok(Compaction {
                wall_s: start.elapsed().as_secs_f64(),
                relay_cpu_s: relay.cpu_s() - cpu,
                documents: compacted,
            });
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(600),
            "the relay still had {stale} documents to compact after 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One `sync_once` of `store` through the proxy, timed and counted.
pub(crate) async fn session(
    store: &mut Store,
    proxy: &Proxy,
    relay: &RelayProcess,
) -> Result<Session> {
    let settle = Duration::from_secs(5);
    let _ = proxy.take(settle).await;
    let (relay_cpu, own_cpu) = (relay.cpu_s(), process::own_cpu_s());
    let start = Instant::now();
    let report = crm_node::sync::sync_once(store)
        .await
        .context("crm_node::sync::sync_once")?;
    let wall_s = start.elapsed().as_secs_f64();
    let traffic = proxy.take(settle).await;
    // The replicas' devices are bound to no user, so the relay takes every change of theirs:
    // a refused or held-back change here would make every later figure wrong.
    anyhow::ensure!(
        report.refused == 0 && report.held_foreign == 0,
        "the relay refused {} changes of a replica and {} were held back as another user's ({:?})",
        report.refused,
        report.held_foreign,
        report.held_foreign_authors,
    );
    Ok(Session {
        wall_s,
        pushed: report.pushed,
        pulled: report.pulled,
        records_changed: report.records_changed,
        head: report.head,
        reset: report.reset,
        bootstrapped: report.bootstrapped,
        traffic,
        relay_cpu_s: relay.cpu_s() - relay_cpu,
        device_cpu_s: process::own_cpu_s() - own_cpu,
    })
}

/// Saves every document of `store` (rebuilt from its change log) and times loading them all.
fn load_baseline(store: &Store, runs: usize) -> Result<LoadBaseline> {
    let mut by_doc: HashMap<RecordId, Vec<Vec<u8>>> = HashMap::new();
    let (mut changes, mut change_bytes) = (0, 0u64);
    let mut after = 0;
    loop {
        let page = store.changes_after(after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for logged in page {
            changes += 1;
            change_bytes += logged.change.bytes.len() as u64;
            by_doc
                .entry(logged.change.doc_id)
                .or_default()
                .push(logged.change.bytes);
        }
    }
    let documents = by_doc.len();
    let mut apply = Duration::ZERO;
    let mut saved = Vec::with_capacity(documents);
    for (id, raw) in by_doc {
        let start = Instant::now();
        let parsed = raw
            .iter()
            .map(|b| Change::try_from(b.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("a change of {id}"))?;
        let mut doc = Automerge::new();
        doc.apply_changes(parsed)
            .with_context(|| format!("applying the changes of {id}"))?;
        apply += start.elapsed();
        saved.push(doc.save());
    }
    let saved_bytes = saved.iter().map(|s| s.len() as u64).sum();
    let mut load_runs_s = Vec::new();
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        for bytes in &saved {
            let doc = Automerge::load(bytes).context("loading a saved document")?;
            std::hint::black_box(&doc);
        }
        load_runs_s.push(start.elapsed().as_secs_f64());
    }
    let mut sorted = load_runs_s.clone();
    sorted.sort_by(f64::total_cmp);
    Ok(LoadBaseline {
        documents,
        changes,
        change_bytes,
        saved_bytes,
        apply_changes_s: apply.as_secs_f64(),
        load_s: sorted[sorted.len() / 2],
        load_runs_s,
    })
}

/// Tags `n` random records of `store`, each edit one change.
fn edit_some(store: &mut Store, n: usize, seed: u64) -> Result<()> {
    let mut ids: Vec<RecordId> = store.all_heads()?.into_keys().collect();
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x0001_0000);
    let n = n.min(ids.len());
    for i in 0..n {
        let j = rng.random_range(i..ids.len());
        ids.swap(i, j);
    }
    for id in &ids[..n] {
        let mut e = Edit::new(store.kind_of(*id)?);
        e.tag("sync-bench")?;
        store.edit(*id, &e)?;
    }
    Ok(())
}

/// Waits until every client has applied the log up to `seq`.
async fn caught_up(clients: &[Client], seq: u64, wait: Duration) -> Result<()> {
    let deadline = Instant::now() + wait;
    loop {
        let behind = clients
            .iter()
            .filter(|c| c.applied.load(Ordering::Relaxed) < seq)
            .count();
        if behind == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{behind} devices had not received position {seq} after {wait:?}");
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// The `pushes_total` metric summed over the relay processes.
async fn pushes_total(relays: &[RelayProcess]) -> Option<f64> {
    let mut total = 0.0;
    for relay in relays {
        total += process::scrape(relay.addr)
            .await
            .ok()?
            .get("crm_relay_pushes_total")
            .copied()?;
    }
    Some(total)
}

/// What one run of the live phases measured.
struct LivePhase {
    propagation: Propagation,
    throughput: Vec<Throughput>,
    errors: Vec<String>,
    /// Every (push, receiver) latency of the propagation.
    receiver_samples: Vec<Duration>,
    /// Where the devices ended (the head): the next run's devices start there.
    end_cursor: Option<Cursor>,
}

/// Connects `devices` at `cursor`, times propagation from device 0 to all the others, then
/// the push rate of the first k devices for each k of `--pushers`, and disconnects them.
async fn live_phase(
    plan: &Plan,
    relays: &[RelayProcess],
    workspace: &str,
    devices: &[LiveDevice],
    cursor: Cursor,
    memory: &mut RelayMemory,
    progress: &impl Fn(&str),
) -> Result<LivePhase> {
    anyhow::ensure!(
        devices.len() == plan.devices,
        "{} devices were set up for {} live devices",
        devices.len(),
        plan.devices
    );
    progress(&format!("connecting {} devices…", plan.devices));
    let relay = &relays[0];
    // CPU seconds and pushes of every relay process together.
    let cpu_s = || relays.iter().map(RelayProcess::cpu_s).sum::<f64>();
    let sampler = RssSampler::start(relay.pid(), Duration::from_millis(20));
    let recording = Arc::new(AtomicBool::new(false));
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
    let shared = live::Shared {
        recording: recording.clone(),
        synced: synced_tx,
    };
    let start = Instant::now();
    let mut clients = Vec::with_capacity(plan.devices);
    for (i, device) in devices.iter().enumerate() {
        // Device i on process i mod N: the pusher (device 0) on the first, receivers on all.
        let url = relays[i % relays.len()].url();
        clients.push(
            Client::connect(
                i,
                &url,
                workspace,
                &device.token,
                Some(cursor),
                plan.nodelay,
                shared.clone(),
            )
            .await
            .with_context(|| format!("connecting device {i}"))?,
        );
    }
    for _ in 0..plan.devices {
        tokio::time::timeout(Duration::from_secs(30), synced_rx.recv())
            .await
            .context("the devices did not all report Synced within 30 s")?
            .context("a device ended before reporting Synced")?;
    }
    let connect_s = start.elapsed().as_secs_f64();
    memory.devices_connected = relay.rss();
    let _ = sampler.take_max();

    // Propagation: device 0 pushes one change every `interval_ms`, the others receive it.
    progress(&format!(
        "propagation: {} pushes, one every {} ms…",
        plan.pushes, plan.interval_ms
    ));
    let mut writer = Writer::new(&devices[0].identity, "pusher");
    // Warm-up, not in the figures: the first pushes after the devices connect are slower
    // (the record's creation; the relay's sessions open their first reader connections).
    let mut first_push_ms = Vec::new();
    for _ in 0..WARM_UP_PUSHES {
        let start = Instant::now();
        clients[0].push(vec![writer.next()?])?;
        let a = clients[0].next_ack(Duration::from_secs(30)).await?;
        let seq = a.seqs.iter().copied().max().unwrap_or(0);
        caught_up(&clients[1..], seq, Duration::from_secs(30)).await?;
        first_push_ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    let changes: Vec<Envelope> = (0..plan.pushes)
        .map(|_| writer.next())
        .collect::<Result<_>>()?;
    let mut sent: HashMap<u64, Instant> = HashMap::new();
    let mut acks = Vec::new();
    let mut note = |a: live::Acked, sent: &mut HashMap<u64, Instant>| {
        acks.push(a.acked.saturating_duration_since(a.sent));
        for seq in a.seqs {
            sent.insert(seq, a.sent);
        }
    };
    recording.store(true, Ordering::Relaxed);
    let relay_cpu = cpu_s();
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(plan.interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for change in changes {
        tick.tick().await;
        clients[0].push(vec![change])?;
        while let Some(a) = clients[0].try_ack()? {
            note(a, &mut sent);
        }
    }
    while sent.len() < plan.pushes {
        let a = clients[0].next_ack(Duration::from_secs(30)).await?;
        note(a, &mut sent);
    }
    let last = sent.keys().copied().max().unwrap_or(0);
    caught_up(&clients[1..], last, Duration::from_secs(30)).await?;
    recording.store(false, Ordering::Relaxed);
    let wall_s = start.elapsed().as_secs_f64();
    let relay_cpu_s = cpu_s() - relay_cpu;
    memory.latency_max_rss_kib = memory.latency_max_rss_kib.max(sampler.take_max());

    // Throughput: k devices push batches back to back, each as soon as its last is acked.
    let received = |clients: &[Client]| {
        clients
            .iter()
            .map(|c| c.entries.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let mut throughput = Vec::new();
    for &k in &plan.pushers {
        progress(&format!(
            "throughput: {k} device(s) pushing {} changes at a time for {} s…",
            plan.batch, plan.throughput_secs
        ));
        let before = pushes_total(relays).await;
        let entries_before = received(&clients);
        let relay_cpu = cpu_s();
        let start = Instant::now();
        let deadline = start + Duration::from_secs_f64(plan.throughput_secs);
        let batch = plan.batch;
        let runs = futures_util::future::join_all(
            clients[..k].iter_mut().zip(&devices[..k]).enumerate().map(
                |(i, (client, device))| async move {
                    let mut writer = Writer::new(&device.identity, &format!("throughput{k}-{i}"));
                    let (mut pushes, mut latencies, mut last) = (0usize, Vec::new(), 0u64);
                    while Instant::now() < deadline {
                        let changes = (0..batch)
                            .map(|_| writer.next())
                            .collect::<Result<Vec<_>>>()?;
                        client.push(changes)?;
                        let a = client.next_ack(Duration::from_secs(30)).await?;
                        latencies.push(a.acked.saturating_duration_since(a.sent));
                        last = last.max(a.seqs.iter().copied().max().unwrap_or(0));
                        pushes += 1;
                    }
                    anyhow::Ok((pushes, latencies, last))
                },
            ),
        )
        .await;
        let wall_s = start.elapsed().as_secs_f64();
        let (mut pushes, mut latencies, mut last) = (0, Vec::new(), 0);
        for run in runs {
            let (p, l, s) = run?;
            pushes += p;
            latencies.extend(l);
            last = last.max(s);
        }
        let catch_up = Instant::now();
        caught_up(&clients, last, Duration::from_secs(60)).await?;
        let fan_out_catch_up_ms = catch_up.elapsed().as_secs_f64() * 1e3;
        let relay_cpu_s = cpu_s() - relay_cpu;
        let after = pushes_total(relays).await;
        let relay_pushes = after.zip(before).map(|(a, b)| a - b);
        let entries = received(&clients) - entries_before;
        memory.throughput_max_rss_kib = memory.throughput_max_rss_kib.max(sampler.take_max());
        throughput.push(Throughput {
            pushing_devices: k,
            changes_per_push: batch,
            pushes,
            changes: pushes * batch,
            wall_s,
            pushes_per_s: pushes as f64 / wall_s,
            changes_per_s: (pushes * batch) as f64 / wall_s,
            push_to_ack: Latency::of(&latencies),
            fan_out_catch_up_ms,
            relay_cpu_s,
            relay_pushes,
            entries_per_change: entries as f64 / (pushes * batch).max(1) as f64,
        });
    }

    let mut ends = Vec::with_capacity(clients.len());
    for client in clients {
        ends.push(client.finish().await);
    }
    drop(sampler);
    let mut all = Vec::new();
    let mut slowest: HashMap<u64, Duration> = HashMap::new();
    let mut missing = 0;
    for end in &ends[1..] {
        let mut got = HashSet::new();
        for (seq, at) in &end.received {
            if let Some(t0) = sent.get(seq) {
                let d = at.saturating_duration_since(*t0);
                all.push(d);
                let s = slowest.entry(*seq).or_default();
                *s = (*s).max(d);
                got.insert(*seq);
            }
        }
        missing += sent.len() - got.len();
    }
    let slowest: Vec<Duration> = slowest.into_values().collect();
    let errors = ends
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.error.as_ref().map(|e| format!("device {i}: {e}")))
        .filter(|e| !e.ends_with("the relay closed the connection"))
        .collect();
    let end_cursor = ends.iter().filter_map(|e| e.cursor).max_by_key(|c| c.seq);
    let propagation = Propagation {
        devices: plan.devices,
        pushes: plan.pushes,
        interval_ms: plan.interval_ms,
        all_receivers: Latency::of(&all),
        slowest_receiver: Latency::of(&slowest),
        push_to_ack: Latency::of(&acks),
        missing,
        warm_up_ms: first_push_ms,
        connect_s,
        relay_cpu_s,
        wall_s,
    };
    Ok(LivePhase {
        propagation,
        throughput,
        errors,
        receiver_samples: all,
        end_cursor,
    })
}
