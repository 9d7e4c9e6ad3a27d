//! Activity reports: what the reps did, week by week, and the tasks left overdue.

use chrono::{Datelike, Duration, NaiveDate};
use rusqlite::params_from_iter;
use serde_json::json;

use super::{Column, Figure, Report, ReportDef, ReportParams, Unit};
use crate::{Result, Store};

pub(super) const REPORTS: &[ReportDef] = &[
    ReportDef {
        name: "activities-per-week",
        group: "activity",
        title: "Activities per rep per week",
        about: "Done activities (calls and meetings held or not, emails, notes, completed \
                tasks) per assignee and week (from Monday), by kind; dated by completion, \
                start or creation; the last 12 weeks unless --from/--to",
        run: activities_per_week,
    },
    ReportDef {
        name: "overdue-tasks",
        group: "activity",
        title: "Overdue tasks by owner",
        about: "Open tasks per assignee (else owner): how many, how many past due, the oldest \
                due date and the average days overdue; by due date",
        run: overdue_tasks,
    },
];

/// The Monday of `day`'s week.
fn monday(day: NaiveDate) -> NaiveDate {
    day - Duration::days(i64::from(day.weekday().num_days_from_monday()))
}

/// Done activities per rep and week, one column per kind.
fn activities_per_week(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let today = params.now.date_naive();
    let (from, to) = match (params.from, params.to) {
        (None, None) => (
            (monday(today) - Duration::weeks(11)).to_string(),
            today.to_string(),
        ),
        (from, to) => (
            from.map_or_else(|| "0000-01-01".to_string(), |d| d.to_string()),
            to.map_or_else(|| "9999-12-31".to_string(), |d| d.to_string()),
        ),
    };
    let sql = "SELECT coalesce(u.f_name, a.rep, '(nobody)'), a.week, \
                      sum(a.f_type = 'call'), sum(a.f_type = 'meeting'), sum(a.f_type = 'email'), \
                      sum(a.f_type = 'task'), sum(a.f_type = 'note'), count(*) \
               FROM ( \
                   SELECT coalesce(f_assignee, f_owner) AS rep, f_type, \
                          date(d, 'weekday 0', '-6 days') AS week \
                   FROM ( \
                       SELECT f_assignee, f_owner, f_type, \
                              substr(coalesce(f_completed_at, f_start, created_at), 1, 10) AS d \
                       FROM rec_activity \
                       WHERE archived = 0 \
                         AND (f_status IS NULL OR f_status IN ('completed', 'held', 'not_held'))) \
                   WHERE d >= ?1 AND d <= ?2) a \
               LEFT JOIN rec_user u ON u.id = a.rep \
               GROUP BY a.rep, a.week ORDER BY a.week, 1";
    let args = [from, to];
    let mut report = Report::new(
        def,
        vec![
            Column::new("rep", "Rep", Unit::Text),
            Column::new("week", "Week of", Unit::Text),
            Column::new("calls", "Calls", Unit::Count),
            Column::new("meetings", "Meetings", Unit::Count),
            Column::new("emails", "Emails", Unit::Count),
            Column::new("tasks", "Tasks", Unit::Count),
            Column::new("notes", "Notes", Unit::Count),
            Column::new("total", "Total", Unit::Count),
        ],
    );
    let mut stmt = store.conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        let mut row = vec![json!(r.get::<_, String>(0)?), json!(r.get::<_, String>(1)?)];
        for i in 2..8 {
            row.push(json!(r.get::<_, i64>(i)?));
        }
        Ok(row)
    })?;
    let mut total = 0;
    let mut reps = std::collections::BTreeSet::new();
    for row in rows {
        let row = row?;
        total += row[7].as_i64().unwrap_or(0);
        reps.insert(row[0].to_string());
        report.rows.push(row);
    }
    let rep_weeks = report.rows.len();
    report.summary = vec![
        Figure {
            key: "activities",
            label: "Activities",
            unit: Unit::Count,
            value: json!(total),
        },
        Figure {
            key: "reps",
            label: "Reps",
            unit: Unit::Count,
            value: json!(reps.len()),
        },
        Figure {
            key: "per_rep_week",
            label: "Average per rep and active week",
            unit: Unit::Number,
            value: super::ratio(total as f64, rep_weeks as f64),
        },
    ];
    Ok(report)
}

/// Open tasks per assignee (else owner), with those past due at the report's `now`.
fn overdue_tasks(store: &Store, def: &ReportDef, params: &ReportParams) -> Result<Report> {
    let (range, range_args) = super::date_range("a.f_due", params);
    let sql = format!(
        "SELECT coalesce(u.f_name, coalesce(a.f_assignee, a.f_owner), '(nobody)'), count(*), \
                coalesce(sum(julianday(a.f_due) < julianday(?1)), 0), \
                min(CASE WHEN julianday(a.f_due) < julianday(?1) THEN substr(a.f_due, 1, 10) END), \
                avg(CASE WHEN julianday(a.f_due) < julianday(?1) \
                    THEN julianday(?1) - julianday(a.f_due) END) \
         FROM rec_activity a LEFT JOIN rec_user u ON u.id = coalesce(a.f_assignee, a.f_owner) \
         WHERE a.archived = 0 AND a.f_type = 'task' \
           AND (a.f_status IS NULL OR a.f_status IN ('not_started', 'in_progress', 'deferred')){range} \
         GROUP BY coalesce(a.f_assignee, a.f_owner) \
         ORDER BY 3 DESC, 1"
    );
    let mut args = vec![crm_model::format_time(&params.now)];
    args.extend(range_args);
    let mut report = Report::new(
        def,
        vec![
            Column::new("owner", "Owner", Unit::Text),
            Column::new("open", "Open tasks", Unit::Count),
            Column::new("overdue", "Overdue", Unit::Count),
            Column::new("oldest_due", "Oldest due", Unit::Text),
            Column::new("average_days_overdue", "Average days overdue", Unit::Days),
        ],
    );
    let mut stmt = store.conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, Option<String>>(3)?,
            r.get::<_, Option<f64>>(4)?,
        ))
    })?;
    let (mut open, mut overdue) = (0, 0);
    for row in rows {
        let (owner, n, late, oldest, days) = row?;
        open += n;
        overdue += late;
        report.rows.push(vec![
            json!(owner),
            json!(n),
            json!(late),
            json!(oldest),
            days.map_or(serde_json::Value::Null, |d| {
                json!((d * 100.0).round() / 100.0)
            }),
        ]);
    }
    report.summary = vec![
        Figure {
            key: "open",
            label: "Open tasks",
            unit: Unit::Count,
            value: json!(open),
        },
        Figure {
            key: "overdue",
            label: "Overdue tasks",
            unit: Unit::Count,
            value: json!(overdue),
        },
        Figure {
            key: "overdue_share",
            label: "Share overdue",
            unit: Unit::Ratio,
            value: super::ratio(overdue as f64, open as f64),
        },
    ];
    Ok(report)
}

#[cfg(test)]
mod tests;
