//! The organisation that works the data: users (managers, sales reps, support agents) and
//! their teams.

use std::time::Duration;

use crm_model::{Edit, Kind, RecordId};

use crate::Write;
use crate::seeder::{Lang, Result, Seeder, id_set};

/// A seeded user.
#[derive(Clone, Debug)]
pub(crate) struct User {
    pub(crate) id: RecordId,
    pub(crate) name: String,
    pub(crate) team: Option<RecordId>,
}

#[derive(Debug, Default)]
pub(crate) struct Org {
    pub(crate) managers: Vec<User>,
    pub(crate) reps: Vec<User>,
    pub(crate) agents: Vec<User>,
    pub(crate) support_team: Option<RecordId>,
}

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// Users in proportion to the data (at least a manager, three reps and two agents) and
    /// two or three teams: one or two sales teams and customer service.
    pub(crate) fn org(&mut self, accounts: usize) -> Result<()> {
        let sales_teams = if accounts >= 20 { 2 } else { 1 };
        let reps = (accounts / 40).clamp(3, 24);
        let agents = (accounts / 100).clamp(2, 10);
        for _ in 0..sales_teams {
            let user = self.user("sales_manager", true)?;
            self.org.managers.push(user);
        }
        for i in 0..reps {
            // Someone left the company but still owns their old records.
            let active = !(reps >= 6 && i == reps - 1);
            let user = self.user("sales_rep", active)?;
            self.org.reps.push(user);
        }
        for _ in 0..agents {
            let user = self.user("support_agent", true)?;
            self.org.agents.push(user);
        }

        let team_names: &[&str] = if sales_teams == 2 {
            &["华南销售部", "International Sales"]
        } else {
            &["销售部"]
        };
        for (t, name) in team_names.iter().enumerate() {
            let manager = self.org.managers[t].id;
            let members: Vec<RecordId> = self
                .org
                .reps
                .iter()
                .enumerate()
                .filter(|(i, _)| i % sales_teams == t)
                .map(|(_, u)| u.id)
                .chain([manager])
                .collect();
            let mut e = Edit::new(Kind::Team);
            e.set("name", name)?;
            e.set("manager", &manager.to_string())?;
            e.set("members", &id_set(&members))?;
            let team = self.create(&e)?.id;
            self.org.managers[t].team = Some(team);
            for (i, rep) in self.org.reps.iter_mut().enumerate() {
                if i % sales_teams == t {
                    rep.team = Some(team);
                }
            }
        }

        let members: Vec<RecordId> = self.org.agents.iter().map(|u| u.id).collect();
        let mut e = Edit::new(Kind::Team);
        e.set("name", "客户服务部 Customer Service")?;
        e.set("manager", &members[0].to_string())?;
        e.set("members", &id_set(&members))?;
        let team = self.create(&e)?.id;
        self.org.support_team = Some(team);
        for agent in &mut self.org.agents {
            agent.team = Some(team);
        }
        Ok(())
    }

    fn user(&mut self, role: &str, active: bool) -> Result<User> {
        let lang = self.lang();
        let mut person = self.person(lang);
        for _ in 0..20 {
            if !self.names.contains(&person.full) {
                break;
            }
            person = self.person(lang);
        }
        let mut name = person.full.clone();
        let mut n = 2;
        while self.names.contains(&name) {
            name = format!("{} {n}", person.full);
            n += 1;
        }
        self.names.insert(name.clone());
        let mut e = Edit::new(Kind::User);
        e.set("name", &name)?;
        let local = if n > 2 {
            format!("{}{}", person.email_local, n - 1)
        } else {
            person.email_local.clone()
        };
        e.set("email", &format!("{local}@example.com"))?;
        e.set("role", role)?;
        e.set("active", if active { "true" } else { "false" })?;
        let id = self.create(&e)?.id;
        Ok(User {
            id,
            name,
            team: None,
        })
    }

    /// A sales rep to own a customer record, with the owner and team fields to set.
    pub(crate) fn rep(&mut self) -> User {
        let i = self.index(self.org.reps.len());
        self.org.reps[i].clone()
    }

    /// A support agent to work a ticket.
    pub(crate) fn agent(&mut self) -> User {
        let i = self.index(self.org.agents.len());
        self.org.agents[i].clone()
    }
}

/// Sets `owner` and `teams` of a new record to `user` and their team.
pub(crate) fn owned_by(edit: &mut Edit, user: &User) -> Result<()> {
    edit.set("owner", &user.id.to_string())?;
    if let Some(team) = user.team {
        edit.set("teams", &team.to_string())?;
    }
    Ok(())
}

/// Whether `lang` is Chinese; a shorthand for the text choices.
pub(crate) fn cn(lang: Lang) -> bool {
    lang == Lang::Cn
}
