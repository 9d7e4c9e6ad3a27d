//! A team of users with a manager.
use crate::kind::Kind;
use crate::schema::*;

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Team,
    fields: &[
        f("name", TEXT).required().title().filter(),
        f("manager", to(&[Kind::User])).filter(),
        f("members", FieldType::Set(SetOf::Ref(&[Kind::User]))),
    ],
    number_prefix: None,
};
