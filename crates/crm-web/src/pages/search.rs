//! `/search?q=`: full-text search across every kind (names, emails, phones, notes), Chinese
//! included (the index matches substrings).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::response::Html;
use crm_model::Kind;
use crm_store::SearchHit;
use maud::html;

use super::{Ctx, Params, flag, given};
use crate::error::WebError;
use crate::layout::kind_label;
use crate::state::AppState;

const HITS: usize = 200;

pub(crate) async fn handler(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            let q = given(&params, "q").unwrap_or("").to_string();
            let archived = flag(&params, "archived");
            let hits = if q.is_empty() {
                Vec::new()
            } else {
                store.search(&q, None, archived, HITS)?
            };
            let mut by_kind: BTreeMap<Kind, Vec<&SearchHit>> = BTreeMap::new();
            for h in &hits {
                by_kind.entry(h.kind).or_default().push(h);
            }
            let content = html! {
                div.page-head {
                    div {
                        h1 { "Search" }
                        p.sub { span data-testid="search-count" { (hits.len()) } " result(s) for “" (q) "”" }
                    }
                }
                form.filters method="get" action="/search" {
                    input type="search" name="q" value=(q) data-testid="search-input" autofocus;
                    label.check { input type="checkbox" name="archived" value="1" checked[archived]; " Archived too" }
                    button type="submit" { "Search" }
                }
                div.search-results data-testid="search-results" {
                    @for (kind, items) in &by_kind {
                        section.card {
                            h2 { (kind_label(*kind, true)) " " span.count { (items.len()) } }
                            ul.related-list {
                                @for h in items {
                                    li.archived[h.archived] data-testid=(format!("hit-{}", h.id)) {
                                        a href=(format!("/r/{}", h.id)) data-testid=(format!("link-{}", h.id)) { (h.title) }
                                        @if h.archived { " " span.badge.badge-archived { "archived" } }
                                    }
                                }
                            }
                        }
                    }
                    @if hits.is_empty() && !q.is_empty() { p.muted { "Nothing matches." } }
                }
            };
            ctx.finish(store, "Search", "search", content)
        })
        .await
}
