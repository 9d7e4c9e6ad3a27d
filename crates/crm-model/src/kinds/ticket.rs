//! A service ticket: recorded, assigned, resolved, rated and closed.
use crate::kind::Kind;
use crate::schema::*;

pub const TYPES: &[&str] = &["question", "incident", "problem", "request", "complaint"];
pub const PRIORITIES: &[&str] = &["low", "normal", "high", "urgent"];
pub const STATUSES: &[&str] = &[
    "new",
    "assigned",
    "in_progress",
    "pending_customer",
    "resolved",
    "closed",
    "rejected",
    "duplicate",
];
pub const CHANNELS: &[&str] = &[
    "phone",
    "email",
    "web",
    "wechat",
    "chat",
    "in_person",
    "other",
];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Ticket,
    fields: &[
        f("number", TEXT).title().filter(),
        f("subject", TEXT).required().title().filter(),
        f("description", PROSE),
        f("account", to(&[Kind::Account])).filter(),
        f("contact", to(&[Kind::Contact])).filter(),
        f("type", one_of(TYPES)).filter(),
        f("priority", one_of(PRIORITIES))
            .filter()
            .history()
            .default("normal"),
        f("status", one_of(STATUSES))
            .filter()
            .history()
            .default("new"),
        f("channel", one_of(CHANNELS)).immutable().filter(),
        f("assignee", to(&[Kind::User])).filter(),
        f("team", to(&[Kind::Team])).filter(),
        f("opened_at", DATETIME).immutable().filter().default("now"),
        f("first_response_at", DATETIME),
        f("resolved_at", DATETIME),
        f("closed_at", DATETIME),
        f("resolution", PROSE),
        f("articles", FieldType::Set(SetOf::Ref(&[Kind::Article]))),
        f("satisfaction", FieldType::Int { min: 1, max: 5 }).filter(),
        f("satisfaction_comment", TEXT),
    ],
    number_prefix: Some("T"),
};
