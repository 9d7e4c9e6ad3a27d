//! `/k/{kind}`: the list of one kind with search, filters, sorting and pages, read from the
//! kind's projection table (never a document).

use axum::extract::{Path, Query, State};
use axum::response::Html;
use crm_model::{FieldDef, FieldType, Kind, RecordId};
use crm_store::{Cmp, Filter, ListQuery, ListRow, Store};
use maud::{Markup, html};
use serde_json::Value as Json;

use super::{Ctx, Params, flag, given, kind_of, url_with, users};
use crate::error::WebError;
use crate::layout::{humanize, kind_label, refs_in, short_time, value_text, value_view};
use crate::state::AppState;

/// Rows per page.
pub(crate) const PAGE: usize = 50;
/// Most search hits a list considers.
const MAX_HITS: usize = 1000;

pub(crate) async fn handler(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let kind = kind_of(&kind)?;
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            let content = render(store, kind, &params)?;
            ctx.finish(store, &kind_label(kind, true), kind.as_str(), content)
        })
        .await
}

/// The columns shown besides the title: the kind's main filterable fields.
pub(crate) fn columns(kind: Kind) -> Vec<&'static FieldDef> {
    let mut cols: Vec<&'static FieldDef> = kind
        .schema()
        .fields
        .iter()
        .filter(|f| f.filter && !f.title)
        .take(5)
        .collect();
    if let Some(owner) = kind.schema().field("owner").filter(|_| kind != Kind::User) {
        cols.push(owner);
    }
    cols
}

/// The `f.FIELD=value` filters of a request.
fn filters(kind: Kind, params: &Params) -> Result<Vec<Filter>, WebError> {
    let schema = kind.schema();
    let mut out = Vec::new();
    for (k, v) in params {
        let Some(name) = k.strip_prefix("f.") else {
            continue;
        };
        if v.trim().is_empty() {
            continue;
        }
        let field = schema
            .field(name)
            .filter(|f| f.filter)
            .ok_or_else(|| WebError::invalid(format!("{kind} has no filter {name:?}"), None))?;
        // Free text (industry, source, …) matches a part; everything else the whole value.
        let cmp = if field.ty == FieldType::Text && !field.title {
            Cmp::Contains
        } else {
            Cmp::Eq
        };
        out.push(Filter {
            field: field.name.into(),
            cmp,
            value: v.trim().to_string(),
        });
    }
    Ok(out)
}

fn matches(row: &ListRow, filters: &[Filter], tags: &[String]) -> bool {
    let value_is = |field: &str, want: &str, cmp: Cmp| {
        let hit = |v: &Json| match cmp {
            Cmp::Contains => value_text(v).to_lowercase().contains(&want.to_lowercase()),
            _ => value_text(v) == want,
        };
        match row.json.get(field) {
            Some(Json::Array(items)) => items.iter().any(hit),
            Some(v) => hit(v),
            None => false,
        }
    };
    filters.iter().all(|f| value_is(&f.field, &f.value, f.cmp))
        && tags.iter().all(|t| value_is("tags", t, Cmp::Eq))
}

/// The rows of one page and whether there is a next one.
fn rows(
    store: &Store,
    kind: Kind,
    params: &Params,
    page: usize,
) -> Result<(Vec<ListRow>, bool), WebError> {
    let archived = flag(params, "archived");
    let filters = filters(kind, params)?;
    let tags: Vec<String> = given(params, "tag")
        .map(str::to_string)
        .into_iter()
        .collect();
    if let Some(q) = given(params, "q") {
        let start = (page - 1) * PAGE;
        if filters.is_empty() && tags.is_empty() {
            // The hits are already in order: the search stops one past this page, and only
            // this page's rows are read.
            let hits = store.search(q, Some(kind), archived, start + PAGE + 1)?;
            let ids: Vec<RecordId> = hits.iter().skip(start).take(PAGE).map(|h| h.id).collect();
            let rows = store.rows_by_id(kind, &ids)?;
            return Ok((rows, hits.len() > start + PAGE));
        }
        let hits = store.search(q, Some(kind), archived, MAX_HITS)?;
        let ids: Vec<RecordId> = hits.iter().map(|h| h.id).collect();
        let mut rows: Vec<ListRow> = store
            .rows_by_id(kind, &ids)?
            .into_iter()
            .filter(|r| matches(r, &filters, &tags))
            .collect();
        let more = rows.len() > start + PAGE;
        rows = rows.into_iter().skip(start).take(PAGE).collect();
        return Ok((rows, more));
    }
    let mut q = ListQuery::new(kind);
    q.filters = filters;
    q.tags = tags;
    q.include_archived = archived;
    q.sort = given(params, "sort").map(str::to_string);
    q.descending = flag(params, "desc");
    q.limit = PAGE + 1;
    q.offset = (page - 1) * PAGE;
    let mut rows = store.list(&q)?;
    let more = rows.len() > PAGE;
    rows.truncate(PAGE);
    Ok((rows, more))
}

fn render(store: &Store, kind: Kind, params: &Params) -> Result<Markup, WebError> {
    let may_create = store.may(
        crm_model::Action::Create,
        kind,
        &crm_model::Scope {
            owner: store.identity().user_id,
            ..crm_model::Scope::default()
        },
    )?;
    let page = given(params, "page")
        .and_then(|p| p.parse::<usize>().ok())
        .filter(|p| *p >= 1)
        .unwrap_or(1);
    let (rows, more) = rows(store, kind, params, page)?;
    let total = store.count(kind, flag(params, "archived"))?;
    let cols = columns(kind);
    let refs: Vec<RecordId> = rows
        .iter()
        .flat_map(|r| {
            cols.iter()
                .filter_map(|f| r.json.get(f.name).map(|v| refs_in(f, v)))
                .flatten()
                .collect::<Vec<_>>()
        })
        .collect();
    let titles = store.titles_batch(&refs)?;
    let users = users(store)?;
    let path = format!("/k/{}", kind.as_str());
    let sort = given(params, "sort");
    let desc = flag(params, "desc");
    let sort_link = |name: &str| {
        let flip = if sort == Some(name) && !desc { "1" } else { "" };
        url_with(
            &path,
            params,
            &[("sort", name), ("desc", flip), ("page", "")],
        )
    };
    let arrow = |name: &str| match (sort == Some(name), desc) {
        (true, false) => " ▲",
        (true, true) => " ▼",
        _ => "",
    };
    Ok(html! {
        div.page-head {
            div {
                h1 { (kind_label(kind, true)) }
                p.sub { span data-testid="list-total" { (total) } " " (if flag(params, "archived") { "records including archived" } else { "records" }) }
            }
            @if may_create {
                a.button.primary href=(format!("{path}/new")) data-testid="new-record" { "+ New " (kind_label(kind, false).to_lowercase()) }
            }
        }
        form.filters method="get" action=(path) data-testid="list-filters" {
            input type="search" name="q" value=(given(params, "q").unwrap_or("")) placeholder=(format!("Search {}…", kind_label(kind, true).to_lowercase())) data-testid="list-search";
            @for f in kind.schema().all_fields().filter(|f| f.filter) {
                (filter_select(f, params, &users))
            }
            label.check { input type="checkbox" name="archived" value="1" checked[flag(params, "archived")] data-testid="filter-archived"; " Archived" }
            @if let Some(s) = sort { input type="hidden" name="sort" value=(s); }
            @if desc { input type="hidden" name="desc" value="1"; }
            button type="submit" data-testid="filter-apply" { "Apply" }
            @if params.iter().any(|(k, v)| (k == "q" || k.starts_with("f.") || k == "tag") && !v.is_empty()) {
                a.clear href=(path) { "Clear" }
            }
        }
        div.card.table-card {
            table.list data-testid="list-table" {
                thead { tr {
                    th { a href=(sort_link("title")) { "Name" (arrow("title")) } }
                    @for f in &cols {
                        th { a href=(sort_link(f.name)) { (humanize(f.name)) (arrow(f.name)) } }
                    }
                    th { "Tags" }
                    th { a href=(sort_link("created_at")) { "Created" (arrow("created_at")) } }
                } }
                tbody {
                    @for r in &rows {
                        @let archived = r.json.get("archived").and_then(Json::as_bool).unwrap_or(false);
                        tr.archived[archived] data-testid=(format!("row-{}", r.id)) {
                            td.title-cell {
                                a href=(format!("/r/{}", r.id)) data-testid=(format!("link-{}", r.id)) { (r.title) }
                                @if archived { " " span.badge.badge-archived { "archived" } }
                            }
                            @for f in &cols { td { (value_view(f, r.json.get(f.name), &titles)) } }
                            td { (tag_chips(&r.json)) }
                            td.muted { (created(&r.json)) }
                        }
                    }
                    @if rows.is_empty() {
                        tr { td.empty colspan=(cols.len() + 3) { "Nothing here yet. " a href=(format!("{path}/new")) { "Create one" } } }
                    }
                }
            }
        }
        div.pager {
            @if page > 1 {
                a.button href=(url_with(&path, params, &[("page", &(page - 1).to_string())])) data-testid="page-prev" { "← Previous" }
            }
            span.muted { "Page " (page) }
            @if more {
                a.button href=(url_with(&path, params, &[("page", &(page + 1).to_string())])) data-testid="page-next" { "Next →" }
            }
        }
    })
}

fn created(json: &Json) -> String {
    json.get("created_at")
        .and_then(Json::as_str)
        .map(short_time)
        .unwrap_or_default()
}

pub(crate) fn tag_chips(json: &Json) -> Markup {
    html! {
        @for t in json.get("tags").and_then(Json::as_array).into_iter().flatten().filter_map(Json::as_str) {
            span.chip { (t) }
        }
    }
}

/// A select for an enum or user filter; other filter fields are reached through search.
fn filter_select(f: &FieldDef, params: &Params, users: &[(RecordId, String)]) -> Markup {
    let name = format!("f.{}", f.name);
    let current = given(params, &name).unwrap_or("");
    let options: Vec<(String, String)> = match f.ty {
        FieldType::Enum(values) => values
            .iter()
            .map(|v| ((*v).to_string(), humanize(v)))
            .collect(),
        FieldType::Ref(kinds) if kinds == [Kind::User] => users
            .iter()
            .map(|(id, t)| (id.to_string(), t.clone()))
            .collect(),
        FieldType::Text if !f.title => {
            return html! {
                input type="text" name=(name) value=(current) placeholder=(humanize(f.name))
                    aria-label=(humanize(f.name)) data-testid=(format!("filter-{}", f.name)) .filter-text;
            };
        }
        _ => return html! {},
    };
    html! {
        select name=(name) data-testid=(format!("filter-{}", f.name)) aria-label=(humanize(f.name)) {
            option value="" { "Any " (humanize(f.name).to_lowercase()) }
            @for (v, label) in &options {
                option value=(v) selected[v == current] { (label) }
            }
        }
    }
}
