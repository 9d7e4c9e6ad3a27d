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
use std::sync::atomic::AtomicU64;
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
use crate::store::RelayStore;
use crate::{bootstrap, compactor, revocation, session};

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
    /// How long one frame may take to reach a device before the session is dropped.
    pub write_timeout: Duration,
    /// How often the relay looks for devices revoked (by `crm-relay device revoke`, from
    /// another process) to close their open sessions.
    pub revocation_poll: Duration,
    /// How long shutdown waits for sessions to finish their stores and say goodbye.
    pub shutdown_grace: Duration,
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
            shutdown_grace: Duration::from_secs(10),
            revocation_poll: Duration::from_millis(250),
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
    pub(crate) store: Arc<dyn RelayStore>,
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
                store,
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

    pub fn store(&self) -> &Arc<dyn RelayStore> {
        &self.shared.store
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
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let compactor = state
        .shared
        .config
        .compact
        .then(|| tokio::spawn(compactor::run(state.shared.clone())));
    let revocations = tokio::spawn(revocation::run(state.shared.clone()));
    let signalled = state.clone();
    // Small frames (Ack, Changes of one entry) must not wait for Nagle's algorithm.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
    });
    axum::serve(listener, app(state.clone()))
        .with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutting down");
            signalled.begin_shutdown();
        })
        .await?;
    // Upgraded connections are not axum's any more: wait for the sessions ourselves.
    state.begin_shutdown();
    let grace = state.shared.config.shutdown_grace;
    if tokio::time::timeout(grace, state.sessions_closed())
        .await
        .is_err()
    {
        tracing::warn!(
            open = *state.shared.sessions.borrow(),
            "sessions still open after the shutdown grace period"
        );
    }
    revocations.abort();
    // The compactor stops between batches; a batch's writes are short transactions.
    if let Some(compactor) = compactor
        && tokio::time::timeout(grace, compactor).await.is_err()
    {
        tracing::warn!("the compactor was still busy after the shutdown grace period");
    }
    Ok(())
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
    let store = state.shared.store.clone();
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
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.shared.metrics.render(),
    )
}
