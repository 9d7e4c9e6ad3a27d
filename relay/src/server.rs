//! The HTTP side: [`app`] builds the router, [`serve`] runs it (and the compactor) on a
//! listener until a shutdown future resolves, then closes every session gracefully.
//!
//! - `GET /v1/sync`: WebSocket upgrade; each binary frame is one `crm_sync::Message`. One
//!   task per connection drives a `RelaySync` (see the session module).
//! - `GET /v1/bootstrap`: WebSocket upgrade; a new device's first sync from pages of
//!   compacted documents (see the bootstrap module).
//! - `GET /healthz`: `200 ok` when the store answers, `503` otherwise.
//! - `GET /metrics`: Prometheus text format.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::service::Relay;
use crate::store::RelayStore;
use crate::{bootstrap, compactor, heads, revocation, session};

/// The relay's limits and timings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Most log positions sent to a device but not yet confirmed by it.
    pub window: u64,
    /// Most entries per `Changes` frame (fewer when their bytes would not fit in a frame).
    pub read_batch: usize,
    /// Frames queued for one connection's socket before its session waits.
    pub outgoing_frames: usize,
    /// Most sessions of one workspace at a time.
    pub max_connections_per_workspace: usize,
    /// Most sessions of one device at a time (sync and bootstrap together), so one token
    /// cannot take its workspace's every connection.
    pub max_sessions_per_device: usize,
    /// Pushes a device may make per second (its sessions together), with bursts of as many.
    pub pushes_per_second: u32,
    /// How long a new connection may take to say `Hello`.
    pub hello_timeout: Duration,
    /// Most bytes of frames queued for devices and not yet taken by their sockets, over all
    /// sessions: past it, slow readers are dropped (see the outbound module).
    pub max_unsent_bytes: usize,
    /// How long one frame may take to reach a device before the session is dropped.
    pub write_timeout: Duration,
    /// How often the relay looks for devices revoked (by `crm-relay device revoke`, from
    /// another process) to close their open sessions.
    pub revocation_poll: Duration,
    /// How long shutdown waits for sessions to finish their stores and say goodbye.
    pub shutdown_grace: Duration,
    /// Most open connections (HTTP and sessions together); `serve` keeps fewer when the
    /// process's file limit is lower (see `connection_cap`).
    pub max_connections: usize,
    /// How long a connection may take to send a request's headers (and may sit idle
    /// between requests) before it is closed.
    pub header_timeout: Duration,
    /// Whether `serve` runs the compactor, which keeps every document's snapshot up to date
    /// for bootstrapping devices. Bootstraps work without it (from the log), only slower.
    pub compact: bool,
    /// Largest encoded page of documents sent to a bootstrapping device, in bytes; at most
    /// the frame limit less 64 KiB.
    pub bootstrap_page_bytes: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            window: 8192,
            read_batch: 256,
            outgoing_frames: 8,
            max_connections_per_workspace: 1000,
            // A device runs one `crm serve` or `crm sync --watch`, a bootstrap before it, and
            // now and then a `crm sync` beside them: 8 leaves room for reconnects that
            // overlap a session the relay has not noticed is gone yet.
            max_sessions_per_device: 8,
            pushes_per_second: 100,
            hello_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            max_unsent_bytes: 256 << 20,
            shutdown_grace: Duration::from_secs(10),
            revocation_poll: Duration::from_millis(250),
            max_connections: 20_000,
            header_timeout: Duration::from_secs(10),
            compact: true,
            bootstrap_page_bytes: crate::bootstrap::MAX_PAGE_BYTES,
        }
    }
}

/// Everything the handlers share. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) shared: Arc<Shared>,
}

pub(crate) struct Shared {
    pub(crate) relay: Relay,
    pub(crate) config: Config,
    pub(crate) hub: Hub,
    pub(crate) metrics: Metrics,
    /// Becomes `true` when the relay starts shutting down.
    pub(crate) shutdown: watch::Sender<bool>,
    /// Open sessions, so shutdown can wait for them (they outlive their HTTP connection).
    pub(crate) sessions: watch::Sender<usize>,
    pub(crate) next_session: AtomicU64,
}

impl AppState {
    pub fn new(store: Arc<dyn RelayStore>, config: Config) -> AppState {
        AppState {
            shared: Arc::new(Shared {
                hub: Hub::new(
                    config.max_connections_per_workspace,
                    config.max_sessions_per_device,
                    config.pushes_per_second,
                ),
                relay: Relay::new(store),
                config,
                metrics: Metrics::default(),
                shutdown: watch::channel(false).0,
                sessions: watch::channel(0).0,
                next_session: AtomicU64::new(1),
            }),
        }
    }

    pub fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// The relay's operations over its store.
    pub fn relay(&self) -> &Relay {
        &self.shared.relay
    }

    /// Tells every session to say goodbye (`GOING_AWAY`) once its in-flight store is done,
    /// and refuses new ones.
    pub fn begin_shutdown(&self) {
        self.shared.shutdown.send_replace(true);
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shared.shutdown.borrow()
    }

    /// The number of open sync sessions, as it changes.
    pub fn open_sessions(&self) -> watch::Receiver<usize> {
        self.shared.sessions.subscribe()
    }

    /// Resolves when no session is open.
    pub async fn sessions_closed(&self) {
        let mut open = self.shared.sessions.subscribe();
        // The sender lives in `self`, so this only ends when the count reaches zero.
        let _ = open.wait_for(|n| *n == 0).await;
    }
}

/// The relay's routes.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/sync", get(sync))
        .route("/v1/bootstrap", get(bootstrap))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` resolves; then stops accepting, tells
/// every session to finish and say `GOING_AWAY`, and waits for them (at most
/// `Config::shutdown_grace`).
///
/// The accept loop is our own rather than `axum::serve`, which sets no timeouts: every HTTP
/// connection must send its request's headers within `Config::header_timeout` (also between
/// requests of a kept-alive connection), and at most [`connection_cap`] connections (HTTP and
/// upgraded sessions together) are open at once, so idle sockets can never use up the
/// process's files and starve `/healthz` and every device. Past the cap, new connections are
/// closed at once, with a warning in the log (at most one every 10 s).
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let shared = state.shared.clone();
    let compactor = shared
        .config
        .compact
        .then(|| tokio::spawn(compactor::run(shared.clone())));
    let revocations = tokio::spawn(revocation::run(shared.clone()));
    let heads = tokio::spawn(heads::run(shared.clone()));
    let cap = connection_cap(shared.config.max_connections);
    tracing::info!(max_connections = cap, "accepting connections");
    let router = app(state.clone());
    let (closing, closing_rx) = watch::channel(false);
    // Open HTTP connections (an upgraded one counts as a session from then on).
    let http = Arc::new(AtomicUsize::new(0));
    let mut warned: Option<std::time::Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of files or memory: back off instead of spinning on the error.
                    if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                        tracing::warn!(error = %e, "cannot accept a connection");
                        warned = Some(std::time::Instant::now());
                    }
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let open = http.load(Ordering::Acquire) + *shared.sessions.borrow();
        if open >= cap {
            Metrics::add(&shared.metrics.connections_refused, 1);
            if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                tracing::warn!(
                    open,
                    max_connections = cap,
                    "connection limit reached; refusing new connections until some close \
                     (raise the file limit, or --max-connections, if this is not an attack)"
                );
                warned = Some(std::time::Instant::now());
            }
            drop(tcp);
            continue;
        }
        // Small frames (Ack, Changes of one entry) must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        http.fetch_add(1, Ordering::AcqRel);
        let done = http.clone();
        let connection = serve_connection(
            tcp,
            router.clone(),
            shared.config.header_timeout,
            closing_rx.clone(),
        );
        tokio::spawn(async move {
            connection.await;
            done.fetch_sub(1, Ordering::AcqRel);
        });
    }
    tracing::info!("shutting down");
    state.begin_shutdown();
    closing.send_replace(true);
    let grace = shared.config.shutdown_grace;
    // HTTP requests finish first (upgraded connections are not theirs any more)…
    let _ = tokio::time::timeout(grace, async {
        while http.load(Ordering::Acquire) > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    // …then the sessions say goodbye.
    if tokio::time::timeout(grace, state.sessions_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = *shared.sessions.borrow(),
            "sessions still open after the shutdown grace period"
        );
    }
    revocations.abort();
    // The listener notices shutdown within its wait.
    if tokio::time::timeout(grace, heads).await.is_err() {
        tracing::warn!("the commit listener was still busy after the shutdown grace period");
    }
    // The compactor stops between batches; a batch's writes are short transactions.
    if let Some(compactor) = compactor
        && tokio::time::timeout(grace, compactor).await.is_err()
    {
        tracing::warn!("the compactor was still busy after the shutdown grace period");
    }
    Ok(())
}

/// How often at most the accept loop warns about the same trouble.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// How long the accept loop waits after `accept` failed.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Files kept for the relay itself beside its connections: the database and its WAL, the
/// readers' connections, logs.
const RESERVED_FILES: u64 = 256;

/// The most connections the relay keeps open: `requested`, and never more than the
/// process's file limit (`RLIMIT_NOFILE`) less [`RESERVED_FILES`].
pub fn connection_cap(requested: usize) -> usize {
    let files = rlimit::Resource::NOFILE
        .get()
        .map(|(soft, _)| soft)
        .unwrap_or(1024);
    let room = usize::try_from(files.saturating_sub(RESERVED_FILES).max(1)).unwrap_or(usize::MAX);
    requested.clamp(1, room)
}

/// One HTTP/1 connection: requests until it closes, or its upgrade to a WebSocket, with a
/// header timeout; it finishes its request and closes when the relay shuts down.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    router: Router,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let service = hyper_util::service::TowerToHyperService::new(router);
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_timeout)
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
        .with_upgrades();
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = async { drop(closing.wait_for(|c| *c).await) } => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "connection ended");
    }
}

/// The only error a handler answers with; it names no internals.
enum HttpError {
    Unavailable(&'static str),
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        match self {
            HttpError::Unavailable(why) => (StatusCode::SERVICE_UNAVAILABLE, why).into_response(),
        }
    }
}

async fn sync(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    if state.is_shutting_down() {
        return HttpError::Unavailable("the relay is shutting down").into_response();
    }
    upgrade
        .max_message_size(crm_sync::MAX_FRAME_BYTES)
        .max_frame_size(crm_sync::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| session::run(state, socket))
}

async fn bootstrap(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> Response {
    if state.is_shutting_down() {
        return HttpError::Unavailable("the relay is shutting down").into_response();
    }
    upgrade
        .max_message_size(crm_sync::MAX_FRAME_BYTES)
        .max_frame_size(crm_sync::MAX_FRAME_BYTES)
        .on_upgrade(move |socket| bootstrap::run(state, socket))
}

async fn healthz(State(state): State<AppState>) -> Result<&'static str, HttpError> {
    let store = state.shared.relay.clone();
    match tokio::task::spawn_blocking(move || store.ping()).await {
        Ok(Ok(())) => Ok("ok"),
        Ok(Err(e)) => {
            tracing::error!(error = %crate::error_chain(&e), "health check failed");
            Err(HttpError::Unavailable("the store does not answer"))
        }
        Err(_) => Err(HttpError::Unavailable("the store does not answer")),
    }
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.shared.metrics.render();
    let store = state.shared.relay.store();
    text.push_str(&crate::metrics::render_backend(
        store.backend(),
        store.pool_state(),
    ));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
}
