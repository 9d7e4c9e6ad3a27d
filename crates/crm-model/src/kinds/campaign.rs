//! A marketing campaign: plan, budget, execution and results.
use crate::kind::Kind;
use crate::schema::*;

pub const TYPES: &[&str] = &[
    "email",
    "event",
    "webinar",
    "social",
    "advertising",
    "telemarketing",
    "other",
];
pub const STATUSES: &[&str] = &["planning", "active", "completed", "cancelled"];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Campaign,
    fields: &[
        f("name", TEXT).required().title().filter(),
        f("type", one_of(TYPES)).filter(),
        f("status", one_of(STATUSES))
            .filter()
            .history()
            .default("planning"),
        f("start_date", DATE).filter(),
        f("end_date", DATE),
        f("budget", MONEY),
        f("actual_cost", MONEY),
        f("expected_revenue", MONEY),
        f("goal_leads", COUNT),
        f("goal_revenue", MONEY),
        f("objective", PROSE),
    ],
    number_prefix: None,
};
