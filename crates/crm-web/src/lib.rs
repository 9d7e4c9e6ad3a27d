//! The web UI of a device node: server-rendered HTML over one replica, a small JSON API for
//! the page's own JavaScript, and live updates over server-sent events.
//!
//! - [`Config`] says which replica to serve and how requests are authenticated; [`app`]
//!   builds the axum `Router` over an [`AppState`]; [`serve`] runs it on a listener the caller
//!   bound until a shutdown future resolves.
//! - Reads come from the replica's projections (lists, board, queue, dashboard, reports);
//!   only the record page loads one document. Writes go through `crm_store::Store` with a
//!   `crm_model::Edit`, exactly like the CLI, so they are ordinary attributed Automerge
//!   changes that sync.
//! - A `Store` is not `Sync`: each request borrows one from a small pool on a blocking thread.
//! - A watcher polls the replica's `data_version` and the change log, and pushes an SSE event
//!   naming the changed records to every open page, whoever made the change (this node, the
//!   CLI, or the sync driver applying a colleague's change).
//!
//! # Contract (what the browser tests and other clients may rely on)
//!
//! ## Process
//!
//! `crm [--data-dir D] serve [--listen ADDR] [--token T] [--open]` serves replica `D`.
//! `--listen` defaults to `127.0.0.1:7878`; port 0 picks a free port. Once listening it prints
//! exactly one line on stdout, `serving http://ADDR/` (ADDR is the bound address, e.g.
//! `127.0.0.1:41234`), and flushes it; logs go to stderr. A non-loopback ADDR without
//! `--token` is refused (exit code 2). When the replica has joined a relay (`crm join`), the
//! node syncs in the background (`crm_node::sync::watch`). SIGTERM or Ctrl-C stops it
//! gracefully (exit code 0). `crm demo` ends by serving the demo laptop replica the same way
//! (and prints the same `serving http://ADDR/` line) unless `--no-serve` is given or stdout
//! is not a terminal.
//!
//! ## Authentication and CSRF
//!
//! - With `--token T`, every request must carry it: header `Authorization: Bearer T`, cookie
//!   `crm_token=T`, or query `?token=T` (which sets the cookie and redirects to the same URL
//!   without it). Otherwise: 401. Without `--token`, a request whose `Host` is not a
//!   loopback name (`localhost`, `127.0.0.1`, `[::1]`, any port) gets 403 (DNS rebinding).
//! - Every page carries `<meta name="csrf-token" content="...">`; every form has a hidden
//!   input `_csrf`; every `POST` must carry the token (form field `_csrf` or header
//!   `X-CSRF-Token`) and, when the request has an `Origin` header, its host must equal the
//!   `Host` header. Otherwise: 403 and nothing is stored.
//!
//! ## Pages (GET, HTML; add `fragment=1` to get only the `<main>` content)
//!
//! | route | page |
//! | --- | --- |
//! | `/` | dashboard |
//! | `/k/{kind}` | list of a kind (`account`, `contact`, `opportunity`, …). Query: `q` (full-text search within the kind), `f.FIELD=value` (filter on a filterable field: equality, or a case-insensitive part for free-text fields such as `industry`), `tag`, `sort` (a field, `title`, `created_at`, `updated_at`), `desc=1`, `page` (1-based, 50 rows a page), `archived=1` (include archived) |
//! | `/k/{kind}/new` | new-record form (POST to the same URL creates; success → 303 to `/r/{id}`; validation error → 422 with the form re-rendered and nothing stored) |
//! | `/r/{id}` | record page |
//! | `/search?q=` | search across kinds |
//! | `/board` | pipeline board of open opportunities by stage |
//! | `/tickets` | ticket queue; query `status`, `priority`, `assignee` (a user id or `me`), `all=1` (include closed) |
//! | `/reports` | funnel (count and amount per stage) and forecast by close month, as inline SVG |
//! | `/rejected` | the edits the relay refused: record, fields (typed and now), when, reason; Retry and Dismiss |
//! | `/events` | `text/event-stream`; event `change` with data `{"version":N,"ids":["…"],"all":bool}` (`all` when too many records changed to list); event `status` when the sync status changed |
//! | `/assets/app.js`, `/assets/app.css` | our own script and stylesheet |
//!
//! ## JSON API (POST, JSON body, header `X-CSRF-Token`; answers `{"ok":true,...}` or a 4xx
//! with `{"ok":false,"error":"one line","field":"NAME"|null}`, nothing stored on error)
//!
//! | route | body | does |
//! | --- | --- | --- |
//! | `/api/r/{id}/field` | `{"field":F,"value":V}` | sets field F from text V as the CLI's `--set F=V` (empty V unsets) |
//! | `/api/r/{id}/resolve` | `{"field":F,"value":V}` | settles the conflict on F with V |
//! | `/api/r/{id}/archive` | `{"archived":bool}` | archives or restores |
//! | `/api/r/{id}/tags` | `{"add":T}` or `{"remove":T}` | adds or removes a tag |
//! | `/api/r/{id}/notes` | `{"text":S}` | replaces the notes (merged as text: a diff, not an overwrite) |
//! | `/api/board/move` | `{"id":ID,"stage":S}` | moves an opportunity to stage S |
//! | `/api/tickets/{id}/assign` | `{"assignee":USER_ID or "me"}` | assigns a ticket (status `assigned` when it was `new`) |
//! | `/api/tickets/{id}/resolve` | `{"resolution":S}` (optional) | status `resolved`, `resolved_at` now |
//! | `GET /api/suggest?kind=K&q=T` | – | `{"items":[{"id","title","kind"}]}`: records named like T, for reference inputs (which accept a record's exact name or its id) |
//! | `/api/rejected/{id}/retry` | `{}` | makes refused edit `id` again as a new change (the role checks apply; an error says why not) |
//! | `/api/rejected/{id}/dismiss` | `{}` | drops refused edit `id` |
//! | `GET /api/status` | – | `{"state":"live"|"connecting"|"offline"|"local","relay":URL|null,"pending":N,"last_sync":T|null,"refused":N,"html":…}` (`refused`: edits the relay refused) |
//!
//! ## `data-testid` hooks
//!
//! - Every page: `nav-dashboard`, `nav-board`, `nav-tickets`, `nav-reports`, `nav-KIND`
//!   (sidebar links); `sync-status` (attribute `data-state` = `live`, `connecting`, `offline` or `local`;
//!   contains `pending-count`); `global-search` (input `q`). `<main id="main">` holds the page
//!   and carries `data-version`, the replica's change count when it was rendered, and
//!   `data-refused`, the number of edits the relay refused; while there are any, every page
//!   but `/rejected` starts with `refused-banner` (attribute `data-count`) and its link
//!   `refused-review`.
//! - Refused edits `/rejected`: `rejected-list` (or `rejected-empty`); one `rejected-N` card per
//!   edit N (attribute `data-record`), its record `link-ID` (or `title-N` for a creation not
//!   made again), `reason-N`, a row `rejected-N-field-FIELD` per field, buttons `retry-N` and
//!   `dismiss-N`, and `rejected-error-N` showing why a retry failed.
//! - List `/k/{kind}`: `list-table`; one `row-ID` (`<tr>`) per record, its title a link
//!   `<a data-testid="link-ID" href="/r/ID">`; `list-total` (number of records of the kind);
//!   form `list-filters` with input `q` (`list-search`), a select `f.FIELD` per enum or user
//!   filter and a text input `f.FIELD` per free-text filter (both `filter-FIELD`), checkbox `archived`; `page-next`, `page-prev`; `new-record` link.
//! - New-record form: `<form data-testid="record-form">` with one input/select/textarea
//!   per field, `name` = the field's name, `data-testid="input-NAME"`; submit button
//!   `form-submit`; on error `form-error` (summary) and `field-error-NAME` beside the field.
//! - Record page: `record-title`; `archived-badge` when archived; `archive-button` /
//!   `restore-button`; per field a row `field-row-NAME` whose value element is
//!   `field-NAME` (text of the value; click it, or its `edit-NAME` button, to edit in place);
//!   the editor is `editor-NAME` (input or select; Enter or `save-NAME` saves, Escape
//!   cancels); a failed save shows `field-error-NAME` and keeps the editor open. A field with
//!   concurrent values shows `conflict-NAME` listing each value with a button
//!   `resolve-NAME-I` (I = 0, 1, …; attribute `data-value` holds the value) that keeps that
//!   value. Tags: `tags`, one `tag-TAG` chip each with `untag-TAG`, input `tag-input`
//!   (Enter adds). Notes: textarea `notes-editor`, button `notes-save`; `notes-state` reads
//!   `Saved` after saving. Timeline: `timeline` with one `timeline-entry` per change. Related:
//!   `related` with a section `related-KIND` per kind, links `link-ID`.
//!   A ticket's page also has `assign-me` and `resolve-ID` buttons.
//! - Board `/board`: one `board-column-STAGE` per stage, each with `column-count-STAGE`
//!   (number of cards) and `column-total-STAGE` (sum of amounts, digits with `,` grouping and
//!   two decimals); cards `card-ID` (draggable onto a column; also a select
//!   `card-stage-ID` that moves the card on change).
//! - Tickets `/tickets`: `ticket-row-ID` with `ticket-status-ID`, `ticket-assignee-ID`, a
//!   select `assign-ID` (users) and a button `resolve-ID`; `sla-breach` class and testid
//!   `sla-ID` on breached tickets.
//! - Dashboard `/`: `dash-pipeline` (rows `dash-stage-STAGE`), `dash-tasks`
//!   (`reminder` items when a reminder is due), `dash-tickets` (`dash-priority-P` with
//!   `sla-breaches-P`), `dash-activity`, `dash-sync`.
//! - Reports `/reports`: `<svg data-testid="funnel-chart">` with one `funnel-STAGE` bar
//!   each; `<svg data-testid="forecast-chart">`.

mod api;
mod charts;
mod edits;
mod error;
mod layout;
mod live;
mod pages;
mod security;
mod state;
mod sync;
#[cfg(test)]
mod tests;

use std::future::Future;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};

pub use error::WebError;
pub use state::{AppState, Config};
pub use sync::SyncStatus;

const APP_JS: &str = include_str!("../assets/app.js");
const APP_CSS: &str = include_str!("../assets/app.css");

async fn app_js() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_JS,
    )
}

async fn app_css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        APP_CSS,
    )
}

/// The web UI's routes over `state`, with the token, CSRF and header guards.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::dashboard::handler))
        .route("/k/{kind}", get(pages::list::handler))
        .route(
            "/k/{kind}/new",
            get(pages::form::show).post(pages::form::create),
        )
        .route("/r/{id}", get(pages::record::handler))
        .route("/search", get(pages::search::handler))
        .route("/board", get(pages::board::handler))
        .route("/tickets", get(pages::tickets::handler))
        .route("/reports", get(pages::reports::handler))
        .route("/rejected", get(pages::rejected::handler))
        .route("/events", get(live::events))
        .route("/assets/app.js", get(app_js))
        .route("/assets/app.css", get(app_css))
        .route("/api/status", get(api::status))
        .route("/api/suggest", get(api::suggest))
        .route("/api/r/{id}/field", post(api::set))
        .route("/api/r/{id}/resolve", post(api::resolve))
        .route("/api/r/{id}/archive", post(api::archive))
        .route("/api/r/{id}/tags", post(api::tags))
        .route("/api/r/{id}/notes", post(api::notes))
        .route("/api/board/move", post(api::move_card))
        .route("/api/tickets/{id}/assign", post(api::assign))
        .route("/api/tickets/{id}/resolve", post(api::resolve_ticket))
        .route("/api/rejected/{id}/retry", post(api::retry_rejected))
        .route("/api/rejected/{id}/dismiss", post(api::dismiss_rejected))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::require_csrf,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            security::require_token,
        ))
        .layer(axum::middleware::from_fn(security::security_headers))
        .layer(DefaultBodyLimit::max(security::MAX_BODY))
        .with_state(state)
}

/// Serves the web UI on `listener` until `shutdown` resolves: starts the live-update
/// watcher and, when configured and joined, the background sync; stops both on the way out.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), WebError> {
    live::start(&state)?;
    sync::start(&state)?;
    let stopping = state.clone();
    let (stopped, mut stop_seen) = tokio::sync::watch::channel(false);
    let server = axum::serve(listener, app(state.clone())).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = stopped.send(true);
        // End the event streams, or the graceful shutdown would wait for them forever.
        stopping.shutdown();
    });
    // A request still running after the grace period (a write waiting for the replica's
    // writer, held by another process) does not keep the server up: its transaction rolls
    // back when the process exits, so nothing half-written is left.
    let grace = async {
        let _ = stop_seen.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let result = tokio::select! {
        result = server => result,
        () = grace => {
            tracing::warn!(
                "requests still running {} s after the stop signal; stopping without them",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    };
    state.shutdown();
    result.map_err(|e| WebError::Internal(format!("the web server failed: {e}")))
}

/// How long [`serve`] lets requests in flight finish after the stop signal.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
