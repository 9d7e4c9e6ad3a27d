//! Counters and gauges, rendered in the Prometheus text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use crm_sync::ErrorCode;

/// The relay's counters. Updated with relaxed atomics: each is independent.
#[derive(Debug, Default)]
pub struct Metrics {
    pub(crate) connections: AtomicI64,
    pub(crate) pushes: AtomicU64,
    pub(crate) changes_stored: AtomicU64,
    pub(crate) duplicate_changes: AtomicU64,
    pub(crate) changes_refused: AtomicU64,
    pub(crate) bytes_received: AtomicU64,
    pub(crate) bytes_sent: AtomicU64,
    /// Sum over open sessions of how far each device is behind its workspace's head.
    pub(crate) lag: AtomicI64,
    pub(crate) documents_compacted: AtomicU64,
    /// Documents with changes their snapshot does not hold, as last counted.
    pub(crate) documents_stale: AtomicU64,
    pub(crate) bootstrap_pages: AtomicU64,
    /// Log reads answered from the workspace's latest batch instead of the store.
    pub(crate) tail_reads: AtomicU64,
    /// Sessions dropped because their device did not read while the relay was short of
    /// memory for unread data.
    pub(crate) slow_readers_dropped: AtomicU64,
    /// Connections closed at once because the relay had its maximum open.
    pub(crate) connections_refused: AtomicU64,
    /// Bytes of frames queued for devices and not yet taken by their sockets.
    pub(crate) unsent: AtomicUsize,
    /// Heads raised by commits announced by the database (other relay processes' and this
    /// one's), and how long the latest took from commit to here, in microseconds.
    pub(crate) heads_received: AtomicU64,
    pub(crate) notify_lag_us: AtomicU64,
    rejected: Mutex<BTreeMap<u16, u64>>,
}

impl Metrics {
    pub(crate) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// A session ended with an `Error` frame carrying `code`.
    pub(crate) fn rejected(&self, code: ErrorCode) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(code.0)
            .or_default() += 1;
    }

    /// How many sessions ended with `code`.
    pub fn rejected_count(&self, code: ErrorCode) -> u64 {
        self.rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&code.0)
            .copied()
            .unwrap_or(0)
    }

    /// Documents compacted since the relay started.
    pub fn documents_compacted(&self) -> u64 {
        self.documents_compacted.load(Ordering::Relaxed)
    }

    /// Open WebSocket sessions (sync and bootstrap).
    pub fn connections(&self) -> i64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP crm_relay_{name} {help}");
            let _ = writeln!(out, "# TYPE crm_relay_{name} {kind}");
            let _ = writeln!(out, "crm_relay_{name} {value}");
        };
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed).to_string();
        metric(
            "connections",
            "gauge",
            "Open WebSocket sessions (sync and bootstrap).",
            self.connections().to_string(),
        );
        metric(
            "pushes_total",
            "counter",
            "Push frames received.",
            get(&self.pushes),
        );
        metric(
            "changes_stored_total",
            "counter",
            "Changes appended to a log.",
            get(&self.changes_stored),
        );
        metric(
            "duplicate_changes_total",
            "counter",
            "Pushed changes already in the log, acknowledged without storing.",
            get(&self.duplicate_changes),
        );
        metric(
            "changes_refused_total",
            "counter",
            "Pushed changes refused by write authorization (not stored).",
            get(&self.changes_refused),
        );
        metric(
            "bytes_received_total",
            "counter",
            "Bytes of sync frames received.",
            get(&self.bytes_received),
        );
        metric(
            "bytes_sent_total",
            "counter",
            "Bytes of sync frames sent.",
            get(&self.bytes_sent),
        );
        metric(
            "lag_entries",
            "gauge",
            "Log positions connected devices have yet to confirm, summed over sessions.",
            self.lag.load(Ordering::Relaxed).max(0).to_string(),
        );
        metric(
            "documents_compacted_total",
            "counter",
            "Documents whose snapshot the compactor rebuilt.",
            get(&self.documents_compacted),
        );
        metric(
            "documents_stale",
            "gauge",
            "Documents with changes their snapshot does not hold yet, as last counted.",
            get(&self.documents_stale),
        );
        metric(
            "bootstrap_pages_total",
            "counter",
            "Pages of documents sent to bootstrapping devices.",
            get(&self.bootstrap_pages),
        );
        metric(
            "tail_reads_total",
            "counter",
            "Log reads of sessions at the live edge, answered with the batch just stored instead of reading the store.",
            get(&self.tail_reads),
        );
        metric(
            "connections_refused_total",
            "counter",
            "Connections closed at once because the relay had its maximum open.",
            get(&self.connections_refused),
        );
        metric(
            "unsent_bytes",
            "gauge",
            "Bytes of frames queued for devices and not yet taken by their sockets.",
            self.unsent.load(Ordering::Relaxed).to_string(),
        );
        metric(
            "slow_readers_dropped_total",
            "counter",
            "Sessions dropped because their device did not read while the relay was short of memory for unread data.",
            get(&self.slow_readers_dropped),
        );
        metric(
            "heads_received_total",
            "counter",
            "Log heads announced by the database's notifications (PostgreSQL: every relay process's commits).",
            get(&self.heads_received),
        );
        metric(
            "notify_lag_seconds",
            "gauge",
            "Time from a commit to its notification's arrival, for the latest one.",
            format!(
                "{:.6}",
                self.notify_lag_us.load(Ordering::Relaxed) as f64 / 1e6
            ),
        );
        let _ = writeln!(
            out,
            "# HELP crm_relay_rejected_total Sessions ended with an error, by code."
        );
        let _ = writeln!(out, "# TYPE crm_relay_rejected_total counter");
        let rejected = self
            .rejected
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for (code, n) in rejected {
            let _ = writeln!(
                out,
                "crm_relay_rejected_total{{code=\"{code}\",reason=\"{}\"}} {n}",
                ErrorCode(code).name()
            );
        }
        out
    }
}

/// The storage backend's figures: which backend, and its connection pool if it has one.
pub(crate) fn render_backend(backend: &str, pool: Option<crate::store::PoolState>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP crm_relay_backend_info The storage backend this process runs on.\n\
         # TYPE crm_relay_backend_info gauge\n\
         crm_relay_backend_info{{backend=\"{backend}\"}} 1"
    );
    if let Some(pool) = pool {
        for (name, help, value) in [
            (
                "db_pool_connections",
                "Open connections of the database pool.",
                pool.connections,
            ),
            (
                "db_pool_idle",
                "Idle connections of the database pool.",
                pool.idle,
            ),
            (
                "db_pool_max",
                "Most connections the database pool opens.",
                pool.max,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP crm_relay_{name} {help}\n# TYPE crm_relay_{name} gauge\ncrm_relay_{name} {value}"
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_metric_with_its_type() {
        let m = Metrics::default();
        m.rejected(ErrorCode::INVALID_CHANGE);
        m.rejected(ErrorCode::INVALID_CHANGE);
        Metrics::add(&m.pushes, 3);
        let text = m.render();
        assert!(text.contains("# TYPE crm_relay_connections gauge\ncrm_relay_connections 0\n"));
        assert!(text.contains("crm_relay_pushes_total 3\n"));
        assert!(
            text.contains("crm_relay_rejected_total{code=\"415\",reason=\"invalid change\"} 2\n")
        );
    }
}
