//! The catalogue the customer records draw on: products, campaigns and knowledge articles.

use std::time::Duration;

use crm_model::{Edit, Kind};

use crate::Write;
use crate::org::owned_by;
use crate::seeder::{Result, Seeder, Step};
use crate::words::{ARTICLES, CAMPAIGNS, PRODUCTS};

impl<F: FnMut(Kind, Write, Duration)> Seeder<'_, F> {
    /// Some products of the price list, a few of them retired.
    pub(crate) fn products(&mut self, accounts: usize) -> Result<()> {
        let n = (accounts / 10).clamp(8, PRODUCTS.len());
        for (code, name, price, unit) in &PRODUCTS[..n] {
            let mut e = Edit::new(Kind::Product);
            e.set("code", code)?;
            e.set("name", name)?;
            e.set("unit_price", price)?;
            e.set("unit", unit)?;
            if self.chance(0.1) {
                e.set("active", "false")?;
            }
            self.create(&e)?;
        }
        Ok(())
    }

    /// A few campaigns, past, running and planned.
    pub(crate) fn campaigns(&mut self, accounts: usize) -> Result<()> {
        let n = (accounts / 20).clamp(3, CAMPAIGNS.len());
        for (name, kind) in &CAMPAIGNS[..n] {
            let status = self.spread(
                "campaign.status",
                &[
                    ("completed", 4),
                    ("active", 3),
                    ("planning", 2),
                    ("cancelled", 1),
                ],
            );
            let start = match status {
                "completed" => self.between(-240, -40),
                "active" => self.between(-30, -1),
                "planning" => self.between(10, 90),
                _ => self.between(-60, 30),
            };
            let days = self.between(1, 45);
            let budget: i64 = self.between(20, 600) * 1000;
            let manager = self.index(self.org.managers.len());
            let owner = self.org.managers[manager].clone();
            let mut e = Edit::new(Kind::Campaign);
            e.set("name", name)?;
            e.set("type", kind)?;
            e.set("start_date", &self.date(start))?;
            e.set("end_date", &self.date(start + days))?;
            e.set("budget", &budget.to_string())?;
            e.set(
                "expected_revenue",
                &(budget * self.between(3, 10)).to_string(),
            )?;
            // About what the campaign can bring in, so goal attainment reads as a real figure.
            let per_campaign = i64::try_from(accounts / n / 6).unwrap_or(i64::MAX).max(2);
            e.set(
                "goal_leads",
                &self
                    .between(per_campaign / 2 + 1, per_campaign * 2)
                    .to_string(),
            )?;
            e.set("goal_revenue", &(budget * self.between(2, 8)).to_string())?;
            if name.is_ascii() {
                e.set(
                    "objective",
                    &format!(
                        "Generate qualified leads for the {kind} channel and measure cost per lead."
                    ),
                )?;
            } else {
                e.set(
                    "objective",
                    "提升品牌曝光，获取高质量线索，重点跟进华南和华东区域客户。",
                )?;
            }
            owned_by(&mut e, &owner)?;
            let cost = (budget * self.between(40, 110) / 100).to_string();
            let steps = match status {
                "completed" => vec![
                    Step::new("planning"),
                    Step::new("active"),
                    Step::new("completed").with("actual_cost", cost),
                ],
                "active" => vec![
                    Step::new("planning"),
                    Step::new("active").with("actual_cost", cost),
                ],
                other => vec![Step::new(other)],
            };
            let moved = self.chance(0.5);
            let id = self.create_through(e, "status", steps, moved)?.id;
            self.campaigns.push(id);
        }
        Ok(())
    }

    /// A few knowledge-base articles in Chinese and English.
    pub(crate) fn articles(&mut self, accounts: usize) -> Result<()> {
        let n = (accounts / 25).clamp(3, ARTICLES.len());
        for (title, category, language, body) in &ARTICLES[..n] {
            let status = self.spread(
                "article.status",
                &[
                    ("published", 6),
                    ("draft", 2),
                    ("in_review", 1),
                    ("archived", 1),
                ],
            );
            let author = self.agent();
            let mut e = Edit::new(Kind::Article);
            e.set("title", title)?;
            e.set("body", body)?;
            e.set("status", status)?;
            e.set("category", category)?;
            e.set("language", language)?;
            e.tag(if *language == "en" {
                "faq"
            } else {
                "常见问题"
            })?;
            owned_by(&mut e, &author)?;
            let id = self.create(&e)?.id;
            self.articles.push(id);
        }
        Ok(())
    }
}
