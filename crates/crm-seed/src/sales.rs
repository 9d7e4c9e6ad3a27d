//! The sales funnel: leads and opportunities.

use std::time::Duration;

use crm_model::kinds::{lead, opportunity};
use crm_model::{Edit, Kind, RecordId};

use crate::Write;
use crate::accounts::Account;
use crate::org::{cn, owned_by};
use crate::seeder::{Result, Seeder, Step};
use crate::words::{CN_NEXT_STEPS, CN_PROJECTS, COMPETITORS, EN_NEXT_STEPS, EN_PROJECTS, JOBS};

/// The forecast category a stage usually has.
fn forecast(stage: &str) -> &'static str {
    match stage {
        "proposal" => "best_case",
        "negotiation" => "commit",
        "closed_won" => "closed",
        "closed_lost" => "omitted",
        _ => "pipeline",
    }
}

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// One opportunity of the account, at any stage; most reached it by stage moves.
    pub(crate) fn opportunity(&mut self, account: &Account) -> Result<RecordId> {
        let lang = account.lang();
        let stage = self.spread(
            "opportunity.stage",
            &[
                ("prospecting", 20),
                ("qualification", 18),
                ("proposal", 16),
                ("negotiation", 12),
                ("closed_won", 20),
                ("closed_lost", 14),
            ],
        );
        let closed = stage.starts_with("closed");
        let mut e = Edit::new(Kind::Opportunity);
        let name = if cn(lang) {
            format!("{}{}", account.company.short, self.word(CN_PROJECTS))
        } else {
            format!("{} – {}", account.company.short, self.word(EN_PROJECTS))
        };
        e.set("name", &name)?;
        e.set("account", &account.id.to_string())?;
        if let Some((contact, _)) = account.contacts.first() {
            e.set("primary_contact", &contact.to_string())?;
            e.set("contact_role", self.word(opportunity::CONTACT_ROLES))?;
        }
        e.set("amount", &self.money(20_000, 3_000_000))?;
        let currency = if cn(lang) {
            "CNY"
        } else {
            self.word(&["USD", "USD", "EUR", "GBP"])
        };
        e.set("currency", currency)?;
        let source = self.word(lead::SOURCES);
        e.set("lead_source", source)?;
        if source == "campaign"
            && let Some(campaign) = self.one_of(|s| &s.campaigns)
        {
            e.set("campaign", &campaign.to_string())?;
        }
        if self.chance(0.4) {
            let mut names = vec![self.word(COMPETITORS)];
            if self.chance(0.3) {
                names.push(self.word(COMPETITORS));
            }
            e.set("competitors", &names.join(","))?;
        }
        if !closed {
            let steps = if cn(lang) {
                CN_NEXT_STEPS
            } else {
                EN_NEXT_STEPS
            };
            e.set("next_step", self.word(steps))?;
            if self.chance(0.1) {
                e.set("probability", &self.between(5, 95).to_string())?;
            }
        }
        if self.chance(0.3) {
            e.set(
                "description",
                if cn(lang) {
                    "客户计划分两期实施，一期覆盖总部，二期覆盖各地分公司。"
                } else {
                    "Two phases: head office first, then the regional branches."
                },
            )?;
        }
        owned_by(&mut e, &account.owner)?;

        let order = &opportunity::STAGES[..4];
        let path: Vec<&'static str> = match stage {
            "closed_won" => opportunity::STAGES[..5].to_vec(),
            "closed_lost" => {
                let reached = self.index(order.len()) + 1;
                order[..reached]
                    .iter()
                    .copied()
                    .chain(["closed_lost"])
                    .collect()
            }
            open => order
                .iter()
                .copied()
                .take_while(|s| *s != open)
                .chain([open])
                .collect(),
        };
        // A deal spends days to weeks in each stage, from when the account came in.
        let mut times = Vec::with_capacity(path.len());
        let mut at = self.clock;
        for _ in &path {
            times.push(at);
            at = (at + chrono::Duration::hours(self.between(3 * 24, 30 * 24))).min(self.now);
        }
        let last = times.last().copied().unwrap_or(self.clock);
        if closed {
            e.set("close_date", &last.date_naive().to_string())?;
        } else {
            let days = self.between(7, 180);
            e.set("close_date", &self.date(days))?;
        }
        let closed_at = crm_model::format_time(&last);
        let lost_reason = self.word(opportunity::LOST_REASONS);
        let steps = path
            .iter()
            .zip(times)
            .map(|(&s, at)| {
                let step = Step::new(s).with("forecast_category", forecast(s)).at(at);
                match s {
                    "closed_won" => step.with("closed_at", closed_at.clone()),
                    "closed_lost" => step
                        .with("closed_at", closed_at.clone())
                        .with("lost_reason", lost_reason),
                    _ => step,
                }
            })
            .collect();
        let moved = path.len() > 1 && self.chance(0.6);
        Ok(self.create_through(e, "stage", steps, moved)?.id)
    }

    /// A lead at any status; converted ones name the account, contact and opportunity they
    /// became.
    pub(crate) fn lead(&mut self, account: &Account, opportunity: RecordId) -> Result<()> {
        let status = self.spread(
            "lead.status",
            &[
                ("new", 3),
                ("assigned", 2),
                ("working", 3),
                ("qualified", 2),
                ("converted", 3),
                ("disqualified", 2),
                ("recycled", 1),
            ],
        );
        let converted = status == "converted" && !account.contacts.is_empty();
        let (lang, person, company_name, host) = if converted {
            let (_, person) = &account.contacts[0];
            (
                person.lang,
                person.clone(),
                account.company.name.clone(),
                account.company.host(),
            )
        } else {
            let lang = self.lang();
            let person = self.person(lang);
            let company = self.company(lang, false);
            let host = company.host();
            (lang, person, company.name, host)
        };
        let job = self.pick(JOBS);
        let mut e = Edit::new(Kind::Lead);
        e.set("person_name", &person.full)?;
        e.set("company_name", &company_name)?;
        e.set("title", if cn(lang) { job.cn_title } else { job.en_title })?;
        e.set("email", &format!("{}@{host}", person.email_local))?;
        e.set("phone", &self.mobile(lang))?;
        let source = self.spread(
            "lead.source",
            &[
                ("web_form", 5),
                ("social", 2),
                ("trade_show", 2),
                ("referral", 3),
                ("campaign", 3),
                ("import", 1),
                ("cold_call", 2),
                ("other", 1),
            ],
        );
        e.set("source", source)?;
        let mut from_campaign = None;
        if (source == "campaign" || self.chance(0.3))
            && let Some(campaign) = self.one_of(|s| &s.campaigns)
        {
            e.set("campaign", &campaign.to_string())?;
            from_campaign = Some(campaign);
        }
        let rating = self.word(lead::RATINGS);
        e.set("rating", rating)?;
        let score = match rating {
            "hot" => self.between(70, 100),
            "warm" => self.between(40, 79),
            _ => self.between(0, 45),
        };
        e.set("score", &score.to_string())?;
        if self.chance(0.3) {
            e.set(
                "description",
                if cn(lang) {
                    "展会上留下名片，对移动端和微信集成感兴趣。"
                } else {
                    "Filled in the web form; asked about pricing for 50 seats."
                },
            )?;
        }
        if status == "new" {
            // New leads wait in the managers' queue until someone assigns them.
            let i = self.index(self.org.managers.len());
            let manager = self.org.managers[i].clone();
            owned_by(&mut e, &manager)?;
        } else {
            owned_by(&mut e, &account.owner)?;
        }

        let reason = if cn(lang) {
            self.word(&["无预算", "联系不上", "非目标客户"])
        } else {
            self.word(&["No budget", "Unreachable", "Not our market"])
        };
        let mut steps = vec![Step::new("new")];
        let through_work = ["assigned", "working"];
        match status {
            "new" => {}
            "assigned" => steps.push(Step::new("assigned")),
            "working" => steps.extend(through_work.map(Step::new)),
            "qualified" => {
                steps.extend(through_work.map(Step::new));
                steps.push(Step::new("qualified"));
            }
            "converted" => {
                steps.extend(through_work.map(Step::new));
                steps.push(Step::new("qualified"));
                if let (true, Some((contact, _))) = (converted, account.contacts.first()) {
                    steps.push(
                        Step::new("converted")
                            .with("converted_account", account.id.to_string())
                            .with("converted_contact", contact.to_string())
                            .with("converted_opportunity", opportunity.to_string()),
                    );
                }
            }
            "disqualified" => {
                steps.extend(through_work.map(Step::new));
                steps.push(Step::new("disqualified").with("disqualify_reason", reason));
            }
            other => {
                steps.extend(through_work.map(Step::new));
                steps.push(Step::new(other));
            }
        }
        let mut at = self.clock;
        let steps = steps
            .into_iter()
            .map(|step| {
                let step = step.at(at);
                at = (at + chrono::Duration::hours(self.between(12, 10 * 24))).min(self.now);
                step
            })
            .collect::<Vec<_>>();
        let moved = steps.len() > 1 && self.chance(0.5);
        let id = self.create_through(e, "status", steps, moved)?.id;
        if let Some(campaign) = from_campaign {
            self.campaign_leads.push((campaign, id, status));
        }
        Ok(())
    }
}
