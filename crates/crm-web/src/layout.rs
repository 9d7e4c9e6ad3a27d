//! The page frame (sidebar, top bar, sync status) and the small formatting helpers every
//! page uses.

use std::collections::HashMap;

use crm_model::{FieldDef, FieldType, Kind, RecordId, SetOf};
use maud::{DOCTYPE, Markup, html};
use serde_json::Value as Json;

use crate::sync::SyncStatus;

/// What the frame needs besides the page's own content.
pub(crate) struct Frame<'a> {
    pub(crate) title: &'a str,
    /// The sidebar entry to highlight (`dashboard`, `board`, a kind name, …).
    pub(crate) active: &'a str,
    pub(crate) csrf: &'a str,
    pub(crate) status: &'a SyncStatus,
    pub(crate) pending: u64,
    pub(crate) last_sync: Option<String>,
    pub(crate) user: &'a str,
    /// The user's role as the relay says; `None` on a replica that has not joined one.
    pub(crate) role: Option<&'a str>,
    pub(crate) device: &'a str,
    /// The change-log position the page was rendered at.
    pub(crate) version: i64,
    /// How many edits the relay refused wait for the user (see `pages::rejected`).
    pub(crate) refused: u64,
    /// Render only `<main>` (for live refreshes).
    pub(crate) fragment: bool,
}

/// The record kinds in the sidebar, in the order a sales or support person uses them.
pub(crate) const NAV_KINDS: &[Kind] = &[
    Kind::Account,
    Kind::Contact,
    Kind::Lead,
    Kind::Opportunity,
    Kind::Activity,
    Kind::Campaign,
    Kind::Ticket,
    Kind::Article,
    Kind::Product,
    Kind::Quote,
    Kind::Contract,
    Kind::Order,
];

/// A kind's name for people: `Opportunities`, `Campaign members`.
pub(crate) fn kind_label(kind: Kind, plural: bool) -> String {
    let raw = if plural { kind.plural() } else { kind.as_str() };
    humanize(raw)
}

/// `first_response_at` → `First response at`.
pub(crate) fn humanize(name: &str) -> String {
    let s = name.replace('_', " ");
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Wraps page content in the frame (or returns just `<main>` for a fragment).
pub(crate) fn page(frame: &Frame<'_>, content: Markup) -> Markup {
    let main = html! {
        main #main data-version=(frame.version) data-page=(frame.active) data-refused=(frame.refused) {
            @if frame.refused > 0 && frame.active != "rejected" {
                (refused_banner(frame.refused))
            }
            (content)
        }
    };
    if frame.fragment {
        return main;
    }
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="csrf-token" content=(frame.csrf);
                title { (frame.title) " · CRM" }
                link rel="stylesheet" href="/assets/app.css";
                script src="/assets/app.js" defer {}
            }
            body {
                aside.sidebar {
                    a.brand href="/" { span.logo { "◆" } " Local CRM" }
                    nav {
                        p.nav-head { "Workspace" }
                        (nav_link("/", "dashboard", "Dashboard", frame.active))
                        (nav_link("/board", "board", "Pipeline", frame.active))
                        (nav_link("/tickets", "tickets", "Ticket queue", frame.active))
                        (nav_link("/reports", "reports", "Reports", frame.active))
                        p.nav-head { "Records" }
                        @for kind in NAV_KINDS {
                            (nav_link(&format!("/k/{}", kind.as_str()), kind.as_str(), &kind_label(*kind, true), frame.active))
                        }
                    }
                    (sync_badge(frame.status, frame.pending, frame.last_sync.as_deref()))
                }
                div.content {
                    header.topbar {
                        form.global-search action="/search" method="get" role="search" {
                            input type="search" name="q" placeholder="Search everything (names, emails, phones, notes)…" data-testid="global-search" aria-label="Search";
                        }
                        span.whoami title="user, role and device" data-testid="whoami" {
                            (frame.user)
                            @if let Some(role) = frame.role {
                                " · " span.role data-testid="role" { (role.replace('_', " ")) }
                            }
                            " · " (frame.device)
                        }
                    }
                    (main)
                }
                div #toast role="status" aria-live="polite" {}
            }
        }
    }
}

/// The banner of every page while edits the relay refused wait for the user. Inside `<main>`,
/// so a live refresh of the page updates it.
fn refused_banner(n: u64) -> Markup {
    html! {
        div.refused-banner role="alert" data-testid="refused-banner" data-count=(n) {
            span {
                @if n == 1 { "1 edit was refused by the relay" } @else { (n) " edits were refused by the relay" }
            }
            " — "
            a href="/rejected" data-testid="refused-review" { "review" }
        }
    }
}

fn nav_link(href: &str, key: &str, label: &str, active: &str) -> Markup {
    html! {
        a.nav-link.active[key == active] href=(href) data-testid=(format!("nav-{key}")) { (label) }
    }
}

/// The sync status box (also served alone to refresh it).
pub(crate) fn sync_badge(status: &SyncStatus, pending: u64, last_sync: Option<&str>) -> Markup {
    let state = status.state();
    html! {
        div.sync-status data-testid="sync-status" data-state=(state) #sync-status {
            div.sync-line { span.dot {} " " span.sync-label { (status.label()) } }
            div.sync-meta {
                span data-testid="pending-count" { (pending) } " change(s) waiting to be sent"
            }
            div.sync-meta {
                "Last sync: " span data-testid="last-sync" { (last_sync.map_or("never".to_string(), short_time)) }
            }
        }
    }
}

/// `2026-05-01T09:30:00Z` → `2026-05-01 09:30` (UTC).
pub(crate) fn short_time(t: &str) -> String {
    if t.len() >= 16 && t.as_bytes().get(10) == Some(&b'T') {
        format!("{} {}", &t[..10], &t[11..16])
    } else {
        t.to_string()
    }
}

/// Minor units → `1,234,567.89`.
pub(crate) fn money_minor(minor: i64) -> String {
    let neg = minor < 0;
    let abs = minor.unsigned_abs();
    let units = (abs / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in units.chars().enumerate() {
        if i > 0 && (units.len() - i).is_multiple_of(3) {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}.{:02}", if neg { "-" } else { "" }, abs % 100)
}

/// An amount as the projection holds it (`"12000.50"`) → `12,000.50`.
pub(crate) fn money_text(text: &str) -> String {
    let (units, frac) = text.split_once('.').unwrap_or((text, "0"));
    let (neg, units) = match units.strip_prefix('-') {
        Some(u) => (true, u),
        None => (false, units),
    };
    let cents: String = frac.chars().chain("00".chars()).take(2).collect();
    match (units.parse::<i64>(), cents.parse::<i64>()) {
        (Ok(u), Ok(f)) => {
            let minor = u.saturating_mul(100).saturating_add(f);
            money_minor(if neg { -minor } else { minor })
        }
        _ => text.to_string(),
    }
}

/// A JSON value as the text a user would type to set it.
pub(crate) fn value_text(v: &Json) -> String {
    match v {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        Json::Bool(b) => b.to_string(),
        Json::Number(n) => n.to_string(),
        Json::Array(items) if items.iter().all(|i| i.is_string()) => items
            .iter()
            .filter_map(Json::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        other => other.to_string(),
    }
}

/// The ids a field value refers to.
pub(crate) fn refs_in(field: &FieldDef, v: &Json) -> Vec<RecordId> {
    match field.ty {
        FieldType::Ref(_) => v
            .as_str()
            .and_then(|s| s.parse().ok())
            .into_iter()
            .collect(),
        FieldType::Set(SetOf::Ref(_)) => v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| i.as_str()?.parse().ok())
            .collect(),
        _ => Vec::new(),
    }
}

/// A field value for reading: references as links to their records, amounts grouped,
/// enums as badges.
pub(crate) fn value_view(
    field: &FieldDef,
    v: Option<&Json>,
    titles: &HashMap<RecordId, String>,
) -> Markup {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return html! { span.empty { "—" } };
    };
    let link = |id: &RecordId| {
        let title = titles
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("{}…", &id.to_string()[..8]));
        html! { a.ref href=(format!("/r/{id}")) data-testid=(format!("link-{id}")) { (title) } }
    };
    match field.ty {
        FieldType::Ref(_) | FieldType::Set(SetOf::Ref(_)) => {
            let ids = refs_in(field, v);
            html! { @for (i, id) in ids.iter().enumerate() { @if i > 0 { ", " } (link(id)) } }
        }
        FieldType::Money => html! { span.money { (money_text(&value_text(v))) } },
        FieldType::Enum(_) => {
            let t = value_text(v);
            html! { span class=(format!("badge badge-{t}")) { (humanize(&t)) } }
        }
        FieldType::DateTime => {
            html! { time datetime=(value_text(v)) { (short_time(&value_text(v))) } }
        }
        FieldType::Email => {
            let t = value_text(v);
            html! { a href=(format!("mailto:{t}")) { (t) } }
        }
        FieldType::Domain => {
            let t = value_text(v);
            html! { a href=(format!("https://{t}")) rel="noopener noreferrer" target="_blank" { (t) } }
        }
        FieldType::Prose => html! { div.prose { (value_text(v)) } },
        FieldType::LineItems | FieldType::Answers | FieldType::List => {
            html! { code.json { (v.to_string()) } }
        }
        _ => html! { (value_text(v)) },
    }
}

/// An input for a field, named after it, holding `current` (what the user typed or the
/// stored value as text).
pub(crate) fn editor(
    field: &FieldDef,
    current: &str,
    testid: &str,
    users: &[(RecordId, String)],
) -> Markup {
    let name = field.name;
    match field.ty {
        FieldType::Enum(values) => html! {
            select name=(name) id=(testid) data-testid=(testid) {
                @if !field.required || current.is_empty() { option value="" selected[current.is_empty()] { "—" } }
                @for v in values {
                    option value=(v) selected[*v == current] { (humanize(v)) }
                }
            }
        },
        FieldType::Bool => html! {
            select name=(name) id=(testid) data-testid=(testid) {
                option value="" selected[current.is_empty()] { "—" }
                option value="true" selected[current == "true"] { "Yes" }
                option value="false" selected[current == "false"] { "No" }
            }
        },
        FieldType::Ref(kinds) if kinds == [Kind::User] => html! {
            select name=(name) id=(testid) data-testid=(testid) {
                option value="" selected[current.is_empty()] { "—" }
                @for (id, title) in users {
                    @let v = id.to_string();
                    option value=(v) selected[v == current] { (title) }
                }
            }
        },
        FieldType::Ref(kinds) => {
            let kind = kinds.first().map_or("", |k| k.as_str());
            html! {
                input type="text" name=(name) value=(current) id=(testid) data-testid=(testid)
                    data-ref-kind=(kind) autocomplete="off"
                    placeholder=(format!("name or id of the {}", if kind.is_empty() { "record" } else { kind }));
            }
        }
        FieldType::Prose | FieldType::LineItems | FieldType::Answers | FieldType::List => html! {
            textarea name=(name) rows="4" id=(testid) data-testid=(testid) { (current) }
        },
        FieldType::Date => html! {
            input type="text" name=(name) value=(current) id=(testid) data-testid=(testid) placeholder="YYYY-MM-DD";
        },
        _ => html! {
            input type="text" name=(name) value=(current) id=(testid) data-testid=(testid)
                placeholder=(field.ty.describe());
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_is_grouped() {
        assert_eq!(money_minor(123_456_789), "1,234,567.89");
        assert_eq!(money_minor(-5), "-0.05");
        assert_eq!(money_minor(100_000), "1,000.00");
        assert_eq!(money_text("12000.5"), "12,000.50");
        assert_eq!(money_text("999"), "999.00");
    }

    #[test]
    fn names_read_like_words() {
        assert_eq!(humanize("first_response_at"), "First response at");
        assert_eq!(kind_label(Kind::Opportunity, true), "Opportunities");
        assert_eq!(short_time("2026-05-01T09:30:00Z"), "2026-05-01 09:30");
    }
}
