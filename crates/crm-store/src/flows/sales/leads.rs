//! Leads: capture with a duplicate check, assignment by rules, qualification, conversion.

use std::collections::{BTreeMap, HashMap};

use crm_model::{Edit, FieldValue, Kind, Op, Record, RecordId, phone_key};
use serde::Serialize;

use super::{edit_with, reference, text};
use crate::{Result, Store, StoreError};

/// The custom field that records made by a lead conversion carry: the lead's id. A resumed
/// conversion finds them by it.
pub const CONVERTED_FROM: &str = "converted_from";

/// Lead statuses from which a lead can no longer be worked (assigned, qualified, converted).
const CLOSED_STATUSES: &[&str] = &["converted", "disqualified"];

/// An existing record that a new lead seems to duplicate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DuplicateMatch {
    pub kind: Kind,
    pub id: RecordId,
    pub title: String,
    /// What matched: `email`, `phone` or `company`.
    pub on: &'static str,
    /// The matching value as stored on the existing record.
    pub value: String,
}

/// The outcome of [`Store::capture_lead`].
#[derive(Debug, Clone)]
pub enum Captured {
    Created(Box<Record>),
    /// Nothing was written: these records already match.
    Duplicates(Vec<DuplicateMatch>),
}

/// Which leads [`Store::assign_leads`] works on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LeadSelection {
    Ids(Vec<RecordId>),
    /// Every live lead still in status `new`, oldest first.
    Unassigned,
}

/// How [`Store::assign_leads`] picks an owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignRule {
    /// Lead source → user; leads of other sources are skipped.
    BySource(BTreeMap<String, RecordId>),
    /// Over the team's active members: each lead goes to the member with the fewest open
    /// leads (assigned, working, qualified), ties in the order of the members' ids, so equal
    /// loads rotate.
    RoundRobin { team: RecordId },
}

/// One lead's assignment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    pub lead: RecordId,
    pub title: String,
    /// The new owner, or `None` when no rule applied and the lead was left alone.
    pub owner: Option<RecordId>,
}

/// What [`Store::convert_lead`] makes or reuses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Use this account instead of creating one.
    pub account: Option<RecordId>,
    /// Use this contact instead of creating one.
    pub contact: Option<RecordId>,
    /// Create an opportunity (the default) or not.
    pub no_opportunity: bool,
    /// The opportunity's name; default the company (or person) name.
    pub opportunity_name: Option<String>,
    /// The opportunity's amount, as typed (`12000.50`).
    pub amount: Option<String>,
    /// The opportunity's expected close date, `YYYY-MM-DD`.
    pub close_date: Option<String>,
}

/// The records a conversion links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conversion {
    pub lead: RecordId,
    pub account: RecordId,
    pub contact: RecordId,
    pub opportunity: Option<RecordId>,
    /// The records this run created (a resumed run creates only what was missing).
    pub created: Vec<(Kind, RecordId)>,
}

/// A company name reduced for comparison: lowercase, without punctuation and spaces, and
/// without legal-form suffixes (`Ltd`, `Co., Ltd.`, `Inc`, `有限公司`, …), so
/// "Northwind Traders Co., Ltd." and "northwind traders" are the same company.
pub fn company_key(name: &str) -> String {
    const LATIN: &[&str] = &[
        "ltd",
        "limited",
        "inc",
        "incorporated",
        "llc",
        "gmbh",
        "corp",
        "corporation",
        "co",
        "company",
        "plc",
        "ag",
        "sa",
    ];
    const CJK: &[&str] = &["股份有限公司", "有限责任公司", "有限公司", "集团", "公司"];
    let lower = name.to_lowercase();
    let mut words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    while words.len() > 1 && words.last().is_some_and(|w| LATIN.contains(w)) {
        words.pop();
    }
    let mut key = words.concat();
    while let Some(rest) = CJK
        .iter()
        .find_map(|s| key.strip_suffix(s).filter(|r| !r.is_empty()))
    {
        key = rest.to_string();
    }
    key
}

/// The SQL expression of a phone column's digits (the characters a valid phone may hold
/// besides digits stripped).
fn phone_digits(column: &str) -> String {
    let mut sql = column.to_string();
    for c in [" ", "-", "+", "(", ")", ".", "/", "#"] {
        sql = format!("replace({sql}, '{c}', '')");
    }
    sql
}

/// Two phone keys (?2) match when equal, or when the shorter (8+ digits) ends the longer: the
/// same number with and without its country code. A cheap test first keeps the digit
/// extraction to the values that end in the key's last digit (?3), or in no digit at all.
fn phone_match(column: &str) -> String {
    let d = phone_digits(column);
    format!(
        "(substr({column}, -1) = ?3 OR substr({column}, -1) NOT GLOB '[0-9]') AND \
         ({d} = ?2 OR (length(?2) >= 8 AND length({d}) >= 8 AND \
         (substr({d}, -length(?2)) = ?2 OR substr(?2, -length({d})) = {d})))"
    )
}

/// The given value of a text field in an edit.
fn edit_text<'a>(edit: &'a Edit, field: &str) -> Option<&'a str> {
    edit.ops().iter().rev().find_map(|op| match op {
        Op::Set(f, FieldValue::Text(s)) if f.name == field => Some(s.as_str()),
        _ => None,
    })
}

impl Store {
    /// Live leads, contacts and accounts that match by normalised email, phone digits or
    /// company name ([`company_key`]). Each record is listed once, with the first thing that
    /// matched (email, then phone, then company). Plain SQL over the projections, one scan
    /// per kind; the company comparison narrows candidates in SQL and compares keys here.
    pub fn lead_duplicates(
        &self,
        email: Option<&str>,
        phone: Option<&str>,
        company: Option<&str>,
    ) -> Result<Vec<DuplicateMatch>> {
        let email = email
            .map(|e| e.trim().to_lowercase())
            .filter(|e| !e.is_empty());
        let phone = phone.map(phone_key).filter(|k| k.len() >= 5);
        let last_digit = phone.as_ref().map(|k| k[k.len() - 1..].to_string());
        let company = company.map(company_key).filter(|k| !k.is_empty());
        // Candidates contain the key's first characters (case-folded, spaces removed); the
        // full comparison is on the normalised key.
        let probe: Option<String> = company.as_ref().map(|k| k.chars().take(4).collect());
        if email.is_none() && phone.is_none() && company.is_none() {
            return Ok(Vec::new());
        }
        // ?1 email, ?2 phone digits, ?3 the phone's last digit, ?4 company probe. Each hit
        // column is NULL unless its value matched.
        let set_hit = |column: &str, test: &str, given: &str| {
            format!(
                "CASE WHEN {given} IS NULL THEN NULL ELSE \
                 (SELECT x.value FROM json_each({column}) x WHERE {test} LIMIT 1) END"
            )
        };
        let company_hit = |column: &str| {
            format!(
                "CASE WHEN ?4 IS NOT NULL AND {column} IS NOT NULL \
                 AND instr(lower(replace({column}, ' ', '')), ?4) > 0 THEN {column} END"
            )
        };
        let queries: [(Kind, [String; 3]); 3] = [
            (
                Kind::Lead,
                [
                    "CASE WHEN f_email = ?1 THEN f_email END".to_string(),
                    format!(
                        "CASE WHEN ?2 IS NOT NULL AND f_phone IS NOT NULL AND {} THEN f_phone END",
                        phone_match("f_phone")
                    ),
                    company_hit("f_company_name"),
                ],
            ),
            (
                Kind::Contact,
                [
                    set_hit("f_emails", "x.value = ?1", "?1"),
                    set_hit("f_phones", &phone_match("x.value"), "?2"),
                    // Contacts have no company name; ?4 named so every statement takes
                    // the same parameters.
                    "CASE WHEN ?4 IS NULL THEN NULL END".to_string(),
                ],
            ),
            (
                Kind::Account,
                [
                    set_hit("f_emails", "x.value = ?1", "?1"),
                    set_hit("f_phones", &phone_match("x.value"), "?2"),
                    company_hit("f_name"),
                ],
            ),
        ];
        let mut found: Vec<DuplicateMatch> = Vec::new();
        for (kind, hits) in queries {
            let sql = format!(
                "SELECT id, title, h1, h2, h3 FROM ( \
                     SELECT id, title, {} AS h1, {} AS h2, {} AS h3 \
                     FROM {} WHERE archived = 0 AND f_merged_into IS NULL) \
                 WHERE h1 IS NOT NULL OR h2 IS NOT NULL OR h3 IS NOT NULL",
                hits[0],
                hits[1],
                hits[2],
                crate::schema::table(kind)
            );
            let mut stmt = self.conn.prepare_cached(&sql)?;
            let rows = stmt.query_map(rusqlite::params![email, phone, last_digit, probe], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, Option<String>>(4)?,
                ))
            })?;
            for row in rows {
                let (id, title, email_hit, phone_hit, company_hit) = row?;
                let company_hit =
                    company_hit.filter(|name| company.as_deref() == Some(&company_key(name)));
                let (on, value) = match (email_hit, phone_hit, company_hit) {
                    (Some(v), _, _) => ("email", v),
                    (None, Some(v), _) => ("phone", v),
                    (None, None, Some(v)) => ("company", v),
                    (None, None, None) => continue,
                };
                let id: RecordId = id
                    .parse()
                    .map_err(|_| StoreError::CorruptProjection(id.clone()))?;
                if !found.iter().any(|f| f.id == id) {
                    found.push(DuplicateMatch {
                        kind,
                        id,
                        title,
                        on,
                        value,
                    });
                }
            }
        }
        // Email matches first, then phone, then company, as the check reads.
        found.sort_by_key(|m| {
            ["email", "phone", "company"]
                .iter()
                .position(|o| *o == m.on)
        });
        Ok(found)
    }

    /// Creates a lead from `edit` unless a live lead, contact or account already matches it
    /// ([`Store::lead_duplicates`]); with `allow_duplicate` it is created anyway.
    pub fn capture_lead(&mut self, edit: &Edit, allow_duplicate: bool) -> Result<Captured> {
        if edit.kind() != Kind::Lead {
            return Err(StoreError::Rejected(format!(
                "capture makes leads, not {}s",
                edit.kind()
            )));
        }
        if !allow_duplicate {
            let matches = self.lead_duplicates(
                edit_text(edit, "email"),
                edit_text(edit, "phone"),
                edit_text(edit, "company_name"),
            )?;
            if !matches.is_empty() {
                return Ok(Captured::Duplicates(matches));
            }
        }
        Ok(Captured::Created(Box::new(self.create(edit)?)))
    }

    /// A lead that can still be worked: live, and neither converted nor disqualified.
    fn workable_lead(&mut self, id: RecordId) -> Result<Record> {
        let lead = self.get_kind(Kind::Lead, id)?;
        if lead.archived {
            return Err(StoreError::Rejected(format!(
                "lead {id} is archived; restore it first"
            )));
        }
        if let Some(status) = text(&lead, "status").filter(|s| CLOSED_STATUSES.contains(s)) {
            return Err(StoreError::Rejected(format!(
                "lead {id} ({}) is already {status}",
                lead.title()
            )));
        }
        Ok(lead)
    }

    /// Gives leads an owner by `rule` and moves those still `new` to `assigned`. Every lead
    /// and user is checked before the first write, so a bad id changes nothing.
    pub fn assign_leads(
        &mut self,
        selection: &LeadSelection,
        rule: &AssignRule,
    ) -> Result<Vec<Assignment>> {
        let ids = match selection {
            LeadSelection::Ids(ids) => ids.clone(),
            LeadSelection::Unassigned => {
                let mut stmt = self.conn.prepare_cached(
                    "SELECT id FROM rec_lead WHERE archived = 0 AND f_status = 'new' \
                     ORDER BY created_at, id",
                )?;
                let ids: Vec<String> = stmt
                    .query_map([], |r| r.get(0))?
                    .collect::<rusqlite::Result<_>>()?;
                ids.iter()
                    .map(|s| {
                        s.parse()
                            .map_err(|_| StoreError::CorruptProjection(s.clone()))
                    })
                    .collect::<Result<_>>()?
            }
        };
        let mut leads = Vec::with_capacity(ids.len());
        for id in &ids {
            leads.push(self.workable_lead(*id)?);
        }
        let mut picks: Vec<Option<RecordId>> = Vec::with_capacity(leads.len());
        match rule {
            AssignRule::BySource(map) => {
                for user in map.values() {
                    self.get_kind(Kind::User, *user)?;
                }
                for source in map.keys() {
                    edit_with(Kind::Lead, &[("source", source)])?;
                }
                for lead in &leads {
                    picks.push(text(lead, "source").and_then(|s| map.get(s)).copied());
                }
            }
            AssignRule::RoundRobin { team } => {
                let team_record = self.get_kind(Kind::Team, *team)?;
                let mut members: Vec<RecordId> = match team_record.get("members") {
                    Some(FieldValue::Set(items)) => {
                        items.iter().filter_map(|s| s.parse().ok()).collect()
                    }
                    _ => Vec::new(),
                };
                members.sort();
                let mut active = Vec::new();
                for m in members {
                    let user = self.get_kind(Kind::User, m)?;
                    if !matches!(user.get("active"), Some(FieldValue::Bool(false))) {
                        active.push(m);
                    }
                }
                if active.is_empty() {
                    return Err(StoreError::Rejected(format!(
                        "team {} has no active members to assign leads to",
                        team_record.title()
                    )));
                }
                let mut load: HashMap<RecordId, i64> = HashMap::new();
                {
                    let mut stmt = self.conn.prepare_cached(
                        "SELECT f_owner, count(*) FROM rec_lead WHERE archived = 0 \
                         AND f_status IN ('assigned', 'working', 'qualified') \
                         AND f_owner IS NOT NULL GROUP BY f_owner",
                    )?;
                    let rows =
                        stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
                    for row in rows {
                        let (owner, n) = row?;
                        if let Ok(owner) = owner.parse() {
                            load.insert(owner, n);
                        }
                    }
                }
                for _ in &leads {
                    let pick = active
                        .iter()
                        .copied()
                        .min_by_key(|m| load.get(m).copied().unwrap_or(0))
                        .unwrap_or(active[0]);
                    *load.entry(pick).or_insert(0) += 1;
                    picks.push(Some(pick));
                }
            }
        }
        let mut out = Vec::with_capacity(leads.len());
        for (lead, pick) in leads.iter().zip(picks) {
            if let Some(owner) = pick {
                let mut e = edit_with(Kind::Lead, &[("owner", &owner.to_string())])?;
                if text(lead, "status") == Some("new") {
                    e.set("status", "assigned")?;
                }
                self.edit(lead.id, &e)?;
            }
            out.push(Assignment {
                lead: lead.id,
                title: lead.title(),
                owner: pick,
            });
        }
        Ok(out)
    }

    /// Marks a lead qualified, with its rating (hot, warm, cold) and score (0–100) when given.
    pub fn qualify_lead(
        &mut self,
        id: RecordId,
        rating: Option<&str>,
        score: Option<i64>,
    ) -> Result<Record> {
        let mut e = edit_with(Kind::Lead, &[("status", "qualified")])?;
        if let Some(rating) = rating {
            e.set("rating", rating)?;
        }
        if let Some(score) = score {
            e.set_value("score", FieldValue::Int(score))?;
        }
        self.workable_lead(id)?;
        self.edit(id, &e)
    }

    /// Turns a lead into an account, a contact and (unless `no_opportunity`) an opportunity,
    /// links them (contact → account, opportunity → account and primary contact, lead →
    /// `converted_account/contact/opportunity`) and sets the lead's status to `converted`.
    ///
    /// Resumable: each record is linked from the lead (`converted_*`) right after it is made,
    /// and every record made here carries the custom field [`CONVERTED_FROM`] with the lead's
    /// id. A run that was interrupted (the process killed between two writes) is finished by
    /// running it again: it reuses the records the lead already names, or that carry the
    /// marker, and creates only what is missing. Only the last write sets the lead to
    /// `converted`, so a converted lead is always completely linked; converting it again is
    /// rejected.
    pub fn convert_lead(&mut self, id: RecordId, options: &ConvertOptions) -> Result<Conversion> {
        let lead = self.workable_lead(id)?;
        let lead_key = id.to_string();
        // Check everything given before the first write.
        if let Some(account) = options.account {
            self.get_kind(Kind::Account, account)?;
        }
        let given_contact = options
            .contact
            .map(|c| self.get_kind(Kind::Contact, c))
            .transpose()?;
        let company = text(&lead, "company_name")
            .or_else(|| text(&lead, "person_name"))
            .unwrap_or("New customer")
            .to_string();
        let mut opportunity_edit = None;
        if !options.no_opportunity {
            let name = options.opportunity_name.as_deref().unwrap_or(&company);
            let mut e = edit_with(
                Kind::Opportunity,
                &[
                    ("name", name),
                    ("stage", "prospecting"),
                    ("forecast_category", "pipeline"),
                    ("probability", "10"),
                ],
            )?;
            if let Some(amount) = &options.amount {
                e.set("amount", amount)?;
            }
            if let Some(date) = &options.close_date {
                e.set("close_date", date)?;
            }
            if let Some(source) = text(&lead, "source") {
                e.set("lead_source", source)?;
            }
            if let Some(campaign) = reference(&lead, "campaign") {
                e.set("campaign", &campaign.to_string())?;
            }
            opportunity_edit = Some(e);
        }
        let owner = reference(&lead, "owner");
        let mut created = Vec::new();

        // The account.
        let account = match reference(&lead, "converted_account")
            .or(options.account)
            .or(given_contact.as_ref().and_then(|c| reference(c, "account")))
        {
            Some(account) => account,
            None => match self.find_marked(Kind::Account, CONVERTED_FROM, &lead_key)? {
                Some(account) => account,
                None => {
                    let mut e = edit_with(
                        Kind::Account,
                        &[("name", &company), ("lifecycle", "converted")],
                    )?;
                    if let Some(email) = text(&lead, "email") {
                        e.set("emails", email)?;
                    }
                    if let Some(phone) = text(&lead, "phone") {
                        e.set("phones", phone)?;
                    }
                    if let Some(source) = text(&lead, "source") {
                        e.set("source", source)?;
                    }
                    self.mark_and_own(&mut e, &lead_key, owner)?;
                    let account = self.create(&e)?.id;
                    created.push((Kind::Account, account));
                    account
                }
            },
        };
        if reference(&lead, "converted_account") != Some(account) {
            self.edit(
                id,
                &edit_with(Kind::Lead, &[("converted_account", &account.to_string())])?,
            )?;
        }

        // The contact.
        let contact = match reference(&lead, "converted_contact").or(options.contact) {
            Some(contact) => contact,
            None => match self.find_marked(Kind::Contact, CONVERTED_FROM, &lead_key)? {
                Some(contact) => contact,
                None => {
                    let person = text(&lead, "person_name").unwrap_or(&company).to_string();
                    let (first, last) = split_person_name(&person);
                    let mut e = edit_with(
                        Kind::Contact,
                        &[("last_name", &last), ("account", &account.to_string())],
                    )?;
                    if !first.is_empty() {
                        e.set("first_name", &first)?;
                    }
                    for (from, to) in [("title", "title"), ("email", "emails"), ("phone", "phones")]
                    {
                        if let Some(v) = text(&lead, from) {
                            e.set(to, v)?;
                        }
                    }
                    self.mark_and_own(&mut e, &lead_key, owner)?;
                    let contact = self.create(&e)?.id;
                    created.push((Kind::Contact, contact));
                    contact
                }
            },
        };
        if given_contact
            .as_ref()
            .is_some_and(|c| c.id == contact && reference(c, "account").is_none())
        {
            self.edit(
                contact,
                &edit_with(Kind::Contact, &[("account", &account.to_string())])?,
            )?;
        }
        if reference(&lead, "converted_contact") != Some(contact) {
            self.edit(
                id,
                &edit_with(Kind::Lead, &[("converted_contact", &contact.to_string())])?,
            )?;
        }

        // The opportunity.
        let mut opportunity = reference(&lead, "converted_opportunity");
        if let (None, Some(mut e)) = (opportunity, opportunity_edit) {
            let existing = self.find_marked(Kind::Opportunity, CONVERTED_FROM, &lead_key)?;
            let opp = match existing {
                Some(opp) => opp,
                None => {
                    e.set("account", &account.to_string())?;
                    e.set("primary_contact", &contact.to_string())?;
                    self.mark_and_own(&mut e, &lead_key, owner)?;
                    let opp = self.create(&e)?.id;
                    created.push((Kind::Opportunity, opp));
                    opp
                }
            };
            self.edit(
                id,
                &edit_with(Kind::Lead, &[("converted_opportunity", &opp.to_string())])?,
            )?;
            opportunity = Some(opp);
        }

        self.edit(id, &edit_with(Kind::Lead, &[("status", "converted")])?)?;
        Ok(Conversion {
            lead: id,
            account,
            contact,
            opportunity,
            created,
        })
    }

    fn mark_and_own(&self, e: &mut Edit, lead: &str, owner: Option<RecordId>) -> Result<()> {
        e.set(&format!("custom.{CONVERTED_FROM}"), lead)?;
        if let Some(owner) = owner {
            e.set("owner", &owner.to_string())?;
        }
        Ok(())
    }
}

/// Splits a person's name into (first, last): Chinese names put the family name (one
/// character) first, Latin names last.
fn split_person_name(name: &str) -> (String, String) {
    let name = name.trim();
    let cjk = name.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c));
    if cjk && !name.contains(' ') {
        let mut chars = name.chars();
        let last: String = chars.next().map(String::from).unwrap_or_default();
        return (chars.collect(), last);
    }
    match name.rsplit_once(' ') {
        Some((first, last)) => (first.trim().to_string(), last.trim().to_string()),
        None => (String::new(), name.to_string()),
    }
}
