//! Aggregates over the projections for the dashboard, the pipeline board, the ticket queue
//! and the reports of the web UI: SQL over the `rec_<kind>` tables, never a document.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use crm_model::{Kind, RecordId, format_time};
use rusqlite::OptionalExtension;
use rusqlite::types::Value as Sql;

use crate::error::{Result, StoreError};
use crate::query::ListRow;
use crate::replica::Store;
use crate::schema::table;

/// Count and amounts of the opportunities in one stage (amounts in minor units).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StageTotal {
    pub stage: String,
    pub count: u64,
    pub amount_minor: i64,
    /// Amount times the probability (the override, else the stage's default).
    pub weighted_minor: i64,
}

/// Expected revenue of the opportunities closing in one month.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonthForecast {
    /// `YYYY-MM`.
    pub month: String,
    pub count: u64,
    pub amount_minor: i64,
    pub weighted_minor: i64,
}

/// An open task or other activity with a due time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DueTask {
    pub id: RecordId,
    pub title: String,
    pub due: String,
    pub status: Option<String>,
    pub priority: Option<String>,
    pub reminder_minutes: Option<i64>,
}

/// The service-level targets of one ticket priority.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sla {
    pub first_response: Duration,
    pub resolution: Duration,
}

/// Service-level targets per priority (DATA-MODEL.md's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaPolicy(pub Vec<(String, Sla)>);

impl Default for SlaPolicy {
    fn default() -> Self {
        let h = Duration::hours;
        SlaPolicy(vec![
            ("urgent".into(), sla(h(1), h(4))),
            ("high".into(), sla(h(4), h(24))),
            ("normal".into(), sla(h(24), h(72))),
            ("low".into(), sla(h(48), h(120))),
        ])
    }
}

fn sla(first_response: Duration, resolution: Duration) -> Sla {
    Sla {
        first_response,
        resolution,
    }
}

impl From<&crate::flows::sla::SlaPolicy> for SlaPolicy {
    /// The workspace's policy as it syncs (`Store::sla_policy`), in the dashboard's priority
    /// order, so the pages highlight the breaches the reports count.
    fn from(policy: &crate::flows::sla::SlaPolicy) -> Self {
        let mut out = SlaPolicy::default();
        for (priority, sla) in &mut out.0 {
            let t = policy.target(Some(priority));
            *sla = self::sla(
                Duration::minutes(t.first_response_minutes),
                Duration::minutes(t.resolution_minutes),
            );
        }
        out
    }
}

impl SlaPolicy {
    pub fn get(&self, priority: &str) -> Option<Sla> {
        self.0.iter().find(|(p, _)| p == priority).map(|(_, s)| *s)
    }
}

/// Open tickets of one priority and how many of them broke their targets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PriorityLoad {
    pub priority: String,
    pub open: u64,
    /// Open, no first response yet, and older than the first-response target.
    pub first_response_breaches: u64,
    /// Open and older than the resolution target.
    pub resolution_breaches: u64,
}

/// A record changed recently.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecentChange {
    pub id: RecordId,
    pub kind: Kind,
    pub title: String,
    pub updated_at: Option<String>,
    pub updated_by: Option<String>,
}

/// A record that refers to another one, and through which field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Referrer {
    pub id: RecordId,
    pub kind: Kind,
    pub title: String,
    pub field: String,
    pub archived: bool,
}

/// The records whose documents changed after a point of the local change log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangedSince {
    /// The newest change's position; pass it back to get only later changes.
    pub seq: i64,
    pub ids: Vec<RecordId>,
    /// More records changed than the limit: treat everything as changed.
    pub truncated: bool,
}

/// Ticket statuses that count as closed work.
pub const CLOSED_TICKET_STATUSES: &[&str] = &["resolved", "closed", "rejected", "duplicate"];
/// Activity statuses that need nothing more.
pub const DONE_ACTIVITY_STATUSES: &[&str] = &["completed", "cancelled", "held", "not_held"];

fn quoted_list(items: &[&str]) -> String {
    items
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_id(s: &str) -> Result<RecordId> {
    s.parse()
        .map_err(|_| StoreError::CorruptProjection(s.to_string()))
}

fn parse_kind(s: &str) -> Result<Kind> {
    s.parse()
        .map_err(|_| StoreError::CorruptProjection(s.to_string()))
}

/// SQL for the probability of an opportunity: its override, else its stage's default.
fn probability_sql() -> String {
    let mut sql = String::from("COALESCE(f_probability, CASE f_stage");
    for stage in crm_model::kinds::opportunity::STAGES {
        let p = crm_model::kinds::opportunity::default_probability(stage).unwrap_or(0);
        sql.push_str(&format!(" WHEN '{stage}' THEN {p}"));
    }
    sql.push_str(" ELSE 0 END)");
    sql
}

impl Store {
    /// Opportunities per stage (not archived), in the schema's stage order; stages without
    /// opportunities are included with zeros.
    pub fn stage_totals(&self) -> Result<Vec<StageTotal>> {
        let sql = format!(
            "SELECT f_stage, count(*), COALESCE(sum(f_amount), 0), \
             COALESCE(sum(COALESCE(f_amount, 0) * {} / 100), 0) \
             FROM rec_opportunity WHERE archived = 0 GROUP BY f_stage",
            probability_sql()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut found: HashMap<String, (u64, i64, i64)> = HashMap::new();
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, Option<String>>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (stage, n, amount, weighted) = row?;
            if let Some(stage) = stage {
                found.insert(stage, (u64::try_from(n).unwrap_or(0), amount, weighted));
            }
        }
        Ok(crm_model::kinds::opportunity::STAGES
            .iter()
            .map(|s| {
                let (count, amount_minor, weighted_minor) =
                    found.get(*s).copied().unwrap_or_default();
                StageTotal {
                    stage: (*s).to_string(),
                    count,
                    amount_minor,
                    weighted_minor,
                }
            })
            .collect())
    }

    /// Open opportunities (not closed) by the month of their expected close date, oldest
    /// first, at most `months` months starting with `from` (`YYYY-MM`).
    pub fn forecast_by_month(&self, from: &str, months: usize) -> Result<Vec<MonthForecast>> {
        let sql = format!(
            "SELECT substr(f_close_date, 1, 7) AS m, count(*), COALESCE(sum(f_amount), 0), \
             COALESCE(sum(COALESCE(f_amount, 0) * {} / 100), 0) \
             FROM rec_opportunity WHERE archived = 0 AND f_close_date IS NOT NULL \
             AND f_stage NOT IN ('closed_won', 'closed_lost') AND m >= ?1 \
             GROUP BY m ORDER BY m LIMIT ?2",
            probability_sql()
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(
            rusqlite::params![from, i64::try_from(months).unwrap_or(i64::MAX)],
            |r| {
                Ok(MonthForecast {
                    month: r.get(0)?,
                    count: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                    amount_minor: r.get(2)?,
                    weighted_minor: r.get(3)?,
                })
            },
        )?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Open activities due before `until`, soonest first: the user's own (assigned to them,
    /// or unassigned and owned by them), or everyone's when `user` is `None`.
    pub fn due_tasks(
        &self,
        user: Option<RecordId>,
        until: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DueTask>> {
        let mut sql = format!(
            "SELECT id, title, f_due, f_status, f_priority, f_reminder_minutes FROM rec_activity \
             WHERE archived = 0 AND f_due IS NOT NULL AND f_due <= ?1 \
             AND (f_status IS NULL OR f_status NOT IN ({}))",
            quoted_list(DONE_ACTIVITY_STATUSES)
        );
        let mut params = vec![Sql::Text(format_time(&until))];
        if let Some(user) = user {
            sql.push_str(" AND (f_assignee = ?2 OR (f_assignee IS NULL AND f_owner = ?2))");
            params.push(Sql::Text(user.to_string()));
        }
        sql.push_str(&format!(
            " ORDER BY f_due, id LIMIT {}",
            i64::try_from(limit).unwrap_or(i64::MAX)
        ));
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let rows = stmt.query_map(rusqlite::params_from_iter(params), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, title, due, status, priority, reminder_minutes) = row?;
            out.push(DueTask {
                id: parse_id(&id)?,
                title,
                due,
                status,
                priority,
                reminder_minutes,
            });
        }
        Ok(out)
    }

    /// Open tickets per priority (in the policy's order) with their SLA breaches at `now`.
    pub fn ticket_load(&self, policy: &SlaPolicy, now: DateTime<Utc>) -> Result<Vec<PriorityLoad>> {
        let sql = format!(
            "SELECT count(*), \
             COALESCE(sum(f_first_response_at IS NULL AND f_opened_at < ?2), 0), \
             COALESCE(sum(f_opened_at < ?3), 0) \
             FROM rec_ticket WHERE archived = 0 AND f_priority = ?1 \
             AND (f_status IS NULL OR f_status NOT IN ({}))",
            quoted_list(CLOSED_TICKET_STATUSES)
        );
        let mut stmt = self.conn.prepare_cached(&sql)?;
        let mut out = Vec::new();
        for (priority, sla) in &policy.0 {
            let first = format_time(&(now - sla.first_response));
            let resolution = format_time(&(now - sla.resolution));
            let (open, fr, res) =
                stmt.query_row(rusqlite::params![priority, first, resolution], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                    ))
                })?;
            out.push(PriorityLoad {
                priority: priority.clone(),
                open: u64::try_from(open).unwrap_or(0),
                first_response_breaches: u64::try_from(fr).unwrap_or(0),
                resolution_breaches: u64::try_from(res).unwrap_or(0),
            });
        }
        Ok(out)
    }

    /// The most recently changed records across kinds, newest first.
    pub fn recent_changes(&self, limit: usize) -> Result<Vec<RecentChange>> {
        let n = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        for kind in Kind::ALL {
            let mut stmt = self.conn.prepare_cached(&format!(
                "SELECT id, title, updated_at, updated_by FROM {} WHERE archived = 0 \
                 ORDER BY updated_at DESC, id DESC LIMIT ?1",
                table(*kind)
            ))?;
            let rows = stmt.query_map([n], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            })?;
            for row in rows {
                let (id, title, updated_at, updated_by) = row?;
                out.push(RecentChange {
                    id: parse_id(&id)?,
                    kind: *kind,
                    title,
                    updated_at,
                    updated_by,
                });
            }
        }
        out.sort_by(|a, b| {
            b.updated_at
                .cmp(&a.updated_at)
                .then_with(|| b.id.to_string().cmp(&a.id.to_string()))
        });
        out.truncate(limit);
        Ok(out)
    }

    /// The records that refer to `target` through any reference field, at most `limit`.
    pub fn referrers(&self, target: RecordId, limit: usize) -> Result<Vec<Referrer>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT d.id, d.kind, r.field FROM record_refs r JOIN documents d ON d.docno = r.docno \
             WHERE r.target = ?1 AND d.kind IS NOT NULL ORDER BY d.id DESC LIMIT ?2",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![target.to_string(), i64::try_from(limit).unwrap_or(i64::MAX)],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            },
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (id, kind, field) = row?;
            let kind = parse_kind(&kind)?;
            let found: Option<(String, bool)> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT title, archived FROM {} WHERE id = ?1",
                    table(kind)
                ))?
                .query_row([&id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((title, archived)) = found {
                out.push(Referrer {
                    id: parse_id(&id)?,
                    kind,
                    title,
                    field,
                    archived,
                });
            }
        }
        Ok(out)
    }

    /// The projection rows of the given records of one kind, in the order given; unknown ids
    /// are left out.
    pub fn rows_by_id(&self, kind: Kind, ids: &[RecordId]) -> Result<Vec<ListRow>> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT title, json FROM {} WHERE id = ?1",
            table(kind)
        ))?;
        let mut out = Vec::new();
        for id in ids {
            let row: Option<(String, String)> = stmt
                .query_row([id.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            if let Some((title, json)) = row {
                out.push(ListRow {
                    id: *id,
                    title,
                    json: serde_json::from_str(&json)
                        .map_err(|_| StoreError::CorruptProjection(id.to_string()))?,
                });
            }
        }
        Ok(out)
    }

    /// The display titles of many records at once (a list page's references): one query for
    /// their kinds and one per kind, instead of two per id. Unknown ids are left out.
    pub fn titles_batch(&self, ids: &[RecordId]) -> Result<HashMap<RecordId, String>> {
        let mut wanted: Vec<String> = ids.iter().map(ToString::to_string).collect();
        wanted.sort();
        wanted.dedup();
        let mut out = HashMap::new();
        for chunk in wanted.chunks(500) {
            let marks = vec!["?"; chunk.len()].join(",");
            let mut by_kind: HashMap<Kind, Vec<String>> = HashMap::new();
            let mut stmt = self.conn.prepare(&format!(
                "SELECT id, kind FROM documents WHERE kind IS NOT NULL AND id IN ({marks})"
            ))?;
            let rows = stmt.query_map(rusqlite::params_from_iter(chunk), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            for row in rows {
                let (id, kind) = row?;
                if let Ok(kind) = kind.parse::<Kind>() {
                    by_kind.entry(kind).or_default().push(id);
                }
            }
            for (kind, kind_ids) in by_kind {
                let marks = vec!["?"; kind_ids.len()].join(",");
                let mut stmt = self.conn.prepare(&format!(
                    "SELECT id, title FROM {} WHERE id IN ({marks})",
                    table(kind)
                ))?;
                let rows = stmt.query_map(rusqlite::params_from_iter(&kind_ids), |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?;
                for row in rows {
                    let (id, title) = row?;
                    out.insert(parse_id(&id)?, title);
                }
            }
        }
        Ok(out)
    }

    /// The position of the newest change in the local change log (0 when empty).
    pub fn change_log_head(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT COALESCE(max(seq), 0) FROM changes", [], |r| {
                r.get(0)
            })?)
    }

    /// The records whose documents received changes after position `seq` of the local
    /// change log, at most `limit` of them.
    pub fn changed_since(&self, seq: i64, limit: usize) -> Result<ChangedSince> {
        let head = self.change_log_head()?;
        if head <= seq {
            return Ok(ChangedSince {
                seq: head,
                ids: Vec::new(),
                truncated: false,
            });
        }
        let mut stmt = self.conn.prepare_cached(
            "SELECT DISTINCT d.id FROM changes c JOIN documents d ON d.docno = c.docno \
             WHERE c.seq > ?1 AND c.seq <= ?2 LIMIT ?3",
        )?;
        let rows = stmt.query_map(
            rusqlite::params![seq, head, i64::try_from(limit + 1).unwrap_or(i64::MAX)],
            |r| r.get::<_, String>(0),
        )?;
        let mut ids = Vec::new();
        for row in rows {
            ids.push(parse_id(&row?)?);
        }
        let truncated = ids.len() > limit;
        ids.truncate(limit);
        Ok(ChangedSince {
            seq: head,
            ids,
            truncated,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_model::Edit;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path(), "alice", "laptop").expect("init");
        (dir, store)
    }

    #[test]
    fn stage_totals_sum_amounts_and_weight_them() {
        let (_dir, mut s) = store();
        for (name, stage, amount) in [
            ("A", "proposal", "1000"),
            ("B", "proposal", "500.50"),
            ("C", "negotiation", "200"),
        ] {
            let mut e = Edit::new(Kind::Opportunity);
            e.set("name", name).expect("name");
            e.set("stage", stage).expect("stage");
            e.set("amount", amount).expect("amount");
            s.create(&e).expect("create");
        }
        let totals = s.stage_totals().expect("totals");
        assert_eq!(totals.len(), crm_model::kinds::opportunity::STAGES.len());
        let proposal = totals.iter().find(|t| t.stage == "proposal").expect("row");
        assert_eq!((proposal.count, proposal.amount_minor), (2, 150_050));
        assert_eq!(proposal.weighted_minor, 75_025);
        let nego = totals
            .iter()
            .find(|t| t.stage == "negotiation")
            .expect("row");
        assert_eq!(nego.weighted_minor, 16_000);
        let won = totals
            .iter()
            .find(|t| t.stage == "closed_won")
            .expect("row");
        assert_eq!(won.count, 0);
    }

    #[test]
    fn the_synced_sla_policy_drives_the_dashboard_targets() {
        let defaults = crate::flows::sla::SlaPolicy::defaults();
        assert_eq!(SlaPolicy::from(&defaults), SlaPolicy::default());
        let mut changed = defaults.clone();
        if let Some(t) = changed.targets.get_mut("urgent") {
            t.first_response_minutes = 30;
            t.resolution_minutes = 120;
        }
        let policy = SlaPolicy::from(&changed);
        assert_eq!(
            policy.get("urgent"),
            Some(sla(Duration::minutes(30), Duration::minutes(120)))
        );
        assert_eq!(policy.get("high"), SlaPolicy::default().get("high"));
    }

    #[test]
    fn sla_breaches_count_only_open_overdue_tickets() {
        let (_dir, mut s) = store();
        let now = Utc::now();
        let old = format_time(&(now - Duration::hours(5)));
        for (subject, status, opened) in [
            ("late", "new", old.as_str()),
            ("done", "resolved", old.as_str()),
            ("fresh", "new", &format_time(&now)),
        ] {
            let mut e = Edit::new(Kind::Ticket);
            e.set("subject", subject).expect("subject");
            e.set("priority", "urgent").expect("priority");
            e.set("status", status).expect("status");
            e.set("opened_at", opened).expect("opened");
            s.create(&e).expect("create");
        }
        let load = s.ticket_load(&SlaPolicy::default(), now).expect("load");
        let urgent = load
            .iter()
            .find(|l| l.priority == "urgent")
            .expect("urgent");
        assert_eq!(urgent.open, 2);
        assert_eq!(urgent.first_response_breaches, 1);
        assert_eq!(urgent.resolution_breaches, 1);
    }

    #[test]
    fn referrers_and_changes_are_found() {
        let (_dir, mut s) = store();
        let head = s.change_log_head().expect("head");
        let mut a = Edit::new(Kind::Account);
        a.set("name", "深圳星光贸易有限公司").expect("name");
        let account = s.create(&a).expect("account");
        let mut c = Edit::new(Kind::Contact);
        c.set("first_name", "芳").expect("first");
        c.set("last_name", "王").expect("last");
        c.set("account", &account.id.to_string()).expect("account");
        let contact = s.create(&c).expect("contact");
        let refs = s.referrers(account.id, 10).expect("refs");
        assert_eq!(refs.len(), 1);
        assert_eq!((refs[0].id, refs[0].kind), (contact.id, Kind::Contact));
        assert_eq!(refs[0].title, "王芳");
        let changed = s.changed_since(head, 10).expect("changed");
        assert!(changed.ids.contains(&account.id) && changed.ids.contains(&contact.id));
        assert!(!changed.truncated);
        let again = s.changed_since(changed.seq, 10).expect("again");
        assert!(again.ids.is_empty());
        let titles = s
            .titles_batch(&[account.id, contact.id, account.id, RecordId::new()])
            .expect("titles");
        assert_eq!(titles.len(), 2);
        assert_eq!(titles[&contact.id], "王芳");
        assert_eq!(titles[&account.id], "深圳星光贸易有限公司");
        let rows = s.rows_by_id(Kind::Contact, &[contact.id]).expect("rows");
        assert_eq!(rows[0].title, "王芳");
    }
}
