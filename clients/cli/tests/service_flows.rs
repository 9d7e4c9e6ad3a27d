//! The service, marketing and customer workflows end to end through the real `crm` binary,
//! each with a step taken on a second replica (an offline device) and merged with
//! `crm --data-dir B merge-from A --both-ways`; bad input exits 2 and changes nothing.

mod common;

use common::{Replica, id};

/// What a refused command must leave as it was.
const WATCHED: &[&str] = &[
    "ticket",
    "article",
    "account",
    "account-relation",
    "campaign",
    "campaign-member",
    "survey-response",
    "team",
];

#[test]
fn ticket_open_assign_respond_resolve_rate_close_across_two_devices() {
    let desk = Replica::new("王芳", "desk").watching(WATCHED);
    let agent = id(&desk.json(&["user", "add", "--name", "Bob", "--role", "support_agent"]));
    let article = desk.add(
        "article",
        &["--title", "清除卡纸的步骤", "--status", "published"],
    );
    let ticket = desk.json(&[
        "ticket",
        "add",
        "--subject",
        "打印机卡纸",
        "--priority",
        "high",
    ]);
    let t = id(&ticket);
    assert_eq!(ticket["number"], "T-desk-1", "provisional number");
    assert_eq!(ticket["status"], "new");

    let r = desk.json(&["ticket", "assign", &t, "--to", &agent]);
    assert_eq!(r["status"], "assigned");
    assert_eq!(r["assignee"], agent.as_str());

    // The agent's laptop gets the ticket, answers it offline, and syncs back later.
    let laptop = Replica::new("Bob", "laptop").watching(WATCHED);
    laptop.merge_both_ways(&desk);
    let r = laptop.json(&["ticket", "respond", "T-desk-1", "--note", "已电话联系客户"]);
    assert_eq!(r["status"], "in_progress");
    let first_response = r["first_response_at"]
        .as_str()
        .expect("stamped")
        .to_string();
    laptop.merge_both_ways(&desk);

    let r = desk.json(&["ticket", "show", &t]);
    assert_eq!(r["status"], "in_progress", "the laptop's step arrived");
    assert_eq!(r["first_response_at"], first_response.as_str());
    assert!(
        r["notes"]
            .as_str()
            .expect("notes")
            .contains("已电话联系客户")
    );
    assert_eq!(r["sla"]["priority"], "high");
    assert_eq!(
        r["sla"]["first_response"]["breached"], false,
        "answered within 4 h"
    );
    assert!(r["sla"]["resolution"]["due"].is_string());

    // Closing before resolving, rating an open ticket, a bad score: refused, nothing changed.
    let before = desk.snapshot();
    assert!(
        desk.refused(&["ticket", "close", &t])
            .contains("resolve it first")
    );
    assert!(
        desk.refused(&["ticket", "rate", &t, "--score", "5"])
            .contains("in_progress")
    );
    desk.refused(&[
        "ticket",
        "resolve",
        &t,
        "--resolution",
        "x",
        "--article",
        &agent,
    ]);
    desk.refused(&["ticket", "assign", &t, "--to", &article]);
    assert_eq!(desk.snapshot(), before);

    let r = desk.json(&[
        "ticket",
        "resolve",
        &t,
        "--resolution",
        "更换搓纸轮",
        "--article",
        &article,
    ]);
    assert_eq!(r["status"], "resolved");
    assert!(r["resolved_at"].is_string());
    assert_eq!(r["articles"], serde_json::json!([article]));
    let a = desk.json(&["article", "show", &article]);
    assert_eq!(
        a["related_tickets"],
        serde_json::json!([t]),
        "linked both ways"
    );

    desk.refused(&["ticket", "rate", &t, "--score", "6"]);
    let r = desk.json(&["ticket", "rate", &t, "--score", "4", "--comment", "很快"]);
    assert_eq!(r["satisfaction"], 4);
    let r = desk.json(&["ticket", "close", &t]);
    assert_eq!(r["status"], "closed");
    assert!(r["closed_at"].is_string());
    let statuses: Vec<&str> = r["history"]["status"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["value"].as_str().expect("value"))
        .collect();
    assert_eq!(
        statuses,
        ["new", "assigned", "in_progress", "resolved", "closed"]
    );
    let devices: Vec<&str> = r["history"]["status"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["device"].as_str().expect("device"))
        .collect();
    assert_eq!(devices, ["desk", "desk", "laptop", "desk", "desk"]);
    desk.refused(&["ticket", "close", &t]);

    // The service reports see it.
    let times = desk.json(&["report", "ticket-times"]);
    assert_eq!(times["summary"]["tickets"], 1);
    assert_eq!(times["summary"]["resolution_rate"], 1.0);
    let sat = desk.json(&["report", "satisfaction"]);
    assert_eq!(sat["summary"]["average"], 4.0);
}

#[test]
fn sla_policy_is_a_workspace_setting_that_syncs() {
    let a = Replica::new("王芳", "desk").watching(WATCHED);
    let policy = a.json(&["sla"]);
    assert_eq!(policy["targets"][0]["priority"], "urgent");
    assert_eq!(policy["targets"][0]["first_response_minutes"], 60);
    assert_eq!(policy["targets"][3]["resolution"], "5d");

    let before = a.snapshot();
    a.refused(&["sla", "set", "critical", "--first-response", "1h"]);
    a.refused(&["sla", "set", "high", "--first-response", "soon"]);
    a.refused(&["sla", "set", "high"]);
    a.refused(&["sla", "set", "high", "--first-response", "2d"]);
    assert_eq!(a.snapshot(), before);

    let policy = a.json(&[
        "sla",
        "set",
        "urgent",
        "--first-response",
        "30m",
        "--resolution",
        "2h",
    ]);
    assert_eq!(policy["targets"][0]["first_response_minutes"], 30);
    assert_eq!(policy["targets"][0]["overridden"], true);

    let b = Replica::new("Bob", "laptop").watching(WATCHED);
    b.merge_both_ways(&a);
    let policy = b.json(&["sla"]);
    assert_eq!(policy["targets"][0]["resolution_minutes"], 120, "synced");

    // A ticket answered after 45 min breaches the 30 min target.
    let t = id(&b.json(&[
        "ticket",
        "add",
        "--subject",
        "down",
        "--priority",
        "urgent",
        "--opened-at",
        "2026-01-05T09:00:00Z",
    ]));
    let breached = b.json(&["ticket", "sla", "--breached"]);
    assert_eq!(breached.as_array().expect("list").len(), 1);
    assert_eq!(breached[0]["id"], t.as_str());
    let list = b.json(&["ticket", "list"]);
    assert_eq!(list[0]["sla"]["first_response"]["breached"], true);
    assert!(
        b.ok(&["ticket", "list"]).contains("1st ⚠"),
        "the table shows it"
    );
    assert!(b.ok(&["ticket", "show", &t]).contains("BREACHED"));
    assert!(b.ok(&["ticket", "sla"]).contains("overdue"));
    let report = b.json(&["report", "sla-breaches"]);
    assert_eq!(report["rows"][0]["priority"], "urgent");
    assert_eq!(report["rows"][0]["first_response_breaches"], 1);
    assert_eq!(report["rows"][0]["first_response_target"], 0.5);
}

#[test]
fn campaign_members_responses_and_attributed_revenue() {
    let a = Replica::new("王芳", "desk").watching(WATCHED);
    let c = id(&a.json(&[
        "campaign",
        "add",
        "--name",
        "2026 春季展会",
        "--type",
        "event",
        "--budget",
        "20000",
        "--actual-cost",
        "10000",
        "--goal-leads",
        "4",
        "--goal-revenue",
        "50000",
        "--start-date",
        "2026-03-01",
    ]));
    let r = a.json(&["campaign", "start", &c]);
    assert_eq!(r["status"], "active");
    let lead1 = a.add(
        "lead",
        &[
            "--person-name",
            "李雷",
            "--company-name",
            "星光贸易",
            "--campaign",
            &c,
            "--source",
            "trade_show",
        ],
    );
    let lead2 = a.add("lead", &["--person-name", "韩梅梅", "--campaign", &c]);
    let contact = a.add("contact", &["--last-name", "王", "--first-name", "芳"]);
    let account = a.add("account", &["--name", "星光贸易"]);
    let members = a.json(&["campaign", "add-member", &c, &lead1, &lead2, &contact]);
    let members: Vec<String> = members
        .as_array()
        .expect("members")
        .iter()
        .map(id)
        .collect();
    assert_eq!(members.len(), 3);

    let before = a.snapshot();
    assert!(
        a.refused(&["campaign", "add-member", &c, &contact])
            .contains("already a member")
    );
    a.refused(&["campaign", "add-member", &c, &account]);
    a.refused(&["campaign", "member-status", &members[0], "bored"]);
    a.refused(&["campaign", "start", &c]);
    assert_eq!(a.snapshot(), before);

    // The responses come in on the laptop, offline.
    let b = Replica::new("Bob", "laptop").watching(WATCHED);
    b.merge_both_ways(&a);
    let r = b.json(&["campaign", "member-status", &members[0], "responded"]);
    assert!(r["responded_at"].is_string());
    b.json(&["campaign", "member-status", &members[2], "opened"]);
    let survey = b.add(
        "survey",
        &["--name", "展会反馈", "--type", "csat", "--campaign", &c],
    );
    b.refused(&[
        "survey",
        "respond",
        &survey,
        "--respondent",
        &contact,
        "--score",
        "9",
    ]);
    let resp = b.json(&[
        "survey",
        "respond",
        &survey,
        "--respondent",
        &contact,
        "--score",
        "5",
        "--answer",
        "展位=很好",
    ]);
    assert_eq!(resp["campaign"], c.as_str());
    assert_eq!(resp["answers"]["展位"], "很好");
    b.merge_both_ways(&a);

    // Lead 1 becomes a won deal of 30,000 (converted by hand here: the lead's
    // converted_opportunity is what attribution follows).
    let deal = a.add(
        "deal",
        &[
            "--name",
            "星光 2026",
            "--account",
            &account,
            "--amount",
            "30000",
        ],
    );
    a.ok(&[
        "lead",
        "edit",
        &lead1,
        "--status",
        "converted",
        "--converted-opportunity",
        &deal,
        "--converted-account",
        &account,
    ]);
    a.ok(&["deal", "edit", &deal, "--stage", "closed_won"]);
    a.json(&["campaign", "complete", &c]);

    let resp = a.json(&["report", "campaign-response"]);
    let row = &resp["rows"][0];
    assert_eq!(row["campaign"], "2026 春季展会");
    assert_eq!(row["members"], 3);
    assert_eq!(row["responded"], 1, "the laptop's response arrived");
    assert_eq!(row["leads"], 2);
    assert_eq!(
        row["cost_per_lead"], 500_000,
        "10,000 / 2 leads, in minor units"
    );
    assert_eq!(row["lead_to_won"], 0.5);
    let roi = a.json(&["report", "campaign-roi"]);
    let row = &roi["rows"][0];
    assert_eq!(row["revenue"], 3_000_000);
    assert_eq!(row["roi"], 2.0, "(30,000 - 10,000) / 10,000");
    assert_eq!(row["leads_vs_goal"], 0.5);
    assert_eq!(row["revenue_vs_goal"], 0.6);
    assert!(a.ok(&["report", "campaign-roi"]).contains("200.0%"));

    // The customer's 360° view lists the campaign through the converted lead and the member.
    let full = a.json(&["account", "show", &account, "--full"]);
    assert_eq!(full["campaigns"][0]["id"], c.as_str());
}

#[test]
fn account_relations_lifecycle_and_the_360_view() {
    let a = Replica::new("王芳", "desk").watching(WATCHED);
    let group = a.add(
        "account",
        &["--name", "星光集团", "--grade", "vip", "--tag", "战略"],
    );
    let sub = a.add("account", &["--name", "深圳星光贸易有限公司"]);
    let dist = a.add("account", &["--name", "华南分销"]);
    let contact = a.add("contact", &["--last-name", "王", "--account", &sub]);
    a.add(
        "deal",
        &["--name", "续约", "--account", &sub, "--amount", "120000"],
    );
    a.add("ticket", &["--subject", "发票问题", "--contact", &contact]);
    a.add(
        "activity",
        &["--type", "call", "--subject", "回访", "--targets", &contact],
    );

    let rel = a.json(&[
        "account",
        "relate",
        &sub,
        "--subsidiary-of",
        &group,
        "--note",
        "全资",
    ]);
    assert_eq!(rel["relation"], "subsidiary_of");
    assert_eq!(a.json(&["account", "show", &sub])["parent"], group.as_str());

    let before = a.snapshot();
    assert!(
        a.refused(&["account", "relate", &sub, "--partner-of", &sub])
            .contains("itself")
    );
    assert!(
        a.refused(&["account", "relate", &group, "--subsidiary-of", &sub])
            .contains("cycle")
    );
    a.refused(&["account", "relate", &sub, "--subsidiary-of", &group]);
    a.refused(&["account", "relate", &sub]);
    a.refused(&["account", "lifecycle", &sub, "gold"]);
    a.refused(&["account", "lifecycle", &sub, "prospect"]);
    assert_eq!(a.snapshot(), before);

    // The distributor relation and a lifecycle move are made on the laptop, offline.
    let b = Replica::new("Bob", "laptop").watching(WATCHED);
    b.merge_both_ways(&a);
    b.json(&["account", "relate", &dist, "--distributor-of", &sub]);
    b.json(&["account", "lifecycle", &sub, "contacted"]);
    b.merge_both_ways(&a);
    let r = a.json(&["account", "lifecycle", &sub, "active"]);
    let stages: Vec<&str> = r["history"]["lifecycle"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["value"].as_str().expect("value"))
        .collect();
    assert_eq!(stages, ["prospect", "contacted", "active"]);

    let full = a.json(&["account", "show", &sub, "--full"]);
    assert_eq!(full["account"]["name"], "深圳星光贸易有限公司");
    assert_eq!(full["contacts"].as_array().expect("contacts").len(), 1);
    assert_eq!(full["opportunities"][0]["name"], "续约");
    assert_eq!(
        full["tickets"][0]["subject"], "发票问题",
        "through its contact"
    );
    assert_eq!(full["activities"][0]["subject"], "回访");
    assert_eq!(full["relations"].as_array().expect("relations").len(), 2);
    assert_eq!(full["names"][&group], "星光集团");
    let group_view = a.json(&["account", "show", &group, "--full"]);
    assert_eq!(group_view["subsidiaries"][0]["id"], sub.as_str());
    let text = a.ok(&["account", "show", &sub, "--full"]);
    for section in [
        "Contacts (1)",
        "Opportunities (1)",
        "Tickets (1)",
        "Activities (1)",
        "Relations (2)",
    ] {
        assert!(text.contains(section), "{section} in\n{text}");
    }
}
