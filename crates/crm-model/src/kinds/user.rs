//! A user of the CRM: the people who own records and are assigned work.
use crate::kind::Kind;
use crate::schema::*;

pub const ROLES: &[&str] = &["admin", "sales_manager", "sales_rep", "support_agent"];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::User,
    fields: &[
        f("name", TEXT).required().title().filter(),
        f("email", EMAIL).filter(),
        f("role", one_of(ROLES)).filter().default("sales_rep"),
        f("active", BOOL).filter().default("true"),
    ],
    number_prefix: None,
};
