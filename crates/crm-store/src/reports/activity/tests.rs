//! The activity reports on a small dataset worked out by hand.

use chrono::{DateTime, Utc};
use crm_model::{Edit, Kind, RecordId};
use serde_json::json;

use crate::Store;
use crate::reports::ReportParams;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("time")
        .with_timezone(&Utc)
}

fn create(s: &mut Store, fields: &[(&str, &str)]) -> RecordId {
    let mut e = Edit::new(Kind::Activity);
    for (f, v) in fields {
        e.set(f, v).expect("valid");
    }
    s.create(&e).expect("create").id
}

fn row<'a>(report: &'a serde_json::Value, key: &str, value: &str) -> &'a serde_json::Value {
    report["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r[key] == value)
        .unwrap_or_else(|| panic!("no row {key}={value} in {report}"))
}

/// Now is Wednesday 2026-03-04 12:00Z. alice (this replica's user) held a call on Monday
/// 2 March and sent an email on Tuesday 3 March (week of 2 March), and completed a task on
/// Friday 27 February (week of 23 February); a meeting on 5 March is still planned. Open
/// tasks: alice's due 25 February 12:00 (7 days overdue), bob's due 1 March 00:00 (3.5 days
/// overdue) and bob's due 10 March (not yet due).
#[test]
fn activity_reports_match_the_hand_worked_dataset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Store::init(dir.path(), "alice", "laptop").expect("init");
    let alice = s.identity().user_id.expect("me").to_string();
    let bob = {
        let mut e = Edit::new(Kind::User);
        e.set("name", "bob").expect("valid");
        s.create(&e).expect("bob").id.to_string()
    };
    s.set_clock(Some(at("2026-02-20T09:00:00Z")));
    create(
        &mut s,
        &[
            ("type", "call"),
            ("subject", "intro"),
            ("status", "held"),
            ("start", "2026-03-02T10:00:00Z"),
            ("assignee", &alice),
        ],
    );
    create(
        &mut s,
        &[
            ("type", "task"),
            ("subject", "send deck"),
            ("status", "completed"),
            ("completed_at", "2026-02-27T16:00:00Z"),
            ("due", "2026-02-27T12:00:00Z"),
        ],
    );
    create(
        &mut s,
        &[
            ("type", "meeting"),
            ("subject", "demo"),
            ("status", "planned"),
            ("start", "2026-03-05T10:00:00Z"),
        ],
    );
    create(
        &mut s,
        &[
            ("type", "task"),
            ("subject", "call back"),
            ("status", "not_started"),
            ("due", "2026-02-25T12:00:00Z"),
        ],
    );
    create(
        &mut s,
        &[
            ("type", "task"),
            ("subject", "quote"),
            ("status", "in_progress"),
            ("due", "2026-03-01T00:00:00Z"),
            ("assignee", &bob),
        ],
    );
    create(
        &mut s,
        &[
            ("type", "task"),
            ("subject", "contract"),
            ("status", "not_started"),
            ("due", "2026-03-10T00:00:00Z"),
            ("assignee", &bob),
        ],
    );
    s.set_clock(Some(at("2026-03-03T08:00:00Z")));
    create(&mut s, &[("type", "email"), ("subject", "pricing")]);
    s.set_clock(None);

    let params = ReportParams {
        now: at("2026-03-04T12:00:00Z"),
        from: None,
        to: None,
    };
    let r = s
        .report("activities-per-week", &params)
        .expect("report")
        .to_json();
    let rows = r["rows"].as_array().expect("rows");
    assert_eq!(rows.len(), 2, "{r}");
    assert_eq!(rows[0]["week"], "2026-02-23");
    assert_eq!(
        (
            rows[0]["rep"].clone(),
            rows[0]["tasks"].clone(),
            rows[0]["total"].clone()
        ),
        (json!("alice"), json!(1), json!(1))
    );
    let week = row(&r, "week", "2026-03-02");
    assert_eq!(
        (
            week["calls"].clone(),
            week["emails"].clone(),
            week["meetings"].clone(),
            week["total"].clone()
        ),
        (json!(1), json!(1), json!(0), json!(2)),
        "the planned meeting has not happened"
    );
    assert_eq!(r["summary"]["activities"], json!(3));
    assert_eq!(r["summary"]["per_rep_week"], json!(1.5));
    let march = ReportParams {
        from: chrono::NaiveDate::from_ymd_opt(2026, 3, 1),
        ..params.clone()
    };
    let r = s
        .report("activities-per-week", &march)
        .expect("report")
        .to_json();
    assert_eq!(r["summary"]["activities"], json!(2), "--from applies");

    let r = s
        .report("overdue-tasks", &params)
        .expect("report")
        .to_json();
    let a = row(&r, "owner", "alice");
    assert_eq!(
        (
            a["open"].clone(),
            a["overdue"].clone(),
            a["oldest_due"].clone(),
            a["average_days_overdue"].clone()
        ),
        (json!(1), json!(1), json!("2026-02-25"), json!(7.0))
    );
    let b = row(&r, "owner", "bob");
    assert_eq!(
        (
            b["open"].clone(),
            b["overdue"].clone(),
            b["oldest_due"].clone(),
            b["average_days_overdue"].clone()
        ),
        (json!(2), json!(1), json!("2026-03-01"), json!(3.5))
    );
    assert_eq!(r["summary"]["open"], json!(3));
    assert_eq!(r["summary"]["overdue"], json!(2));
    assert_eq!(r["summary"]["overdue_share"], json!(2.0 / 3.0));
}
