//! An opportunity (deal) moving through the sales stages.
use crate::kind::Kind;
use crate::schema::*;

pub const STAGES: &[&str] = &[
    "prospecting",
    "qualification",
    "proposal",
    "negotiation",
    "closed_won",
    "closed_lost",
];
pub const FORECAST: &[&str] = &["pipeline", "best_case", "commit", "closed", "omitted"];
pub const LOST_REASONS: &[&str] = &[
    "price",
    "product_fit",
    "competitor",
    "timing",
    "no_budget",
    "no_decision",
    "other",
];
pub const CONTACT_ROLES: &[&str] = &["decision_maker", "evaluator", "influencer", "user"];

/// The probability a stage implies when no override is set.
pub fn default_probability(stage: &str) -> Option<i64> {
    Some(match stage {
        "prospecting" => 10,
        "qualification" => 20,
        "proposal" => 50,
        "negotiation" => 80,
        "closed_won" => 100,
        "closed_lost" => 0,
        _ => return None,
    })
}

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::Opportunity,
    fields: &[
        f("name", TEXT).required().title().filter(),
        f("account", to(&[Kind::Account])).filter(),
        f("primary_contact", to(&[Kind::Contact])).filter(),
        f("contact_role", one_of(CONTACT_ROLES)),
        f("amount", MONEY).filter(),
        f("currency", TEXT).default("CNY"),
        f("stage", one_of(STAGES))
            .filter()
            .history()
            .default("prospecting"),
        f("probability", FieldType::Int { min: 0, max: 100 }),
        f("close_date", DATE).filter(),
        f("forecast_category", one_of(FORECAST)).filter(),
        f("lead_source", one_of(super::lead::SOURCES)).filter(),
        f("campaign", to(&[Kind::Campaign])).filter(),
        f("competitors", FieldType::Set(SetOf::Text)),
        f("next_step", TEXT),
        f("lost_reason", one_of(LOST_REASONS)).filter(),
        f("description", PROSE),
        f("closed_at", DATETIME),
    ],
    number_prefix: None,
};

#[cfg(test)]
mod tests {
    #[test]
    fn every_stage_has_a_default_probability() {
        for stage in super::STAGES {
            assert!(super::default_probability(stage).is_some(), "{stage}");
        }
        assert_eq!(super::default_probability("negotiation"), Some(80));
    }
}
