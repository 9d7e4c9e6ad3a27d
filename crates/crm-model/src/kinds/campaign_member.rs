//! A lead or contact targeted by a campaign, with their response.
use crate::kind::Kind;
use crate::schema::*;

pub const STATUSES: &[&str] = &[
    "targeted",
    "sent",
    "opened",
    "responded",
    "converted",
    "opted_out",
];

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::CampaignMember,
    fields: &[
        f("campaign", to(&[Kind::Campaign])).required().filter(),
        f("member", to(&[Kind::Lead, Kind::Contact]))
            .required()
            .filter(),
        f("status", one_of(STATUSES))
            .title()
            .filter()
            .default("targeted"),
        f("responded_at", DATETIME),
    ],
    number_prefix: None,
};
