//! Duplicate detection: normalised keys of a record (emails, phones, domains, name) and the
//! groups of records that share one.
//!
//! The same keys serve `crm duplicates` ([`Store::duplicate_groups`], over the projections)
//! and the import's duplicate check (which computes them for rows not stored yet with
//! [`record_keys`]). Two devices that create the same customer while offline produce two
//! records with the same keys, so they show up as a group once the replicas have synced.

use std::collections::HashMap;
use std::fmt;

use crm_model::{FieldType, Kind, RecordId, SetOf};
use serde::Serialize;

use crate::error::{Result, StoreError};
use crate::replica::Store;
use crate::schema::{column, table};

/// What a duplicate key was made from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyKind {
    Email,
    Phone,
    Domain,
    Name,
}

impl KeyKind {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyKind::Email => "email",
            KeyKind::Phone => "phone",
            KeyKind::Domain => "domain",
            KeyKind::Name => "name",
        }
    }
}

/// One normalised key: two records sharing a key are likely the same customer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct DedupKey {
    pub kind: KeyKind,
    pub value: String,
}

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.value)
    }
}

/// Legal-form words dropped from the end of a company name before comparing, longest first
/// within each script so `股份有限公司` goes before `有限公司`.
const COMPANY_SUFFIXES: &[&str] = &[
    "股份有限公司",
    "有限责任公司",
    "有限公司",
    "集团公司",
    "集团",
    "公司",
    "incorporated",
    "corporation",
    "limited",
    "company",
    "holdings",
    "group",
    "gmbh",
    "corp",
    "ltd",
    "inc",
    "llc",
    "plc",
    "co",
    "ag",
    "sa",
];

/// A company or person name reduced for comparison: lowercase, without whitespace and
/// punctuation, without trailing legal-form words (`Ltd`, `Inc.`, `有限公司`, …).
/// `"ACME Trading Co., Ltd."` and `"acme trading"` give the same key.
pub fn name_key(name: &str) -> String {
    // Words first, so a suffix is only dropped when it is a whole word ("Co" but not the end
    // of "Tesco"); Chinese suffixes have no word boundary and are stripped from the joined key.
    let lower = name.to_lowercase();
    let mut words: Vec<String> = lower
        .split(|c: char| c.is_whitespace() || (c.is_ascii_punctuation() && c != '&'))
        .filter(|w| !w.is_empty())
        .map(str::to_string)
        .collect();
    while words.len() > 1
        && words
            .last()
            .is_some_and(|w| COMPANY_SUFFIXES.contains(&w.as_str()))
    {
        words.pop();
    }
    let mut key: String = words
        .concat()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == '&')
        .collect();
    // The longest suffix the key ends with goes, unless it is the whole name.
    while let Some(suffix) = COMPANY_SUFFIXES
        .iter()
        .find(|s| !s.is_ascii() && key.ends_with(*s))
        && key.len() > suffix.len()
    {
        key.truncate(key.len() - suffix.len());
    }
    key
}

/// The digits of a phone number that identify it: without an international `00`/`+86`
/// prefix or a trunk `0`, so `+86 755 1234 5678` and `0755-1234-5678` match. Numbers with
/// fewer than 7 digits give no key.
pub fn phone_digits(phone: &str) -> Option<String> {
    let mut digits = crm_model::phone_key(phone);
    if let Some(rest) = digits.strip_prefix("00") {
        digits = rest.to_string();
    }
    if digits.len() >= 12
        && let Some(rest) = digits.strip_prefix("86")
    {
        digits = rest.to_string();
    }
    if let Some(rest) = digits.strip_prefix('0') {
        digits = rest.to_string();
    }
    (digits.len() >= 7).then_some(digits)
}

/// The duplicate keys of a record of `kind`, given its field values as text (`values(name)`
/// returns the items of a set field, or the one value of another field, empty when unset)
/// and its display title.
///
/// Emails, phones and domains come from every field of those types; the name key from the
/// title, with the account a contact belongs to, so two people called 王芳 at different
/// companies are not flagged.
pub fn record_keys(kind: Kind, title: &str, values: &dyn Fn(&str) -> Vec<String>) -> Vec<DedupKey> {
    let mut keys = Vec::new();
    for field in kind.schema().all_fields() {
        let key_kind = match field.ty {
            FieldType::Email | FieldType::Set(SetOf::Email) => KeyKind::Email,
            FieldType::Phone | FieldType::Set(SetOf::Phone) => KeyKind::Phone,
            FieldType::Domain => KeyKind::Domain,
            _ => continue,
        };
        for v in values(field.name) {
            let value = match key_kind {
                KeyKind::Email => Some(v.trim().to_lowercase()),
                KeyKind::Phone => phone_digits(&v),
                KeyKind::Domain => crm_model::normalize_domain(&v).ok(),
                KeyKind::Name => None,
            };
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                keys.push(DedupKey {
                    kind: key_kind,
                    value,
                });
            }
        }
    }
    let name = name_key(title);
    if name.chars().count() >= 2 {
        let value = match kind {
            Kind::Contact => {
                let account = values("account").into_iter().next().unwrap_or_default();
                format!("{name}|{account}")
            }
            _ => name,
        };
        keys.push(DedupKey {
            kind: KeyKind::Name,
            value,
        });
    }
    keys.sort();
    keys.dedup();
    keys
}

/// One record of a duplicate group.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DuplicateMember {
    pub id: RecordId,
    pub title: String,
    pub created_at: Option<String>,
    pub created_by: Option<String>,
}

/// Records that are likely the same, and the keys they share.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DuplicateGroup {
    pub kind: Kind,
    /// Oldest first: the usual survivor of a merge.
    pub members: Vec<DuplicateMember>,
    /// Keys held by at least two members.
    pub shared: Vec<DedupKey>,
}

/// A live record and its duplicate keys.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyedRecord {
    pub member: DuplicateMember,
    pub keys: Vec<DedupKey>,
}

impl Store {
    /// Groups of live (not archived) records of `kind` that share a normalised email, phone,
    /// domain or name, from the projection table in one scan. Records linked through
    /// different keys (A and B share an email, B and C a phone) form one group.
    pub fn duplicate_groups(&self, kind: Kind) -> Result<Vec<DuplicateGroup>> {
        let (members, keys): (Vec<_>, Vec<_>) = self
            .dedup_keys(kind)?
            .into_iter()
            .map(|k| (k.member, k.keys))
            .unzip();
        Ok(group(kind, members, keys))
    }

    /// Every live (not archived, not merged) record of `kind` with its duplicate keys, read
    /// from the projection table in one scan (no document is loaded).
    pub fn dedup_keys(&self, kind: Kind) -> Result<Vec<KeyedRecord>> {
        let key_fields: Vec<&'static crm_model::FieldDef> = kind
            .schema()
            .all_fields()
            .filter(|f| {
                matches!(
                    f.ty,
                    FieldType::Email
                        | FieldType::Phone
                        | FieldType::Domain
                        | FieldType::Set(SetOf::Email | SetOf::Phone)
                ) || (kind == Kind::Contact && f.name == "account")
            })
            .collect();
        let mut sql = String::from("SELECT id, title, created_at, created_by");
        for f in &key_fields {
            sql.push_str(", ");
            sql.push_str(&column(f.name));
        }
        sql.push_str(&format!(
            " FROM {} WHERE archived = 0 AND {} IS NULL",
            table(kind),
            column("merged_into")
        ));
        let mut stmt = self.conn.prepare(&sql)?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let id: String = row.get(0)?;
            let title: String = row.get(1)?;
            let mut values: HashMap<&str, Vec<String>> = HashMap::new();
            for (i, f) in key_fields.iter().enumerate() {
                let Some(text) = row.get::<_, Option<String>>(4 + i)? else {
                    continue;
                };
                let items = if matches!(f.ty, FieldType::Set(_)) {
                    serde_json::from_str::<Vec<String>>(&text)
                        .map_err(|_| StoreError::CorruptProjection(text.clone()))?
                } else {
                    vec![text]
                };
                values.insert(f.name, items);
            }
            let keys = record_keys(kind, &title, &|name| {
                values.get(name).cloned().unwrap_or_default()
            });
            out.push(KeyedRecord {
                member: DuplicateMember {
                    id: id.parse().map_err(|_| StoreError::CorruptProjection(id))?,
                    title,
                    created_at: row.get(2)?,
                    created_by: row.get(3)?,
                },
                keys,
            });
        }
        Ok(out)
    }
}

/// Union-find over the records by shared key.
fn group(
    kind: Kind,
    members: Vec<DuplicateMember>,
    member_keys: Vec<Vec<DedupKey>>,
) -> Vec<DuplicateGroup> {
    let mut parent: Vec<usize> = (0..members.len()).collect();
    fn find(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    let mut first_with: HashMap<&DedupKey, usize> = HashMap::new();
    let mut key_count: HashMap<&DedupKey, usize> = HashMap::new();
    for (i, keys) in member_keys.iter().enumerate() {
        for key in keys {
            *key_count.entry(key).or_default() += 1;
            match first_with.get(key) {
                Some(&j) => {
                    let (a, b) = (find(&mut parent, i), find(&mut parent, j));
                    if a != b {
                        parent[a.max(b)] = a.min(b);
                    }
                }
                None => {
                    first_with.insert(key, i);
                }
            }
        }
    }
    let mut by_root: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..members.len() {
        let root = find(&mut parent, i);
        by_root.entry(root).or_default().push(i);
    }
    let mut groups: Vec<DuplicateGroup> = by_root
        .into_values()
        .filter(|ix| ix.len() > 1)
        .map(|ix| {
            let mut shared: Vec<DedupKey> = ix
                .iter()
                .flat_map(|&i| member_keys[i].iter())
                .filter(|k| key_count.get(k).copied().unwrap_or(0) > 1)
                .cloned()
                .collect();
            shared.sort();
            shared.dedup();
            let mut group: Vec<DuplicateMember> = ix.iter().map(|&i| members[i].clone()).collect();
            group.sort_by(|a, b| (&a.created_at, a.id).cmp(&(&b.created_at, b.id)));
            DuplicateGroup {
                kind,
                members: group,
                shared,
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        (&a.members[0].title, a.members[0].id).cmp(&(&b.members[0].title, b.members[0].id))
    });
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_ignore_case_space_punctuation_and_legal_forms() {
        assert_eq!(name_key("ACME Trading Co., Ltd."), "acmetrading");
        assert_eq!(name_key("  acme   trading "), "acmetrading");
        assert_eq!(name_key("Acme Trading Inc"), "acmetrading");
        assert_eq!(name_key("深圳星光贸易有限公司"), "深圳星光贸易");
        assert_eq!(name_key("深圳 星光贸易 股份有限公司"), "深圳星光贸易");
        // A suffix is only dropped as a whole word, and never the whole name.
        assert_eq!(name_key("Tesco"), "tesco");
        assert_eq!(name_key("Group"), "group");
        assert_eq!(name_key("有限公司"), "有限公司");
    }

    #[test]
    fn phone_digits_ignore_country_and_trunk_prefixes() {
        assert_eq!(
            phone_digits("+86 755 1234 5678"),
            phone_digits("0755-1234-5678")
        );
        assert_eq!(
            phone_digits("+86 138 0013 8000").as_deref(),
            Some("13800138000")
        );
        assert_eq!(phone_digits("12345"), None);
    }

    #[test]
    fn contacts_are_keyed_by_name_and_account() {
        let keys = record_keys(Kind::Contact, "王芳", &|f| match f {
            "emails" => vec!["Wang@Star.cn".into()],
            "account" => vec!["acc1".into()],
            _ => vec![],
        });
        assert!(keys.contains(&DedupKey {
            kind: KeyKind::Email,
            value: "wang@star.cn".into()
        }));
        assert!(keys.contains(&DedupKey {
            kind: KeyKind::Name,
            value: "王芳|acc1".into()
        }));
    }
}
