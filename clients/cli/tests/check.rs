//! Issue 12, failures 1 and 5, through the real `crm` binary: `crm check` verifies a replica
//! (exit 0 clean, 1 with problems, 2 usage), and `crm merge-from` a hostile replica
//! quarantines the bad entry, says so, and merges the rest.

mod common;

use common::Replica;

fn db(r: &Replica) -> rusqlite::Connection {
    rusqlite::Connection::open(r.path().join("replica.db")).expect("open replica.db")
}

#[test]
fn crm_check_passes_a_clean_replica_and_fails_a_damaged_one() {
    let r = Replica::new("alice", "laptop");
    let id = r.add("account", &["--name", "ACME", "--tag", "vip"]);
    r.ok(&["account", "edit", &id, "--set", "industry=retail"]);
    let out = r.ok(&["check"]);
    assert!(out.contains("no problems found"), "{out}");
    let report = r.json(&["check"]);
    assert_eq!(report["ok"], true);
    assert_eq!(report["documents"], 2);
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(0));

    // A flipped bit in a change: exit 1, the record and the change named.
    crm_tests::flip_newest_change_of(r.path(), &id);
    let out = r.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("damaged_change"), "{stdout}");
    assert!(stdout.contains(&id), "{stdout}");
    assert!(
        stderr.starts_with("error: the replica has 1 problem"),
        "{stderr}"
    );
    let out = r.run(&["check", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["ok"], false);
    assert_eq!(report["problems"][0]["kind"], "damaged_change");
    assert_eq!(report["problems"][0]["record"], id.as_str());

    r.fails(&["check", "extra"], 2);
}

#[test]
fn crm_check_reports_a_tampered_projection_and_reindex_repairs_it() {
    let r = Replica::new("alice", "laptop");
    let id = r.add("account", &["--name", "ACME"]);
    db(&r)
        .execute(
            "UPDATE rec_account SET f_industry = 'tampered' WHERE id = ?1",
            [&id],
        )
        .expect("tamper");
    let out = r.run(&["check"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("f_industry"), "{stdout}");
    assert!(stdout.contains("crm reindex"), "{stdout}");
    r.ok(&["reindex"]);
    r.ok(&["check"]);
}

/// A replica holding a change of record X filed under record Y (what a poisoned relay log
/// looks like) used to make `merge-from` fail whole. Now the bad entry is quarantined with a
/// warning, everything else merges, and `crm status` and `crm check` show it.
#[test]
fn merge_from_a_hostile_replica_quarantines_the_bad_entry() {
    let hostile = Replica::new("mallory", "laptop");
    let x = hostile.add("account", &["--name", "X Ltd"]);
    let y = hostile.add("account", &["--name", "Y Ltd"]);
    let z = hostile.add("account", &["--name", "Z Ltd"]);
    // File X's creating change under Y.
    db(&hostile)
        .execute(
            "UPDATE changes SET docno = (SELECT docno FROM documents WHERE id = ?2)
             WHERE docno = (SELECT docno FROM documents WHERE id = ?1)",
            [&x, &y],
        )
        .expect("poison");

    let me = Replica::new("bob", "phone");
    let out = me.run(&["merge-from", hostile.path_str(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.matches("warning: quarantined").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains(&y), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let quarantined = &report["into_this"]["quarantined"];
    assert_eq!(quarantined.as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(quarantined[0]["record"], y.as_str());
    assert_eq!(quarantined[0]["problem"], "other_record");
    assert_eq!(quarantined[0]["origin"], "replica");

    assert_eq!(me.json(&["show", &y])["name"], "Y Ltd");
    assert_eq!(me.json(&["show", &z])["name"], "Z Ltd");
    me.fails(&["show", &x], 2);
    assert_eq!(me.json(&["status"])["quarantined"], 1);
    let check = me.json(&["check"]);
    assert_eq!(check["ok"], true);
    assert_eq!(check["quarantined"].as_array().map(Vec::len), Some(1));
}
