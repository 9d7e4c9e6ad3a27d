//! Workflow commands of the sales area: `crm lead capture|assign|qualify|convert`,
//! `crm opportunity stage|close`, `crm quote create|review|send|accept|reject`,
//! `crm contract from-quote|approve`, `crm order from-contract`, `crm activity log|complete`,
//! and `crm reminders`, `crm birthdays`.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use clap::{Arg, ArgAction, ArgMatches, Command};
use crm_model::{Edit, Kind, Record, RecordId};
use crm_store::flows::sales::activities::{Birthday, Reminder};
use crm_store::flows::sales::deals::Outcome;
use crm_store::flows::sales::leads::{
    AssignRule, Captured, ConvertOptions, DuplicateMatch, LeadSelection,
};
use crm_store::flows::sales::orders::{QuoteLine, line_total};
use crm_store::{Filter, ListQuery, Store};
use serde_json::json;

use crate::commands::{open, parse_id};
use crate::exit::Usage;
use crate::output;

fn id_arg(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).required(true).value_name("ID").help(help)
}

fn opt(name: &'static str, value: &'static str, help: &'static str) -> Arg {
    Arg::new(name).long(name).value_name(value).help(help)
}

fn repeated(name: &'static str, value: &'static str, help: &'static str) -> Arg {
    opt(name, value, help).action(ArgAction::Append)
}

fn flag(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .action(ArgAction::SetTrue)
        .help(help)
}

pub(super) fn verbs(kind: Kind) -> Vec<Command> {
    match kind {
        Kind::Lead => vec![
            Command::new("capture")
                .about("Create a lead after checking for duplicates (email, phone, company) among leads, contacts and accounts")
                .arg(opt("person-name", "TEXT", "The person (required)").required(true))
                .arg(opt("company-name", "TEXT", "The company"))
                .arg(opt("title", "TEXT", "Job title"))
                .arg(opt("email", "EMAIL", "Email address"))
                .arg(opt("phone", "PHONE", "Phone number"))
                .arg(opt("source", "SOURCE", "web_form, social, trade_show, referral, campaign, import, cold_call, other"))
                .arg(opt("campaign", "ID", "The campaign it came from"))
                .arg(opt("rating", "RATING", "hot, warm or cold"))
                .arg(opt("score", "N", "0 to 100"))
                .arg(opt("description", "TEXT", "What is known about it"))
                .arg(opt("owner", "ID", "Owner (a user id) [default: you]"))
                .arg(repeated("set", "FIELD=VALUE", "Set any other field"))
                .arg(repeated("tag", "TAG", "Add a tag"))
                .arg(flag("allow-duplicate", "Create it even when it matches existing records")),
            Command::new("assign")
                .about("Give leads an owner by rules: by source, or round robin over a team's active members")
                .arg(Arg::new("ids").value_name("ID").num_args(0..).help("Leads to assign"))
                .arg(flag("unassigned", "Every lead still in status new").conflicts_with("ids"))
                .arg(opt("by", "RULE", "Assign by this lead field").value_parser(["source"]))
                .arg(repeated("rule", "SOURCE=USER", "With --by source: leads of SOURCE go to USER (id or name)"))
                .arg(flag("round-robin", "Spread the leads over a team, fewest open leads first").conflicts_with_all(["by", "rule"]))
                .arg(opt("team", "TEAM", "With --round-robin: the team (id or name)")),
            Command::new("qualify")
                .about("Mark a lead qualified, with its rating and score")
                .arg(id_arg("id", "The lead"))
                .arg(opt("rating", "RATING", "hot, warm or cold"))
                .arg(opt("score", "N", "0 to 100").value_parser(clap::value_parser!(i64))),
            Command::new("convert")
                .about("Turn a lead into an account, a contact and an opportunity, linked; resumable if interrupted")
                .arg(id_arg("id", "The lead"))
                .arg(opt("account", "ID", "Use this account instead of creating one"))
                .arg(opt("contact", "ID", "Use this contact instead of creating one"))
                .arg(flag("no-opportunity", "Do not create an opportunity"))
                .arg(opt("amount", "AMOUNT", "The opportunity's amount"))
                .arg(opt("opportunity-name", "TEXT", "The opportunity's name [default: the company]"))
                .arg(opt("close-date", "YYYY-MM-DD", "The opportunity's expected close date")),
        ],
        Kind::Opportunity => vec![
            Command::new("stage")
                .about("Move an open opportunity to another stage; probability follows the stage unless given")
                .arg(id_arg("id", "The opportunity"))
                .arg(Arg::new("stage").required(true).value_name("STAGE").help("prospecting, qualification, proposal or negotiation"))
                .arg(opt("probability", "N", "Override the stage's default probability (0-100)").value_parser(clap::value_parser!(i64))),
            Command::new("close")
                .about("Close an opportunity as won, or as lost with a reason")
                .arg(id_arg("id", "The opportunity"))
                .arg(flag("won", "Closed won"))
                .arg(flag("lost", "Closed lost (needs --reason)").conflicts_with("won"))
                .arg(opt("reason", "REASON", "price, product_fit, competitor, timing, no_budget, no_decision, other").conflicts_with("won")),
        ],
        Kind::Quote => {
            let mut verbs = vec![
                Command::new("create")
                    .about("Create a draft quote for an opportunity, priced from the products")
                    .arg(opt("opportunity", "ID", "The opportunity").required(true))
                    .arg(repeated("item", "PRODUCT_ID:QTY[:DISCOUNT%]", "A line item (repeatable)").required(true))
                    .arg(opt("valid-until", "YYYY-MM-DD", "Last day the quote holds")),
            ];
            for (verb, about) in [
                ("review", "Put a draft quote in review"),
                ("send", "Mark a quote sent to the customer"),
                ("accept", "Mark a sent quote accepted"),
                ("reject", "Mark a sent quote rejected"),
            ] {
                verbs.push(Command::new(verb).about(about).arg(id_arg("id", "The quote")));
            }
            verbs
        }
        Kind::Contract => vec![
            Command::new("from-quote")
                .about("Make a contract (pending approval) from an accepted quote")
                .arg(id_arg("quote", "The accepted quote"))
                .arg(opt("start", "YYYY-MM-DD", "Start date [default: today]"))
                .arg(opt("end", "YYYY-MM-DD", "End date [default: a year after the start, less a day]")),
            Command::new("approve")
                .about("Approve a contract: you become the approver; it becomes active")
                .arg(id_arg("id", "The contract")),
        ],
        Kind::Order => vec![
            Command::new("from-contract")
                .about("Make a confirmed order from an active contract, with its quote's line items")
                .arg(id_arg("contract", "The active contract")),
        ],
        Kind::Activity => vec![
            Command::new("log")
                .about("Log a call, email, meeting, task or note about records")
                .arg(Arg::new("type").required(true).value_name("KIND").help("call, email, meeting, task or note"))
                .arg(opt("subject", "TEXT", "What it is about (required)").required(true))
                .arg(repeated("about", "ID", "A record it is about (repeatable)"))
                .arg(opt("due", "TIME", "Due time (tasks)"))
                .arg(opt("start", "TIME", "Start time (calls, meetings)"))
                .arg(opt("duration", "MINUTES", "Duration in minutes"))
                .arg(opt("reminder", "DURATION", "Remind this long before the due or start time: 30m, 2h, 1d"))
                .arg(opt("body", "TEXT", "Details"))
                .arg(opt("assignee", "ID", "Who does it [default: you]"))
                .arg(repeated("set", "FIELD=VALUE", "Set any other field")),
            Command::new("complete")
                .about("Mark a task completed, or a call or meeting held")
                .arg(id_arg("id", "The activity"))
                .arg(opt("outcome", "TEXT", "How it went")),
        ],
        _ => Vec::new(),
    }
}

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command::new("reminders")
            .about("Due and overdue activities and reminders coming up, computed on this device (works offline)")
            .arg(opt("within", "DURATION", "Also reminders firing within this time: 30m, 12h, 7d, 2w").default_value("7d"))
            .arg(flag("all", "Everyone's, not only yours"))
            .arg(opt("at", "TIME", "As of this time instead of now")),
        Command::new("birthdays")
            .about("Contacts' birthdays coming up (29 February counts as 28 February in common years)")
            .arg(opt("within", "DURATION", "How far ahead: 30d, 2w").default_value("30d"))
            .arg(opt("today", "YYYY-MM-DD", "As of this day instead of today")),
    ]
}

pub(super) fn run_verb(kind: Kind, verb: &str, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    Some(match (kind, verb) {
        (Kind::Lead, "capture") => capture(m, json),
        (Kind::Lead, "assign") => assign(m, json),
        (Kind::Lead, "qualify") => qualify(m, json),
        (Kind::Lead, "convert") => convert(m, json),
        (Kind::Opportunity, "stage") => stage(m, json),
        (Kind::Opportunity, "close") => close(m, json),
        (Kind::Quote, "create") => quote_create(m, json),
        (Kind::Quote, "review" | "send" | "accept" | "reject") => {
            let status = match verb {
                "review" => "in_review",
                "send" => "sent",
                "accept" => "accepted",
                _ => "rejected",
            };
            record_step(m, json, |s, id| Ok(s.set_quote_status(id, status)?))
        }
        (Kind::Contract, "from-quote") => from_quote(m, json),
        (Kind::Contract, "approve") => record_step(m, json, |s, id| Ok(s.approve_contract(id)?)),
        (Kind::Order, "from-contract") => {
            let run = || -> Result<()> {
                let contract = parse_id(m, "contract")?;
                let mut store = open(m)?;
                let order = store.order_from_contract(contract)?;
                print_record(&store, &order, json)
            };
            run()
        }
        (Kind::Activity, "log") => log(m, json),
        (Kind::Activity, "complete") => record_step(m, json, |s, id| {
            Ok(s.complete_activity(id, m.get_one::<String>("outcome").map(String::as_str))?)
        }),
        _ => return None,
    })
}

pub(super) fn run_command(name: &str, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    Some(match name {
        "reminders" => reminders(m, json),
        "birthdays" => birthdays(m, json),
        _ => return None,
    })
}

/// Prints a record as `--json` or a field table.
fn print_record(store: &Store, record: &Record, json: bool) -> Result<()> {
    if json {
        output::json(&record.to_json());
    } else {
        let titles = store.titles(&output::referenced(record))?;
        output::record(record, &titles);
    }
    Ok(())
}

/// A step on the record named by the `id` argument that returns the changed record.
fn record_step(
    m: &ArgMatches,
    json: bool,
    step: impl FnOnce(&mut Store, RecordId) -> Result<Record>,
) -> Result<()> {
    let id = parse_id(m, "id")?;
    let mut store = open(m)?;
    let record = step(&mut store, id)?;
    print_record(&store, &record, json)
}

/// `30m`, `12h`, `7d`, `2w`; a bare number is days.
fn duration(m: &ArgMatches, arg: &str) -> Result<Duration> {
    let Some(raw) = m.get_one::<String>(arg) else {
        return Ok(Duration::zero());
    };
    let bad = || {
        Usage(format!(
            "--{arg} {raw:?}: expected a duration like 30m, 12h, 7d or 2w"
        ))
    };
    let t = raw.trim();
    let (number, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, "d"),
    };
    let n: i64 = number.parse().map_err(|_| bad())?;
    if n > 100_000 {
        return Err(bad().into());
    }
    Ok(match unit {
        "m" | "min" => Duration::minutes(n),
        "h" => Duration::hours(n),
        "d" => Duration::days(n),
        "w" => Duration::weeks(n),
        _ => return Err(bad().into()),
    })
}

fn date(m: &ArgMatches, arg: &str) -> Result<Option<NaiveDate>> {
    m.get_one::<String>(arg)
        .map(|s| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
                Usage(format!("--{arg} {s:?}: expected a date like 2026-11-30")).into()
            })
        })
        .transpose()
}

/// A user or team given by id or by exact name.
fn lookup(store: &Store, kind: Kind, given: &str) -> Result<RecordId> {
    if let Ok(id) = given.parse::<RecordId>() {
        return Ok(id);
    }
    let mut q = ListQuery::new(kind);
    q.filters.push(Filter {
        field: "name".into(),
        cmp: crm_store::Cmp::Eq,
        value: given.to_string(),
    });
    q.limit = 2;
    let rows = store.list(&q)?;
    match rows.as_slice() {
        [one] => Ok(one.id),
        [] => Err(Usage(format!(
            "no {kind} named {given:?}; give its id or exact name"
        ))
        .into()),
        _ => Err(Usage(format!("several {kind}s are named {given:?}; give the id")).into()),
    }
}

fn capture(m: &ArgMatches, json: bool) -> Result<()> {
    let mut edit = Edit::new(Kind::Lead);
    for field in [
        "person-name",
        "company-name",
        "title",
        "email",
        "phone",
        "source",
        "campaign",
        "rating",
        "score",
        "description",
        "owner",
    ] {
        if let Some(v) = m.get_one::<String>(field) {
            edit.set(&field.replace('-', "_"), v)?;
        }
    }
    for s in m.get_many::<String>("set").into_iter().flatten() {
        edit.set_assignment(s)?;
    }
    for t in m.get_many::<String>("tag").into_iter().flatten() {
        edit.tag(t)?;
    }
    let mut store = open(m)?;
    match store.capture_lead(&edit, m.get_flag("allow-duplicate"))? {
        Captured::Created(record) => {
            if json {
                output::json(&record.to_json());
            } else {
                println!("{}", record.id);
            }
            Ok(())
        }
        Captured::Duplicates(matches) => Err(Usage(format!(
            "not captured: the lead matches {}; pass --allow-duplicate to capture it anyway",
            describe_matches(&matches)
        ))
        .into()),
    }
}

/// The matches on one line: the first five, then how many more.
fn describe_matches(matches: &[DuplicateMatch]) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = matches
        .iter()
        .take(SHOWN)
        .map(|d| {
            format!(
                "{} {} ({}) by {} {}",
                d.kind,
                output::one_line(&d.title, 40),
                d.id,
                d.on,
                output::one_line(&d.value, 40)
            )
        })
        .collect();
    if matches.len() > SHOWN {
        parts.push(format!("and {} more", matches.len() - SHOWN));
    }
    parts.join("; ")
}

fn assign(m: &ArgMatches, json: bool) -> Result<()> {
    let selection = if m.get_flag("unassigned") {
        LeadSelection::Unassigned
    } else {
        let ids = m
            .get_many::<String>("ids")
            .into_iter()
            .flatten()
            .map(|s| s.parse::<RecordId>())
            .collect::<Result<Vec<_>, _>>()?;
        if ids.is_empty() {
            return Err(Usage("which leads? give their ids or --unassigned".into()).into());
        }
        LeadSelection::Ids(ids)
    };
    let mut store = open(m)?;
    let rules: Vec<&String> = m.get_many::<String>("rule").into_iter().flatten().collect();
    let rule = if m.get_flag("round-robin") {
        let team = m
            .get_one::<String>("team")
            .ok_or_else(|| Usage("--round-robin needs --team TEAM".into()))?;
        AssignRule::RoundRobin {
            team: lookup(&store, Kind::Team, team)?,
        }
    } else if !rules.is_empty() {
        let mut map = BTreeMap::new();
        for rule in rules {
            let (source, user) = rule.split_once('=').ok_or_else(|| {
                Usage(format!(
                    "--rule {rule:?}: expected SOURCE=USER, e.g. web_form=alice"
                ))
            })?;
            map.insert(
                source.trim().to_string(),
                lookup(&store, Kind::User, user.trim())?,
            );
        }
        AssignRule::BySource(map)
    } else {
        return Err(Usage(
            "how? give --by source --rule SOURCE=USER…, or --round-robin --team TEAM".into(),
        )
        .into());
    };
    let out = store.assign_leads(&selection, &rule)?;
    if json {
        output::json(&json!(out));
        return Ok(());
    }
    let owners: Vec<RecordId> = out.iter().filter_map(|a| a.owner).collect();
    let titles = store.titles(&owners)?;
    output::table(
        &["lead", "title", "owner"],
        out.iter()
            .map(|a| {
                vec![
                    a.lead.to_string(),
                    output::one_line(&a.title, 40),
                    a.owner.map_or_else(
                        || "(no rule; unchanged)".to_string(),
                        |o| output::reference(&o.to_string(), &titles),
                    ),
                ]
            })
            .collect(),
    );
    Ok(())
}

fn qualify(m: &ArgMatches, json: bool) -> Result<()> {
    let rating = m.get_one::<String>("rating").map(String::as_str);
    let score = m.get_one::<i64>("score").copied();
    record_step(m, json, |s, id| Ok(s.qualify_lead(id, rating, score)?))
}

fn convert(m: &ArgMatches, json: bool) -> Result<()> {
    let id = parse_id(m, "id")?;
    let optional_id = |arg: &str| -> Result<Option<RecordId>> {
        m.get_one::<String>(arg)
            .map(|s| s.parse::<RecordId>().map_err(Into::into))
            .transpose()
    };
    let options = ConvertOptions {
        account: optional_id("account")?,
        contact: optional_id("contact")?,
        no_opportunity: m.get_flag("no-opportunity"),
        opportunity_name: m.get_one::<String>("opportunity-name").cloned(),
        amount: m.get_one::<String>("amount").cloned(),
        close_date: m.get_one::<String>("close-date").cloned(),
    };
    let mut store = open(m)?;
    let c = store
        .convert_lead(id, &options)
        .with_context(|| format!("converting lead {id}"))?;
    if json {
        output::json(&json!({
            "lead": c.lead,
            "account": c.account,
            "contact": c.contact,
            "opportunity": c.opportunity,
            "created": c.created.iter().map(|(k, id)| json!({"kind": k, "id": id})).collect::<Vec<_>>(),
        }));
        return Ok(());
    }
    let mut ids = vec![c.account, c.contact];
    ids.extend(c.opportunity);
    let titles = store.titles(&ids)?;
    let made = |id: RecordId| {
        if c.created.iter().any(|(_, x)| *x == id) {
            "created"
        } else {
            "existing"
        }
    };
    let mut rows = vec![
        vec![
            "account".to_string(),
            output::reference(&c.account.to_string(), &titles),
            made(c.account).into(),
        ],
        vec![
            "contact".to_string(),
            output::reference(&c.contact.to_string(), &titles),
            made(c.contact).into(),
        ],
    ];
    if let Some(opp) = c.opportunity {
        rows.push(vec![
            "opportunity".into(),
            output::reference(&opp.to_string(), &titles),
            made(opp).into(),
        ]);
    }
    output::table(&["record", "title", ""], rows);
    println!("lead {id} converted");
    Ok(())
}

fn stage(m: &ArgMatches, json: bool) -> Result<()> {
    let stage = m
        .get_one::<String>("stage")
        .ok_or_else(|| Usage("which stage?".into()))?
        .clone();
    let probability = m.get_one::<i64>("probability").copied();
    record_step(m, json, |s, id| {
        Ok(s.move_stage(id, &stage, probability)?)
    })
}

fn close(m: &ArgMatches, json: bool) -> Result<()> {
    let outcome = match (m.get_flag("won"), m.get_flag("lost")) {
        (true, _) => Outcome::Won,
        (false, true) => Outcome::Lost {
            reason: m
                .get_one::<String>("reason")
                .ok_or_else(|| {
                    Usage("closing lost needs --reason (price, product_fit, competitor, timing, no_budget, no_decision, other)".into())
                })?
                .clone(),
        },
        (false, false) => return Err(Usage("give --won, or --lost --reason REASON".into()).into()),
    };
    record_step(m, json, |s, id| Ok(s.close_opportunity(id, &outcome)?))
}

fn quote_create(m: &ArgMatches, json: bool) -> Result<()> {
    let opportunity: RecordId = m
        .get_one::<String>("opportunity")
        .ok_or_else(|| Usage("--opportunity is required".into()))?
        .parse()?;
    let mut lines = Vec::new();
    for item in m.get_many::<String>("item").into_iter().flatten() {
        let bad = || {
            Usage(format!(
                "--item {item:?}: expected PRODUCT_ID:QTY or PRODUCT_ID:QTY:DISCOUNT_PERCENT"
            ))
        };
        let parts: Vec<&str> = item.split(':').map(str::trim).collect();
        let (product, qty, discount) = match parts.as_slice() {
            [p, q] => (*p, *q, "0"),
            [p, q, d] => (*p, *q, d.trim_end_matches('%')),
            _ => return Err(bad().into()),
        };
        lines.push(QuoteLine {
            product: product.parse()?,
            qty: qty.parse().map_err(|_| bad())?,
            discount: discount.parse().map_err(|_| bad())?,
        });
    }
    let valid_until = date(m, "valid-until")?;
    let mut store = open(m)?;
    let quote = store.create_quote(opportunity, &lines, valid_until)?;
    if json {
        output::json(&quote.to_json());
    } else {
        println!("{}", quote.id);
        println!("total {}", line_total(&quote));
    }
    Ok(())
}

fn from_quote(m: &ArgMatches, json: bool) -> Result<()> {
    let quote = parse_id(m, "quote")?;
    let (start, end) = (date(m, "start")?, date(m, "end")?);
    let mut store = open(m)?;
    let contract = store.contract_from_quote(quote, start, end)?;
    print_record(&store, &contract, json)
}

fn log(m: &ArgMatches, json: bool) -> Result<()> {
    let kind = m
        .get_one::<String>("type")
        .ok_or_else(|| Usage("which kind of activity?".into()))?;
    let subject = m
        .get_one::<String>("subject")
        .ok_or_else(|| Usage("--subject is required".into()))?;
    let about = m
        .get_many::<String>("about")
        .into_iter()
        .flatten()
        .map(|s| s.parse::<RecordId>())
        .collect::<Result<Vec<_>, _>>()?;
    let mut fields = Edit::new(Kind::Activity);
    for (arg, field) in [
        ("due", "due"),
        ("start", "start"),
        ("duration", "duration_minutes"),
        ("body", "body"),
        ("assignee", "assignee"),
    ] {
        if let Some(v) = m.get_one::<String>(arg) {
            fields.set(field, v)?;
        }
    }
    if m.get_one::<String>("reminder").is_some() {
        let minutes = duration(m, "reminder")?.num_minutes();
        fields.set("reminder_minutes", &minutes.to_string())?;
    }
    for s in m.get_many::<String>("set").into_iter().flatten() {
        fields.set_assignment(s)?;
    }
    let mut store = open(m)?;
    let record = store.log_activity(kind, subject, &about, &fields)?;
    if json {
        output::json(&record.to_json());
    } else {
        println!("{}", record.id);
    }
    Ok(())
}

fn reminders(m: &ArgMatches, json: bool) -> Result<()> {
    let within = duration(m, "within")?;
    let now = match m.get_one::<String>("at") {
        Some(t) => DateTime::parse_from_rfc3339(t.trim())
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| {
                Usage(format!(
                    "--at {t:?}: expected a time like 2026-05-01T09:30:00Z"
                ))
            })?,
        None => Utc::now(),
    };
    let store = open(m)?;
    let user = if m.get_flag("all") {
        None
    } else {
        store.identity().user_id
    };
    let list: Vec<Reminder> = store.reminders(now, within, user)?;
    if json {
        output::json(&json!(list));
        return Ok(());
    }
    if list.is_empty() {
        println!("nothing due");
        return Ok(());
    }
    output::table(
        &["state", "kind", "subject", "at", "remind at", "id"],
        list.iter()
            .map(|r| {
                vec![
                    format!("{:?}", r.state).to_lowercase(),
                    r.kind.clone(),
                    output::one_line(&r.subject, 40),
                    crm_model::format_time(&r.at),
                    crm_model::format_time(&r.remind_at),
                    r.id.to_string(),
                ]
            })
            .collect(),
    );
    Ok(())
}

fn birthdays(m: &ArgMatches, json: bool) -> Result<()> {
    let within = duration(m, "within")?.num_days();
    let today = date(m, "today")?.unwrap_or_else(|| Utc::now().date_naive());
    let store = open(m)?;
    let list: Vec<Birthday> = store.birthdays(today, within)?;
    if json {
        output::json(&json!(list));
        return Ok(());
    }
    if list.is_empty() {
        println!("no birthdays in the next {within} days");
        return Ok(());
    }
    let accounts: Vec<RecordId> = list.iter().filter_map(|b| b.account).collect();
    let titles = store.titles(&accounts)?;
    output::table(
        &["in days", "date", "name", "turning", "account", "contact"],
        list.iter()
            .map(|b| {
                vec![
                    b.days_until.to_string(),
                    b.next.to_string(),
                    output::one_line(&b.name, 30),
                    b.turning.map(|t| t.to_string()).unwrap_or_default(),
                    b.account
                        .map(|a| output::reference(&a.to_string(), &titles))
                        .unwrap_or_default(),
                    b.contact.to_string(),
                ]
            })
            .collect(),
    );
    Ok(())
}
