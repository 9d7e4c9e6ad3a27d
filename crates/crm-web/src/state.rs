//! What every handler shares: the configuration, a small pool of opened replicas, the CSRF
//! secret, the live-update channel and the sync status.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crm_store::Store;
use data_encoding::BASE64URL_NOPAD;
use rand::TryRng as _;
use tokio::sync::{broadcast, watch};

use crate::error::WebError;
use crate::live::LiveEvent;
use crate::sync::SyncStatus;

/// Opened replicas kept for reuse; more concurrent requests open more and drop them after.
const POOL: usize = 4;

/// What to serve and how requests authenticate.
#[derive(Clone, Debug)]
pub struct Config {
    /// The replica's data directory.
    pub data_dir: PathBuf,
    /// When set, every request must carry this token (header, cookie or `?token=`).
    pub token: Option<String>,
    /// Sync with the replica's relay in the background (when it has joined one).
    pub sync: bool,
}

struct Inner {
    config: Config,
    csrf: String,
    pool: Mutex<Vec<Store>>,
    events: broadcast::Sender<LiveEvent>,
    status: Mutex<SyncStatus>,
    shutdown: watch::Sender<bool>,
}

/// The state shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("data_dir", &self.0.config.data_dir)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Opens the replica once (so a wrong directory fails here, not on the first request)
    /// and makes a fresh CSRF secret.
    pub fn new(config: Config) -> Result<AppState, WebError> {
        let store = Store::open(&config.data_dir)?;
        let mut secret = [0u8; 24];
        rand::rngs::SysRng
            .try_fill_bytes(&mut secret)
            .map_err(|e| WebError::Internal(format!("no randomness for the CSRF secret: {e}")))?;
        let (events, _) = broadcast::channel(256);
        let (shutdown, _) = watch::channel(false);
        let relay = store.relay()?.map(|r| r.url);
        Ok(AppState(Arc::new(Inner {
            csrf: BASE64URL_NOPAD.encode(&secret),
            pool: Mutex::new(vec![store]),
            events,
            status: Mutex::new(SyncStatus::new(relay, config.sync)),
            shutdown,
            config,
        })))
    }

    pub fn config(&self) -> &Config {
        &self.0.config
    }

    pub(crate) fn csrf(&self) -> &str {
        &self.0.csrf
    }

    pub(crate) fn events(&self) -> &broadcast::Sender<LiveEvent> {
        &self.0.events
    }

    pub(crate) fn status(&self) -> SyncStatus {
        self.0
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Changes the sync status and tells open pages when it changed.
    pub(crate) fn update_status(&self, f: impl FnOnce(&mut SyncStatus)) {
        let changed = {
            let mut status = self.0.status.lock().unwrap_or_else(PoisonError::into_inner);
            let before = status.clone();
            f(&mut status);
            *status != before
        };
        if changed {
            let _ = self.0.events.send(LiveEvent::Status);
        }
    }

    /// Resolves once [`AppState::shutdown`] was called; long-lived responses (the event
    /// stream) end on it so a graceful shutdown does not wait for them forever.
    pub(crate) fn stopping(&self) -> watch::Receiver<bool> {
        self.0.shutdown.subscribe()
    }

    /// Ends the event streams and the background tasks.
    pub fn shutdown(&self) {
        let _ = self.0.shutdown.send(true);
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        *self.0.shutdown.borrow()
    }

    /// Runs `f` with a replica on a blocking thread.
    pub(crate) async fn with_store<T, F>(&self, f: F) -> Result<T, WebError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Store) -> Result<T, WebError> + Send + 'static,
    {
        let state = self.clone();
        tokio::task::spawn_blocking(move || {
            let pooled = state
                .0
                .pool
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop();
            let mut store = match pooled {
                Some(s) => s,
                None => Store::open(&state.0.config.data_dir)?,
            };
            let result = f(&mut store);
            let mut pool = state.0.pool.lock().unwrap_or_else(PoisonError::into_inner);
            if pool.len() < POOL {
                pool.push(store);
            }
            result
        })
        .await?
    }
}
