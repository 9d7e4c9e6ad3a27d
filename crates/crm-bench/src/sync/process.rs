//! The relay as a separate OS process (the `crm-relay` binary), so its memory and CPU time
//! are its own and can be read from `/proc/PID`.

use std::io::{BufRead as _, BufReader, Read as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use crm_relay::Relay;
use crm_relay::store::Database;

use super::REPLICA_USER;
use super::live::{Identity, LiveDevice};
use super::roles::{self, Organisation, Roles};
use crate::mem::Rss;

/// Linux's `USER_HZ`: the unit of `utime` and `stime` in `/proc/PID/stat`. It is 100 on every
/// mainstream Linux build (reading `sysconf` would need `unsafe`, which the workspace forbids).
const CLOCK_TICKS_PER_S: f64 = 100.0;

/// The workspace and device tokens made for one run.
pub(crate) struct Setup {
    pub(crate) workspace: String,
    /// The source replica's token, then the fresh device's: devices bound to no user.
    pub(crate) replica_tokens: Vec<String>,
    /// The live devices of the admins' run: bound to no user.
    pub(crate) unbound: Vec<LiveDevice>,
    /// With `--roles mixed`, the users of mixed roles and one live device each.
    pub(crate) organisation: Option<Organisation>,
}

/// Creates the relay's store (in `data`, or in the PostgreSQL database at `postgres`) with
/// one workspace, two devices for the replicas and `live` for the live measurements, bound
/// to no user, through the same `Relay` calls as `crm-relay workspace create` and `crm-relay
/// device add`; with `Roles::Mixed` also an organisation of `live` users of mixed roles with
/// a device each (`crm-relay team|user|device add`).
pub(crate) fn setup(
    data: &Path,
    postgres: Option<&str>,
    live: usize,
    roles: Roles,
) -> Result<Setup> {
    let database = match postgres {
        Some(url) => Database::Postgres(url.to_string()),
        None => Database::Sqlite(data.to_path_buf()),
    };
    let store = Relay::new(
        database
            .open(true)
            .with_context(|| format!("creating a relay store in {database}"))?,
    );
    let workspace = store.create_workspace("bench")?;
    // The replicas' changes name their store's user, so their devices carry that name.
    let mut replica_tokens = Vec::with_capacity(2);
    for _ in 0..2 {
        let added = store.add_unbound_device(workspace.id, REPLICA_USER)?;
        replica_tokens.push(added.token.expose().to_string());
    }
    let mut unbound = Vec::with_capacity(live);
    for i in 0..live {
        let name = format!("user{}", 2 + i);
        let added = store.add_unbound_device(workspace.id, &name)?;
        unbound.push(LiveDevice {
            token: added.token.expose().to_string(),
            identity: Identity::unbound(&name),
        });
    }
    let organisation = match roles {
        Roles::Admin => None,
        Roles::Mixed => Some(roles::organise(&store, workspace.id, live)?),
    };
    Ok(Setup {
        workspace: workspace.id.to_string(),
        replica_tokens,
        unbound,
        organisation,
    })
}

pub(crate) struct RelayProcess {
    child: Child,
    pub(crate) addr: SocketAddr,
    log: PathBuf,
}

impl RelayProcess {
    /// Runs `bin --data DATA serve --listen 127.0.0.1:0 EXTRA…` (or `--database URL` for a
    /// PostgreSQL database) and waits for its address. Its log (warnings only) goes to
    /// LOGS/relay.log.
    pub(crate) fn start(
        bin: &Path,
        data: &Path,
        logs: &Path,
        postgres: Option<&str>,
        extra: &[String],
    ) -> Result<RelayProcess> {
        let log = logs.join("relay.log");
        let log_file = std::fs::File::create(&log)?;
        let mut command = Command::new(bin);
        match postgres {
            Some(url) => command.args(["--database", url]),
            None => command.arg("--data").arg(data),
        };
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env("CRM_RELAY_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stdout = child.stdout.take().context("the relay's stdout")?;
        let mut line = String::new();
        let mut reader = BufReader::new(stdout);
        reader.read_line(&mut line)?;
        let Some(addr) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            bail!("the relay did not start (printed {line:?}); its log:\n{tail}");
        };
        let addr: SocketAddr = addr.parse().context("the relay's address")?;
        // Nothing more is printed on stdout; drain it anyway so the relay never blocks on it.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });
        Ok(RelayProcess { child, addr, log })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self) -> String {
        format!("ws://{}/v1/sync", self.addr)
    }

    pub(crate) fn rss(&self) -> Rss {
        Rss::of_pid(self.pid())
    }

    /// User + system CPU seconds the relay has used so far, all threads.
    pub(crate) fn cpu_s(&self) -> f64 {
        cpu_s(&format!("/proc/{}/stat", self.pid()))
    }

    /// SIGTERM (graceful shutdown), then SIGKILL after 15 s.
    pub(crate) fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("warning: the relay did not stop within 15 s of SIGTERM; killing it");
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// The end of the relay's log, for error messages.
    pub(crate) fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// CPU seconds of this process so far (the device side of the benchmark: sync driver, store,
/// proxy and the lightweight clients).
pub(crate) fn own_cpu_s() -> f64 {
    cpu_s("/proc/self/stat")
}

fn cpu_s(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces): state is field 3, utime 14,
    // stime 15.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / CLOCK_TICKS_PER_S
}

/// Samples a process's `VmRSS` in the background and keeps the largest value seen.
pub(crate) struct RssSampler {
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssSampler {
    pub(crate) fn start(pid: u32, every: Duration) -> RssSampler {
        let max_kib = Arc::new(AtomicU64::new(0));
        let max = max_kib.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Some(kib) = Rss::of_pid(pid).current_kib {
                    max.fetch_max(kib, Ordering::Relaxed);
                }
            }
        });
        RssSampler { max_kib, task }
    }

    /// The largest `VmRSS` since the last call, then starts over.
    pub(crate) fn take_max(&self) -> Option<u64> {
        match self.max_kib.swap(0, Ordering::Relaxed) {
            0 => None,
            kib => Some(kib),
        }
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The relay's `/metrics`, as name → value (labelled series are left out).
pub(crate) async fn scrape(addr: SocketAddr) -> Result<std::collections::BTreeMap<String, f64>> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")
        .await?;
    let mut text = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut text))
        .await
        .context("the relay's /metrics did not answer")??;
    Ok(text
        .lines()
        .filter(|l| l.starts_with("crm_relay_") && !l.contains('{'))
        .filter_map(|l| {
            let (name, value) = l.split_once(' ')?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect())
}

/// A PostgreSQL database made for one size of the benchmark, dropped at the end.
pub(crate) struct PostgresDatabase {
    pub(crate) url: String,
    name: String,
    server: String,
}

impl PostgresDatabase {
    /// Creates `crm_bench_N_PID` on the server whose maintenance database is `server`.
    pub(crate) fn create(server: &str, n: usize) -> Result<PostgresDatabase> {
        let mut client = postgres::Client::connect(server, postgres::NoTls)
            .with_context(|| format!("connecting to PostgreSQL at {server}"))?;
        let name = format!("crm_bench_{n}_{}", std::process::id());
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))?;
        client.batch_execute(&format!("CREATE DATABASE {name}"))?;
        let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
        Ok(PostgresDatabase {
            url: format!("{base}/{name}"),
            name,
            server: server.to_string(),
        })
    }

    /// `pg_database_size` of it; the database is dropped after.
    pub(crate) fn size(self) -> Result<u64> {
        let mut client = postgres::Client::connect(&self.url, postgres::NoTls)?;
        let bytes: i64 = client
            .query_one("SELECT pg_database_size(current_database())", &[])?
            .get(0);
        Ok(u64::try_from(bytes).unwrap_or(0))
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.server, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
