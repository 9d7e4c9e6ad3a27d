//! The JSON API the page's script calls. Every write builds a `crm_model::Edit` (or calls
//! `Store::resolve`/`set_archived`) exactly as the CLI does; a failure stores nothing and
//! answers `{"ok":false,"error":…,"field":…}`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use chrono::Utc;
use crm_model::{Edit, Kind, RecordId};
use crm_store::Store;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::edits::set_field;
use crate::error::{ApiError, WebError};
use crate::layout::sync_badge;
use crate::pages::{Params, given, id_of, kind_of};
use crate::state::AppState;

type ApiResult = Result<Json<Value>, ApiError>;

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError(WebError::invalid(e.body_text(), None)))
}

fn ok(extra: Value) -> Json<Value> {
    let mut v = json!({ "ok": true });
    if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), extra) {
        obj.extend(more);
    }
    Json(v)
}

/// What every write on one record does: the record's id from the path, the JSON body, `f`
/// on the store (off the async runtime), and `{"ok": true, key: what f returned}`.
async fn on_record<B, T>(
    state: AppState,
    id: &str,
    b: Result<Json<B>, JsonRejection>,
    key: &'static str,
    f: impl FnOnce(&mut Store, RecordId, B) -> Result<T, WebError> + Send + 'static,
) -> ApiResult
where
    B: Send + 'static,
    T: Serialize + Send + 'static,
{
    let id = id_of(id)?;
    let b = body(b)?;
    let value = state
        .with_store(move |store| {
            tracing::debug!(record = %id, what = key, "writing a record");
            f(store, id, b)
        })
        .await?;
    Ok(ok(json!({ key: value })))
}

#[derive(Deserialize)]
pub(crate) struct FieldBody {
    field: String,
    #[serde(default)]
    value: String,
}

/// `POST /api/r/{id}/field`
pub(crate) async fn set(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Json<FieldBody>, JsonRejection>,
) -> ApiResult {
    on_record(state, &id, b, "record", move |store, id, b| {
        let kind = store.kind_of(id)?;
        let field = kind.schema().field(&b.field).ok_or_else(|| {
            WebError::invalid(format!("{kind} has no field {:?}", b.field), Some(&b.field))
        })?;
        if !crate::pages::record::editable(field) {
            return Err(WebError::invalid(
                format!("{} can't be changed here", field.name),
                Some(field.name),
            ));
        }
        let mut edit = Edit::new(kind);
        set_field(store, &mut edit, field.name, &b.value)?;
        Ok(store.edit(id, &edit)?.to_json())
    })
    .await
}

/// `POST /api/r/{id}/resolve`
pub(crate) async fn resolve(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Json<FieldBody>, JsonRejection>,
) -> ApiResult {
    on_record(state, &id, b, "record", move |store, id, b| {
        Ok(store.resolve(id, &b.field, &b.value)?.to_json())
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct ArchiveBody {
    archived: bool,
}

/// `POST /api/r/{id}/archive`
pub(crate) async fn archive(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Json<ArchiveBody>, JsonRejection>,
) -> ApiResult {
    on_record(state, &id, b, "archived", move |store, id, b| {
        Ok(store.set_archived(id, b.archived)?.archived)
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct TagsBody {
    add: Option<String>,
    remove: Option<String>,
}

/// `POST /api/r/{id}/tags`
pub(crate) async fn tags(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Json<TagsBody>, JsonRejection>,
) -> ApiResult {
    on_record(state, &id, b, "tags", move |store, id, b| {
        let mut edit = Edit::new(store.kind_of(id)?);
        if let Some(t) = &b.add {
            edit.tag(t)?;
        }
        if let Some(t) = &b.remove {
            edit.untag(t)?;
        }
        if edit.is_empty() {
            return Err(WebError::invalid(
                "give a tag to add or remove",
                Some("tags"),
            ));
        }
        Ok(store.edit(id, &edit)?.tags)
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct NotesBody {
    text: String,
}

/// `POST /api/r/{id}/notes`
pub(crate) async fn notes(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Json<NotesBody>, JsonRejection>,
) -> ApiResult {
    on_record(state, &id, b, "notes", move |store, id, b| {
        let mut edit = Edit::new(store.kind_of(id)?);
        edit.replace_notes(&b.text)?;
        Ok(store.edit(id, &edit)?.notes)
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct MoveBody {
    id: String,
    stage: String,
}

/// `POST /api/board/move`
pub(crate) async fn move_card(
    State(state): State<AppState>,
    b: Result<Json<MoveBody>, JsonRejection>,
) -> ApiResult {
    let b = body(b)?;
    let id = id_of(&b.id)?;
    let stage = state
        .with_store(move |store| {
            let kind = store.kind_of(id)?;
            if kind != Kind::Opportunity {
                return Err(WebError::invalid(
                    format!("{id} is a {kind}, not an opportunity"),
                    None,
                ));
            }
            let mut edit = Edit::new(Kind::Opportunity);
            edit.set("stage", &b.stage)?;
            let record = store.edit(id, &edit)?;
            Ok(record.get("stage").map(crm_model::FieldValue::display))
        })
        .await?;
    Ok(ok(json!({ "stage": stage })))
}

fn ticket_json(store: &crm_store::Store, id: RecordId) -> Result<Value, WebError> {
    if store.kind_of(id)? != Kind::Ticket {
        return Err(WebError::invalid(format!("{id} is not a ticket"), None));
    }
    Ok(store
        .rows_by_id(Kind::Ticket, &[id])?
        .into_iter()
        .next()
        .map(|r| r.json)
        .unwrap_or(Value::Null))
}

#[derive(Deserialize)]
pub(crate) struct AssignBody {
    #[serde(default)]
    assignee: String,
}

/// `POST /api/tickets/{id}/assign`
pub(crate) async fn assign(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Json<AssignBody>, JsonRejection>,
) -> ApiResult {
    on_record(state, &id, b, "record", move |store, id, b| {
        let current = ticket_json(store, id)?;
        let assignee = match b.assignee.trim() {
            "me" => store
                .identity()
                .user_id
                .map(|u| u.to_string())
                .ok_or_else(|| {
                    WebError::invalid("this replica has no user record", Some("assignee"))
                })?,
            other => other.to_string(),
        };
        let mut edit = Edit::new(Kind::Ticket);
        set_field(store, &mut edit, "assignee", &assignee)?;
        if !assignee.is_empty() && current.get("status").and_then(Value::as_str) == Some("new") {
            edit.set("status", "assigned")?;
        }
        Ok(store.edit(id, &edit)?.to_json())
    })
    .await
}

#[derive(Deserialize)]
pub(crate) struct ResolveTicketBody {
    resolution: Option<String>,
}

/// `POST /api/tickets/{id}/resolve`
pub(crate) async fn resolve_ticket(
    State(state): State<AppState>,
    Path(id): Path<String>,
    b: Result<Json<ResolveTicketBody>, JsonRejection>,
) -> ApiResult {
    on_record(state, &id, b, "record", move |store, id, b| {
        ticket_json(store, id)?;
        let mut edit = Edit::new(Kind::Ticket);
        edit.set("status", "resolved")?;
        edit.set("resolved_at", &crm_model::format_time(&Utc::now()))?;
        if let Some(r) = b.resolution.as_deref().filter(|r| !r.trim().is_empty()) {
            edit.set("resolution", r)?;
        }
        Ok(store.edit(id, &edit)?.to_json())
    })
    .await
}

/// The number of a refused edit in a URL.
fn rejected_id(segment: &str) -> Result<i64, WebError> {
    segment
        .parse()
        .map_err(|_| WebError::NotFound(format!("{segment:?} is not a refused edit's id")))
}

/// `POST /api/rejected/{id}/retry`: makes a refused edit again as a new change, through the
/// store's create and edit paths (the role checks apply).
pub(crate) async fn retry_rejected(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = rejected_id(&id)?;
    let record = state
        .with_store(move |store| {
            tracing::debug!(refused_edit = id, "retrying a refused edit");
            Ok(store.retry_rejected(id)?)
        })
        .await?;
    Ok(ok(json!({ "record": record.to_json() })))
}

/// `POST /api/rejected/{id}/dismiss`: drops a refused edit.
pub(crate) async fn dismiss_rejected(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult {
    let id = rejected_id(&id)?;
    state
        .with_store(move |store| Ok(store.dismiss_rejected(id)?))
        .await?;
    Ok(ok(json!({ "dismissed": id })))
}

/// `GET /api/status`: the sync status, with the sidebar box's HTML.
pub(crate) async fn status(State(state): State<AppState>) -> ApiResult {
    let status = state.status();
    let (pending, last_sync, refused) = state
        .with_store(|store| {
            Ok((
                store.outbox_len()?,
                store.last_sync()?,
                store.rejected_count()?,
            ))
        })
        .await?;
    let html = sync_badge(&status, pending, last_sync.as_deref()).into_string();
    Ok(ok(json!({
        "state": status.state(),
        "label": status.label(),
        "relay": status.relay,
        "pending": pending,
        "last_sync": last_sync,
        "refused": refused,
        "html": html,
    })))
}

/// `GET /api/suggest?kind=K&q=TEXT`: records of a kind whose name matches, for reference
/// inputs.
pub(crate) async fn suggest(
    State(state): State<AppState>,
    Query(params): Query<Params>,
) -> ApiResult {
    let kind = match given(&params, "kind") {
        Some(k) => Some(kind_of(k)?),
        None => None,
    };
    let q = given(&params, "q").unwrap_or("").to_string();
    let hits = state
        .with_store(move |store| {
            if q.is_empty() {
                return Ok(Vec::new());
            }
            Ok(store.search(&q, kind, false, 10)?)
        })
        .await?;
    let items: Vec<Value> = hits
        .iter()
        .map(|h| json!({ "id": h.id.to_string(), "title": h.title, "kind": h.kind.as_str() }))
        .collect();
    Ok(ok(json!({ "items": items })))
}
