//! `/rejected`: the edits the relay refused (see `crm_store::Store::settle_refused`), each with
//! its record, the fields with the value typed and the value the record has, when, and the
//! relay's reason; Retry makes it again as a new change (the role checks apply), Dismiss drops
//! it. Every page shows a banner linking here while there are any (`layout::page`).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::response::Html;
use crm_model::RecordId;
use crm_store::{RejectedEdit, RejectedField, Store};
use maud::{Markup, html};
use serde_json::Value as Json;

use super::{Ctx, Params};
use crate::error::WebError;
use crate::layout::{humanize, kind_label, refs_in, short_time, value_text, value_view};
use crate::state::AppState;

pub(crate) async fn handler(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            let content = render(store)?;
            ctx.finish(store, "Refused edits", "rejected", content)
        })
        .await
}

fn render(store: &Store) -> Result<Markup, WebError> {
    let all = store.rejected()?;
    // References are shown by their records' names.
    let refs: Vec<RecordId> = all
        .iter()
        .flat_map(|e| {
            e.fields
                .iter()
                .flat_map(move |f| match e.kind.schema().field(&f.field) {
                    Some(def) => [refs_in(def, &f.typed), refs_in(def, &f.old)].concat(),
                    None => Vec::new(),
                })
        })
        .collect();
    let titles = store.titles_batch(&refs)?;
    let mut rows = Vec::with_capacity(all.len());
    for edit in &all {
        // A record whose creation was refused is not here until the edit is retried.
        let exists = store.kind_of(edit.record).is_ok();
        rows.push(item(edit, exists, &titles));
    }
    Ok(html! {
        div.page-head {
            div {
                h1 { "Refused edits" }
                p.sub {
                    "The relay refused these edits made on this device (your role does not allow them, "
                    "or no longer does). They were taken out of the records, which show what the relay "
                    "accepted. Retry makes an edit again as a new change; Dismiss drops it."
                }
            }
        }
        @if all.is_empty() {
            div.card data-testid="rejected-empty" { p.muted { "No refused edits." } }
        } @else {
            div.rejected-list data-testid="rejected-list" {
                @for row in rows { (row) }
            }
        }
    })
}

/// One refused edit as a card.
fn item(edit: &RejectedEdit, exists: bool, titles: &HashMap<RecordId, String>) -> Markup {
    let id = edit.id;
    html! {
        article.card.rejected data-testid=(format!("rejected-{id}")) data-record=(edit.record.to_string()) {
            div.rejected-head {
                div.rejected-what {
                    span.kind-tag { (kind_label(edit.kind, false)) }
                    @if edit.created { " " span.badge.badge-new { "new record" } }
                    div.rejected-title {
                        @if exists {
                            a href=(format!("/r/{}", edit.record)) data-testid=(format!("link-{}", edit.record)) { (edit.title) }
                        } @else {
                            span data-testid=(format!("title-{id}")) { (edit.title) }
                            " " span.muted { "(not created)" }
                        }
                    }
                }
                div.actions {
                    button.primary.js-retry type="button" data-id=(id) data-testid=(format!("retry-{id}")) { "Retry" }
                    button.js-dismiss type="button" data-id=(id) data-testid=(format!("dismiss-{id}")) { "Dismiss" }
                }
            }
            p.rejected-reason data-testid=(format!("reason-{id}")) {
                span.badge.badge-breach { (edit.code) } " " (edit.reason)
            }
            @if edit.fields.is_empty() {
                p.muted { "No visible change." }
            } @else {
                table.compact.rejected-fields {
                    thead { tr { th { "Field" } th { "You typed" } th { "Now" } } }
                    tbody {
                        @for f in &edit.fields { (field_row(edit, f, titles)) }
                    }
                }
            }
            p.rejected-when.muted {
                @if let Some(made) = &edit.made_at { "Made " time datetime=(made) { (short_time(made)) } " · " }
                "refused " time datetime=(edit.refused_at) { (short_time(&edit.refused_at)) }
            }
            p.field-error data-testid=(format!("rejected-error-{id}")) hidden {}
        }
    }
}

fn field_row(edit: &RejectedEdit, f: &RejectedField, titles: &HashMap<RecordId, String>) -> Markup {
    let def = edit.kind.schema().field(&f.field);
    let view = |v: &Json| match def {
        Some(def) => value_view(def, Some(v), titles),
        None => shown(v),
    };
    html! {
        tr data-testid=(format!("rejected-{}-field-{}", edit.id, f.field)) {
            td.field-label { (humanize(&f.field)) }
            td.typed { (view(&f.typed)) }
            td.old { (view(&f.old)) }
        }
    }
}

/// A value as one short text; an empty one as a dash.
fn shown(v: &Json) -> Markup {
    let text = value_text(v);
    if text.trim().is_empty() {
        return html! { span.empty { "—" } };
    }
    let short: String = text.chars().take(200).collect();
    html! {
        span.value title=(text) {
            (short)
            @if short.len() < text.len() { "…" }
        }
    }
}
