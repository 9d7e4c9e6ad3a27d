//! `/tickets`: the service queue by status, priority and assignee, oldest first, with SLA
//! breaches highlighted and assign and resolve actions on each row.

use axum::extract::{Query, State};
use axum::response::Html;
use chrono::{DateTime, Utc};
use crm_model::kinds::ticket::{PRIORITIES, STATUSES};
use crm_model::{Kind, RecordId};
use crm_store::dashboard::{CLOSED_TICKET_STATUSES, SlaPolicy};
use crm_store::{Cmp, Filter, ListQuery, Store};
use maud::{Markup, html};
use serde_json::Value as Json;

use super::{Ctx, Params, flag, given, url_with, users};
use crate::error::WebError;
use crate::layout::{humanize, short_time};
use crate::state::AppState;

const PAGE: usize = 50;

pub(crate) async fn handler(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            let content = render(store, &params)?;
            ctx.finish(store, "Ticket queue", "tickets", content)
        })
        .await
}

/// Which SLA target an open ticket has broken at `now`, if any.
pub(crate) fn breach(policy: &SlaPolicy, json: &Json, now: DateTime<Utc>) -> Option<&'static str> {
    let status = json.get("status").and_then(Json::as_str).unwrap_or("new");
    if CLOSED_TICKET_STATUSES.contains(&status) {
        return None;
    }
    let priority = json
        .get("priority")
        .and_then(Json::as_str)
        .unwrap_or("normal");
    let sla = policy.get(priority)?;
    let opened: DateTime<Utc> = json.get("opened_at")?.as_str()?.parse().ok()?;
    let age = now - opened;
    if age > sla.resolution {
        Some("resolution overdue")
    } else if json.get("first_response_at").is_none() && age > sla.first_response {
        Some("first response overdue")
    } else {
        None
    }
}

fn render(store: &Store, params: &Params) -> Result<Markup, WebError> {
    let me = store.identity().user_id;
    let users = users(store)?;
    let page = given(params, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let mut q = ListQuery::new(Kind::Ticket);
    let status = given(params, "status");
    let show_all = flag(params, "all");
    match status {
        Some(s) => q.filters.push(Filter {
            field: "status".into(),
            cmp: Cmp::Eq,
            value: s.into(),
        }),
        None if !show_all => {
            for s in CLOSED_TICKET_STATUSES {
                q.filters.push(Filter {
                    field: "status".into(),
                    cmp: Cmp::Ne,
                    value: (*s).into(),
                });
            }
        }
        None => {}
    }
    if let Some(p) = given(params, "priority") {
        q.filters.push(Filter {
            field: "priority".into(),
            cmp: Cmp::Eq,
            value: p.into(),
        });
    }
    let assignee = given(params, "assignee");
    match assignee {
        Some("me") => {
            if let Some(me) = me {
                q.filters.push(Filter {
                    field: "assignee".into(),
                    cmp: Cmp::Eq,
                    value: me.to_string(),
                });
            }
        }
        Some(a) => q.filters.push(Filter {
            field: "assignee".into(),
            cmp: Cmp::Eq,
            value: a.into(),
        }),
        None => {}
    }
    q.sort = Some("opened_at".into());
    q.limit = PAGE + 1;
    q.offset = (page - 1) * PAGE;
    let mut rows = store.list(&q)?;
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);
    let accounts: Vec<RecordId> = rows
        .iter()
        .filter_map(|r| r.json.get("account")?.as_str()?.parse().ok())
        .collect();
    let titles = store.titles_batch(&accounts)?;
    let policy = SlaPolicy::from(&store.sla_policy()?);
    let now = Utc::now();
    let load = store.ticket_load(&policy, now)?;
    Ok(html! {
        div.page-head {
            div {
                h1 { "Ticket queue" }
                p.sub {
                    @for l in &load {
                        span.stat { span class=(format!("badge badge-{}", l.priority)) { (humanize(&l.priority)) } " " (l.open) " open"
                            @if l.first_response_breaches + l.resolution_breaches > 0 {
                                span.breach-count { " · " (l.resolution_breaches.max(l.first_response_breaches)) " over SLA" }
                            }
                        }
                    }
                }
            }
            a.button.primary href="/k/ticket/new" { "+ New ticket" }
        }
        form.filters method="get" action="/tickets" data-testid="ticket-filters" {
            select name="status" aria-label="Status" data-testid="filter-status" {
                option value="" { "Open tickets" }
                @for s in STATUSES { option value=(s) selected[Some(*s) == status] { (humanize(s)) } }
            }
            select name="priority" aria-label="Priority" data-testid="filter-priority" {
                option value="" { "Any priority" }
                @for p in PRIORITIES { option value=(p) selected[Some(*p) == given(params, "priority")] { (humanize(p)) } }
            }
            select name="assignee" aria-label="Assignee" data-testid="filter-assignee" {
                option value="" { "Anyone" }
                option value="me" selected[assignee == Some("me")] { "Me" }
                @for (id, name) in &users {
                    @let v = id.to_string();
                    option value=(v) selected[Some(v.as_str()) == assignee] { (name) }
                }
            }
            label.check { input type="checkbox" name="all" value="1" checked[show_all]; " Include closed" }
            button type="submit" { "Apply" }
        }
        div.card.table-card {
            table.list.queue data-testid="ticket-table" {
                thead { tr { th { "Ticket" } th { "Account" } th { "Priority" } th { "Status" } th { "Opened" } th { "SLA" } th { "Assignee" } th {} } }
                tbody {
                    @for r in &rows {
                        @let id = r.id;
                        @let b = breach(&policy, &r.json, now);
                        @let status = r.json.get("status").and_then(Json::as_str).unwrap_or("new");
                        @let assigned = r.json.get("assignee").and_then(Json::as_str).unwrap_or("");
                        @let account = r.json.get("account").and_then(Json::as_str).and_then(|s| s.parse::<RecordId>().ok());
                        tr.sla-breach[b.is_some()] data-testid=(format!("ticket-row-{id}")) data-id=(id) {
                            td.title-cell { a href=(format!("/r/{id}")) data-testid=(format!("link-{id}")) { (r.title) } }
                            td { @if let Some(a) = account { a href=(format!("/r/{a}")) { (titles.get(&a).cloned().unwrap_or_default()) } } }
                            td { @let p = r.json.get("priority").and_then(Json::as_str).unwrap_or("normal"); span class=(format!("badge badge-{p}")) { (humanize(p)) } }
                            td data-testid=(format!("ticket-status-{id}")) { span class=(format!("badge badge-{status}")) { (humanize(status)) } }
                            td.muted { (r.json.get("opened_at").and_then(Json::as_str).map(short_time).unwrap_or_default()) }
                            td { @if let Some(b) = b { span.badge.badge-breach data-testid=(format!("sla-{id}")) { (b) } } @else { span.muted { "ok" } } }
                            td data-testid=(format!("ticket-assignee-{id}")) data-assignee=(assigned) {
                                select.js-assign data-id=(id) data-testid=(format!("assign-{id}")) aria-label="Assign to" {
                                    option value="" selected[assigned.is_empty()] { "Unassigned" }
                                    @for (uid, name) in &users {
                                        @let v = uid.to_string();
                                        option value=(v) selected[v == assigned] { (name) }
                                    }
                                }
                            }
                            td {
                                @if !CLOSED_TICKET_STATUSES.contains(&status) {
                                    button.js-resolve-ticket type="button" data-id=(id) data-testid=(format!("resolve-{id}")) { "Resolve" }
                                }
                            }
                        }
                    }
                    @if rows.is_empty() { tr { td.empty colspan="8" { "The queue is empty." } } }
                }
            }
        }
        div.pager {
            @if page > 1 { a.button href=(url_with("/tickets", params, &[("page", &(page - 1).to_string())])) data-testid="page-prev" { "← Previous" } }
            span.muted { "Page " (page) }
            @if more { a.button href=(url_with("/tickets", params, &[("page", &(page + 1).to_string())])) data-testid="page-next" { "Next →" } }
        }
    })
}
