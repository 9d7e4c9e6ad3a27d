//! The kinds of CRM record.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::kinds;
use crate::schema::Schema;

macro_rules! kinds {
    ($($variant:ident => $name:literal, $plural:literal, $module:ident, [$($alias:literal),*];)*) => {
        /// A kind of CRM record. Each record is one Automerge document whose root names its kind.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind {
            $($variant,)*
        }

        impl Kind {
            pub const ALL: &'static [Kind] = &[$(Kind::$variant,)*];

            /// The name used in documents, projections, the CLI and JSON.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $name,)*
                }
            }

            pub fn plural(self) -> &'static str {
                match self {
                    $(Kind::$variant => $plural,)*
                }
            }

            pub fn schema(self) -> &'static Schema {
                match self {
                    $(Kind::$variant => &kinds::$module::SCHEMA,)*
                }
            }

            /// Other names the CLI accepts for the kind.
            pub fn aliases(self) -> &'static [&'static str] {
                match self {
                    $(Kind::$variant => &[$($alias),*],)*
                }
            }
        }

        impl FromStr for Kind {
            type Err = UnknownKind;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let s = s.trim().to_ascii_lowercase().replace('-', "_");
                $(
                    if s == $name || s == $plural $(|| s == $alias)* {
                        return Ok(Kind::$variant);
                    }
                )*
                Err(UnknownKind(s))
            }
        }
    };
}

kinds! {
    User => "user", "users", user, [];
    Team => "team", "teams", team, [];
    Account => "account", "accounts", account, ["customer", "company"];
    AccountRelation => "account_relation", "account_relations", account_relation, ["relation"];
    Contact => "contact", "contacts", contact, [];
    Lead => "lead", "leads", lead, [];
    Opportunity => "opportunity", "opportunities", opportunity, ["deal", "deals", "opp"];
    Activity => "activity", "activities", activity, ["task", "call", "meeting"];
    Campaign => "campaign", "campaigns", campaign, [];
    CampaignMember => "campaign_member", "campaign_members", campaign_member, ["member"];
    Ticket => "ticket", "tickets", ticket, ["case"];
    Article => "article", "articles", article, ["knowledge_article", "kb"];
    Survey => "survey", "surveys", survey, [];
    SurveyResponse => "survey_response", "survey_responses", survey_response, ["response"];
    Product => "product", "products", product, [];
    Quote => "quote", "quotes", quote, [];
    Contract => "contract", "contracts", contract, [];
    Order => "order", "orders", order, [];
}

impl Kind {
    /// The CLI's subcommand name: the kind name with dashes.
    pub fn command_name(self) -> String {
        self.as_str().replace('_', "-")
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a record kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown record kind {0:?}; known kinds: {known}", known = known_kinds())]
pub struct UnknownKind(pub String);

fn known_kinds() -> String {
    Kind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(kind.as_str().parse::<Kind>(), Ok(*kind));
            assert_eq!(kind.command_name().parse::<Kind>(), Ok(*kind));
            assert_eq!(kind.plural().parse::<Kind>(), Ok(*kind));
            assert_eq!(kind.schema().kind, *kind);
        }
        assert_eq!("deal".parse::<Kind>(), Ok(Kind::Opportunity));
        assert!("spaceship".parse::<Kind>().is_err());
    }

    #[test]
    fn every_schema_is_well_formed() {
        for kind in Kind::ALL {
            let schema = kind.schema();
            let mut names = std::collections::BTreeSet::new();
            for field in schema.all_fields() {
                assert!(
                    names.insert(field.name),
                    "{kind}: duplicate field {}",
                    field.name
                );
                assert!(
                    !crate::record::RESERVED_KEYS.contains(&field.name),
                    "{kind}: field {} clashes with a record key",
                    field.name
                );
                if let Some(default) = field.default.filter(|d| *d != "now") {
                    assert!(
                        crate::value::FieldValue::parse(field, default).is_ok(),
                        "{kind}.{}: bad default",
                        field.name
                    );
                }
            }
            assert!(
                schema.title_fields().next().is_some(),
                "{kind} has no title"
            );
        }
    }
}
