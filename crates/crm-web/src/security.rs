//! Request guards: the access token (required when the node listens beyond loopback) and
//! CSRF protection of every write.
//!
//! A write (any method but GET/HEAD) must carry the per-process CSRF secret, as header
//! `X-CSRF-Token` (the page's script) or form field `_csrf` (plain forms), and when the
//! browser sends an `Origin`, its host must be the `Host` the request was sent to. A page of
//! another site can make a browser send a form, but it can't read our pages to learn the
//! secret.

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::error::WebError;
use crate::state::AppState;

/// The largest body a write may have (notes are the biggest thing a user sends).
pub(crate) const MAX_BODY: usize = 2 * 1024 * 1024;
const TOKEN_COOKIE: &str = "crm_token";

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Splits `?token=…` off a query string: the token, and the query without it.
fn split_token(query: &str) -> (Option<String>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("token", v)) => {
                token = Some(percent_decode(v));
            }
            _ => rest.push(pair),
        }
    }
    (token, rest.join("&"))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether a `Host` header names this machine (`localhost`, `127.0.0.1:8080`, `[::1]:80`).
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if port.chars().all(|c| c.is_ascii_digit()) => name,
            _ => host,
        }
    };
    let name = name.to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The access-token guard: a no-op unless the node was started with `--token`.
pub(crate) async fn require_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = state.config().token.clone() else {
        // Without a token the node only serves loopback. A page of another site that
        // rebinds its DNS name to 127.0.0.1 still sends its own name as Host: refuse it.
        let host = req
            .headers()
            .get(header::HOST)
            .map(|h| h.to_str().unwrap_or(""));
        if host.is_some_and(|h| !is_loopback_host(h)) {
            return WebError::Forbidden(
                "unknown Host; open the UI at the address `crm serve` printed".into(),
            )
            .into_response();
        }
        return next.run(req).await;
    };
    let headers = req.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if bearer.is_some_and(|t| same_secret(t.trim(), &expected))
        || cookie(headers, TOKEN_COOKIE).is_some_and(|t| same_secret(t, &expected))
    {
        return next.run(req).await;
    }
    let query = req.uri().query().unwrap_or("");
    let (given, rest) = split_token(query);
    if given.is_some_and(|t| same_secret(&t, &expected)) && req.method() == Method::GET {
        let path = req.uri().path();
        let target = if rest.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{rest}")
        };
        let mut response = Redirect::to(&target).into_response();
        if let Ok(v) = HeaderValue::from_str(&format!(
            "{TOKEN_COOKIE}={expected}; Path=/; HttpOnly; SameSite=Strict"
        )) {
            response.headers_mut().insert(header::SET_COOKIE, v);
        }
        return response;
    }
    WebError::Unauthorized.into_response()
}

/// The CSRF guard of every write.
pub(crate) async fn require_csrf(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let headers = req.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin_host = origin
            .to_str()
            .ok()
            .and_then(|o| o.split_once("://"))
            .map(|(_, h)| h.trim_end_matches('/'));
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if origin_host.is_none() || origin_host != host {
            return WebError::Forbidden("cross-origin write refused".into()).into_response();
        }
    }
    let header_token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if header_token.is_some_and(|t| same_secret(&t, state.csrf())) {
        return next.run(req).await;
    }
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return WebError::Forbidden("missing or wrong CSRF token; reload the page".into())
            .into_response();
    }
    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(_) => {
            return (StatusCode::PAYLOAD_TOO_LARGE, "request body too large").into_response();
        }
    };
    let form_token = std::str::from_utf8(&bytes).ok().and_then(|s| {
        s.split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "_csrf")
            .map(|(_, v)| percent_decode(v))
    });
    if !form_token.is_some_and(|t| same_secret(&t, state.csrf())) {
        return WebError::Forbidden("missing or wrong CSRF token; reload the page".into())
            .into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Headers every response gets: no framing by other sites, scripts only from our assets.
pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'",
        ),
    );
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_exactly() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "abcd"));
    }

    #[test]
    fn only_loopback_hosts_pass_without_a_token() {
        for ok in [
            "localhost",
            "127.0.0.1:7878",
            "[::1]:80",
            "LOCALHOST:1",
            "app.localhost",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:7878",
            "10.0.0.2:7878",
            "127.0.0.1.evil.example",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn token_is_split_off_the_query() {
        let (t, rest) = split_token("a=1&token=s%2Bx&b=2");
        assert_eq!(t.as_deref(), Some("s+x"));
        assert_eq!(rest, "a=1&b=2");
        assert_eq!(percent_decode("%E6%98%9F+x"), "星 x");
        assert_eq!(percent_decode("100%"), "100%");
    }
}
