//! Realistic sample data for a replica, written through the [`crm_store::Store`] API and
//! deterministic from a seed.
//!
//! - [`seed`] fills a store from [`SeedOptions`] (how many accounts, which seed) and returns a
//!   [`SeedReport`] with how many records of each [`Kind`] it created.
//! - [`seed_with`] does the same and hands every store write ([`Write::Create`] or
//!   [`Write::Edit`]) and its duration to an observer, which is how `crm-bench` times each
//!   `Store::create` call on a realistic mix of records.
//!
//! For N accounts the data set holds a few users (sales managers, reps, support agents) and
//! two or three teams, some products, a few campaigns and knowledge articles, then per
//! account: the account (Chinese names like 深圳星光贸易有限公司 and English ones like
//! "Northwind Traders Ltd"), about two contacts, one opportunity, about three activities,
//! half a ticket and half a lead — about 8 records per account. Stages and statuses cover
//! every value of their schema; some opportunities, tickets, leads and accounts are moved
//! through their stages by later edits, so their histories hold several entries. Every
//! reference points at a record created earlier.
//!
//! The data tells a year of the company's life: accounts come in one after another over the
//! past year, and every write is stamped with its simulated time (`Store::set_clock`), so
//! deals spend days to weeks in each stage, tickets are answered in minutes or days by
//! priority (some miss their SLA), and the reports read realistic durations. Campaigns end
//! with results: their leads and about one contact in five are members with response
//! statuses, and closed, rated tickets and one campaign have survey responses.
//!
//! The field values depend only on the seed and on the time the data is generated (with
//! the same `rand` version: its `SmallRng` is fast but not promised to be stable across
//! versions or platforms). Dates (close dates, due dates, ticket times) are placed relative
//! to that time, so that some tasks are overdue and some deals close next month whenever the
//! data is made. Record ids and creation times come from the store and differ on every run.

mod accounts;
mod activities;
mod catalog;
mod marketing;
mod names;
mod org;
mod sales;
mod seeder;
mod service;
mod words;

use std::collections::BTreeMap;
use std::time::Duration;

use crm_model::Kind;
use crm_store::{Store, StoreError};

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedOptions {
    /// How many accounts; every other count follows from it.
    pub accounts: usize,
    /// The random seed: the same seed gives the same field values.
    pub seed: u64,
}

/// How many records of each kind [`seed`] created.
#[derive(Debug, Default)]
pub struct SeedReport {
    pub counts: BTreeMap<Kind, usize>,
}

impl SeedReport {
    /// The number of records created, all kinds together.
    pub fn total(&self) -> usize {
        self.counts.values().sum()
    }
}

/// A store write made while seeding, as reported to the observer of [`seed_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// A `Store::create` call: one new record.
    Create,
    /// A `Store::edit` call: a stage or status move of an existing record.
    Edit,
}

/// Fills `store` with sample data; see the crate documentation for what it creates.
pub fn seed(store: &mut Store, opts: &SeedOptions) -> Result<SeedReport, StoreError> {
    seed_with(store, opts, |_, _, _| {})
}

/// Like [`seed`], and calls `observe` after every store write with the record's kind, the
/// kind of write and how long the store call took (including its SQLite commit).
pub fn seed_with(
    store: &mut Store,
    opts: &SeedOptions,
    observe: impl FnMut(Kind, Write, Duration),
) -> Result<SeedReport, StoreError> {
    seeder::Seeder::new(store, opts.seed, observe).run(opts.accounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_store::{Filter, ListQuery};

    fn seeded(accounts: usize, seed: u64) -> (tempfile::TempDir, Store, SeedReport) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "admin", "seed-test").expect("init");
        let report = super::seed(&mut store, &SeedOptions { accounts, seed }).expect("seed");
        (dir, store, report)
    }

    #[test]
    fn counts_match_the_store() {
        let (_dir, store, report) = seeded(5, 7);
        assert_eq!(report.counts[&Kind::Account], 5);
        for (kind, n) in &report.counts {
            // `Store::init` creates the local user's own User record besides the seeded ones.
            let extra = usize::from(*kind == Kind::User);
            let stored = usize::try_from(store.count(*kind, true).expect("count")).expect("fits");
            assert_eq!(stored, n + extra, "{kind}");
        }
        for kind in [
            Kind::User,
            Kind::Team,
            Kind::Account,
            Kind::Contact,
            Kind::Lead,
            Kind::Opportunity,
            Kind::Activity,
            Kind::Campaign,
            Kind::Product,
            Kind::Article,
        ] {
            assert!(report.counts.get(&kind).copied().unwrap_or(0) > 0, "{kind}");
            let rows = store.list(&ListQuery::new(kind)).expect("list");
            assert!(!rows.is_empty(), "no {kind} listed");
        }
        assert_eq!(report.counts[&Kind::Opportunity], 5);
        assert!((5..=15).contains(&report.counts[&Kind::Contact]));
        assert!((10..=20).contains(&report.counts[&Kind::Activity]));
    }

    #[test]
    fn chinese_and_english_text_is_searchable() {
        let (_dir, store, _) = seeded(5, 7);
        let hits = store.search("有限公司", None, false, 50).expect("search");
        assert!(!hits.is_empty(), "no Chinese company found");
        // Two characters take the substring fallback rather than the trigram index.
        let hits = store.search("公司", None, false, 50).expect("search");
        assert!(!hits.is_empty(), "no two-character match");
        let hits = store
            .search("example.com", None, false, 50)
            .expect("search");
        assert!(!hits.is_empty(), "no user email found");
    }

    #[test]
    fn references_point_at_seeded_records() {
        let (_dir, mut store, _) = seeded(5, 11);
        let mut q = ListQuery::new(Kind::Contact);
        q.limit = 1000;
        for row in store.list(&q).expect("list") {
            let account = row.json["account"]
                .as_str()
                .expect("contact has an account");
            let account = account.parse().expect("an id");
            store
                .get_kind(Kind::Account, account)
                .expect("the account exists");
        }
    }

    #[test]
    fn stage_moves_leave_history() {
        let (_dir, mut store, _) = seeded(12, 3);
        let mut q = ListQuery::new(Kind::Opportunity);
        q.limit = 1000;
        let mut longest = 0;
        for row in store.list(&q).expect("list") {
            let record = store.get(row.id).expect("get");
            longest = longest.max(record.history.get("stage").map_or(0, Vec::len));
        }
        assert!(longest >= 3, "no opportunity moved through stages");
    }

    #[test]
    fn enough_accounts_cover_every_stage_and_status() {
        let (_dir, store, _) = seeded(24, 5);
        let covers = |kind: Kind, field: &str, values: &[&str]| {
            for value in values {
                let mut q = ListQuery::new(kind);
                q.filters.push(Filter {
                    field: field.into(),
                    cmp: crm_store::Cmp::Eq,
                    value: (*value).into(),
                });
                let rows = store.list(&q).expect("list");
                assert!(!rows.is_empty(), "no {kind} with {field}={value}");
            }
        };
        covers(
            Kind::Opportunity,
            "stage",
            crm_model::kinds::opportunity::STAGES,
        );
        covers(Kind::Lead, "status", crm_model::kinds::lead::STATUSES);
        covers(Kind::Ticket, "status", crm_model::kinds::ticket::STATUSES);
        covers(
            Kind::Ticket,
            "priority",
            crm_model::kinds::ticket::PRIORITIES,
        );
        covers(Kind::Account, "grade", crm_model::kinds::account::GRADES);
    }

    #[test]
    fn a_year_of_history_with_campaign_results() {
        let (_dir, mut store, report) = seeded(40, 9);
        let mut q = ListQuery::new(Kind::Account);
        q.limit = 1000;
        let created: Vec<String> = store
            .list(&q)
            .expect("list")
            .into_iter()
            .filter_map(|r| r.json["created_at"].as_str().map(String::from))
            .collect();
        let (first, last) = (
            created.iter().min().expect("accounts"),
            created.iter().max().expect("accounts"),
        );
        let days = |s: &str| {
            chrono::DateTime::parse_from_rfc3339(s)
                .expect("a time")
                .timestamp()
                / 86_400
        };
        assert!(
            days(last) - days(first) > 200,
            "accounts were made over a year: {first} .. {last}"
        );
        assert!(
            chrono::DateTime::parse_from_rfc3339(last).expect("time") <= chrono::Utc::now(),
            "nothing is stamped in the future"
        );

        let mut q = ListQuery::new(Kind::Opportunity);
        q.limit = 1000;
        let mut spans = 0;
        for row in store.list(&q).expect("list") {
            let record = store.get(row.id).expect("get");
            let stages = record.history.get("stage").cloned().unwrap_or_default();
            if let (Some(a), Some(b)) = (stages.first(), stages.last())
                && (b.at - a.at).num_days() >= 3
            {
                spans += 1;
            }
        }
        assert!(spans > 0, "no deal spent days in its stages");
        assert!(
            report
                .counts
                .get(&Kind::CampaignMember)
                .copied()
                .unwrap_or(0)
                > 0
        );
        assert!(
            report
                .counts
                .get(&Kind::SurveyResponse)
                .copied()
                .unwrap_or(0)
                > 0
        );
        assert_eq!(report.counts.get(&Kind::Survey).copied(), Some(2));
    }

    #[test]
    fn the_same_seed_gives_the_same_data() {
        let titles = |seed| {
            let (_dir, store, report) = seeded(4, seed);
            let mut q = ListQuery::new(Kind::Account);
            q.sort = Some("title".into());
            let names: Vec<String> = store
                .list(&q)
                .expect("list")
                .into_iter()
                .map(|r| r.title)
                .collect();
            (names, report.counts)
        };
        assert_eq!(titles(1), titles(1));
        assert_ne!(titles(1).0, titles(2).0);
    }
}
