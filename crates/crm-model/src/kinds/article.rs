//! A knowledge-base article.
use crate::kind::Kind;
use crate::schema::*;

pub const STATUSES: &[&str] = &["draft", "in_review", "published", "archived"];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Article,
    fields: &[
        f("title", TEXT).required().title().filter(),
        f("body", PROSE),
        f("status", one_of(STATUSES)).filter().default("draft"),
        f("category", TEXT).filter(),
        f("language", TEXT).filter(),
        f(
            "related_tickets",
            FieldType::Set(SetOf::Ref(&[Kind::Ticket])),
        ),
    ],
    number_prefix: None,
};
