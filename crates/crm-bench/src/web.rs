//! `crm-bench web`: the web UI's server time and live-update latency on a seeded replica.
//!
//! 1. Seeds a replica with crm-seed (N/8 accounts, about N records), or reuses the one in
//!    `--dir` when it holds one already.
//! 2. Serves it in this process with the crm-web router on a loopback port, exactly as
//!    `crm serve` does (its own tokio runtime, its pool of replicas on blocking threads),
//!    with background sync off.
//! 3. Times HTTP requests over keep-alive connections from a hyper client: send → the whole
//!    body received. Lists of several kinds with filters, search, sorting and a deep page;
//!    record pages of random accounts (the 360° view) and opportunities, different
//!    documents on every request so the store's document cache does not flatter them; and
//!    the dashboard, board, ticket queue and reports for reference. Every response must be
//!    `200 OK`.
//! 4. Live updates: a client holds `/events` open; another `Store` on the same replica (like
//!    the CLI, or the sync driver applying a colleague's change) edits a random account at
//!    random intervals; the latency is from the edit's commit to the `change` event naming
//!    that record arriving at the client.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_model::{Edit, Kind, RecordId};
use crm_seed::SeedOptions;
use crm_store::{ListQuery, Store};
use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rand::rngs::SmallRng;
use rand::{RngExt as _, SeedableRng as _};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::Machine;
use crate::stats::Latency;

/// Targets of the web issue (§4), in milliseconds.
pub(crate) const LIST_MS: f64 = 50.0;
pub(crate) const RECORD_MS: f64 = 30.0;
pub(crate) const LIVE_MS: f64 = 100.0;

/// crm-seed writes about this many records per account.
const RECORDS_PER_ACCOUNT: usize = 8;

/// How long one live update may take before the run gives up on it.
const LIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Web UI benchmark: list and record page server time, live-update latency.
#[derive(Debug, clap::Args)]
pub(crate) struct WebArgs {
    /// Records in the replica [default: 50000; with --quick 5000].
    #[arg(long, value_name = "N")]
    records: Option<usize>,
    /// Fewer requests and updates.
    #[arg(long)]
    quick: bool,
    /// Keep the replica in DIR, and reuse it when DIR already holds one (seeding 50,000
    /// records takes about a minute).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// Requests timed per page [default: 200; with --quick 50].
    #[arg(long, value_name = "N")]
    runs: Option<usize>,
    /// Live updates timed [default: 200; with --quick 50].
    #[arg(long, value_name = "N")]
    updates: Option<usize>,
    /// The crm-seed random seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

/// What kind of page a timed URL is, for the targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum PageKind {
    List,
    Record,
    Other,
}

#[derive(Debug, Serialize)]
struct PageTiming {
    name: String,
    kind: PageKind,
    /// The URL, or its pattern for record pages.
    url: String,
    /// Median body size in bytes.
    bytes: usize,
    latency: Latency,
}

#[derive(Debug, Serialize)]
struct WebReport {
    machine: Machine,
    records: usize,
    seeded_s: Option<f64>,
    pages: Vec<PageTiming>,
    live: Latency,
    live_events: usize,
    targets: serde_json::Value,
}

pub(crate) fn main(args: WebArgs) -> Result<()> {
    let records = args
        .records
        .unwrap_or(if args.quick { 5_000 } else { 50_000 });
    if records == 0 {
        bail!("--records needs a record count above 0, like 50000");
    }
    let runs = args
        .runs
        .unwrap_or(if args.quick { 50 } else { 200 })
        .max(1);
    let updates = args
        .updates
        .unwrap_or(if args.quick { 50 } else { 200 })
        .max(1);
    let temp;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new()
                .prefix("crm-bench-web-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let (total, seeded_s) = replica(&dir, records, args.seed)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting tokio")?;
    let report = runtime.block_on(measure(&dir, total, seeded_s, runs, updates, args.seed))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", table(&report, runs, updates));
    }
    Ok(())
}

/// Opens the replica in `dir`, or makes one with about `records` records; returns its record
/// count and the seconds seeding took (None when reused).
fn replica(dir: &Path, records: usize, seed: u64) -> Result<(usize, Option<f64>)> {
    if let Ok(store) = Store::open(dir) {
        let total = count_all(&store)?;
        eprintln!("reusing the replica in {} ({total} records)", dir.display());
        return Ok((total, None));
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut store = Store::init(dir, "bench", "bench-laptop")
        .with_context(|| format!("creating a replica in {}", dir.display()))?;
    let accounts = (records / RECORDS_PER_ACCOUNT).max(1);
    eprintln!("seeding {accounts} accounts (about {records} records) with crm-seed…");
    let start = Instant::now();
    crm_seed::seed(&mut store, &SeedOptions { accounts, seed })?;
    let took = start.elapsed().as_secs_f64();
    Ok((count_all(&store)?, Some(took)))
}

fn count_all(store: &Store) -> Result<usize> {
    let mut total = 0;
    for kind in Kind::ALL {
        total += store.count(*kind, true)?;
    }
    Ok(usize::try_from(total)?)
}

/// Up to `n` ids of `kind`, most recently changed first.
fn ids(store: &Store, kind: Kind, n: usize) -> Result<Vec<RecordId>> {
    let mut q = ListQuery::new(kind);
    q.limit = n;
    Ok(store.list(&q)?.into_iter().map(|row| row.id).collect())
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// GET `url`; the whole body, which must come with `200 OK`.
async fn get(client: &HttpClient, url: &str) -> Result<Bytes> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("bad URL {url}"))?;
    let response = client
        .get(uri)
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .with_context(|| format!("reading {url}"))?
        .to_bytes();
    if status != hyper::StatusCode::OK {
        bail!(
            "GET {url}: {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    Ok(body)
}

/// Times `runs` GETs of the URLs `urls` yields (one per run), after a few untimed ones.
async fn time_page(
    client: &HttpClient,
    name: &str,
    kind: PageKind,
    pattern: &str,
    runs: usize,
    mut urls: impl FnMut(usize) -> String,
) -> Result<PageTiming> {
    for i in 0..3 {
        get(client, &urls(runs + i)).await?;
    }
    let mut samples = Vec::with_capacity(runs);
    let mut sizes = Vec::with_capacity(runs);
    for i in 0..runs {
        let url = urls(i);
        let start = Instant::now();
        let body = get(client, &url).await?;
        samples.push(start.elapsed());
        sizes.push(body.len());
    }
    sizes.sort_unstable();
    Ok(PageTiming {
        name: name.to_string(),
        kind,
        url: pattern.to_string(),
        bytes: sizes[sizes.len() / 2],
        latency: Latency::of(&samples),
    })
}

async fn measure(
    dir: &Path,
    total: usize,
    seeded_s: Option<f64>,
    runs: usize,
    updates: usize,
    seed: u64,
) -> Result<WebReport> {
    let store = Store::open(dir)?;
    let accounts = ids(&store, Kind::Account, 5_000)?;
    let deals = ids(&store, Kind::Opportunity, 5_000)?;
    drop(store);
    if accounts.is_empty() || deals.is_empty() {
        bail!("the replica has no accounts or no opportunities to show");
    }

    let state = crm_web::AppState::new(crm_web::Config {
        data_dir: dir.to_path_buf(),
        token: None,
        sync: false,
    })?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let server = tokio::spawn(crm_web::serve(listener, state.clone(), async {
        std::future::pending::<()>().await;
    }));
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    eprintln!("serving {total} records on {base}/; timing pages ({runs} requests each)…");

    let mut rng = SmallRng::seed_from_u64(seed);
    let pick = |rng: &mut SmallRng, from: &[RecordId]| from[rng.random_range(0..from.len())];
    let account_pages: Vec<RecordId> = (0..runs + 3).map(|_| pick(&mut rng, &accounts)).collect();
    let deal_pages: Vec<RecordId> = (0..runs + 3).map(|_| pick(&mut rng, &deals)).collect();

    let lists: [(&str, &str); 8] = [
        ("accounts, first page", "/k/account"),
        ("accounts grade=vip", "/k/account?f.grade=vip"),
        (
            "accounts sorted by name, page 40",
            "/k/account?sort=title&page=40",
        ),
        ("accounts search 星光", "/k/account?q=%E6%98%9F%E5%85%89"),
        ("accounts search Northwind", "/k/account?q=Northwind"),
        ("contacts, first page", "/k/contact"),
        (
            "opportunities stage=proposal",
            "/k/opportunity?f.stage=proposal",
        ),
        ("activities, first page", "/k/activity"),
    ];
    let others: [(&str, &str); 4] = [
        ("dashboard", "/"),
        ("pipeline board", "/board"),
        ("ticket queue", "/tickets"),
        ("reports", "/reports"),
    ];
    let mut pages = Vec::new();
    for (name, path) in lists {
        let url = format!("{base}{path}");
        pages.push(time_page(&client, name, PageKind::List, path, runs, |_| url.clone()).await?);
    }
    pages.push(
        time_page(
            &client,
            "account (360° view)",
            PageKind::Record,
            "/r/ACCOUNT",
            runs,
            |i| format!("{base}/r/{}", account_pages[i]),
        )
        .await?,
    );
    pages.push(
        time_page(
            &client,
            "opportunity",
            PageKind::Record,
            "/r/OPPORTUNITY",
            runs,
            |i| format!("{base}/r/{}", deal_pages[i]),
        )
        .await?,
    );
    for (name, path) in others {
        let url = format!("{base}{path}");
        let n = (runs / 4).max(10);
        pages.push(time_page(&client, name, PageKind::Other, path, n, |_| url.clone()).await?);
    }

    eprintln!("timing {updates} live updates…");
    let (live, live_events) = live_updates(&base, dir, &accounts, updates, seed).await?;
    state.shutdown();
    server.abort();
    Ok(WebReport {
        machine: Machine::this(),
        records: total,
        seeded_s,
        pages,
        live,
        live_events,
        targets: serde_json::json!({
            "list_ms": LIST_MS,
            "record_ms": RECORD_MS,
            "live_ms": LIVE_MS,
        }),
    })
}

/// One `change` event as the client received it.
struct Arrival {
    at: Instant,
    ids: HashSet<String>,
    all: bool,
}

/// Reads the SSE stream at `url`, sending every `change` event on `tx` as it arrives.
async fn listen(
    url: String,
    ready: tokio::sync::oneshot::Sender<()>,
    tx: mpsc::UnboundedSender<Arrival>,
) -> Result<()> {
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let response = client.get(url.parse()?).await.context("GET /events")?;
    if response.status() != hyper::StatusCode::OK {
        bail!("GET /events: {}", response.status());
    }
    let _ = ready.send(());
    let mut body = response.into_body();
    let mut buffer = String::new();
    let mut event = String::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading /events")?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let at = Instant::now();
        buffer.push_str(&String::from_utf8_lossy(&data));
        while let Some(end) = buffer.find('\n') {
            let line = buffer[..end].trim_end_matches('\r').to_string();
            buffer.drain(..=end);
            if let Some(name) = line.strip_prefix("event:") {
                event = name.trim().to_string();
            } else if let Some(data) = line.strip_prefix("data:") {
                if event == "change" {
                    let v: serde_json::Value = serde_json::from_str(data.trim())
                        .with_context(|| format!("a change event's data: {data}"))?;
                    let ids = v["ids"]
                        .as_array()
                        .map(|ids| {
                            ids.iter()
                                .filter_map(|id| id.as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    let all = v["all"].as_bool().unwrap_or(false);
                    if tx.send(Arrival { at, ids, all }).is_err() {
                        return Ok(());
                    }
                }
            } else if line.is_empty() {
                event.clear();
            }
        }
    }
    Ok(())
}

/// Edits random accounts through a `Store` of our own and times each commit → the event
/// naming the account arriving at an `/events` client.
async fn live_updates(
    base: &str,
    dir: &Path,
    accounts: &[RecordId],
    updates: usize,
    seed: u64,
) -> Result<(Latency, usize)> {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let listener = tokio::spawn(listen(format!("{base}/events"), ready_tx, tx));
    ready_rx.await.context("the /events stream did not open")?;
    let mut store = Store::open(dir)?;
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let mut samples = Vec::with_capacity(updates);
    let mut events = 0;
    // A value no earlier run wrote: an edit that sets what is already there is no change, and
    // a reused replica (`--dir`) still holds the last run's values.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    for i in 0..updates + 5 {
        // Random gaps, so edits land at random points of the node's polling.
        tokio::time::sleep(Duration::from_millis(rng.random_range(20..120))).await;
        while rx.try_recv().is_ok() {
            events += 1;
        }
        let id = accounts[rng.random_range(0..accounts.len())];
        let mut edit = Edit::new(Kind::Account);
        edit.set("industry", &format!("live-{run}-{i}"))?;
        // Like the CLI: another process's commit, which the node notices on its own.
        store.edit(id, &edit)?;
        let landed = Instant::now();
        let wanted = id.to_string();
        let arrived = tokio::time::timeout(LIVE_TIMEOUT, async {
            while let Some(arrival) = rx.recv().await {
                events += 1;
                if arrival.all || arrival.ids.contains(&wanted) {
                    return Some(arrival.at);
                }
            }
            None
        })
        .await;
        match arrived {
            Ok(Some(at)) if i >= 5 => samples.push(at.saturating_duration_since(landed)),
            Ok(Some(_)) => {}
            Ok(None) => bail!("the /events stream ended"),
            Err(_) => bail!("no change event for {id} within {LIVE_TIMEOUT:?}"),
        }
    }
    listener.abort();
    Ok((Latency::of(&samples), events))
}

fn verdict(value: f64, target: f64) -> &'static str {
    if value <= target { "ok" } else { "MISS" }
}

fn table(r: &WebReport, runs: usize, updates: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "== crm-bench web: {} records ({}), {} cores, {} ==",
        r.records,
        r.seeded_s.map_or_else(
            || "reused replica".to_string(),
            |s| format!("seeded in {s:.1} s")
        ),
        r.machine.cores,
        r.machine.cpu
    );
    let _ = writeln!(
        out,
        "server time = HTTP GET over loopback keep-alive, send → whole body; {runs} requests per \
         list/record page"
    );
    let _ = writeln!(
        out,
        "  {:<36} {:>9} {:>9} {:>9} {:>9}   target",
        "page", "p50", "p99", "max", "bytes"
    );
    for p in &r.pages {
        let target = match p.kind {
            PageKind::List => Some(LIST_MS),
            PageKind::Record => Some(RECORD_MS),
            PageKind::Other => None,
        };
        let verdicts = target.map_or_else(String::new, |t| {
            format!(
                "≤ {t} ms  p50 {} p99 {}",
                verdict(p.latency.p50_ms, t),
                verdict(p.latency.p99_ms, t)
            )
        });
        let _ = writeln!(
            out,
            "  {:<36} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>9}   {verdicts}",
            p.name, p.latency.p50_ms, p.latency.p99_ms, p.latency.max_ms, p.bytes
        );
    }
    let _ = writeln!(
        out,
        "live update (commit → SSE event at the client), {} updates ({updates} asked), {} events \
         seen:",
        r.live.n, r.live_events
    );
    let _ = writeln!(
        out,
        "  {:<36} {:>6.2} ms {:>6.2} ms {:>6.2} ms {:>9}   ≤ {LIVE_MS} ms  p50 {} p99 {}",
        "change landed → event received",
        r.live.p50_ms,
        r.live.p99_ms,
        r.live.max_ms,
        "",
        verdict(r.live.p50_ms, LIVE_MS),
        verdict(r.live.p99_ms, LIVE_MS)
    );
    out
}
