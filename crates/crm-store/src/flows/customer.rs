//! Customer management: lifecycle stage moves (the L+A `lifecycle` field keeps the history),
//! relations between accounts, and the 360° view of one account gathered from the projections.

use std::collections::BTreeSet;

use crm_model::{Edit, FieldValue, Kind, Record, RecordId};
use rusqlite::OptionalExtension;
use serde::Serialize;
use serde_json::Value as Json;

use super::sla::text;
use crate::{Result, Store, StoreError};

/// How far up a parent chain the cycle check walks before giving up (a corrupt or merged
/// chain must not loop forever).
const MAX_DEPTH: usize = 256;

impl Store {
    /// Moves an account to lifecycle `stage` (prospect, contacted, converted, active, loyal,
    /// churned). Any move is allowed (a churned customer can come back) except staying put.
    pub fn set_lifecycle(&mut self, id: RecordId, stage: &str) -> Result<Record> {
        let account = self.get_kind(Kind::Account, id)?;
        let mut edit = Edit::new(Kind::Account);
        edit.set("lifecycle", stage)?;
        if let Some(crm_model::Op::Set(_, FieldValue::Text(new))) = edit.ops().first()
            && text(&account, "lifecycle") == Some(new.as_str())
        {
            return Err(StoreError::Rejected(format!(
                "account {} is already {new}",
                account.title()
            )));
        }
        self.edit(id, &edit)
    }

    /// Relates account `from` to `to` (`subsidiary_of`, `partner_of`, `distributor_of`,
    /// `reseller_of`) with an account-relation record. Refuses relating an account to itself,
    /// a relation that already exists, and for `subsidiary_of` a second parent or a cycle
    /// (`to` is `from` or one of its subsidiaries). `subsidiary_of` also sets `from.parent`.
    ///
    /// Two writes (the relation, then the parent); re-running after an interruption between
    /// them finishes the job instead of failing as a duplicate.
    pub fn relate_accounts(
        &mut self,
        from: RecordId,
        relation: &str,
        to: RecordId,
        note: Option<&str>,
    ) -> Result<Record> {
        let mut edit = Edit::new(Kind::AccountRelation);
        edit.set("relation", relation)?;
        let relation = match edit.ops().first() {
            Some(crm_model::Op::Set(_, FieldValue::Text(r))) => r.clone(),
            _ => relation.to_string(),
        };
        let account = self.get_kind(Kind::Account, from)?;
        let other = self.get_kind(Kind::Account, to)?;
        if from == to {
            return Err(StoreError::Rejected(format!(
                "account {} can't be related to itself",
                account.title()
            )));
        }
        let existing: Option<String> = self
            .conn
            .query_row(
                "SELECT id FROM rec_account_relation WHERE archived = 0 \
                 AND f_from = ?1 AND f_relation = ?2 AND f_to = ?3",
                [from.to_string(), relation.clone(), to.to_string()],
                |r| r.get(0),
            )
            .optional()?;
        let parent = match account.get("parent") {
            Some(FieldValue::Ref(p)) => Some(*p),
            _ => None,
        };
        if relation == "subsidiary_of" {
            if let Some(p) = parent
                && p != to
            {
                return Err(StoreError::Rejected(format!(
                    "account {} is already a subsidiary of {p}; change its parent first",
                    account.title()
                )));
            }
            // Walk up from `to`: meeting `from` means `to` is below `from` already.
            let mut at = Some(to);
            let mut depth = 0;
            while let Some(cur) = at {
                if cur == from {
                    return Err(StoreError::Rejected(format!(
                        "{} is (a subsidiary of) a subsidiary of {}; making it the parent would be a cycle",
                        other.title(),
                        account.title()
                    )));
                }
                depth += 1;
                if depth > MAX_DEPTH {
                    break;
                }
                at = self.parent_of(cur)?;
            }
        }
        let relation_record = match existing {
            Some(existing) if relation != "subsidiary_of" || parent == Some(to) => {
                return Err(StoreError::Rejected(format!(
                    "{} is already {relation} {} (relation {existing})",
                    account.title(),
                    other.title()
                )));
            }
            Some(existing) => {
                let id: RecordId = existing
                    .parse()
                    .map_err(|_| StoreError::CorruptProjection(existing))?;
                self.get(id)?
            }
            None => {
                edit.set_value("from", FieldValue::Ref(from))?;
                edit.set_value("to", FieldValue::Ref(to))?;
                if let Some(n) = note.filter(|n| !n.trim().is_empty()) {
                    edit.set("note", n)?;
                }
                self.create(&edit)?
            }
        };
        if relation == "subsidiary_of" && parent != Some(to) {
            let mut e = Edit::new(Kind::Account);
            e.set_value("parent", FieldValue::Ref(to))?;
            self.edit(from, &e)?;
        }
        Ok(relation_record)
    }

    /// An account's parent, from its `parent` field or a `subsidiary_of` relation.
    fn parent_of(&self, id: RecordId) -> Result<Option<RecordId>> {
        let parent: Option<String> = self
            .conn
            .query_row(
                "SELECT coalesce( \
                   (SELECT f_parent FROM rec_account WHERE id = ?1), \
                   (SELECT f_to FROM rec_account_relation WHERE archived = 0 AND f_from = ?1 \
                      AND f_relation = 'subsidiary_of' ORDER BY id LIMIT 1))",
                [id.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        Ok(parent.and_then(|p| p.parse().ok()))
    }

    /// The 360° view of an account, from the projections: its contacts, opportunities,
    /// tickets, activities (targeting the account, its contacts or its opportunities),
    /// campaigns (its contacts as members, its opportunities' campaigns, campaigns of leads
    /// converted into it), relations both ways, and subsidiaries. Archived records are left
    /// out.
    pub fn account_360(&mut self, id: RecordId) -> Result<Account360> {
        let account = self.get_kind(Kind::Account, id)?;
        let aid = id.to_string();
        let rows = |store: &Store, sql: &str, args: &[&str]| -> Result<Vec<Json>> {
            let mut stmt = store.conn.prepare_cached(sql)?;
            let rows = stmt.query_map(rusqlite::params_from_iter(args.iter()), |r| {
                r.get::<_, String>(0)
            })?;
            let mut out = Vec::new();
            for row in rows {
                let row = row?;
                out.push(
                    serde_json::from_str(&row).map_err(|_| StoreError::CorruptProjection(row))?,
                );
            }
            Ok(out)
        };
        let contacts = rows(
            self,
            "SELECT json FROM rec_contact WHERE archived = 0 AND (f_account = ?1 OR docno IN \
               (SELECT docno FROM record_refs WHERE field = 'other_accounts' AND target = ?1)) \
             ORDER BY title, id",
            &[&aid],
        )?;
        let opportunities = rows(
            self,
            "SELECT json FROM rec_opportunity WHERE archived = 0 AND f_account = ?1 \
             ORDER BY f_close_date, id",
            &[&aid],
        )?;
        let contact_ids: Vec<String> = contacts
            .iter()
            .filter_map(|c| c.get("id")?.as_str().map(str::to_string))
            .collect();
        let opportunity_ids: Vec<String> = opportunities
            .iter()
            .filter_map(|c| c.get("id")?.as_str().map(str::to_string))
            .collect();
        // The account, its contacts and its deals, as a JSON array for json_each.
        let mut targets = vec![aid.clone()];
        targets.extend(contact_ids.iter().cloned());
        targets.extend(opportunity_ids.iter().cloned());
        let targets = serde_json::to_string(&targets).unwrap_or_else(|_| "[]".into());
        let contacts_json = serde_json::to_string(&contact_ids).unwrap_or_else(|_| "[]".into());
        let tickets = rows(
            self,
            "SELECT json FROM rec_ticket WHERE archived = 0 AND (f_account = ?1 OR f_contact IN \
               (SELECT value FROM json_each(?2))) ORDER BY f_opened_at DESC, id",
            &[&aid, &contacts_json],
        )?;
        let activities = rows(
            self,
            "SELECT json FROM rec_activity WHERE archived = 0 AND docno IN \
               (SELECT docno FROM record_refs WHERE field = 'targets' AND target IN \
                  (SELECT value FROM json_each(?1))) \
             ORDER BY coalesce(f_start, f_due, created_at) DESC, id",
            &[&targets],
        )?;
        let campaigns = rows(
            self,
            "SELECT json FROM rec_campaign WHERE archived = 0 AND id IN ( \
               SELECT f_campaign FROM rec_campaign_member WHERE archived = 0 \
                 AND f_member IN (SELECT value FROM json_each(?2)) \
               UNION SELECT f_campaign FROM rec_opportunity WHERE archived = 0 AND f_account = ?1 \
               UNION SELECT f_campaign FROM rec_lead WHERE archived = 0 AND f_converted_account = ?1) \
             ORDER BY f_start_date DESC, id",
            &[&aid, &contacts_json],
        )?;
        let relations = rows(
            self,
            "SELECT json FROM rec_account_relation WHERE archived = 0 AND (f_from = ?1 OR f_to = ?1) \
             ORDER BY f_relation, id",
            &[&aid],
        )?;
        let subsidiaries = rows(
            self,
            "SELECT json FROM rec_account WHERE archived = 0 AND f_parent = ?1 ORDER BY title, id",
            &[&aid],
        )?;
        let related: BTreeSet<RecordId> = relations
            .iter()
            .flat_map(|r| [r.get("from"), r.get("to")])
            .flatten()
            .filter_map(|v| v.as_str()?.parse().ok())
            .chain(match account.get("parent") {
                Some(FieldValue::Ref(p)) => Some(*p),
                _ => None,
            })
            .collect();
        let names = self.titles(&related.into_iter().collect::<Vec<_>>())?;
        Ok(Account360 {
            account: account.to_json(),
            contacts,
            opportunities,
            tickets,
            activities,
            campaigns,
            relations,
            subsidiaries,
            names: names.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        })
    }
}

/// Everything about one account (see [`Store::account_360`]); each list holds flat JSON
/// records as `crm KIND list --json` prints them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Account360 {
    pub account: Json,
    pub contacts: Vec<Json>,
    pub opportunities: Vec<Json>,
    pub tickets: Vec<Json>,
    pub activities: Vec<Json>,
    pub campaigns: Vec<Json>,
    pub relations: Vec<Json>,
    pub subsidiaries: Vec<Json>,
    /// Names of the accounts the relations and the parent point at, by id.
    pub names: std::collections::BTreeMap<String, String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::init(dir.path(), "alice", "laptop").expect("init");
        (dir, store)
    }

    fn make(store: &mut Store, kind: Kind, fields: &[(&str, &str)]) -> RecordId {
        let mut e = Edit::new(kind);
        for (k, v) in fields {
            e.set(k, v).expect("valid");
        }
        store.create(&e).expect("create").id
    }

    #[test]
    fn lifecycle_moves_keep_history() {
        let (_d, mut store) = store();
        let a = make(&mut store, Kind::Account, &[("name", "星光")]);
        assert!(store.set_lifecycle(a, "prospect").is_err(), "already");
        assert!(store.set_lifecycle(a, "gold").is_err());
        store.set_lifecycle(a, "contacted").expect("move");
        let r = store.set_lifecycle(a, "Active").expect("move");
        let h: Vec<&str> = r.history["lifecycle"]
            .iter()
            .map(|e| e.value.as_str())
            .collect();
        assert_eq!(h, ["prospect", "contacted", "active"]);
    }

    #[test]
    fn relations_refuse_self_duplicates_and_cycles() {
        let (_d, mut store) = store();
        let group = make(&mut store, Kind::Account, &[("name", "集团")]);
        let sub = make(&mut store, Kind::Account, &[("name", "子公司")]);
        let subsub = make(&mut store, Kind::Account, &[("name", "孙公司")]);
        assert!(
            store
                .relate_accounts(group, "partner_of", group, None)
                .is_err()
        );
        store
            .relate_accounts(sub, "subsidiary_of", group, Some("100%"))
            .expect("relate");
        assert_eq!(
            store.get(sub).expect("get").get("parent"),
            Some(&FieldValue::Ref(group))
        );
        assert!(
            store
                .relate_accounts(sub, "subsidiary_of", group, None)
                .is_err(),
            "dup"
        );
        store
            .relate_accounts(subsub, "subsidiary_of", sub, None)
            .expect("relate");
        let err = store
            .relate_accounts(group, "subsidiary_of", subsub, None)
            .expect_err("cycle");
        assert!(err.to_string().contains("cycle"), "{err}");
        assert!(
            store
                .relate_accounts(sub, "subsidiary_of", subsub, None)
                .is_err(),
            "second parent"
        );
        store
            .relate_accounts(sub, "partner_of", subsub, None)
            .expect("other kinds are free");
        assert_eq!(store.count(Kind::AccountRelation, true).expect("count"), 3);
    }

    #[test]
    fn the_360_view_gathers_everything() {
        let (_d, mut store) = store();
        let a = make(&mut store, Kind::Account, &[("name", "星光")]);
        let other = make(&mut store, Kind::Account, &[("name", "Other")]);
        let c = make(
            &mut store,
            Kind::Contact,
            &[("last_name", "王"), ("account", &a.to_string())],
        );
        make(
            &mut store,
            Kind::Contact,
            &[("last_name", "Elsewhere"), ("account", &other.to_string())],
        );
        let camp = make(&mut store, Kind::Campaign, &[("name", "展会")]);
        let camp2 = make(&mut store, Kind::Campaign, &[("name", "Ads")]);
        make(&mut store, Kind::Campaign, &[("name", "Unrelated")]);
        let o = make(
            &mut store,
            Kind::Opportunity,
            &[
                ("name", "Deal"),
                ("account", &a.to_string()),
                ("campaign", &camp2.to_string()),
            ],
        );
        make(
            &mut store,
            Kind::Ticket,
            &[("subject", "via contact"), ("contact", &c.to_string())],
        );
        make(
            &mut store,
            Kind::Ticket,
            &[("subject", "elsewhere"), ("account", &other.to_string())],
        );
        make(
            &mut store,
            Kind::Activity,
            &[
                ("type", "call"),
                ("subject", "call"),
                ("targets", &c.to_string()),
            ],
        );
        make(
            &mut store,
            Kind::Activity,
            &[
                ("type", "note"),
                ("subject", "deal note"),
                ("targets", &o.to_string()),
            ],
        );
        make(
            &mut store,
            Kind::Activity,
            &[
                ("type", "note"),
                ("subject", "other"),
                ("targets", &other.to_string()),
            ],
        );
        store
            .add_campaign_members(camp, &[c], None)
            .expect("member");
        store
            .relate_accounts(other, "distributor_of", a, None)
            .expect("relate");
        let v = store.account_360(a).expect("360");
        assert_eq!(v.contacts.len(), 1);
        assert_eq!(v.opportunities.len(), 1);
        assert_eq!(v.tickets.len(), 1, "the ticket of its contact");
        assert_eq!(v.activities.len(), 2, "targets its contact or its deal");
        let mut names: Vec<&str> = v
            .campaigns
            .iter()
            .filter_map(|c| c["name"].as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(names, ["Ads", "展会"]);
        assert_eq!(v.relations.len(), 1);
        assert_eq!(
            v.names.get(&other.to_string()).map(String::as_str),
            Some("Other")
        );
    }
}
