//! The web UI in a real browser: headless Debian chromium driven through chromedriver, against
//! real `crm serve` processes on real replicas, and a real `crm-relay` where two devices sync.
//! See `harness/mod.rs` for the waits, the processes and the screenshots of failing tests.

mod harness;

use std::time::Duration;

use anyhow::{Context, Result};
use crm_tests::{Relay, Replica};
use fantoccini::Locator;
use fantoccini::key::Key;
use harness::{Node, Page, SYNC_TIMEOUT, TIMEOUT, browser_test, ensure, testid};
use serde_json::Value;

/// The first run of digits in a text ("3 deals" → 3), ignoring `,` grouping.
fn leading_number(text: &str) -> Option<u64> {
    let digits: String = text
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit() || *c == ',')
        .filter(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The id of the record whose page the browser shows (`/r/ID`), once it shows one.
async fn record_page_id(page: &Page) -> Result<String> {
    page.eventually("a record page (/r/ID)", TIMEOUT, async |p| {
        let path = p.path().await.map_err(|e| e.to_string())?;
        match path.strip_prefix("/r/") {
            Some(id) if id.len() == 36 => Ok(Some(id.to_string())),
            _ => Err(path),
        }
    })
    .await
}

/// Edits a field in place on the record page: a click on the value opens its editor; types
/// or picks `value`; saves.
async fn edit_in_place(page: &Page, field: &str, value: &str) -> Result<()> {
    page.click(&format!("field-{field}")).await?;
    let editor = format!("editor-{field}");
    let el = page.wait(&editor).await?;
    if el.tag_name().await?.eq_ignore_ascii_case("select") {
        page.select(&editor, value).await?;
    } else {
        page.fill(&editor, value).await?;
    }
    page.click(&format!("save-{field}")).await
}

/// Waits until the field's shown value is `value` (compared case-insensitively: an enum may
/// be shown with a capital).
async fn wait_field(page: &Page, field: &str, value: &str, timeout: Duration) -> Result<String> {
    page.wait_text(&format!("field-{field}"), timeout, value, |t| {
        t.to_lowercase() == value.to_lowercase()
    })
    .await
}

/// `crm KIND show ID --json` on a replica.
fn show(replica: &Replica, kind: &str, id: &str) -> Value {
    replica.json(&[kind, "show", id])
}

/// A replica of `user` on `device` that has joined the relay's workspace.
fn joined(relay: &Relay, workspace: &str, user: &str, device: &str) -> Replica {
    let r = Replica::init(user, device);
    let token = relay.token(workspace, user);
    r.ok(&["join", &relay.url(), "--token", &token]);
    r
}

#[test]
fn an_account_made_in_the_form_is_edited_in_place_and_found_in_list_and_search() {
    browser_test("account_form_edit_list_search", 1, async |pages| {
        let page = &pages[0];
        let replica = Replica::init("alice", "laptop");
        let other = replica.add("account", &["--name", "Northwind Traders"]);
        let node = Node::serve(replica)?;

        // Create through the form.
        page.goto(&node.url("/k/account/new")).await?;
        page.fill("input-name", "深圳星光贸易有限公司").await?;
        page.fill("input-industry", "零售").await?;
        page.select("input-grade", "vip").await?;
        page.click("form-submit").await?;
        let id = record_page_id(page).await?;
        page.wait_text("record-title", TIMEOUT, "the new name", |t| {
            t.contains("深圳星光贸易有限公司")
        })
        .await?;
        let stored = show(&node.replica, "account", &id);
        assert_eq!(stored["name"], "深圳星光贸易有限公司", "{stored}");
        assert_eq!(stored["industry"], "零售", "{stored}");
        assert_eq!(stored["grade"], "vip", "{stored}");

        // Edit a field in place: the store normalises a website to its host.
        edit_in_place(page, "website", "https://XingGuang.cn/").await?;
        wait_field(page, "website", "xingguang.cn", TIMEOUT).await?;
        ensure(page.path().await? == format!("/r/{id}"), || {
            "saving in place left the record page".into()
        })?;
        let stored = show(&node.replica, "account", &id);
        assert_eq!(stored["website"], "xingguang.cn", "{stored}");
        assert_eq!(stored["name"], "深圳星光贸易有限公司", "{stored}");

        // The list shows both accounts, the new one linking to its page.
        page.goto(&node.url("/k/account")).await?;
        page.wait(&format!("row-{other}")).await?;
        page.wait_text(&format!("link-{id}"), TIMEOUT, "the name", |t| {
            t.contains("深圳星光贸易有限公司")
        })
        .await?;
        let href = page
            .wait(&format!("link-{id}"))
            .await?
            .attr("href")
            .await?
            .unwrap_or_default();
        ensure(href.ends_with(&format!("/r/{id}")), || {
            format!("the list links to {href:?}")
        })?;

        // Search within the list: the other account goes away.
        page.fill("list-search", &format!("星光{}", Key::Enter))
            .await?;
        page.wait_gone(&format!("row-{other}"), TIMEOUT).await?;
        page.wait(&format!("row-{id}")).await?;

        // Search across kinds from the header.
        page.goto(&node.url("/")).await?;
        page.fill("global-search", &format!("星光贸易{}", Key::Enter))
            .await?;
        page.click(&format!("link-{id}")).await?;
        page.wait_text("record-title", TIMEOUT, "the account", |t| {
            t.contains("深圳星光贸易有限公司")
        })
        .await?;
        ensure(page.path().await? == format!("/r/{id}"), || {
            "the search result did not lead to the record".into()
        })?;
        Ok(())
    });
}

#[test]
fn moving_an_opportunity_on_the_board_changes_the_stage_and_the_totals() {
    browser_test("board_move", 1, async |pages| {
        let page = &pages[0];
        let replica = Replica::init("alice", "laptop");
        let account = replica.add("account", &["--name", "星光贸易"]);
        let deal = |name: &str, amount: &str, stage: &str| {
            replica.add(
                "opportunity",
                &[
                    "--name",
                    name,
                    "--account",
                    &account,
                    "--amount",
                    amount,
                    "--stage",
                    stage,
                ],
            )
        };
        deal("续约 2027", "1000", "prospecting");
        let moved = deal("Printers", "2500.50", "prospecting");
        deal("Scanners", "4000", "proposal");
        let node = Node::serve(replica)?;

        page.goto(&node.url("/board")).await?;
        let column = |stage: &str, count: u64, total: &'static str| {
            let stage = stage.to_string();
            async move {
                page.wait_text(
                    &format!("column-count-{stage}"),
                    TIMEOUT,
                    &count.to_string(),
                    |t| leading_number(t) == Some(count),
                )
                .await?;
                page.wait_text(&format!("column-total-{stage}"), TIMEOUT, total, |t| {
                    t.contains(total)
                })
                .await
                .map(drop)
            }
        };
        column("prospecting", 2, "3,500.50").await?;
        column("proposal", 1, "4,000.00").await?;
        let in_column = |stage: &str| {
            format!(
                "{} {}",
                testid(&format!("board-column-{stage}")),
                testid(&format!("card-{moved}"))
            )
        };
        page.client
            .find(Locator::Css(&in_column("prospecting")))
            .await
            .context("the card starts in the prospecting column")?;

        page.select(&format!("card-stage-{moved}"), "proposal")
            .await?;
        column("prospecting", 1, "1,000.00").await?;
        column("proposal", 2, "6,500.50").await?;
        page.eventually("the card in the proposal column", TIMEOUT, async |p| {
            p.client
                .find(Locator::Css(&in_column("proposal")))
                .await
                .map(|_| Some(()))
                .map_err(|e| e.to_string())
        })
        .await?;
        let stored = show(&node.replica, "opportunity", &moved);
        assert_eq!(stored["stage"], "proposal", "{stored}");

        // It is stored, not just drawn: a fresh page agrees.
        page.client.refresh().await?;
        column("prospecting", 1, "1,000.00").await?;
        column("proposal", 2, "6,500.50").await?;
        Ok(())
    });
}

#[test]
fn an_edit_on_one_device_appears_on_the_other_devices_open_page_without_a_reload() {
    browser_test("live_update_two_devices", 2, async |pages| {
        let (a_page, b_page) = (&pages[0], &pages[1]);
        let relay = Relay::start();
        let ws = relay.workspace("acme");
        let a = joined(&relay, &ws, "alice", "laptop");
        let b = joined(&relay, &ws, "bob", "phone");
        let id = a.add("account", &["--name", "星光贸易", "--industry", "retail"]);
        a.json(&["sync"]);
        b.json(&["sync"]);
        let a_node = Node::serve(a)?;
        let b_node = Node::serve(b)?;

        a_page.goto(&a_node.url(&format!("/r/{id}"))).await?;
        b_page.goto(&b_node.url(&format!("/r/{id}"))).await?;
        for page in [a_page, b_page] {
            wait_field(page, "industry", "retail", TIMEOUT).await?;
            page.wait_attr("sync-status", "data-state", "live", SYNC_TIMEOUT)
                .await?;
        }
        b_page.mark_document().await?;

        edit_in_place(a_page, "industry", "制造业").await?;
        wait_field(a_page, "industry", "制造业", TIMEOUT).await?;
        wait_field(b_page, "industry", "制造业", SYNC_TIMEOUT).await?;
        ensure(b_page.same_document().await?, || {
            "device B's page was reloaded instead of updated in place".into()
        })?;
        // And it is in B's replica, attributed to alice on her laptop.
        let stored = show(&b_node.replica, "account", &id);
        assert_eq!(stored["industry"], "制造业", "{stored}");
        let history = b_node.replica.json(&["history", &id]).to_string();
        assert!(history.contains("laptop"), "{history}");
        Ok(())
    });
}

#[test]
fn a_conflicting_offline_edit_shows_as_a_conflict_and_resolving_it_clears_it_on_both() {
    browser_test("offline_conflict", 2, async |pages| {
        let (a_page, b_page) = (&pages[0], &pages[1]);
        let mut relay = Relay::start();
        let ws = relay.workspace("acme");
        let a = joined(&relay, &ws, "alice", "laptop");
        let b = joined(&relay, &ws, "bob", "phone");
        let id = a.add(
            "account",
            &["--name", "深圳星光贸易有限公司", "--grade", "normal"],
        );
        a.json(&["sync"]);
        b.json(&["sync"]);
        let a_node = Node::serve(a)?;
        let b_node = Node::serve(b)?;
        let record = format!("/r/{id}");
        a_page.goto(&a_node.url(&record)).await?;
        b_page.goto(&b_node.url(&record)).await?;
        for page in [a_page, b_page] {
            page.wait_attr("sync-status", "data-state", "live", SYNC_TIMEOUT)
                .await?;
        }

        // The relay goes away: both pages say so, and both devices edit the same field.
        relay.kill();
        for page in [a_page, b_page] {
            page.wait_attr("sync-status", "data-state", "offline", SYNC_TIMEOUT)
                .await?;
        }
        edit_in_place(a_page, "grade", "vip").await?;
        edit_in_place(b_page, "grade", "key").await?;
        wait_field(a_page, "grade", "vip", TIMEOUT).await?;
        wait_field(b_page, "grade", "key", TIMEOUT).await?;
        a_page
            .wait_text("pending-count", TIMEOUT, "a pending change", |t| {
                leading_number(t).is_some_and(|n| n >= 1)
            })
            .await?;
        for page in [a_page, b_page] {
            page.mark_document().await?;
        }

        // Back online: the conflict shows on both open pages, with both values.
        relay.restart();
        for page in [a_page, b_page] {
            page.eventually("conflict-grade with vip and key", SYNC_TIMEOUT, async |p| {
                let buttons = p
                    .client
                    .find_all(Locator::Css("[data-testid^=\"resolve-grade-\"]"))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut values = Vec::new();
                for button in buttons {
                    values.push(
                        button
                            .attr("data-value")
                            .await
                            .map_err(|e| e.to_string())?
                            .unwrap_or_default(),
                    );
                }
                values.sort();
                if values == ["key", "vip"] {
                    Ok(Some(()))
                } else {
                    Err(format!("resolve buttons for {values:?}"))
                }
            })
            .await?;
            ensure(page.same_document().await?, || {
                "the conflict appeared through a reload, not a live update".into()
            })?;
        }
        let conflicts = b_node.replica.json(&["conflicts"]);
        assert_eq!(conflicts.as_array().map(Vec::len), Some(1), "{conflicts}");

        // One click on A keeps bob's value; the conflict clears on both pages.
        a_page
            .click_css("[data-testid^=\"resolve-grade-\"][data-value=\"key\"]")
            .await?;
        a_page.wait_gone("conflict-grade", TIMEOUT).await?;
        wait_field(a_page, "grade", "key", TIMEOUT).await?;
        b_page.wait_gone("conflict-grade", SYNC_TIMEOUT).await?;
        wait_field(b_page, "grade", "key", TIMEOUT).await?;
        for node in [&a_node, &b_node] {
            let conflicts = node.replica.json(&["conflicts"]);
            assert_eq!(conflicts, Value::Array(Vec::new()), "{conflicts}");
            assert_eq!(show(&node.replica, "account", &id)["grade"], "key");
        }
        Ok(())
    });
}

#[test]
fn bad_input_in_a_form_shows_an_error_and_stores_nothing() {
    browser_test("bad_input", 1, async |pages| {
        let page = &pages[0];
        let replica = Replica::init("alice", "laptop");
        let node = Node::serve(replica)?;

        // A new deal with an amount that is not one.
        page.goto(&node.url("/k/opportunity/new")).await?;
        page.fill("input-name", "打印机续约").await?;
        page.fill("input-amount", "twelve thousand").await?;
        page.click("form-submit").await?;
        page.wait("form-error").await?;
        page.wait_text("field-error-amount", TIMEOUT, "an error", |t| !t.is_empty())
            .await?;
        ensure(node.replica.list("opportunity").is_empty(), || {
            "a deal was stored despite the error".into()
        })?;
        // What was typed is still there to correct.
        let name = page.wait("input-name").await?.prop("value").await?;
        assert_eq!(name.as_deref(), Some("打印机续约"));

        // Corrected, it is stored.
        page.fill("input-amount", "12000.50").await?;
        page.click("form-submit").await?;
        let id = record_page_id(page).await?;
        let stored = show(&node.replica, "opportunity", &id);
        assert_eq!(stored["name"], "打印机续约", "{stored}");
        assert_eq!(node.replica.list("opportunity").len(), 1);

        // A bad value edited in place: the error shows beside the field, the editor stays
        // open, nothing is stored.
        let changes = |r: &Replica| r.json(&["history", &id]).as_array().map(Vec::len);
        let before = changes(&node.replica);
        page.click("field-amount").await?;
        page.fill("editor-amount", "-abc").await?;
        page.click("save-amount").await?;
        page.wait_text("field-error-amount", TIMEOUT, "an error", |t| !t.is_empty())
            .await?;
        page.wait("editor-amount").await?;
        let after = show(&node.replica, "opportunity", &id);
        assert_eq!(after["amount"], stored["amount"], "{after}");
        assert_eq!(changes(&node.replica), before);
        Ok(())
    });
}

#[test]
fn a_failing_browser_test_saves_a_screenshot() {
    let _turn = harness::take_turn();
    let name = "deliberately_failing_probe";
    let outcome = harness::runtime().block_on(harness::run(name, 1, async |pages| {
        let page = &pages[0];
        page.goto("data:text/html;charset=utf-8,<h1 data-testid=probe>探针</h1>")
            .await?;
        assert_eq!(page.text("probe").await?, "探针");
        page.eventually(
            "a thing that never comes",
            Duration::from_secs(1),
            async |_| Err::<Option<()>, _>("not there".to_string()),
        )
        .await
    }));
    let harness::Outcome::Failed { error, saved } = outcome else {
        panic!("the probe passed; it must fail");
    };
    assert!(error.contains("a thing that never comes"), "{error}");
    let png = saved
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .unwrap_or_else(|| panic!("no screenshot among {saved:?}"));
    assert!(png.starts_with(harness::screenshot_dir()), "{png:?}");
    let bytes = std::fs::read(png).expect("the screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert!(bytes.len() > 1000, "a {}-byte screenshot", bytes.len());
    let html = saved
        .iter()
        .find(|p| p.extension().is_some_and(|e| e == "html"))
        .map(std::fs::read_to_string)
        .expect("the page source")
        .expect("readable");
    assert!(html.contains("探针"), "{html}");
    for file in saved {
        std::fs::remove_file(file).expect("remove the probe's files");
    }
}

// Without a browser: what the node must refuse.

/// The per-process CSRF token from a page's `<meta name="csrf-token" content="…">`.
fn csrf_of(html: &str) -> String {
    let at = html
        .find("name=\"csrf-token\"")
        .unwrap_or_else(|| panic!("no csrf-token meta tag in {html}"));
    let tag_end = html[at..].find('>').expect("the meta tag ends") + at;
    let tag_start = html[..at].rfind('<').expect("the meta tag starts");
    let tag = &html[tag_start..tag_end];
    let value = tag
        .split_once("content=\"")
        .and_then(|(_, rest)| rest.split_once('"'))
        .map(|(v, _)| v)
        .unwrap_or_else(|| panic!("no content in {tag}"));
    assert!(!value.is_empty(), "an empty CSRF token");
    value.to_string()
}

#[test]
fn writes_without_the_csrf_token_or_from_another_origin_are_refused_and_store_nothing() {
    let replica = Replica::init("alice", "laptop");
    let id = replica.add("account", &["--name", "星光贸易", "--industry", "retail"]);
    let node = Node::serve(replica).expect("crm serve starts");
    let addr = node.addr();
    let page = harness::http(&addr, "GET", &format!("/r/{id}"), &[], "").expect("GET");
    assert_eq!(page.status, 200, "{}", page.body);
    let csrf = csrf_of(&page.body);
    let path = format!("/api/r/{id}/field");
    let body = r#"{"field":"industry","value":"能源"}"#;
    let json = ("Content-Type", "application/json");
    let origin = format!("http://{addr}");

    let no_token = harness::http(&addr, "POST", &path, &[json], body).expect("POST");
    assert_eq!(no_token.status, 403, "{no_token:?}");
    let wrong = harness::http(
        &addr,
        "POST",
        &path,
        &[json, ("X-CSRF-Token", "forged")],
        body,
    )
    .expect("POST");
    assert_eq!(wrong.status, 403, "{wrong:?}");
    let cross = harness::http(
        &addr,
        "POST",
        &path,
        &[
            json,
            ("X-CSRF-Token", &csrf),
            ("Origin", "http://evil.example"),
        ],
        body,
    )
    .expect("POST");
    assert_eq!(cross.status, 403, "{cross:?}");
    let form = harness::http(
        &addr,
        "POST",
        "/k/account/new",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "name=forged",
    )
    .expect("POST");
    assert_eq!(form.status, 403, "{form:?}");
    assert_eq!(show(&node.replica, "account", &id)["industry"], "retail");
    assert_eq!(
        node.replica.list("account").len(),
        1,
        "a forged form stored a record"
    );

    // The same write with the token, from the page's own origin, goes through.
    let ok = harness::http(
        &addr,
        "POST",
        &path,
        &[json, ("X-CSRF-Token", &csrf), ("Origin", &origin)],
        body,
    )
    .expect("POST");
    assert_eq!(ok.status, 200, "{ok:?}");
    assert_eq!(show(&node.replica, "account", &id)["industry"], "能源");
}

#[test]
fn beyond_loopback_the_node_needs_a_token_and_every_request_must_carry_it() {
    let replica = Replica::init("alice", "laptop");
    let refused = replica.run(&["serve", "--listen", "0.0.0.0:0"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.starts_with("error:") && stderr.contains("--token"),
        "{stderr}"
    );

    let token = "s3cret-token-for-tests";
    let node = Node::serve_with(replica, &["--listen", "0.0.0.0:0", "--token", token])
        .expect("crm serve starts");
    let addr = node.addr();
    let get = |path: &str, headers: &[(&str, &str)]| {
        harness::http(&addr, "GET", path, headers, "").expect("GET")
    };
    assert_eq!(get("/", &[]).status, 401);
    assert_eq!(get("/k/account", &[]).status, 401);
    assert_eq!(get("/events", &[]).status, 401);
    assert_eq!(
        get("/", &[("Cookie", "crm_token=wrong-token-value")]).status,
        401
    );
    let bearer = format!("Bearer {token}");
    assert_eq!(get("/", &[("Authorization", &bearer)]).status, 200);

    // `?token=` once: a cookie, and the same URL without the token.
    let first = get(&format!("/k/account?token={token}&page=1"), &[]);
    assert!(
        (300..400).contains(&first.status),
        "{first:?} is not a redirect"
    );
    let location = first.header("location").expect("a Location");
    assert!(!location.contains(token), "{location}");
    assert!(location.starts_with("/k/account"), "{location}");
    let cookie = first.header("set-cookie").expect("a cookie");
    assert!(cookie.contains(&format!("crm_token={token}")), "{cookie}");
    assert!(cookie.to_ascii_lowercase().contains("httponly"), "{cookie}");
    let with_cookie = format!("crm_token={token}");
    assert_eq!(get(location, &[("Cookie", &with_cookie)]).status, 200);
}

/// Issue 12, failure 3: a 1 MB notes replacement through the web held the replica's writer
/// for minutes, and `crm serve` ignored SIGTERM until it was done. Now a write still waiting
/// after the grace period (here, for the writer another process holds) does not keep the
/// server up, and its transaction is rolled back: nothing half-written.
#[test]
fn crm_serve_stops_promptly_on_sigterm_while_a_write_is_in_flight() {
    let replica = Replica::init("alice", "laptop");
    let id = replica.add("account", &["--name", "星光贸易", "--notes", "first visit"]);
    let db = replica.path().join("replica.db");
    let mut node = Node::serve_logging(replica, &["--listen", "127.0.0.1:0"], "crm_web=debug")
        .expect("crm serve starts");
    let addr = node.addr();
    let page = harness::http(&addr, "GET", &format!("/r/{id}"), &[], "").expect("GET");
    let csrf = csrf_of(&page.body);

    // Another process holds the writer, as a long CLI import would.
    let holder = rusqlite::Connection::open(&db).expect("open the replica");
    holder
        .execute_batch("BEGIN IMMEDIATE")
        .expect("take the writer");
    let notes: String = "客户拜访记录".chars().cycle().take(100_000).collect();
    let body = serde_json::json!({ "text": notes }).to_string();
    let origin = format!("http://{addr}");
    let path = format!("/api/r/{id}/notes");
    let writer = std::thread::spawn(move || {
        let _ = harness::http(
            &addr,
            "POST",
            &path,
            &[
                ("Content-Type", "application/json"),
                ("X-CSRF-Token", &csrf),
                ("Origin", &origin),
            ],
            &body,
        );
    });
    // The write has begun (it now waits for the writer).
    let deadline = std::time::Instant::now() + TIMEOUT;
    while !std::fs::read_to_string(&node.log)
        .unwrap_or_default()
        .contains("writing a record")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the write never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let started = std::time::Instant::now();
    let status = node
        .stop_within(Duration::from_secs(8))
        .expect("SIGTERM sent");
    let took = started.elapsed();
    assert!(
        status.is_some_and(|s| s.success()),
        "crm serve did not exit by itself within 8 s of SIGTERM ({status:?})"
    );
    assert!(took < Duration::from_secs(8), "{took:?}");
    holder
        .execute_batch("ROLLBACK")
        .expect("release the writer");
    let _ = writer.join();
    assert_eq!(show(&node.replica, "account", &id)["notes"], "first visit");
}

/// The relay refuses every queued change of each record in `ids` (what crm-node will settle
/// once the relay refuses edits one by one); returns each record's refused edit id.
fn refuse(replica: &Replica, ids: &[&str], reason: &str) -> Result<Vec<i64>> {
    let mut store = crm_store::Store::open(replica.path())?;
    let ids: Vec<crm_model::RecordId> = ids.iter().map(|i| i.parse()).collect::<Result<_, _>>()?;
    let refused: Vec<crm_store::Refused> = store
        .outbox_batch(usize::MAX, usize::MAX)?
        .changes
        .into_iter()
        .filter(|c| ids.contains(&c.doc_id))
        .map(|c| crm_store::Refused {
            local_seq: c.local_seq,
            code: 403,
            reason: reason.into(),
        })
        .collect();
    store.settle_refused(&refused)?;
    let rows = store.rejected()?;
    ids.iter()
        .map(|id| {
            rows.iter()
                .find(|r| r.record == *id)
                .map(|r| r.id)
                .with_context(|| format!("a refused edit of {id}"))
        })
        .collect()
}

/// Every queued change acknowledged, as after a sync the relay accepted.
fn acknowledge_all(replica: &Replica) -> Result<()> {
    let mut store = crm_store::Store::open(replica.path())?;
    let seqs: Vec<i64> = store
        .outbox(usize::MAX)?
        .into_iter()
        .map(|c| c.local_seq)
        .collect();
    store.acknowledge(&seqs)?;
    Ok(())
}

/// The replica joins as a sales rep (the relay's identity, and its User record as an admin
/// made it), so the device's role checks apply.
fn become_sales_rep(replica: &Replica) -> Result<()> {
    let admin_dir = tempfile::tempdir()?;
    let mut admin = crm_store::Store::init(admin_dir.path(), "root", "admin-laptop")?;
    let mut user = crm_model::Edit::new(crm_model::Kind::User);
    user.set("name", "alice")?.set("role", "sales_rep")?;
    let user = admin.create(&user)?.id;
    let changes: Vec<crm_store::RemoteChange> = admin
        .changes_after(0, usize::MAX)?
        .into_iter()
        .map(|l| l.change)
        .filter(|c| c.doc_id == user)
        .collect();
    let mut store = crm_store::Store::open(replica.path())?;
    store.apply_remote_changes(&changes)?;
    store.adopt_identity(&crm_store::RelayIdentity {
        user_id: user,
        user_name: "alice".into(),
        role: crm_model::Role::SalesRep,
        teams: Vec::new(),
        device_id: "dev-1".into(),
        access_key: [7; 32],
    })?;
    Ok(())
}

/// Whether the page is wider than the window (something does not fit at this width).
async fn overflows(page: &Page) -> Result<bool> {
    let v = page
        .js("const d = document.documentElement; \
             return Math.max(d.scrollWidth, document.body.scrollWidth) > d.clientWidth;")
        .await?;
    Ok(v.as_bool().unwrap_or(true))
}

#[test]
fn refused_edits_show_a_banner_and_are_retried_or_dismissed_on_their_page() {
    browser_test("refused_edits", 1, async |pages| {
        let page = &pages[0];
        let replica = Replica::init("alice", "laptop");
        let acme = replica.add("account", &["--name", "ACME", "--industry", "retail"]);
        acknowledge_all(&replica)?;
        replica.ok(&["account", "edit", &acme, "--industry", "manufacturing"]);
        let ghost = replica.add("account", &["--name", "Ghost Trading"]);
        let fair = replica.add("campaign", &["--name", "Spring fair"]);
        let refused = refuse(
            &replica,
            &[&acme, &ghost, &fair],
            "your role may not do this",
        )?;
        let (acme_row, ghost_row, fair_row) = (refused[0], refused[1], refused[2]);
        become_sales_rep(&replica)?;
        let node = Node::serve(replica)?;

        // Every page says so, and links to the list.
        page.goto(&node.url("/")).await?;
        page.wait_text("refused-banner", TIMEOUT, "3 refused edits", |t| {
            t.contains("3 edits were refused by the relay")
        })
        .await?;
        page.click("refused-review").await?;
        page.eventually("the refused edits page", TIMEOUT, async |p| {
            let path = p.path().await.map_err(|e| e.to_string())?;
            if path == "/rejected" {
                Ok(Some(()))
            } else {
                Err(path)
            }
        })
        .await?;
        page.wait_gone("refused-banner", TIMEOUT).await?;
        // The edit: its record linked, the field with the value typed and the one it has.
        page.wait(&format!("link-{acme}")).await?;
        page.wait_text(
            &format!("rejected-{acme_row}-field-industry"),
            TIMEOUT,
            "industry: manufacturing typed, retail now",
            |t| t.contains("manufacturing") && t.contains("retail"),
        )
        .await?;
        page.wait_text(&format!("reason-{acme_row}"), TIMEOUT, "the reason", |t| {
            t.contains("403") && t.contains("your role may not do this")
        })
        .await?;
        page.wait_text(
            &format!("title-{ghost_row}"),
            TIMEOUT,
            "the new record",
            |t| t.contains("Ghost Trading"),
        )
        .await?;

        // Dismissed: gone from the page and the replica.
        page.click(&format!("dismiss-{ghost_row}")).await?;
        page.wait_gone(&format!("rejected-{ghost_row}"), TIMEOUT)
            .await?;
        // A retry the rep's role does not allow: the error shows, the edit stays.
        page.click(&format!("retry-{fair_row}")).await?;
        page.wait_text(
            &format!("rejected-error-{fair_row}"),
            TIMEOUT,
            "the role's refusal",
            |t| t.contains("may not create"),
        )
        .await?;
        page.wait(&format!("rejected-{fair_row}")).await?;
        // Retried: made again, queued for the relay.
        page.click(&format!("retry-{acme_row}")).await?;
        page.wait_gone(&format!("rejected-{acme_row}"), TIMEOUT)
            .await?;
        assert_eq!(
            show(&node.replica, "account", &acme)["industry"],
            "manufacturing"
        );
        let left = node.replica.json(&["rejected"]);
        assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
        assert_eq!(left[0]["record"], fair.as_str(), "{left}");

        // It fits a phone: nothing wider than the window, the header on one line.
        page.client.set_window_size(390, 900).await?;
        page.client.refresh().await?;
        page.wait(&format!("rejected-{fair_row}")).await?;
        ensure(!overflows(page).await?, || {
            "/rejected is wider than a 390 px window".into()
        })?;
        let header = page
            .js("return document.querySelector('.topbar').getBoundingClientRect().height;")
            .await?;
        ensure(header.as_f64().is_some_and(|h| h < 70.0), || {
            format!("the header breaks at 390 px: {header} px high")
        })?;
        page.client.set_window_size(1366, 1000).await?;

        // A refusal settled while a page is open shows without a reload.
        page.goto(&node.url("/")).await?;
        page.wait_text("refused-banner", TIMEOUT, "1 refused edit", |t| {
            t.contains("1 edit was refused")
        })
        .await?;
        page.mark_document().await?;
        node.replica
            .ok(&["account", "edit", &acme, "--industry", "mining"]);
        refuse(&node.replica, &[&acme], "no")?;
        page.wait_text("refused-banner", TIMEOUT, "2 refused edits", |t| {
            t.contains("2 edits were refused")
        })
        .await?;
        ensure(page.same_document().await?, || {
            "the page was reloaded instead of updated in place".into()
        })?;
        Ok(())
    });
}

/// A record the user's role may not edit shows no editors (the relay would refuse the edit),
/// and only someone who may reassign a record gets an editor for its owner.
#[test]
fn a_record_the_role_may_not_edit_shows_no_editors() {
    browser_test("read_only", 1, async |pages| {
        let page = &pages[0];
        let replica = Replica::init("alice", "laptop");
        let bob = replica.add("user", &["--name", "bob", "--role", "sales_rep"]);
        let theirs = replica.add("account", &["--name", "Bob's Co", "--owner", &bob]);
        become_sales_rep(&replica)?;
        let mine = replica.add("account", &["--name", "Alice's Co"]);
        let node = Node::serve(replica)?;

        page.goto(&node.url(&format!("/r/{theirs}"))).await?;
        page.wait("read-only").await?;
        for absent in ["edit-name", "edit-industry", "notes-save", "tag-input"] {
            ensure(page.find_now(absent).await.is_err(), || {
                format!("{absent} on a record the rep may not edit")
            })?;
        }

        page.goto(&node.url(&format!("/r/{mine}"))).await?;
        page.wait("edit-name").await?;
        page.wait("notes-save").await?;
        ensure(page.find_now("read-only").await.is_err(), || {
            "the rep's own record is shown read only".into()
        })?;
        ensure(page.find_now("edit-owner").await.is_err(), || {
            "a rep may not give their record to someone else".into()
        })?;
        Ok(())
    });
}
