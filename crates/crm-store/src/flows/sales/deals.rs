//! Opportunities: moving through the stages and closing won or lost.

use crm_model::kinds::opportunity::default_probability;
use crm_model::{FieldValue, Kind, Record, RecordId};

use super::{edit_with, text};
use crate::{Result, Store, StoreError};

/// How an opportunity closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Won,
    /// Lost, with one of the lost reasons (price, product_fit, competitor, timing, no_budget,
    /// no_decision, other).
    Lost {
        reason: String,
    },
}

/// The forecast category an open stage implies.
pub fn stage_forecast(stage: &str) -> &'static str {
    match stage {
        "proposal" => "best_case",
        "negotiation" => "commit",
        "closed_won" => "closed",
        "closed_lost" => "omitted",
        _ => "pipeline",
    }
}

impl Store {
    /// An opportunity that is still open.
    fn open_opportunity(&mut self, id: RecordId) -> Result<Record> {
        let opp = self.get_kind(Kind::Opportunity, id)?;
        if let Some(stage) = text(&opp, "stage").filter(|s| s.starts_with("closed")) {
            return Err(StoreError::Rejected(format!(
                "opportunity {id} ({}) is already {stage}",
                opp.title()
            )));
        }
        if opp.archived {
            return Err(StoreError::Rejected(format!(
                "opportunity {id} is archived; restore it first"
            )));
        }
        Ok(opp)
    }

    /// Moves an open opportunity to another open stage. The probability becomes the stage's
    /// default unless `probability` overrides it, and the forecast category follows the
    /// stage; the move is appended to the stage history (who, when, which device). Closing
    /// goes through [`Store::close_opportunity`], which needs the outcome's details.
    pub fn move_stage(
        &mut self,
        id: RecordId,
        stage: &str,
        probability: Option<i64>,
    ) -> Result<Record> {
        let mut e = edit_with(Kind::Opportunity, &[("stage", stage)])?;
        let stage = match e.ops().first() {
            Some(crm_model::Op::Set(_, FieldValue::Text(s))) => s.clone(),
            _ => stage.to_string(),
        };
        if stage.starts_with("closed") {
            return Err(StoreError::Rejected(format!(
                "{stage} is a closing stage: close the opportunity as won or lost instead"
            )));
        }
        let opp = self.open_opportunity(id)?;
        if text(&opp, "stage") == Some(stage.as_str()) {
            return Err(StoreError::Rejected(format!(
                "opportunity {id} is already in stage {stage}"
            )));
        }
        let p = probability.or(default_probability(&stage)).unwrap_or(0);
        e.set_value("probability", FieldValue::Int(p))?;
        e.set("forecast_category", stage_forecast(&stage))?;
        self.edit(id, &e)
    }

    /// Closes an open opportunity: stage `closed_won` or `closed_lost` (with the reason),
    /// `closed_at` now, probability 100 or 0, forecast category `closed` or `omitted`.
    pub fn close_opportunity(&mut self, id: RecordId, outcome: &Outcome) -> Result<Record> {
        let now = self.now();
        let mut e = match outcome {
            Outcome::Won => edit_with(
                Kind::Opportunity,
                &[
                    ("stage", "closed_won"),
                    ("probability", "100"),
                    ("forecast_category", "closed"),
                ],
            )?,
            Outcome::Lost { reason } => edit_with(
                Kind::Opportunity,
                &[
                    ("stage", "closed_lost"),
                    ("probability", "0"),
                    ("forecast_category", "omitted"),
                    ("lost_reason", reason),
                ],
            )?,
        };
        e.set_value("closed_at", FieldValue::DateTime(now))?;
        let opp = self.open_opportunity(id)?;
        if *outcome == Outcome::Won && opp.get("lost_reason").is_some() {
            e.unset("lost_reason")?;
        }
        self.edit(id, &e)
    }
}
