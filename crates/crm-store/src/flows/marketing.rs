//! Marketing workflows: a campaign's status moves (planning → active → completed, or
//! cancelled), its members (leads and contacts) and their responses, and survey responses.
//! Leads and opportunities are attributed to a campaign by their `campaign` field (set with
//! `crm lead edit --campaign` or at capture); the marketing reports read that.

use std::collections::BTreeMap;

use crm_model::{Edit, FieldValue, Kind, Record, RecordId};

use super::sla::text;
use crate::{Result, Store, StoreError};

/// The campaign status moves this workflow allows, as (from, to).
const CAMPAIGN_MOVES: &[(&str, &str)] = &[
    ("planning", "active"),
    ("active", "completed"),
    ("planning", "cancelled"),
    ("active", "cancelled"),
];

fn name(record: &Record) -> String {
    record.title()
}

impl Store {
    /// Moves a campaign to `status` (`active`, `completed` or `cancelled`) when its current
    /// status allows it. Starting sets `start_date` to today when it has none; completing
    /// sets `end_date` likewise.
    pub fn set_campaign_status(&mut self, id: RecordId, to: &str) -> Result<Record> {
        let campaign = self.get_kind(Kind::Campaign, id)?;
        let from = text(&campaign, "status").unwrap_or("planning");
        if !CAMPAIGN_MOVES.contains(&(from, to)) {
            let allowed: Vec<&str> = CAMPAIGN_MOVES
                .iter()
                .filter(|(f, _)| *f == from)
                .map(|(_, t)| *t)
                .collect();
            return Err(StoreError::Rejected(format!(
                "campaign {} is {from}; it can't become {to}{}",
                name(&campaign),
                if allowed.is_empty() {
                    String::from(" (no further moves)")
                } else {
                    format!(" (it can become {})", allowed.join(" or "))
                }
            )));
        }
        let today = self.now().date_naive();
        let mut edit = Edit::new(Kind::Campaign);
        edit.set("status", to)?;
        if to == "active" && campaign.get("start_date").is_none() {
            edit.set_value("start_date", FieldValue::Date(today))?;
        }
        if to == "completed" && campaign.get("end_date").is_none() {
            edit.set_value("end_date", FieldValue::Date(today))?;
        }
        self.edit(id, &edit)
    }

    /// Adds leads and contacts to a campaign as members with `status` (default `targeted`).
    /// Everything is checked before anything is written: every id must be a lead or contact,
    /// none may be a member already or be given twice, and the campaign must be planned or
    /// active. Returns the new member records.
    ///
    /// One record per member: if the process dies midway, the members made so far exist, and
    /// a re-run is refused naming every id that is already a member (all of them at once),
    /// so the rest can be added without them.
    pub fn add_campaign_members(
        &mut self,
        campaign: RecordId,
        members: &[RecordId],
        status: Option<&str>,
    ) -> Result<Vec<Record>> {
        let c = self.get_kind(Kind::Campaign, campaign)?;
        let cstatus = text(&c, "status").unwrap_or("planning");
        if cstatus == "completed" || cstatus == "cancelled" {
            return Err(StoreError::Rejected(format!(
                "campaign {} is {cstatus}; members can only be added while it is planned or active",
                name(&c)
            )));
        }
        if members.is_empty() {
            return Err(StoreError::Rejected("no members given".into()));
        }
        let mut seen = std::collections::BTreeSet::new();
        let mut already = Vec::new();
        let mut check = self.conn.prepare_cached(
            "SELECT id FROM rec_campaign_member WHERE archived = 0 AND f_campaign = ?1 AND f_member = ?2",
        )?;
        for m in members {
            if !seen.insert(*m) {
                return Err(StoreError::Rejected(format!("{m} is given twice")));
            }
            let kind = self.kind_of(*m)?;
            if kind != Kind::Lead && kind != Kind::Contact {
                return Err(StoreError::Rejected(format!(
                    "{m} is a {kind}; campaign members are leads or contacts"
                )));
            }
            let existing: Option<String> = {
                use rusqlite::OptionalExtension;
                check
                    .query_row([campaign.to_string(), m.to_string()], |r| r.get(0))
                    .optional()?
            };
            if existing.is_some() {
                already.push(m.to_string());
            }
        }
        if !already.is_empty() {
            return Err(StoreError::Rejected(format!(
                "{} already a member of campaign {}: {}; add the others without them",
                if already.len() == 1 {
                    "this is"
                } else {
                    "these are"
                },
                name(&c),
                already.join(", ")
            )));
        }
        drop(check);
        // Validate the status once, before the first write.
        let mut template = Edit::new(Kind::CampaignMember);
        template.set_value("campaign", FieldValue::Ref(campaign))?;
        if let Some(s) = status {
            template.set("status", s)?;
            if s == "responded" {
                template.set_value("responded_at", FieldValue::DateTime(self.now()))?;
            }
        }
        let mut out = Vec::new();
        for m in members {
            let mut edit = template.clone();
            edit.set_value("member", FieldValue::Ref(*m))?;
            out.push(self.create(&edit)?);
        }
        Ok(out)
    }

    /// Sets a campaign member's response status; `responded` also stamps `responded_at` (once).
    pub fn set_member_status(&mut self, member: RecordId, status: &str) -> Result<Record> {
        let record = self.get_kind(Kind::CampaignMember, member)?;
        let mut edit = Edit::new(Kind::CampaignMember);
        edit.set("status", status)?;
        let normalized = match edit.ops().first() {
            Some(crm_model::Op::Set(_, FieldValue::Text(s))) => s.clone(),
            _ => status.to_string(),
        };
        if normalized == "responded" && record.get("responded_at").is_none() {
            edit.set_value("responded_at", FieldValue::DateTime(self.now()))?;
        }
        self.edit(member, &edit)
    }

    /// Records one response to a survey: the respondent (a contact or lead), a score, the
    /// answers, and the ticket or campaign it is about (the survey's campaign by default).
    /// The score must fit the survey: 1–5 for CSAT, 0–10 for NPS.
    pub fn respond_survey(
        &mut self,
        survey: RecordId,
        respondent: Option<RecordId>,
        score: Option<i64>,
        answers: BTreeMap<String, String>,
        ticket: Option<RecordId>,
    ) -> Result<Record> {
        let s = self.get_kind(Kind::Survey, survey)?;
        let kind = text(&s, "type").unwrap_or("custom");
        if let Some(score) = score {
            let range = match kind {
                "csat" => Some(1..=5),
                "nps" => Some(0..=10),
                _ => None,
            };
            if let Some(range) = range
                && !range.contains(&score)
            {
                return Err(StoreError::Rejected(format!(
                    "a {kind} survey takes scores {}–{}, not {score}",
                    range.start(),
                    range.end()
                )));
            }
        }
        if score.is_none() && answers.is_empty() {
            return Err(StoreError::Rejected(
                "an empty response: give a score or answers".into(),
            ));
        }
        if let Some(k) = answers.keys().find(|k| k.trim().is_empty()) {
            return Err(StoreError::Rejected(format!(
                "an answer has an empty question {k:?}"
            )));
        }
        let mut edit = Edit::new(Kind::SurveyResponse);
        edit.set_value("survey", FieldValue::Ref(survey))?;
        if let Some(r) = respondent {
            edit.set_value("respondent", FieldValue::Ref(r))?;
        }
        if let Some(score) = score {
            edit.set_value("score", FieldValue::Int(score))?;
        }
        if !answers.is_empty() {
            edit.set_value("answers", FieldValue::Answers(answers))?;
        }
        if let Some(t) = ticket {
            edit.set_value("ticket", FieldValue::Ref(t))?;
        }
        if let Some(FieldValue::Ref(c)) = s.get("campaign") {
            edit.set_value("campaign", FieldValue::Ref(*c))?;
        }
        edit.set_value("submitted_at", FieldValue::DateTime(self.now()))?;
        self.create(&edit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path(), "alice", "laptop").expect("init");
        (dir, store)
    }

    fn make(store: &mut Store, kind: Kind, fields: &[(&str, &str)]) -> RecordId {
        let mut e = Edit::new(kind);
        for (k, v) in fields {
            e.set(k, v).expect("valid");
        }
        store.create(&e).expect("create").id
    }

    #[test]
    fn campaign_status_moves() {
        let (_d, mut store) = store();
        let c = make(&mut store, Kind::Campaign, &[("name", "春季展会")]);
        assert!(
            store.set_campaign_status(c, "completed").is_err(),
            "not started"
        );
        let r = store.set_campaign_status(c, "active").expect("start");
        assert!(r.get("start_date").is_some(), "start date filled in");
        let r = store.set_campaign_status(c, "completed").expect("complete");
        assert!(r.get("end_date").is_some());
        let err = store.set_campaign_status(c, "cancelled").expect_err("done");
        assert!(
            err.is_invalid_input() && err.to_string().contains("completed"),
            "{err}"
        );
        let h: Vec<&str> = r.history["status"]
            .iter()
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(h, ["planning", "active", "completed"]);
    }

    #[test]
    fn members_are_leads_or_contacts_once_each() {
        let (_d, mut store) = store();
        let c = make(&mut store, Kind::Campaign, &[("name", "Webinar")]);
        let lead = make(&mut store, Kind::Lead, &[("person_name", "李雷")]);
        let contact = make(&mut store, Kind::Contact, &[("last_name", "王")]);
        let account = make(&mut store, Kind::Account, &[("name", "ACME")]);
        assert!(
            store
                .add_campaign_members(c, &[lead, account], None)
                .is_err()
        );
        assert!(store.add_campaign_members(c, &[lead, lead], None).is_err());
        assert_eq!(
            store.count(Kind::CampaignMember, true).expect("count"),
            0,
            "all or nothing"
        );
        let added = store
            .add_campaign_members(c, &[lead, contact], None)
            .expect("add");
        assert_eq!(added.len(), 2);
        assert_eq!(text(&added[0], "status"), Some("targeted"));
        let err = store
            .add_campaign_members(c, &[contact], None)
            .expect_err("duplicate");
        assert!(
            err.to_string().contains("already a member")
                && err.to_string().contains(&contact.to_string()),
            "{err}"
        );
        let newcomer = make(&mut store, Kind::Contact, &[("last_name", "李")]);
        let err = store
            .add_campaign_members(c, &[lead, newcomer, contact], None)
            .expect_err("two already members");
        let msg = err.to_string();
        assert!(
            msg.contains(&lead.to_string()) && msg.contains(&contact.to_string()),
            "{msg}"
        );
        assert_eq!(store.count(Kind::CampaignMember, true).expect("count"), 2);
        store
            .add_campaign_members(c, &[newcomer], None)
            .expect("the rest");
        let m = store
            .set_member_status(added[0].id, "responded")
            .expect("respond");
        assert!(m.get("responded_at").is_some());
        assert!(store.set_member_status(added[0].id, "bogus").is_err());
    }

    #[test]
    fn survey_responses_fit_the_survey() {
        let (_d, mut store) = store();
        let c = make(&mut store, Kind::Campaign, &[("name", "Webinar")]);
        let s = make(
            &mut store,
            Kind::Survey,
            &[
                ("name", "反馈"),
                ("type", "csat"),
                ("campaign", &c.to_string()),
            ],
        );
        let who = make(&mut store, Kind::Contact, &[("last_name", "王")]);
        assert!(
            store
                .respond_survey(s, Some(who), Some(9), BTreeMap::new(), None)
                .is_err()
        );
        assert!(
            store
                .respond_survey(s, Some(who), None, BTreeMap::new(), None)
                .is_err()
        );
        let answers = BTreeMap::from([("内容".to_string(), "很好".to_string())]);
        let r = store
            .respond_survey(s, Some(who), Some(5), answers, None)
            .expect("respond");
        assert_eq!(r.get("score"), Some(&FieldValue::Int(5)));
        assert_eq!(
            r.get("campaign"),
            Some(&FieldValue::Ref(c)),
            "from the survey"
        );
        assert!(r.get("submitted_at").is_some());
    }
}
