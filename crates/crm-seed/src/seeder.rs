//! The seeding run: the random source, the store writes (counted and timed), and the order
//! in which record kinds are created so every reference points at an existing record.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Timelike, Utc};
use crm_model::{Edit, Kind, Record, RecordId};
use crm_store::{Store, StoreError};
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};

use crate::org::Org;
use crate::{SeedReport, Write};

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// Chinese or English: which word lists a record's text comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lang {
    Cn,
    En,
}

/// A stage or status step: the value, and the fields that change with it (a ticket gets its
/// assignee when assigned, its resolution when resolved).
pub(crate) struct Step {
    pub(crate) value: &'static str,
    pub(crate) fields: Vec<(&'static str, String)>,
    /// When the step happened; the write is stamped with it, so histories, time in stage
    /// and SLA reports see a realistic past. `None`: at the seeder's current clock.
    pub(crate) at: Option<DateTime<Utc>>,
}

impl Step {
    pub(crate) fn new(value: &'static str) -> Self {
        Self {
            value,
            fields: Vec::new(),
            at: None,
        }
    }

    pub(crate) fn at(mut self, at: DateTime<Utc>) -> Self {
        self.at = Some(at);
        self
    }

    pub(crate) fn with(mut self, field: &'static str, value: impl Into<String>) -> Self {
        self.fields.push((field, value.into()));
        self
    }
}

pub(crate) struct Seeder<'s, F> {
    store: &'s mut Store,
    pub(crate) rng: SmallRng,
    /// The moment the data is generated; every date is placed relative to it.
    pub(crate) now: DateTime<Utc>,
    pub(crate) today: NaiveDate,
    report: SeedReport,
    observe: F,
    /// How many values each [`Seeder::spread`] key has handed out.
    spread_counts: BTreeMap<&'static str, usize>,
    /// Names given so far, so account and user names stay unique.
    pub(crate) names: HashSet<String>,
    pub(crate) org: Org,
    pub(crate) campaigns: Vec<RecordId>,
    pub(crate) articles: Vec<RecordId>,
    pub(crate) accounts: Vec<RecordId>,
    pub(crate) contacts: Vec<RecordId>,
    /// Leads a campaign brought in: (campaign, lead, lead status).
    pub(crate) campaign_leads: Vec<(RecordId, RecordId, &'static str)>,
    /// Closed tickets the customer rated: (ticket, contact, score, when).
    pub(crate) rated_tickets: Vec<(RecordId, RecordId, i64, DateTime<Utc>)>,
    /// The simulated present while a record is made: the company's history is laid out
    /// over the past year, account by account, and every write is stamped with it.
    pub(crate) clock: DateTime<Utc>,
}

impl<'s, F: FnMut(Kind, Write, Duration)> Seeder<'s, F> {
    pub(crate) fn new(store: &'s mut Store, seed: u64, observe: F) -> Self {
        let now = Utc::now();
        Self {
            store,
            rng: SmallRng::seed_from_u64(seed),
            now,
            today: now.date_naive(),
            report: SeedReport::default(),
            observe,
            spread_counts: BTreeMap::new(),
            names: HashSet::new(),
            org: Org::default(),
            campaigns: Vec::new(),
            articles: Vec::new(),
            accounts: Vec::new(),
            contacts: Vec::new(),
            campaign_leads: Vec::new(),
            rated_tickets: Vec::new(),
            clock: now,
        }
    }

    pub(crate) fn run(mut self, accounts: usize) -> Result<SeedReport> {
        let result = self.run_inner(accounts);
        self.store.set_clock(None);
        result?;
        Ok(self.report)
    }

    fn run_inner(&mut self, accounts: usize) -> Result<()> {
        // The company started using the CRM a year ago: the organisation and catalogue
        // first, then one account after another up to now.
        let year = chrono::Duration::days(365);
        let start = self.now - year - chrono::Duration::days(14);
        self.set_clock(start);
        self.org(accounts)?;
        self.products(accounts)?;
        self.campaigns(accounts)?;
        self.articles(accounts)?;
        let count = i32::try_from(accounts.max(1)).unwrap_or(i32::MAX);
        for i in 0..accounts {
            let i = i32::try_from(i).unwrap_or(i32::MAX);
            self.set_clock(self.now - year + year / count * i);
            let account = self.account()?;
            let opportunity = self.opportunity(&account)?;
            self.activities(&account, opportunity)?;
            if i % 2 == 0 {
                self.ticket(&account)?;
            } else {
                self.lead(&account, opportunity)?;
            }
        }
        self.set_clock(self.now);
        self.campaign_members()?;
        self.surveys()?;
        Ok(())
    }

    /// Moves the simulated present (never past the real one).
    pub(crate) fn set_clock(&mut self, at: DateTime<Utc>) {
        self.clock = at.min(self.now);
        self.store.set_clock(Some(self.clock));
    }

    /// Creates a record, counting and timing the store call.
    pub(crate) fn create(&mut self, edit: &Edit) -> Result<Record> {
        let start = Instant::now();
        let record = self.store.create(edit)?;
        (self.observe)(edit.kind(), Write::Create, start.elapsed());
        *self.report.counts.entry(edit.kind()).or_default() += 1;
        Ok(record)
    }

    /// Edits a record, timing the store call.
    pub(crate) fn edit(&mut self, id: RecordId, edit: &Edit) -> Result<Record> {
        let start = Instant::now();
        let record = self.store.edit(id, edit)?;
        (self.observe)(edit.kind(), Write::Edit, start.elapsed());
        Ok(record)
    }

    /// Creates a record from `base` that went through `steps` of its stage or status
    /// `field`: either created at the first step and then moved step by step with one edit
    /// each (so its history shows every step), or created at the last step directly.
    pub(crate) fn create_through(
        &mut self,
        mut base: Edit,
        field: &'static str,
        steps: Vec<Step>,
        moved: bool,
    ) -> Result<Record> {
        let kind = base.kind();
        let resume = self.clock;
        let mut steps = steps.into_iter();
        let Some(first) = steps.next() else {
            return self.create(&base);
        };
        if let Some(at) = first.at {
            self.set_clock(at);
        }
        if moved {
            set_step(&mut base, field, first)?;
            let mut record = self.create(&base)?;
            for step in steps {
                if let Some(at) = step.at {
                    self.set_clock(at);
                }
                let mut e = Edit::new(kind);
                set_step(&mut e, field, step)?;
                record = self.edit(record.id, &e)?;
            }
            self.set_clock(resume);
            Ok(record)
        } else {
            let mut last = first.value;
            for step in std::iter::once(first).chain(steps) {
                for (name, value) in &step.fields {
                    base.set(name, value)?;
                }
                last = step.value;
            }
            base.set(field, last)?;
            let record = self.create(&base);
            self.set_clock(resume);
            record
        }
    }

    /// One of `items`, weighted; the first `items.len()` calls with the same `key` hand out
    /// every item once, so even a small data set covers every stage and status.
    pub(crate) fn spread(
        &mut self,
        key: &'static str,
        items: &[(&'static str, u32)],
    ) -> &'static str {
        let n = self.spread_counts.entry(key).or_default();
        let i = *n;
        *n += 1;
        if i < items.len() {
            return items[i].0;
        }
        let total: u32 = items.iter().map(|(_, w)| w).sum();
        let mut x = self.rng.random_range(0..total.max(1));
        for (item, weight) in items {
            if x < *weight {
                return item;
            }
            x -= weight;
        }
        items[0].0
    }

    pub(crate) fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    pub(crate) fn between(&mut self, lo: i64, hi: i64) -> i64 {
        self.rng.random_range(lo..=hi)
    }

    pub(crate) fn pick<T>(&mut self, items: &'static [T]) -> &'static T {
        &items[self.rng.random_range(..items.len())]
    }

    /// One of the words.
    pub(crate) fn word(&mut self, items: &[&'static str]) -> &'static str {
        items[self.rng.random_range(..items.len())]
    }

    /// A random index below `len` (which must not be 0).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.rng.random_range(..len.max(1))
    }

    /// One of the ids `which` names (say, the campaigns), or `None` when there are none.
    pub(crate) fn one_of(&mut self, which: fn(&Self) -> &[RecordId]) -> Option<RecordId> {
        let len = which(self).len();
        if len == 0 {
            return None;
        }
        let i = self.rng.random_range(..len);
        Some(which(self)[i])
    }

    pub(crate) fn lang(&mut self) -> Lang {
        if self.chance(0.6) { Lang::Cn } else { Lang::En }
    }

    /// `YYYY-MM-DD`, `days` from today.
    pub(crate) fn date(&self, days: i64) -> String {
        (self.today + chrono::Duration::days(days))
            .format("%Y-%m-%d")
            .to_string()
    }

    /// An RFC 3339 time `minutes` from now, on the minute.
    pub(crate) fn time(&self, minutes: i64) -> String {
        let t = self.now + chrono::Duration::minutes(minutes);
        crm_model::format_time(&t.with_second(0).unwrap_or(t))
    }

    /// A money amount with a round number of hundreds between `lo` and `hi`.
    pub(crate) fn money(&mut self, lo: i64, hi: i64) -> String {
        (self.between(lo / 100, hi / 100) * 100).to_string()
    }
}

fn set_step(edit: &mut Edit, field: &str, step: Step) -> Result<()> {
    edit.set(field, step.value)?;
    for (name, value) in &step.fields {
        edit.set(name, value)?;
    }
    Ok(())
}

/// The ids as a comma-separated set value.
pub(crate) fn id_set(ids: &[RecordId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}
