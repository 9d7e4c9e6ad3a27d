//! Workflow commands of the service, marketing and customer areas:
//!
//! - `crm ticket assign|respond|resolve|rate|close|sla` and `crm sla [set]`;
//! - `crm campaign start|complete|cancel|add-member|member-status`, `crm survey respond`;
//! - `crm account lifecycle|relate` and `crm account show ID --full`.
//!
//! Each verb is one call of a crm-store workflow function; the store checks the records'
//! state, so a refused step exits 2 with the reason and writes nothing.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Arg, ArgAction, ArgMatches, Command};
use crm_model::{Kind, Record, RecordId};
use crm_store::Store;
use crm_store::flows::sla::{self, SlaPolicy, TicketSla, format_duration, parse_duration};
use serde_json::{Value as Json, json};

use crate::commands::open;
use crate::exit::Usage;
use crate::output;

fn id_arg(name: &'static str, help: &'static str) -> Arg {
    Arg::new(name).required(true).value_name("ID").help(help)
}

fn ticket_arg() -> Arg {
    id_arg("id", "The ticket's id or number (T-laptop-3)")
}

pub(super) fn verbs(kind: Kind) -> Vec<Command> {
    match kind {
        Kind::Ticket => vec![
            Command::new("assign")
                .about("Assign an open ticket to a user (a new ticket becomes assigned)")
                .arg(ticket_arg())
                .arg(Arg::new("to").long("to").required(true).value_name("USER_ID"))
                .arg(Arg::new("team").long("team").value_name("TEAM_ID")),
            Command::new("respond")
                .about("Record a response to the customer: stops the first-response clock once; status in_progress")
                .arg(ticket_arg())
                .arg(Arg::new("note").long("note").value_name("TEXT").help("Appended to the ticket's notes")),
            Command::new("resolve")
                .about("Resolve an open ticket, linking the knowledge articles that solved it")
                .arg(ticket_arg())
                .arg(Arg::new("resolution").long("resolution").required(true).value_name("TEXT"))
                .arg(
                    Arg::new("article")
                        .long("article")
                        .value_name("ARTICLE_ID")
                        .action(ArgAction::Append)
                        .help("A knowledge article (repeatable)"),
                ),
            Command::new("rate")
                .about("Record the customer's satisfaction (1–5) with a resolved or closed ticket")
                .arg(ticket_arg())
                .arg(
                    Arg::new("score")
                        .long("score")
                        .required(true)
                        .value_name("1-5")
                        .value_parser(clap::value_parser!(i64)),
                )
                .arg(Arg::new("comment").long("comment").value_name("TEXT")),
            Command::new("close")
                .about("Close a resolved ticket")
                .arg(ticket_arg()),
            Command::new("sla")
                .about("Open tickets with their SLA clocks (due times and breaches, computed now)")
                .arg(
                    Arg::new("breached")
                        .long("breached")
                        .action(ArgAction::SetTrue)
                        .help("Only tickets past a target"),
                )
                .arg(
                    Arg::new("all")
                        .long("all")
                        .action(ArgAction::SetTrue)
                        .help("Also resolved and closed tickets (stopped clocks)"),
                ),
        ],
        Kind::Campaign => {
            let mut v: Vec<Command> = [
                ("start", "Start a planned campaign (status active; start date today if unset)"),
                ("complete", "Complete an active campaign (end date today if unset)"),
                ("cancel", "Cancel a planned or active campaign"),
            ]
            .into_iter()
            .map(|(name, about)| {
                Command::new(name)
                    .about(about)
                    .arg(id_arg("id", "The campaign"))
            })
            .collect();
            v.push(
                Command::new("add-member")
                    .about("Add leads or contacts to a campaign (refuses duplicates; all or nothing)")
                    .arg(id_arg("campaign", "The campaign"))
                    .arg(
                        Arg::new("members")
                            .required(true)
                            .num_args(1..)
                            .value_name("LEAD_OR_CONTACT_ID"),
                    )
                    .arg(
                        Arg::new("status")
                            .long("status")
                            .value_name("STATUS")
                            .help("targeted (default), sent, opened, responded, converted, opted_out"),
                    ),
            );
            v.push(
                Command::new("member-status")
                    .about("Set a campaign member's response status (responded stamps responded_at)")
                    .arg(id_arg("member", "The campaign-member record"))
                    .arg(Arg::new("status").required(true).value_name("STATUS")),
            );
            v
        }
        Kind::Survey => vec![
            Command::new("respond")
                .about("Record one response to a survey")
                .arg(id_arg("survey", "The survey"))
                .arg(Arg::new("respondent").long("respondent").value_name("CONTACT_OR_LEAD_ID"))
                .arg(
                    Arg::new("score")
                        .long("score")
                        .value_name("N")
                        .allow_negative_numbers(true)
                        .value_parser(clap::value_parser!(i64))
                        .help("1–5 for CSAT, 0–10 for NPS"),
                )
                .arg(
                    Arg::new("answer")
                        .long("answer")
                        .value_name("QUESTION=ANSWER")
                        .action(ArgAction::Append),
                )
                .arg(Arg::new("ticket").long("ticket").value_name("TICKET_ID")),
        ],
        Kind::Account => vec![
            Command::new("lifecycle")
                .about("Move an account to a lifecycle stage (the history is kept)")
                .arg(id_arg("id", "The account"))
                .arg(
                    Arg::new("stage")
                        .required(true)
                        .value_name("STAGE")
                        .help("prospect, contacted, converted, active, loyal or churned"),
                ),
            Command::new("relate")
                .about("Relate an account to another (subsidiary_of also sets its parent)")
                .arg(id_arg("id", "The account"))
                .args(RELATIONS.iter().map(|(flag, _)| {
                    Arg::new(*flag)
                        .long(*flag)
                        .value_name("OTHER_ID")
                        .conflicts_with_all(RELATIONS.iter().map(|(f, _)| *f).filter(|f| f != flag))
                }))
                .group(
                    clap::ArgGroup::new("relation")
                        .args(RELATIONS.iter().map(|(f, _)| *f))
                        .required(true),
                )
                .arg(Arg::new("note").long("note").value_name("TEXT")),
        ],
        _ => Vec::new(),
    }
}

const RELATIONS: &[(&str, &str)] = &[
    ("subsidiary-of", "subsidiary_of"),
    ("partner-of", "partner_of"),
    ("distributor-of", "distributor_of"),
    ("reseller-of", "reseller_of"),
];

pub(super) fn commands() -> Vec<Command> {
    vec![
        Command::new("sla")
            .about("The SLA policy: first-response and resolution targets by ticket priority")
            .subcommand(
                Command::new("set")
                    .about("Change the targets of one priority (a workspace setting that syncs)")
                    .arg(
                        Arg::new("priority")
                            .required(true)
                            .value_name("PRIORITY")
                            .help("urgent, high, normal or low"),
                    )
                    .arg(
                        Arg::new("first-response")
                            .long("first-response")
                            .value_name("DURATION")
                            .help("e.g. 30m, 2h, 1d"),
                    )
                    .arg(
                        Arg::new("resolution")
                            .long("resolution")
                            .value_name("DURATION")
                            .help("e.g. 8h, 3d"),
                    ),
            ),
    ]
}

/// Extra flags of `crm KIND show`.
pub(super) fn show_args(kind: Kind) -> Vec<Arg> {
    match kind {
        Kind::Account => vec![
            Arg::new("full")
                .long("full")
                .action(ArgAction::SetTrue)
                .help(
                    "The 360° view: contacts, deals, tickets, activities, campaigns and relations",
                ),
        ],
        _ => Vec::new(),
    }
}

pub(super) fn run_verb(kind: Kind, verb: &str, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    let result = match (kind, verb) {
        (Kind::Ticket, "assign") => ticket_step(m, json, |s, id, m| {
            let to = parse(m, "to")?;
            let team = m.get_one::<String>("team").map(|t| t.parse()).transpose()?;
            Ok(s.assign_ticket(id, to, team)?)
        }),
        (Kind::Ticket, "respond") => ticket_step(m, json, |s, id, m| {
            Ok(s.respond_ticket(id, m.get_one::<String>("note").map(String::as_str))?)
        }),
        (Kind::Ticket, "resolve") => ticket_step(m, json, |s, id, m| {
            let articles = m
                .get_many::<String>("article")
                .into_iter()
                .flatten()
                .map(|a| a.parse())
                .collect::<Result<Vec<RecordId>, _>>()?;
            let resolution = m
                .get_one::<String>("resolution")
                .ok_or_else(|| Usage("give --resolution".into()))?;
            Ok(s.resolve_ticket(id, resolution, &articles)?)
        }),
        (Kind::Ticket, "rate") => ticket_step(m, json, |s, id, m| {
            let score = *m
                .get_one::<i64>("score")
                .ok_or_else(|| Usage("give --score".into()))?;
            Ok(s.rate_ticket(
                id,
                score,
                m.get_one::<String>("comment").map(String::as_str),
            )?)
        }),
        (Kind::Ticket, "close") => ticket_step(m, json, |s, id, _| Ok(s.close_ticket(id)?)),
        (Kind::Ticket, "sla") => ticket_clocks(m, json),
        (Kind::Campaign, "start" | "complete" | "cancel") => (|| {
            let to = match verb {
                "start" => "active",
                "complete" => "completed",
                _ => "cancelled",
            };
            let mut store = open(m)?;
            let record = store.set_campaign_status(parse(m, "id")?, to)?;
            print(&mut store, &record, json)
        })(),
        (Kind::Campaign, "add-member") => (|| {
            let mut store = open(m)?;
            let members = m
                .get_many::<String>("members")
                .into_iter()
                .flatten()
                .map(|a| a.parse())
                .collect::<Result<Vec<RecordId>, _>>()?;
            let added = store.add_campaign_members(
                parse(m, "campaign")?,
                &members,
                m.get_one::<String>("status").map(String::as_str),
            )?;
            if json {
                output::json(&json!(
                    added.iter().map(Record::to_json).collect::<Vec<_>>()
                ));
            } else {
                for r in &added {
                    println!("{}", r.id);
                }
            }
            Ok(())
        })(),
        (Kind::Campaign, "member-status") => (|| {
            let mut store = open(m)?;
            let status = m
                .get_one::<String>("status")
                .ok_or_else(|| Usage("give a status".into()))?;
            let record = store.set_member_status(parse(m, "member")?, status)?;
            print(&mut store, &record, json)
        })(),
        (Kind::Survey, "respond") => (|| {
            let mut answers = BTreeMap::new();
            for a in m.get_many::<String>("answer").into_iter().flatten() {
                let (q, v) = a
                    .split_once('=')
                    .ok_or_else(|| Usage(format!("--answer {a:?}: expected QUESTION=ANSWER")))?;
                answers.insert(q.trim().to_string(), v.trim().to_string());
            }
            let respondent = m
                .get_one::<String>("respondent")
                .map(|r| r.parse())
                .transpose()?;
            let ticket = m
                .get_one::<String>("ticket")
                .map(|r| r.parse())
                .transpose()?;
            let mut store = open(m)?;
            let record = store.respond_survey(
                parse(m, "survey")?,
                respondent,
                m.get_one::<i64>("score").copied(),
                answers,
                ticket,
            )?;
            print(&mut store, &record, json)
        })(),
        (Kind::Account, "lifecycle") => (|| {
            let mut store = open(m)?;
            let stage = m
                .get_one::<String>("stage")
                .ok_or_else(|| Usage("give a stage".into()))?;
            let record = store.set_lifecycle(parse(m, "id")?, stage)?;
            print(&mut store, &record, json)
        })(),
        (Kind::Account, "relate") => (|| {
            let (flag, relation) = RELATIONS
                .iter()
                .find(|(f, _)| m.get_one::<String>(f).is_some())
                .ok_or_else(|| {
                    Usage("give one of --subsidiary-of, --partner-of, --distributor-of, --reseller-of".into())
                })?;
            let other = parse(m, flag)?;
            let mut store = open(m)?;
            let record = store.relate_accounts(
                parse(m, "id")?,
                relation,
                other,
                m.get_one::<String>("note").map(String::as_str),
            )?;
            print(&mut store, &record, json)
        })(),
        _ => return None,
    };
    Some(result)
}

pub(super) fn run_command(name: &str, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    match name {
        "sla" => Some(sla_command(m, json)),
        _ => None,
    }
}

/// `crm KIND show` for kinds with more to show; `None` means the plain record view.
pub(super) fn show(kind: Kind, m: &ArgMatches, json: bool) -> Option<Result<()>> {
    match kind {
        Kind::Ticket => Some((|| {
            let mut store = open(m)?;
            let id = ticket_id(&store, m, "id")?;
            let record = store.get_kind(Kind::Ticket, id)?;
            let clocks = store.ticket_sla(id)?;
            if json {
                let mut out = record.to_json();
                if let Json::Object(map) = &mut out {
                    map.insert("sla".into(), json!(clocks));
                }
                output::json(&out);
            } else {
                let titles = store.titles(&output::referenced(&record))?;
                output::record(&record, &titles);
                if let Some(clocks) = clocks {
                    println!("SLA ({}):", clocks.priority);
                    output::pairs(vec![
                        vec![
                            "first response".into(),
                            clock_text(clocks.first_response.as_ref()),
                        ],
                        vec!["resolution".into(), clock_text(clocks.resolution.as_ref())],
                    ]);
                }
            }
            Ok(())
        })()),
        Kind::Account if m.get_flag("full") => Some(account_full(m, json)),
        _ => None,
    }
}

/// Extra computed columns for `crm KIND list`: (key, one (JSON, table cell) per row).
#[allow(clippy::type_complexity, reason = "a list of named columns of cells")]
pub(super) fn list_columns(
    kind: Kind,
    store: &Store,
    rows: &[crm_store::ListRow],
) -> Result<Vec<(&'static str, Vec<(Json, String)>)>> {
    if kind != Kind::Ticket {
        return Ok(Vec::new());
    }
    let policy = store.sla_policy()?;
    let now = store.now();
    let values = rows
        .iter()
        .map(|r| {
            let clocks = sla::ticket_sla(&r.json, &policy, now);
            let cell = clocks.as_ref().map(sla_summary).unwrap_or_default();
            (json!(clocks), cell)
        })
        .collect();
    Ok(vec![("sla", values)])
}

fn parse(m: &ArgMatches, arg: &str) -> Result<RecordId> {
    let raw = m
        .get_one::<String>(arg)
        .ok_or_else(|| Usage(format!("missing {arg}")))?;
    Ok(raw.parse()?)
}

/// A ticket given by id or by number (canonical or provisional).
fn ticket_id(store: &Store, m: &ArgMatches, arg: &str) -> Result<RecordId> {
    let raw = m
        .get_one::<String>(arg)
        .ok_or_else(|| Usage(format!("missing {arg}")))?;
    if let Ok(id) = raw.parse() {
        return Ok(id);
    }
    store
        .ticket_by_number(raw)?
        .ok_or_else(|| Usage(format!("no ticket with id or number {raw:?}")).into())
}

fn ticket_step(
    m: &ArgMatches,
    json: bool,
    step: impl FnOnce(&mut Store, RecordId, &ArgMatches) -> Result<Record>,
) -> Result<()> {
    let mut store = open(m)?;
    let id = ticket_id(&store, m, "id")?;
    let record = step(&mut store, id, m)?;
    print(&mut store, &record, json)
}

fn print(store: &mut Store, record: &Record, json: bool) -> Result<()> {
    if json {
        output::json(&record.to_json());
    } else {
        let titles = store.titles(&output::referenced(record))?;
        output::record(record, &titles);
    }
    Ok(())
}

fn time(t: &chrono::DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

fn clock_text(clock: Option<&sla::Clock>) -> String {
    let Some(c) = clock else {
        return "–".into();
    };
    match (c.met_at, c.minutes_left) {
        (Some(at), _) => format!(
            "due {}, met {}{}",
            time(&c.due),
            time(&at),
            if c.breached { " ⚠ BREACHED" } else { " ✓" }
        ),
        (None, Some(left)) if left < 0 => format!(
            "due {} ⚠ BREACHED ({} overdue)",
            time(&c.due),
            format_duration(-left)
        ),
        (None, Some(left)) => format!("due {} ({} left)", time(&c.due), format_duration(left)),
        (None, None) => format!("due {}", time(&c.due)),
    }
}

fn sla_summary(s: &TicketSla) -> String {
    let part = |name: &str, c: &Option<sla::Clock>| match c {
        Some(c) if c.breached => format!("{name} ⚠"),
        Some(c) if c.met_at.is_none() => format!("{name} {}", time(&c.due)),
        Some(_) => format!("{name} ✓"),
        None => String::new(),
    };
    [part("1st", &s.first_response), part("res", &s.resolution)]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

fn ticket_clocks(m: &ArgMatches, json: bool) -> Result<()> {
    let store = open(m)?;
    let clocks = store.ticket_clocks(m.get_flag("breached"), m.get_flag("all"), store.now())?;
    if json {
        output::json(&json!(clocks));
        return Ok(());
    }
    let assignees: Vec<RecordId> = clocks
        .iter()
        .filter_map(|c| c.assignee.as_deref()?.parse().ok())
        .collect();
    let names = store.titles(&assignees)?;
    output::table(
        &[
            "number",
            "subject",
            "priority",
            "status",
            "assignee",
            "first response",
            "resolution",
        ],
        clocks
            .iter()
            .map(|c| {
                vec![
                    c.number.clone().unwrap_or_else(|| c.id.to_string()),
                    output::one_line(&c.subject, 30),
                    c.sla.priority.clone(),
                    c.status.clone(),
                    c.assignee
                        .as_deref()
                        .and_then(|a| a.parse().ok())
                        .and_then(|a: RecordId| names.get(&a).cloned())
                        .unwrap_or_default(),
                    clock_text(c.sla.first_response.as_ref()),
                    clock_text(c.sla.resolution.as_ref()),
                ]
            })
            .collect(),
    );
    Ok(())
}

fn sla_command(m: &ArgMatches, json: bool) -> Result<()> {
    let policy = match m.subcommand() {
        Some(("set", sub)) => {
            let priority = sub
                .get_one::<String>("priority")
                .ok_or_else(|| Usage("give a priority".into()))?;
            let duration = |arg: &str| {
                sub.get_one::<String>(arg)
                    .map(|d| parse_duration(d).with_context(|| format!("--{arg}")))
                    .transpose()
            };
            let first = duration("first-response")?;
            let resolution = duration("resolution")?;
            if first.is_none() && resolution.is_none() {
                return Err(Usage("give --first-response and/or --resolution".into()).into());
            }
            let mut store = open(sub)?;
            store.set_sla(&priority.trim().to_ascii_lowercase(), first, resolution)?
        }
        _ => open(m)?.sla_policy()?,
    };
    print_policy(&policy, json);
    Ok(())
}

fn print_policy(policy: &SlaPolicy, json: bool) {
    let order = ["urgent", "high", "normal", "low"];
    if json {
        output::json(&json!({
            "record": policy.record.map(|r| r.to_string()),
            "targets": order.iter().filter_map(|p| {
                let t = policy.targets.get(*p)?;
                Some(json!({
                    "priority": p,
                    "first_response_minutes": t.first_response_minutes,
                    "resolution_minutes": t.resolution_minutes,
                    "first_response": format_duration(t.first_response_minutes),
                    "resolution": format_duration(t.resolution_minutes),
                    "overridden": t.overridden,
                }))
            }).collect::<Vec<_>>(),
        }));
        return;
    }
    output::table(
        &["priority", "first response", "resolution", ""],
        order
            .iter()
            .filter_map(|p| {
                let t = policy.targets.get(*p)?;
                Some(vec![
                    (*p).to_string(),
                    format_duration(t.first_response_minutes),
                    format_duration(t.resolution_minutes),
                    if t.overridden { "changed" } else { "default" }.into(),
                ])
            })
            .collect(),
    );
}

fn account_full(m: &ArgMatches, json: bool) -> Result<()> {
    let mut store = open(m)?;
    let id = parse(m, "id")?;
    let view = store.account_360(id)?;
    if json {
        output::json(&json!(view));
        return Ok(());
    }
    let record = store.get_kind(Kind::Account, id)?;
    let titles = store.titles(&output::referenced(&record))?;
    output::record(&record, &titles);
    let names: HashMap<RecordId, String> = view
        .names
        .iter()
        .filter_map(|(k, v)| Some((k.parse().ok()?, v.clone())))
        .collect();
    let s = |r: &Json, k: &str| output::cell(r.get(k));
    let section = |title: &str, header: &[&str], rows: Vec<Vec<String>>| {
        println!("\n{title} ({})", rows.len());
        if !rows.is_empty() {
            output::table(header, rows);
        }
    };
    let person = |r: &Json| {
        format!("{} {}", s(r, "last_name"), s(r, "first_name"))
            .trim()
            .to_string()
    };
    section(
        "Contacts",
        &["id", "name", "title", "emails", "decision maker"],
        view.contacts
            .iter()
            .map(|r| {
                vec![
                    s(r, "id"),
                    person(r),
                    s(r, "title"),
                    s(r, "emails"),
                    s(r, "decision_maker"),
                ]
            })
            .collect(),
    );
    section(
        "Opportunities",
        &["id", "name", "stage", "amount", "close date"],
        view.opportunities
            .iter()
            .map(|r| {
                vec![
                    s(r, "id"),
                    s(r, "name"),
                    s(r, "stage"),
                    s(r, "amount"),
                    s(r, "close_date"),
                ]
            })
            .collect(),
    );
    section(
        "Tickets",
        &["number", "subject", "priority", "status", "opened"],
        view.tickets
            .iter()
            .map(|r| {
                vec![
                    s(r, "number"),
                    s(r, "subject"),
                    s(r, "priority"),
                    s(r, "status"),
                    s(r, "opened_at"),
                ]
            })
            .collect(),
    );
    section(
        "Activities",
        &["id", "type", "subject", "status", "when"],
        view.activities
            .iter()
            .map(|r| {
                let when = ["start", "due", "created_at"]
                    .iter()
                    .map(|k| s(r, k))
                    .find(|v| !v.is_empty())
                    .unwrap_or_default();
                vec![
                    s(r, "id"),
                    s(r, "type"),
                    s(r, "subject"),
                    s(r, "status"),
                    when,
                ]
            })
            .collect(),
    );
    section(
        "Campaigns",
        &["id", "name", "type", "status", "start"],
        view.campaigns
            .iter()
            .map(|r| {
                vec![
                    s(r, "id"),
                    s(r, "name"),
                    s(r, "type"),
                    s(r, "status"),
                    s(r, "start_date"),
                ]
            })
            .collect(),
    );
    section(
        "Relations",
        &["from", "relation", "to"],
        view.relations
            .iter()
            .map(|r| {
                let name = |k: &str| output::reference(&s(r, k), &names);
                vec![name("from"), s(r, "relation"), name("to")]
            })
            .collect(),
    );
    section(
        "Subsidiaries",
        &["id", "name", "lifecycle", "grade"],
        view.subsidiaries
            .iter()
            .map(|r| vec![s(r, "id"), s(r, "name"), s(r, "lifecycle"), s(r, "grade")])
            .collect(),
    );
    Ok(())
}
