//! The HTTP layer against a real replica: guards, validation, pages, the API and the live
//! event stream. Requests go through the whole router (`tower::ServiceExt::oneshot`); the
//! event stream test runs the real server on a loopback port.

use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::http::{Request, StatusCode, header};
use crm_model::{Edit, Kind, RecordId};
use crm_store::Store;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tower::ServiceExt as _;

use crate::{AppState, Config, app};

struct Fixture {
    dir: tempfile::TempDir,
    state: AppState,
    account: RecordId,
}

fn fixture(token: Option<&str>) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
    let mut e = Edit::new(Kind::Account);
    e.set("name", "深圳星光贸易有限公司").expect("name");
    e.set("grade", "vip").expect("grade");
    e.set("industry", "Automotive parts").expect("industry");
    let account = store.create(&e).expect("create").id;
    let state = AppState::new(Config {
        data_dir: dir.path().to_path_buf(),
        token: token.map(str::to_string),
        sync: false,
    })
    .expect("state");
    Fixture {
        dir,
        state,
        account,
    }
}

impl Fixture {
    fn store(&self) -> Store {
        Store::open(self.dir.path()).expect("open")
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, String) {
        let response = app(self.state.clone())
            .oneshot(req)
            .await
            .expect("response");
        let status = response.status();
        let headers = response.headers().clone();
        let body = to_bytes(response.into_body(), 10 << 20)
            .await
            .expect("body");
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    async fn get(&self, uri: &str) -> (StatusCode, String) {
        let (s, _, b) = self
            .send(Request::get(uri).body(Body::empty()).expect("request"))
            .await;
        (s, b)
    }

    fn post_json(&self, uri: &str, json: &serde_json::Value, csrf: Option<&str>) -> Request<Body> {
        let mut req = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::HOST, "127.0.0.1:7878");
        if let Some(c) = csrf {
            req = req.header("x-csrf-token", c);
        }
        req.body(Body::from(json.to_string())).expect("request")
    }

    fn csrf(&self) -> String {
        self.state.csrf().to_string()
    }
}

#[tokio::test]
async fn a_list_renders_from_the_projection() {
    let f = fixture(None);
    let (status, body) = f.get("/k/account").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.contains("深圳星光贸易有限公司"), "{body}");
    assert!(body.contains(&format!("data-testid=\"row-{}\"", f.account)));
    assert!(body.contains("data-testid=\"list-total\">1<"), "{body}");
    // Filters and search narrow it.
    let (_, none) = f.get("/k/account?f.grade=low").await;
    assert!(!none.contains(&format!("row-{}", f.account)));
    let (_, part) = f.get("/k/account?f.industry=MOTIVE").await;
    assert!(
        part.contains(&format!("row-{}", f.account)),
        "free text matches a part"
    );
    let (_, hit) = f.get("/k/account?q=%E6%98%9F%E5%85%89").await;
    assert!(
        hit.contains(&format!("row-{}", f.account)),
        "search by 星光"
    );
    // A fragment is only <main>.
    let (_, fragment) = f.get("/k/account?fragment=1").await;
    assert!(fragment.starts_with("<main"), "{fragment}");
    // DNS rebinding: another site's name resolving to 127.0.0.1.
    let rebound = Request::get("/k/account")
        .header(header::HOST, "evil.example:7878")
        .body(Body::empty())
        .expect("request");
    assert_eq!(f.send(rebound).await.0, StatusCode::FORBIDDEN);
    let (status, _) = f.get("/k/spaceship").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn every_page_renders() {
    let f = fixture(None);
    for uri in [
        "/",
        "/board",
        "/tickets",
        "/reports",
        "/search?q=%E6%98%9F",
        "/k/opportunity/new",
        &format!("/r/{}", f.account),
    ] {
        let (status, body) = f.get(uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}: {body}");
        assert!(body.contains("name=\"csrf-token\""), "{uri}");
    }
}

#[tokio::test]
async fn the_reports_page_runs_every_report_of_the_catalogue() {
    let f = fixture(None);
    let (_, page) = f.get("/reports").await;
    for def in crm_store::reports::catalogue() {
        assert!(
            page.contains(&format!("/reports?report={}", def.name)),
            "{} is linked",
            def.name
        );
        let (status, body) = f.get(&format!("/reports?report={}", def.name)).await;
        assert_eq!(status, StatusCode::OK, "{}: {body}", def.name);
        assert!(
            body.contains(&format!("data-testid=\"report-{}\"", def.name)),
            "{}",
            def.name
        );
    }
    let (status, _) = f.get("/reports?report=no-such-report").await;
    assert!(status.is_client_error(), "{status}");
}

#[tokio::test]
async fn writes_without_the_csrf_token_are_refused_and_store_nothing() {
    let f = fixture(None);
    let before = f.store().change_log_head().expect("head");
    let uri = format!("/api/r/{}/field", f.account);
    let body = serde_json::json!({ "field": "industry", "value": "retail" });
    let (status, _, _) = f.send(f.post_json(&uri, &body, None)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = f.send(f.post_json(&uri, &body, Some("wrong"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The right token from another site's page.
    let mut req = f.post_json(&uri, &body, Some(&f.csrf()));
    req.headers_mut().insert(
        header::ORIGIN,
        "http://evil.example".parse().expect("header"),
    );
    let (status, _, _) = f.send(req).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A plain form post without `_csrf`.
    let form = Request::post("/k/account/new")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from("name=Evil"))
        .expect("request");
    let (status, _, _) = f.send(form).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(f.store().change_log_head().expect("head"), before);
    // With the token (and a same-origin Origin) the write goes through.
    let mut req = f.post_json(&uri, &body, Some(&f.csrf()));
    req.headers_mut().insert(
        header::ORIGIN,
        "http://127.0.0.1:7878".parse().expect("header"),
    );
    let (status, _, text) = f.send(req).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let record = f.store().get(f.account).expect("get");
    assert_eq!(
        record.get("industry").map(|v| v.display()).as_deref(),
        Some("retail")
    );
}

#[tokio::test]
async fn a_token_is_required_when_configured() {
    let secret = "s3cret-token-for-tests";
    let f = fixture(Some(secret));
    let (status, _) = f.get("/").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = f.get("/events").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let wrong = Request::get("/")
        .header(header::AUTHORIZATION, "Bearer nope")
        .body(Body::empty())
        .expect("request");
    assert_eq!(f.send(wrong).await.0, StatusCode::UNAUTHORIZED);
    let bearer = Request::get("/")
        .header(header::AUTHORIZATION, format!("Bearer {secret}"))
        .body(Body::empty())
        .expect("request");
    assert_eq!(f.send(bearer).await.0, StatusCode::OK);
    // `?token=` sets the cookie and redirects to the URL without it.
    let (status, headers, _) = f
        .send(
            Request::get(format!("/k/account?token={secret}&page=1"))
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(
        headers.get(header::LOCATION).and_then(|v| v.to_str().ok()),
        Some("/k/account?page=1")
    );
    let cookie = headers
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .expect("cookie")
        .split(';')
        .next()
        .expect("pair")
        .to_string();
    assert!(cookie.contains("HttpOnly") || cookie.starts_with("crm_token="));
    let with_cookie = Request::get("/k/account")
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .expect("request");
    assert_eq!(f.send(with_cookie).await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_form_with_bad_input_shows_errors_and_stores_nothing() {
    let f = fixture(None);
    let before = f.store().count(Kind::Account, true).expect("count");
    let head = f.store().change_log_head().expect("head");
    let body = format!("_csrf={}&name=&employees=many&website=&grade=vip", f.csrf());
    let req = Request::post("/k/account/new")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    let (status, _, page) = f.send(req).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(page.contains("data-testid=\"form-error\""), "{page}");
    assert!(page.contains("data-testid=\"field-error-name\""), "{page}");
    assert!(
        page.contains("data-testid=\"field-error-employees\""),
        "{page}"
    );
    assert!(page.contains("value=\"many\""), "what was typed is kept");
    assert_eq!(f.store().count(Kind::Account, true).expect("count"), before);
    assert_eq!(f.store().change_log_head().expect("head"), head);

    // An inline edit with a bad value: 422 naming the field, nothing stored.
    let uri = format!("/api/r/{}/field", f.account);
    let (status, _, json) = f
        .send(f.post_json(
            &uri,
            &serde_json::json!({ "field": "grade", "value": "platinum" }),
            Some(&f.csrf()),
        ))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let json: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(json["ok"], false);
    assert_eq!(json["field"], "grade");
    assert_eq!(f.store().change_log_head().expect("head"), head);
}

#[tokio::test]
async fn a_good_form_creates_the_record_with_references_by_name() {
    let f = fixture(None);
    let body = format!(
        "_csrf={}&first_name=%E8%8A%B3&last_name=%E7%8E%8B&account={}",
        f.csrf(),
        "%E6%B7%B1%E5%9C%B3%E6%98%9F%E5%85%89%E8%B4%B8%E6%98%93%E6%9C%89%E9%99%90%E5%85%AC%E5%8F%B8"
    );
    let req = Request::post("/k/contact/new")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body))
        .expect("request");
    let (status, headers, page) = f.send(req).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{page}");
    let location = headers
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .expect("location");
    let id: RecordId = location
        .strip_prefix("/r/")
        .expect("record url")
        .parse()
        .expect("id");
    let contact = f.store().get(id).expect("contact");
    assert_eq!(contact.title(), "王芳");
    assert_eq!(
        contact.get("account").map(|v| v.display()),
        Some(f.account.to_string())
    );
    // The account's 360° view lists the new contact.
    let (_, account_page) = f.get(&format!("/r/{}", f.account)).await;
    assert!(
        account_page.contains(&format!("link-{id}")),
        "{account_page}"
    );
}

#[tokio::test]
async fn a_conflict_shows_on_its_field_and_one_click_resolves_it() {
    let f = fixture(None);
    let other_dir = tempfile::tempdir().expect("tempdir");
    let mut a = f.store();
    let mut b = Store::init(other_dir.path(), "bob", "phone").expect("init");
    b.merge_from(&a).expect("merge");
    let mut e = Edit::new(Kind::Account);
    e.set("industry", "retail").expect("set");
    a.edit(f.account, &e).expect("edit a");
    let mut e = Edit::new(Kind::Account);
    e.set("industry", "logistics").expect("set");
    b.edit(f.account, &e).expect("edit b");
    a.merge_from(&b).expect("merge back");
    let (_, page) = f.get(&format!("/r/{}", f.account)).await;
    assert!(page.contains("data-testid=\"conflict-industry\""), "{page}");
    assert!(page.contains("data-testid=\"resolve-industry-1\""));
    let (status, _, json) = f
        .send(f.post_json(
            &format!("/api/r/{}/resolve", f.account),
            &serde_json::json!({ "field": "industry", "value": "logistics" }),
            Some(&f.csrf()),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let (_, page) = f.get(&format!("/r/{}", f.account)).await;
    assert!(!page.contains("data-testid=\"conflict-industry\""));
    let record = f.store().get(f.account).expect("get");
    assert_eq!(
        record.get("industry").map(|v| v.display()).as_deref(),
        Some("logistics")
    );
}

#[tokio::test]
async fn board_moves_tags_notes_archive_and_ticket_actions_write_through_the_store() {
    let f = fixture(None);
    let mut store = f.store();
    let mut e = Edit::new(Kind::Opportunity);
    e.set("name", "ERP rollout").expect("name");
    e.set("amount", "1000").expect("amount");
    let deal = store.create(&e).expect("deal").id;
    let mut e = Edit::new(Kind::Ticket);
    e.set("subject", "Printer jam").expect("subject");
    let ticket = store.create(&e).expect("ticket").id;
    let csrf = f.csrf();
    let call = |uri: String, body: serde_json::Value| f.post_json(&uri, &body, Some(&csrf));

    let (s, _, t) = f
        .send(call(
            "/api/board/move".into(),
            serde_json::json!({ "id": deal.to_string(), "stage": "proposal" }),
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (_, board) = f.get("/board").await;
    let column = board
        .split("data-testid=\"board-column-proposal\"")
        .nth(1)
        .expect("column");
    assert!(
        column.contains("data-testid=\"column-total-proposal\">1,000.00<"),
        "{column}"
    );
    let (s, _, _) = f
        .send(call(
            "/api/board/move".into(),
            serde_json::json!({ "id": deal.to_string(), "stage": "won" }),
        ))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);

    let uri = |what: &str| format!("/api/r/{}/{what}", f.account);
    assert_eq!(
        f.send(call(uri("tags"), serde_json::json!({ "add": "重点客户" })))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        f.send(call(
            uri("notes"),
            serde_json::json!({ "text": "第一次拜访\nfirst visit" })
        ))
        .await
        .0,
        StatusCode::OK
    );
    assert_eq!(
        f.send(call(
            uri("archive"),
            serde_json::json!({ "archived": true })
        ))
        .await
        .0,
        StatusCode::OK
    );
    let record = f.store().get(f.account).expect("get");
    assert!(record.tags.contains("重点客户"));
    assert_eq!(record.notes, "第一次拜访\nfirst visit");
    assert!(record.archived);
    let (_, list) = f.get("/k/account").await;
    assert!(
        !list.contains(&format!("row-{}", f.account)),
        "archived records are hidden"
    );
    let (_, list) = f.get("/k/account?archived=1").await;
    assert!(list.contains(&format!("row-{}", f.account)));

    let (s, _, t) = f
        .send(call(
            format!("/api/tickets/{ticket}/assign"),
            serde_json::json!({ "assignee": "me" }),
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{t}");
    let (s, _, _) = f
        .send(call(
            format!("/api/tickets/{ticket}/resolve"),
            serde_json::json!({ "resolution": "replaced the roller" }),
        ))
        .await;
    assert_eq!(s, StatusCode::OK);
    let t = f.store().get(ticket).expect("ticket");
    assert_eq!(
        t.get("status").map(|v| v.display()).as_deref(),
        Some("resolved")
    );
    assert_eq!(
        t.get("assignee").map(|v| v.display()),
        f.store().identity().user_id.map(|u| u.to_string())
    );
}

/// Reads from `stream` until `needle` shows up, failing after `limit`.
async fn read_until(stream: &mut tokio::net::TcpStream, needle: &str, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "timed out waiting for {needle:?}; got {}",
            String::from_utf8_lossy(&seen)
        );
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("stream closed before {needle:?}"),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => panic!("read failed: {e}"),
            Err(_) => continue,
        }
        let text = String::from_utf8_lossy(&seen).into_owned();
        if text.contains(needle) {
            return text;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_by_another_process_reaches_the_event_stream_and_shutdown_ends_it() {
    let f = fixture(None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(crate::serve(listener, f.state.clone(), async {
        let _ = stop_rx.await;
    }));
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n")
        .await
        .expect("write");
    read_until(&mut stream, "text/event-stream", Duration::from_secs(10)).await;
    // The watcher took its baseline before the server accepted us: write as the CLI would.
    let account = f.account;
    let dir = f.dir.path().to_path_buf();
    let written = tokio::task::spawn_blocking(move || {
        let mut store = Store::open(&dir).expect("open");
        let mut e = Edit::new(Kind::Account);
        e.set("industry", "机械制造").expect("set");
        store.edit(account, &e).expect("edit");
        Instant::now()
    })
    .await
    .expect("writer");
    let text = read_until(&mut stream, &account.to_string(), Duration::from_secs(10)).await;
    let latency = written.elapsed();
    assert!(text.contains("event: change"), "{text}");
    assert!(
        latency < Duration::from_secs(2),
        "live update took {latency:?}"
    );
    let _ = stop_tx.send(());
    let result = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("graceful shutdown must not wait for open event streams");
    result.expect("join").expect("serve");
}

#[tokio::test]
async fn refused_edits_are_shown_and_settled_through_the_api_with_its_guards() {
    let f = fixture(None);
    let mut store = f.store();
    let mut e = Edit::new(Kind::Account);
    e.set("industry", "Shipbuilding").expect("industry");
    store.edit(f.account, &e).expect("edit");
    let refused: Vec<crm_store::Refused> = store
        .outbox_batch(usize::MAX, usize::MAX)
        .expect("outbox")
        .changes
        .into_iter()
        .filter(|c| c.doc_id == f.account)
        .map(|c| crm_store::Refused {
            local_seq: c.local_seq,
            code: 403,
            reason: "not <yours>".into(),
        })
        .collect();
    store.settle_refused(&refused).expect("settle");
    let id = store.rejected().expect("rejected")[0].id;

    // Every page carries the banner; the page lists the edit, its reason escaped.
    let (_, dashboard) = f.get("/").await;
    assert!(
        dashboard.contains("data-testid=\"refused-banner\""),
        "{dashboard}"
    );
    assert!(dashboard.contains("1 edit was refused by the relay"));
    let (status, page) = f.get("/rejected").await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(&format!("data-testid=\"rejected-{id}\"")),
        "{page}"
    );
    assert!(page.contains("Shipbuilding") && page.contains("not &lt;yours&gt;"));
    assert!(!page.contains("data-testid=\"refused-banner\""));

    // Without the CSRF token nothing happens; unknown or malformed ids are 404.
    let path = format!("/api/rejected/{id}/dismiss");
    let (status, _, _) = f
        .send(f.post_json(&path, &serde_json::json!({}), None))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(store.rejected_count().expect("count"), 1);
    for uri in ["/api/rejected/999/retry", "/api/rejected/x/dismiss"] {
        let (status, _, body) = f
            .send(f.post_json(uri, &serde_json::json!({}), Some(&f.csrf())))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}: {body}");
        assert!(body.contains("\"ok\":false"), "{body}");
    }

    // Retried: the value typed is back, as a new change for the relay.
    let retry = format!("/api/rejected/{id}/retry");
    let (status, _, body) = f
        .send(f.post_json(&retry, &serde_json::json!({}), Some(&f.csrf())))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let record = f.store().get(f.account).expect("get");
    assert_eq!(
        record.get("industry"),
        Some(&crm_model::FieldValue::Text("Shipbuilding".into()))
    );
    assert_eq!(f.store().rejected_count().expect("count"), 0);
    let (_, after) = f.get("/").await;
    assert!(!after.contains("data-testid=\"refused-banner\""));
    let (_, status_json) = f.get("/api/status").await;
    assert!(status_json.contains("\"refused\":0"), "{status_json}");
}
