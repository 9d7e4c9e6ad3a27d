//! A person at an account.
use crate::kind::Kind;
use crate::schema::*;

pub const CHANNELS: &[&str] = &["phone", "email", "wechat", "meeting", "other"];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Contact,
    fields: &[
        f("first_name", TEXT).title().filter(),
        f("last_name", TEXT).required().title().filter(),
        f("title", TEXT),
        f("department", TEXT).filter(),
        f("account", to(&[Kind::Account])).filter(),
        f(
            "other_accounts",
            FieldType::Set(SetOf::Ref(&[Kind::Account])),
        ),
        f("emails", EMAILS),
        f("phones", PHONES),
        f("preferred_channel", one_of(CHANNELS)).filter(),
        f("birthday", DATE),
        f("decision_maker", BOOL).filter(),
        f("do_not_contact", BOOL).filter(),
    ],
    number_prefix: None,
};
