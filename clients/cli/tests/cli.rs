//! The real `crm` binary on real replica files: every command, and the bad inputs that must
//! fail with a one-line error, a stable exit code, and an untouched replica.

mod common;

use assert_cmd::Command;
use common::Replica;
use std::path::Path;

use serde_json::Value;

#[test]
fn account_life_cycle() {
    let r = Replica::new("李雷", "laptop");
    let id = r.add(
        "account",
        &[
            "--name",
            "深圳星光贸易有限公司",
            "--set",
            "industry=retail",
            "--tag",
            "vip",
            "--notes",
            "首次拜访",
        ],
    );
    let shown = r.json(&["account", "show", &id]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["kind"], "account");
    assert_eq!(shown["name"], "深圳星光贸易有限公司");
    assert_eq!(shown["industry"], "retail");
    assert_eq!(shown["tags"], serde_json::json!(["vip"]));
    assert_eq!(shown["notes"], "首次拜访");
    assert_eq!(shown["archived"], false);
    assert!(shown.get("conflicts").is_none());

    let edited = r.json(&[
        "account",
        "edit",
        &id,
        "--set",
        "grade=key",
        "--unset",
        "industry",
        "--tag",
        "north",
        "--untag",
        "vip",
        "--append-notes",
        "second visit",
    ]);
    assert_eq!(edited["grade"], "key");
    assert!(edited.get("industry").is_none());
    assert_eq!(edited["tags"], serde_json::json!(["north"]));
    assert_eq!(edited["notes"], "首次拜访\nsecond visit");

    // Human-readable output is a table with the values in it.
    let table = r.ok(&["account", "show", &id]);
    assert!(
        table.contains("深圳星光贸易有限公司") && table.contains("north"),
        "{table}"
    );

    let list = r.json(&["account", "list", "--grade", "key"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(
        r.json(&["account", "list", "--grade", "vip"]),
        serde_json::json!([])
    );
    assert_eq!(
        r.json(&["account", "list", "--tag", "north"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    assert_eq!(
        r.json(&["account", "list", "--where", "name~星光"])
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let search = r.json(&["search", "星光"]);
    assert_eq!(search[0]["id"], id.as_str());
    assert_eq!(r.json(&["search", "second visit"])[0]["id"], id.as_str());

    r.ok(&["account", "archive", &id]);
    assert_eq!(r.json(&["account", "list"]), serde_json::json!([]));
    let archived = r.json(&["account", "list", "--archived"]);
    assert_eq!(archived[0]["archived"], true);
    assert_eq!(r.json(&["search", "星光"]), serde_json::json!([]));
    r.ok(&["account", "restore", &id]);
    assert_eq!(
        r.json(&["account", "list"]).as_array().map(Vec::len),
        Some(1)
    );

    let history = r.json(&["history", &id]);
    let entries = history.as_array().expect("array");
    assert_eq!(
        entries.len(),
        4,
        "create, edit, archive, restore: {history}"
    );
    assert_eq!(entries[0]["created"], true);
    assert_eq!(entries[0]["user"], "李雷");
    assert_eq!(entries[0]["device"], "laptop");
    let edit = &entries[1]["changes"];
    assert!(
        edit.as_array()
            .expect("changes")
            .iter()
            .any(|c| c["field"] == "grade" && c["old"] == "normal" && c["new"] == "key"),
        "{edit}"
    );
    let text = r.ok(&["history", &id]);
    assert!(text.contains("grade: normal → key"), "{text}");
}

#[test]
fn list_sorts_limits_and_filters_by_comparison() {
    let r = Replica::new("alice", "laptop");
    let acme = r.add("account", &["--name", "ACME"]);
    for (name, amount, stage) in [
        ("small", "1000", "prospecting"),
        ("medium", "25000.50", "proposal"),
        ("large", "90000", "negotiation"),
    ] {
        r.add(
            "deal",
            &[
                "--name",
                name,
                "--amount",
                amount,
                "--stage",
                stage,
                "--account",
                &acme,
            ],
        );
    }
    let by_amount = r.json(&[
        "opportunity",
        "list",
        "--sort",
        "amount",
        "--desc",
        "--limit",
        "2",
    ]);
    let names: Vec<&str> = by_amount
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, ["large", "medium"]);
    let big = r.json(&["opportunity", "list", "--where", "amount>=25000"]);
    assert_eq!(big.as_array().map(Vec::len), Some(2));
    assert_eq!(
        r.json(&["opportunity", "list", "--stage", "proposal"])[0]["amount"],
        "25000.50"
    );
    let page2 = r.json(&[
        "opportunity",
        "list",
        "--sort",
        "name",
        "--limit",
        "1",
        "--offset",
        "1",
    ]);
    assert_eq!(page2[0]["name"], "medium");
    let by_account = r.json(&["opportunity", "list", "--account", &acme]);
    assert_eq!(by_account.as_array().map(Vec::len), Some(3));
    // Stage moves are recorded in the stage history.
    let id = by_amount[0]["id"].as_str().expect("id").to_string();
    let moved = r.json(&["opportunity", "edit", &id, "--stage", "closed_won"]);
    let stages: Vec<&str> = moved["history"]["stage"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["value"].as_str())
        .collect();
    assert_eq!(stages, ["negotiation", "closed_won"]);
}

#[test]
fn every_kind_has_add_list_show_edit_archive_restore() {
    let r = Replica::new("alice", "laptop");
    let account = r.add("account", &["--name", "ACME"]);
    let other = r.add("account", &["--name", "ACME Shenzhen"]);
    let contact = r.add(
        "contact",
        &[
            "--last-name",
            "王",
            "--first-name",
            "芳",
            "--account",
            &account,
            "--set",
            "emails=wang@acme.cn",
        ],
    );
    let lead = r.add(
        "lead",
        &[
            "--person-name",
            "Tom",
            "--email",
            "tom@example.com",
            "--source",
            "web_form",
        ],
    );
    let deal = r.add(
        "opportunity",
        &[
            "--name",
            "ACME renewal",
            "--account",
            &account,
            "--primary-contact",
            &contact,
        ],
    );
    let campaign = r.add("campaign", &["--name", "Spring expo", "--budget", "5000"]);
    let product = r.add(
        "product",
        &["--code", "P-1", "--name", "Seat", "--unit-price", "99.90"],
    );
    let ticket = r.add(
        "ticket",
        &[
            "--subject",
            "Printer jam",
            "--account",
            &account,
            "--contact",
            &contact,
            "--priority",
            "high",
        ],
    );
    let article = r.add("article", &["--title", "Clearing a jam"]);
    let survey = r.add(
        "survey",
        &["--name", "CSAT", "--questions", r#"["How did we do?"]"#],
    );
    let user = r.add(
        "user",
        &[
            "--name",
            "Bob",
            "--email",
            "bob@example.com",
            "--role",
            "support_agent",
        ],
    );
    let team = r.add("team", &["--name", "Support", "--manager", &user]);
    let items = format!(r#"[{{"product":"{product}","qty":"2","unit_price":"99.90"}}]"#);
    let quote = r.add(
        "quote",
        &[
            "--opportunity",
            &deal,
            "--account",
            &account,
            "--line-items",
            &items,
        ],
    );
    let contract = r.add(
        "contract",
        &[
            "--account",
            &account,
            "--quote",
            &quote,
            "--amount",
            "199.80",
        ],
    );
    let cases: Vec<(&str, String)> = vec![
        (
            "account-relation",
            r.add(
                "account-relation",
                &[
                    "--from",
                    &other,
                    "--relation",
                    "subsidiary_of",
                    "--to",
                    &account,
                ],
            ),
        ),
        (
            "activity",
            r.add(
                "activity",
                &[
                    "--type",
                    "call",
                    "--subject",
                    "Intro call",
                    "--set",
                    &format!("targets={account},{contact}"),
                ],
            ),
        ),
        (
            "campaign-member",
            r.add(
                "campaign-member",
                &["--campaign", &campaign, "--member", &lead],
            ),
        ),
        (
            "survey-response",
            r.add(
                "survey-response",
                &[
                    "--survey",
                    &survey,
                    "--respondent",
                    &contact,
                    "--score",
                    "5",
                ],
            ),
        ),
        (
            "order",
            r.add("order", &["--account", &account, "--contract", &contract]),
        ),
        ("team", team),
        ("ticket", ticket.clone()),
        ("article", article),
        ("quote", quote),
        ("contract", contract),
        ("product", product),
        ("campaign", campaign),
        ("lead", lead),
        ("contact", contact),
        ("opportunity", deal),
        ("user", user),
    ];
    for (kind, id) in &cases {
        let shown = r.json(&[kind, "show", id]);
        assert_eq!(shown["id"], id.as_str(), "{kind}");
        let listed = r.json(&[kind, "list"]);
        assert!(
            listed
                .as_array()
                .expect("array")
                .iter()
                .any(|x| x["id"] == id.as_str()),
            "{kind}"
        );
        r.ok(&[kind, "edit", id, "--tag", "checked"]);
        assert_eq!(
            r.json(&[kind, "show", id])["tags"],
            serde_json::json!(["checked"]),
            "{kind}"
        );
        r.ok(&[kind, "archive", id]);
        assert!(
            r.json(&[kind, "list"])
                .as_array()
                .expect("array")
                .iter()
                .all(|x| x["id"] != id.as_str()),
            "{kind}"
        );
        r.ok(&[kind, "restore", id]);
        assert_eq!(r.json(&["show", id])["archived"], false, "{kind}");
    }
    // Provisional numbers for tickets, quotes, contracts and orders.
    let t = r.json(&["ticket", "show", &ticket]);
    assert_eq!(t["number"], "T-laptop-1");
    assert!(t["opened_at"].is_string());
    assert_eq!(t["status"], "new");
}

#[test]
fn bad_input_fails_cleanly_and_changes_nothing() {
    let r = Replica::new("alice", "laptop");
    let account = r.add("account", &["--name", "ACME", "--tag", "vip"]);
    let contact = r.add("contact", &["--last-name", "Smith", "--account", &account]);
    let before = r.snapshot();
    let missing = "0192f0c4-1d2e-7a3b-9c4d-5e6f7a8b9c0d";
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (vec!["spaceship", "list"], 2, "spaceship"),
        (vec!["account", "add", "--set", "colour=red"], 2, "colour"),
        (
            vec!["account", "add", "--set", "name=X", "--set", "grade=gold"],
            2,
            "grade",
        ),
        (
            vec!["account", "add", "--industry", "x"],
            2,
            "name is required",
        ),
        (
            vec![
                "contact",
                "add",
                "--last-name",
                "X",
                "--set",
                "emails=not-an-email",
            ],
            2,
            "email",
        ),
        (
            vec!["lead", "add", "--person-name", "X", "--email", "a@b"],
            2,
            "email",
        ),
        (
            vec!["opportunity", "add", "--name", "X", "--probability", "140"],
            2,
            "probability",
        ),
        (
            vec!["opportunity", "add", "--name", "X", "--account", missing],
            2,
            "no such record",
        ),
        (
            vec!["opportunity", "add", "--name", "X", "--account", &contact],
            2,
            "must refer to a account",
        ),
        (
            vec!["account", "show", "not-an-id"],
            2,
            "malformed record id",
        ),
        (vec!["account", "show", missing], 2, "no record"),
        (
            vec!["account", "edit", missing, "--tag", "x"],
            2,
            "no record",
        ),
        (vec!["contact", "show", &account], 2, "is a account"),
        (
            vec!["account", "edit", &account, "--unset", "name"],
            2,
            "required",
        ),
        (vec!["account", "edit", &account], 2, "nothing to change"),
        (
            vec!["account", "list", "--where", "colour=red"],
            2,
            "colour",
        ),
        (vec!["account", "list", "--sort", "colour"], 2, "sort"),
        (vec!["resolve", &account, "grade", "vip"], 2, "no conflict"),
        (vec!["history", missing], 2, "no record"),
        (
            vec!["account", "add", "--name", "X", "--tag", "a,b"],
            2,
            "tag",
        ),
        (vec!["account", "frobnicate"], 2, ""),
    ];
    for (args, code, needle) in cases {
        let err = r.fails(&args, code);
        assert_eq!(
            err.trim().lines().count(),
            1,
            "one line for {args:?}: {err}"
        );
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert_eq!(r.snapshot(), before);
}

#[test]
fn unusable_data_directories_are_refused() {
    let empty = tempfile::tempdir().expect("tempdir");
    let run = |dir: &Path, args: &[&str]| {
        Command::cargo_bin("crm")
            .expect("crm binary")
            .env_remove("CRM_HOME")
            .arg("--data-dir")
            .arg(dir)
            .args(args)
            .assert()
            .get_output()
            .clone()
    };
    let out = run(empty.path(), &["account", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a CRM replica"));

    let corrupt = tempfile::tempdir().expect("tempdir");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(corrupt.path().join("replica.db"), &garbage).expect("write");
    let out = run(corrupt.path(), &["account", "list"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("corrupted"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read(corrupt.path().join("replica.db")).expect("read"),
        garbage
    );

    // Using CRM_HOME instead of --data-dir.
    let home = tempfile::tempdir().expect("tempdir");
    let out = Command::cargo_bin("crm")
        .expect("crm binary")
        .env("CRM_HOME", home.path())
        .args(["init", "--user", "a", "--device", "d"])
        .assert()
        .get_output()
        .clone();
    assert!(out.status.success());
    assert!(home.path().join("replica.db").exists());
    let again = run(home.path(), &["init", "--user", "a", "--device", "d"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already"));
}

#[test]
fn merge_from_exchanges_work_and_conflicts_resolve_everywhere() {
    let a = Replica::new("alice", "laptop");
    let b = Replica::new("bob", "phone");
    let id = a.add("account", &["--name", "ACME"]);
    let b_path = b.path().to_str().expect("utf-8 path").to_string();
    let a_path = a.path().to_str().expect("utf-8 path").to_string();
    let report = a.json(&["merge-from", &b_path, "--both-ways"]);
    assert!(
        report["into_other"]["applied"].as_u64() >= Some(1),
        "{report}"
    );
    assert_eq!(b.json(&["account", "show", &id])["name"], "ACME");

    // Offline edits: different fields, the same field, tags, notes.
    a.ok(&[
        "account",
        "edit",
        &id,
        "--industry",
        "retail",
        "--grade",
        "vip",
        "--tag",
        "north",
        "--notes",
        "from alice",
    ]);
    b.ok(&[
        "account",
        "edit",
        &id,
        "--website",
        "https://www.acme.cn/",
        "--grade",
        "key",
        "--tag",
        "south",
        "--append-notes",
        "from bob",
    ]);
    b.ok(&["merge-from", &a_path, "--both-ways"]);
    let on_a = a.json(&["account", "show", &id]);
    let on_b = b.json(&["account", "show", &id]);
    assert_eq!(on_a, on_b);
    assert_eq!(on_a["industry"], "retail");
    assert_eq!(on_a["website"], "acme.cn");
    assert_eq!(on_a["tags"], serde_json::json!(["north", "south"]));
    let notes = on_a["notes"].as_str().expect("notes");
    assert!(
        notes.contains("from alice") && notes.contains("from bob"),
        "{notes}"
    );
    let grades = on_a["conflicts"]["grade"]
        .as_array()
        .expect("grade conflict")
        .clone();
    assert_eq!(grades.len(), 2);
    assert_eq!(grades[0], on_a["grade"]);
    for r in [&a, &b] {
        let c = r.json(&["conflicts"]);
        assert_eq!(c[0]["field"], "grade");
        assert_eq!(
            r.json(&["conflicts", &id]).as_array().map(Vec::len),
            Some(1)
        );
    }
    let table = a.ok(&["conflicts"]);
    assert!(
        table.contains("grade") && table.contains("vip") && table.contains("key"),
        "{table}"
    );

    b.ok(&["resolve", &id, "grade", "vip"]);
    a.ok(&["merge-from", &b_path]);
    for r in [&a, &b] {
        assert_eq!(r.json(&["conflicts"]), serde_json::json!([]));
        assert_eq!(r.json(&["account", "show", &id])["grade"], "vip");
    }
    let history = a.json(&["history", &id]);
    let devices: Vec<&str> = history
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|e| e["device"].as_str())
        .collect();
    assert!(
        devices.contains(&"laptop") && devices.contains(&"phone"),
        "{devices:?}"
    );
    assert_eq!(history.as_array().map(Vec::len), Some(4));
    let merged_again = a.json(&["merge-from", &b_path]);
    assert_eq!(merged_again["into_this"]["applied"], 0);
    assert!(a.fails(&["merge-from", &a_path], 2).contains("itself"));
}

#[test]
fn reindex_rebuilds_identical_projections() {
    let r = Replica::new("alice", "laptop");
    for i in 0..5 {
        r.add(
            "account",
            &["--name", &format!("Account {i}"), "--tag", "t"],
        );
    }
    let before = r.snapshot();
    let out = r.json(&["reindex"]);
    assert_eq!(out["records"], 6, "five accounts and the user: {out}");
    assert_eq!(r.snapshot(), before);
}

#[test]
fn schema_and_completions_and_help() {
    let r = Replica::new("alice", "laptop");
    let fields = r.json(&["schema", "opportunity"]);
    let stage = fields
        .as_array()
        .expect("array")
        .iter()
        .find(|f| f["name"] == "stage")
        .expect("stage field")
        .clone();
    assert_eq!(stage["merge"], "L+A");
    assert!(r.ok(&["completions", "bash"]).contains("crm"));
    assert!(r.ok(&["account", "add", "--help"]).contains("--industry"));
}

#[test]
fn foreign_and_newer_replicas_are_refused_untouched() {
    let foreign = tempfile::tempdir().expect("tempdir");
    let path = foreign.path().join("replica.db");
    {
        let conn = rusqlite::Connection::open(&path).expect("open");
        conn.execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL); INSERT INTO invoices VALUES (1, 9.5);")
            .expect("create");
    }
    let bytes = std::fs::read(&path).expect("read");
    let out = Command::cargo_bin("crm")
        .expect("crm binary")
        .arg("--data-dir")
        .arg(foreign.path())
        .args(["account", "list"])
        .assert()
        .get_output()
        .clone();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another application"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read(&path).expect("read"),
        bytes,
        "foreign file must not be modified"
    );

    let r = Replica::new("alice", "laptop");
    let id = r.add("account", &["--name", "ACME"]);
    {
        let conn = rusqlite::Connection::open(r.path().join("replica.db")).expect("open");
        conn.pragma_update(None, "user_version", 99)
            .expect("bump version");
    }
    let err = r.fails(&["account", "show", &id], 1);
    assert!(err.contains("newer version"), "{err}");
    let err = r.fails(&["account", "edit", &id, "--tag", "x"], 1);
    assert!(err.contains("newer version"), "{err}");
    {
        let conn = rusqlite::Connection::open(r.path().join("replica.db")).expect("open");
        conn.pragma_update(None, "user_version", 1)
            .expect("restore version");
    }
    assert_eq!(
        r.json(&["account", "show", &id])["tags"],
        serde_json::json!([])
    );
}

#[test]
fn demo_syncs_two_devices_through_an_embedded_relay() {
    let base = tempfile::tempdir().expect("tempdir");
    let out = Command::cargo_bin("crm")
        .expect("crm binary")
        .env_remove("CRM_HOME")
        .arg("--data-dir")
        .arg(base.path())
        .args(["demo", "--accounts", "12", "--json"])
        .assert()
        .get_output()
        .clone();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let demo: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(demo["records"].as_u64() > Some(60), "{demo}");
    let pushed = demo["push"]["changes"].as_u64().expect("pushed");
    assert!(pushed > 60);
    // The phone pulls what the laptop pushed, and alice's user record, which the relay
    // wrote when the demo added her.
    assert_eq!(
        demo["fresh_device_pull"]["changes"].as_u64(),
        Some(pushed + 1)
    );
    let list = |device: &str, kind: &str| -> Value {
        let out = Command::cargo_bin("crm")
            .expect("crm binary")
            .arg("--data-dir")
            .arg(base.path().join(device))
            .args([
                kind,
                "list",
                "--archived",
                "--limit",
                "100000",
                "--sort",
                "title",
                "--json",
            ])
            .assert()
            .get_output()
            .clone();
        serde_json::from_slice(&out.stdout).expect("json")
    };
    for kind in ["account", "contact", "opportunity", "ticket"] {
        assert_eq!(list("laptop", kind), list("phone", kind), "{kind}");
    }
    let seeded = Replica::new("alice", "laptop");
    let report = seeded.json(&["seed", "--accounts", "3"]);
    assert!(report["records"].as_u64() > Some(10), "{report}");
    assert_eq!(
        seeded.json(&["account", "list"]).as_array().map(Vec::len),
        Some(3)
    );
}
