//! The compactor: a background task of `serve` that keeps every document's snapshot up to
//! date, so a new device's bootstrap loads documents instead of replaying their changes.
//!
//! It loops over [`RelayStore::compact`] on a blocking thread, [`BATCH`] documents at a time,
//! and rests [`IDLE`] whenever nothing is stale. Snapshots only make bootstraps cheaper: a
//! page sends whatever a snapshot lacks from the log, so the compactor may lag behind
//! pushes (a large import) without anyone getting stale data.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::server::Shared;

/// Documents per call of `compact`.
const BATCH: usize = 64;
/// Rest when nothing was stale.
const IDLE: Duration = Duration::from_millis(500);
/// Rest after the store failed, so a broken disk does not flood the log.
const AFTER_ERROR: Duration = Duration::from_secs(5);
/// How often the stale gauge is counted while the compactor is busy (counting is cheap, but
/// not free when many documents are stale).
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// Runs until the relay starts shutting down; returns once no compaction is under way.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut counted_at: Option<Instant> = None;
    tracing::debug!("compactor started");
    while !*shutdown.borrow() {
        let count = counted_at.is_none_or(|at| at.elapsed() >= COUNT_EVERY);
        let store = shared.store.clone();
        let result = tokio::task::spawn_blocking(move || {
            let compacted = store.compact(BATCH)?;
            let stale = if count {
                Some(store.stale_documents()?)
            } else {
                None
            };
            Ok::<_, crate::store::StoreError>((compacted, stale))
        })
        .await;
        let rest = match result {
            Ok(Ok((compacted, stale))) => {
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
            Ok(Err(e)) => {
                tracing::error!(error = %crate::error_chain(&e), "compaction failed");
                AFTER_ERROR
            }
            Err(e) => {
                tracing::error!(error = %e, "the compaction worker stopped");
                AFTER_ERROR
            }
        };
        tokio::select! {
            () = tokio::time::sleep(rest) => {}
            _ = shutdown.wait_for(|s| *s) => break,
        }
    }
    tracing::debug!("compactor stopped");
}
