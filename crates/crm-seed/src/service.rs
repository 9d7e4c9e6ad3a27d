//! Service: tickets opened by an account's contacts, worked by support agents.

use std::time::Duration;

use crm_model::kinds::ticket;
use crm_model::{Edit, Kind};

use crate::Write;
use crate::accounts::Account;
use crate::org::{cn, owned_by};
use crate::seeder::{Result, Seeder, Step};
use crate::words::{CN_RESOLUTIONS, EN_RESOLUTIONS, TICKET_SUBJECTS};

const MINUTES_PER_DAY: i64 = 24 * 60;

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// A ticket of the account at any status and priority; many reached their status by
    /// moves, so their status history shows the way.
    pub(crate) fn ticket(&mut self, account: &Account) -> Result<()> {
        let lang = account.lang();
        let (cn_subject, en_subject, kind) = *self.pick(TICKET_SUBJECTS);
        let status = self.spread(
            "ticket.status",
            &[
                ("new", 2),
                ("assigned", 2),
                ("in_progress", 3),
                ("pending_customer", 2),
                ("resolved", 3),
                ("closed", 5),
                ("rejected", 1),
                ("duplicate", 1),
            ],
        );
        let priority = self.spread(
            "ticket.priority",
            &[("normal", 5), ("high", 3), ("low", 2), ("urgent", 1)],
        );
        let mut e = Edit::new(Kind::Ticket);
        e.set("subject", if cn(lang) { cn_subject } else { en_subject })?;
        e.set(
            "description",
            &if cn(lang) {
                format!("客户来电反映：{cn_subject}。请尽快处理并回复客户。")
            } else {
                format!("Customer reports: {en_subject}. Please investigate and reply.")
            },
        )?;
        e.set("account", &account.id.to_string())?;
        let mut contact = None;
        if !account.contacts.is_empty() {
            let i = self.index(account.contacts.len());
            e.set("contact", &account.contacts[i].0.to_string())?;
            contact = Some(account.contacts[i].0);
        }
        e.set("type", kind)?;
        e.set("priority", priority)?;
        e.set("channel", self.word(ticket::CHANNELS))?;
        if let Some(team) = self.org.support_team {
            e.set("team", &team.to_string())?;
        }
        // Times in minutes from now, in order, none in the future.
        // Urgent tickets are answered in minutes, low ones in hours. The upper bounds are a
        // little past the default SLA (urgent 1 h / 4 h, high 4 h / 1 d, normal 1 d / 3 d,
        // low 2 d / 5 d), so some tickets miss it.
        let (respond, resolve) = match priority {
            "urgent" => ((5, 75), (30, 4 * 60)),
            "high" => ((15, 5 * 60), (60, 20 * 60)),
            "low" => ((60, 60 * 60), (6 * 60, 4 * MINUTES_PER_DAY)),
            _ => ((30, 30 * 60), (2 * 60, 2 * MINUTES_PER_DAY + 12 * 60)),
        };
        // Settled tickets spread over two months; open ones came in over the last few days.
        let open = matches!(
            status,
            "new" | "assigned" | "in_progress" | "pending_customer"
        );
        let opened = if open {
            -self.between(30, 4 * MINUTES_PER_DAY)
        } else {
            -self.between(7 * MINUTES_PER_DAY, 60 * MINUTES_PER_DAY)
        };
        let responded = (opened + self.between(respond.0, respond.1)).min(-3);
        let resolved = (responded + self.between(resolve.0, resolve.1)).min(-2);
        let closed = (resolved + self.between(60, 3 * MINUTES_PER_DAY)).min(-1);
        let assigned_at = (opened + 2).min(responded);
        let at = |minutes: i64| self.now + chrono::Duration::minutes(minutes);
        let (t_opened, t_assigned, t_responded, t_resolved, t_closed) = (
            at(opened),
            at(assigned_at),
            at(responded),
            at(resolved),
            at(closed),
        );
        e.set("opened_at", &self.time(opened))?;
        let agent = self.agent();
        let lead_agent = self.org.agents[0].clone();
        owned_by(&mut e, if status == "new" { &lead_agent } else { &agent })?;

        let assigned = Step::new("assigned")
            .with("assignee", agent.id.to_string())
            .at(t_assigned);
        let working = Step::new("in_progress")
            .with("first_response_at", self.time(responded))
            .at(t_responded);
        let resolutions = if cn(lang) {
            CN_RESOLUTIONS
        } else {
            EN_RESOLUTIONS
        };
        let mut resolved_step = Step::new("resolved")
            .at(t_resolved)
            .with("resolved_at", self.time(resolved))
            .with("resolution", self.word(resolutions));
        if self.chance(0.4)
            && let Some(article) = self.one_of(|s| &s.articles)
        {
            resolved_step = resolved_step.with("articles", article.to_string());
        }
        let mut rating = None;
        let mut closed_step = Step::new("closed")
            .with("closed_at", self.time(closed))
            .at(t_closed);
        if self.chance(0.7) {
            let score = *self.pick(&[1, 2, 3, 4, 4, 5, 5, 5]);
            closed_step = closed_step.with("satisfaction", score.to_string());
            rating = Some(score);
            if score <= 2 {
                closed_step = closed_step.with(
                    "satisfaction_comment",
                    if cn(lang) {
                        "处理太慢"
                    } else {
                        "Took too long"
                    },
                );
            } else if self.chance(0.3) {
                closed_step = closed_step.with(
                    "satisfaction_comment",
                    if cn(lang) {
                        "服务很专业"
                    } else {
                        "Very helpful"
                    },
                );
            }
        }
        let mut steps = vec![Step::new("new").at(t_opened)];
        match status {
            "new" => {}
            "assigned" => steps.push(assigned),
            "in_progress" => steps.extend([assigned, working]),
            "pending_customer" => steps.extend([
                assigned,
                working,
                Step::new("pending_customer").at(t_resolved),
            ]),
            "resolved" => steps.extend([assigned, working, resolved_step]),
            "closed" => steps.extend([assigned, working, resolved_step, closed_step]),
            other => steps.push(
                Step::new(other)
                    .with("closed_at", self.time(responded))
                    .at(t_responded),
            ),
        }
        let moved = steps.len() > 1 && self.chance(0.5);
        let id = self.create_through(e, "status", steps, moved)?.id;
        if let (true, Some(score), Some(contact)) = (status == "closed", rating, contact) {
            self.rated_tickets.push((id, contact, score, t_closed));
        }
        Ok(())
    }
}
