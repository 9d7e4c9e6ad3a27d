//! A contract with an account, approved before it becomes active.
use crate::kind::Kind;
use crate::schema::*;

pub const STATUSES: &[&str] = &[
    "draft",
    "pending_approval",
    "active",
    "expired",
    "terminated",
    "renewed",
];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Contract,
    fields: &[
        f("number", TEXT).title().filter(),
        f("account", to(&[Kind::Account])).required().filter(),
        f("quote", to(&[Kind::Quote])).filter(),
        f("status", one_of(STATUSES))
            .filter()
            .history()
            .default("draft"),
        f("start_date", DATE).filter(),
        f("end_date", DATE).filter(),
        f("amount", MONEY),
        f("terms", PROSE),
        f("approver", to(&[Kind::User])),
        f("approved_at", DATETIME),
        f("renewal_reminder", DATE),
    ],
    number_prefix: Some("C"),
};
