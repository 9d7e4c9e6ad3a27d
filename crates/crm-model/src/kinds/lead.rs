//! A lead: a prospective customer not yet qualified.
use crate::kind::Kind;
use crate::schema::*;

pub const SOURCES: &[&str] = &[
    "web_form",
    "social",
    "trade_show",
    "referral",
    "campaign",
    "import",
    "cold_call",
    "other",
];
pub const STATUSES: &[&str] = &[
    "new",
    "assigned",
    "working",
    "qualified",
    "converted",
    "disqualified",
    "recycled",
];
pub const RATINGS: &[&str] = &["hot", "warm", "cold"];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Lead,
    fields: &[
        f("person_name", TEXT).required().title().filter(),
        f("company_name", TEXT).title().filter(),
        f("title", TEXT),
        f("email", EMAIL).filter(),
        f("phone", PHONE).filter(),
        f("source", one_of(SOURCES)).filter(),
        f("campaign", to(&[Kind::Campaign])).filter(),
        f("status", one_of(STATUSES))
            .filter()
            .history()
            .default("new"),
        f("rating", one_of(RATINGS)).filter(),
        f("score", FieldType::Int { min: 0, max: 100 }).filter(),
        f("disqualify_reason", TEXT),
        f("description", PROSE),
        f("converted_account", to(&[Kind::Account])),
        f("converted_contact", to(&[Kind::Contact])),
        f("converted_opportunity", to(&[Kind::Opportunity])),
    ],
    number_prefix: None,
};
