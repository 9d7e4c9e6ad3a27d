//! A quote for an opportunity, with line items.
use crate::kind::Kind;
use crate::schema::*;

pub const STATUSES: &[&str] = &[
    "draft",
    "in_review",
    "sent",
    "accepted",
    "rejected",
    "expired",
];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Quote,
    fields: &[
        f("number", TEXT).title().filter(),
        f("opportunity", to(&[Kind::Opportunity])).filter(),
        f("account", to(&[Kind::Account])).filter(),
        f("status", one_of(STATUSES))
            .filter()
            .history()
            .default("draft"),
        f("valid_until", DATE).filter(),
        f("currency", TEXT).default("CNY"),
        f("line_items", FieldType::LineItems),
        f("terms", PROSE),
    ],
    number_prefix: Some("Q"),
};
