//! A sales order, from a contract or quote through delivery.
use crate::kind::Kind;
use crate::schema::*;

pub const STATUSES: &[&str] = &[
    "draft",
    "confirmed",
    "in_fulfilment",
    "delivered",
    "cancelled",
];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Order,
    fields: &[
        f("number", TEXT).title().filter(),
        f("account", to(&[Kind::Account])).required().filter(),
        f("contract", to(&[Kind::Contract])).filter(),
        f("quote", to(&[Kind::Quote])).filter(),
        f("status", one_of(STATUSES))
            .filter()
            .history()
            .default("draft"),
        f("line_items", FieldType::LineItems),
        f("order_date", DATE).filter(),
        f("delivered_at", DATETIME),
    ],
    number_prefix: Some("O"),
};
