//! Several relay processes on one database: a background task of `serve` that learns of
//! batches other processes commit and wakes this process's sessions of their workspace.
//!
//! The store announces each commit's new head ([`crate::store::RelayStore::heads`]: on
//! PostgreSQL, `LISTEN` on the channel every append notifies in its transaction, so a
//! notification arrives only for a committed batch, after it is visible). The hub raises the
//! workspace's head; its sessions read the new entries from the store, as any session does
//! for a position that is not its own process's latest batch. A process hears its own
//! commits too; raising a head to where it already is wakes nobody. SQLite is served by one
//! process and has no feed: the task ends at once.
//!
//! A notification lost with a broken listening connection is made good on reconnection: the
//! task then raises every workspace with sessions to its head as the store has it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;

use crate::server::Shared;

/// How long one wait for notifications lasts: how soon shutdown is noticed.
const WAIT: Duration = Duration::from_millis(250);
/// Rest after the store failed before listening again.
const AFTER_ERROR: Duration = Duration::from_secs(1);

/// Runs until the relay starts shutting down.
pub(crate) async fn run(shared: Arc<Shared>) {
    let (done, finished) = tokio::sync::oneshot::channel();
    let worker = shared.clone();
    // Its own thread: it blocks on its connection all the time it runs.
    let spawned = std::thread::Builder::new()
        .name("crm-heads".into())
        .spawn(move || {
            listen(&worker);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = finished.await;
        }
        Err(e) => tracing::error!(
            error = %e,
            "cannot listen for other relay processes' commits; their changes reach this \
             process's devices only when those reconnect"
        ),
    }
}

fn listen(shared: &Shared) {
    let shutdown = shared.shutdown.subscribe();
    let mut reconnected = false;
    while !*shutdown.borrow() {
        let mut feed = match shared.relay.store().heads() {
            Ok(Some(feed)) => feed,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot listen for commits");
                std::thread::sleep(AFTER_ERROR);
                continue;
            }
        };
        if reconnected {
            catch_up(shared);
        }
        reconnected = true;
        while !*shutdown.borrow() {
            match feed.next(WAIT) {
                Ok(raised) => {
                    let now = Utc::now();
                    for r in raised {
                        let lag = (now - r.committed_at).num_microseconds().unwrap_or(0);
                        shared
                            .metrics
                            .notify_lag_us
                            .store(u64::try_from(lag).unwrap_or(0), Ordering::Relaxed);
                        crate::metrics::Metrics::add(&shared.metrics.heads_received, 1);
                        raise(shared, r.workspace, r.head);
                    }
                }
                Err(e) => {
                    tracing::warn!(
                        error = %crate::error_chain(&e),
                        "lost the connection listening for commits; reconnecting"
                    );
                    std::thread::sleep(AFTER_ERROR);
                    break;
                }
            }
        }
    }
}

/// Wakes this process's sessions of a workspace whose head another process raised. The new
/// entries are read here once and kept as the workspace's tail, so the sessions at the live
/// edge (all of them, usually) take them from memory rather than each reading the same rows:
/// with 50 devices on this process that was 50 reads per push, and the database's CPU.
fn raise(shared: &Shared, workspace: crate::ids::WorkspaceId, head: u64) {
    let Some(known) = shared.hub.head_of(workspace) else {
        return;
    };
    if head <= known {
        return;
    }
    match shared
        .relay
        .read_raw(workspace, known, crm_sync::MAX_BATCH_CHANGES)
    {
        // The whole batch, contiguous after what the sessions were woken for.
        Ok(read) if read.through >= head && !read.rows.is_empty() => {
            shared.hub.advance_with(workspace, read);
        }
        Ok(_) => shared.hub.advance(workspace, head),
        Err(e) => {
            tracing::warn!(error = %crate::error_chain(&e), %workspace, "cannot read new entries");
            shared.hub.advance(workspace, head);
        }
    }
}

/// Raises every workspace with sessions in this process to its stored head.
fn catch_up(shared: &Shared) {
    for workspace in shared.hub.workspaces() {
        match shared.relay.store().head(workspace) {
            Ok(Some(head)) => shared.hub.advance(workspace, head),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), %workspace, "cannot read a head");
            }
        }
    }
}
