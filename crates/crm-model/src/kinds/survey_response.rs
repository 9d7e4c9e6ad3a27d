//! One respondent's answers to a survey.
use crate::kind::Kind;
use crate::schema::*;

pub(crate) static SCHEMA: Schema = Schema {
    kind: Kind::SurveyResponse,
    fields: &[
        f("survey", to(&[Kind::Survey]))
            .required()
            .immutable()
            .title()
            .filter(),
        f("respondent", to(&[Kind::Contact, Kind::Lead]))
            .immutable()
            .filter(),
        f("ticket", to(&[Kind::Ticket])).immutable().filter(),
        f("campaign", to(&[Kind::Campaign])).immutable().filter(),
        f("answers", FieldType::Answers),
        f(
            "score",
            FieldType::Int {
                min: -100,
                max: 100,
            },
        )
        .immutable()
        .filter(),
        f("submitted_at", DATETIME).immutable(),
    ],
    number_prefix: None,
};
