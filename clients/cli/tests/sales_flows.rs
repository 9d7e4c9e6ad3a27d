//! The sales and activity workflows through the real `crm` binary: lead → qualified →
//! converted → stages → closed_won → quote → contract → order, with steps taken on a second
//! replica that is offline and merged later; reminders and birthdays; and bad input that must
//! exit 2 with one clear line and change nothing.

mod common;

use common::{Replica, id};

use serde_json::Value;

/// What a refused command must leave as it was.
const WATCHED: &[&str] = &[
    "lead",
    "account",
    "contact",
    "opportunity",
    "quote",
    "contract",
    "order",
    "activity",
];

#[test]
fn lead_to_order_with_steps_on_an_offline_replica() {
    let laptop = Replica::new("alice", "laptop").watching(WATCHED);
    let phone = Replica::new("bob", "phone").watching(WATCHED);
    let seat = id(&laptop.json(&[
        "product",
        "add",
        "--code",
        "SEAT",
        "--name",
        "座席许可",
        "--unit-price",
        "100.00",
    ]));

    // Capture, with the duplicate check.
    let lead = laptop.json(&[
        "lead",
        "capture",
        "--person-name",
        "王芳",
        "--company-name",
        "深圳星光贸易有限公司",
        "--email",
        "wang@xg.cn",
        "--phone",
        "+86 755 1234 5678",
        "--source",
        "trade_show",
    ]);
    let lead_id = id(&lead);
    assert_eq!(lead["status"], "new");
    let err = laptop.refused(&[
        "lead",
        "capture",
        "--person-name",
        "Wang Fang",
        "--email",
        "WANG@xg.cn",
    ]);
    assert!(
        err.contains("by email wang@xg.cn")
            && err.contains(&lead_id)
            && err.contains("--allow-duplicate"),
        "{err}"
    );
    let err = laptop.refused(&[
        "lead",
        "capture",
        "--person-name",
        "Someone",
        "--company-name",
        "深圳星光贸易",
    ]);
    assert!(err.contains("by company"), "{err}");

    let qualified = laptop.json(&[
        "lead", "qualify", &lead_id, "--rating", "hot", "--score", "80",
    ]);
    assert_eq!(qualified["status"], "qualified");
    assert_eq!(qualified["rating"], "hot");
    assert_eq!(qualified["score"], 80);

    // The phone gets the lead, then works offline: converts it, moves the deal, plans a
    // meeting with a reminder.
    phone.merge_both_ways(&laptop);
    let c = phone.json(&[
        "lead",
        "convert",
        &lead_id,
        "--amount",
        "120000",
        "--close-date",
        "2027-03-31",
    ]);
    let (account, contact) = (
        c["account"].as_str().expect("account").to_string(),
        c["contact"].as_str().expect("contact").to_string(),
    );
    let opp = c["opportunity"].as_str().expect("opportunity").to_string();
    assert_eq!(c["created"].as_array().expect("created").len(), 3);
    let moved = phone.json(&["opportunity", "stage", &opp, "proposal"]);
    assert_eq!(moved["stage"], "proposal");
    assert_eq!(moved["probability"], 50);
    let meeting = phone.json(&[
        "activity",
        "log",
        "meeting",
        "--subject",
        "方案演示",
        "--about",
        &opp,
        "--about",
        &contact,
        "--start",
        "2099-01-10T09:00:00Z",
        "--reminder",
        "1d",
    ]);
    assert_eq!(meeting["status"], "planned");
    assert_eq!(meeting["reminder_minutes"], 1440);

    // Back on the laptop after the merge: everything linked, the history names the phone.
    laptop.merge_both_ways(&phone);
    let lead = laptop.json(&["lead", "show", &lead_id]);
    assert_eq!(lead["status"], "converted");
    assert_eq!(lead["converted_account"], account.as_str());
    assert_eq!(lead["converted_contact"], contact.as_str());
    assert_eq!(lead["converted_opportunity"], opp.as_str());
    let contact_json = laptop.json(&["contact", "show", &contact]);
    assert_eq!(contact_json["account"], account.as_str());
    assert_eq!(contact_json["emails"], serde_json::json!(["wang@xg.cn"]));
    let deal = laptop.json(&["opportunity", "show", &opp]);
    assert_eq!(deal["account"], account.as_str());
    assert_eq!(deal["primary_contact"], contact.as_str());
    assert_eq!(deal["amount"], "120000.00");
    let stages = deal["history"]["stage"].as_array().expect("stage history");
    assert_eq!(stages.len(), 2);
    assert_eq!(stages[1]["value"], "proposal");
    assert_eq!(stages[1]["device"], "phone");
    assert_eq!(stages[1]["by"], "bob");

    let deal = laptop.json(&["deal", "stage", &opp, "negotiation", "--probability", "70"]);
    assert_eq!(deal["probability"], 70);
    let won = laptop.json(&["opportunity", "close", &opp, "--won"]);
    assert_eq!(won["stage"], "closed_won");
    assert_eq!(won["forecast_category"], "closed");
    assert!(won["closed_at"].as_str().is_some());

    // Quote → contract → order. 3 × 100.00 less 10 % = 270.00.
    let quote = laptop.json(&[
        "quote",
        "create",
        "--opportunity",
        &opp,
        "--item",
        &format!("{seat}:3:10"),
    ]);
    let quote_id = id(&quote);
    assert_eq!(quote["account"], account.as_str());
    assert_eq!(quote["line_items"][0]["unit_price"], "100.00");
    assert_eq!(quote["line_items"][0]["description"], "座席许可");
    laptop.refused(&["contract", "from-quote", &quote_id]);
    assert_eq!(laptop.json(&["quote", "send", &quote_id])["status"], "sent");
    assert_eq!(
        laptop.json(&["quote", "accept", &quote_id])["status"],
        "accepted"
    );
    let contract = laptop.json(&["contract", "from-quote", &quote_id]);
    let contract_id = id(&contract);
    assert_eq!(contract["status"], "pending_approval");
    assert_eq!(contract["amount"], "270.00");
    laptop.refused(&["order", "from-contract", &contract_id]);

    // The approval happens on the phone, offline, then merges back.
    phone.merge_both_ways(&laptop);
    let approved = phone.json(&["contract", "approve", &contract_id]);
    assert_eq!(approved["status"], "active");
    assert_eq!(approved["approver"], phone.user_id("bob").as_str());
    assert!(approved["approved_at"].as_str().is_some());
    laptop.merge_both_ways(&phone);
    let order = laptop.json(&["order", "from-contract", &contract_id]);
    assert_eq!(order["status"], "confirmed");
    assert_eq!(order["contract"], contract_id.as_str());
    assert_eq!(order["quote"], quote_id.as_str());
    assert_eq!(order["line_items"], quote["line_items"]);
    laptop.refused(&["order", "from-contract", &contract_id]);

    // The reports see it: one deal, through every stage it reached, won by alice.
    let r = laptop.json(&["report", "stage-conversion"]);
    assert_eq!(r["summary"]["deals"], 1);
    assert_eq!(r["summary"]["won"], 1);
    let r = laptop.json(&["report", "win-rate-by-owner"]);
    assert_eq!(r["rows"][0]["won"], 1);
    assert_eq!(r["rows"][0]["won_amount"], 12_000_000);
    let r = laptop.json(&["report", "lead-sources"]);
    let trade_show = r["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|row| row["source"] == "trade_show")
        .expect("trade_show row");
    assert_eq!(trade_show["converted"], 1);
    assert_eq!(trade_show["won_amount"], 12_000_000);

    // Both replicas end with the same order.
    phone.merge_both_ways(&laptop);
    let orders = phone.json(&["order", "list"]);
    assert_eq!(orders.as_array().expect("orders").len(), 1);
    assert_eq!(orders[0]["id"], order["id"]);
}

#[test]
fn bad_sales_input_exits_2_and_changes_nothing() {
    let r = Replica::new("alice", "laptop").watching(WATCHED);
    let lead = id(&r.json(&[
        "lead",
        "capture",
        "--person-name",
        "Ada",
        "--company-name",
        "Engines",
    ]));
    let c = r.json(&["lead", "convert", &lead]);
    let opp = c["opportunity"].as_str().expect("opportunity").to_string();

    let err = r.refused(&["lead", "convert", &lead]);
    assert!(err.contains("already converted"), "{err}");
    let err = r.refused(&["opportunity", "stage", &opp, "won"]);
    assert!(
        err.contains("stage") && err.contains("negotiation"),
        "{err}"
    );
    let err = r.refused(&["opportunity", "stage", &opp, "closed_won"]);
    assert!(err.contains("close"), "{err}");
    let err = r.refused(&["opportunity", "close", &opp, "--lost"]);
    assert!(err.contains("--reason"), "{err}");
    let err = r.refused(&[
        "opportunity",
        "close",
        &opp,
        "--lost",
        "--reason",
        "weather",
    ]);
    assert!(err.contains("lost_reason"), "{err}");
    r.refused(&["opportunity", "close", &opp]);
    r.refused(&["lead", "qualify", &lead, "--score", "80"]);
    r.refused(&["lead", "qualify", &opp]);
    r.refused(&[
        "quote",
        "create",
        "--opportunity",
        &opp,
        "--item",
        "nonsense",
    ]);
    r.refused(&[
        "quote",
        "create",
        "--opportunity",
        &opp,
        "--item",
        &format!("{lead}:1"),
    ]);
    r.refused(&["lead", "assign", &lead, "--round-robin", "--team", "nobody"]);
    r.refused(&["lead", "assign", "--unassigned"]);
    r.refused(&["activity", "log", "party", "--subject", "x"]);
    r.refused(&[
        "activity",
        "log",
        "task",
        "--subject",
        "x",
        "--about",
        "not-an-id",
    ]);
    r.refused(&["reminders", "--within", "soon"]);
    r.refused(&["birthdays", "--today", "yesterday"]);

    r.ok(&[
        "opportunity",
        "close",
        &opp,
        "--lost",
        "--reason",
        "competitor",
    ]);
    let err = r.refused(&["opportunity", "close", &opp, "--won"]);
    assert!(err.contains("already closed_lost"), "{err}");
    r.refused(&["opportunity", "stage", &opp, "proposal"]);
}

#[test]
fn leads_are_assigned_round_robin_and_by_source() {
    let r = Replica::new("alice", "laptop").watching(WATCHED);
    let u1 = id(&r.json(&["user", "add", "--name", "张伟"]));
    let u2 = id(&r.json(&["user", "add", "--name", "Bob"]));
    r.json(&[
        "team",
        "add",
        "--name",
        "华南",
        "--set",
        &format!("members={u1},{u2}"),
    ]);
    let leads: Vec<String> = ["web_form", "referral", "web_form"]
        .iter()
        .enumerate()
        .map(|(i, source)| {
            id(&r.json(&[
                "lead",
                "capture",
                "--person-name",
                &format!("p{i}"),
                "--source",
                source,
            ]))
        })
        .collect();
    let out = r.json(&[
        "lead",
        "assign",
        "--unassigned",
        "--round-robin",
        "--team",
        "华南",
    ]);
    let owners: Vec<&str> = out
        .as_array()
        .expect("assignments")
        .iter()
        .map(|a| a["owner"].as_str().expect("owner"))
        .collect();
    assert_eq!(owners, [u1.as_str(), u2.as_str(), u1.as_str()]);
    assert_eq!(r.json(&["lead", "show", &leads[1]])["status"], "assigned");

    let out = r.json(&[
        "lead",
        "assign",
        &leads[0],
        &leads[1],
        "--by",
        "source",
        "--rule",
        "referral=Bob",
    ]);
    assert_eq!(out[0]["owner"], Value::Null, "no rule for web_form");
    assert_eq!(out[1]["owner"], u2.as_str());
    assert_eq!(r.json(&["lead", "show", &leads[0]])["owner"], u1.as_str());
}

#[test]
fn reminders_and_birthdays_are_computed_on_the_device() {
    let r = Replica::new("alice", "laptop").watching(WATCHED);
    let account = id(&r.json(&["account", "add", "--name", "ACME"]));
    for (name, birthday) in [
        ("今天", "1980-12-20"),
        ("New Year", "1990-01-05"),
        ("Leap", "1992-02-29"),
        ("Yesterday", "1985-12-19"),
    ] {
        r.json(&[
            "contact",
            "add",
            "--last-name",
            name,
            "--birthday",
            birthday,
        ]);
    }
    let b = r.json(&["birthdays", "--today", "2026-12-20", "--within", "30d"]);
    let got: Vec<(&str, i64)> = b
        .as_array()
        .expect("birthdays")
        .iter()
        .map(|b| {
            (
                b["name"].as_str().expect("name"),
                b["days_until"].as_i64().expect("days"),
            )
        })
        .collect();
    assert_eq!(got, [("今天", 0), ("New Year", 16)]);
    let b = r.json(&["birthdays", "--today", "2027-02-20", "--within", "2w"]);
    assert_eq!(b[0]["name"], "Leap");
    assert_eq!(b[0]["next"], "2027-02-28", "29 February in a common year");

    let late = id(&r.json(&[
        "activity",
        "log",
        "task",
        "--subject",
        "send the contract",
        "--about",
        &account,
        "--due",
        "2026-03-03T09:00:00Z",
    ]));
    let call = id(&r.json(&[
        "activity",
        "log",
        "call",
        "--subject",
        "call back",
        "--about",
        &account,
        "--start",
        "2099-03-04T12:30:00Z",
        "--reminder",
        "1h",
    ]));
    let at = |t: &str| r.json(&["reminders", "--at", t, "--within", "7d"]);
    let list = at("2099-03-04T12:00:00Z");
    let states: Vec<(&str, &str)> = list
        .as_array()
        .expect("reminders")
        .iter()
        .map(|x| {
            (
                x["id"].as_str().expect("id"),
                x["state"].as_str().expect("state"),
            )
        })
        .collect();
    assert_eq!(states, [(late.as_str(), "overdue"), (call.as_str(), "due")]);
    let list = at("2099-02-20T12:00:00Z");
    assert_eq!(
        list.as_array().expect("reminders").len(),
        1,
        "the call is weeks away"
    );

    let done = r.json(&["activity", "complete", &late, "--outcome", "signed"]);
    assert_eq!(done["status"], "completed");
    assert!(done["completed_at"].as_str().is_some());
    let list = at("2099-03-04T12:00:00Z");
    assert_eq!(list[0]["id"], call.as_str());
    assert_eq!(list.as_array().expect("reminders").len(), 1);
    r.refused(&["activity", "complete", &late]);

    let report = r.json(&["report", "overdue-tasks"]);
    assert_eq!(report["summary"]["overdue"], 0, "the late task is done");
}
