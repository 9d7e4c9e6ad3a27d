//! `/board`: opportunities in stage columns with count and amount totals; a card moves by
//! dragging it onto another column (or with its stage select).

use axum::extract::{Query, State};
use axum::response::Html;
use crm_model::kinds::opportunity::STAGES;
use crm_model::{Kind, RecordId};
use crm_store::{Cmp, Filter, ListQuery, Store};
use maud::{Markup, html};
use serde_json::Value as Json;

use super::{Ctx, Params, given};
use crate::error::WebError;
use crate::layout::{humanize, money_minor, money_text, value_text};
use crate::state::AppState;

/// Cards shown per column (the totals count every opportunity).
const CARDS: usize = 40;

pub(crate) async fn handler(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            let content = render(store, &params)?;
            ctx.finish(store, "Pipeline", "board", content)
        })
        .await
}

fn render(store: &Store, params: &Params) -> Result<Markup, WebError> {
    let totals = store.stage_totals()?;
    let owner = given(params, "owner");
    let users = super::users(store)?;
    let mut columns = Vec::new();
    let mut account_ids: Vec<RecordId> = Vec::new();
    for stage in STAGES {
        let mut q = ListQuery::new(Kind::Opportunity);
        q.filters.push(Filter {
            field: "stage".into(),
            cmp: Cmp::Eq,
            value: (*stage).into(),
        });
        if let Some(o) = owner {
            q.filters.push(Filter {
                field: "owner".into(),
                cmp: Cmp::Eq,
                value: o.into(),
            });
        }
        q.sort = Some("amount".into());
        q.descending = true;
        q.limit = CARDS;
        let rows = store.list(&q)?;
        account_ids.extend(
            rows.iter()
                .filter_map(|r| r.json.get("account")?.as_str()?.parse::<RecordId>().ok()),
        );
        columns.push((*stage, rows));
    }
    let titles = store.titles_batch(&account_ids)?;
    let open_total: i64 = totals
        .iter()
        .filter(|t| !t.stage.starts_with("closed"))
        .map(|t| t.amount_minor)
        .sum();
    let weighted: i64 = totals
        .iter()
        .filter(|t| !t.stage.starts_with("closed"))
        .map(|t| t.weighted_minor)
        .sum();
    Ok(html! {
        div.page-head {
            div {
                h1 { "Pipeline" }
                p.sub { "Open pipeline " strong data-testid="board-open-total" { (money_minor(open_total)) } " · weighted " strong { (money_minor(weighted)) } }
            }
            form.filters.inline method="get" action="/board" {
                select name="owner" aria-label="Owner" data-testid="board-owner" {
                    option value="" { "Everyone's deals" }
                    @for (id, name) in &users {
                        @let v = id.to_string();
                        option value=(v) selected[Some(v.as_str()) == owner] { (name) }
                    }
                }
                button type="submit" { "Show" }
                a.button.primary href="/k/opportunity/new" { "+ New opportunity" }
            }
        }
        @if owner.is_some() { p.muted { "Column totals count everyone's opportunities; the cards are the selected owner's." } }
        div.board data-testid="board" {
            @for (stage, rows) in &columns {
                @let total = totals.iter().find(|t| t.stage == *stage);
                section.column data-testid=(format!("board-column-{stage}")) data-stage=(stage) {
                    header.column-head {
                        h2 { (humanize(stage)) }
                        div.column-stats {
                            span.count data-testid=(format!("column-count-{stage}")) { (total.map_or(0, |t| t.count)) }
                            span.total data-testid=(format!("column-total-{stage}")) { (money_minor(total.map_or(0, |t| t.amount_minor))) }
                        }
                    }
                    div.cards {
                        @for r in rows {
                            @let amount = r.json.get("amount").map(value_text);
                            @let account = r.json.get("account").and_then(Json::as_str).and_then(|s| s.parse::<RecordId>().ok());
                            article.card.deal draggable="true" data-id=(r.id) data-testid=(format!("card-{}", r.id)) {
                                a.deal-name href=(format!("/r/{}", r.id)) { (r.title) }
                                @if let Some(a) = account {
                                    div.deal-account { a href=(format!("/r/{a}")) { (titles.get(&a).cloned().unwrap_or_default()) } }
                                }
                                div.deal-meta {
                                    span.money { (amount.as_deref().map(money_text).unwrap_or_else(|| "—".into())) }
                                    @if let Some(d) = r.json.get("close_date").and_then(Json::as_str) { span.muted { " · close " (d) } }
                                }
                                select.js-stage aria-label="Move to stage" data-id=(r.id) data-testid=(format!("card-stage-{}", r.id)) {
                                    @for s in STAGES {
                                        option value=(s) selected[s == stage] { (humanize(s)) }
                                    }
                                }
                            }
                        }
                        @if total.is_some_and(|t| t.count as usize > rows.len()) && owner.is_none() {
                            a.more href=(format!("/k/opportunity?f.stage={stage}&sort=amount&desc=1")) {
                                "and " (total.map_or(0, |t| t.count as usize) - rows.len()) " more"
                            }
                        }
                    }
                }
            }
        }
    })
}
