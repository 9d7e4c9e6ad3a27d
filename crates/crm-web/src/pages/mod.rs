//! The HTML pages. Each module renders one page from the replica on a blocking thread; the
//! frame around it comes from [`crate::layout`].

pub(crate) mod board;
pub(crate) mod dashboard;
pub(crate) mod form;
pub(crate) mod list;
pub(crate) mod record;
pub(crate) mod rejected;
pub(crate) mod reports;
pub(crate) mod search;
pub(crate) mod tickets;

use axum::response::Html;
use crm_model::{Kind, RecordId};
use crm_store::{ListQuery, Store};
use maud::Markup;

use crate::error::WebError;
use crate::layout::{self, Frame};
use crate::state::AppState;
use crate::sync::SyncStatus;

/// Query parameters in the order given (filters repeat and carry their field in the name).
pub(crate) type Params = Vec<(String, String)>;

/// The first value of a query parameter.
pub(crate) fn param<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A non-empty, trimmed query parameter.
pub(crate) fn given<'a>(params: &'a Params, name: &str) -> Option<&'a str> {
    param(params, name).map(str::trim).filter(|v| !v.is_empty())
}

pub(crate) fn flag(params: &Params, name: &str) -> bool {
    matches!(param(params, name), Some("1" | "true" | "on" | "yes"))
}

/// What a page needs from the shared state, taken before going to the blocking thread.
pub(crate) struct Ctx {
    pub(crate) csrf: String,
    pub(crate) status: SyncStatus,
    pub(crate) fragment: bool,
}

impl Ctx {
    pub(crate) fn new(state: &AppState, params: &Params) -> Ctx {
        Ctx {
            csrf: state.csrf().to_string(),
            status: state.status(),
            fragment: flag(params, "fragment"),
        }
    }

    /// Wraps a page's content in the frame.
    pub(crate) fn finish(
        &self,
        store: &Store,
        title: &str,
        active: &str,
        content: Markup,
    ) -> Result<Html<String>, WebError> {
        let identity = store.identity();
        let frame = Frame {
            title,
            active,
            csrf: &self.csrf,
            status: &self.status,
            pending: store.outbox_len()?,
            last_sync: store.last_sync()?,
            user: &identity.user,
            role: identity.role.map(|r| r.as_str()),
            device: &identity.device,
            version: store.change_log_head()?,
            refused: store.rejected_count()?,
            fragment: self.fragment,
        };
        Ok(Html(layout::page(&frame, content).into_string()))
    }
}

/// The users of the workspace, by name, for assignee and owner pickers.
pub(crate) fn users(store: &Store) -> Result<Vec<(RecordId, String)>, WebError> {
    let mut q = ListQuery::new(Kind::User);
    q.limit = 500;
    q.sort = Some("title".into());
    Ok(store
        .list(&q)?
        .into_iter()
        .map(|r| (r.id, r.title))
        .collect())
}

/// Percent-encodes a query component.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(b));
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `path?k=v&…` from the given parameters with some replaced (an empty value drops one).
pub(crate) fn url_with(path: &str, params: &Params, set: &[(&str, &str)]) -> String {
    let mut pairs: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "fragment" && !set.iter().any(|(s, _)| s == k))
        .cloned()
        .collect();
    for (k, v) in set {
        if !v.is_empty() {
            pairs.push(((*k).to_string(), (*v).to_string()));
        }
    }
    if pairs.is_empty() {
        return path.to_string();
    }
    let query: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// Parses a kind from a URL segment.
pub(crate) fn kind_of(segment: &str) -> Result<Kind, WebError> {
    segment
        .parse()
        .map_err(|e: crm_model::UnknownKind| WebError::NotFound(e.to_string()))
}

/// Parses a record id from a URL segment.
pub(crate) fn id_of(segment: &str) -> Result<RecordId, WebError> {
    segment
        .parse()
        .map_err(|_| WebError::NotFound(format!("{segment:?} is not a record id")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_other_parameters() {
        let params: Params = vec![
            ("q".into(), "星光".into()),
            ("page".into(), "2".into()),
            ("fragment".into(), "1".into()),
        ];
        assert_eq!(
            url_with("/k/account", &params, &[("page", "3")]),
            "/k/account?q=%E6%98%9F%E5%85%89&page=3"
        );
        assert_eq!(url_with("/x", &params, &[("q", ""), ("page", "")]), "/x");
    }
}
