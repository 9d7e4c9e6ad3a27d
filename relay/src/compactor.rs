//! The compactor: a background task of `serve` that keeps every document's snapshot up to
//! date, so a new device's bootstrap loads documents instead of replaying their changes.
//!
//! It loops over [`crate::Relay::compact`] on a thread of its own, [`BATCH`] documents at a time,
//! and rests [`IDLE`] whenever nothing is stale. Snapshots only make bootstraps cheaper: a
//! page sends whatever a snapshot lacks from the log, so the compactor may lag behind
//! pushes (a large import) without anyone getting stale data.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use std::time::Instant;

use crate::metrics::Metrics;
use crate::server::Shared;

/// Documents per call of `compact`.
const BATCH: usize = 64;
/// Rest when nothing was stale.
const IDLE: Duration = Duration::from_millis(500);
/// How often a resting compactor looks for shutdown.
const STEP: Duration = Duration::from_millis(50);
/// Rest after the store failed, so a broken disk does not flood the log.
const AFTER_ERROR: Duration = Duration::from_secs(5);
/// How often the stale gauge is counted while the compactor is busy (counting is cheap, but
/// not free when many documents are stale).
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// Runs until the relay starts shutting down; returns once no compaction is under way.
///
/// The work runs on one thread of its own, not on the blocking pool: a document with a long
/// history takes tens of MiB to rebuild, and each pool thread would keep its own malloc arena
/// of that size (the relay's memory grew by about 140 MiB while four devices pushed edits to
/// one record each).
pub(crate) async fn run(shared: Arc<Shared>) {
    let (done, finished) = tokio::sync::oneshot::channel();
    let worker = shared.clone();
    let spawned = std::thread::Builder::new()
        .name("crm-compactor".into())
        .spawn(move || {
            work(&worker);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => {
            let _ = finished.await;
        }
        Err(e) => tracing::error!(error = %e, "cannot start the compactor; no snapshots are made"),
    }
}

fn work(shared: &Shared) {
    let shutdown = shared.shutdown.subscribe();
    let mut counted_at: Option<Instant> = None;
    tracing::debug!("compactor started");
    while !*shutdown.borrow() {
        let count = counted_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY);
        let result = shared.relay.compact(BATCH).and_then(|compacted| {
            let stale = if count {
                Some(shared.relay.stale_documents()?)
            } else {
                None
            };
            Ok((compacted, stale))
        });
        let rest = match result {
            Ok((compacted, stale)) => {
                Metrics::add(&shared.metrics.documents_compacted, compacted);
                if let Some(stale) = stale {
                    shared
                        .metrics
                        .documents_stale
                        .store(stale, Ordering::Relaxed);
                    counted_at = Some(Instant::now());
                }
                if compacted > 0 {
                    tracing::debug!(compacted, "documents compacted");
                    continue;
                }
                IDLE
            }
            Err(e) => {
                tracing::error!(error = %crate::error_chain(&e), "compaction failed");
                AFTER_ERROR
            }
        };
        // Rest in short steps, so shutdown is noticed soon.
        let until = Instant::now() + rest;
        while !*shutdown.borrow() && Instant::now() < until {
            std::thread::sleep(STEP);
        }
    }
    tracing::debug!("compactor stopped");
}
