//! `/`: the dashboard. Pipeline totals by stage, tasks due and overdue (with reminders that
//! have fallen due), open tickets by priority with SLA breaches, recent activity and sync
//! status. Every number is an aggregate over the projections.

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{DateTime, Duration, Utc};
use crm_store::Store;
use crm_store::dashboard::{DueTask, SlaPolicy};
use maud::{Markup, html};

use super::{Ctx, Params, given};
use crate::error::WebError;
use crate::layout::{humanize, kind_label, money_minor, short_time};
use crate::state::AppState;
use crate::sync::SyncStatus;

/// Tasks listed: overdue and due within this window.
const DUE_WINDOW_DAYS: i64 = 7;

pub(crate) async fn handler(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            let content = render(store, &ctx.status, &params)?;
            ctx.finish(store, "Dashboard", "dashboard", content)
        })
        .await
}

/// Whether a task's reminder has fallen due at `now`.
fn reminder_due(task: &DueTask, now: DateTime<Utc>) -> bool {
    let Ok(due) = task.due.parse::<DateTime<Utc>>() else {
        return false;
    };
    let before = Duration::minutes(task.reminder_minutes.unwrap_or(0));
    now >= due - before
}

fn render(store: &Store, status: &SyncStatus, params: &Params) -> Result<Markup, WebError> {
    let now = Utc::now();
    let totals = store.stage_totals()?;
    let max_amount = totals
        .iter()
        .map(|t| t.amount_minor)
        .max()
        .unwrap_or(0)
        .max(1);
    let me = store.identity().user_id;
    let scope_all = given(params, "tasks") == Some("all");
    let until = now + Duration::days(DUE_WINDOW_DAYS);
    let mut tasks = if scope_all {
        Vec::new()
    } else {
        store.due_tasks(me, until, 15)?
    };
    let showing_team = scope_all || tasks.is_empty();
    if showing_team {
        tasks = store.due_tasks(None, until, 15)?;
    }
    let load = store.ticket_load(&SlaPolicy::from(&store.sla_policy()?), now)?;
    let recent = store.recent_changes(12)?;
    let pending = store.outbox_len()?;
    let last_sync = store.last_sync()?;
    let now_text = crm_model::format_time(&now);
    Ok(html! {
        div.page-head {
            div {
                h1 { "Good day, " (store.identity().user) }
                p.sub { "Everything below is read from this device's replica; it works with the relay unreachable." }
            }
        }
        div.dash-grid {
            section.card data-testid="dash-pipeline" {
                h2 { a href="/board" { "Pipeline by stage" } }
                table.compact {
                    thead { tr { th { "Stage" } th.num { "Deals" } th.num { "Amount" } th {} } }
                    tbody {
                        @for t in &totals {
                            tr data-testid=(format!("dash-stage-{}", t.stage)) {
                                td { a href=(format!("/k/opportunity?f.stage={}", t.stage)) { (humanize(&t.stage)) } }
                                td.num { (t.count) }
                                td.num { (money_minor(t.amount_minor)) }
                                td.bar-cell { span.bar style=(format!("width:{}%", t.amount_minor.max(0) * 100 / max_amount)) {} }
                            }
                        }
                    }
                }
            }
            section.card data-testid="dash-tasks" {
                h2 {
                    @if showing_team { "Team tasks due" } @else { "My tasks due" }
                    span.muted { " (overdue and next " (DUE_WINDOW_DAYS) " days)" }
                }
                @if showing_team && !scope_all { p.muted { "Nothing due for you; showing the team's." } }
                ul.tasks {
                    @for t in &tasks {
                        @let overdue = t.due < now_text;
                        @let remind = reminder_due(t, now);
                        li.overdue[overdue].reminder[remind && !overdue] data-testid=[remind.then_some("reminder")] {
                            a href=(format!("/r/{}", t.id)) { (t.title) }
                            div.muted {
                                @if overdue { span.badge.badge-breach { "overdue" } " " }
                                @else if remind { span.badge.badge-reminder { "🔔 reminder" } " " }
                                "due " (short_time(&t.due))
                                @if let Some(p) = &t.priority { " · " (humanize(p)) }
                            }
                        }
                    }
                    @if tasks.is_empty() { li.muted { "No tasks due. " } }
                }
                p { a href=(if scope_all { "/" } else { "/?tasks=all" }) { (if scope_all { "Show mine" } else { "Show the team's" }) } }
            }
            section.card data-testid="dash-tickets" {
                h2 { a href="/tickets" { "Open tickets by priority" } }
                table.compact {
                    thead { tr { th { "Priority" } th.num { "Open" } th.num { "First response late" } th.num { "Resolution late" } } }
                    tbody {
                        @for l in &load {
                            @let breached = l.first_response_breaches + l.resolution_breaches > 0;
                            tr.sla-breach[breached] data-testid=(format!("dash-priority-{}", l.priority)) {
                                td { a href=(format!("/tickets?priority={}", l.priority)) { span class=(format!("badge badge-{}", l.priority)) { (humanize(&l.priority)) } } }
                                td.num { (l.open) }
                                td.num { (l.first_response_breaches) }
                                td.num data-testid=(format!("sla-breaches-{}", l.priority)) { (l.resolution_breaches) }
                            }
                        }
                    }
                }
                p.muted { "SLA: urgent 1 h / 4 h, high 4 h / 1 d, normal 1 d / 3 d, low 2 d / 5 d (first response / resolution)." }
            }
            section.card data-testid="dash-activity" {
                h2 { "Recent activity" }
                ul.recent {
                    @for r in &recent {
                        li {
                            span.kind-tag { (kind_label(r.kind, false)) }
                            " " a href=(format!("/r/{}", r.id)) { (r.title) }
                            div.muted {
                                (r.updated_at.as_deref().map(short_time).unwrap_or_default())
                                @if let Some(by) = &r.updated_by { " · " (by) }
                            }
                        }
                    }
                }
            }
            section.card data-testid="dash-sync" {
                h2 { "Sync" }
                p { span class=(format!("dot-inline state-{}", status.state())) {} " " (status.label()) }
                p { strong { (pending) } " local change(s) waiting to be sent" }
                p { "Last sync: " (last_sync.as_deref().map_or("never".to_string(), short_time)) }
                @if let Some(relay) = &status.relay { p.muted { "Relay: " (relay) } }
            }
        }
    })
}
