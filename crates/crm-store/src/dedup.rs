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
use rusqlite::OptionalExtension;
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

impl DedupKey {
    /// A 64-bit hash of the key (SipHash with fixed keys: the same in every run of a build).
    pub fn hash64(&self) -> i64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.hash(&mut h);
        h.finish().cast_signed()
    }
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
        let mut out = Vec::new();
        self.for_each_keyed(kind, |keyed| {
            out.push(keyed);
            Ok(())
        })?;
        Ok(out)
    }

    /// [`Store::dedup_keys`] one record at a time, without collecting them.
    fn for_each_keyed(
        &self,
        kind: Kind,
        mut each: impl FnMut(KeyedRecord) -> Result<()>,
    ) -> Result<()> {
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
            each(KeyedRecord {
                member: DuplicateMember {
                    id: id.parse().map_err(|_| StoreError::CorruptProjection(id))?,
                    title,
                    created_at: row.get(2)?,
                    created_by: row.get(3)?,
                },
                keys,
            })?;
        }
        Ok(())
    }

    /// Starts this connection's key index for `kind` (replacing any earlier one), holding
    /// the keys of every live record of the kind; rows of a file are added with
    /// [`Store::key_index_add_rows`] as they are planned. Call it outside a transaction.
    ///
    /// The index is a table of its own database file, a temporary file in the replica's
    /// directory read through SQLite's bounded page cache, with 64-bit key hashes: an import's
    /// memory stays the same whatever the number of rows and records. (It is not a `TEMP`
    /// table: the connection keeps those in memory, see `replica::configure`.) Two different
    /// keys share a hash with a probability of about 10⁻⁸ among a million keys; a row's
    /// outcome names the key it matched.
    pub fn key_index_start(&mut self, kind: Kind) -> Result<()> {
        self.key_index_end()?;
        let file = tempfile::Builder::new()
            .prefix(".import-keys-")
            .tempfile_in(self.dir())
            .map_err(|e| StoreError::Io {
                path: self.dir().to_path_buf(),
                source: e,
            })?
            .into_temp_path();
        self.conn
            .execute("ATTACH DATABASE ?1 AS keys", [file.to_string_lossy()])?;
        self.key_file = Some(file);
        self.conn.execute_batch(KEY_INDEX)?;
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare(
                "INSERT OR IGNORE INTO keys.key_index (key, record, title) VALUES (?1, ?2, ?3)",
            )?;
            self.for_each_keyed(kind, |keyed| {
                let id = keyed.member.id.to_string();
                for key in &keyed.keys {
                    insert.execute(rusqlite::params![key.hash64(), id, keyed.member.title])?;
                }
                Ok(())
            })?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Where `key` was seen first: a record of the replica, or a row added with
    /// [`Store::key_index_add_rows`]. `None` when the index was not started.
    pub fn key_index_get(&self, key: &DedupKey) -> Result<Option<KeySeen>> {
        if self.key_file.is_none() {
            return Ok(None);
        }
        let found: Option<(Option<i64>, Option<String>, Option<String>)> = self
            .conn
            .prepare_cached("SELECT row, record, title FROM keys.key_index WHERE key = ?1")?
            .query_row([key.hash64()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        Ok(match found {
            Some((_, Some(record), title)) => Some(KeySeen::Record {
                id: record
                    .parse()
                    .map_err(|_| StoreError::CorruptProjection(record))?,
                title: title.unwrap_or_default(),
            }),
            Some((Some(row), None, _)) => Some(KeySeen::Row(u64::try_from(row).unwrap_or(0))),
            _ => None,
        })
    }

    /// Adds rows' keys to the key index (a key already there keeps where it was seen first).
    pub fn key_index_add_rows(&mut self, keys: &[(DedupKey, u64)]) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        if self.key_file.is_none() {
            return Err(StoreError::Internal(
                "key_index_add_rows before key_index_start",
            ));
        }
        let tx = self.conn.unchecked_transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO keys.key_index (key, row) VALUES (?1, ?2)",
            )?;
            for (key, row) in keys {
                insert.execute(rusqlite::params![
                    key.hash64(),
                    i64::try_from(*row).unwrap_or(i64::MAX)
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Drops the key index and its file. Call it outside a transaction.
    pub fn key_index_end(&mut self) -> Result<()> {
        if let Some(file) = self.key_file.take() {
            // Statements cached on the detached database would keep it busy.
            self.conn.flush_prepared_statement_cache();
            self.conn.execute_batch("DETACH DATABASE keys;")?;
            drop(file);
        }
        Ok(())
    }
}

/// The key index (see [`Store::key_index_start`]), in the database attached as `keys`. Its
/// journal is in memory and it is never synced: it lives as long as one import.
const KEY_INDEX: &str = "PRAGMA keys.journal_mode = MEMORY;
PRAGMA keys.synchronous = OFF;
CREATE TABLE keys.key_index (
    key    INTEGER PRIMARY KEY,
    row    INTEGER,
    record TEXT,
    title  TEXT
);";

/// Where a duplicate key was seen first (see [`Store::key_index_start`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeySeen {
    Record { id: RecordId, title: String },
    Row(u64),
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

    #[test]
    fn the_key_index_knows_live_records_and_added_rows_and_keeps_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
        let mut edit = crm_model::Edit::new(Kind::Account);
        edit.set("name", "深圳星光贸易有限公司").expect("valid");
        edit.set("emails", "Sales@XingGuang.cn").expect("valid");
        let star = store.create(&edit).expect("create");
        let mut old = crm_model::Edit::new(Kind::Account);
        old.set("name", "Archived Co").expect("valid");
        let archived = store.create(&old).expect("create");
        store.set_archived(archived.id, true).expect("archive");
        let key = |kind, value: &str| DedupKey {
            kind,
            value: value.into(),
        };
        // Nothing before the index is started.
        assert_eq!(
            store
                .key_index_get(&key(KeyKind::Email, "sales@xingguang.cn"))
                .expect("get"),
            None
        );
        store.key_index_start(Kind::Account).expect("start");
        let seen = |store: &Store, k: &DedupKey| store.key_index_get(k).expect("get");
        let record = Some(KeySeen::Record {
            id: star.id,
            title: "深圳星光贸易有限公司".into(),
        });
        assert_eq!(
            seen(&store, &key(KeyKind::Email, "sales@xingguang.cn")),
            record
        );
        assert_eq!(seen(&store, &key(KeyKind::Name, "深圳星光贸易")), record);
        assert_eq!(seen(&store, &key(KeyKind::Name, "archivedco")), None);
        store
            .key_index_add_rows(&[
                (key(KeyKind::Email, "a@b.cn"), 7),
                (key(KeyKind::Email, "sales@xingguang.cn"), 8),
            ])
            .expect("add");
        store
            .key_index_add_rows(&[(key(KeyKind::Email, "a@b.cn"), 9)])
            .expect("add");
        assert_eq!(
            seen(&store, &key(KeyKind::Email, "a@b.cn")),
            Some(KeySeen::Row(7))
        );
        assert_eq!(
            seen(&store, &key(KeyKind::Email, "sales@xingguang.cn")),
            record
        );
        // Started again, it holds the records only.
        store.key_index_start(Kind::Account).expect("restart");
        assert_eq!(seen(&store, &key(KeyKind::Email, "a@b.cn")), None);
        let key_files = || {
            std::fs::read_dir(dir.path())
                .expect("read dir")
                .filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.file_name().to_string_lossy().starts_with(".import-keys-"))
                })
                .count()
        };
        assert_eq!(key_files(), 1, "one file while the index is started");
        store.key_index_end().expect("end");
        assert_eq!(
            seen(&store, &key(KeyKind::Email, "sales@xingguang.cn")),
            None
        );
        assert_eq!(key_files(), 0, "the index's file is deleted at the end");
        // Adding rows needs a started index; ending twice is fine.
        assert!(
            store
                .key_index_add_rows(&[(key(KeyKind::Email, "a@b.cn"), 1)])
                .is_err()
        );
        store.key_index_end().expect("end again");
    }
}
