//! A product on the price list.
use crate::kind::Kind;
use crate::schema::*;

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Product,
    fields: &[
        f("code", TEXT).required().title().filter(),
        f("name", TEXT).required().title().filter(),
        f("unit_price", MONEY).required(),
        f("unit", TEXT),
        f("active", BOOL).filter().default("true"),
    ],
    number_prefix: None,
};
