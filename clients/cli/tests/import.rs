//! `crm import`, `crm export`, `crm duplicates` and `crm merge` through the real binary,
//! including two devices that create the same customer offline, sync with `crm merge-from`,
//! and merge the duplicates.

mod common;

use common::Replica;

use serde_json::Value;

const CUSTOMERS: &str = "客户名称,邮箱,手机,网址,行业,标签,备注\n\
深圳星光贸易有限公司,info@star.cn,138 0013 8000,star.cn,零售,\"vip,华南\",老客户\n\
北京远景科技,bad-email,,,软件,,\n\
深圳星光贸易,INFO@star.cn,,,,,\n\
上海海鸥物流,ops@seagull.cn,,seagull.cn,物流,,\n";

#[test]
fn import_dry_run_templates_errors_export_and_round_trip() {
    let r = Replica::new("alice", "laptop");
    let file = r.path().join("客户.csv");
    let (gbk, _, _) = encoding_rs::GBK.encode(CUSTOMERS);
    std::fs::write(&file, &gbk).expect("write");
    let file_s = file.to_str().expect("utf-8 path");

    // The dry run plans every row and writes nothing.
    let plan = r.json(&[
        "import",
        "account",
        file_s,
        "--dry-run",
        "--save-template",
        "erp",
    ]);
    assert_eq!(plan["summary"]["created"], 2, "{plan}");
    assert_eq!(plan["summary"]["errors"], 1);
    assert_eq!(plan["summary"]["duplicates"], 1);
    assert_eq!(plan["rows"].as_array().map(Vec::len), Some(4));
    assert_eq!(plan["rows"][1]["action"], "error");
    assert_eq!(plan["rows"][1]["errors"][0]["column"], "邮箱");
    assert_eq!(plan["rows"][2]["action"], "duplicate");
    assert!(r.path().join("import-templates/erp.json").is_file());
    assert_eq!(
        r.json(&["account", "list"]).as_array().map(Vec::len),
        Some(0)
    );

    // The real run, with the saved template and an explicit error report.
    let errors = r.path().join("errors.csv");
    let errors_s = errors.to_str().expect("utf-8 path");
    let done = r.json(&[
        "import",
        "account",
        file_s,
        "--template",
        "erp",
        "--errors",
        errors_s,
    ]);
    assert_eq!(done["summary"]["created"], 2, "{done}");
    let report = std::fs::read_to_string(&errors).expect("report");
    assert!(report.contains("3,邮箱,bad-email,"), "{report}");
    let accounts = r.json(&["account", "list", "--sort", "title"]);
    assert_eq!(accounts[0]["name"], "上海海鸥物流");
    assert_eq!(accounts[1]["name"], "深圳星光贸易有限公司");
    assert_eq!(accounts[1]["tags"], serde_json::json!(["vip", "华南"]));

    // Table output without --json names the counts and the report.
    let text = r.ok(&["import", "account", file_s, "--dry-run"]);
    assert!(text.contains("dry run"), "{text}");
    assert!(text.contains("3 skipped as duplicates"), "{text}");

    // Export as CSV with a BOM, then import it into a second replica: same records.
    let out = r.path().join("export.csv");
    let out_s = out.to_str().expect("utf-8 path");
    r.ok(&[
        "export", "account", "--format", "csv", "--bom", "--output", out_s,
    ]);
    let csv = std::fs::read_to_string(&out).expect("export");
    assert!(csv.starts_with('\u{FEFF}'));
    assert!(
        csv.lines()
            .next()
            .is_some_and(|h| h.contains(",name,") && h.contains("emails"))
    );
    let other = Replica::new("bob", "phone");
    let back = other.json(&["import", "account", out_s]);
    assert_eq!(back["summary"]["created"], 2, "{back}");
    let names = |v: &Value| {
        let mut n: Vec<String> = v
            .as_array()
            .expect("array")
            .iter()
            .map(|a| a["name"].as_str().unwrap_or_default().to_string())
            .collect();
        n.sort();
        n
    };
    assert_eq!(names(&other.json(&["account", "list"])), names(&accounts));
    let json = r.ok(&[
        "export",
        "account",
        "--format",
        "json",
        "--where",
        "industry=零售",
    ]);
    let rows: Value = serde_json::from_str(&json).expect("json export");
    assert_eq!(rows.as_array().map(Vec::len), Some(1));

    // Bad input: one line, exit 2, nothing written.
    r.fails_in_one_line(&["import", "account", "/nonexistent.csv"], 2);
    r.fails_in_one_line(&["import", "account", file_s, "--map", "Nope=name"], 2);
    r.fails_in_one_line(&["import", "account", file_s, "--template", "missing"], 2);
    r.fails_in_one_line(&["import", "contact", file_s], 2);
    r.fails_in_one_line(&["export", "account", "--where", "colour=red"], 2);
    assert_eq!(
        r.json(&["account", "list"]).as_array().map(Vec::len),
        Some(2)
    );
}

#[test]
fn two_devices_create_the_same_customer_offline_then_find_and_merge_it() {
    let laptop = Replica::new("alice", "laptop");
    let phone = Replica::new("bob", "phone");
    let a = laptop
        .ok(&[
            "account",
            "add",
            "--name",
            "Northwind Traders Ltd",
            "--set",
            "emails=sales@northwind.com",
            "--industry",
            "wholesale",
        ])
        .trim()
        .to_string();
    let b = phone
        .ok(&[
            "account",
            "add",
            "--name",
            "northwind traders",
            "--website",
            "northwind.com",
            "--set",
            "phones=+86 21 5555 0000",
        ])
        .trim()
        .to_string();
    let contact = phone
        .ok(&["contact", "add", "--last-name", "Li", "--account", &b])
        .trim()
        .to_string();
    // The phone's copy is imported too, from a file, on the phone.
    let file = phone.path().join("more.csv");
    std::fs::write(
        &file,
        "name,email\nNORTHWIND TRADERS INC.,sales@northwind.com\n",
    )
    .expect("write");
    let imported = phone.json(&["import", "account", file.to_str().expect("path")]);
    // It matches b by name, so it is skipped as a duplicate.
    assert_eq!(imported["summary"]["duplicates"], 1, "{imported}");

    laptop.ok(&["merge-from", phone.path().to_str().expect("path")]);
    let groups = laptop.json(&["duplicates", "account"]);
    assert_eq!(groups.as_array().map(Vec::len), Some(1), "{groups}");
    let members: Vec<&str> = groups[0]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert!(members.contains(&a.as_str()) && members.contains(&b.as_str()));
    let text = laptop.ok(&["duplicates"]);
    assert!(text.contains("name:northwindtraders"), "{text}");

    laptop.fails_in_one_line(&["merge", &a, &a], 2);
    laptop.fails_in_one_line(&["merge", &a, &b, "--take", "industry"], 2);
    let merged = laptop.json(&["merge", &a, &b]);
    assert_eq!(merged["survivor"]["website"], "northwind.com", "{merged}");
    assert_eq!(merged["merge"]["repointed"][0], contact.as_str());
    let loser = laptop.json(&["show", &b]);
    assert_eq!(loser["archived"], true);
    assert_eq!(loser["merged_into"], a.as_str());
    assert_eq!(laptop.json(&["show", &contact])["account"], a.as_str());
    // The loser's history is still there, with the merge as its last change.
    let history = laptop.json(&["history", &b]);
    assert!(
        history.as_array().is_some_and(|h| h.len() >= 2),
        "{history}"
    );
    assert_eq!(
        laptop
            .json(&["duplicates", "account"])
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    // The merge syncs back to the phone as ordinary changes.
    phone.ok(&["merge-from", laptop.path().to_str().expect("path")]);
    assert_eq!(phone.json(&["show", &contact])["account"], a.as_str());
    assert_eq!(phone.json(&["show", &b])["archived"], true);
}
