//! `/reports`: the pipeline funnel and the forecast by close month (from
//! [`ReportData::load`], projection aggregates), then every report of the `crm report`
//! catalogue, the chosen one as a table and a bar chart, run through `Store::report` so the
//! page and the CLI show the same figures. The drawing lives in [`crate::charts`] and knows
//! nothing of where numbers come from.

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::Utc;
use crm_store::Store;
use crm_store::dashboard::{MonthForecast, StageTotal};
use crm_store::reports::{self, Report, ReportParams, Unit};
use maud::{Markup, html};
use serde_json::Value as Json;

use super::{Ctx, Params, param};
use crate::charts::{self, Bar, FunnelStep};
use crate::error::WebError;
use crate::layout::{humanize, money_minor};
use crate::state::AppState;

/// Months of forecast shown.
const MONTHS: usize = 12;

/// The numbers behind the reports page.
pub(crate) struct ReportData {
    pub(crate) stages: Vec<StageTotal>,
    pub(crate) forecast: Vec<MonthForecast>,
}

impl ReportData {
    pub(crate) fn load(store: &Store) -> Result<ReportData, WebError> {
        let month = Utc::now().format("%Y-%m").to_string();
        Ok(ReportData {
            stages: store.stage_totals()?,
            forecast: store.forecast_by_month(&month, MONTHS)?,
        })
    }

    /// The funnel: opportunities at or past each stage, closed-lost left out (where they
    /// dropped out is not known from the current stage).
    pub(crate) fn funnel(&self) -> Vec<FunnelStep> {
        let open: Vec<&StageTotal> = self
            .stages
            .iter()
            .filter(|s| s.stage != "closed_lost")
            .collect();
        (0..open.len())
            .map(|i| {
                let count: u64 = open[i..].iter().map(|s| s.count).sum();
                let amount: i64 = open[i..].iter().map(|s| s.amount_minor).sum();
                FunnelStep {
                    key: open[i].stage.clone(),
                    label: humanize(&open[i].stage),
                    count,
                    note: money_minor(amount),
                }
            })
            .collect()
    }
}

pub(crate) async fn handler(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let ctx = Ctx::new(&state, &params);
    let chosen = param(&params, "report").map(str::to_string);
    state
        .with_store(move |store| {
            let data = ReportData::load(store)?;
            // The same reports as `crm report NAME`, from the same code.
            let report = chosen
                .map(|name| store.report(&name, &ReportParams::now()))
                .transpose()?;
            let body = html! {
                (render(&data))
                (catalogue(report.as_ref()))
            };
            ctx.finish(store, "Reports", "reports", body)
        })
        .await
}

/// Every report of the catalogue as a link, and the chosen one as a table with a bar chart of
/// its first money or count column.
fn catalogue(report: Option<&Report>) -> Markup {
    html! {
        section.card data-testid="report-catalogue" {
            h2 { "All reports" }
            p.muted { "The figures of " code { "crm report NAME" } ", computed on this device from the replica." }
            p {
                @for def in reports::catalogue() {
                    a.chip href={ "/reports?report=" (def.name) } title=(def.about) { (def.title) } " "
                }
            }
            @if let Some(report) = report {
                (report_table(report))
            }
        }
    }
}

fn report_table(report: &Report) -> Markup {
    let label_col = report.columns.iter().position(|c| c.unit == Unit::Text);
    let value_col = report
        .columns
        .iter()
        .position(|c| matches!(c.unit, Unit::Money | Unit::Count));
    let bars: Vec<Bar> = match (label_col, value_col) {
        (Some(l), Some(v)) => report
            .rows
            .iter()
            .map(|row| Bar {
                label: row.get(l).map(text).unwrap_or_default(),
                value: row.get(v).and_then(Json::as_f64).map_or(0.0, |x| {
                    if report.columns[v].unit == Unit::Money {
                        x / 100.0
                    } else {
                        x
                    }
                }),
                second: None,
                note: row
                    .get(v)
                    .map(|x| cell(report.columns[v].unit, x))
                    .unwrap_or_default(),
            })
            .collect(),
        _ => Vec::new(),
    };
    html! {
        h3 data-testid={ "report-" (report.name) } { (report.title) }
        @if !bars.is_empty() {
            (charts::bars("report-chart", &bars))
        }
        table.compact {
            thead { tr { @for c in &report.columns { th.num[c.unit != Unit::Text] { (c.label) } } } }
            tbody {
                @for row in &report.rows {
                    tr { @for (c, v) in report.columns.iter().zip(row) { td.num[c.unit != Unit::Text] { (cell(c.unit, v)) } } }
                }
            }
        }
        @if !report.summary.is_empty() {
            dl.summary {
                @for f in &report.summary { dt { (f.label) } dd { (cell(f.unit, &f.value)) } }
            }
        }
    }
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Null => "–".into(),
        other => other.to_string(),
    }
}

/// A report cell as people read it, like the CLI's tables.
fn cell(unit: Unit, v: &Json) -> String {
    match (unit, v.as_f64()) {
        (_, None) => text(v),
        (Unit::Money, Some(x)) => money_minor(x.round() as i64),
        (Unit::Ratio, Some(x)) => format!("{:.1}%", x * 100.0),
        (Unit::Hours, Some(x)) => format!("{x:.1} h"),
        (Unit::Days, Some(x)) => format!("{x:.1} d"),
        (Unit::Number, Some(x)) => format!("{x:.1}"),
        (Unit::Count | Unit::Text, Some(_)) => text(v),
    }
}

fn render(data: &ReportData) -> Markup {
    let won = data.stages.iter().find(|s| s.stage == "closed_won");
    let lost = data.stages.iter().find(|s| s.stage == "closed_lost");
    let (won_n, lost_n) = (won.map_or(0, |s| s.count), lost.map_or(0, |s| s.count));
    let win_rate = if won_n + lost_n > 0 {
        format!("{:.0}%", won_n as f64 * 100.0 / (won_n + lost_n) as f64)
    } else {
        "–".into()
    };
    let bars: Vec<Bar> = data
        .forecast
        .iter()
        .map(|m| Bar {
            label: m.month.clone(),
            value: m.amount_minor as f64 / 100.0,
            second: Some(m.weighted_minor as f64 / 100.0),
            note: format!("{} deals", m.count),
        })
        .collect();
    html! {
        div.page-head {
            div {
                h1 { "Reports" }
                p.sub { "Win rate " strong data-testid="win-rate" { (win_rate) } " (" (won_n) " won, " (lost_n) " lost)" }
            }
        }
        div.report-grid {
            section.card {
                h2 { "Pipeline funnel" }
                p.muted { "Open and won opportunities at or past each stage; the amount beside each bar is theirs." }
                (charts::funnel("funnel-chart", &data.funnel()))
                table.compact {
                    thead { tr { th { "Stage now" } th.num { "Deals" } th.num { "Amount" } th.num { "Weighted" } } }
                    tbody {
                        @for s in &data.stages {
                            tr { td { (humanize(&s.stage)) } td.num { (s.count) } td.num { (money_minor(s.amount_minor)) } td.num { (money_minor(s.weighted_minor)) } }
                        }
                    }
                }
            }
            section.card {
                h2 { "Forecast by expected close month" }
                p.muted { span.legend.legend-main {} " amount  " span.legend.legend-second {} " weighted by probability (open deals)" }
                @if bars.is_empty() {
                    p.muted { "No open opportunity has a close date in the next " (MONTHS) " months." }
                }
                (charts::bars("forecast-chart", &bars))
                table.compact {
                    thead { tr { th { "Month" } th.num { "Deals" } th.num { "Amount" } th.num { "Weighted" } } }
                    tbody {
                        @for m in &data.forecast {
                            tr { td { (m.month) } td.num { (m.count) } td.num { (money_minor(m.amount_minor)) } td.num { (money_minor(m.weighted_minor)) } }
                        }
                    }
                }
            }
        }
    }
}
