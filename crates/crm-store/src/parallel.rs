//! Building documents on worker threads while the calling thread writes them.
//!
//! SQLite takes one writer, but the Automerge work of a batch (creating documents, applying
//! changes, reading records back) needs no database. [`InOrder`] runs that work on worker
//! threads and hands the results back in job order, so the writer stores them in the same
//! order it would have built them itself, with the same results.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::Scope;

/// Fewer jobs than this are run on the calling thread: starting threads would cost more.
const PARALLEL_FROM: usize = 32;

/// Results waiting in the channel before the workers block: the consumer (the SQLite writer)
/// is usually the slower side, and this keeps the finished work it has not taken small.
const AHEAD: usize = 64;

/// The results of `f` over `jobs`, in job order, computed on worker threads when there are
/// enough jobs and more than one core.
pub(crate) enum InOrder<'a, J, T> {
    Inline {
        jobs: std::slice::Iter<'a, J>,
        f: &'a (dyn Fn(&J) -> T + Sync),
    },
    Threads {
        results: mpsc::Receiver<(usize, T)>,
        early: HashMap<usize, T>,
        next: usize,
    },
}

impl<'a, J: Sync, T: Send + 'a> InOrder<'a, J, T> {
    /// Starts the workers inside `scope`. When the consumer stops early (drops this), the
    /// workers stop at their next result.
    pub(crate) fn start<'scope>(
        scope: &'scope Scope<'scope, '_>,
        jobs: &'a [J],
        f: &'a (dyn Fn(&J) -> T + Sync),
    ) -> Self
    where
        'a: 'scope,
    {
        let workers = std::thread::available_parallelism()
            .map_or(1, std::num::NonZeroUsize::get)
            .min(4);
        if jobs.len() < PARALLEL_FROM || workers < 2 {
            return InOrder::Inline {
                jobs: jobs.iter(),
                f,
            };
        }
        let (send, results) = mpsc::sync_channel(AHEAD);
        let claimed = std::sync::Arc::new(AtomicUsize::new(0));
        for _ in 0..workers {
            let send = send.clone();
            let claimed = claimed.clone();
            scope.spawn(move || {
                loop {
                    let k = claimed.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(k) else { break };
                    if send.send((k, f(job))).is_err() {
                        break;
                    }
                }
            });
        }
        InOrder::Threads {
            results,
            early: HashMap::new(),
            next: 0,
        }
    }

    /// Whether [`InOrder::next`] would answer without waiting for a worker.
    pub(crate) fn ready(&mut self) -> bool {
        match self {
            InOrder::Inline { .. } => true,
            InOrder::Threads {
                results,
                early,
                next,
            } => loop {
                if early.contains_key(next) {
                    return true;
                }
                match results.try_recv() {
                    Ok((k, done)) => {
                        early.insert(k, done);
                    }
                    Err(mpsc::TryRecvError::Empty) => return false,
                    // `next` answers at once: with the result, or with `None`.
                    Err(mpsc::TryRecvError::Disconnected) => return true,
                }
            },
        }
    }

    /// The next job's result, or `None` after the last (or when a worker died).
    pub(crate) fn next(&mut self) -> Option<T> {
        match self {
            InOrder::Inline { jobs, f } => jobs.next().map(f),
            InOrder::Threads {
                results,
                early,
                next,
            } => {
                let want = *next;
                *next += 1;
                if let Some(done) = early.remove(&want) {
                    return Some(done);
                }
                loop {
                    let (k, done) = results.recv().ok()?;
                    if k == want {
                        return Some(done);
                    }
                    early.insert(k, done);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::InOrder;

    #[test]
    fn results_come_in_job_order_with_or_without_threads() {
        for n in [0, 5, 31, 32, 1_000] {
            let jobs: Vec<u64> = (0..n).collect();
            let square = |x: &u64| {
                // Uneven work, so workers finish out of order.
                if x.is_multiple_of(7) {
                    std::thread::yield_now();
                }
                x * x
            };
            let got: Vec<u64> = std::thread::scope(|scope| {
                let mut results = InOrder::start(scope, &jobs, &square);
                let mut got = Vec::new();
                loop {
                    // Asking whether a result is ready never loses or reorders one.
                    if got.len() % 3 == 0 {
                        let _ = results.ready();
                    }
                    let Some(r) = results.next() else { break };
                    got.push(r);
                }
                assert!(results.ready(), "the end is ready at once");
                got
            });
            let want: Vec<u64> = jobs.iter().map(|x| x * x).collect();
            assert_eq!(got, want, "{n} jobs");
        }
    }

    #[test]
    fn a_consumer_that_stops_early_does_not_hang_the_workers() {
        let jobs: Vec<u32> = (0..10_000).collect();
        let id = |x: &u32| *x;
        let first = std::thread::scope(|scope| {
            let mut results = InOrder::start(scope, &jobs, &id);
            results.next()
        });
        assert_eq!(first, Some(0));
    }
}
