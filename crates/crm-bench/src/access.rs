//! `crm-bench access`: the cost of access control. For each workspace size N, against a
//! `crm-relay` process of its own (the sync benchmark's [`process`], [`proxy`] and [`live`]
//! modules), with a realistic organisation: crm-seed's users (sales managers, sales reps,
//! support agents, one of them inactive) and teams (two sales teams and customer service),
//! every customer record owned by a rep with the rep's team in its `teams`, so a rep sees
//! about half of the customer records.
//!
//! 1. An admin user `root` joins with a replica, seeds it with crm-seed (N/8 accounts) and
//!    pushes it (`crm_node::sync::sync_once`, as `crm seed` + `crm sync` would): the relay
//!    projects the seeded `user` and `team` records into its directory.
//! 2. Fresh-device syncs (`sync_once` on a new replica, through the counting proxy), each
//!    variant `--runs` times, interleaved: a sales rep of its own scope; an admin of a second
//!    workspace seeded with about as many documents as the rep receives (the same count,
//!    unfiltered); an admin bound to a user (the relay finds that it sees everything and takes
//!    the unfiltered path); an admin device bound to no user (no directory at all: the
//!    baseline); and a user whose role reads every kind at `all` but one kind the workspace
//!    has no record of, so the relay takes the filtered path for a user who sees everything.
//! 3. The rep's reconnect with nothing new.
//! 4. The cost of filtering: `crm_relay::service::filter` timed in this process on the
//!    workspace's whole log read as the relay reads it (`Relay::read_raw`, pages of 256
//!    rows), for each role; and the relay process's CPU time while one lightweight device
//!    reads the whole log from position 0, a rep's against an admin's.
//! 5. Live propagation: `--devices` lightweight devices of mixed roles at the head; one rep
//!    edits (a tag) accounts and opportunities of its team, one push at a time. Each device
//!    should receive an edit only if its user may read the record; latency is reported over
//!    the devices that should, and anything delivered to a device that should not is counted.
//! 6. Reassignments: with those devices connected, the admin's device gives an account of one
//!    sales team to a rep of the other (owner and teams), one at a time; the new team's
//!    devices must receive the whole document (`Grant`, checked against the admin's heads)
//!    and the old team's a `Purge`.

mod report;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_model::automerge::{ActorId, Automerge, Change, ChangeHash};
use crm_model::{Author, Edit, FieldValue, Kind, RecordId, Role, Stamp};
use crm_relay::Relay;
use crm_relay::WorkspaceId;
use crm_relay::service::{Filtered, RawRead, filter};
use crm_seed::SeedOptions;
use crm_store::{RelayLink, Store};
use crm_sync::relay::ReadFrame;
use crm_sync::{Cursor, DocId, Envelope, Scope};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::Machine;
use crate::stats::Latency;
use crate::sync::live::{self, Client, ClientEnd};
use crate::sync::process::{self, RelayProcess};
use crate::sync::proxy::{Counts, Proxy};
use crate::sync::{Session, session, wait_compacted};

/// A reassignment made: its log position, when it was pushed, the record, the team it left
/// and the one it entered, the new owner, and the record's heads
/// after it.
type Moved = (
    u64,
    Instant,
    DocId,
    RecordId,
    RecordId,
    RecordId,
    Vec<ChangeHash>,
);

/// Targets of the access-control issue.
pub(crate) const ADMIN_SLOWDOWN_MAX: f64 = 1.10;
pub(crate) const NOTHING_NEW_MAX_MESSAGES: u64 = 2;
pub(crate) const NOTHING_NEW_MAX_BYTES: u64 = 1_000;
pub(crate) const PROPAGATION_P99_MS: f64 = 15.0;

/// crm-seed writes about this many records per account.
const RECORDS_PER_ACCOUNT: usize = 8;
/// Pushes made before the propagation is timed.
const WARM_UP_PUSHES: usize = 5;
/// Rows per read, as the relay reads for a session (`MAX_BATCH_CHANGES`).
const READ_ROWS: usize = 256;
/// Repetitions of the in-process filter timing.
const FILTER_RUNS: usize = 5;

/// Access-control benchmark: filtered fresh syncs, reconnects, live propagation to devices
/// of mixed roles, the relay's cost per filtered entry, grants and purges.
#[derive(Debug, clap::Args)]
pub(crate) struct AccessArgs {
    /// Workspace sizes in records, each with a relay of its own.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000",
        value_name = "N1,N2,…"
    )]
    records: Vec<usize>,
    /// Lightweight devices of mixed roles connected for the live measurements.
    #[arg(long, default_value_t = 100, value_name = "N")]
    devices: usize,
    /// Edits timed for the live propagation.
    #[arg(long, default_value_t = 300, value_name = "N")]
    pushes: usize,
    /// Milliseconds between two of those edits.
    #[arg(long, default_value_t = 20, value_name = "MS")]
    interval_ms: u64,
    /// Fresh syncs of each variant (and reconnects), interleaved; medians are reported.
    #[arg(long, default_value_t = 3, value_name = "N")]
    runs: usize,
    /// Reassignments timed (alternately from one sales team to the other and back).
    #[arg(long, default_value_t = 20, value_name = "N")]
    reassignments: usize,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// The crm-seed random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep the replicas and the relay's data in DIR/records-N.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The crm-relay binary [default: crm-relay next to this program].
    #[arg(long, value_name = "PATH")]
    relay: Option<PathBuf>,
    /// Run the relay on PostgreSQL (the server's maintenance database); each size gets a
    /// database of its own, dropped at the end.
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
}

/// What one run does, resolved from the arguments.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Plan {
    pub(crate) sizes: Vec<usize>,
    pub(crate) devices: usize,
    pub(crate) pushes: usize,
    pub(crate) interval_ms: u64,
    pub(crate) runs: usize,
    pub(crate) reassignments: usize,
    pub(crate) seed: u64,
    pub(crate) backend: &'static str,
    #[serde(skip)]
    relay_bin: PathBuf,
    #[serde(skip)]
    dir: Option<PathBuf>,
    #[serde(skip)]
    postgres: Option<String>,
}

/// One variant of the fresh-device sync, every run of it.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct FreshSyncs {
    /// Documents the fresh replica holds afterwards.
    pub(crate) documents: usize,
    pub(crate) runs: Vec<Session>,
}

impl FreshSyncs {
    pub(crate) fn median_s(&self) -> f64 {
        median(self.runs.iter().map(|s| s.wall_s))
    }
    pub(crate) fn median_down_bytes(&self) -> f64 {
        median(
            self.runs
                .iter()
                .map(|s| s.traffic.down.message_bytes as f64),
        )
    }
    pub(crate) fn median_relay_cpu_s(&self) -> f64 {
        median(self.runs.iter().map(|s| s.relay_cpu_s))
    }
}

/// `filter` of the whole log for one user, in this process.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct FilterCost {
    pub(crate) viewer: String,
    pub(crate) rows: usize,
    /// Entries the user receives (sent as they are).
    pub(crate) sent: usize,
    /// Reads that held a grant (they are filtered again with the store in the relay).
    pub(crate) needs_store: usize,
    /// Median over the runs of the whole log's filtering, per row.
    pub(crate) ns_per_row: f64,
}

/// One lightweight device reading the whole log from position 0.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct LogRead {
    pub(crate) viewer: String,
    pub(crate) rows: u64,
    /// The relay process's CPU seconds for each read (10 ms ticks).
    pub(crate) relay_cpu_s: Vec<f64>,
    pub(crate) wall_s: Vec<f64>,
}

/// Live propagation to devices of mixed roles.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Propagation {
    pub(crate) devices: usize,
    /// Devices per role.
    pub(crate) roles: Vec<(String, usize)>,
    pub(crate) pushes: usize,
    /// Per push, how many devices should receive it (median).
    pub(crate) receivers_median: f64,
    /// (push, device that should receive it) pairs.
    pub(crate) receivers: Latency,
    /// Per push, the slowest device that should receive it.
    pub(crate) slowest_receiver: Latency,
    pub(crate) push_to_ack: Latency,
    /// Pairs that should have arrived and did not.
    pub(crate) missing: usize,
    /// Entries delivered to a device whose user may not read the record.
    pub(crate) leaked: usize,
    pub(crate) relay_cpu_s: f64,
}

/// Reassignments of accounts between the sales teams.
#[derive(Clone, Debug, Default, Serialize)]
pub(crate) struct Reassignments {
    pub(crate) count: usize,
    /// From the admin's `Push` to the `Grant` at each device of the new owner.
    pub(crate) grant_new_owner: Latency,
    /// To the `Grant` at every device of the new team (the owner's included).
    pub(crate) grant_new_team: Latency,
    /// To the `Purge` at every device of the old team.
    pub(crate) purge_old_team: Latency,
    pub(crate) push_to_ack: Latency,
    /// Grants and purges that should have arrived and did not.
    pub(crate) missing_grants: usize,
    pub(crate) missing_purges: usize,
    /// Grants whose document's heads were not the admin's after the change.
    pub(crate) incomplete_grants: usize,
    /// Grants or purges at a device that should not have had one.
    pub(crate) unexpected: usize,
}

/// Everything measured at one size.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct SizeResult {
    pub(crate) target_records: usize,
    pub(crate) accounts: usize,
    pub(crate) documents: usize,
    pub(crate) log_rows: u64,
    pub(crate) users: usize,
    pub(crate) teams: Vec<(String, usize)>,
    pub(crate) seed_s: f64,
    pub(crate) source_push: Session,
    pub(crate) rep: FreshSyncs,
    pub(crate) rep_name: String,
    /// The second workspace's accounts, chosen so it holds about as many documents.
    pub(crate) small_accounts: usize,
    pub(crate) small_admin: FreshSyncs,
    pub(crate) admin_bound: FreshSyncs,
    pub(crate) admin_unbound: FreshSyncs,
    pub(crate) all_seeing_filtered: FreshSyncs,
    /// The kind left at `team` for that user (the workspace has no record of it).
    pub(crate) all_seeing_except: String,
    pub(crate) reconnects: Vec<Session>,
    pub(crate) filter: Vec<FilterCost>,
    pub(crate) log_reads: Vec<LogRead>,
    pub(crate) propagation: Propagation,
    pub(crate) reassignments: Reassignments,
    pub(crate) client_errors: Vec<String>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    machine: Machine,
    plan: &'a Plan,
    sizes: &'a [SizeResult],
}

pub(crate) fn main(args: AccessArgs) -> Result<()> {
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
            print!("{}", report::size(&result));
        }
        results.push(result);
    }
    if print_json {
        let json = JsonReport {
            machine,
            plan: &plan,
            sizes: &results,
        };
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(())
}

fn plan(args: AccessArgs) -> Result<Plan> {
    if args.records.is_empty() || args.records.contains(&0) {
        bail!("--records needs one or more record counts above 0, like 10000,50000");
    }
    if args.devices < 10 {
        bail!("--devices needs at least 10, to hold every role");
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
    Ok(Plan {
        sizes: args.records,
        devices: args.devices,
        pushes: args.pushes.max(1),
        interval_ms: args.interval_ms,
        runs: args.runs.max(1),
        reassignments: args.reassignments.max(2),
        seed: args.seed,
        backend: if args.postgres.is_some() {
            "postgres"
        } else {
            "sqlite"
        },
        relay_bin,
        dir: args.dir,
        postgres: args.postgres,
    })
}

fn run_size(n: usize, plan: &Plan, runtime: &tokio::runtime::Runtime) -> Result<SizeResult> {
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
                .prefix("crm-bench-access-")
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
    let store = match &database {
        Some(db) => crm_relay::store::Database::Postgres(db.url.clone()),
        None => crm_relay::store::Database::Sqlite(relay_dir.clone()),
    };
    // The admin's side of the relay in this process, on the same database: what `crm-relay
    // workspace|user|team|device …` call while the relay serves.
    let admin = Relay::new(
        store
            .open(true)
            .with_context(|| format!("creating a relay store in {store}"))?,
    );
    let relay = RelayProcess::start(
        &plan.relay_bin,
        &relay_dir,
        &relay_dir,
        database.as_ref().map(|d| d.url.as_str()),
        &["--max-pushes-per-second".into(), "1000000".into()],
    )?;
    let result = runtime.block_on(measure(n, plan, &dir, &admin, &relay));
    if result.is_err() {
        eprintln!("the relay's log ends with:\n{}", relay.log_tail());
    }
    relay.stop()?;
    drop(admin);
    drop(database);
    result
}

/// A user of the workspace as the benchmark needs them.
#[derive(Clone, Debug)]
struct Person {
    id: RecordId,
    name: String,
    role: Role,
    /// Teams they belong to or manage.
    teams: HashSet<RecordId>,
}

impl Person {
    /// Whether this user may read a record of `kind` owned by a member of `team` (with
    /// `team` in its `teams`), from the README's matrix, written out here rather than taken
    /// from the code under test.
    fn sees(&self, kind: Kind, team: RecordId) -> bool {
        match self.role {
            Role::Admin => true,
            Role::SalesManager | Role::SalesRep => self.teams.contains(&team),
            Role::SupportAgent => kind == Kind::Account,
        }
    }
}

/// A customer record of a sales team, with its document as the admin's replica has it.
struct Tracked {
    id: RecordId,
    kind: Kind,
    team: RecordId,
    doc: Automerge,
}

async fn measure(
    n: usize,
    plan: &Plan,
    dir: &Path,
    admin: &Relay,
    relay: &RelayProcess,
) -> Result<SizeResult> {
    let progress = |what: &str| eprintln!("[access, {n} records] {what}");
    let proxy = Proxy::start(relay.addr).await?;
    let ws = admin.create_workspace("acme")?.id;
    let workspace = ws.to_string();
    admin.add_user(ws, "root", None, Role::Admin, &[])?;
    let root_token = admin.add_device(ws, "root")?.token.expose().to_string();

    // The admin joins, seeds the company and pushes it.
    let accounts = (n / RECORDS_PER_ACCOUNT).max(1);
    progress(&format!(
        "the admin seeds {accounts} accounts and pushes them…"
    ));
    let mut source = Store::init(&dir.join("source"), "root", "source")?;
    source.set_relay(&RelayLink {
        url: proxy.url(),
        token: root_token,
    })?;
    session(&mut source, &proxy, relay).await?;
    let start = Instant::now();
    crm_seed::seed(
        &mut source,
        &SeedOptions {
            accounts,
            seed: plan.seed,
        },
    )?;
    let seed_s = start.elapsed().as_secs_f64();
    let source_push = session(&mut source, &proxy, relay).await?;
    let documents = source.all_heads()?.len();
    progress("waiting for the relay to compact the documents…");
    wait_compacted(relay, documents).await?;

    // The organisation, as the relay's directory holds it.
    let users = admin.users(ws)?;
    let teams = admin.teams(ws)?;
    let mut people: Vec<Person> = users
        .iter()
        .filter(|u| u.active && u.name != crm_relay::service::RELAY_AUTHOR)
        .map(|u| Person {
            id: u.id,
            name: u.name.clone(),
            role: u.role,
            teams: teams
                .iter()
                .filter(|(t, members)| members.contains(&u.id) || t.manager == Some(u.id))
                .map(|(t, _)| t.id)
                .collect(),
        })
        .collect();
    people.sort_by(|a, b| (a.role.as_str(), &a.name).cmp(&(b.role.as_str(), &b.name)));
    let team_sizes = teams
        .iter()
        .map(|(t, members)| (t.name.clone(), members.len()))
        .collect();
    // The sales teams: those with reps.
    let mut sales_teams: Vec<RecordId> = teams
        .iter()
        .filter(|(_, members)| {
            members.iter().any(|m| {
                people
                    .iter()
                    .any(|p| p.id == *m && p.role == Role::SalesRep)
            })
        })
        .map(|(t, _)| t.id)
        .collect();
    sales_teams.sort();
    if sales_teams.len() < 2 {
        bail!("crm-seed made fewer than two sales teams at {accounts} accounts; use more records");
    }
    let (team_a, team_b) = (sales_teams[0], sales_teams[1]);
    let rep_of = |team: RecordId| -> Result<Person> {
        people
            .iter()
            .find(|p| p.role == Role::SalesRep && p.teams.contains(&team))
            .cloned()
            .context("a sales team without an active rep")
    };
    let (rep_a, rep_b) = (rep_of(team_a)?, rep_of(team_b)?);
    for name in ["admin-2", "admin-3"] {
        admin.add_user(ws, name, None, Role::Admin, &[])?;
        people.push(Person {
            id: admin
                .users(ws)?
                .into_iter()
                .find(|u| u.name == name)
                .context("the admin just added")?
                .id,
            name: name.into(),
            role: Role::Admin,
            teams: HashSet::new(),
        });
    }
    progress("reading the customer records of the sales teams…");
    let mut tracked = tracked_records(&source, &sales_teams)?;
    let log_rows = admin.head(ws)?.0;

    // Fresh-device syncs.
    let mut rep = FreshSyncs::default();
    let mut runs_dir = 0usize;
    let mut fresh_dir = |label: &str| {
        runs_dir += 1;
        dir.join(format!("fresh-{runs_dir}-{label}"))
    };
    progress(&format!("a fresh device of {} (sales rep)…", rep_a.name));
    let token = admin
        .add_device(ws, &rep_a.name)?
        .token
        .expose()
        .to_string();
    let (s, docs, store, path) =
        fresh_sync(fresh_dir("rep"), &rep_a.name, token, &proxy, relay).await?;
    rep.documents = docs;
    rep.runs.push(s);
    drop(store);
    std::fs::remove_dir_all(path)?;

    // A second workspace holding about as many documents as the rep receives.
    let small_accounts =
        ((rep.documents as f64 * accounts as f64 / documents as f64).round() as usize).max(1);
    progress(&format!(
        "a second workspace of {small_accounts} accounts for the unfiltered sync of as many documents…"
    ));
    let ws2 = admin.create_workspace("small")?.id;
    admin.add_user(ws2, "root2", None, Role::Admin, &[])?;
    let token = admin.add_device(ws2, "root2")?.token.expose().to_string();
    let mut small_source = Store::init(&dir.join("small-source"), "root2", "small-source")?;
    small_source.set_relay(&RelayLink {
        url: proxy.url(),
        token,
    })?;
    session(&mut small_source, &proxy, relay).await?;
    crm_seed::seed(
        &mut small_source,
        &SeedOptions {
            accounts: small_accounts,
            seed: plan.seed + 1,
        },
    )?;
    session(&mut small_source, &proxy, relay).await?;
    let small_documents = small_source.all_heads()?.len();
    drop(small_source);
    wait_compacted(relay, documents + small_documents).await?;

    let (mut small_admin, mut admin_bound, mut admin_unbound) = Default::default();
    for run in 0..plan.runs {
        progress(&format!("fresh syncs, run {} of {}…", run + 1, plan.runs));
        if run > 0 {
            let token = admin
                .add_device(ws, &rep_a.name)?
                .token
                .expose()
                .to_string();
            let (s, _, store, path) =
                fresh_sync(fresh_dir("rep"), &rep_a.name, token, &proxy, relay).await?;
            rep.runs.push(s);
            drop(store);
            std::fs::remove_dir_all(path)?;
        }
        let token = admin.add_device(ws2, "root2")?.token.expose().to_string();
        one_run(
            &mut small_admin,
            fresh_dir("small"),
            "root2",
            token,
            &proxy,
            relay,
        )
        .await?;
        let token = admin.add_device(ws, "root")?.token.expose().to_string();
        one_run(
            &mut admin_bound,
            fresh_dir("admin"),
            "root",
            token,
            &proxy,
            relay,
        )
        .await?;
        // A device bound to no user pushes its replica's own user record (the relay knows no
        // user for it): a name of its own, so the directory gains a user nobody else sees
        // as a teammate.
        let name = format!("unbound-{run}");
        let token = admin
            .add_unbound_device(ws, &name)?
            .token
            .expose()
            .to_string();
        one_run(
            &mut admin_unbound,
            fresh_dir("unbound"),
            &name,
            token,
            &proxy,
            relay,
        )
        .await?;
    }

    // A user who reads every kind at `all` but one the workspace has no record of: the
    // relay cannot tell that they see everything, so their sync takes the filtered path.
    let mut except = None;
    for kind in Kind::ALL {
        if source.count(*kind, true)? == 0 && !matches!(kind, Kind::User | Kind::Team) {
            except = Some(*kind);
            break;
        }
    }
    let mut all_seeing_filtered = FreshSyncs::default();
    let all_seeing_except = match except {
        None => "(none: every kind has records; not measured)".to_string(),
        Some(except) => {
            progress(&format!(
                "fresh syncs through the filtered path of a user who sees everything but {except}…"
            ));
            let role = Role::SalesManager;
            let changed: Vec<Kind> = Kind::ALL
                .iter()
                .copied()
                .filter(|k| *k != except && !matches!(k, Kind::User | Kind::Team))
                .collect();
            for kind in &changed {
                admin.set_level(
                    ws,
                    role,
                    *kind,
                    crm_model::Action::Read,
                    crm_model::Level::All,
                )?;
            }
            admin.add_user(ws, "auditor", None, role, &[])?;
            for run in 0..plan.runs {
                let token = admin.add_device(ws, "auditor")?.token.expose().to_string();
                one_run(
                    &mut all_seeing_filtered,
                    fresh_dir(&format!("filtered-{run}")),
                    "auditor",
                    token,
                    &proxy,
                    relay,
                )
                .await?;
            }
            // Back to the built-in matrix for the rest of the run.
            for kind in &changed {
                let level =
                    crm_model::access::default_levels(role, *kind).get(crm_model::Action::Read);
                admin.set_level(ws, role, *kind, crm_model::Action::Read, level)?;
            }
            except.as_str().to_string()
        }
    };

    // The rep's reconnects: one to take what came since (new users), then nothing new.
    progress("the rep's reconnects with nothing new…");
    let token = admin
        .add_device(ws, &rep_a.name)?
        .token
        .expose()
        .to_string();
    let (_, _, mut rep_store, _) = fresh_sync(
        fresh_dir("rep-reconnect"),
        &rep_a.name,
        token,
        &proxy,
        relay,
    )
    .await?;
    session(&mut rep_store, &proxy, relay).await?;
    let mut reconnects = Vec::new();
    for _ in 0..plan.runs.max(3) {
        reconnects.push(session(&mut rep_store, &proxy, relay).await?);
    }
    let cursor = rep_store
        .sync_cursor()?
        .context("the rep's replica has no cursor after syncing")?;
    let cursor = Cursor {
        relay_id: cursor.relay_id,
        seq: cursor.seq,
        hash: cursor.hash,
    };
    drop(rep_store);
    drop(proxy);

    progress("timing the filter on the whole log, in this process…");
    let filter_costs = filter_costs(admin, ws, &people, &rep_a)?;

    // The relay process reading the whole log for one lightweight device.
    let mut log_reads = Vec::new();
    for (label, user) in [
        ("sales rep (filtered)", &rep_a.name),
        ("admin (unfiltered)", &"root".to_string()),
    ] {
        progress(&format!("the whole log read by one device of a {label}…"));
        let mut read = LogRead {
            viewer: label.to_string(),
            rows: cursor.seq,
            relay_cpu_s: Vec::new(),
            wall_s: Vec::new(),
        };
        for _ in 0..plan.runs {
            let token = admin.add_device(ws, user)?.token.expose().to_string();
            let (cpu, wall) = whole_log_read(relay, &workspace, &token, cursor.seq).await?;
            read.relay_cpu_s.push(cpu);
            read.wall_s.push(wall);
        }
        log_reads.push(read);
    }

    // Live devices of mixed roles.
    progress(&format!(
        "connecting {} devices of mixed roles…",
        plan.devices
    ));
    let root = people
        .iter()
        .find(|p| p.name == "root")
        .cloned()
        .context("root in the directory")?;
    let mut holders: Vec<Person> = vec![rep_a.clone(), root.clone(), rep_b.clone()];
    let others: Vec<&Person> = people
        .iter()
        .filter(|p| p.id != rep_a.id && p.id != root.id && p.id != rep_b.id)
        .collect();
    for i in 0..plan.devices.saturating_sub(3) {
        holders.push(others[i % others.len()].clone());
    }
    let recording = Arc::new(AtomicBool::new(false));
    let (synced_tx, mut synced_rx) = mpsc::unbounded_channel();
    let shared = live::Shared {
        recording: recording.clone(),
        synced: synced_tx,
    };
    let mut clients = Vec::with_capacity(holders.len());
    for (i, person) in holders.iter().enumerate() {
        let token = admin
            .add_device(ws, &person.name)?
            .token
            .expose()
            .to_string();
        clients.push(
            Client::connect(
                i,
                &relay.url(),
                &workspace,
                &token,
                Some(cursor),
                true,
                shared.clone(),
            )
            .await
            .with_context(|| format!("connecting device {i} ({})", person.name))?,
        );
    }
    for _ in 0..clients.len() {
        tokio::time::timeout(Duration::from_secs(30), synced_rx.recv())
            .await
            .context("the devices did not all report Synced within 30 s")?
            .context("a device ended before reporting Synced")?;
    }
    let mut roles: HashMap<&str, usize> = HashMap::new();
    for p in &holders {
        *roles.entry(p.role.as_str()).or_default() += 1;
    }
    let mut roles: Vec<(String, usize)> = roles.into_iter().map(|(r, n)| (r.into(), n)).collect();
    roles.sort();

    // Propagation: device 0 (a rep of team A) edits records of its team.
    progress(&format!(
        "propagation: {} edits of team records, one every {} ms…",
        plan.pushes, plan.interval_ms
    ));
    let (edits, moves): (Vec<usize>, Vec<usize>) = {
        let of_a: Vec<usize> = (0..tracked.len())
            .filter(|i| tracked[*i].team == team_a)
            .collect();
        let accounts_a: Vec<usize> = of_a
            .iter()
            .copied()
            .filter(|i| tracked[*i].kind == Kind::Account)
            .collect();
        let accounts_b: Vec<usize> = (0..tracked.len())
            .filter(|i| tracked[*i].team == team_b && tracked[*i].kind == Kind::Account)
            .collect();
        let half = plan.reassignments.div_ceil(2);
        if accounts_a.len() < half + 1 || accounts_b.len() < half {
            bail!(
                "too few accounts per sales team for {} reassignments",
                plan.reassignments
            );
        }
        // Reassignments take the first accounts of each team, alternately; edits the others.
        let mut moves = Vec::new();
        for k in 0..plan.reassignments {
            moves.push(if k % 2 == 0 {
                accounts_a[k / 2]
            } else {
                accounts_b[k / 2]
            });
        }
        let moved: HashSet<usize> = moves.iter().copied().collect();
        let edits = of_a
            .into_iter()
            .filter(|i| !moved.contains(i))
            .take(64)
            .collect();
        (edits, moves)
    };
    let editor = Author::new(rep_a.name.clone(), "bench-rep-device");
    let mut sent: HashMap<u64, (Instant, Kind, RecordId)> = HashMap::new();
    let mut acks = Vec::new();
    for w in 0..WARM_UP_PUSHES {
        let t = &mut tracked[edits[w % edits.len()]];
        clients[0].push(vec![tag_edit(t, &editor, &format!("warm-up-{w}"))?])?;
        let a = clients[0].next_ack(Duration::from_secs(30)).await?;
        let seq = a.seqs.iter().copied().max().unwrap_or(0);
        let (kind, team) = (t.kind, t.team);
        let should: Vec<&Client> = receivers(&clients, &holders, 0, |p| p.sees(kind, team));
        wait_applied(&should, seq, Duration::from_secs(30)).await;
    }
    recording.store(true, Ordering::Relaxed);
    let relay_cpu = relay.cpu_s();
    let mut tick = tokio::time::interval(Duration::from_millis(plan.interval_ms.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pending: Vec<(Kind, RecordId)> = Vec::new();
    let mut note = |a: live::Acked,
                    pending: &mut Vec<(Kind, RecordId)>,
                    sent: &mut HashMap<u64, (Instant, Kind, RecordId)>| {
        acks.push(a.acked.saturating_duration_since(a.sent));
        // Edits queued while a push was in flight go together in the next push: one Ack
        // then holds several positions, in the order the edits were made.
        for seq in a.seqs {
            let (kind, team) = pending.remove(0);
            sent.insert(seq, (a.sent, kind, team));
        }
    };
    for p in 0..plan.pushes {
        tick.tick().await;
        let t = &mut tracked[edits[p % edits.len()]];
        let change = tag_edit(t, &editor, &format!("live-{p}"))?;
        pending.push((t.kind, t.team));
        clients[0].push(vec![change])?;
        while let Some(a) = clients[0].try_ack()? {
            note(a, &mut pending, &mut sent);
        }
    }
    while sent.len() < plan.pushes {
        let a = clients[0].next_ack(Duration::from_secs(30)).await?;
        note(a, &mut pending, &mut sent);
    }
    let last = sent.keys().copied().max().unwrap_or(0);
    let everyone_who_sees: Vec<&Client> = receivers(&clients, &holders, 0, |p| {
        p.sees(Kind::Account, team_a) || p.sees(Kind::Opportunity, team_a)
    });
    wait_applied(&everyone_who_sees, last, Duration::from_secs(30)).await;
    let propagation_cpu = relay.cpu_s() - relay_cpu;

    // Reassignments, one at a time, by the admin's device (device 1).
    progress(&format!(
        "{} reassignments between the sales teams…",
        moves.len()
    ));
    let reassigner = Author::new("root", "bench-admin-device");
    let mut moved: Vec<Moved> = Vec::new();
    let mut move_acks = Vec::new();
    for (k, &i) in moves.iter().enumerate() {
        let (to, new_owner) = if k % 2 == 0 {
            (team_b, &rep_b)
        } else {
            (team_a, &rep_a)
        };
        let t = &mut tracked[i];
        let from = t.team;
        let change = reassign(t, &reassigner, new_owner.id, to)?;
        let heads = t.doc.get_heads();
        clients[1].push(vec![change])?;
        let a = clients[1].next_ack(Duration::from_secs(30)).await?;
        move_acks.push(a.acked.saturating_duration_since(a.sent));
        let seq = a.seqs.iter().copied().max().unwrap_or(0);
        moved.push((
            seq,
            a.sent,
            *t.id.as_uuid().as_bytes(),
            from,
            to,
            new_owner.id,
            heads,
        ));
        let affected: Vec<&Client> = receivers(&clients, &holders, 1, |p| {
            p.sees(Kind::Account, from) || p.sees(Kind::Account, to)
        });
        wait_applied(&affected, seq, Duration::from_secs(30)).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    recording.store(false, Ordering::Relaxed);

    let mut ends: Vec<ClientEnd> = Vec::with_capacity(clients.len());
    for client in clients {
        ends.push(client.finish().await);
    }
    let client_errors = ends
        .iter()
        .enumerate()
        .filter_map(|(i, e)| e.error.as_ref().map(|e| format!("device {i}: {e}")))
        .filter(|e| !e.ends_with("the relay closed the connection"))
        .collect();

    // Propagation figures: the pairs that should have arrived, and anything else.
    let mut all = Vec::new();
    let mut slowest: HashMap<u64, Duration> = HashMap::new();
    let mut per_push: HashMap<u64, usize> = HashMap::new();
    let (mut missing, mut leaked) = (0, 0);
    for (d, end) in ends.iter().enumerate().skip(1) {
        let got: HashMap<u64, Instant> = end.received.iter().copied().collect();
        for (seq, (t0, kind, team)) in &sent {
            let should = holders[d].sees(*kind, *team);
            match (should, got.get(seq)) {
                (true, Some(at)) => {
                    let dt = at.saturating_duration_since(*t0);
                    all.push(dt);
                    let s = slowest.entry(*seq).or_default();
                    *s = (*s).max(dt);
                    *per_push.entry(*seq).or_default() += 1;
                }
                (true, None) => missing += 1,
                (false, Some(_)) => leaked += 1,
                (false, None) => {}
            }
        }
    }
    let propagation = Propagation {
        devices: holders.len(),
        roles,
        pushes: plan.pushes,
        receivers_median: median(per_push.values().map(|n| *n as f64)),
        receivers: Latency::of(&all),
        slowest_receiver: Latency::of(&slowest.into_values().collect::<Vec<_>>()),
        push_to_ack: Latency::of(&acks),
        missing,
        leaked,
        relay_cpu_s: propagation_cpu,
    };

    // Reassignment figures.
    let mut r = Reassignments {
        count: moved.len(),
        push_to_ack: Latency::of(&move_acks),
        ..Reassignments::default()
    };
    let (mut owner_grants, mut team_grants, mut purges) = (Vec::new(), Vec::new(), Vec::new());
    for (d, end) in ends.iter().enumerate() {
        let person = &holders[d];
        for (_, t0, doc, from, to, new_owner, heads) in &moved {
            let was = person.sees(Kind::Account, *from);
            let now = person.sees(Kind::Account, *to);
            let grant = end.granted.iter().find(|(_, g)| g.doc_id == *doc);
            let purge = end.purged.iter().find(|(_, p)| p == doc);
            match (was, now) {
                (false, true) => match grant {
                    Some((at, state)) => {
                        let dt = at.saturating_duration_since(*t0);
                        team_grants.push(dt);
                        if person.id == *new_owner {
                            owner_grants.push(dt);
                        }
                        if !whole(state, heads) {
                            r.incomplete_grants += 1;
                        }
                    }
                    None => r.missing_grants += 1,
                },
                (true, false) => match purge {
                    Some((at, _)) => purges.push(at.saturating_duration_since(*t0)),
                    None => r.missing_purges += 1,
                },
                _ => {
                    r.unexpected += usize::from(grant.is_some()) + usize::from(purge.is_some());
                }
            }
        }
    }
    r.grant_new_owner = Latency::of(&owner_grants);
    r.grant_new_team = Latency::of(&team_grants);
    r.purge_old_team = Latency::of(&purges);

    Ok(SizeResult {
        target_records: n,
        accounts,
        documents,
        log_rows,
        users: people.len(),
        teams: team_sizes,
        seed_s,
        source_push,
        rep,
        rep_name: rep_a.name.clone(),
        small_accounts,
        small_admin,
        admin_bound,
        admin_unbound,
        all_seeing_filtered,
        all_seeing_except,
        reconnects,
        filter: filter_costs,
        log_reads,
        propagation,
        reassignments: r,
        client_errors,
    })
}

/// A fresh replica of `user` at `path`, synced once: the session, the documents it holds
/// afterwards, the replica and its directory.
async fn fresh_sync(
    path: PathBuf,
    user: &str,
    token: String,
    proxy: &Proxy,
    relay: &RelayProcess,
) -> Result<(Session, usize, Store, PathBuf)> {
    let device = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("fresh")
        .to_string();
    let mut store = Store::init(&path, user, &device)?;
    store.set_relay(&RelayLink {
        url: proxy.url(),
        token,
    })?;
    let s = session(&mut store, proxy, relay).await?;
    anyhow::ensure!(
        !store.read_indexes_suspended()?,
        "the fresh device's read indexes were not built again after its full sync"
    );
    let docs = store.all_heads()?.len();
    Ok((s, docs, store, path))
}

/// One fresh sync of a variant; the replica is deleted after.
async fn one_run(
    into: &mut FreshSyncs,
    path: PathBuf,
    user: &str,
    token: String,
    proxy: &Proxy,
    relay: &RelayProcess,
) -> Result<()> {
    let (s, docs, store, path) = fresh_sync(path, user, token, proxy, relay).await?;
    into.documents = docs;
    into.runs.push(s);
    drop(store);
    std::fs::remove_dir_all(path)?;
    Ok(())
}

/// The accounts and opportunities of the sales teams, rebuilt from the admin replica's
/// change log (as a relay's snapshot would hold them).
fn tracked_records(source: &Store, sales_teams: &[RecordId]) -> Result<Vec<Tracked>> {
    let mut by_doc: HashMap<RecordId, Vec<Vec<u8>>> = HashMap::new();
    let mut after = 0;
    loop {
        let page = source.changes_after(after, 10_000)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for logged in page {
            by_doc
                .entry(logged.change.doc_id)
                .or_default()
                .push(logged.change.bytes);
        }
    }
    let mut out = Vec::new();
    let mut ids: Vec<RecordId> = by_doc.keys().copied().collect();
    ids.sort();
    for id in ids {
        let kind = source.kind_of(id)?;
        if !matches!(kind, Kind::Account | Kind::Opportunity) {
            continue;
        }
        let changes = by_doc[&id]
            .iter()
            .map(|b| Change::try_from(b.as_slice()))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("a change of {id}"))?;
        let mut doc = Automerge::new();
        doc.apply_changes(changes)?;
        let record = crm_model::doc::read(&doc, None)?;
        let team = match record.fields.get("teams") {
            Some(FieldValue::Set(s)) => s
                .iter()
                .filter_map(|t| t.parse::<RecordId>().ok())
                .find(|t| sales_teams.contains(t)),
            _ => None,
        };
        let owned = matches!(record.fields.get("owner"), Some(FieldValue::Ref(_)));
        if let (Some(team), true) = (team, owned) {
            out.push(Tracked {
                id,
                kind,
                team,
                doc: doc.with_actor(ActorId::random()),
            });
        }
    }
    Ok(out)
}

/// The scope of a tracked record as its envelope carries it.
fn scope_of(doc: &Automerge) -> Result<Scope> {
    let record = crm_model::doc::read(doc, None)?;
    let id = |f: &str| match record.fields.get(f) {
        Some(FieldValue::Ref(r)) => Some(*r.as_uuid().as_bytes()),
        _ => None,
    };
    let teams = match record.fields.get("teams") {
        Some(FieldValue::Set(s)) => s
            .iter()
            .filter_map(|t| t.parse::<RecordId>().ok())
            .map(|t| *t.as_uuid().as_bytes())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Scope {
        owner: id("owner"),
        assignee: id("assignee"),
        teams,
    })
}

fn envelope(t: &Tracked, bytes: Vec<u8>) -> Result<Envelope> {
    Ok(Envelope {
        doc_id: *t.id.as_uuid().as_bytes(),
        kind: t.kind.as_str().to_string(),
        scope: scope_of(&t.doc)?,
        bytes,
    })
}

/// A one-tag edit of a tracked record by `author`, as a replica would make it.
fn tag_edit(t: &mut Tracked, author: &Author, tag: &str) -> Result<Envelope> {
    let mut e = Edit::new(t.kind);
    e.tag(tag)?;
    let stamp = Stamp {
        author,
        now: chrono::Utc::now(),
    };
    if crm_model::doc::apply_edit(&mut t.doc, &e, stamp)?.is_none() {
        bail!("a tag edit changed nothing");
    }
    let change = t.doc.get_last_local_change().context("the edit's change")?;
    let bytes = change.raw_bytes().to_vec();
    envelope(t, bytes)
}

/// Gives a tracked record to `owner` of `team` (owner and teams), as an admin's edit.
fn reassign(t: &mut Tracked, author: &Author, owner: RecordId, team: RecordId) -> Result<Envelope> {
    let mut e = Edit::new(t.kind);
    e.set("owner", &owner.to_string())?;
    e.set("teams", &team.to_string())?;
    let stamp = Stamp {
        author,
        now: chrono::Utc::now(),
    };
    if crm_model::doc::apply_edit(&mut t.doc, &e, stamp)?.is_none() {
        bail!("a reassignment changed nothing");
    }
    t.team = team;
    let change = t.doc.get_last_local_change().context("the edit's change")?;
    let bytes = change.raw_bytes().to_vec();
    envelope(t, bytes)
}

/// Whether a granted document, loaded as a device loads it, has exactly `heads`.
fn whole(state: &crm_sync::DocState, heads: &[ChangeHash]) -> bool {
    let mut doc = if state.snapshot.is_empty() {
        Automerge::new()
    } else {
        match Automerge::load(&state.snapshot) {
            Ok(d) => d,
            Err(_) => return false,
        }
    };
    let changes: Result<Vec<Change>, _> = state
        .changes
        .iter()
        .map(|b| Change::try_from(b.as_slice()))
        .collect();
    let Ok(changes) = changes else { return false };
    if doc.apply_changes(changes).is_err() {
        return false;
    }
    let mut got = doc.get_heads();
    let mut want = heads.to_vec();
    got.sort();
    want.sort();
    got == want
}

/// The clients whose user satisfies `sees`, the pushing device left out.
fn receivers<'a>(
    clients: &'a [Client],
    holders: &[Person],
    pusher: usize,
    sees: impl Fn(&Person) -> bool,
) -> Vec<&'a Client> {
    clients
        .iter()
        .zip(holders)
        .enumerate()
        .filter(|(i, (_, p))| *i != pusher && sees(p))
        .map(|(_, (c, _))| c)
        .collect()
}

/// Waits until these clients have applied the log up to `seq`, at most `wait`; returns how
/// many had not (their samples then count as missing).
async fn wait_applied(clients: &[&Client], seq: u64, wait: Duration) -> usize {
    let deadline = Instant::now() + wait;
    loop {
        let behind = clients
            .iter()
            .filter(|c| c.applied.load(Ordering::Relaxed) < seq)
            .count();
        if behind == 0 || Instant::now() > deadline {
            return behind;
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

/// `filter` of every read of the whole log, for a user of each role and for whoever sees
/// everything (`None`: the admins' path), timed in this process.
fn filter_costs(
    admin: &Relay,
    ws: WorkspaceId,
    people: &[Person],
    rep: &Person,
) -> Result<Vec<FilterCost>> {
    let mut reads: Vec<RawRead> = Vec::new();
    let mut after = 0;
    loop {
        let raw = admin.read_raw(ws, after, READ_ROWS)?;
        if raw.rows.is_empty() {
            break;
        }
        after = raw.through;
        reads.push(raw);
    }
    let rows: usize = reads.iter().map(|r| r.rows.len()).sum();
    let state = admin.access_state(ws)?;
    let mut viewers: Vec<(String, Option<crm_model::Viewer>)> =
        vec![("admin (unfiltered path)".into(), None)];
    let mut pick = |label: &str, p: Option<&Person>| {
        if let Some(p) = p
            && let Some(v) = state.viewer(p.id)
        {
            viewers.push((format!("{label} ({})", p.name), Some(v)));
        }
    };
    pick("sales rep", Some(rep));
    pick(
        "sales manager",
        people.iter().find(|p| p.role == Role::SalesManager),
    );
    pick(
        "support agent",
        people.iter().find(|p| p.role == Role::SupportAgent),
    );
    let mut out = Vec::new();
    for (label, viewer) in viewers {
        let (mut sent, mut needs_store) = (0, 0);
        let mut times = Vec::new();
        for run in 0..FILTER_RUNS {
            let start = Instant::now();
            for raw in &reads {
                match filter(raw, viewer.as_ref()) {
                    Filtered::Read(read) => {
                        if run == 0 {
                            for frame in &read.frames {
                                if let ReadFrame::Changes { entries, .. } = frame {
                                    sent += entries.len();
                                }
                            }
                        }
                        std::hint::black_box(read);
                    }
                    Filtered::NeedsStore => {
                        if run == 0 {
                            needs_store += 1;
                        }
                    }
                }
            }
            times.push(start.elapsed().as_secs_f64());
        }
        out.push(FilterCost {
            viewer: label,
            rows,
            sent,
            needs_store,
            ns_per_row: median(times.into_iter()) * 1e9 / rows.max(1) as f64,
        });
    }
    Ok(out)
}

/// One lightweight device reads the whole log from position 0 up to `head`: the relay
/// process's CPU seconds and the wall time.
async fn whole_log_read(
    relay: &RelayProcess,
    workspace: &str,
    token: &str,
    head: u64,
) -> Result<(f64, f64)> {
    let (synced_tx, _synced_rx) = mpsc::unbounded_channel();
    let shared = live::Shared {
        recording: Arc::new(AtomicBool::new(false)),
        synced: synced_tx,
    };
    let cpu = relay.cpu_s();
    let start = Instant::now();
    let client = Client::connect(0, &relay.url(), workspace, token, None, true, shared).await?;
    let behind = wait_applied(&[&client], head, Duration::from_secs(120)).await;
    let wall = start.elapsed().as_secs_f64();
    let cpu = relay.cpu_s() - cpu;
    let end = client.finish().await;
    if behind > 0 {
        bail!(
            "a device reading the whole log did not reach position {head} in 120 s ({:?})",
            end.error
        );
    }
    Ok((cpu, wall))
}

pub(crate) fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Messages and payload bytes of a session, both ways.
pub(crate) fn messages(c: &Counts) -> (u64, u64) {
    (
        c.up.messages + c.down.messages,
        c.up.message_bytes + c.down.message_bytes,
    )
}
