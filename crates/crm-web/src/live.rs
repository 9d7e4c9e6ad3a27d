//! Live updates: a watcher notices every commit to the replica (this node's, the CLI's, the
//! sync driver's) and open pages hear about it over server-sent events.
//!
//! The watcher owns its own replica connection on its own thread and polls SQLite's
//! `data_version` every [`POLL`]; that pragma is a counter read, so polling costs nothing
//! measurable. When it moves, the watcher reads which records got changes since the last
//! position of the change log and broadcasts their ids.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use crm_model::RecordId;
use crm_store::Store;
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;

use crate::state::AppState;

/// How often the watcher reads the replica's data version.
const POLL: Duration = Duration::from_millis(15);
/// Past this many changed records in one poll, pages are told "everything changed".
const MAX_IDS: usize = 200;

/// What open pages are told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum LiveEvent {
    /// Records changed; `all` when too many to list.
    Changed {
        version: i64,
        ids: Vec<RecordId>,
        all: bool,
    },
    /// The sync status changed (or the replica changed without a record changing).
    Status,
}

impl LiveEvent {
    fn to_sse(&self) -> Event {
        match self {
            LiveEvent::Changed { version, ids, all } => Event::default().event("change").data(
                json!({
                    "version": version,
                    "ids": ids.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    "all": all,
                })
                .to_string(),
            ),
            LiveEvent::Status => Event::default().event("status").data("{}"),
        }
    }
}

/// Starts the watcher thread; it ends when the state shuts down.
pub(crate) fn start(state: &AppState) -> Result<(), crate::error::WebError> {
    let store = Store::open(&state.config().data_dir)?;
    // The baseline is taken before the server accepts anyone: every later commit is news.
    let version = store.data_version()?;
    let seq = store.change_log_head()?;
    let state = state.clone();
    std::thread::Builder::new()
        .name("crm-web-live".into())
        .spawn(move || {
            if let Err(e) = watch(&state, &store, version, seq) {
                tracing::error!(error = %e, "live updates stopped");
            }
        })
        .map_err(|e| crate::error::WebError::Internal(format!("cannot start live updates: {e}")))?;
    Ok(())
}

fn watch(
    state: &AppState,
    store: &Store,
    mut version: i64,
    mut seq: i64,
) -> Result<(), crm_store::StoreError> {
    while !state.is_shut_down() {
        std::thread::sleep(POLL);
        let now = store.data_version()?;
        if now == version {
            continue;
        }
        version = now;
        let changed = store.changed_since(seq, MAX_IDS)?;
        seq = changed.seq;
        let event = if changed.ids.is_empty() && !changed.truncated {
            LiveEvent::Status
        } else {
            LiveEvent::Changed {
                version: seq,
                ids: changed.ids,
                all: changed.truncated,
            }
        };
        let _ = state.events().send(event);
    }
    Ok(())
}

/// `GET /events`: the live-update stream of one page.
pub(crate) async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let rx = state.events().subscribe();
    let stopping = state.stopping();
    let stream = stream::unfold((rx, stopping), |(mut rx, mut stopping)| async move {
        loop {
            tokio::select! {
                received = rx.recv() => match received {
                    Ok(event) => return Some((Ok(event.to_sse()), (rx, stopping))),
                    Err(RecvError::Lagged(_)) => {
                        let all = LiveEvent::Changed { version: 0, ids: Vec::new(), all: true };
                        return Some((Ok(all.to_sse()), (rx, stopping)));
                    }
                    Err(RecvError::Closed) => return None,
                },
                changed = stopping.changed() => {
                    if changed.is_err() || *stopping.borrow() {
                        return None;
                    }
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
