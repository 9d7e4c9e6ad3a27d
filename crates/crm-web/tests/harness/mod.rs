//! The harness of the browser tests: a real chromedriver driving a real headless Debian
//! chromium, against real `crm serve` processes (and a real `crm-relay` where devices sync).
//!
//! - [`browser_test`] runs one test: it starts chromedriver on a free port, opens the
//!   browser sessions the test asks for, runs the test body, and when the body fails (an
//!   error or a panic) saves a screenshot and the page's HTML of every session into
//!   `target/browser-screenshots/` before failing the test. Browser tests run one at a time
//!   (the machine may have two cores).
//! - [`Page`] wraps one browser session with explicit waits: every lookup polls until the
//!   element (or the condition) is there, up to [`TIMEOUT`], and fails with what it saw last.
//!   Elements are found by their `data-testid` and looked up again on every poll, so live
//!   updates that replace parts of the page cannot leave a test holding a stale element.
//! - [`Node`] is a `crm serve` process on its own replica directory, whose URL is read from
//!   the `serving http://ADDR/` line it prints.
//!
//! `crm` and `crm-relay` are the workspace's binaries in `target/<profile>/`, found like the
//! cross-process tests in `tests/` find them (`crm_tests::crm_bin`). `cargo test --workspace`
//! builds them; for `cargo test -p crm-web` build them first (`cargo build -p crm-cli -p
//! crm-relay`). `CHROMEDRIVER` and `CHROMIUM` override the paths of the driver and browser.

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use crm_tests::Replica;
use fantoccini::elements::Element;
use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt as _;
use serde_json::{Value, json};

/// How long an explicit wait polls before it fails. Generous: the machine is slow and shared.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(30);

/// How long to wait for something that needs the relay: reconnects back off for seconds.
pub(crate) const SYNC_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a wait looks again.
const POLL: Duration = Duration::from_millis(100);

/// The flags of the issue, plus a fixed window size and no throttling of timers.
const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-dev-shm-usage",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--window-size=1366,1000",
];

/// Browser tests take turns: two chromium instances per test are enough for two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// `target/` of this build: the test executable is `target/<profile>/deps/NAME-HASH`.
pub(crate) fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the path of the running test executable");
    exe.ancestors()
        .nth(3)
        .map_or_else(|| PathBuf::from("target"), Path::to_path_buf)
}

/// Where failing tests leave their screenshots and page sources.
pub(crate) fn screenshot_dir() -> PathBuf {
    target_dir().join("browser-screenshots")
}

fn program(env: &str, default: &str) -> PathBuf {
    std::env::var_os(env)
        .filter(|p| !p.is_empty())
        .map_or_else(|| PathBuf::from(default), PathBuf::from)
}

/// A chromedriver process on a free loopback port; killed when dropped.
pub(crate) struct Chromedriver {
    child: Child,
    pub(crate) url: String,
}

impl Chromedriver {
    pub(crate) fn start() -> Result<Self> {
        let bin = program("CHROMEDRIVER", "/usr/bin/chromedriver");
        let mut child = Command::new(&bin)
            .args(["--port=0", "--log-level=SEVERE"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {} (install Debian's chromium and chromium-driver: \
                     apt-get install -y chromium chromium-driver; .ci/run does)",
                    bin.display()
                )
            })?;
        let stdout = child.stdout.take().context("chromedriver's stdout")?;
        let lines = drain_lines(stdout);
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match lines.recv_timeout(left) {
                Ok(line) => {
                    // "ChromeDriver was started successfully on port 36709."
                    if let Some(port) = line
                        .split_once("started successfully on port ")
                        .map(|(_, p)| p.trim().trim_end_matches('.'))
                    {
                        let port: u16 = port.parse().with_context(|| format!("{line:?}"))?;
                        return Ok(Self {
                            child,
                            url: format!("http://127.0.0.1:{port}"),
                        });
                    }
                    seen.push(line);
                }
                Err(_) => break,
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        bail!("chromedriver did not say it was listening; it printed {seen:?}")
    }

    /// A new browser session: its own headless chromium with a fresh profile.
    pub(crate) async fn session(&self) -> Result<Client> {
        let mut options = json!({ "args": CHROMIUM_FLAGS });
        let chromium = program("CHROMIUM", "/usr/bin/chromium");
        if chromium.is_file() {
            options["binary"] = json!(chromium);
        }
        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert("goog:chromeOptions".into(), options);
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&self.url)
            .await
            .context("opening a chromium session through chromedriver")
    }
}

impl Drop for Chromedriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads `source` line by line on a thread until it closes, so the writer never blocks on
/// a full pipe; the lines arrive on the returned channel.
fn drain_lines(source: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(source).lines() {
            let Ok(line) = line else { break };
            // Nobody listening any more is fine: keep draining.
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits for the other browser tests of this process to finish; the turn lasts as long as
/// the guard.
pub(crate) fn take_turn() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A runtime for one test.
pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// Runs one browser test with `sessions` browser sessions (each its own chromium). A failure
/// — an error returned or a panic — saves `NAME-I.png` and `NAME-I.html` for every session
/// into [`screenshot_dir`], then fails the test with the error and where the files are.
pub(crate) fn browser_test<F, Fut>(name: &str, sessions: usize, body: F)
where
    F: FnOnce(Vec<Page>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let _turn = take_turn();
    let outcome = runtime().block_on(run(name, sessions, body));
    match outcome {
        Outcome::Passed => {}
        Outcome::Failed { error, saved } => {
            panic!(
                "browser test {name} failed: {error}\nscreenshots and page sources: {}",
                if saved.is_empty() {
                    "none could be saved".to_string()
                } else {
                    saved
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )
        }
    }
}

/// How a browser test ended.
pub(crate) enum Outcome {
    Passed,
    /// The error (or panic message), and the files saved for it.
    Failed {
        error: String,
        saved: Vec<PathBuf>,
    },
}

/// [`browser_test`] without the turn-taking and the final panic: what it does inside.
pub(crate) async fn run<F, Fut>(name: &str, sessions: usize, body: F) -> Outcome
where
    F: FnOnce(Vec<Page>) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    let driver = match Chromedriver::start() {
        Ok(driver) => driver,
        Err(e) => {
            return Outcome::Failed {
                error: format!("{e:#}"),
                saved: Vec::new(),
            };
        }
    };
    let mut clients = Vec::new();
    for _ in 0..sessions {
        match driver.session().await {
            Ok(client) => clients.push(client),
            Err(e) => {
                close_all(clients).await;
                return Outcome::Failed {
                    error: format!("{e:#}"),
                    saved: Vec::new(),
                };
            }
        }
    }
    let pages = clients.iter().cloned().map(Page::new).collect();
    let result = AssertUnwindSafe(body(pages)).catch_unwind().await;
    let error = match result {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{e:#}")),
        Err(panic) => Some(panic_message(panic.as_ref())),
    };
    let outcome = match error {
        None => {
            settle_node_logs(name, false);
            Outcome::Passed
        }
        Some(error) => {
            let mut saved = save_failure(name, &clients).await;
            saved.extend(settle_node_logs(name, true));
            Outcome::Failed { saved, error }
        }
    };
    close_all(clients).await;
    drop(driver);
    outcome
}

async fn close_all(clients: Vec<Client>) {
    for client in clients {
        let _ = tokio::time::timeout(TIMEOUT, client.close()).await;
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = panic.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

/// Saves a screenshot and the HTML of every session; returns the files written.
pub(crate) async fn save_failure(name: &str, clients: &[Client]) -> Vec<PathBuf> {
    let dir = screenshot_dir();
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("cannot create {}: {e}", dir.display());
        return Vec::new();
    }
    let mut saved = Vec::new();
    for (i, client) in clients.iter().enumerate() {
        let base = dir.join(format!("{name}-{i}"));
        match tokio::time::timeout(TIMEOUT, client.screenshot()).await {
            Ok(Ok(png)) => {
                let path = base.with_extension("png");
                match std::fs::write(&path, png) {
                    Ok(()) => saved.push(path),
                    Err(e) => eprintln!("cannot write {}: {e}", path.display()),
                }
            }
            Ok(Err(e)) => eprintln!("no screenshot of session {i}: {e}"),
            Err(_) => eprintln!("no screenshot of session {i}: timed out"),
        }
        if let Ok(Ok(html)) = tokio::time::timeout(TIMEOUT, client.source()).await {
            let path = base.with_extension("html");
            if std::fs::write(&path, html).is_ok() {
                saved.push(path);
            }
        }
    }
    saved
}

/// The CSS selector of a `data-testid`.
pub(crate) fn testid(id: &str) -> String {
    format!("[data-testid=\"{id}\"]")
}

/// One browser session, with explicit waits. Every method that looks for an element polls
/// until it is there (looking it up again each time) for at most [`TIMEOUT`].
#[derive(Clone)]
pub(crate) struct Page {
    pub(crate) client: Client,
}

impl Page {
    fn new(client: Client) -> Self {
        Self { client }
    }

    pub(crate) async fn goto(&self, url: &str) -> Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    pub(crate) async fn path(&self) -> Result<String> {
        Ok(self.client.current_url().await?.path().to_string())
    }

    /// Polls `probe` until it yields `Some`, for at most `timeout`; the error names `what`
    /// and the last thing `probe` reported.
    pub(crate) async fn eventually<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut probe: impl AsyncFnMut(&Page) -> std::result::Result<Option<T>, String>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("nothing yet");
        loop {
            match probe(self).await {
                Ok(Some(value)) => return Ok(value),
                Ok(None) => {}
                Err(seen) => last = seen,
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what}; last seen: {last}");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The element with this `data-testid`, now, if there is exactly one or more (the first).
    pub(crate) async fn find_now(&self, id: &str) -> std::result::Result<Element, String> {
        self.client
            .find(Locator::Css(&testid(id)))
            .await
            .map_err(|e| format!("no [data-testid={id}] ({e})"))
    }

    /// Waits for the element with this `data-testid` to be on the page and displayed.
    pub(crate) async fn wait(&self, id: &str) -> Result<Element> {
        self.eventually(&format!("[data-testid={id}]"), TIMEOUT, async |page| {
            let el = page.find_now(id).await?;
            match el.is_displayed().await {
                Ok(true) => Ok(Some(el)),
                Ok(false) => Err(format!("[data-testid={id}] is hidden")),
                Err(e) => Err(e.to_string()),
            }
        })
        .await
    }

    /// Waits until no element has this `data-testid`.
    pub(crate) async fn wait_gone(&self, id: &str, timeout: Duration) -> Result<()> {
        self.eventually(
            &format!("[data-testid={id}] to go away"),
            timeout,
            async |page| match page
                .client
                .find_all(Locator::Css(&testid(id)))
                .await
                .map_err(|e| e.to_string())?
                .len()
            {
                0 => Ok(Some(())),
                n => Err(format!("{n} still there")),
            },
        )
        .await
    }

    /// The trimmed text of the element with this `data-testid`, once it is there.
    pub(crate) async fn text(&self, id: &str) -> Result<String> {
        self.eventually(
            &format!("the text of [data-testid={id}]"),
            TIMEOUT,
            async |page| {
                let el = page.find_now(id).await?;
                el.text()
                    .await
                    .map(|t| Some(t.trim().to_string()))
                    .map_err(|e| e.to_string())
            },
        )
        .await
    }

    /// Waits until the trimmed text of the element with this `data-testid` satisfies `ok`;
    /// returns the text.
    pub(crate) async fn wait_text(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        ok: impl Fn(&str) -> bool,
    ) -> Result<String> {
        self.eventually(
            &format!("[data-testid={id}] to show {what}"),
            timeout,
            async |page| {
                let el = page.find_now(id).await?;
                let text = el.text().await.map_err(|e| e.to_string())?;
                let text = text.trim();
                if ok(text) {
                    Ok(Some(text.to_string()))
                } else {
                    Err(format!("{text:?}"))
                }
            },
        )
        .await
    }

    /// Waits until the element's attribute has this value.
    pub(crate) async fn wait_attr(
        &self,
        id: &str,
        attr: &str,
        value: &str,
        timeout: Duration,
    ) -> Result<()> {
        self.eventually(
            &format!("[data-testid={id}] {attr}={value:?}"),
            timeout,
            async |page| {
                let el = page.find_now(id).await?;
                match el.attr(attr).await.map_err(|e| e.to_string())? {
                    Some(v) if v == value => Ok(Some(())),
                    other => Err(format!("{attr}={other:?}")),
                }
            },
        )
        .await
    }

    /// Clicks the element with this `data-testid` once it is displayed; a click that hits a
    /// stale element (the page changed under it) is tried again.
    pub(crate) async fn click(&self, id: &str) -> Result<()> {
        self.eventually(
            &format!("a click on [data-testid={id}]"),
            TIMEOUT,
            async |page| {
                let el = page.find_now(id).await?;
                if !el.is_displayed().await.map_err(|e| e.to_string())? {
                    return Err(format!("[data-testid={id}] is hidden"));
                }
                el.click().await.map(Some).map_err(|e| e.to_string())
            },
        )
        .await
    }

    /// Clicks the first displayed element matching a CSS selector, like [`Page::click`].
    pub(crate) async fn click_css(&self, css: &str) -> Result<()> {
        self.eventually(&format!("a click on {css}"), TIMEOUT, async |page| {
            let el = page
                .client
                .find(Locator::Css(css))
                .await
                .map_err(|e| format!("no {css} ({e})"))?;
            if !el.is_displayed().await.map_err(|e| e.to_string())? {
                return Err(format!("{css} is hidden"));
            }
            el.click().await.map(Some).map_err(|e| e.to_string())
        })
        .await
    }

    /// Replaces the text of the input with this `data-testid`.
    pub(crate) async fn fill(&self, id: &str, text: &str) -> Result<()> {
        let el = self.wait(id).await?;
        el.clear().await.with_context(|| format!("clearing {id}"))?;
        el.send_keys(text)
            .await
            .with_context(|| format!("typing into {id}"))
    }

    /// Picks the option with this value in the select with this `data-testid`.
    pub(crate) async fn select(&self, id: &str, value: &str) -> Result<()> {
        let el = self.wait(id).await?;
        el.select_by_value(value)
            .await
            .with_context(|| format!("choosing {value:?} in {id}"))
    }

    /// Runs a script in the page; returns what it returns.
    pub(crate) async fn js(&self, script: &str) -> Result<Value> {
        self.client
            .execute(script, Vec::new())
            .await
            .with_context(|| format!("running {script:?}"))
    }

    /// Marks the current document, so [`Page::same_document`] can tell a live update from a
    /// reload (a reload or navigation makes a new `window`).
    pub(crate) async fn mark_document(&self) -> Result<()> {
        self.js("window.__crmTestMark = 'still here'; return true;")
            .await
            .map(drop)
    }

    /// Whether the document marked by [`Page::mark_document`] is still the one shown.
    pub(crate) async fn same_document(&self) -> Result<bool> {
        Ok(self
            .js("return window.__crmTestMark === 'still here';")
            .await?
            == json!(true))
    }
}

/// A `crm serve` process on one replica; stopped with SIGTERM when dropped.
pub(crate) struct Node {
    pub(crate) replica: Replica,
    child: Option<Child>,
    /// Its stderr (the log, at `RUST_LOG=info` unless started with [`Node::serve_logging`]).
    pub(crate) log: PathBuf,
    /// `http://127.0.0.1:PORT` without the final slash.
    pub(crate) base: String,
}

impl Node {
    /// Starts `crm --data-dir D serve --listen 127.0.0.1:0` and waits for its
    /// `serving http://ADDR/` line.
    pub(crate) fn serve(replica: Replica) -> Result<Self> {
        Self::serve_with(replica, &["--listen", "127.0.0.1:0"])
    }

    /// Starts `crm --data-dir D serve ARGS…` and waits for its `serving http://ADDR/` line.
    pub(crate) fn serve_with(replica: Replica, args: &[&str]) -> Result<Self> {
        Self::serve_logging(replica, args, "info")
    }

    /// [`Node::serve_with`] with the log filter `rust_log`.
    pub(crate) fn serve_logging(replica: Replica, args: &[&str], rust_log: &str) -> Result<Self> {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = std::env::temp_dir().join(format!(
            "crm-web-test-{}-{}-{n}.log",
            std::process::id(),
            replica.device,
        ));
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let mut child = replica
            .command(&all)
            .env("RUST_LOG", rust_log)
            .env("CRM_LOG", rust_log)
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("starting crm serve")?;
        let stdout = child.stdout.take().context("crm serve's stdout")?;
        let lines = drain_lines(stdout);
        let first = lines.recv_timeout(TIMEOUT);
        let url = first
            .as_deref()
            .ok()
            .and_then(|line| line.strip_prefix("serving "))
            .map(|url| url.trim().trim_end_matches('/').to_string());
        let Some(base) = url else {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = std::fs::read_to_string(&log).unwrap_or_default();
            bail!(
                "crm serve on {} did not print `serving http://ADDR/` (got {first:?}); \
                 stderr: {stderr}",
                replica.device
            );
        };
        node_logs().push((format!("{}-{n}", replica.device), log.clone()));
        Ok(Self {
            replica,
            child: Some(child),
            log,
            base,
        })
    }

    /// `IP:PORT` to connect to (loopback when the node listens on every address).
    pub(crate) fn addr(&self) -> String {
        let hostport = self.base.trim_start_matches("http://");
        match hostport.strip_prefix("0.0.0.0:") {
            Some(port) => format!("127.0.0.1:{port}"),
            None => hostport.to_string(),
        }
    }

    /// The URL of a path (`/r/ID`) on this node.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then waits for the exit (kills it after [`TIMEOUT`]); returns whether it
    /// exited by itself with code 0.
    pub(crate) fn stop(&mut self) -> Result<bool> {
        Ok(self
            .stop_within(TIMEOUT)?
            .is_some_and(|status| status.success()))
    }

    /// SIGTERM, then waits up to `bound` for the exit (kills it after that); returns its
    /// exit status if it exited by itself.
    pub(crate) fn stop_within(
        &mut self,
        bound: Duration,
    ) -> Result<Option<std::process::ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -TERM {} failed", child.id());
        }
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // The log stays until the test is over: `run` keeps it when the test failed.
        let _ = self.stop();
    }
}

/// The logs of the `crm serve` processes of the running test (tests take turns).
static NODE_LOGS: Mutex<Vec<(String, PathBuf)>> = Mutex::new(Vec::new());

fn node_logs() -> std::sync::MutexGuard<'static, Vec<(String, PathBuf)>> {
    NODE_LOGS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Moves the logs of the test's nodes next to its screenshots (when it failed) or removes
/// them; returns the files kept.
fn settle_node_logs(name: &str, keep: bool) -> Vec<PathBuf> {
    let mut kept = Vec::new();
    for (device, log) in node_logs().drain(..) {
        if keep {
            let to = screenshot_dir().join(format!("{name}-{device}.log"));
            if std::fs::copy(&log, &to).is_ok() {
                kept.push(to);
            }
        }
        let _ = std::fs::remove_file(&log);
    }
    kept
}

/// Fails with `message` unless `condition` holds; for use inside `Result` test bodies.
pub(crate) fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<()> {
    if condition {
        Ok(())
    } else {
        Err(anyhow!(message()))
    }
}

/// A plain HTTP/1.1 answer.
#[derive(Debug)]
pub(crate) struct HttpAnswer {
    pub(crate) status: u16,
    /// Header names in lower case.
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: String,
}

impl HttpAnswer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One request on a fresh connection (`Connection: close`), without a browser: for what the
/// server must refuse. `headers` are sent as given, after `Host`.
pub(crate) fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Result<HttpAnswer> {
    use std::io::Write as _;
    let mut stream =
        std::net::TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .with_context(|| format!("reading the answer to {method} {path}"))?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .with_context(|| format!("no end of headers in {raw:?}"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no status in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(HttpAnswer {
        status,
        headers,
        body: body.to_string(),
    })
}
