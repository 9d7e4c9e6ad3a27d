//! Service reports: response and resolution times, SLA breaches, the backlog per agent and
//! customer satisfaction. Durations come from the tickets' datetime fields (`opened_at`,
//! `first_response_at`, `resolved_at`) in whole seconds; SLA due times from the policy
//! ([`crate::flows::sla`]), computed in the query, never stored.

use std::collections::BTreeMap;

use crm_model::kinds::ticket::PRIORITIES;
use rusqlite::params_from_iter;
use serde_json::{Value as Json, json};

use super::{Column, Figure, Report, ReportDef, ReportParams, Unit, date_range, ratio};
use crate::{Result, Store};

pub(super) const REPORTS: &[ReportDef] = &[
    ReportDef {
        name: "ticket-times",
        group: "service",
        title: "First-response and resolution times",
        about: "Per priority: tickets opened, average and median hours to the first response \
                and to resolution, and the resolution rate (tickets by opened date)",
        run: ticket_times,
    },
    ReportDef {
        name: "sla-breaches",
        group: "service",
        title: "SLA breaches by priority",
        about: "Per priority: tickets whose first response or resolution came (or is still \
                open) after the SLA target of `crm sla` (tickets by opened date)",
        run: sla_breaches,
    },
    ReportDef {
        name: "ticket-backlog",
        group: "service",
        title: "Backlog by agent",
        about: "Open tickets per assignee: by status, breaching their SLA now, and the oldest \
                one's age in hours",
        run: backlog,
    },
    ReportDef {
        name: "satisfaction",
        group: "service",
        title: "Customer satisfaction",
        about: "Per assignee: rated tickets, average score (1–5) and share satisfied (4 or 5) \
                (tickets by resolved date)",
        run: satisfaction,
    },
];

/// Priorities from the most urgent down, the order service managers read them in.
fn priorities() -> impl Iterator<Item = &'static str> {
    PRIORITIES.iter().rev().copied()
}

fn average(values: &[f64]) -> Json {
    if values.is_empty() {
        Json::Null
    } else {
        json!(values.iter().sum::<f64>() / values.len() as f64)
    }
}

fn median(values: &mut [f64]) -> Json {
    if values.is_empty() {
        return Json::Null;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    json!(if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    })
}

fn figure(key: &'static str, label: &'static str, unit: Unit, value: Json) -> Figure {
    Figure {
        key,
        label,
        unit,
        value,
    }
}

/// Hours between two ISO datetime columns, NULL when either is missing. Whole seconds
/// (unixepoch) rather than julianday fractions, so a response exactly at its due time is
/// exactly on time.
fn hours(from: &str, to: &str) -> String {
    format!("((unixepoch({to}) - unixepoch({from})) / 3600.0)")
}

fn ticket_times(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("f_opened_at", params);
    // One row per ticket; the averages and medians are taken in Rust (SQLite has no median).
    let sql = format!(
        "SELECT coalesce(f_priority, 'normal'), {fr}, {res} FROM rec_ticket \
         WHERE archived = 0 AND f_opened_at IS NOT NULL \
         AND coalesce(f_status, '') NOT IN ('rejected', 'duplicate'){range}",
        fr = hours("f_opened_at", "f_first_response_at"),
        res = hours("f_opened_at", "f_resolved_at"),
    );
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, Option<f64>>(1)?,
            r.get::<_, Option<f64>>(2)?,
        ))
    })?;
    let mut by: BTreeMap<String, (u64, Vec<f64>, Vec<f64>)> = BTreeMap::new();
    for row in rows {
        let (priority, fr, res) = row?;
        let e = by.entry(priority).or_default();
        e.0 += 1;
        e.1.extend(fr);
        e.2.extend(res);
    }
    let mut report = Report::new(
        def,
        vec![
            Column::new("priority", "Priority", Unit::Text),
            Column::new("tickets", "Tickets", Unit::Count),
            Column::new("responded", "Responded", Unit::Count),
            Column::new("first_response_avg", "1st response avg", Unit::Hours),
            Column::new("first_response_median", "1st response median", Unit::Hours),
            Column::new("resolved", "Resolved", Unit::Count),
            Column::new("resolution_avg", "Resolution avg", Unit::Hours),
            Column::new("resolution_median", "Resolution median", Unit::Hours),
            Column::new("resolution_rate", "Resolution rate", Unit::Ratio),
        ],
    );
    let (mut all_fr, mut all_res, mut total) = (Vec::new(), Vec::new(), 0);
    for p in priorities() {
        let (n, mut fr, mut res) = by.remove(p).unwrap_or_default();
        total += n;
        all_fr.extend(&fr);
        all_res.extend(&res);
        report.rows.push(vec![
            json!(p),
            json!(n),
            json!(fr.len()),
            average(&fr),
            median(&mut fr),
            json!(res.len()),
            average(&res),
            median(&mut res),
            ratio(res.len() as f64, n as f64),
        ]);
    }
    let resolved = all_res.len();
    report.summary = vec![
        figure("tickets", "Tickets", Unit::Count, json!(total)),
        figure(
            "first_response_avg",
            "First response, average",
            Unit::Hours,
            average(&all_fr),
        ),
        figure(
            "first_response_median",
            "First response, median",
            Unit::Hours,
            median(&mut all_fr),
        ),
        figure(
            "resolution_avg",
            "Resolution, average",
            Unit::Hours,
            average(&all_res),
        ),
        figure(
            "resolution_median",
            "Resolution, median",
            Unit::Hours,
            median(&mut all_res),
        ),
        figure(
            "resolution_rate",
            "Resolution rate (resolved / opened)",
            Unit::Ratio,
            ratio(resolved as f64, total as f64),
        ),
    ];
    Ok(report)
}

/// SQL for "this ticket's clock breached": stopped after its due time, or still running
/// (not closed) past it at `now` (parameter `?1`). Mirrors [`crate::flows::sla::ticket_sla`].
fn breach_sql(met: &str, minutes: &str) -> String {
    format!(
        "(CASE WHEN {met} IS NOT NULL THEN unixepoch({met}) > unixepoch(f_opened_at) + {minutes} * 60 \
               WHEN coalesce(f_status, '') IN ('closed', 'rejected', 'duplicate') THEN 0 \
               ELSE unixepoch(?1) > unixepoch(f_opened_at) + {minutes} * 60 END)"
    )
}

fn sla_breaches(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let policy = store.sla_policy()?;
    let (range, args) = date_range("f_opened_at", params);
    let fr = breach_sql(
        "f_first_response_at",
        &policy.minutes_sql("f_priority", true),
    );
    let res = breach_sql("f_resolved_at", &policy.minutes_sql("f_priority", false));
    let sql = format!(
        "SELECT coalesce(f_priority, 'normal'), count(*), sum({fr}), sum({res}), sum({fr} OR {res}) \
         FROM rec_ticket WHERE archived = 0 AND f_opened_at IS NOT NULL \
         AND coalesce(f_status, '') NOT IN ('rejected', 'duplicate'){range} \
         GROUP BY 1"
    );
    let mut all_args = vec![crm_model::format_time(&params.now)];
    all_args.extend(args);
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(all_args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            [r.get::<_, i64>(1)?, r.get(2)?, r.get(3)?, r.get(4)?],
        ))
    })?;
    let mut by = BTreeMap::new();
    for row in rows {
        let (p, figures) = row?;
        by.insert(p, figures);
    }
    let mut report = Report::new(
        def,
        vec![
            Column::new("priority", "Priority", Unit::Text),
            Column::new("first_response_target", "1st response target", Unit::Hours),
            Column::new("resolution_target", "Resolution target", Unit::Hours),
            Column::new("tickets", "Tickets", Unit::Count),
            Column::new(
                "first_response_breaches",
                "1st response breaches",
                Unit::Count,
            ),
            Column::new("resolution_breaches", "Resolution breaches", Unit::Count),
            Column::new("breached", "Tickets breached", Unit::Count),
            Column::new("breach_rate", "Breach rate", Unit::Ratio),
        ],
    );
    let mut totals = [0_i64; 4];
    for p in priorities() {
        let f = by.get(p).copied().unwrap_or_default();
        for (t, v) in totals.iter_mut().zip(f) {
            *t += v;
        }
        let target = policy.target(Some(p));
        report.rows.push(vec![
            json!(p),
            json!(target.first_response_minutes as f64 / 60.0),
            json!(target.resolution_minutes as f64 / 60.0),
            json!(f[0]),
            json!(f[1]),
            json!(f[2]),
            json!(f[3]),
            ratio(f[3] as f64, f[0] as f64),
        ]);
    }
    report.summary = vec![
        figure("tickets", "Tickets", Unit::Count, json!(totals[0])),
        figure(
            "first_response_breaches",
            "First-response breaches",
            Unit::Count,
            json!(totals[1]),
        ),
        figure(
            "resolution_breaches",
            "Resolution breaches",
            Unit::Count,
            json!(totals[2]),
        ),
        figure(
            "breach_rate",
            "Tickets breached",
            Unit::Ratio,
            ratio(totals[3] as f64, totals[0] as f64),
        ),
    ];
    Ok(report)
}

fn backlog(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let policy = store.sla_policy()?;
    let (range, args) = date_range("t.f_opened_at", params);
    let fr = breach_sql(
        "f_first_response_at",
        &policy.minutes_sql("f_priority", true),
    );
    let res = breach_sql("f_resolved_at", &policy.minutes_sql("f_priority", false));
    let sql = format!(
        "SELECT u.f_name, count(*), sum(t.f_status = 'new'), sum(t.f_status = 'assigned'), \
                sum(t.f_status = 'in_progress'), sum(t.f_status = 'pending_customer'), \
                sum({fr} OR {res}), max((unixepoch(?1) - unixepoch(t.f_opened_at)) / 3600.0) \
         FROM rec_ticket t LEFT JOIN rec_user u ON u.id = t.f_assignee \
         WHERE t.archived = 0 AND t.f_status IN ('new', 'assigned', 'in_progress', 'pending_customer'){range} \
         GROUP BY t.f_assignee ORDER BY count(*) DESC, u.f_name"
    );
    let mut all_args = vec![crm_model::format_time(&params.now)];
    all_args.extend(args);
    let mut report = Report::new(
        def,
        vec![
            Column::new("assignee", "Assignee", Unit::Text),
            Column::new("open", "Open", Unit::Count),
            Column::new("new", "New", Unit::Count),
            Column::new("assigned", "Assigned", Unit::Count),
            Column::new("in_progress", "In progress", Unit::Count),
            Column::new("pending_customer", "Pending customer", Unit::Count),
            Column::new("breached", "SLA breached", Unit::Count),
            Column::new("oldest_hours", "Oldest (h)", Unit::Hours),
        ],
    );
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(all_args), |r| {
        Ok(vec![
            json!(
                r.get::<_, Option<String>>(0)?
                    .unwrap_or_else(|| "(unassigned)".into())
            ),
            json!(r.get::<_, i64>(1)?),
            json!(r.get::<_, i64>(2)?),
            json!(r.get::<_, i64>(3)?),
            json!(r.get::<_, i64>(4)?),
            json!(r.get::<_, i64>(5)?),
            json!(r.get::<_, i64>(6)?),
            json!(r.get::<_, Option<f64>>(7)?),
        ])
    })?;
    let (mut open, mut breached) = (0, 0);
    for row in rows {
        let row = row?;
        open += row[1].as_i64().unwrap_or(0);
        breached += row[6].as_i64().unwrap_or(0);
        report.rows.push(row);
    }
    report.summary = vec![
        figure("open", "Open tickets", Unit::Count, json!(open)),
        figure(
            "breached",
            "Breaching their SLA",
            Unit::Count,
            json!(breached),
        ),
    ];
    Ok(report)
}

fn satisfaction(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, args) = date_range("t.f_resolved_at", params);
    let sql = format!(
        "SELECT u.f_name, count(*), count(t.f_satisfaction), sum(t.f_satisfaction), \
                sum(t.f_satisfaction >= 4) \
         FROM rec_ticket t LEFT JOIN rec_user u ON u.id = t.f_assignee \
         WHERE t.archived = 0 AND t.f_resolved_at IS NOT NULL{range} \
         GROUP BY t.f_assignee ORDER BY u.f_name"
    );
    let mut report = Report::new(
        def,
        vec![
            Column::new("assignee", "Assignee", Unit::Text),
            Column::new("resolved", "Resolved", Unit::Count),
            Column::new("rated", "Rated", Unit::Count),
            Column::new("average", "Average score", Unit::Number),
            Column::new("satisfied", "Satisfied (4–5)", Unit::Ratio),
        ],
    );
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, Option<String>>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<i64>>(3)?.unwrap_or(0),
            r.get::<_, Option<i64>>(4)?.unwrap_or(0),
        ))
    })?;
    let (mut resolved, mut rated, mut sum, mut satisfied) = (0, 0, 0, 0);
    for row in rows {
        let (name, n, r, s, good) = row?;
        resolved += n;
        rated += r;
        sum += s;
        satisfied += good;
        report.rows.push(vec![
            json!(name.unwrap_or_else(|| "(unassigned)".into())),
            json!(n),
            json!(r),
            ratio(s as f64, r as f64),
            ratio(good as f64, r as f64),
        ]);
    }
    report.summary = vec![
        figure("rated", "Rated tickets", Unit::Count, json!(rated)),
        figure(
            "rating_rate",
            "Rated / resolved",
            Unit::Ratio,
            ratio(rated as f64, resolved as f64),
        ),
        figure(
            "average",
            "Average satisfaction",
            Unit::Number,
            ratio(sum as f64, rated as f64),
        ),
        figure(
            "satisfied",
            "Satisfied (4–5)",
            Unit::Ratio,
            ratio(satisfied as f64, rated as f64),
        ),
    ];
    Ok(report)
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, TimeZone, Utc};
    use crm_model::{Edit, Kind, RecordId};

    use crate::Store;
    use crate::reports::ReportParams;

    fn at(day: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, h, 0, 0)
            .single()
            .expect("time")
    }

    fn ticket(store: &mut Store, priority: &str, opened: DateTime<Utc>) -> RecordId {
        store.set_clock(Some(opened));
        let mut e = Edit::new(Kind::Ticket);
        e.set("subject", "工单").expect("valid");
        e.set("priority", priority).expect("valid");
        let id = store.create(&e).expect("create").id;
        store.set_clock(None);
        id
    }

    fn step(store: &mut Store, when: DateTime<Utc>, f: impl FnOnce(&mut Store)) {
        store.set_clock(Some(when));
        f(store);
        store.set_clock(None);
    }

    fn user(store: &mut Store, name: &str) -> RecordId {
        let mut e = Edit::new(Kind::User);
        e.set("name", name).expect("valid");
        store.create(&e).expect("user").id
    }

    /// The dataset, opened on March 2 (day 2) unless said otherwise; now = March 3 12:00.
    ///
    /// | # | priority | agent | opened | 1st response | resolved | status   | rating |
    /// |---|----------|-------|--------|--------------|----------|----------|--------|
    /// | A | urgent   | 王芳  | 2d 09  | 2d 10 (1 h)  | 2d 11 (2 h) | closed | 5 |
    /// | B | urgent   | 王芳  | 2d 09  | 2d 11 (2 h)  | 2d 15 (6 h) | resolved | 3 |
    /// | C | high     | Bob   | 2d 09  | 2d 12 (3 h)  | –        | in_progress | – |
    /// | D | normal   | –     | 2d 09  | –            | –        | new      | – |
    /// | E | low      | Bob   | 1d 09  | –            | 1d 21 (12 h) | resolved | 4 |
    /// | F | normal   | –     | 2d 09  | –            | –        | rejected | – |
    fn dataset() -> (tempfile::TempDir, Store, ReportParams) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let wang = user(&mut store, "王芳");
        let bob = user(&mut store, "Bob");
        let a = ticket(&mut store, "urgent", at(2, 9));
        let b = ticket(&mut store, "urgent", at(2, 9));
        let c = ticket(&mut store, "high", at(2, 9));
        ticket(&mut store, "normal", at(2, 9));
        let e = ticket(&mut store, "low", at(1, 9));
        let f = ticket(&mut store, "normal", at(2, 9));
        for (id, who) in [(a, wang), (b, wang), (c, bob), (e, bob)] {
            store.assign_ticket(id, who, None).expect("assign");
        }
        step(&mut store, at(2, 10), |s| {
            s.respond_ticket(a, None).expect("respond");
        });
        step(&mut store, at(2, 11), |s| {
            s.resolve_ticket(a, "fixed", &[]).expect("resolve");
            s.respond_ticket(b, None).expect("respond");
        });
        step(&mut store, at(2, 12), |s| {
            s.respond_ticket(c, None).expect("respond");
        });
        step(&mut store, at(2, 15), |s| {
            s.resolve_ticket(b, "fixed", &[]).expect("resolve");
        });
        step(&mut store, at(1, 21), |s| {
            s.resolve_ticket(e, "fixed", &[]).expect("resolve");
        });
        store.rate_ticket(a, 5, None).expect("rate");
        store.close_ticket(a).expect("close");
        store.rate_ticket(b, 3, None).expect("rate");
        store.rate_ticket(e, 4, None).expect("rate");
        let mut rej = Edit::new(Kind::Ticket);
        rej.set("status", "rejected").expect("valid");
        store.edit(f, &rej).expect("reject");
        let params = ReportParams {
            now: at(3, 12),
            from: None,
            to: None,
        };
        (dir, store, params)
    }

    fn row<'a>(json: &'a serde_json::Value, key: &str, value: &str) -> &'a serde_json::Value {
        json["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r[key] == value)
            .expect("row")
    }

    #[test]
    fn ticket_times_by_priority() {
        let (_d, store, params) = dataset();
        let r = store
            .report("ticket-times", &params)
            .expect("report")
            .to_json();
        // F (rejected) is left out: 5 tickets.
        let urgent = row(&r, "priority", "urgent");
        assert_eq!(urgent["tickets"], 2);
        assert_eq!(urgent["first_response_avg"], 1.5, "(1 + 2) / 2");
        assert_eq!(urgent["first_response_median"], 1.5);
        assert_eq!(urgent["resolution_avg"], 4.0, "(2 + 6) / 2");
        assert_eq!(urgent["resolution_rate"], 1.0);
        let low = row(&r, "priority", "low");
        // E: resolved without a response, so the resolution (12 h) is its first response.
        assert_eq!(low["first_response_avg"], 12.0);
        let normal = row(&r, "priority", "normal");
        assert_eq!(normal["tickets"], 1);
        assert_eq!(normal["first_response_avg"], serde_json::Value::Null);
        assert_eq!(normal["resolution_rate"], 0.0);
        // First responses 1, 2, 3, 12 h: average 4.5, median (2 + 3) / 2 = 2.5.
        let s = &r["summary"];
        assert_eq!(s["tickets"], 5);
        let close = |v: &serde_json::Value, x: f64| (v.as_f64().expect("number") - x).abs() < 1e-6;
        assert!(close(&s["first_response_avg"], 4.5), "{s}");
        assert!(close(&s["first_response_median"], 2.5), "{s}");
        // Resolutions 2, 6, 12 h: average 20 / 3, median 6; 3 of 5 resolved.
        assert!(close(&s["resolution_avg"], 20.0 / 3.0), "{s}");
        assert!(close(&s["resolution_median"], 6.0), "{s}");
        assert!(close(&s["resolution_rate"], 0.6), "{s}");
    }

    #[test]
    fn sla_breaches_by_priority() {
        let (_d, mut store, params) = dataset();
        let r = store
            .report("sla-breaches", &params)
            .expect("report")
            .to_json();
        // Urgent (1 h / 4 h): A met both (1 h, 2 h); B's response took 2 h and its
        // resolution 6 h: two breaches, one ticket.
        let urgent = row(&r, "priority", "urgent");
        assert_eq!(urgent["first_response_breaches"], 1);
        assert_eq!(urgent["resolution_breaches"], 1);
        assert_eq!(urgent["breached"], 1);
        assert_eq!(urgent["breach_rate"], 0.5);
        // High (4 h / 1 d): C answered in 3 h; unresolved, due 3d 09, now 3d 12 → breached.
        let high = row(&r, "priority", "high");
        assert_eq!(high["first_response_breaches"], 0);
        assert_eq!(high["resolution_breaches"], 1);
        // Normal (1 d / 3 d): D unanswered since 2d 09, due 3d 09 → first response breached.
        let normal = row(&r, "priority", "normal");
        assert_eq!(
            (
                normal["tickets"].clone(),
                normal["first_response_breaches"].clone()
            ),
            (1.into(), 1.into())
        );
        assert_eq!(normal["resolution_breaches"], 0, "due 5d 09");
        // Low (2 d / 5 d): E resolved in 12 h: nothing.
        assert_eq!(row(&r, "priority", "low")["breached"], 0);
        assert_eq!(r["summary"]["tickets"], 5);
        assert_eq!(r["summary"]["breach_rate"], 0.6, "B, C, D of 5");

        // A looser high target moves C out of breach: resolution 2 d.
        store.set_sla("high", None, Some(2 * 24 * 60)).expect("set");
        let r = store
            .report("sla-breaches", &params)
            .expect("report")
            .to_json();
        assert_eq!(row(&r, "priority", "high")["resolution_breaches"], 0);
        assert_eq!(row(&r, "priority", "high")["resolution_target"], 48.0);
    }

    #[test]
    fn backlog_by_agent() {
        let (_d, store, params) = dataset();
        let r = store
            .report("ticket-backlog", &params)
            .expect("report")
            .to_json();
        // Open: C (Bob, in_progress, breached, opened 27 h ago), D (unassigned, new,
        // breached, 27 h).
        let bob = row(&r, "assignee", "Bob");
        assert_eq!(bob["open"], 1);
        assert_eq!(bob["in_progress"], 1);
        assert_eq!(bob["breached"], 1);
        assert_eq!(bob["oldest_hours"], 27.0);
        let none = row(&r, "assignee", "(unassigned)");
        assert_eq!(none["new"], 1);
        assert_eq!(
            r["rows"].as_array().expect("rows").len(),
            2,
            "王芳 has nothing open"
        );
        assert_eq!(r["summary"]["open"], 2);
        assert_eq!(r["summary"]["breached"], 2);
    }

    #[test]
    fn satisfaction_by_agent() {
        let (_d, store, params) = dataset();
        let r = store
            .report("satisfaction", &params)
            .expect("report")
            .to_json();
        // 王芳: A 5, B 3 → average 4, one of two satisfied. Bob: E 4 → 4, 1 of 1.
        let wang = row(&r, "assignee", "王芳");
        assert_eq!(wang["rated"], 2);
        assert_eq!(wang["average"], 4.0);
        assert_eq!(wang["satisfied"], 0.5);
        assert_eq!(row(&r, "assignee", "Bob")["satisfied"], 1.0);
        // Overall: (5 + 3 + 4) / 3 = 4; satisfied 2 of 3; all 3 resolved were rated.
        assert_eq!(r["summary"]["average"], 4.0);
        assert_eq!(r["summary"]["rating_rate"], 1.0);
        let only_day_1 = ReportParams {
            to: chrono::NaiveDate::from_ymd_opt(2026, 3, 1),
            ..params
        };
        let r = store
            .report("satisfaction", &only_day_1)
            .expect("report")
            .to_json();
        assert_eq!(r["summary"]["rated"], 1, "only E was resolved on March 1");
    }
}
