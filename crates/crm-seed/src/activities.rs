//! Activities: calls, meetings, tasks (some overdue), emails and notes about an account.

use std::time::Duration;

use crm_model::{Edit, Kind, RecordId};

use crate::Write;
use crate::accounts::Account;
use crate::org::{cn, owned_by};
use crate::seeder::{Result, Seeder, id_set};
use crate::words::{CN_OUTCOMES, CN_TASKS, CN_TOPICS, EN_OUTCOMES, EN_TASKS, EN_TOPICS};

const MINUTES_PER_DAY: i64 = 24 * 60;

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// Two to four activities targeting the account, often also a contact and the
    /// opportunity.
    pub(crate) fn activities(&mut self, account: &Account, opportunity: RecordId) -> Result<()> {
        for _ in 0..self.between(2, 4) {
            self.activity(account, opportunity)?;
        }
        Ok(())
    }

    fn activity(&mut self, account: &Account, opportunity: RecordId) -> Result<()> {
        let lang = account.lang();
        let kind = self.spread(
            "activity.type",
            &[
                ("call", 30),
                ("meeting", 20),
                ("task", 30),
                ("email", 12),
                ("note", 8),
            ],
        );
        let contact = if account.contacts.is_empty() || self.chance(0.3) {
            None
        } else {
            let i = self.index(account.contacts.len());
            Some(&account.contacts[i])
        };
        let contact_name = contact.map_or_else(
            || account.company.short.clone(),
            |(_, person)| person.full.clone(),
        );
        let topic = if cn(lang) {
            self.word(CN_TOPICS)
        } else {
            self.word(EN_TOPICS)
        };
        let mut targets = vec![account.id];
        if let Some((id, _)) = contact {
            targets.push(*id);
        }
        if self.chance(0.5) {
            targets.push(opportunity);
        }

        let mut e = Edit::new(Kind::Activity);
        e.set("type", kind)?;
        e.set("targets", &id_set(&targets))?;
        e.set("assignee", &account.owner.id.to_string())?;
        owned_by(&mut e, &account.owner)?;
        let priority = self.spread(
            "activity.priority",
            &[("normal", 6), ("high", 2), ("low", 2), ("urgent", 1)],
        );
        e.set("priority", priority)?;
        match kind {
            "call" | "meeting" => {
                let call = kind == "call";
                let subject = match (call, cn(lang)) {
                    (true, true) => format!("与{contact_name}电话沟通：{topic}"),
                    (true, false) => format!("Call with {contact_name}: {topic}"),
                    (false, true) => format!("拜访{}：{topic}", account.company.short),
                    (false, false) => format!("Meeting at {}: {topic}", account.company.short),
                };
                e.set("subject", &subject)?;
                let past = self.chance(0.7);
                let start = if past {
                    -self.between(60, 60 * MINUTES_PER_DAY)
                } else {
                    self.between(60, 14 * MINUTES_PER_DAY)
                };
                let minutes = if call {
                    self.between(5, 45)
                } else {
                    self.between(30, 120)
                };
                e.set("start", &self.time(start))?;
                e.set("end", &self.time(start + minutes))?;
                e.set("duration_minutes", &minutes.to_string())?;
                e.set(
                    "participants",
                    &format!("{contact_name},{}", account.owner.name),
                )?;
                let channel = match (call, cn(lang)) {
                    (true, true) => self.word(&["phone", "wechat"]),
                    (true, false) => "phone",
                    (false, _) => self.word(&["meeting", "meeting", "video"]),
                };
                e.set("channel", channel)?;
                if call {
                    e.set("direction", self.word(&["outbound", "outbound", "inbound"]))?;
                }
                if past {
                    let held = self.chance(0.8);
                    e.set("status", if held { "held" } else { "not_held" })?;
                    if held {
                        let outcomes = if cn(lang) { CN_OUTCOMES } else { EN_OUTCOMES };
                        e.set("outcome", self.word(outcomes))?;
                        e.set("completed_at", &self.time(start + minutes))?;
                    }
                } else {
                    e.set("status", "planned")?;
                    e.set("reminder_minutes", self.word(&["15", "30", "60"]))?;
                    e.set("reminder_channel", self.word(&["popup", "email", "sms"]))?;
                }
            }
            "task" => {
                let tasks = if cn(lang) { CN_TASKS } else { EN_TASKS };
                e.set("subject", self.word(tasks))?;
                let days = self.between(-20, 30);
                let due = days * MINUTES_PER_DAY + self.between(-240, 240);
                e.set("due", &self.time(due))?;
                let x = self.between(0, 99);
                let status = if due < 0 {
                    // Past due: many are done, but plenty are overdue.
                    match x {
                        0..=44 => "completed",
                        45..=69 => "not_started",
                        70..=89 => "in_progress",
                        90..=94 => "cancelled",
                        _ => "deferred",
                    }
                } else {
                    match x {
                        0..=49 => "not_started",
                        50..=84 => "in_progress",
                        85..=94 => "deferred",
                        _ => "completed",
                    }
                };
                e.set("status", status)?;
                if status == "completed" {
                    let done = due.min(0) - self.between(30, 3 * MINUTES_PER_DAY);
                    e.set("completed_at", &self.time(done))?;
                } else if due > 0 && self.chance(0.5) {
                    e.set("reminder_minutes", self.word(&["30", "60", "1440"]))?;
                    e.set("reminder_channel", self.word(&["popup", "email"]))?;
                }
            }
            "email" => {
                let subject = if cn(lang) {
                    format!("发送资料：{topic}")
                } else {
                    format!("Re: {topic}")
                };
                e.set("subject", &subject)?;
                e.set("direction", self.word(&["outbound", "inbound"]))?;
                e.set("channel", "email")?;
                let at = -self.between(60, 45 * MINUTES_PER_DAY);
                e.set("start", &self.time(at))?;
                e.set(
                    "body",
                    &if cn(lang) {
                        format!("{contact_name}您好，附件是我们讨论的{topic}相关资料，请查收。")
                    } else {
                        format!(
                            "Hi {contact_name}, attached is the material on {topic} we discussed."
                        )
                    },
                )?;
            }
            _ => {
                let subject = if cn(lang) {
                    format!("备注：{topic}")
                } else {
                    format!("Note: {topic}")
                };
                e.set("subject", &subject)?;
                e.set(
                    "body",
                    if cn(lang) {
                        "客户提到下季度可能有新增采购，需要提前准备方案。"
                    } else {
                        "Customer mentioned a possible extra order next quarter."
                    },
                )?;
            }
        }
        self.create(&e)?;
        Ok(())
    }
}
