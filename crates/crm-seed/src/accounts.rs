//! Accounts and the contacts who work there.

use std::time::Duration;

use crm_model::kinds::account::SIZES;
use crm_model::{Edit, Kind, RecordId};

use crate::Write;
use crate::names::{Company, Person};
use crate::org::{User, cn, owned_by};
use crate::seeder::{Lang, Result, Seeder, Step};
use crate::words::{
    ACCOUNT_SOURCES, CN_ACCOUNT_NOTES, CN_ACCOUNT_TAGS, EN_ACCOUNT_NOTES, EN_ACCOUNT_TAGS, JOBS,
};

/// An account just created, with what its related records need.
pub(crate) struct Account {
    pub(crate) id: RecordId,
    pub(crate) company: Company,
    pub(crate) owner: User,
    pub(crate) contacts: Vec<(RecordId, Person)>,
}

impl Account {
    pub(crate) fn lang(&self) -> Lang {
        self.company.lang
    }
}

/// Employee ranges of the size bands, in the order of [`SIZES`].
const EMPLOYEES: &[(i64, i64)] = &[
    (2, 10),
    (11, 50),
    (51, 200),
    (201, 1000),
    (1001, 5000),
    (5001, 40000),
];

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// An account and its one to three contacts.
    pub(crate) fn account(&mut self) -> Result<Account> {
        let lang = self.lang();
        let company = self.company(lang, true);
        let owner = self.rep();
        let host = company.host();
        let mut e = Edit::new(Kind::Account);
        e.set("name", &company.name)?;
        e.set("short_name", &company.short)?;
        e.set("industry", company.trade.industry)?;
        let size = self.index(SIZES.len());
        e.set("size", SIZES[size])?;
        let (lo, hi) = EMPLOYEES[size];
        e.set("employees", &self.between(lo, hi).to_string())?;
        e.set("website", &company.domain)?;
        let mut emails = vec![format!("info@{host}")];
        if self.chance(0.5) {
            emails.push(format!("sales@{host}"));
        }
        e.set("emails", &emails.join(","))?;
        let mut phones = vec![company.phone.clone()];
        if self.chance(0.3) {
            phones.push(self.mobile(lang));
        }
        e.set("phones", &phones.join(","))?;
        e.set("billing_address", &company.address)?;
        if self.chance(0.3) {
            e.set("shipping_address", &company.address)?;
        }
        let kind = self.spread(
            "account.type",
            &[
                ("customer", 45),
                ("prospect", 30),
                ("partner", 8),
                ("distributor", 8),
                ("competitor", 3),
                ("other", 6),
            ],
        );
        e.set("type", kind)?;
        let grade = self.spread(
            "account.grade",
            &[("vip", 1), ("key", 2), ("normal", 5), ("low", 2)],
        );
        e.set("grade", grade)?;
        if self.chance(0.05)
            && let Some(parent) = self.one_of(|s| &s.accounts)
        {
            e.set("parent", &parent.to_string())?;
        }
        e.set("source", self.word(ACCOUNT_SOURCES))?;
        e.set("annual_revenue", &self.money(500_000, 900_000_000))?;
        if self.chance(0.5) {
            let year = self.between(1988, 2022);
            let text = if cn(lang) {
                format!(
                    "{}成立于{year}年，主营{}相关业务，在{}设有办事处。",
                    company.name, company.trade.cn, company.address
                )
            } else {
                format!(
                    "Founded in {year}, {} works in {}. Head office: {}.",
                    company.name,
                    company.trade.industry.replace('_', " "),
                    company.address
                )
            };
            e.set("description", &text)?;
        }
        let tags = if cn(lang) {
            CN_ACCOUNT_TAGS
        } else {
            EN_ACCOUNT_TAGS
        };
        for _ in 0..self.between(0, 3) {
            e.tag(self.word(tags))?;
        }
        if self.chance(0.4) {
            let notes = if cn(lang) {
                CN_ACCOUNT_NOTES
            } else {
                EN_ACCOUNT_NOTES
            };
            e.replace_notes(self.word(notes))?;
        }
        owned_by(&mut e, &owner)?;

        // The lifecycle follows the type; some customers are walked through it by edits.
        let path: &[&'static str] = match kind {
            "customer" => match self.between(0, 9) {
                0..=2 => &["prospect", "contacted", "converted"],
                3..=6 => &["prospect", "contacted", "converted", "active"],
                7..=8 => &["prospect", "contacted", "converted", "active", "loyal"],
                _ => &["prospect", "contacted", "converted", "active", "churned"],
            },
            "prospect" => {
                if self.chance(0.5) {
                    &["prospect"]
                } else {
                    &["prospect", "contacted"]
                }
            }
            "competitor" | "other" => &["prospect"],
            _ => &["prospect", "contacted", "converted", "active"],
        };
        let steps = path.iter().map(|&v| Step::new(v)).collect();
        let moved = path.len() > 1 && self.chance(0.3);
        let id = self.create_through(e, "lifecycle", steps, moved)?.id;
        self.accounts.push(id);

        let mut account = Account {
            id,
            company,
            owner,
            contacts: Vec::new(),
        };
        for _ in 0..self.between(1, 3) {
            let contact = self.contact(&account)?;
            self.contacts.push(contact.0);
            account.contacts.push(contact);
        }
        Ok(account)
    }

    fn contact(&mut self, account: &Account) -> Result<(RecordId, Person)> {
        let lang = if self.chance(0.9) {
            account.lang()
        } else {
            self.lang()
        };
        let person = self.person(lang);
        let job = self.pick(JOBS);
        let host = account.company.host();
        let mut e = Edit::new(Kind::Contact);
        e.set("first_name", &person.first)?;
        e.set("last_name", &person.last)?;
        e.set("title", if cn(lang) { job.cn_title } else { job.en_title })?;
        e.set(
            "department",
            if cn(lang) { job.cn_dept } else { job.en_dept },
        )?;
        e.set("account", &account.id.to_string())?;
        if self.chance(0.05)
            && let Some(other) = self.one_of(|s| &s.accounts)
            && other != account.id
        {
            e.set("other_accounts", &other.to_string())?;
        }
        let mut emails = vec![format!("{}@{host}", person.email_local)];
        if self.chance(0.2) {
            let free = if cn(lang) {
                self.word(&["163.com", "qq.com", "126.com"])
            } else {
                self.word(&["gmail.com", "outlook.com"])
            };
            emails.push(format!(
                "{}{}@{free}",
                person.email_local,
                self.between(1, 99)
            ));
        }
        e.set("emails", &emails.join(","))?;
        let mut phones = vec![self.mobile(lang)];
        if self.chance(0.3) {
            phones.push(account.company.phone.clone());
        }
        e.set("phones", &phones.join(","))?;
        let channel = if cn(lang) {
            self.word(&["wechat", "wechat", "phone", "email", "meeting"])
        } else {
            self.word(&["email", "email", "phone", "meeting", "other"])
        };
        e.set("preferred_channel", channel)?;
        if self.chance(0.3) {
            let birthday = format!(
                "{}-{:02}-{:02}",
                self.between(1960, 2000),
                self.between(1, 12),
                self.between(1, 28)
            );
            e.set("birthday", &birthday)?;
        }
        let decides = job.decides && self.chance(0.8);
        e.set("decision_maker", if decides { "true" } else { "false" })?;
        if self.chance(0.03) {
            e.set("do_not_contact", "true")?;
        }
        if decides {
            e.tag(if cn(lang) {
                "决策人"
            } else {
                "decision-maker"
            })?;
        }
        if self.chance(0.2) {
            e.replace_notes(if cn(lang) {
                "喜欢微信沟通，工作日上午比较好联系。"
            } else {
                "Prefers short emails; reachable mornings."
            })?;
        }
        owned_by(&mut e, &account.owner)?;
        let id = self.create(&e)?.id;
        Ok((id, person))
    }
}
