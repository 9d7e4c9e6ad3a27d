//! `/reports`: the pipeline funnel and the forecast by close month. The data comes from
//! [`ReportData::load`] (projection aggregates today; the `crm report` queries when they
//! land); the drawing lives in [`crate::charts`] and knows nothing of where numbers come from.

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::Utc;
use crm_store::Store;
use crm_store::dashboard::{MonthForecast, StageTotal};
use maud::{Markup, html};

use super::{Ctx, Params};
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
    state
        .with_store(move |store| {
            let data = ReportData::load(store)?;
            ctx.finish(store, "Reports", "reports", render(&data))
        })
        .await
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
