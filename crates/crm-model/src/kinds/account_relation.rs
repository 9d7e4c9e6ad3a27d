//! A typed relation between two accounts (subsidiary, distributor, partner, reseller).
use crate::kind::Kind;
use crate::schema::*;

pub const RELATION_KINDS: &[&str] = &[
    "subsidiary_of",
    "distributor_of",
    "partner_of",
    "reseller_of",
];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::AccountRelation,
    fields: &[
        f("from", to(&[Kind::Account])).required().filter(),
        f("relation", one_of(RELATION_KINDS))
            .required()
            .title()
            .filter(),
        f("to", to(&[Kind::Account])).required().filter(),
        f("note", PROSE),
    ],
    number_prefix: None,
};
