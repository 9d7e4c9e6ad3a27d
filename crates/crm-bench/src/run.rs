//! One benchmark size, measured in this process on a fresh replica: seed, edit, list,
//! search, disk and memory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_model::{Edit, Kind, RecordId};
use crm_seed::{SeedOptions, Write};
use crm_store::{Cmp, Filter, ListQuery, REPLICA_FILE, Store};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::mem::Rss;
use crate::stats::{Latency, time_runs};

/// crm-seed writes about this many records per account (1 account, ~2 contacts, 1
/// opportunity, ~3 activities, ½ lead, ½ ticket) plus a few dozen users, teams, products,
/// campaigns and articles.
const RECORDS_PER_ACCOUNT: usize = 8;

/// How much work each measurement does.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) edits: usize,
    pub(crate) list_runs: usize,
    pub(crate) search_runs: usize,
}

impl Plan {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                edits: 500,
                list_runs: 50,
                search_runs: 20,
            }
        } else {
            Self {
                edits: 2000,
                list_runs: 200,
                search_runs: 100,
            }
        }
    }
}

/// One timed query.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct QueryTiming {
    pub(crate) name: String,
    pub(crate) rows: usize,
    pub(crate) latency: Latency,
}

/// Bytes on disk after a full WAL checkpoint.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Disk {
    pub(crate) db_bytes: u64,
    /// The WAL before the checkpoint, as the store left it.
    pub(crate) wal_bytes_before: u64,
    /// The WAL after `PRAGMA wal_checkpoint(TRUNCATE)`.
    pub(crate) wal_bytes: u64,
    pub(crate) bytes_per_record: f64,
    /// Bytes per group of tables and their indexes (from `dbstat`), largest first.
    pub(crate) breakdown: Vec<(String, u64)>,
}

/// Everything measured at one size.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SizeResult {
    pub(crate) target_records: usize,
    pub(crate) accounts: usize,
    /// Every record in the replica: the seeded ones plus the user `Store::init` makes.
    pub(crate) records: usize,
    pub(crate) counts: BTreeMap<String, usize>,
    /// Each `Store::create` call while seeding.
    pub(crate) create: Latency,
    /// Each `Store::edit` call while seeding (stage and status moves).
    pub(crate) seed_moves: Latency,
    /// Wall time of the whole seeding, data generation included.
    pub(crate) seed_wall_s: f64,
    /// One-field edits of random existing accounts, each committed.
    pub(crate) edit: Latency,
    /// The same edits on a few recently edited accounts, whose documents the store's cache
    /// still holds.
    pub(crate) edit_cached: Latency,
    pub(crate) lists: Vec<QueryTiming>,
    pub(crate) searches: Vec<QueryTiming>,
    pub(crate) disk: Disk,
    pub(crate) rss_after_seed: Rss,
    pub(crate) rss: Rss,
}

/// Measures one size in `dir` (which must not hold a replica yet).
pub(crate) fn run(records: usize, seed: u64, plan: Plan, dir: &Path) -> Result<SizeResult> {
    let progress = |what: &str| eprintln!("[{records} records] {what}");
    let mut store = Store::init(dir, "bench", "bench")
        .with_context(|| format!("creating a replica in {}", dir.display()))?;

    let accounts = (records / RECORDS_PER_ACCOUNT).max(1);
    progress(&format!("seeding {accounts} accounts with crm-seed…"));
    let mut creates = Vec::with_capacity(records + records / 10);
    let mut moves = Vec::new();
    let start = Instant::now();
    let report = crm_seed::seed_with(
        &mut store,
        &SeedOptions { accounts, seed },
        |_, write, took| match write {
            Write::Create => creates.push(took),
            Write::Edit => moves.push(took),
        },
    )?;
    let seed_wall_s = start.elapsed().as_secs_f64();
    let rss_after_seed = Rss::now();
    let mut counts: BTreeMap<String, usize> = report
        .counts
        .iter()
        .map(|(k, n)| (k.to_string(), *n))
        .collect();
    *counts.entry(Kind::User.to_string()).or_default() += 1;
    let total = report.total() + 1;

    progress(&format!("{} one-field edits…", plan.edits));
    let edit = edits(&mut store, plan.edits, seed, None)?;
    let edit_cached = edits(&mut store, plan.edits, seed, Some(CACHED_ACCOUNTS))?;
    progress("lists…");
    let lists = lists(&store, plan.list_runs)?;
    progress("searches…");
    let searches = searches(&store, plan.search_runs)?;
    progress("disk…");
    let disk = disk(dir, total)?;
    drop(store);
    Ok(SizeResult {
        target_records: records,
        accounts,
        records: total,
        counts,
        create: Latency::of(&creates),
        seed_moves: Latency::of(&moves),
        seed_wall_s,
        edit,
        edit_cached,
        lists,
        searches,
        disk,
        rss_after_seed,
        rss: Rss::now(),
    })
}

/// Values the edits cycle through. `industry` is free text; `grade` is an enum.
const INDUSTRIES: &[&str] = &[
    "wholesale",
    "software",
    "electronics",
    "logistics",
    "healthcare",
    "manufacturing",
    "energy",
    "finance",
];

/// How many accounts the cached-edit measurement cycles through: well under the store's
/// cache of 64 documents.
const CACHED_ACCOUNTS: usize = 32;

/// Edits `n` random accounts (or, with `few`, random ones of the first `few` accounts, each
/// edited once untimed first so its document is cached), alternating `industry` and `grade`,
/// always to a value the field does not hold, so every edit writes a change and commits.
fn edits(store: &mut Store, n: usize, seed: u64, few: Option<usize>) -> Result<Latency> {
    // Page through the accounts so the benchmark itself never holds every row's JSON, which
    // would show up in the peak RSS it reports.
    let mut current: Vec<(RecordId, String, String)> = Vec::new();
    let mut q = ListQuery::new(Kind::Account);
    q.sort = Some("created_at".into());
    q.limit = 500;
    loop {
        let page = store.list(&q)?;
        let len = page.len();
        current.extend(page.into_iter().map(|row| {
            let get = |f: &str| row.json[f].as_str().unwrap_or_default().to_string();
            (row.id, get("industry"), get("grade"))
        }));
        if len < q.limit {
            break;
        }
        q.offset += len;
    }
    if let Some(few) = few {
        current.truncate(few);
    }
    if current.is_empty() {
        bail!("no accounts to edit");
    }
    let mut rng = SmallRng::seed_from_u64(seed ^ 0x5eed);
    let grades = crm_model::kinds::account::GRADES;
    let warm_up = if few.is_some() { current.len() } else { 0 };
    let mut samples = Vec::with_capacity(n);
    for i in 0..warm_up + n {
        let at = if i < warm_up {
            i
        } else {
            rng.random_range(..current.len())
        };
        let (id, industry, grade) = &mut current[at];
        let mut e = Edit::new(Kind::Account);
        if i % 2 == 0 {
            let value = loop {
                let v = INDUSTRIES[rng.random_range(..INDUSTRIES.len())];
                if v != industry {
                    break v;
                }
            };
            e.set("industry", value)?;
            *industry = value.to_string();
        } else {
            let value = loop {
                let v = grades[rng.random_range(..grades.len())];
                if v != grade {
                    break v;
                }
            };
            e.set("grade", value)?;
            *grade = value.to_string();
        }
        let start = Instant::now();
        store.edit(*id, &e)?;
        if i >= warm_up {
            samples.push(start.elapsed());
        }
    }
    Ok(Latency::of(&samples))
}

fn filter(field: &str, cmp: Cmp, value: &str) -> Filter {
    Filter {
        field: field.into(),
        cmp,
        value: value.into(),
    }
}

/// The list queries of a list page: 50 rows, filtered, most recently changed first.
fn lists(store: &Store, runs: usize) -> Result<Vec<QueryTiming>> {
    let cases: Vec<(&str, Kind, Vec<Filter>)> = vec![
        ("list account, no filter", Kind::Account, vec![]),
        (
            "list account grade=vip",
            Kind::Account,
            vec![filter("grade", Cmp::Eq, "vip")],
        ),
        (
            "list account industry=manufacturing",
            Kind::Account,
            vec![filter("industry", Cmp::Eq, "manufacturing")],
        ),
        (
            "list opportunity stage=proposal",
            Kind::Opportunity,
            vec![filter("stage", Cmp::Eq, "proposal")],
        ),
        (
            "list account industry=aerospace (no match)",
            Kind::Account,
            vec![filter("industry", Cmp::Eq, "aerospace")],
        ),
        (
            "list activity subject=… (no match)",
            Kind::Activity,
            vec![filter("subject", Cmp::Eq, "no such subject")],
        ),
        (
            "list account name~星光 (LIKE scan)",
            Kind::Account,
            vec![filter("name", Cmp::Contains, "星光")],
        ),
    ];
    let mut out = Vec::new();
    for (name, kind, filters) in cases {
        let mut q = ListQuery::new(kind);
        q.filters = filters;
        q.limit = 50;
        let (samples, rows) = time_runs(runs, || Ok(store.list(&q)?.len()))?;
        out.push(QueryTiming {
            name: name.into(),
            rows,
            latency: Latency::of(&samples),
        });
    }
    Ok(out)
}

/// Full-text searches across kinds, 50 hits at most, as the search box runs them.
fn searches(store: &Store, runs: usize) -> Result<Vec<QueryTiming>> {
    let cases = [
        ("Northwind", "English, trigram index"),
        ("example.com", "email domain, trigram"),
        ("星光", "2 Chinese chars, LIKE scan"),
        ("火星", "2 chars, no match: full LIKE scan"),
        ("星光贸易", "4 Chinese chars, trigram"),
        ("有限公司", "common 4 chars, trigram"),
    ];
    let mut out = Vec::new();
    for (text, what) in cases {
        let (samples, rows) = time_runs(runs, || Ok(store.search(text, None, false, 50)?.len()))?;
        out.push(QueryTiming {
            name: format!("search \"{text}\" ({what})"),
            rows,
            latency: Latency::of(&samples),
        });
    }
    Ok(out)
}

/// Checkpoints the WAL through a second connection and measures the files.
fn disk(dir: &Path, records: usize) -> Result<Disk> {
    let db: PathBuf = dir.join(REPLICA_FILE);
    let wal = dir.join(format!("{REPLICA_FILE}-wal"));
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal_bytes_before = size(&wal);
    let conn = rusqlite::Connection::open(&db)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let (busy, _, _): (i64, i64, i64) =
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    if busy != 0 {
        eprintln!("warning: the WAL checkpoint was blocked; sizes include the WAL");
    }
    let breakdown = breakdown(&conn).unwrap_or_default();
    drop(conn);
    let db_bytes = size(&db);
    let wal_bytes = size(&wal);
    Ok(Disk {
        db_bytes,
        wal_bytes_before,
        wal_bytes,
        bytes_per_record: (db_bytes + wal_bytes) as f64 / records.max(1) as f64,
        breakdown,
    })
}

/// Bytes per concern: documents, changes, the full-text index, the projection tables.
fn breakdown(conn: &rusqlite::Connection) -> rusqlite::Result<Vec<(String, u64)>> {
    let mut stmt = conn.prepare(
        "SELECT s.name, coalesce(m.tbl_name, s.name), sum(s.pgsize) \
         FROM dbstat s LEFT JOIN sqlite_schema m ON m.name = s.name GROUP BY s.name",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut groups: HashMap<String, u64> = HashMap::new();
    for row in rows {
        let (name, table, bytes) = row?;
        let group = if table.starts_with("search") || name.starts_with("search") {
            "full-text index (search*)".to_string()
        } else if table.starts_with("rec_") {
            if name == table {
                "projection tables (rec_*)".to_string()
            } else {
                "projection indexes (rec_*)".to_string()
            }
        } else if table == "changes" {
            if name == table {
                "changes".to_string()
            } else {
                "changes indexes".to_string()
            }
        } else if table == "documents" {
            if name == table {
                "documents".to_string()
            } else {
                "documents indexes".to_string()
            }
        } else {
            "other (refs, tags, outbox, meta, …)".to_string()
        };
        *groups.entry(group).or_default() += u64::try_from(bytes).unwrap_or(0);
    }
    let mut out: Vec<(String, u64)> = groups.into_iter().collect();
    out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    Ok(out)
}
