//! Reports: the figures managers read, computed with plain SQL over the projection tables
//! (`rec_<kind>` rows, `record_history` for stage and status histories, `record_refs` for
//! links), never by loading documents, so a report costs the same whether it runs on a
//! laptop or in the web UI, and stays fast at 50k records.
//!
//! Every report is a [`ReportDef`] in a group's catalogue (one file per group); the CLI's
//! `crm report NAME` and the web UI's charts both run them through [`Store::report`].
//! Derived values (weighted amounts, rates, durations) are computed here, never stored.

mod activity;
mod marketing;
mod sales;
mod service;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use serde_json::Value as Json;

use crate::{Result, Store, StoreError};

/// What a report's cells hold, so clients can format and chart them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// A label: a stage, an owner's name, a month.
    Text,
    /// A whole number of things.
    Count,
    /// Money in minor units (cents, fen), like the `amount` fields.
    Money,
    /// A ratio in 0..=1 (shown as a percentage).
    Ratio,
    /// A duration in hours.
    Hours,
    /// A duration in days.
    Days,
    /// An average or score (shown with one decimal).
    Number,
}

/// One column of a report table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Column {
    /// The key of the column in `--json` rows.
    pub key: &'static str,
    /// The header shown in tables and charts.
    pub label: &'static str,
    pub unit: Unit,
}

impl Column {
    pub const fn new(key: &'static str, label: &'static str, unit: Unit) -> Self {
        Column { key, label, unit }
    }
}

/// A computed report: a table (rows of cells in column order) and summary figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub name: &'static str,
    pub title: &'static str,
    pub columns: Vec<Column>,
    /// One cell per column; `null` where a figure is undefined (a rate over nothing).
    pub rows: Vec<Vec<Json>>,
    /// Whole-report figures (totals, overall rates), in display order.
    pub summary: Vec<Figure>,
}

/// A named figure of a report's summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub key: &'static str,
    pub label: &'static str,
    pub unit: Unit,
    pub value: Json,
}

impl Report {
    fn new(def: &ReportDef, columns: Vec<Column>) -> Self {
        Report {
            name: def.name,
            title: def.title,
            columns,
            rows: Vec::new(),
            summary: Vec::new(),
        }
    }

    /// The rows as JSON objects keyed by column, for `--json` and the web UI.
    pub fn to_json(&self) -> Json {
        let rows: Vec<Json> = self
            .rows
            .iter()
            .map(|row| {
                Json::Object(
                    self.columns
                        .iter()
                        .zip(row)
                        .map(|(c, v)| (c.key.to_string(), v.clone()))
                        .collect(),
                )
            })
            .collect();
        let summary: serde_json::Map<String, Json> = self
            .summary
            .iter()
            .map(|f| (f.key.to_string(), f.value.clone()))
            .collect();
        serde_json::json!({
            "report": self.name,
            "title": self.title,
            "columns": self.columns,
            "rows": rows,
            "summary": summary,
        })
    }
}

/// What a report is computed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportParams {
    /// "Now" for overdue, backlog and age figures; passed in so reports are reproducible.
    pub now: DateTime<Utc>,
    /// Only records whose report date (created, closed, opened…, per report) is on or after.
    pub from: Option<NaiveDate>,
    /// … and on or before.
    pub to: Option<NaiveDate>,
}

impl ReportParams {
    pub fn now() -> Self {
        ReportParams {
            now: Utc::now(),
            from: None,
            to: None,
        }
    }
}

/// A report in the catalogue.
#[derive(Debug, Clone, Copy)]
pub struct ReportDef {
    /// The name `crm report NAME` takes: lowercase words joined by `-`.
    pub name: &'static str,
    /// sales, service, marketing or activity.
    pub group: &'static str,
    pub title: &'static str,
    /// One line on what it shows and where the figures come from.
    pub about: &'static str,
    run: fn(&Store, &ReportDef, &ReportParams) -> Result<Report>,
}

/// Every group's reports, in display order.
const GROUPS: &[&[ReportDef]] = &[
    sales::REPORTS,
    service::REPORTS,
    marketing::REPORTS,
    activity::REPORTS,
];

/// Every report, grouped and in display order.
pub fn catalogue() -> impl Iterator<Item = &'static ReportDef> {
    GROUPS.iter().flat_map(|g| g.iter())
}

impl Store {
    /// Runs the report `name` (see [`catalogue`]).
    pub fn report(&self, name: &str, params: &ReportParams) -> Result<Report> {
        let def =
            catalogue()
                .find(|d| d.name == name)
                .ok_or_else(|| StoreError::UnknownReport {
                    name: name.to_string(),
                    known: catalogue().map(|d| d.name).collect::<Vec<_>>().join(", "),
                })?;
        (def.run)(self, def, params)
    }
}

/// `value / total` as a JSON ratio, `null` when there is nothing to divide by.
pub(crate) fn ratio(value: f64, total: f64) -> Json {
    if total == 0.0 {
        Json::Null
    } else {
        serde_json::json!(value / total)
    }
}

/// The rows of `sql` (run with `args`) by their first column, a text, with the figures
/// `figures` reads from the others.
pub(crate) fn keyed<T>(
    store: &Store,
    sql: &str,
    args: Vec<String>,
    figures: impl Fn(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
) -> Result<std::collections::HashMap<String, T>> {
    let mut stmt = store.conn.prepare_cached(sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), |r| {
        Ok((r.get::<_, String>(0)?, figures(r)?))
    })?;
    let mut out = std::collections::HashMap::new();
    for row in rows {
        let (key, value) = row?;
        out.insert(key, value);
    }
    Ok(out)
}

/// The SQL condition and parameters restricting `column` (an ISO date or datetime text) to
/// the report's date range.
pub(crate) fn date_range(column: &str, params: &ReportParams) -> (String, Vec<String>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    if let Some(from) = params.from {
        sql.push_str(&format!(" AND substr({column}, 1, 10) >= ?"));
        args.push(from.to_string());
    }
    if let Some(to) = params.to {
        sql.push_str(&format!(" AND substr({column}, 1, 10) <= ?"));
        args.push(to.to_string());
    }
    (sql, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let mut seen = std::collections::BTreeSet::new();
        for def in catalogue() {
            assert!(seen.insert(def.name), "duplicate report {}", def.name);
            assert!(
                def.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'),
                "{}",
                def.name
            );
            assert!(
                ["sales", "service", "marketing", "activity"].contains(&def.group),
                "{}",
                def.group
            );
        }
    }

    #[test]
    fn an_unknown_report_is_invalid_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let err = store
            .report("no-such-report", &ReportParams::now())
            .expect_err("unknown");
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("funnel"), "{err}");
    }
}
