//! Quote → contract (with approval) → order.

use chrono::NaiveDate;
use crm_model::{Amount, FieldValue, Kind, LineItem, Record, RecordId};

use super::{edit_with, reference, text};
use crate::{Result, Store, StoreError};

/// One line of a new quote: a product, a quantity, and a discount in percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuoteLine {
    pub product: RecordId,
    pub qty: Amount,
    pub discount: Amount,
}

/// The quote statuses each status may move to.
fn quote_moves(from: &str) -> &'static [&'static str] {
    match from {
        "draft" => &["in_review", "sent"],
        "in_review" => &["draft", "sent"],
        "sent" => &["accepted", "rejected", "expired"],
        _ => &[],
    }
}

/// The sum of a quote's or order's line totals.
pub fn line_total(record: &Record) -> Amount {
    match record.get("line_items") {
        Some(FieldValue::LineItems(items)) => Amount(items.iter().map(|i| i.total().0).sum()),
        _ => Amount(0),
    }
}

impl Store {
    /// The id of the first live record of `kind` whose `field` refers to `target`.
    fn first_referring(&self, kind: Kind, field: &str, target: RecordId) -> Result<Option<String>> {
        let sql = format!(
            "SELECT id FROM {} WHERE archived = 0 AND f_{field} = ?1 ORDER BY created_at, id LIMIT 1",
            crate::schema::table(kind)
        );
        Ok(rusqlite::OptionalExtension::optional(
            self.conn
                .prepare_cached(&sql)?
                .query_row([target.to_string()], |r| r.get(0)),
        )?)
    }

    /// Creates a draft quote for an opportunity with line items priced from the products'
    /// unit prices (description: the product's name), the opportunity's account and currency.
    pub fn create_quote(
        &mut self,
        opportunity: RecordId,
        lines: &[QuoteLine],
        valid_until: Option<NaiveDate>,
    ) -> Result<Record> {
        let opp = self.get_kind(Kind::Opportunity, opportunity)?;
        if text(&opp, "stage") == Some("closed_lost") {
            return Err(StoreError::Rejected(format!(
                "opportunity {opportunity} is closed_lost; a lost deal gets no quote"
            )));
        }
        if lines.is_empty() {
            return Err(StoreError::Rejected(
                "a quote needs at least one line item (PRODUCT_ID:QTY[:DISCOUNT])".into(),
            ));
        }
        let mut items = Vec::with_capacity(lines.len());
        for line in lines {
            let product = self.get_kind(Kind::Product, line.product)?;
            if matches!(product.get("active"), Some(FieldValue::Bool(false))) {
                return Err(StoreError::Rejected(format!(
                    "product {} ({}) is not active",
                    line.product,
                    product.title()
                )));
            }
            let Some(FieldValue::Amount(price)) = product.get("unit_price") else {
                return Err(StoreError::Rejected(format!(
                    "product {} has no unit price",
                    line.product
                )));
            };
            if line.qty.0 <= 0 {
                return Err(crm_model::ValidationError::InvalidValue {
                    field: "qty".into(),
                    value: line.qty.to_string(),
                    expected: "a quantity above 0".into(),
                }
                .into());
            }
            if !(0..=10_000).contains(&line.discount.0) {
                return Err(crm_model::ValidationError::InvalidValue {
                    field: "discount".into(),
                    value: line.discount.to_string(),
                    expected: "a discount in percent, 0 to 100".into(),
                }
                .into());
            }
            items.push(LineItem {
                product: Some(line.product),
                description: text(&product, "name").unwrap_or_default().to_string(),
                qty: line.qty,
                unit_price: *price,
                discount: line.discount,
            });
        }
        let mut e = edit_with(
            Kind::Quote,
            &[
                ("opportunity", &opportunity.to_string()),
                ("currency", text(&opp, "currency").unwrap_or("CNY")),
            ],
        )?;
        e.set_value("line_items", FieldValue::LineItems(items))?;
        if let Some(account) = reference(&opp, "account") {
            e.set("account", &account.to_string())?;
        }
        if let Some(date) = valid_until {
            e.set_value("valid_until", FieldValue::Date(date))?;
        }
        self.create(&e)
    }

    /// Moves a quote to `status` along draft → in_review → sent → accepted | rejected |
    /// expired (and back from in_review to draft).
    pub fn set_quote_status(&mut self, id: RecordId, status: &str) -> Result<Record> {
        let e = edit_with(Kind::Quote, &[("status", status)])?;
        let quote = self.get_kind(Kind::Quote, id)?;
        let to = match e.ops().first() {
            Some(crm_model::Op::Set(_, FieldValue::Text(s))) => s.clone(),
            _ => status.to_string(),
        };
        let from = text(&quote, "status").unwrap_or("draft");
        if !quote_moves(from).contains(&to.as_str()) {
            return Err(StoreError::Rejected(format!(
                "quote {} is {from}; it can move to {}",
                quote.title(),
                match quote_moves(from) {
                    [] => "nothing else".to_string(),
                    moves => moves.join(" or "),
                }
            )));
        }
        self.edit(id, &e)
    }

    /// Makes a contract from an accepted quote: its account (or the opportunity's), the
    /// quote's total as amount, its terms, `start_date` (default today) and `end_date`
    /// (default one year later, less a day), status `pending_approval`. A quote gets one
    /// contract: asking again is rejected and names the existing one.
    pub fn contract_from_quote(
        &mut self,
        quote: RecordId,
        start: Option<NaiveDate>,
        end: Option<NaiveDate>,
    ) -> Result<Record> {
        let q = self.get_kind(Kind::Quote, quote)?;
        if text(&q, "status") != Some("accepted") {
            return Err(StoreError::Rejected(format!(
                "quote {} is {}; only an accepted quote becomes a contract",
                q.title(),
                text(&q, "status").unwrap_or("draft")
            )));
        }
        if let Some(existing) = self.first_referring(Kind::Contract, "quote", quote)? {
            return Err(StoreError::Rejected(format!(
                "quote {} already has contract {existing}",
                q.title()
            )));
        }
        let account = match reference(&q, "account") {
            Some(a) => Some(a),
            None => match reference(&q, "opportunity") {
                Some(opp) => reference(&self.get_kind(Kind::Opportunity, opp)?, "account"),
                None => None,
            },
        };
        let Some(account) = account else {
            return Err(StoreError::Rejected(format!(
                "quote {} has no account (nor has its opportunity); set one first",
                q.title()
            )));
        };
        let start = start.unwrap_or_else(|| self.now().date_naive());
        let end = match end {
            Some(end) => end,
            None => start
                .checked_add_months(chrono::Months::new(12))
                .and_then(|d| d.pred_opt())
                .unwrap_or(start),
        };
        if end < start {
            return Err(crm_model::ValidationError::InvalidValue {
                field: "end_date".into(),
                value: end.to_string(),
                expected: format!("a date on or after the start date {start}"),
            }
            .into());
        }
        let mut e = edit_with(
            Kind::Contract,
            &[
                ("account", &account.to_string()),
                ("quote", &quote.to_string()),
                ("status", "pending_approval"),
            ],
        )?;
        e.set_value("amount", FieldValue::Amount(line_total(&q)))?;
        e.set_value("start_date", FieldValue::Date(start))?;
        e.set_value("end_date", FieldValue::Date(end))?;
        if let Some(terms) = text(&q, "terms") {
            e.set("terms", terms)?;
        }
        self.create(&e)
    }

    /// Approves a contract waiting for approval (or still a draft): approver = this replica's
    /// user, approved_at = now, status `active`.
    pub fn approve_contract(&mut self, id: RecordId) -> Result<Record> {
        let me = self.me()?;
        let contract = self.get_kind(Kind::Contract, id)?;
        let status = text(&contract, "status").unwrap_or("draft");
        if !["draft", "pending_approval"].contains(&status) {
            return Err(StoreError::Rejected(format!(
                "contract {} is {status}; only a draft or pending contract can be approved",
                contract.title()
            )));
        }
        let mut e = edit_with(
            Kind::Contract,
            &[("approver", &me.to_string()), ("status", "active")],
        )?;
        e.set_value("approved_at", FieldValue::DateTime(self.now()))?;
        self.edit(id, &e)
    }

    /// Makes a confirmed order from an active contract: its account, the contract and its
    /// quote, the quote's line items, order date today. A contract gets one order from here.
    pub fn order_from_contract(&mut self, contract: RecordId) -> Result<Record> {
        let c = self.get_kind(Kind::Contract, contract)?;
        if text(&c, "status") != Some("active") {
            return Err(StoreError::Rejected(format!(
                "contract {} is {}; approve it before ordering",
                c.title(),
                text(&c, "status").unwrap_or("draft")
            )));
        }
        if let Some(existing) = self.first_referring(Kind::Order, "contract", contract)? {
            return Err(StoreError::Rejected(format!(
                "contract {} already has order {existing}",
                c.title()
            )));
        }
        let Some(account) = reference(&c, "account") else {
            return Err(StoreError::Rejected(format!(
                "contract {} has no account",
                c.title()
            )));
        };
        let mut e = edit_with(
            Kind::Order,
            &[
                ("account", &account.to_string()),
                ("contract", &contract.to_string()),
                ("status", "confirmed"),
            ],
        )?;
        if let Some(quote) = reference(&c, "quote") {
            e.set("quote", &quote.to_string())?;
            if let Some(items) = self.get_kind(Kind::Quote, quote)?.get("line_items") {
                e.set_value("line_items", items.clone())?;
            }
        }
        e.set_value("order_date", FieldValue::Date(self.now().date_naive()))?;
        self.create(&e)
    }
}
