//! The sales and activity workflows on a real replica, with hand-worked expectations.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use crm_model::{Amount, Edit, FieldValue, Kind, Record, RecordId};

use super::activities::{ReminderState, next_birthday};
use super::deals::Outcome;
use super::leads::{
    AssignRule, CONVERTED_FROM, Captured, ConvertOptions, LeadSelection, company_key,
};
use super::orders::{QuoteLine, line_total};
use crate::{Store, StoreError};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::init(dir.path(), "alice", "laptop").expect("init");
    (dir, store)
}

fn edit(kind: Kind, fields: &[(&str, &str)]) -> Edit {
    let mut e = Edit::new(kind);
    for (f, v) in fields {
        e.set(f, v).expect("valid test value");
    }
    e
}

fn create(store: &mut Store, kind: Kind, fields: &[(&str, &str)]) -> RecordId {
    store.create(&edit(kind, fields)).expect("create").id
}

fn text<'a>(r: &'a Record, field: &str) -> Option<&'a str> {
    super::text(r, field)
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("test time")
        .with_timezone(&Utc)
}

/// Every record's JSON, to prove a refused step wrote nothing.
fn everything(store: &Store) -> Vec<serde_json::Value> {
    store.projection_dump().expect("dump")
}

#[test]
fn company_names_normalise_without_legal_forms() {
    assert_eq!(
        company_key("Northwind Traders Co., Ltd."),
        "northwindtraders"
    );
    assert_eq!(company_key("northwind  traders"), "northwindtraders");
    assert_eq!(company_key("深圳星光贸易有限公司"), "深圳星光贸易");
    assert_eq!(company_key("深圳星光贸易 集团有限公司"), "深圳星光贸易");
    assert_eq!(
        company_key("Costco"),
        "costco",
        "only whole words are legal forms"
    );
    assert_eq!(
        company_key("Ltd"),
        "ltd",
        "a name is never reduced to nothing"
    );
}

#[test]
fn capture_refuses_leads_matching_by_email_phone_or_company() {
    let (_d, mut s) = store();
    let account = create(
        &mut s,
        Kind::Account,
        &[
            ("name", "Northwind Traders Ltd"),
            ("phones", "+86 755 1234 5678"),
        ],
    );
    let contact = create(
        &mut s,
        Kind::Contact,
        &[("last_name", "王"), ("emails", "wang@xg.cn")],
    );
    let star = create(&mut s, Kind::Account, &[("name", "深圳星光贸易有限公司")]);

    let lead = |fields: &[(&str, &str)]| {
        let mut all = vec![("person_name", "Li Lei")];
        all.extend_from_slice(fields);
        edit(Kind::Lead, &all)
    };
    let dup = |s: &mut Store, e: &Edit| match s.capture_lead(e, false).expect("capture") {
        Captured::Duplicates(m) => m,
        Captured::Created(r) => panic!("created {}", r.id),
    };
    let before = everything(&s);
    let m = dup(&mut s, &lead(&[("email", "WANG@xg.cn")]));
    assert_eq!(
        (m[0].kind, m[0].id, m[0].on),
        (Kind::Contact, contact, "email")
    );
    // 755 1234 5678 is +86 755 1234 5678 without the country code.
    let m = dup(&mut s, &lead(&[("phone", "(755) 1234-5678")]));
    assert_eq!(
        (m[0].kind, m[0].id, m[0].on),
        (Kind::Account, account, "phone")
    );
    let m = dup(
        &mut s,
        &lead(&[("company_name", "northwind traders co., ltd.")]),
    );
    assert_eq!((m[0].id, m[0].on), (account, "company"));
    let m = dup(&mut s, &lead(&[("company_name", "深圳星光贸易")]));
    assert_eq!(m[0].id, star);
    assert_eq!(before, everything(&s), "a refused capture writes nothing");

    let new = lead(&[
        ("email", "li@new.cn"),
        ("phone", "+86 20 8888 0000"),
        ("company_name", "广州新公司"),
    ]);
    let Captured::Created(created) = s.capture_lead(&new, false).expect("capture") else {
        panic!("a new lead must be created");
    };
    // The lead itself now matches a second capture of the same person.
    let m = dup(&mut s, &new);
    assert_eq!((m[0].kind, m[0].id), (Kind::Lead, created.id));
    assert_eq!(m.len(), 1, "one match per record");
    let Captured::Created(_) = s.capture_lead(&new, true).expect("capture") else {
        panic!("allow_duplicate creates anyway");
    };
    assert_eq!(s.count(Kind::Lead, false).expect("count"), 2);
}

#[test]
fn leads_are_assigned_by_source_or_round_robin() {
    let (_d, mut s) = store();
    let u1 = create(&mut s, Kind::User, &[("name", "u1")]);
    let u2 = create(&mut s, Kind::User, &[("name", "u2")]);
    let u3 = create(&mut s, Kind::User, &[("name", "u3"), ("active", "false")]);
    let team = s
        .create(&{
            let mut e = edit(Kind::Team, &[("name", "East")]);
            e.set("members", &format!("{u1},{u2},{u3}")).expect("valid");
            e
        })
        .expect("team")
        .id;
    let leads: Vec<RecordId> = (0..4)
        .map(|i| {
            let source = if i % 2 == 0 { "web_form" } else { "trade_show" };
            create(
                &mut s,
                Kind::Lead,
                &[("person_name", &format!("p{i}")), ("source", source)],
            )
        })
        .collect();
    // u1 already has one open lead, so the first new one goes to u2, then they alternate.
    create(
        &mut s,
        Kind::Lead,
        &[
            ("person_name", "old"),
            ("status", "working"),
            ("owner", &u1.to_string()),
        ],
    );
    let out = s
        .assign_leads(&LeadSelection::Unassigned, &AssignRule::RoundRobin { team })
        .expect("assign");
    let owners: Vec<Option<RecordId>> = out.iter().map(|a| a.owner).collect();
    assert_eq!(
        owners,
        [Some(u2), Some(u1), Some(u2), Some(u1)],
        "u3 is inactive"
    );
    for (lead, owner) in leads.iter().zip(&owners) {
        let r = s.get(*lead).expect("lead");
        assert_eq!(r.get("owner"), owner.map(FieldValue::Ref).as_ref());
        assert_eq!(text(&r, "status"), Some("assigned"));
    }
    assert!(
        s.assign_leads(&LeadSelection::Unassigned, &AssignRule::RoundRobin { team })
            .expect("assign")
            .is_empty(),
        "nothing left unassigned"
    );

    let rule = AssignRule::BySource(BTreeMap::from([("web_form".to_string(), u3)]));
    let out = s
        .assign_leads(&LeadSelection::Ids(leads.clone()), &rule)
        .expect("assign");
    let owners: Vec<Option<RecordId>> = out.iter().map(|a| a.owner).collect();
    assert_eq!(
        owners,
        [Some(u3), None, Some(u3), None],
        "no rule for trade_show"
    );
    assert_eq!(
        s.get(leads[1]).expect("lead").get("owner"),
        Some(&FieldValue::Ref(u1)),
        "a lead without a rule keeps its owner"
    );

    let before = everything(&s);
    let missing = RecordId::new();
    let err = s
        .assign_leads(&LeadSelection::Ids(vec![leads[0], missing]), &rule)
        .expect_err("missing lead");
    assert!(matches!(err, StoreError::NotFound(id) if id == missing));
    let bad_rule = AssignRule::BySource(BTreeMap::from([("carrier_pigeon".to_string(), u1)]));
    let err = s
        .assign_leads(&LeadSelection::Ids(leads.clone()), &bad_rule)
        .expect_err("bad source");
    assert!(err.is_invalid_input(), "{err}");
    assert_eq!(before, everything(&s), "refused assignments write nothing");
}

#[test]
fn qualify_sets_status_rating_and_score() {
    let (_d, mut s) = store();
    let lead = create(&mut s, Kind::Lead, &[("person_name", "李雷")]);
    let r = s
        .qualify_lead(lead, Some("Hot"), Some(80))
        .expect("qualify");
    assert_eq!(text(&r, "status"), Some("qualified"));
    assert_eq!(text(&r, "rating"), Some("hot"));
    assert_eq!(r.get("score"), Some(&FieldValue::Int(80)));
    let history: Vec<&str> = r.history["status"]
        .iter()
        .map(|e| e.value.as_str())
        .collect();
    assert_eq!(history, ["new", "qualified"]);
    let before = everything(&s);
    assert!(
        s.qualify_lead(lead, None, Some(101))
            .expect_err("score")
            .is_invalid_input()
    );
    assert!(s.qualify_lead(lead, Some("lukewarm"), None).is_err());
    assert_eq!(before, everything(&s));
}

#[test]
fn convert_makes_and_links_account_contact_and_opportunity_once() {
    let (_d, mut s) = store();
    let lead = create(
        &mut s,
        Kind::Lead,
        &[
            ("person_name", "王芳"),
            ("company_name", "深圳星光贸易有限公司"),
            ("title", "采购经理"),
            ("email", "wang@xg.cn"),
            ("phone", "+86 755 1234 5678"),
            ("source", "trade_show"),
        ],
    );
    let options = ConvertOptions {
        amount: Some("120000".into()),
        close_date: Some("2027-03-31".into()),
        ..ConvertOptions::default()
    };
    let c = s.convert_lead(lead, &options).expect("convert");
    assert_eq!(c.created.len(), 3);
    let account = s.get(c.account).expect("account");
    assert_eq!(text(&account, "name"), Some("深圳星光贸易有限公司"));
    assert_eq!(text(&account, "lifecycle"), Some("converted"));
    let contact = s.get(c.contact).expect("contact");
    assert_eq!(contact.title(), "王芳");
    assert_eq!(text(&contact, "last_name"), Some("王"));
    assert_eq!(contact.get("account"), Some(&FieldValue::Ref(c.account)));
    let opp = s.get(c.opportunity.expect("an opportunity")).expect("opp");
    assert_eq!(opp.get("account"), Some(&FieldValue::Ref(c.account)));
    assert_eq!(
        opp.get("primary_contact"),
        Some(&FieldValue::Ref(c.contact))
    );
    assert_eq!(
        opp.get("amount"),
        Some(&FieldValue::Amount(Amount(12_000_000)))
    );
    assert_eq!(text(&opp, "lead_source"), Some("trade_show"));
    assert_eq!(text(&opp, "stage"), Some("prospecting"));
    let l = s.get(lead).expect("lead");
    assert_eq!(text(&l, "status"), Some("converted"));
    assert_eq!(
        l.get("converted_account"),
        Some(&FieldValue::Ref(c.account))
    );
    assert_eq!(
        l.get("converted_contact"),
        Some(&FieldValue::Ref(c.contact))
    );
    assert_eq!(
        l.get("converted_opportunity"),
        Some(&FieldValue::Ref(opp.id))
    );

    let before = everything(&s);
    let err = s.convert_lead(lead, &options).expect_err("twice");
    assert!(matches!(err, StoreError::Rejected(_)), "{err}");
    assert!(err.to_string().contains("already converted"), "{err}");
    assert_eq!(before, everything(&s));
}

#[test]
fn convert_can_use_an_existing_account_and_skip_the_opportunity() {
    let (_d, mut s) = store();
    let existing = create(&mut s, Kind::Account, &[("name", "ACME")]);
    let lead = create(
        &mut s,
        Kind::Lead,
        &[
            ("person_name", "Wile E. Coyote"),
            ("company_name", "ACME Corp"),
        ],
    );
    let options = ConvertOptions {
        account: Some(existing),
        no_opportunity: true,
        ..ConvertOptions::default()
    };
    let c = s.convert_lead(lead, &options).expect("convert");
    assert_eq!(c.account, existing);
    assert_eq!(c.opportunity, None);
    assert_eq!(c.created, [(Kind::Contact, c.contact)]);
    let contact = s.get(c.contact).expect("contact");
    assert_eq!(text(&contact, "first_name"), Some("Wile E."));
    assert_eq!(text(&contact, "last_name"), Some("Coyote"));
    assert_eq!(contact.get("account"), Some(&FieldValue::Ref(existing)));
    assert_eq!(s.count(Kind::Account, false).expect("count"), 1);
    assert_eq!(s.count(Kind::Opportunity, false).expect("count"), 0);

    // A bad amount is refused before anything is written.
    let other = create(&mut s, Kind::Lead, &[("person_name", "Road Runner")]);
    let before = everything(&s);
    let bad = ConvertOptions {
        amount: Some("lots".into()),
        ..ConvertOptions::default()
    };
    assert!(
        s.convert_lead(other, &bad)
            .expect_err("amount")
            .is_invalid_input()
    );
    assert_eq!(before, everything(&s));
}

#[test]
fn an_interrupted_conversion_resumes_without_duplicates() {
    let (_d, mut s) = store();
    let lead = create(
        &mut s,
        Kind::Lead,
        &[
            ("person_name", "Ada Lovelace"),
            ("company_name", "Analytical Engines"),
        ],
    );
    // A run killed after making the account (marked) but before linking it from the lead,
    // and after making and linking the contact.
    let account = s
        .create(&{
            let mut e = edit(Kind::Account, &[("name", "Analytical Engines")]);
            e.set(&format!("custom.{CONVERTED_FROM}"), &lead.to_string())
                .expect("valid");
            e
        })
        .expect("account")
        .id;
    let contact = create(&mut s, Kind::Contact, &[("last_name", "Lovelace")]);
    s.edit(
        lead,
        &edit(Kind::Lead, &[("converted_contact", &contact.to_string())]),
    )
    .expect("link");
    let c = s
        .convert_lead(lead, &ConvertOptions::default())
        .expect("resume");
    assert_eq!((c.account, c.contact), (account, contact));
    assert_eq!(c.created.len(), 1, "only the opportunity was missing");
    assert_eq!(s.count(Kind::Account, false).expect("count"), 1);
    assert_eq!(s.count(Kind::Contact, false).expect("count"), 1);
    let l = s.get(lead).expect("lead");
    assert_eq!(l.get("converted_account"), Some(&FieldValue::Ref(account)));
    assert_eq!(text(&l, "status"), Some("converted"));
}

#[test]
fn stages_move_with_default_probability_and_history() {
    let (_d, mut s) = store();
    let opp = create(
        &mut s,
        Kind::Opportunity,
        &[("name", "Renewal"), ("amount", "1000")],
    );
    s.set_clock(Some(at("2026-05-01T09:00:00Z")));
    let r = s.move_stage(opp, "Proposal", None).expect("move");
    assert_eq!(text(&r, "stage"), Some("proposal"));
    assert_eq!(r.get("probability"), Some(&FieldValue::Int(50)));
    assert_eq!(text(&r, "forecast_category"), Some("best_case"));
    let r = s.move_stage(opp, "negotiation", Some(65)).expect("move");
    assert_eq!(r.get("probability"), Some(&FieldValue::Int(65)), "override");
    let history: Vec<(&str, DateTime<Utc>)> = r.history["stage"]
        .iter()
        .map(|e| (e.value.as_str(), e.at))
        .collect();
    assert_eq!(history.len(), 3);
    assert_eq!(history[0].0, "prospecting");
    assert_eq!(history[1], ("proposal", at("2026-05-01T09:00:00Z")));
    assert_eq!(r.history["stage"][2].by, "alice");

    let before = everything(&s);
    assert!(matches!(
        s.move_stage(opp, "won", None).expect_err("unknown"),
        StoreError::Invalid(_)
    ));
    assert!(matches!(
        s.move_stage(opp, "negotiation", None).expect_err("same"),
        StoreError::Rejected(_)
    ));
    assert!(matches!(
        s.move_stage(opp, "closed_won", None).expect_err("closing"),
        StoreError::Rejected(_)
    ));
    assert!(
        s.close_opportunity(
            opp,
            &Outcome::Lost {
                reason: String::new()
            }
        )
        .expect_err("no reason")
        .is_invalid_input()
    );
    assert!(
        s.close_opportunity(
            opp,
            &Outcome::Lost {
                reason: "weather".into()
            }
        )
        .expect_err("bad reason")
        .is_invalid_input()
    );
    assert_eq!(before, everything(&s));

    s.set_clock(Some(at("2026-05-20T15:30:00Z")));
    let r = s
        .close_opportunity(
            opp,
            &Outcome::Lost {
                reason: "competitor".into(),
            },
        )
        .expect("close");
    assert_eq!(text(&r, "stage"), Some("closed_lost"));
    assert_eq!(text(&r, "lost_reason"), Some("competitor"));
    assert_eq!(r.get("probability"), Some(&FieldValue::Int(0)));
    assert_eq!(text(&r, "forecast_category"), Some("omitted"));
    assert_eq!(
        r.get("closed_at"),
        Some(&FieldValue::DateTime(at("2026-05-20T15:30:00Z")))
    );
    let before = everything(&s);
    assert!(matches!(
        s.close_opportunity(opp, &Outcome::Won).expect_err("closed"),
        StoreError::Rejected(_)
    ));
    assert!(matches!(
        s.move_stage(opp, "proposal", None).expect_err("closed"),
        StoreError::Rejected(_)
    ));
    assert_eq!(before, everything(&s));
}

#[test]
fn quote_contract_order() {
    let (_d, mut s) = store();
    let account = create(&mut s, Kind::Account, &[("name", "ACME")]);
    let opp = create(
        &mut s,
        Kind::Opportunity,
        &[
            ("name", "Seats"),
            ("account", &account.to_string()),
            ("currency", "USD"),
        ],
    );
    let seat = create(
        &mut s,
        Kind::Product,
        &[
            ("code", "SEAT"),
            ("name", "Seat licence"),
            ("unit_price", "100.00"),
        ],
    );
    let setup = create(
        &mut s,
        Kind::Product,
        &[("code", "SETUP"), ("name", "Set-up"), ("unit_price", "50")],
    );
    let old = create(
        &mut s,
        Kind::Product,
        &[
            ("code", "OLD"),
            ("name", "Old"),
            ("unit_price", "1"),
            ("active", "false"),
        ],
    );
    let line = |product, qty: &str, discount: &str| QuoteLine {
        product,
        qty: qty.parse().expect("qty"),
        discount: discount.parse().expect("discount"),
    };
    let before = everything(&s);
    assert!(matches!(
        s.create_quote(opp, &[line(old, "1", "0")], None)
            .expect_err("inactive"),
        StoreError::Rejected(_)
    ));
    assert!(s.create_quote(opp, &[line(seat, "0", "0")], None).is_err());
    assert!(
        s.create_quote(opp, &[line(seat, "1", "101")], None)
            .is_err()
    );
    assert!(s.create_quote(opp, &[], None).is_err());
    assert_eq!(before, everything(&s));

    // 3 × 100.00 less 10 % = 270.00; 2 × 50.00 = 100.00; total 370.00.
    let quote = s
        .create_quote(opp, &[line(seat, "3", "10"), line(setup, "2", "0")], None)
        .expect("quote");
    assert_eq!(line_total(&quote), Amount(37_000));
    assert_eq!(quote.get("account"), Some(&FieldValue::Ref(account)));
    assert_eq!(text(&quote, "currency"), Some("USD"));
    assert_eq!(text(&quote, "status"), Some("draft"));
    let Some(FieldValue::LineItems(items)) = quote.get("line_items") else {
        panic!("line items");
    };
    assert_eq!(items[0].description, "Seat licence");
    assert_eq!(items[0].unit_price, Amount(10_000));

    assert!(matches!(
        s.set_quote_status(quote.id, "accepted")
            .expect_err("not sent"),
        StoreError::Rejected(_)
    ));
    assert!(matches!(
        s.contract_from_quote(quote.id, None, None)
            .expect_err("not accepted"),
        StoreError::Rejected(_)
    ));
    s.set_quote_status(quote.id, "sent").expect("send");
    s.set_quote_status(quote.id, "accepted").expect("accept");

    s.set_clock(Some(at("2026-06-15T08:00:00Z")));
    let contract = s
        .contract_from_quote(quote.id, None, None)
        .expect("contract");
    assert_eq!(
        contract.get("amount"),
        Some(&FieldValue::Amount(Amount(37_000)))
    );
    assert_eq!(text(&contract, "status"), Some("pending_approval"));
    assert_eq!(
        contract.get("end_date"),
        Some(&FieldValue::Date(
            NaiveDate::from_ymd_opt(2027, 6, 14).expect("date")
        ))
    );
    assert!(matches!(
        s.contract_from_quote(quote.id, None, None)
            .expect_err("twice"),
        StoreError::Rejected(_)
    ));
    assert!(matches!(
        s.order_from_contract(contract.id)
            .expect_err("not approved"),
        StoreError::Rejected(_)
    ));
    let approved = s.approve_contract(contract.id).expect("approve");
    let me = s.identity().user_id.expect("me");
    assert_eq!(approved.get("approver"), Some(&FieldValue::Ref(me)));
    assert_eq!(
        approved.get("approved_at"),
        Some(&FieldValue::DateTime(at("2026-06-15T08:00:00Z")))
    );
    assert_eq!(text(&approved, "status"), Some("active"));
    let history: Vec<&str> = approved.history["status"]
        .iter()
        .map(|e| e.value.as_str())
        .collect();
    assert_eq!(history, ["pending_approval", "active"]);
    assert!(s.approve_contract(contract.id).is_err(), "approved once");

    let order = s.order_from_contract(contract.id).expect("order");
    assert_eq!(order.get("line_items"), quote.get("line_items"));
    assert_eq!(order.get("quote"), Some(&FieldValue::Ref(quote.id)));
    assert_eq!(order.get("account"), Some(&FieldValue::Ref(account)));
    assert_eq!(text(&order, "status"), Some("confirmed"));
    assert_eq!(line_total(&order), Amount(37_000));
    assert!(
        s.order_from_contract(contract.id).is_err(),
        "one order per contract"
    );
}

#[test]
fn reminders_are_computed_from_due_times_and_offsets() {
    let (_d, mut s) = store();
    let account = create(&mut s, Kind::Account, &[("name", "ACME")]);
    let log = |s: &mut Store, kind: &str, subject: &str, fields: &[(&str, &str)]| {
        s.log_activity(kind, subject, &[account], &edit(Kind::Activity, fields))
            .expect("log")
    };
    let now = at("2026-03-04T12:00:00Z");
    s.set_clock(Some(now));
    // Due yesterday, still open: overdue.
    let late = log(&mut s, "task", "late", &[("due", "2026-03-03T09:00:00Z")]);
    assert_eq!(text(&late, "status"), Some("not_started"));
    assert_eq!(
        late.get("targets"),
        Some(&FieldValue::Set([account.to_string()].into()))
    );
    // Due in 30 minutes with a 60-minute reminder: the reminder has fired.
    let due = log(
        &mut s,
        "call",
        "call back",
        &[
            ("start", "2026-03-04T12:30:00Z"),
            ("reminder_minutes", "60"),
        ],
    );
    // In three days, reminder a day before: fires within a week.
    let soon = log(
        &mut s,
        "meeting",
        "demo",
        &[
            ("start", "2026-03-07T12:00:00Z"),
            ("reminder_minutes", "1440"),
        ],
    );
    // In twenty days: outside a seven-day window.
    log(&mut s, "task", "later", &[("due", "2026-03-24T12:00:00Z")]);
    // Done, or no time: never a reminder.
    let done = log(&mut s, "task", "done", &[("due", "2026-03-01T09:00:00Z")]);
    s.complete_activity(done.id, Some("sent"))
        .expect("complete");
    log(&mut s, "note", "a note", &[]);

    let r = s
        .reminders(now, Duration::days(7), None)
        .expect("reminders");
    let got: Vec<(&str, ReminderState)> = r.iter().map(|r| (r.subject.as_str(), r.state)).collect();
    assert_eq!(
        got,
        [
            ("late", ReminderState::Overdue),
            ("call back", ReminderState::Due),
            ("demo", ReminderState::Upcoming),
        ]
    );
    assert_eq!(r[1].id, due.id);
    assert_eq!(r[2].id, soon.id);
    assert_eq!(r[2].remind_at, at("2026-03-06T12:00:00Z"));
    let none = s
        .reminders(now, Duration::days(1), Some(RecordId::new()))
        .expect("reminders");
    assert!(none.is_empty(), "someone else's activities are not mine");
    assert!(
        s.complete_activity(done.id, None).is_err(),
        "completing twice is refused"
    );
}

#[test]
fn birthdays_wrap_the_year_and_handle_29_february() {
    let date = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").expect("date");
    assert_eq!(
        next_birthday(date("1992-02-29"), date("2027-02-20")),
        Some(date("2027-02-28"))
    );
    assert_eq!(
        next_birthday(date("1992-02-29"), date("2028-02-20")),
        Some(date("2028-02-29"))
    );
    assert_eq!(
        next_birthday(date("1990-01-05"), date("2026-12-20")),
        Some(date("2027-01-05"))
    );
    assert_eq!(
        next_birthday(date("1990-12-20"), date("2026-12-20")),
        Some(date("2026-12-20"))
    );

    let (_d, mut s) = store();
    for (last, birthday) in [
        ("今天", "1980-12-20"),
        ("New Year", "1990-01-05"),
        ("Yesterday", "1985-12-19"),
        ("Far", "1970-03-01"),
    ] {
        create(
            &mut s,
            Kind::Contact,
            &[("last_name", last), ("birthday", birthday)],
        );
    }
    create(&mut s, Kind::Contact, &[("last_name", "No birthday")]);
    let b = s.birthdays(date("2026-12-20"), 30).expect("birthdays");
    let got: Vec<(&str, i64, Option<i32>)> = b
        .iter()
        .map(|b| (b.name.as_str(), b.days_until, b.turning))
        .collect();
    assert_eq!(got, [("今天", 0, Some(46)), ("New Year", 16, Some(37))]);
}
