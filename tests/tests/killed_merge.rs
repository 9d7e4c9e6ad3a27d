//! `crm merge-from` killed (SIGKILL) at different moments: the replica it was writing stays
//! consistent — its projections always match its documents, so no batch was half-applied —
//! and a later merge finishes the job.

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use crm_tests::{KINDS, Replica, id_of};
use serde_json::Value;

/// What a user can read from a replica: every kind's records (archived too) by id, and the
/// conflicts.
type Snapshot = BTreeMap<String, Vec<Value>>;

fn snapshot(r: &Replica) -> Snapshot {
    let mut s: Snapshot = KINDS
        .iter()
        .map(|k| (k.to_string(), r.list_by_id(k)))
        .collect();
    s.insert("conflicts".into(), vec![r.json(&["conflicts"])]);
    s
}

fn records(s: &Snapshot) -> usize {
    KINDS.iter().map(|k| s[*k].len()).sum()
}

/// The snapshot without the target's own user record, to compare with the source.
fn without_user(mut s: Snapshot, user_id: &str) -> Snapshot {
    if let Some(users) = s.get_mut("user") {
        users.retain(|u| id_of(u) != user_id);
    }
    s
}

/// Starts `merge-from SRC` into `target` and kills it once `delay` has passed, unless it
/// finished first. Returns how it ended: `None` when killed.
fn merge_killed_after(target: &Replica, src: &Replica, delay: Duration) -> Option<ExitStatus> {
    let mut child = target.spawn(&["merge-from", src.arg()]);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll crm merge-from") {
            return Some(status);
        }
        if started.elapsed() >= delay {
            break;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    child.kill().expect("SIGKILL crm merge-from");
    let status = child.wait().expect("reap crm merge-from");
    // It may have finished between the poll and the kill (the signal then reaches a process
    // that already exited): that is a finished merge, not a killed one.
    if status.success() {
        return Some(status);
    }
    None
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Progress {
    /// Nothing of the source arrived.
    Nothing,
    /// Some of it: the kill landed between committed batches.
    Part,
    /// Everything.
    All,
}

#[test]
fn killed_merge_leaves_replica_consistent() {
    let started = Instant::now();
    // A source with several batches' worth of changes (merge-from applies 500 per
    // transaction): a sample company of 60 accounts is ~500 records and ~700 changes.
    let src = Replica::init("demo", "demo-laptop");
    let demo = src.json(&["seed", "--accounts", "60"]);
    assert!(
        demo["records"].as_u64() > Some(400),
        "the demo seeded too little: {demo}"
    );
    let source = snapshot(&src);
    let source_records = records(&source);
    let seeded = started.elapsed();

    // Kill at fixed delays first, then narrow down until one kill lands mid-merge.
    let fixed = [5, 300, 1000, 1800, 2600];
    let (mut nothing_at, mut all_at) = (0u64, None::<u64>);
    let mut outcomes = Vec::new();
    let mut partial: Option<(Replica, String)> = None;
    for attempt in 0..12 {
        let delay = match fixed.get(attempt) {
            Some(d) => *d,
            None if partial.is_some() => break,
            None => match all_at {
                Some(hi) => (nothing_at + hi) / 2,
                None => nothing_at.max(100) * 2,
            },
        };
        let target = Replica::init("tester", "target");
        let own = id_of(&target.list("user")[0]).to_string();
        let ended = merge_killed_after(&target, &src, Duration::from_millis(delay));
        if let Some(status) = ended {
            assert!(status.success(), "merge-from failed on its own: {status}");
        }

        // The replica opens, and its projections are what the documents say: rebuilding
        // them from the documents changes nothing a user can read.
        let before = snapshot(&target);
        let reindexed = target.json(&["reindex"]);
        assert_eq!(
            reindexed["records"].as_u64(),
            u64::try_from(records(&before)).ok(),
            "after a kill at {delay} ms, every readable document is listed once: {reindexed}"
        );
        let after = snapshot(&target);
        assert_eq!(
            before, after,
            "after a kill at {delay} ms the projections differed from the documents"
        );

        let mine = without_user(after, &own);
        let progress = if mine == source {
            Progress::All
        } else if records(&mine) == 0 {
            Progress::Nothing
        } else {
            Progress::Part
        };
        if ended.is_some() {
            assert_eq!(progress, Progress::All, "a merge that finished took all");
        }
        outcomes.push((delay, ended.is_none(), progress, records(&mine)));
        match progress {
            Progress::Nothing => nothing_at = nothing_at.max(delay),
            Progress::All => all_at = Some(all_at.map_or(delay, |hi| hi.min(delay))),
            Progress::Part => {
                if partial.is_none() {
                    partial = Some((target, own));
                }
            }
        }
    }
    eprintln!("kills (delay ms, killed, progress, records): {outcomes:?}");
    let Some((target, own)) = partial else {
        panic!(
            "no kill landed between two committed batches of merge-from (it should apply \
             changes in bounded batches): {outcomes:?}"
        );
    };

    // Merging again finishes the job: the target holds exactly the source's records.
    let report = target.merge_from(&src);
    assert!(
        report["into_this"]["applied"].as_u64() > Some(0),
        "the rest arrived: {report}"
    );
    assert_eq!(without_user(snapshot(&target), &own), source);
    assert_eq!(
        records(&snapshot(&target)),
        source_records + 1,
        "the source's records and the target's own user"
    );
    let again = target.merge_from(&src);
    assert_eq!(again["into_this"]["applied"], 0, "{again}");
    eprintln!(
        "killed_merge_leaves_replica_consistent: {:.1} s (seeding {:.1} s)",
        started.elapsed().as_secs_f64(),
        seeded.as_secs_f64()
    );
}
