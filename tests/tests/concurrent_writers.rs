//! Several `crm` processes writing one replica at the same time (DESIGN.md §2, the pitfall):
//! every write must succeed, none may be lost, and no spurious conflict may appear.

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::time::Instant;

use crm_tests::{Replica, expect_success};
use serde_json::Value;

const EDITS: usize = 40;

/// Runs one worker per entry of `workers` at the same time; worker `w` runs `EDITS`
/// sequential `crm account edit ID ARGS(w, i)` processes against the same replica. Every
/// invocation must exit 0.
fn race(r: &Replica, id: &str, workers: &[&str], args: fn(&str, usize) -> Vec<String>) {
    let start = Barrier::new(workers.len());
    std::thread::scope(|s| {
        let handles: Vec<_> = workers
            .iter()
            .map(|&w| {
                let start = &start;
                s.spawn(move || {
                    start.wait();
                    for i in 0..EDITS {
                        let args = args(w, i);
                        let mut all = vec!["account", "edit", id];
                        all.extend(args.iter().map(String::as_str));
                        let out = r.run(&all);
                        expect_success(&format!("{all:?} (worker {w}, edit {i})"), &out);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("a worker panicked");
        }
    });
}

fn history_len(r: &Replica, id: &str) -> usize {
    r.json(&["history", id])
        .as_array()
        .expect("history is an array")
        .len()
}

#[test]
fn two_processes_edit_one_record() {
    let started = Instant::now();
    let r = Replica::init("alice", "laptop");
    let id = r.add("account", &["--name", "ACME"]);

    // Each worker its own custom field, tags and notes lines.
    race(&r, &id, &["A", "B"], |w, i| {
        vec![
            "--set".into(),
            format!("custom.counter_{w}={i}"),
            "--tag".into(),
            format!("{}{i}", w.to_lowercase()),
            "--append-notes".into(),
            format!("{w} {i}"),
        ]
    });

    assert_eq!(
        history_len(&r, &id),
        1 + 2 * EDITS,
        "the creation and every edit of both workers are in the history"
    );
    let shown = r.json(&["account", "show", &id]);
    assert_eq!(
        shown["custom"]["counter_A"],
        (EDITS - 1).to_string(),
        "{shown}"
    );
    assert_eq!(
        shown["custom"]["counter_B"],
        (EDITS - 1).to_string(),
        "{shown}"
    );
    let tags: BTreeSet<&str> = shown["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let expected: BTreeSet<String> = (0..EDITS)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    assert_eq!(
        tags,
        expected.iter().map(String::as_str).collect(),
        "all {} tags",
        2 * EDITS
    );
    let notes: Vec<&str> = shown["notes"].as_str().expect("notes").lines().collect();
    assert_eq!(notes.len(), 2 * EDITS, "one line per append: {notes:?}");
    for w in ["A", "B"] {
        // Each worker's lines are all there, in the order it appended them.
        let mine: Vec<&str> = notes
            .iter()
            .copied()
            .filter(|l| l.starts_with(&format!("{w} ")))
            .collect();
        let want: Vec<String> = (0..EDITS).map(|i| format!("{w} {i}")).collect();
        assert_eq!(mine, want, "worker {w}'s notes lines");
    }
    // The workers really ran at the same time: their appends interleave.
    let switches = notes
        .windows(2)
        .filter(|p| p[0].as_bytes()[0] != p[1].as_bytes()[0])
        .count();
    assert!(
        switches > 1,
        "one worker ran before the other, so nothing was concurrent: {notes:?}"
    );
    assert!(shown.get("conflicts").is_none(), "{shown}");
    assert_eq!(r.json(&["conflicts"]), serde_json::json!([]));
    // The projection agrees with the document.
    let listed = r.list("account");
    let row = listed
        .iter()
        .find(|a| a["id"] == id.as_str())
        .expect("listed");
    assert_eq!(row["tags"], shown["tags"]);
    eprintln!(
        "two_processes_edit_one_record: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn two_processes_set_the_same_field() {
    let started = Instant::now();
    let r = Replica::init("alice", "laptop");
    let id = r.add("account", &["--name", "ACME"]);

    race(&r, &id, &["A", "B"], |w, i| {
        vec!["--industry".into(), format!("w{w}{i}")]
    });

    let history = r.json(&["history", &id]);
    let entries = history.as_array().expect("history is an array");
    assert_eq!(entries.len(), 1 + 2 * EDITS);
    // The writes were serialised: each one saw the one before it, so the history is one
    // chain of industry changes, old value = the previous new value, holding all 80 values.
    let mut previous = Value::Null;
    let mut written = BTreeSet::new();
    let mut switches = 0;
    for entry in &entries[1..] {
        let changes = entry["changes"].as_array().expect("changes");
        assert_eq!(changes.len(), 1, "{entry}");
        assert_eq!(changes[0]["field"], "industry", "{entry}");
        assert_eq!(
            changes[0]["old"], previous,
            "an edit did not see the one before it: {entry}"
        );
        let worker = |v: &Value| v.as_str().and_then(|s| s.get(..2)).map(String::from);
        if previous.is_string() && worker(&previous) != worker(&changes[0]["new"]) {
            switches += 1;
        }
        previous = changes[0]["new"].clone();
        written.insert(previous.as_str().expect("a value").to_string());
    }
    let all: BTreeSet<String> = ["A", "B"]
        .iter()
        .flat_map(|w| (0..EDITS).map(move |i| format!("w{w}{i}")))
        .collect();
    assert_eq!(written, all);
    assert!(
        switches > 1,
        "one worker ran before the other, so nothing was concurrent: {history}"
    );
    let shown = r.json(&["account", "show", &id]);
    assert_eq!(shown["industry"], previous, "the last change shows");
    let last = [format!("wA{}", EDITS - 1), format!("wB{}", EDITS - 1)];
    let industry = shown["industry"].as_str().expect("industry");
    assert!(
        last.iter().any(|l| l == industry),
        "the final industry {industry:?} is one of the two last values {last:?}"
    );
    // The writes were serialised: each saw the one before, so nothing is concurrent.
    assert!(shown.get("conflicts").is_none(), "{shown}");
    assert_eq!(r.json(&["conflicts"]), serde_json::json!([]));
    let row = r
        .list("account")
        .into_iter()
        .find(|a| a["id"] == id.as_str())
        .expect("listed");
    assert_eq!(row["industry"], industry);
    eprintln!(
        "two_processes_set_the_same_field: {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
