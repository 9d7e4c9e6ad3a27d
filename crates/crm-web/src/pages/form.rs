//! `/k/{kind}/new`: the new-record form. A post with bad input re-renders the form with
//! every error beside its field and stores nothing.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use crm_model::{Edit, FieldDef, FieldType, Kind, MergeRule};
use crm_store::Store;
use maud::{Markup, html};

use super::{Ctx, Params, kind_of, users};
use crate::edits::field_text;
use crate::error::WebError;
use crate::layout::{editor, humanize, kind_label};
use crate::state::AppState;

/// The fields a new-record form asks for.
pub(crate) fn form_fields(kind: Kind) -> Vec<&'static FieldDef> {
    let schema = kind.schema();
    schema
        .all_fields()
        .filter(|f| {
            let skipped = f.default == Some("now")
                || (f.name == "number" && schema.number_prefix.is_some())
                || matches!(f.ty, FieldType::List | FieldType::Answers)
                || matches!(f.name, "teams" | "merged_into")
                || f.rule == MergeRule::Append;
            !skipped
        })
        .collect()
}

pub(crate) async fn show(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let kind = kind_of(&kind)?;
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            // Defaults first, then anything the link pre-filled (e.g. `?account=ID`).
            let mut values: BTreeMap<String, String> = form_fields(kind)
                .iter()
                .filter_map(|f| Some((f.name.to_string(), f.default?.to_string())))
                .collect();
            for (k, v) in &params {
                if kind.schema().field(k).is_some() {
                    values.insert(k.clone(), v.clone());
                }
            }
            let content = render(store, kind, &ctx.csrf, &values, &BTreeMap::new(), None)?;
            ctx.finish(
                store,
                &format!("New {}", kind_label(kind, false).to_lowercase()),
                kind.as_str(),
                content,
            )
        })
        .await
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Path(kind): Path<String>,
    Form(form): Form<Params>,
) -> Result<Response, WebError> {
    let kind = kind_of(&kind)?;
    let ctx = Ctx::new(&state, &Vec::new());
    state
        .with_store(move |store| {
            let values: BTreeMap<String, String> =
                form.into_iter().filter(|(k, _)| k != "_csrf").collect();
            let mut errors: BTreeMap<String, String> = BTreeMap::new();
            let edit = build(store, kind, &values, &mut errors);
            let summary = if errors.is_empty() {
                match store.create(&edit) {
                    Ok(record) => {
                        return Ok(Redirect::to(&format!("/r/{}", record.id)).into_response());
                    }
                    Err(e) => {
                        let e = WebError::from(e);
                        if !matches!(e, WebError::Invalid { .. }) {
                            return Err(e);
                        }
                        if let Some(f) = e.field() {
                            errors.insert(f.to_string(), e.to_string());
                        }
                        Some(e.to_string())
                    }
                }
            } else {
                None
            };
            let content = render(store, kind, &ctx.csrf, &values, &errors, summary.as_deref())?;
            let page = ctx.finish(
                store,
                &format!("New {}", kind_label(kind, false).to_lowercase()),
                kind.as_str(),
                content,
            )?;
            Ok((StatusCode::UNPROCESSABLE_ENTITY, page).into_response())
        })
        .await
}

/// The edit of a new record from the form, collecting one error per bad field.
fn build(
    store: &Store,
    kind: Kind,
    values: &BTreeMap<String, String>,
    errors: &mut BTreeMap<String, String>,
) -> Edit {
    let mut edit = Edit::new(kind);
    for field in form_fields(kind) {
        let text = values.get(field.name).map_or("", |v| v.trim());
        if text.is_empty() {
            if field.required {
                errors.insert(
                    field.name.into(),
                    format!("{} is required", humanize(field.name)),
                );
            }
            continue;
        }
        let result = field_text(store, field, text)
            .and_then(|t| edit.set(field.name, &t).map(|_| ()).map_err(WebError::from));
        if let Err(e) = result {
            errors.insert(field.name.into(), e.to_string());
        }
    }
    for (k, _) in values.iter().filter(|(_, v)| !v.trim().is_empty()) {
        if kind.schema().field(k).is_none() {
            errors.insert(k.clone(), format!("{kind} has no field {k:?}"));
        }
    }
    edit
}

fn render(
    store: &Store,
    kind: Kind,
    csrf: &str,
    values: &BTreeMap<String, String>,
    errors: &BTreeMap<String, String>,
    summary: Option<&str>,
) -> Result<Markup, WebError> {
    let users = users(store)?;
    let path = format!("/k/{}/new", kind.as_str());
    let label = kind_label(kind, false).to_lowercase();
    Ok(html! {
        div.page-head {
            div {
                p.crumbs { a href=(format!("/k/{}", kind.as_str())) { (kind_label(kind, true)) } " / new" }
                h1 { "New " (label) }
            }
        }
        @if !errors.is_empty() || summary.is_some() {
            div.alert.alert-error data-testid="form-error" role="alert" {
                strong { "Nothing was saved. " }
                (summary.map_or_else(
                    || format!("Please correct {} field(s) below.", errors.len()),
                    str::to_string,
                ))
            }
        }
        form.card.record-form method="post" action=(path) data-testid="record-form" novalidate {
            input type="hidden" name="_csrf" value=(csrf);
            div.form-grid {
                @for f in form_fields(kind) {
                    @let value = values.get(f.name).map_or("", String::as_str);
                    @let error = errors.get(f.name);
                    div.form-field.has-error[error.is_some()].wide[matches!(f.ty, FieldType::Prose)] {
                        label for=(format!("input-{}", f.name)) {
                            (humanize(f.name))
                            @if f.required { span.req title="required" { " *" } }
                        }
                        div.input-wrap {
                            (editor(f, value, &format!("input-{}", f.name), &users))
                        }
                        @if let Some(e) = error {
                            div.field-error data-testid=(format!("field-error-{}", f.name)) { (e) }
                        } @else {
                            div.hint { (f.ty.describe()) }
                        }
                    }
                }
            }
            div.form-actions {
                button.primary type="submit" data-testid="form-submit" { "Create " (label) }
                a.button href=(format!("/k/{}", kind.as_str())) { "Cancel" }
            }
        }
    })
}
