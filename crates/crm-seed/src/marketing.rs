//! Campaign results and customer feedback: members with their responses, and survey answers,
//! so the marketing and satisfaction reports have something to measure.

use std::time::Duration;

use crm_model::{Edit, Kind, RecordId};
use serde_json::json;

use crate::Write;
use crate::seeder::{Result, Seeder};

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// Every campaign-sourced lead is a member that responded (or converted); about one
    /// contact in five was targeted by a campaign and got somewhere along the way.
    pub(crate) fn campaign_members(&mut self) -> Result<()> {
        if self.campaigns.is_empty() {
            return Ok(());
        }
        let leads = std::mem::take(&mut self.campaign_leads);
        for (campaign, lead, status) in &leads {
            let member_status = if *status == "converted" {
                "converted"
            } else {
                "responded"
            };
            let days = self.between(1, 300);
            self.member(*campaign, *lead, member_status, days)?;
        }
        self.campaign_leads = leads;
        let contacts = self.contacts.clone();
        let mut seen = std::collections::HashSet::new();
        for contact in contacts {
            if !self.chance(0.2) {
                continue;
            }
            let Some(campaign) = self.one_of(|s| &s.campaigns) else {
                break;
            };
            if !seen.insert((campaign, contact)) {
                continue;
            }
            let status = self.spread(
                "campaign_member.status",
                &[
                    ("targeted", 3),
                    ("sent", 4),
                    ("opened", 3),
                    ("responded", 2),
                    ("opted_out", 1),
                ],
            );
            let days = self.between(1, 300);
            self.member(campaign, contact, status, days)?;
        }
        Ok(())
    }

    fn member(
        &mut self,
        campaign: RecordId,
        member: RecordId,
        status: &'static str,
        days_ago: i64,
    ) -> Result<()> {
        let mut e = Edit::new(Kind::CampaignMember);
        e.set("campaign", &campaign.to_string())?;
        e.set("member", &member.to_string())?;
        e.set("status", status)?;
        if matches!(status, "responded" | "converted") {
            e.set("responded_at", &self.time(-days_ago * 24 * 60))?;
        }
        self.create(&e)?;
        Ok(())
    }

    /// A satisfaction survey answered by customers whose ticket was closed and rated, and a
    /// feedback survey of the first campaign.
    pub(crate) fn surveys(&mut self) -> Result<()> {
        let mut e = Edit::new(Kind::Survey);
        e.set("name", "服务满意度调查 / Service satisfaction")?;
        e.set("type", "csat")?;
        let csat = self.create(&e)?.id;
        let rated = self.rated_tickets.clone();
        for (ticket, contact, score, at) in rated {
            let mut e = Edit::new(Kind::SurveyResponse);
            e.set("survey", &csat.to_string())?;
            e.set("respondent", &contact.to_string())?;
            e.set("ticket", &ticket.to_string())?;
            e.set("score", &score.to_string())?;
            e.set(
                "answers",
                &json!({"satisfaction": score.to_string()}).to_string(),
            )?;
            e.set("submitted_at", &crm_model::format_time(&at))?;
            self.create(&e)?;
        }
        let Some(&campaign) = self.campaigns.first() else {
            return Ok(());
        };
        let mut e = Edit::new(Kind::Survey);
        e.set("name", "Campaign feedback")?;
        e.set("type", "campaign_feedback")?;
        e.set("campaign", &campaign.to_string())?;
        let feedback = self.create(&e)?.id;
        let n = (self.contacts.len() / 20).clamp(3, 200);
        for _ in 0..n {
            let i = self.index(self.contacts.len());
            let Some(&contact) = self.contacts.get(i) else {
                break;
            };
            let score = self.between(1, 5);
            let mut e = Edit::new(Kind::SurveyResponse);
            e.set("survey", &feedback.to_string())?;
            e.set("respondent", &contact.to_string())?;
            e.set("campaign", &campaign.to_string())?;
            e.set("score", &score.to_string())?;
            e.set(
                "answers",
                &json!({"useful": score.to_string(), "would_attend_again": if score >= 3 { "yes" } else { "no" }}).to_string(),
            )?;
            let days = self.between(1, 200);
            e.set("submitted_at", &self.time(-days * 24 * 60))?;
            self.create(&e)?;
        }
        Ok(())
    }
}
