//! An account: a customer, prospect, partner or other company.
use crate::kind::Kind;
use crate::schema::*;

pub const TYPES: &[&str] = &[
    "prospect",
    "customer",
    "partner",
    "distributor",
    "competitor",
    "other",
];
pub const LIFECYCLE: &[&str] = &[
    "prospect",
    "contacted",
    "converted",
    "active",
    "loyal",
    "churned",
];
pub const GRADES: &[&str] = &["vip", "key", "normal", "low"];
pub const SIZES: &[&str] = &["1-10", "11-50", "51-200", "201-1000", "1001-5000", "5000+"];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Account,
    fields: &[
        f("name", TEXT).required().title().filter(),
        f("short_name", TEXT),
        f("industry", TEXT).filter(),
        f("size", one_of(SIZES)).filter(),
        f("employees", COUNT),
        f("website", FieldType::Domain).filter(),
        f("emails", EMAILS),
        f("phones", PHONES),
        f("billing_address", TEXT),
        f("shipping_address", TEXT),
        f("type", one_of(TYPES)).filter().default("prospect"),
        f("lifecycle", one_of(LIFECYCLE))
            .filter()
            .history()
            .default("prospect"),
        f("grade", one_of(GRADES)).filter().default("normal"),
        f("parent", to(&[Kind::Account])).filter(),
        f("source", TEXT).filter(),
        f("annual_revenue", MONEY),
        f("description", PROSE),
    ],
    number_prefix: None,
};
