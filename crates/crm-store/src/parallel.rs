//! Building documents on worker threads while the calling thread writes them.
//!
//! SQLite takes one writer, but the Automerge work of a batch (creating documents, applying
//! changes, reading records back) needs no database. [`InOrder`] runs that work on worker
//! threads and hands the results back in job order, so the writer stores them in the same
//! order it would have built them itself, with the same results.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
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
    /// [`InOrder::ahead`] with too few jobs for threads.
    OwnedInline {
        jobs: Arc<[J]>,
        next: usize,
        f: fn(&J) -> T,
    },
    Threads {
        results: mpsc::Receiver<(usize, T)>,
        early: HashMap<usize, T>,
        next: usize,
        /// Set when dropped, for workers that would otherwise finish every job
        /// ([`InOrder::ahead`]).
        stop: Option<Arc<AtomicBool>>,
    },
}

/// Worker threads for `jobs`: as many as the cores, at most 4; `None` for one core or few jobs.
fn workers_for(jobs: usize) -> Option<usize> {
    let workers = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(4);
    (jobs >= PARALLEL_FROM && workers >= 2).then_some(workers)
}

impl<J: Send + Sync + 'static, T: Send + 'static> InOrder<'static, J, T> {
    /// Starts building every job right away on threads of their own, without waiting for the
    /// consumer: work queued behind a consumer that is busy elsewhere (committing an earlier
    /// batch) keeps the other cores busy. Every result is kept until taken, so `jobs` bounds
    /// the memory. Dropping this stops the workers at their next job.
    pub(crate) fn ahead(jobs: Arc<[J]>, f: fn(&J) -> T) -> Self {
        let Some(workers) = workers_for(jobs.len()) else {
            return InOrder::OwnedInline { jobs, next: 0, f };
        };
        let (send, results) = mpsc::channel();
        let claimed = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..workers {
            let (send, claimed, stop, jobs) =
                (send.clone(), claimed.clone(), stop.clone(), jobs.clone());
            std::thread::spawn(move || {
                work(&jobs, &claimed, &stop, f, |done| send.send(done).is_ok());
            });
        }
        InOrder::Threads {
            results,
            early: HashMap::new(),
            next: 0,
            stop: Some(stop),
        }
    }
}

/// One worker: takes the next unclaimed job and hands its result over, until no job is left,
/// `stop` is set or the consumer is gone (`send` answers false).
fn work<J, T>(
    jobs: &[J],
    claimed: &AtomicUsize,
    stop: &AtomicBool,
    f: impl Fn(&J) -> T,
    send: impl Fn((usize, T)) -> bool,
) {
    while !stop.load(Ordering::Relaxed) {
        let k = claimed.fetch_add(1, Ordering::Relaxed);
        let Some(job) = jobs.get(k) else { break };
        if !send((k, f(job))) {
            break;
        }
    }
}

impl<J, T> Drop for InOrder<'_, J, T> {
    fn drop(&mut self) {
        if let InOrder::Threads {
            stop: Some(stop), ..
        } = self
        {
            stop.store(true, Ordering::Relaxed);
        }
    }
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
        let Some(workers) = workers_for(jobs.len()) else {
            return InOrder::Inline {
                jobs: jobs.iter(),
                f,
            };
        };
        let (send, results) = mpsc::sync_channel(AHEAD);
        let claimed = Arc::new(AtomicUsize::new(0));
        // The scope's end joins the workers; nothing needs to stop them sooner.
        let stop = Arc::new(AtomicBool::new(false));
        for _ in 0..workers {
            let (send, claimed, stop) = (send.clone(), claimed.clone(), stop.clone());
            scope.spawn(move || {
                work(jobs, &claimed, &stop, f, |done| send.send(done).is_ok());
            });
        }
        InOrder::Threads {
            results,
            early: HashMap::new(),
            next: 0,
            stop: None,
        }
    }

    /// Whether [`InOrder::next`] would answer without waiting for a worker.
    pub(crate) fn ready(&mut self) -> bool {
        match self {
            InOrder::Inline { .. } | InOrder::OwnedInline { .. } => true,
            InOrder::Threads {
                results,
                early,
                next,
                ..
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
            InOrder::OwnedInline { jobs, next, f } => {
                let job = jobs.get(*next)?;
                *next += 1;
                Some(f(job))
            }
            InOrder::Threads {
                results,
                early,
                next,
                ..
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
    fn work_started_ahead_comes_in_job_order_and_stops_when_dropped() {
        fn slow_square(x: &u64) -> u64 {
            if x.is_multiple_of(5) {
                std::thread::yield_now();
            }
            x * x
        }
        for n in [0, 3, 31, 32, 2_000] {
            let jobs: std::sync::Arc<[u64]> = (0..n).collect::<Vec<_>>().into();
            let mut results = InOrder::ahead(jobs, slow_square);
            let mut got = Vec::new();
            while let Some(r) = results.next() {
                got.push(r);
            }
            assert!(results.ready(), "the end is ready at once");
            let want: Vec<u64> = (0..n).map(|x| x * x).collect();
            assert_eq!(got, want, "{n} jobs");
        }

        // Dropped after one result: the workers stop long before the last job.
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        fn counted(x: &u64) -> u64 {
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            std::thread::sleep(std::time::Duration::from_millis(1));
            *x
        }
        let jobs: std::sync::Arc<[u64]> = (0..5_000).collect::<Vec<_>>().into();
        let mut results = InOrder::ahead(jobs, counted);
        assert_eq!(results.next(), Some(0));
        drop(results);
        std::thread::sleep(std::time::Duration::from_millis(50));
        let started = STARTED.load(std::sync::atomic::Ordering::Relaxed);
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert_eq!(
            STARTED.load(std::sync::atomic::Ordering::Relaxed),
            started,
            "workers still running after the drop"
        );
        assert!(started < 5_000, "every job ran: {started}");
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
