//! SLA policy and clocks for tickets: how long a ticket of each priority may wait for its first
//! response and for its resolution, and where each ticket stands against those targets.
//!
//! **Where the policy lives, and why it syncs.** The targets are a workspace setting: a
//! manager's breach report and an agent's queue must agree on which tickets are late, on every
//! device. So the policy is not kept in the device's `meta` table but in ordinary record data
//! that syncs: custom fields (`sla_<priority>_first_response_minutes`,
//! `sla_<priority>_resolution_minutes`) of one Team record flagged `custom.sla_policy =
//! workspace` (created by the first `set`, named "Service SLA policy"). Each target is its own
//! L field, so two managers changing different priorities offline both keep their change, and
//! two changing the same target show a conflict like any field. If two devices created the
//! policy record concurrently while offline, every device reads the same answer: per target,
//! the value of the flagged record with the smallest id that sets it; later `set`s write to
//! that record. Priorities without an override use the defaults of DATA-MODEL.md
//! ([`DEFAULT_TARGETS`]).
//!
//! **Clocks are computed, never stored**: due times are `opened_at` + the target of the
//! ticket's current priority, in calendar time (no business hours). A clock stops at
//! `first_response_at` / `resolved_at`; an open clock past its due time is breached now. The
//! same rule is written in SQL for the reports ([`SlaPolicy::minutes_sql`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use crm_model::kinds::ticket::PRIORITIES;
use crm_model::{Edit, FieldValue, Kind, Record, RecordId, ValidationError};
use rusqlite::OptionalExtension;
use serde::Serialize;

use crate::{Result, Store, StoreError};

/// Default targets in minutes (first response, resolution) by priority: urgent 1 h / 4 h,
/// high 4 h / 1 d, normal 1 d / 3 d, low 2 d / 5 d.
pub const DEFAULT_TARGETS: &[(&str, i64, i64)] = &[
    ("urgent", 60, 4 * 60),
    ("high", 4 * 60, 24 * 60),
    ("normal", 24 * 60, 3 * 24 * 60),
    ("low", 2 * 24 * 60, 5 * 24 * 60),
];

/// The custom field that marks the Team record holding the workspace SLA policy.
pub const POLICY_FLAG: &str = "sla_policy";
const POLICY_FLAG_VALUE: &str = "workspace";
const POLICY_RECORD_NAME: &str = "Service SLA policy";

/// The targets of one priority, in minutes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SlaTarget {
    pub first_response_minutes: i64,
    pub resolution_minutes: i64,
    /// Whether either target differs from the built-in default.
    pub overridden: bool,
}

/// The effective SLA policy: a target per priority.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SlaPolicy {
    pub targets: BTreeMap<String, SlaTarget>,
    /// The Team record holding the workspace's overrides, if one exists.
    pub record: Option<RecordId>,
}

impl SlaPolicy {
    /// The built-in defaults.
    pub fn defaults() -> Self {
        SlaPolicy {
            targets: DEFAULT_TARGETS
                .iter()
                .map(|(p, fr, res)| {
                    (
                        (*p).to_string(),
                        SlaTarget {
                            first_response_minutes: *fr,
                            resolution_minutes: *res,
                            overridden: false,
                        },
                    )
                })
                .collect(),
            record: None,
        }
    }

    /// The target of `priority`, the `normal` one for a ticket without a known priority.
    pub fn target(&self, priority: Option<&str>) -> SlaTarget {
        priority
            .and_then(|p| self.targets.get(p))
            .or_else(|| self.targets.get("normal"))
            .copied()
            .unwrap_or(SlaTarget {
                first_response_minutes: 24 * 60,
                resolution_minutes: 3 * 24 * 60,
                overridden: false,
            })
    }

    /// An SQL expression giving the target minutes for the priority in `priority_column`
    /// (`first_response` or else resolution), built from trusted numbers only.
    pub(crate) fn minutes_sql(&self, priority_column: &str, first_response: bool) -> String {
        let arms: String = self
            .targets
            .iter()
            .map(|(p, t)| {
                let m = if first_response {
                    t.first_response_minutes
                } else {
                    t.resolution_minutes
                };
                // Priorities are the schema's enum names: plain lowercase words.
                format!(" WHEN '{p}' THEN {m}")
            })
            .collect();
        let fallback = self.target(None);
        let fallback = if first_response {
            fallback.first_response_minutes
        } else {
            fallback.resolution_minutes
        };
        format!("(CASE {priority_column}{arms} ELSE {fallback} END)")
    }
}

fn custom_key(priority: &str, first_response: bool) -> String {
    format!(
        "sla_{priority}_{}_minutes",
        if first_response {
            "first_response"
        } else {
            "resolution"
        }
    )
}

/// Parses a duration like `45m`, `2h`, `1d`, `1d4h` or `1.5h` into minutes (at least one
/// minute, at most a year).
pub fn parse_duration(text: &str) -> Result<i64, ValidationError> {
    let invalid = || ValidationError::InvalidValue {
        field: "duration".into(),
        value: text.to_string(),
        expected: "a duration like 45m, 2h, 1d or 1d4h".into(),
    };
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(invalid());
    }
    let mut minutes = 0.0_f64;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        if c == ' ' {
            continue;
        }
        let unit = match c {
            'm' => 1.0,
            'h' => 60.0,
            'd' => 24.0 * 60.0,
            'w' => 7.0 * 24.0 * 60.0,
            _ => return Err(invalid()),
        };
        let n: f64 = number.parse().map_err(|_| invalid())?;
        minutes += n * unit;
        number.clear();
    }
    if !number.is_empty() {
        return Err(invalid());
    }
    let minutes = minutes.round();
    if !(1.0..=365.0 * 24.0 * 60.0).contains(&minutes) {
        return Err(invalid());
    }
    Ok(minutes as i64)
}

/// Minutes as people write them: `45m`, `4h`, `1d`, `1d 4h`.
pub fn format_duration(minutes: i64) -> String {
    let (d, h, m) = (minutes / 1440, (minutes % 1440) / 60, minutes % 60);
    let mut parts = Vec::new();
    if d > 0 {
        parts.push(format!("{d}d"));
    }
    if h > 0 {
        parts.push(format!("{h}h"));
    }
    if m > 0 || parts.is_empty() {
        parts.push(format!("{m}m"));
    }
    parts.join(" ")
}

/// Where one clock (first response or resolution) stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Clock {
    pub due: DateTime<Utc>,
    /// When the clock stopped (the first response, the resolution), if it has.
    pub met_at: Option<DateTime<Utc>>,
    /// Stopped after its due time, or still running past it.
    pub breached: bool,
    /// Minutes left before the due time while running (negative when overdue); `None` once
    /// stopped.
    pub minutes_left: Option<i64>,
}

/// A ticket's SLA clocks, computed from its fields, the policy and `now`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TicketSla {
    pub priority: String,
    pub first_response: Option<Clock>,
    pub resolution: Option<Clock>,
}

impl TicketSla {
    pub fn breached(&self) -> bool {
        self.first_response.as_ref().is_some_and(|c| c.breached)
            || self.resolution.as_ref().is_some_and(|c| c.breached)
    }
}

/// Statuses in which nothing is owed any more: a clock that has not stopped is not running.
const STOPPED: &[&str] = &["closed", "rejected", "duplicate"];

/// Computes the clocks of a ticket from its `priority`, `status`, `opened_at`,
/// `first_response_at` and `resolved_at` (as the flat JSON record or projection holds them).
/// `None` when the ticket has no `opened_at`.
pub fn ticket_sla(
    ticket: &serde_json::Value,
    policy: &SlaPolicy,
    now: DateTime<Utc>,
) -> Option<TicketSla> {
    let time = |k: &str| {
        ticket
            .get(k)
            .and_then(|v| v.as_str())
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let opened = time("opened_at")?;
    let priority = ticket
        .get("priority")
        .and_then(|v| v.as_str())
        .unwrap_or("normal");
    let status = ticket.get("status").and_then(|v| v.as_str()).unwrap_or("");
    let target = policy.target(Some(priority));
    let stopped = STOPPED.contains(&status);
    let clock = |minutes: i64, met_at: Option<DateTime<Utc>>| -> Option<Clock> {
        let due = opened + Duration::minutes(minutes);
        match met_at {
            Some(at) => Some(Clock {
                due,
                met_at: Some(at),
                breached: at > due,
                minutes_left: None,
            }),
            // A ticket closed, rejected or marked duplicate without that step: no clock.
            None if stopped => None,
            None => Some(Clock {
                due,
                met_at: None,
                breached: now > due,
                minutes_left: Some((due - now).num_minutes()),
            }),
        }
    };
    Some(TicketSla {
        priority: priority.to_string(),
        first_response: clock(target.first_response_minutes, time("first_response_at")),
        resolution: clock(target.resolution_minutes, time("resolved_at")),
    })
}

/// One ticket with its clocks, for `crm ticket sla`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TicketClocks {
    pub id: RecordId,
    pub number: Option<String>,
    pub subject: String,
    pub status: String,
    pub assignee: Option<String>,
    pub sla: TicketSla,
}

impl Store {
    /// The effective SLA policy: the defaults, overridden by the workspace policy record.
    pub fn sla_policy(&self) -> Result<SlaPolicy> {
        let mut policy = SlaPolicy::defaults();
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, json FROM rec_team WHERE archived = 0 \
             AND json_extract(json, '$.custom.' || ?1) = ?2 ORDER BY id",
        )?;
        let rows: Vec<(String, String)> = stmt
            .query_map([POLICY_FLAG, POLICY_FLAG_VALUE], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect::<rusqlite::Result<_>>()?;
        // Per target, the record with the smallest id that sets it wins: the same answer on
        // every device, however many policy records concurrent offline edits created.
        for (id, json) in rows.iter().rev() {
            let json: serde_json::Value = serde_json::from_str(json)
                .map_err(|_| StoreError::CorruptProjection(id.clone()))?;
            for (priority, target) in policy.targets.iter_mut() {
                for first in [true, false] {
                    let value = json
                        .pointer(&format!("/custom/{}", custom_key(priority, first)))
                        .and_then(|v| v.as_str())
                        .and_then(|s| s.parse::<i64>().ok())
                        .filter(|m| *m > 0);
                    if let Some(m) = value {
                        let slot = if first {
                            &mut target.first_response_minutes
                        } else {
                            &mut target.resolution_minutes
                        };
                        *slot = m;
                    }
                }
            }
            policy.record = id.parse().ok();
        }
        for (priority, target) in policy.targets.iter_mut() {
            target.overridden = DEFAULT_TARGETS.iter().any(|(p, fr, res)| {
                p == priority
                    && (*fr != target.first_response_minutes || *res != target.resolution_minutes)
            });
        }
        Ok(policy)
    }

    /// Changes the workspace's SLA targets for `priority` (minutes); creates the policy
    /// record on first use. Returns the new effective policy.
    pub fn set_sla(
        &mut self,
        priority: &str,
        first_response_minutes: Option<i64>,
        resolution_minutes: Option<i64>,
    ) -> Result<SlaPolicy> {
        if !PRIORITIES.contains(&priority) {
            return Err(ValidationError::InvalidValue {
                field: "priority".into(),
                value: priority.to_string(),
                expected: format!("one of {}", PRIORITIES.join(", ")),
            }
            .into());
        }
        if first_response_minutes.is_none() && resolution_minutes.is_none() {
            return Err(StoreError::Rejected(
                "nothing to change: give a first-response and/or a resolution target".into(),
            ));
        }
        let current = self.sla_policy()?.target(Some(priority));
        let first = first_response_minutes.unwrap_or(current.first_response_minutes);
        let resolution = resolution_minutes.unwrap_or(current.resolution_minutes);
        for m in [first, resolution] {
            if m <= 0 {
                return Err(StoreError::Rejected("SLA targets must be positive".into()));
            }
        }
        if first > resolution {
            return Err(StoreError::Rejected(format!(
                "the first-response target ({}) is longer than the resolution target ({})",
                format_duration(first),
                format_duration(resolution)
            )));
        }
        let mut edit = Edit::new(Kind::Team);
        if let Some(m) = first_response_minutes {
            edit.set(
                &format!("custom.{}", custom_key(priority, true)),
                &m.to_string(),
            )?;
        }
        if let Some(m) = resolution_minutes {
            edit.set(
                &format!("custom.{}", custom_key(priority, false)),
                &m.to_string(),
            )?;
        }
        let holder: Option<String> = self
            .conn
            .query_row(
                "SELECT id FROM rec_team WHERE archived = 0 \
                 AND json_extract(json, '$.custom.' || ?1) = ?2 ORDER BY id LIMIT 1",
                [POLICY_FLAG, POLICY_FLAG_VALUE],
                |r| r.get(0),
            )
            .optional()?;
        match holder.and_then(|s| s.parse::<RecordId>().ok()) {
            Some(id) => {
                self.edit(id, &edit)?;
            }
            None => {
                edit.set("name", POLICY_RECORD_NAME)?;
                edit.set(&format!("custom.{POLICY_FLAG}"), POLICY_FLAG_VALUE)?;
                self.create(&edit)?;
            }
        }
        self.sla_policy()
    }

    /// The SLA clocks of one ticket, now.
    pub fn ticket_sla(&mut self, id: RecordId) -> Result<Option<TicketSla>> {
        let record = self.get_kind(Kind::Ticket, id)?;
        let policy = self.sla_policy()?;
        Ok(ticket_sla(&record.to_json(), &policy, self.now()))
    }

    /// Open tickets (new, assigned, in progress, pending the customer) with their clocks,
    /// the nearest due time first; with `include_closed` also resolved and closed ones (their
    /// clocks stopped); with `breached_only`, only those past a target. One query over the
    /// projection.
    pub fn ticket_clocks(
        &self,
        breached_only: bool,
        include_closed: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<TicketClocks>> {
        let policy = self.sla_policy()?;
        let statuses = if include_closed {
            "'new', 'assigned', 'in_progress', 'pending_customer', 'resolved', 'closed'"
        } else {
            "'new', 'assigned', 'in_progress', 'pending_customer'"
        };
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT id, json FROM rec_ticket WHERE archived = 0 AND f_opened_at IS NOT NULL \
             AND f_status IN ({statuses})"
        ))?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, json) = row?;
            let json: serde_json::Value = serde_json::from_str(&json)
                .map_err(|_| StoreError::CorruptProjection(id.clone()))?;
            let Some(sla) = ticket_sla(&json, &policy, now) else {
                continue;
            };
            if breached_only && !sla.breached() {
                continue;
            }
            let s = |k: &str| json.get(k).and_then(|v| v.as_str()).map(str::to_string);
            out.push(TicketClocks {
                id: id
                    .parse()
                    .map_err(|_| StoreError::CorruptProjection(id.clone()))?,
                number: s("number"),
                subject: s("subject").unwrap_or_default(),
                status: s("status").unwrap_or_default(),
                assignee: s("assignee"),
                sla,
            });
        }
        // Running clocks by the nearest due time, then the stopped ones.
        let key = |t: &TicketClocks| {
            let running = [&t.sla.first_response, &t.sla.resolution]
                .into_iter()
                .flatten()
                .filter(|c| c.met_at.is_none())
                .map(|c| c.due)
                .min();
            (running.is_none(), running, t.id)
        };
        out.sort_by_key(key);
        Ok(out)
    }
}

/// A text or enum field's value.
pub(crate) fn text<'a>(record: &'a Record, field: &str) -> Option<&'a str> {
    match record.get(field) {
        Some(FieldValue::Text(s)) => Some(s.as_str()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn durations_parse_and_format() {
        assert_eq!(parse_duration("45m"), Ok(45));
        assert_eq!(parse_duration("2h"), Ok(120));
        assert_eq!(parse_duration("1d"), Ok(1440));
        assert_eq!(parse_duration("1d4h"), Ok(1440 + 240));
        assert_eq!(parse_duration("1.5h"), Ok(90));
        for bad in ["", "2", "h", "2x", "-1h", "0m", "2h3"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(format_duration(60), "1h");
        assert_eq!(format_duration(1440 + 240), "1d 4h");
        assert_eq!(format_duration(45), "45m");
    }

    #[test]
    fn clocks_follow_priority_and_stop() {
        let policy = SlaPolicy::defaults();
        let t0 = Utc
            .with_ymd_and_hms(2026, 3, 2, 9, 0, 0)
            .single()
            .expect("time");
        // Urgent: first response due 10:00, resolution due 13:00.
        let ticket = serde_json::json!({
            "priority": "urgent", "status": "in_progress",
            "opened_at": "2026-03-02T09:00:00Z", "first_response_at": "2026-03-02T09:30:00Z",
        });
        let now = t0 + Duration::hours(5);
        let sla = ticket_sla(&ticket, &policy, now).expect("clocks");
        let fr = sla.first_response.as_ref().expect("fr");
        assert!(!fr.breached, "answered after 30 min of 60");
        assert_eq!(fr.minutes_left, None);
        let res = sla.resolution.as_ref().expect("res");
        assert_eq!(res.due, t0 + Duration::hours(4));
        assert!(res.breached, "14:00 is past the 13:00 resolution target");
        assert_eq!(res.minutes_left, Some(-60));
        // Low, closed without a resolution (e.g. rejected then closed): no resolution clock.
        let closed = serde_json::json!({
            "priority": "low", "status": "rejected", "opened_at": "2026-03-02T09:00:00Z",
        });
        let sla = ticket_sla(&closed, &policy, now).expect("clocks");
        assert!(sla.first_response.is_none() && sla.resolution.is_none());
        assert!(!sla.breached());
    }
}
