//! Activities: logging and completing them, reminders and birthdays computed on the device.
//!
//! Reminders and birthdays are plain SQL over the projections of this replica, so they work
//! with no network: a device that has synced a task once fires its reminder offline.

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use crm_model::{Edit, FieldValue, Kind, Record, RecordId};
use serde::Serialize;

use super::{edit_with, text};
use crate::{Result, Store, StoreError};

/// Statuses of an activity that is still to be done.
const OPEN_STATUSES: &[&str] = &["not_started", "in_progress", "deferred", "planned"];

/// Where a reminder stands at the time asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderState {
    /// The due (or start) time has passed and the activity is still open.
    Overdue,
    /// The reminder time has come, the due time not yet.
    Due,
    /// The reminder fires within the window asked about.
    Upcoming,
}

/// An open activity whose reminder has fired or fires soon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reminder {
    pub id: RecordId,
    pub kind: String,
    pub subject: String,
    /// The due time (tasks) or start time (calls, meetings).
    pub at: DateTime<Utc>,
    /// `at` less the reminder offset.
    pub remind_at: DateTime<Utc>,
    pub state: ReminderState,
    pub assignee: Option<RecordId>,
    pub channel: Option<String>,
}

/// A contact's coming birthday.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Birthday {
    pub contact: RecordId,
    pub name: String,
    pub account: Option<RecordId>,
    pub birthday: NaiveDate,
    /// The next day it is celebrated, today included (29 February falls on 28 February in
    /// common years).
    pub next: NaiveDate,
    pub days_until: i64,
    /// The age reached, when the birth year is plausible (not a placeholder like 1900).
    pub turning: Option<i32>,
}

/// The next celebration of `birthday` on or after `today`.
pub fn next_birthday(birthday: NaiveDate, today: NaiveDate) -> Option<NaiveDate> {
    let on = |year: i32| {
        NaiveDate::from_ymd_opt(year, birthday.month(), birthday.day()).or_else(|| {
            // 29 February in a common year.
            NaiveDate::from_ymd_opt(year, 2, 28)
        })
    };
    let this_year = on(today.year())?;
    if this_year >= today {
        Some(this_year)
    } else {
        on(today.year() + 1)
    }
}

fn parse_time(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| StoreError::CorruptProjection(s.to_string()))
}

impl Store {
    /// Logs an activity of `kind` (call, email, meeting, task, note) about the given records,
    /// with the extra fields of `fields` (due, start, reminder_minutes, body, …). Unless
    /// given: tasks start `not_started`; calls and meetings are `planned` when they start in
    /// the future, else `held`; the assignee is this replica's user.
    pub fn log_activity(
        &mut self,
        kind: &str,
        subject: &str,
        about: &[RecordId],
        fields: &Edit,
    ) -> Result<Record> {
        let mut e = edit_with(Kind::Activity, &[("type", kind), ("subject", subject)])?;
        let kind = match e.ops().first() {
            Some(crm_model::Op::Set(_, FieldValue::Text(s))) => s.clone(),
            _ => kind.to_string(),
        };
        if fields.kind() != Kind::Activity {
            return Err(StoreError::Rejected("activity fields expected".into()));
        }
        let given = |name: &str| {
            fields.ops().iter().find_map(|op| match op {
                crm_model::Op::Set(f, v) if f.name == name => Some(v.clone()),
                _ => None,
            })
        };
        if !about.is_empty() {
            let targets = about.iter().map(ToString::to_string).collect();
            e.set_value("targets", FieldValue::Set(targets))?;
        }
        if given("status").is_none() {
            let status = match kind.as_str() {
                "task" => Some("not_started"),
                "call" | "meeting" => match given("start") {
                    Some(FieldValue::DateTime(t)) if t > self.now() => Some("planned"),
                    _ => Some("held"),
                },
                _ => None,
            };
            if let Some(status) = status {
                e.set("status", status)?;
            }
        }
        if given("assignee").is_none() {
            e.set("assignee", &self.me()?.to_string())?;
        }
        let mut all = e;
        for op in fields.ops() {
            match op {
                crm_model::Op::Set(f, v) => {
                    all.set_value(f.name, v.clone())?;
                }
                crm_model::Op::Tag(t) => {
                    all.tag(t)?;
                }
                crm_model::Op::ReplaceNotes(n) | crm_model::Op::AppendNotes(n) => {
                    all.append_notes(n)?;
                }
                _ => {}
            }
        }
        self.create(&all)
    }

    /// Marks an open activity done: tasks `completed`, calls and meetings `held`, with
    /// `completed_at` now and the outcome when given.
    pub fn complete_activity(&mut self, id: RecordId, outcome: Option<&str>) -> Result<Record> {
        let activity = self.get_kind(Kind::Activity, id)?;
        let kind = text(&activity, "type").unwrap_or("task");
        let status = text(&activity, "status");
        if status.is_some_and(|s| !OPEN_STATUSES.contains(&s)) {
            return Err(StoreError::Rejected(format!(
                "{kind} {} is already {}",
                activity.title(),
                status.unwrap_or_default()
            )));
        }
        let done = match kind {
            "call" | "meeting" => "held",
            "task" => "completed",
            other => {
                return Err(StoreError::Rejected(format!(
                    "an {other} has nothing to complete"
                )));
            }
        };
        let mut e = edit_with(Kind::Activity, &[("status", done)])?;
        e.set_value("completed_at", FieldValue::DateTime(self.now()))?;
        if let Some(outcome) = outcome {
            e.set("outcome", outcome)?;
        }
        self.edit(id, &e)
    }

    /// Open activities with a due or start time whose reminder has fired by `now` or fires
    /// within `within` after it: overdue first, then by time. The reminder time is the due
    /// (or start) time less `reminder_minutes` (none: the due time itself). With `user`, only
    /// that user's activities (the assignee, else the owner).
    pub fn reminders(
        &self,
        now: DateTime<Utc>,
        within: Duration,
        user: Option<RecordId>,
    ) -> Result<Vec<Reminder>> {
        let statuses = OPEN_STATUSES
            .iter()
            .map(|s| format!("'{s}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "SELECT id, f_type, f_subject, coalesce(f_due, f_start), coalesce(f_reminder_minutes, 0), \
                    f_assignee, f_reminder_channel \
             FROM rec_activity \
             WHERE archived = 0 AND coalesce(f_due, f_start) IS NOT NULL \
               AND (f_status IS NULL OR f_status IN ({statuses})) \
               AND f_type IN ('task', 'call', 'meeting') \
               AND julianday(coalesce(f_due, f_start)) - coalesce(f_reminder_minutes, 0) / 1440.0 \
                   <= julianday(?1) + ?2 \
               AND (?3 IS NULL OR coalesce(f_assignee, f_owner) = ?3) \
             ORDER BY coalesce(f_due, f_start), id"
        );
        let window_days = within.num_seconds() as f64 / 86_400.0;
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            rusqlite::params![
                crm_model::format_time(&now),
                window_days,
                user.map(|u| u.to_string())
            ],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, subject, at, minutes, assignee, channel) = row?;
            let at = parse_time(&at)?;
            let remind_at = at - Duration::minutes(minutes.clamp(0, 525_600));
            let state = if at < now {
                ReminderState::Overdue
            } else if remind_at <= now {
                ReminderState::Due
            } else {
                ReminderState::Upcoming
            };
            out.push(Reminder {
                id: id
                    .parse()
                    .map_err(|_| StoreError::CorruptProjection(id.clone()))?,
                kind,
                subject,
                at,
                remind_at,
                state,
                assignee: assignee.and_then(|a| a.parse().ok()),
                channel,
            });
        }
        out.sort_by_key(|r| (r.state != ReminderState::Overdue, r.at));
        Ok(out)
    }

    /// Live contacts whose birthday falls within `within_days` days from `today` (today
    /// included), soonest first. Handles the turn of the year and 29 February.
    pub fn birthdays(&self, today: NaiveDate, within_days: i64) -> Result<Vec<Birthday>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, title, f_birthday, f_account FROM rec_contact \
             WHERE archived = 0 AND f_birthday IS NOT NULL",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, name, birthday, account) = row?;
            let birthday = NaiveDate::parse_from_str(&birthday, "%Y-%m-%d")
                .map_err(|_| StoreError::CorruptProjection(birthday.clone()))?;
            let Some(next) = next_birthday(birthday, today) else {
                continue;
            };
            let days_until = (next - today).num_days();
            if days_until > within_days {
                continue;
            }
            let age = next.year() - birthday.year();
            out.push(Birthday {
                contact: id
                    .parse()
                    .map_err(|_| StoreError::CorruptProjection(id.clone()))?,
                name,
                account: account.and_then(|a| a.parse().ok()),
                birthday,
                next,
                days_until,
                turning: (birthday.year() > 1900 && (1..=130).contains(&age)).then_some(age),
            });
        }
        out.sort_by(|a, b| (a.days_until, &a.name).cmp(&(b.days_until, &b.name)));
        Ok(out)
    }
}
