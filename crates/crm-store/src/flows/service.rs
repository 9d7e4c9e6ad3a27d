//! Service workflows: a ticket is opened (`Store::create`), assigned, answered, resolved with
//! knowledge articles linked, rated and closed. Each step is one ordinary attributed edit of
//! the ticket (the article links are a second edit of each article), checked against the
//! ticket's current status first; a step the status does not allow is
//! [`StoreError::Rejected`] and writes nothing.
//!
//! Status moves (the `status` field is L+A, so every move lands in its history):
//!
//! ```text
//! new ─assign→ assigned ─respond→ in_progress ─resolve→ resolved ─close→ closed
//!  └──────────respond──────────────┘    (pending_customer too)  rate: resolved or closed
//! ```
//!
//! SLA clocks are in [`super::sla`]. Ticket numbers: see [`Store::settle_ticket_number`].

use chrono::{DateTime, Utc};
use crm_model::{Edit, FieldValue, Kind, Record, RecordId};
use rusqlite::OptionalExtension;

use super::sla::text;
use crate::{Result, Store, StoreError};

/// Statuses in which a ticket is still being worked on.
pub const OPEN_STATUSES: &[&str] = &["new", "assigned", "in_progress", "pending_customer"];

/// The custom field keeping a ticket's provisional number once the canonical one is settled.
pub const PROVISIONAL_NUMBER: &str = "provisional_number";

fn label(ticket: &Record) -> String {
    text(ticket, "number")
        .map(str::to_string)
        .unwrap_or_else(|| ticket.id.to_string())
}

fn status(ticket: &Record) -> &str {
    text(ticket, "status").unwrap_or("new")
}

fn require_open(ticket: &Record, step: &str) -> Result<()> {
    let s = status(ticket);
    if OPEN_STATUSES.contains(&s) {
        Ok(())
    } else {
        Err(StoreError::Rejected(format!(
            "ticket {} is {s}; only an open ticket ({}) can be {step}",
            label(ticket),
            OPEN_STATUSES.join(", ")
        )))
    }
}

fn time(value: DateTime<Utc>) -> FieldValue {
    FieldValue::DateTime(value)
}

impl Store {
    /// Assigns an open ticket to a user (and optionally a team). A `new` ticket becomes
    /// `assigned`; a ticket already being worked on keeps its status (a hand-over).
    pub fn assign_ticket(
        &mut self,
        id: RecordId,
        to: RecordId,
        team: Option<RecordId>,
    ) -> Result<Record> {
        let ticket = self.get_kind(Kind::Ticket, id)?;
        require_open(&ticket, "assigned")?;
        let mut edit = Edit::new(Kind::Ticket);
        edit.set_value("assignee", FieldValue::Ref(to))?;
        if let Some(team) = team {
            edit.set_value("team", FieldValue::Ref(team))?;
        }
        if status(&ticket) == "new" {
            edit.set("status", "assigned")?;
        }
        self.edit(id, &edit)
    }

    /// Records a response to the customer: the first one stops the first-response clock
    /// (`first_response_at` is set once and never moved); the ticket goes `in_progress`. An
    /// optional note is appended to the ticket's notes.
    pub fn respond_ticket(&mut self, id: RecordId, note: Option<&str>) -> Result<Record> {
        let ticket = self.get_kind(Kind::Ticket, id)?;
        require_open(&ticket, "answered")?;
        let now = self.now();
        let mut edit = Edit::new(Kind::Ticket);
        if ticket.get("first_response_at").is_none() {
            edit.set_value("first_response_at", time(now))?;
        }
        if status(&ticket) != "in_progress" {
            edit.set("status", "in_progress")?;
        }
        if let Some(note) = note.map(str::trim).filter(|n| !n.is_empty()) {
            edit.append_notes(&format!("[{}] {note}", crm_model::format_time(&now)))?;
        }
        if edit.is_empty() {
            // A later response with nothing to note changes nothing; not an error.
            return Ok(ticket);
        }
        self.edit(id, &edit)
    }

    /// Resolves an open ticket: the resolution text, `resolved_at`, status `resolved`, and
    /// the knowledge articles that solved it (a set, so concurrent links from two devices
    /// both survive). A ticket resolved without an earlier response counts the resolution as
    /// its first response. Each article also gets the ticket in its `related_tickets`.
    ///
    /// Two writes (the ticket, then each article); the ticket goes first and carries the
    /// links, so a failure between them leaves a resolved ticket whose article back-links
    /// can be completed by [`Store::link_articles`].
    pub fn resolve_ticket(
        &mut self,
        id: RecordId,
        resolution: &str,
        articles: &[RecordId],
    ) -> Result<Record> {
        let ticket = self.get_kind(Kind::Ticket, id)?;
        require_open(&ticket, "resolved")?;
        if resolution.trim().is_empty() {
            return Err(StoreError::Rejected(
                "a resolution is required: say how the ticket was solved".into(),
            ));
        }
        for article in articles {
            self.get_kind(Kind::Article, *article)?;
        }
        let now = self.now();
        let mut edit = Edit::new(Kind::Ticket);
        edit.set("resolution", resolution)?;
        edit.set_value("resolved_at", time(now))?;
        edit.set("status", "resolved")?;
        if ticket.get("first_response_at").is_none() {
            edit.set_value("first_response_at", time(now))?;
        }
        if !articles.is_empty() {
            let mut set = match ticket.get("articles") {
                Some(FieldValue::Set(s)) => s.clone(),
                _ => Default::default(),
            };
            set.extend(articles.iter().map(ToString::to_string));
            edit.set_value("articles", FieldValue::Set(set))?;
        }
        let record = self.edit(id, &edit)?;
        self.link_articles(id)?;
        Ok(record)
    }

    /// Adds ticket `id` to the `related_tickets` of every article it links, where missing.
    /// Idempotent: re-running it after an interruption finishes the job.
    pub fn link_articles(&mut self, id: RecordId) -> Result<()> {
        let ticket = self.get_kind(Kind::Ticket, id)?;
        let articles: Vec<RecordId> = match ticket.get("articles") {
            Some(v) => v.referenced_ids(),
            None => Vec::new(),
        };
        for article_id in articles {
            let article = self.get_kind(Kind::Article, article_id)?;
            let mut related = match article.get("related_tickets") {
                Some(FieldValue::Set(s)) => s.clone(),
                _ => Default::default(),
            };
            if related.insert(id.to_string()) {
                let mut edit = Edit::new(Kind::Article);
                edit.set_value("related_tickets", FieldValue::Set(related))?;
                self.edit(article_id, &edit)?;
            }
        }
        Ok(())
    }

    /// Records the customer's satisfaction (1–5) with a resolved or closed ticket; a second
    /// rating replaces the first.
    pub fn rate_ticket(
        &mut self,
        id: RecordId,
        score: i64,
        comment: Option<&str>,
    ) -> Result<Record> {
        let ticket = self.get_kind(Kind::Ticket, id)?;
        let s = status(&ticket);
        if s != "resolved" && s != "closed" {
            return Err(StoreError::Rejected(format!(
                "ticket {} is {s}; only a resolved or closed ticket can be rated",
                label(&ticket)
            )));
        }
        let mut edit = Edit::new(Kind::Ticket);
        edit.set_value("satisfaction", FieldValue::Int(score))?;
        if let Some(c) = comment {
            edit.set("satisfaction_comment", c)?;
        }
        self.edit(id, &edit)
    }

    /// Closes a resolved ticket (`closed_at`, status `closed`).
    pub fn close_ticket(&mut self, id: RecordId) -> Result<Record> {
        let ticket = self.get_kind(Kind::Ticket, id)?;
        let s = status(&ticket);
        if s != "resolved" {
            let hint = if OPEN_STATUSES.contains(&s) {
                "; resolve it first"
            } else {
                ""
            };
            return Err(StoreError::Rejected(format!(
                "ticket {} is {s}; only a resolved ticket can be closed{hint}",
                label(&ticket)
            )));
        }
        let mut edit = Edit::new(Kind::Ticket);
        edit.set_value("closed_at", time(self.now()))?;
        edit.set("status", "closed")?;
        self.edit(id, &edit)
    }

    /// Finds a ticket by its number, canonical or provisional (`T-laptop-3`).
    pub fn ticket_by_number(&self, number: &str) -> Result<Option<RecordId>> {
        let id: Option<String> = self
            .conn
            .query_row(
                "SELECT id FROM rec_ticket WHERE f_number = ?1 \
                 OR json_extract(json, '$.custom.' || ?2) = ?1 ORDER BY f_number = ?1 DESC LIMIT 1",
                [number.trim(), PROVISIONAL_NUMBER],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|s| s.parse().map_err(|_| StoreError::CorruptProjection(s)))
            .transpose()
    }

    /// **The canonical-number step.** Offline, `Store::create` gives a ticket a provisional
    /// number `T-<device>-<n>` that is unique per device but not short or sequential across
    /// the workspace. Once a relay hands out the canonical number (a workspace-wide sequence;
    /// the relay does **not** do this yet), the sync driver calls this with it: the number
    /// becomes `canonical`, and the provisional one is kept as an alias in
    /// `custom.provisional_number`, so [`Store::ticket_by_number`] finds the ticket by
    /// either. Idempotent; settling a different canonical number later is refused.
    pub fn settle_ticket_number(&mut self, id: RecordId, canonical: &str) -> Result<Record> {
        let ticket = self.get_kind(Kind::Ticket, id)?;
        let canonical = canonical.trim();
        if canonical.is_empty() {
            return Err(StoreError::Rejected("the canonical number is empty".into()));
        }
        let current = text(&ticket, "number").unwrap_or_default().to_string();
        if let Some(provisional) = ticket.custom.get(PROVISIONAL_NUMBER) {
            if current == canonical {
                return Ok(ticket);
            }
            return Err(StoreError::Rejected(format!(
                "ticket {provisional} already has the canonical number {current}"
            )));
        }
        if let Some(other) = self.ticket_by_number(canonical)?
            && other != id
        {
            return Err(StoreError::Rejected(format!(
                "number {canonical} already belongs to ticket {other}"
            )));
        }
        let mut edit = Edit::new(Kind::Ticket);
        edit.set("number", canonical)?;
        edit.set(&format!("custom.{PROVISIONAL_NUMBER}"), &current)?;
        self.edit(id, &edit)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path(), "alice", "laptop").expect("init");
        (dir, store)
    }

    fn ticket(store: &mut Store, priority: &str) -> RecordId {
        let mut e = Edit::new(Kind::Ticket);
        e.set("subject", "打印机卡纸").expect("valid");
        e.set("priority", priority).expect("valid");
        store.create(&e).expect("create").id
    }

    fn t(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 2, h, m, 0)
            .single()
            .expect("time")
    }

    #[test]
    fn a_ticket_goes_from_open_to_closed() {
        let (_d, mut store) = store();
        let me = store.identity().user_id.expect("user");
        let mut article = Edit::new(Kind::Article);
        article.set("title", "清除卡纸").expect("valid");
        let article = store.create(&article).expect("article").id;

        store.set_clock(Some(t(9, 0)));
        let id = ticket(&mut store, "urgent");
        store.set_clock(Some(t(9, 10)));
        let r = store.assign_ticket(id, me, None).expect("assign");
        assert_eq!(text(&r, "status"), Some("assigned"));
        store.set_clock(Some(t(9, 40)));
        let r = store
            .respond_ticket(id, Some("已联系客户"))
            .expect("respond");
        assert_eq!(
            r.get("first_response_at"),
            Some(&FieldValue::DateTime(t(9, 40)))
        );
        assert_eq!(text(&r, "status"), Some("in_progress"));
        assert!(r.notes.contains("已联系客户"));
        store.set_clock(Some(t(10, 0)));
        let r = store
            .respond_ticket(id, Some("second"))
            .expect("respond again");
        assert_eq!(
            r.get("first_response_at"),
            Some(&FieldValue::DateTime(t(9, 40))),
            "set once"
        );
        store.set_clock(Some(t(14, 0)));
        let r = store
            .resolve_ticket(id, "换了搓纸轮", &[article])
            .expect("resolve");
        assert_eq!(text(&r, "status"), Some("resolved"));
        assert_eq!(r.get("resolved_at"), Some(&FieldValue::DateTime(t(14, 0))));
        assert_eq!(
            r.get("articles").map(|v| v.referenced_ids()),
            Some(vec![article])
        );
        let a = store.get(article).expect("article");
        assert_eq!(
            a.get("related_tickets").map(|v| v.referenced_ids()),
            Some(vec![id])
        );

        // Urgent: first response at 40 min of 60 → met; resolved after 5 h of 4 → breached.
        let sla = store.ticket_sla(id).expect("sla").expect("clocks");
        assert!(!sla.first_response.as_ref().expect("fr").breached);
        assert!(sla.resolution.as_ref().expect("res").breached);

        let r = store.rate_ticket(id, 4, Some("还行")).expect("rate");
        assert_eq!(r.get("satisfaction"), Some(&FieldValue::Int(4)));
        store.set_clock(Some(t(15, 0)));
        let r = store.close_ticket(id).expect("close");
        assert_eq!(text(&r, "status"), Some("closed"));
        assert_eq!(r.get("closed_at"), Some(&FieldValue::DateTime(t(15, 0))));
        let history: Vec<&str> = r.history["status"]
            .iter()
            .map(|h| h.value.as_str())
            .collect();
        assert_eq!(
            history,
            ["new", "assigned", "in_progress", "resolved", "closed"]
        );
    }

    #[test]
    fn invalid_transitions_are_rejected_and_change_nothing() {
        let (_d, mut store) = store();
        let me = store.identity().user_id.expect("user");
        let id = ticket(&mut store, "normal");
        let before = store.get(id).expect("get");
        let err = store.close_ticket(id).expect_err("close a new ticket");
        assert!(err.is_invalid_input());
        assert!(err.to_string().contains("resolve it first"), "{err}");
        assert!(store.rate_ticket(id, 5, None).is_err());
        assert!(
            store.resolve_ticket(id, "  ", &[]).is_err(),
            "empty resolution"
        );
        let not_article = store.identity().user_id.expect("user");
        assert!(store.resolve_ticket(id, "done", &[not_article]).is_err());
        assert_eq!(store.get(id).expect("get"), before, "nothing written");

        store.resolve_ticket(id, "done", &[]).expect("resolve");
        assert!(store.assign_ticket(id, me, None).is_err(), "resolved");
        assert!(store.respond_ticket(id, None).is_err());
        assert!(store.resolve_ticket(id, "again", &[]).is_err());
        let err = store.rate_ticket(id, 6, None).expect_err("score 6");
        assert!(err.is_invalid_input(), "{err}");
        let r = store.get(id).expect("get");
        assert!(
            r.get("first_response_at").is_some(),
            "resolution is a response"
        );
        store.close_ticket(id).expect("close");
        assert!(store.close_ticket(id).is_err(), "closed twice");
    }

    #[test]
    fn canonical_numbers_keep_the_provisional_one_as_alias() {
        let (_d, mut store) = store();
        let id = ticket(&mut store, "low");
        let other = ticket(&mut store, "low");
        assert_eq!(
            store.ticket_by_number("T-laptop-1").expect("find"),
            Some(id)
        );
        let r = store.settle_ticket_number(id, "T-1001").expect("settle");
        assert_eq!(text(&r, "number"), Some("T-1001"));
        assert_eq!(
            r.custom.get(PROVISIONAL_NUMBER).map(String::as_str),
            Some("T-laptop-1")
        );
        assert_eq!(store.ticket_by_number("T-1001").expect("find"), Some(id));
        assert_eq!(
            store.ticket_by_number("T-laptop-1").expect("find"),
            Some(id)
        );
        store
            .settle_ticket_number(id, "T-1001")
            .expect("idempotent");
        assert!(store.settle_ticket_number(id, "T-1002").is_err());
        assert!(
            store.settle_ticket_number(other, "T-1001").is_err(),
            "taken"
        );
    }

    #[test]
    fn the_sla_policy_is_configurable_and_stored_in_a_record() {
        let (_d, mut store) = store();
        let p = store.sla_policy().expect("policy");
        assert_eq!(p.target(Some("high")).first_response_minutes, 240);
        assert!(p.record.is_none());
        let p = store.set_sla("high", Some(120), None).expect("set");
        assert_eq!(p.target(Some("high")).first_response_minutes, 120);
        assert_eq!(p.target(Some("high")).resolution_minutes, 1440, "kept");
        assert!(p.target(Some("high")).overridden);
        assert!(!p.target(Some("low")).overridden);
        let holder = p.record.expect("a policy record");
        assert_eq!(store.kind_of(holder).expect("kind"), Kind::Team);
        let p = store.set_sla("high", None, Some(600)).expect("set again");
        assert_eq!(p.record, Some(holder), "one record");
        assert_eq!(p.target(Some("high")).resolution_minutes, 600);
        assert!(
            store.set_sla("high", Some(700), None).is_err(),
            "longer than resolution"
        );
        assert!(store.set_sla("critical", Some(10), None).is_err());
        assert!(store.set_sla("low", None, None).is_err());
    }

    #[test]
    fn ticket_clocks_list_open_tickets_nearest_due_first() {
        let (_d, mut store) = store();
        // Opened at 09:00: low (first response due 2 days later), urgent (due 10:00), high
        // (answered at 09:30; resolution due a day later), and an urgent one resolved and
        // closed.
        store.set_clock(Some(t(9, 0)));
        let low = ticket(&mut store, "low");
        let urgent = ticket(&mut store, "urgent");
        let high = ticket(&mut store, "high");
        let done = ticket(&mut store, "urgent");
        store.set_clock(Some(t(9, 30)));
        store.respond_ticket(high, None).expect("respond");
        store.resolve_ticket(done, "ok", &[]).expect("resolve");
        store.close_ticket(done).expect("close");
        store.set_clock(None);
        // At 11:00 the urgent ticket's first response (due 10:00) is an hour late.
        let clocks = store.ticket_clocks(false, false, t(11, 0)).expect("clocks");
        let ids: Vec<RecordId> = clocks.iter().map(|c| c.id).collect();
        // Running clocks' nearest due: urgent 10:00, high tomorrow 09:00 (resolution; its
        // first response is met), low in 2 days; the closed ticket is left out.
        assert_eq!(ids, [urgent, high, low]);
        assert!(clocks[0].sla.breached());
        assert_eq!(
            clocks[0]
                .sla
                .first_response
                .as_ref()
                .and_then(|c| c.minutes_left),
            Some(-60)
        );
        let breached = store.ticket_clocks(true, false, t(11, 0)).expect("clocks");
        assert_eq!(breached.iter().map(|c| c.id).collect::<Vec<_>>(), [urgent]);
        let all = store.ticket_clocks(false, true, t(11, 0)).expect("clocks");
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].id, done, "stopped clocks last");
        assert!(
            !all[3].sla.breached(),
            "answered and resolved within 30 min"
        );
    }
}
