//! A survey (CSAT, NPS, campaign feedback) and its questions.
use crate::kind::Kind;
use crate::schema::*;

pub const TYPES: &[&str] = &["csat", "nps", "campaign_feedback", "custom"];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Survey,
    fields: &[
        f("name", TEXT).required().title().filter(),
        f("type", one_of(TYPES)).filter().default("csat"),
        f("campaign", to(&[Kind::Campaign])).filter(),
        f("questions", FieldType::List),
    ],
    number_prefix: None,
};
