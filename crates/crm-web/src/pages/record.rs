//! `/r/{id}`: one record, read from its document. Fields edit in place, conflicts show on
//! their field with a one-click resolve, tags, notes, related records (the 360° view of an
//! account) and the timeline from the document's history.

use std::collections::{BTreeMap, HashMap};

use axum::extract::{Path, Query, State};
use axum::response::Html;
use crm_model::{FieldDef, FieldType, Kind, MergeRule, Record, RecordId};
use crm_store::Store;
use crm_store::dashboard::Referrer;
use maud::{Markup, html};
use serde_json::Value as Json;

use super::{Ctx, Params, id_of, users};
use crate::error::WebError;
use crate::layout::{editor, humanize, kind_label, refs_in, short_time, value_text, value_view};
use crate::state::AppState;

/// Most timeline entries shown (newest first).
const TIMELINE: usize = 60;
/// Most referring records read.
const RELATED: usize = 400;
/// Related records listed per kind.
const PER_KIND: usize = 25;

pub(crate) async fn handler(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(params): Query<Params>,
) -> Result<Html<String>, WebError> {
    let id = id_of(&id)?;
    let ctx = Ctx::new(&state, &params);
    state
        .with_store(move |store| {
            let record = store.get(id)?;
            let title = record.title();
            let content = render(store, &record)?;
            ctx.finish(store, &title, record.kind.as_str(), content)
        })
        .await
}

/// Whether a field can be edited in place.
pub(crate) fn editable(f: &FieldDef) -> bool {
    f.rule != MergeRule::Immutable
        && f.rule != MergeRule::Append
        && !matches!(f.ty, FieldType::List | FieldType::Answers)
        && f.name != "merged_into"
}

fn render(store: &mut Store, record: &Record) -> Result<Markup, WebError> {
    let json = record.to_json();
    let schema = record.kind.schema();
    let mut refs: Vec<RecordId> = schema
        .all_fields()
        .filter_map(|f| json.get(f.name).map(|v| refs_in(f, v)))
        .flatten()
        .collect();
    // What the user's role allows here (the relay decides in the end): a record the role may
    // not edit shows no editors, and only those who may reassign it can change its owner.
    let scope = store.scope_of_record(record);
    let may_archive = store.may(crm_model::Action::Archive, record.kind, &scope)?;
    let may_edit = store.may(crm_model::Action::Edit, record.kind, &scope)?;
    let may_reassign = may_edit && store.may_reassign(scope.owner)?;
    let related = store.referrers(record.id, RELATED)?;
    let campaigns = if record.kind == Kind::Account {
        account_campaigns(store, &related)?
    } else {
        Vec::new()
    };
    refs.extend(campaigns.iter().copied());
    let mut titles = store.titles_batch(&refs)?;
    let users = users(store)?;
    for (id, t) in &users {
        titles.entry(*id).or_insert_with(|| t.clone());
    }
    let mut timeline = store.history(record.id)?;
    timeline.reverse();
    let changes = timeline.len();
    timeline.truncate(TIMELINE);
    let id = record.id;
    let fields: Vec<&FieldDef> = schema
        .all_fields()
        .filter(|f| f.name != "merged_into" || json.get("merged_into").is_some())
        .collect();
    let schema_conflicts: BTreeMap<&String, &Vec<Json>> = record
        .conflicts
        .iter()
        .filter(|(k, _)| schema.field(k).is_none())
        .collect();
    Ok(html! {
        div.record data-record-id=(id) data-kind=(record.kind.as_str()) {
            div.page-head {
                div {
                    p.crumbs {
                        a href=(format!("/k/{}", record.kind.as_str())) { (kind_label(record.kind, true)) }
                        " / "
                        span.mono { (id.to_string()[..8]) "…" }
                    }
                    h1 data-testid="record-title" { (record.title()) }
                    @if record.archived {
                        span.badge.badge-archived data-testid="archived-badge" { "Archived" }
                    }
                    @if !record.conflicts.is_empty() {
                        span.badge.badge-conflict data-testid="conflict-badge" {
                            (record.conflicts.len()) " conflict(s) to resolve"
                        }
                    }
                }
                div.actions {
                    (kind_actions(record))
                    @if may_archive {
                        @if record.archived {
                        button.js-archive data-archived="false" data-testid="restore-button" { "Restore" }
                    } @else {
                        button.js-archive.danger data-archived="true" data-testid="archive-button" { "Archive" }
                    }
                    }
                }
            }
            @if !may_edit {
                p.muted.read-only data-testid="read-only" {
                    "Read only: your role may not edit this record (the relay would refuse it)."
                }
            }
            div.tags-bar data-testid="tags" {
                @for t in &record.tags {
                    span.chip data-testid=(format!("tag-{t}")) {
                        (t)
                        @if may_edit {
                            button.chip-x.js-untag type="button" data-tag=(t) data-testid=(format!("untag-{t}")) aria-label=(format!("remove tag {t}")) { "×" }
                        }
                    }
                }
                @if may_edit {
                    input.tag-input type="text" placeholder="+ tag" data-testid="tag-input" aria-label="Add a tag";
                }
            }
            @for (field, values) in &schema_conflicts {
                (conflict_box(field, values))
            }
            div.record-grid {
                div.col-main {
                    section.card {
                        h2 { "Details" }
                        div.fields {
                            @for f in &fields {
                                (field_row(f, &json, record.conflicts.get(f.name), &titles, &users, may_edit && (f.name != "owner" || may_reassign)))
                            }
                        }
                    }
                    section.card {
                        h2 { "Notes" }
                        textarea.notes data-testid="notes-editor" rows="6" readonly[!may_edit] placeholder="Notes merge character by character with your colleagues' edits." { (record.notes) }
                        @if may_edit {
                            div.form-actions {
                                button.js-notes-save type="button" data-testid="notes-save" { "Save notes" }
                                span.muted.notes-state data-testid="notes-state" {}
                            }
                        }
                    }
                    @if !record.history.is_empty() {
                        section.card {
                            h2 { "Stage and status history" }
                            @for (field, entries) in &record.history {
                                h3 { (humanize(field)) }
                                ol.history {
                                    @for e in entries {
                                        li { span.badge { (humanize(&e.value)) } " " span.muted { (short_time(&crm_model::format_time(&e.at))) " · " (e.by) " on " (e.device) } }
                                    }
                                }
                            }
                        }
                    }
                }
                div.col-side {
                    section.card data-testid="related" {
                        h2 { @if record.kind == Kind::Account { "Customer 360°" } @else { "Related records" } }
                        (related_view(record, &related, &campaigns, &titles))
                    }
                    section.card {
                        h2 { "Timeline " span.muted { "(" (changes) " changes)" } }
                        ol.timeline data-testid="timeline" {
                            @for entry in &timeline {
                                li.timeline-entry data-testid="timeline-entry" {
                                    div.when {
                                        (entry.time.map(|t| short_time(&crm_model::format_time(&t))).unwrap_or_default())
                                        " · " strong { (entry.user.as_deref().unwrap_or("?")) }
                                        " on " (entry.device.as_deref().unwrap_or("?"))
                                    }
                                    @if entry.created {
                                        div.what { "created the record" }
                                    }
                                    @for c in entry.changes.iter().filter(|_| !entry.created) {
                                        div.what {
                                            span.field-name { (humanize(&c.field)) } ": "
                                            span.old { (clip(&value_text(&c.old))) }
                                            " → "
                                            span.new { (clip(&value_text(&c.new))) }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    })
}

fn clip(s: &str) -> String {
    if s.is_empty() {
        return "∅".into();
    }
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s.to_string()
    }
}

/// Quick actions some kinds have besides editing fields.
fn kind_actions(record: &Record) -> Markup {
    match record.kind {
        Kind::Account => html! {
            a.button href=(format!("/k/contact/new?account={}", record.id)) { "+ Contact" }
            a.button href=(format!("/k/opportunity/new?account={}", record.id)) { "+ Opportunity" }
            a.button href=(format!("/k/ticket/new?account={}", record.id)) { "+ Ticket" }
        },
        Kind::Contact => {
            let account = record.get("account").map(crm_model::FieldValue::display);
            html! {
                a.button href=(format!("/k/activity/new?type=call&targets={}", record.id)) { "+ Log call" }
                @if let Some(a) = account {
                    a.button href=(format!("/k/opportunity/new?account={a}&primary_contact={}", record.id)) { "+ Opportunity" }
                }
            }
        }
        Kind::Ticket => {
            let status = record.get("status").map(crm_model::FieldValue::display);
            let open = !status
                .as_deref()
                .is_some_and(|s| crm_store::dashboard::CLOSED_TICKET_STATUSES.contains(&s));
            html! {
                @if open {
                    button.js-assign-me type="button" data-id=(record.id) data-testid="assign-me" { "Assign to me" }
                    button.js-resolve-ticket.primary type="button" data-id=(record.id) data-testid=(format!("resolve-{}", record.id)) { "Resolve" }
                }
            }
        }
        _ => html! {},
    }
}

fn field_row(
    f: &FieldDef,
    json: &Json,
    conflict: Option<&Vec<Json>>,
    titles: &HashMap<RecordId, String>,
    users: &[(RecordId, String)],
    may_edit: bool,
) -> Markup {
    let value = json.get(f.name);
    // References are edited by name (the server resolves names back to ids).
    let text = match (f.ty, value) {
        (FieldType::Ref(kinds), Some(v)) if kinds != [Kind::User] => refs_in(f, v)
            .first()
            .and_then(|id| titles.get(id).cloned())
            .unwrap_or_else(|| value_text(v)),
        (_, Some(v)) => value_text(v),
        (_, None) => String::new(),
    };
    let can_edit = may_edit && editable(f);
    html! {
        div.field-row.has-conflict[conflict.is_some()] data-testid=(format!("field-row-{}", f.name)) data-field=(f.name) {
            div.field-label { (humanize(f.name)) }
            div.field-body {
                div.field-view {
                    span.field-value.js-edit[can_edit] data-testid=(format!("field-{}", f.name)) title=[can_edit.then_some("Click to edit")] {
                        (value_view(f, value, titles))
                    }
                    @if can_edit {
                        button.icon.js-edit type="button" data-testid=(format!("edit-{}", f.name)) aria-label=(format!("edit {}", f.name)) { "✎" }
                    }
                }
                @if can_edit {
                    div.field-editor hidden {
                        (editor(f, &text, &format!("editor-{}", f.name), users))
                        button.primary.js-save type="button" data-testid=(format!("save-{}", f.name)) { "Save" }
                        button.js-cancel type="button" { "Cancel" }
                    }
                }
                div.field-error hidden data-testid=(format!("field-error-{}", f.name)) {}
                @if let Some(values) = conflict {
                    (conflict_box(f.name, values))
                }
            }
        }
    }
}

fn conflict_box(field: &str, values: &[Json]) -> Markup {
    html! {
        div.conflict data-testid=(format!("conflict-{field}")) data-field=(field) {
            div.conflict-head { "⚠ Edited on two devices at once. Keep which value?" }
            div.conflict-values {
                @for (i, v) in values.iter().enumerate() {
                    @let t = value_text(v);
                    button.js-resolve type="button" data-field=(field) data-value=(t)
                        data-testid=(format!("resolve-{field}-{i}")) {
                        "Keep “" (clip(&t)) "”" @if i == 0 { span.muted { " (shown now)" } }
                    }
                }
            }
        }
    }
}

/// Campaigns an account takes part in: through its opportunities and its contacts'
/// campaign memberships.
fn account_campaigns(store: &Store, related: &[Referrer]) -> Result<Vec<RecordId>, WebError> {
    let mut out: Vec<RecordId> = Vec::new();
    let mut add = |id: RecordId| {
        if !out.contains(&id) {
            out.push(id);
        }
    };
    let opps: Vec<RecordId> = related
        .iter()
        .filter(|r| r.kind == Kind::Opportunity)
        .map(|r| r.id)
        .collect();
    for row in store.rows_by_id(Kind::Opportunity, &opps)? {
        if let Some(id) = row
            .json
            .get("campaign")
            .and_then(Json::as_str)
            .and_then(|s| s.parse().ok())
        {
            add(id);
        }
    }
    for contact in related.iter().filter(|r| r.kind == Kind::Contact).take(50) {
        let members: Vec<RecordId> = store
            .referrers(contact.id, 50)?
            .into_iter()
            .filter(|r| r.kind == Kind::CampaignMember)
            .map(|r| r.id)
            .collect();
        for row in store.rows_by_id(Kind::CampaignMember, &members)? {
            if let Some(id) = row
                .json
                .get("campaign")
                .and_then(Json::as_str)
                .and_then(|s| s.parse().ok())
            {
                add(id);
            }
        }
    }
    Ok(out)
}

fn related_view(
    record: &Record,
    related: &[Referrer],
    campaigns: &[RecordId],
    titles: &HashMap<RecordId, String>,
) -> Markup {
    let mut by_kind: BTreeMap<Kind, Vec<&Referrer>> = BTreeMap::new();
    for r in related {
        by_kind.entry(r.kind).or_default().push(r);
    }
    let order: Vec<Kind> = if record.kind == Kind::Account {
        let first = [
            Kind::Contact,
            Kind::Opportunity,
            Kind::Ticket,
            Kind::Activity,
        ];
        let mut o = first.to_vec();
        o.extend(by_kind.keys().copied().filter(|k| !first.contains(k)));
        o
    } else {
        by_kind.keys().copied().collect()
    };
    html! {
        @if related.is_empty() && campaigns.is_empty() {
            p.muted { "No other record refers to this one yet." }
        }
        @for kind in order {
            @let items = by_kind.get(&kind).map(Vec::as_slice).unwrap_or(&[]);
            @if !items.is_empty() || record.kind == Kind::Account {
                div.related-group data-testid=(format!("related-{}", kind.as_str())) {
                    h3 { (kind_label(kind, true)) " " span.count { (items.len()) } }
                    ul.related-list {
                        @for r in items.iter().take(PER_KIND) {
                            li.archived[r.archived] {
                                a href=(format!("/r/{}", r.id)) data-testid=(format!("link-{}", r.id)) { (r.title) }
                                span.muted { " · " (humanize(&r.field)) }
                            }
                        }
                        @if items.len() > PER_KIND {
                            @let field = items.first().map_or("", |r| r.field.as_str());
                            @if kind.schema().field(field).is_some_and(|f| f.filter) {
                                li { a href=(format!("/k/{}?f.{field}={}", kind.as_str(), record.id)) { "all " (items.len()) " →" } }
                            } @else {
                                li.muted { "and " (items.len() - PER_KIND) " more" }
                            }
                        }
                    }
                }
            }
        }
        @if record.kind == Kind::Account {
            div.related-group data-testid="related-campaign" {
                h3 { "Campaigns " span.count { (campaigns.len()) } }
                ul.related-list {
                    @for c in campaigns {
                        li { a href=(format!("/r/{c}")) data-testid=(format!("link-{c}")) { (titles.get(c).cloned().unwrap_or_else(|| c.to_string())) } }
                    }
                }
            }
        }
    }
}
