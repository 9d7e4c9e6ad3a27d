//! The replica's SQL schema: documents, changes, outbox, and the projection tables generated
//! from the record schemas.

use std::fmt::Write as _;
use std::sync::LazyLock;

use crm_model::{FieldType, Kind};

/// `PRAGMA application_id` of a replica: "CRM1". Tells our files from other SQLite files.
pub(crate) const APPLICATION_ID: i64 = 0x4352_4D31;
/// `PRAGMA user_version`: the replica's storage format. Bumped on every change of the core
/// tables; [`MIGRATIONS`] upgrade older replicas in place when they are opened.
pub(crate) const FORMAT_VERSION: i64 = 4;

/// `MIGRATIONS[i]` turns format `i + 1` into format `i + 2`. Each is idempotent, so a replica
/// whose version number was set back (by hand, or by a test) opens again.
pub(crate) const MIGRATIONS: &[&str] = &[QUARANTINE, OUT_OF_SCOPE, REFUSED];
const _: () = assert!(MIGRATIONS.len() + 1 == FORMAT_VERSION as usize);

/// Tables that hold the data itself; never rebuilt.
pub(crate) const CORE: &str = r#"
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;

-- One row per record document. `kind` is NULL while the change that creates the record has
-- not arrived yet (a later change came first).
CREATE TABLE documents (
    docno      INTEGER PRIMARY KEY,
    id         TEXT NOT NULL UNIQUE,
    kind       TEXT,
    heads      BLOB NOT NULL,
    snapshot   BLOB,
    loose      INTEGER NOT NULL DEFAULT 0,
    updated_at TEXT NOT NULL
);

-- Every change of every document, local or remote, once (by hash). A change is folded into
-- its document's snapshot by compaction but kept, so it can still be shipped to peers.
CREATE TABLE changes (
    seq         INTEGER PRIMARY KEY,
    hash        BLOB NOT NULL UNIQUE,
    docno       INTEGER NOT NULL REFERENCES documents(docno),
    bytes       BLOB NOT NULL,
    in_snapshot INTEGER NOT NULL DEFAULT 0,
    local       INTEGER NOT NULL,
    received_at TEXT NOT NULL
);
CREATE INDEX changes_loose ON changes(docno) WHERE in_snapshot = 0;

-- Local changes the relay has not acknowledged yet.
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY REFERENCES changes(seq)
);

-- Relay cursor and identity, written in the same transactions as the data they describe.
CREATE TABLE sync_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Changes from elsewhere that were refused one by one (see `quarantine.rs`); format 2.
pub(crate) const QUARANTINE: &str = r#"
-- Changes from a relay or another replica that could not be applied (damaged bytes, a change
-- of another record, a change the document refuses): kept for a person to look at, never
-- applied, stored as data or pushed. `hash` is NULL when the bytes are not a change;
-- `position` is the relay's log position, `peer` the other replica of a merge.
CREATE TABLE IF NOT EXISTS quarantine (
    id       INTEGER PRIMARY KEY,
    doc_id   TEXT NOT NULL,
    hash     BLOB,
    bytes    BLOB NOT NULL,
    problem  TEXT NOT NULL,
    reason   TEXT NOT NULL,
    origin   TEXT NOT NULL,
    position INTEGER,
    peer     TEXT,
    at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quarantine_doc ON quarantine(doc_id);
CREATE INDEX IF NOT EXISTS quarantine_hash ON quarantine(hash);
"#;

/// Records the relay asked this replica to purge that still hold unsent local changes (see
/// `access.rs`); format 3.
pub(crate) const OUT_OF_SCOPE: &str = r#"
-- A record that left its user's scope while changes typed here were not yet acknowledged by
-- the relay: it is kept (never lose what a user typed) until they are, then purged. `since`
-- is when the relay first asked; `reason` what asked (a purge or a sweep).
CREATE TABLE IF NOT EXISTS out_of_scope (
    doc_id TEXT PRIMARY KEY,
    since  TEXT NOT NULL,
    reason TEXT NOT NULL
) WITHOUT ROWID;
"#;

/// Local edits the relay refused (see `refused.rs`); format 4.
pub(crate) const REFUSED: &str = r#"
-- One row per record and settlement: what the user typed that the relay refused (and what was
-- built on it), compared field by field with the record as it is without it. `fields` is a
-- JSON array of {field, typed, old} (values as in a JSON record, null for none); `created`
-- when the refused changes made the record; `made_at` is the refused change's time.
CREATE TABLE IF NOT EXISTS refused_edits (
    id         INTEGER PRIMARY KEY,
    doc_id     TEXT NOT NULL,
    kind       TEXT NOT NULL,
    title      TEXT NOT NULL,
    created    INTEGER NOT NULL,
    fields     TEXT NOT NULL,
    made_at    TEXT,
    refused_at TEXT NOT NULL,
    code       INTEGER NOT NULL,
    reason     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refused_edits_doc ON refused_edits(doc_id);

-- Every change that left the replica with a refused edit, whole: the ones the relay refused
-- (`refused` = 1) and the ones built on them. Nothing typed is lost until the user retries or
-- dismisses the edit.
CREATE TABLE IF NOT EXISTS refused_changes (
    edit    INTEGER NOT NULL REFERENCES refused_edits(id) ON DELETE CASCADE,
    hash    BLOB NOT NULL,
    bytes   BLOB NOT NULL,
    refused INTEGER NOT NULL,
    PRIMARY KEY (edit, hash)
) WITHOUT ROWID;

-- The Automerge actors whose changes of a record were taken out of it: a session still
-- writing under one of them (another process, say `crm serve`) would make a change with the
-- (actor, seq) of a refused one. Writes of that record use a fresh actor instead. Kept after
-- the edit is retried or dismissed.
CREATE TABLE IF NOT EXISTS refused_actors (
    doc_id TEXT NOT NULL,
    actor  BLOB NOT NULL,
    PRIMARY KEY (doc_id, actor)
) WITHOUT ROWID;
"#;

/// Tables derived from the documents; dropped and rebuilt by `reindex` or when the record
/// schemas change.
pub(crate) static PROJECTIONS: LazyLock<String> = LazyLock::new(|| {
    let mut sql = String::from(
        r#"
CREATE TABLE record_tags (
    tag   TEXT NOT NULL,
    docno INTEGER NOT NULL,
    PRIMARY KEY (tag, docno)
) WITHOUT ROWID;
CREATE INDEX record_tags_doc ON record_tags(docno);

CREATE TABLE record_refs (
    docno  INTEGER NOT NULL,
    field  TEXT NOT NULL,
    target TEXT NOT NULL,
    PRIMARY KEY (docno, field, target)
) WITHOUT ROWID;
CREATE INDEX record_refs_target ON record_refs(target);

-- Stage and status histories (the A half of L+A fields), one row per entry, in list order:
-- funnel, time-in-stage and SLA reports read them with plain SQL.
CREATE TABLE record_history (
    docno INTEGER NOT NULL,
    kind  TEXT NOT NULL,
    field TEXT NOT NULL,
    pos   INTEGER NOT NULL,
    value TEXT NOT NULL,
    at    TEXT NOT NULL,
    by    TEXT NOT NULL,
    device TEXT NOT NULL,
    PRIMARY KEY (docno, field, pos)
) WITHOUT ROWID;
CREATE INDEX record_history_kind ON record_history(kind, field, value);

CREATE TABLE conflicts (
    docno    INTEGER NOT NULL,
    field    TEXT NOT NULL,
    vals     TEXT NOT NULL,
    PRIMARY KEY (docno, field)
) WITHOUT ROWID;

-- Full-text index over titles, emails, phones, notes and prose. The trigram tokenizer
-- matches substrings, which is what Chinese text needs (it has no spaces between words).
CREATE VIRTUAL TABLE search USING fts5(
    kind UNINDEXED, archived UNINDEXED, title, body, tokenize = 'trigram'
);
"#,
    );
    for kind in Kind::ALL {
        let t = table(*kind);
        let _ = write!(
            sql,
            "\nCREATE TABLE {t} (\n    docno INTEGER PRIMARY KEY,\n    id TEXT NOT NULL UNIQUE,\n    title TEXT NOT NULL,\n    archived INTEGER NOT NULL,\n    created_at TEXT,\n    created_by TEXT,\n    updated_at TEXT,\n    updated_by TEXT,\n    tags TEXT NOT NULL,\n    notes TEXT NOT NULL,\n    has_conflicts INTEGER NOT NULL,\n    json TEXT NOT NULL"
        );
        for field in kind.schema().all_fields() {
            let _ = write!(
                sql,
                ",\n    {} {}",
                column(field.name),
                column_type(field.ty)
            );
        }
        let _ = writeln!(sql, "\n);");
        let _ = writeln!(
            sql,
            "CREATE INDEX {t}_updated ON {t}(archived, updated_at);"
        );
        let _ = writeln!(sql, "CREATE INDEX {t}_title ON {t}(archived, title);");
        for field in kind.schema().all_fields().filter(|f| f.filter) {
            let _ = writeln!(
                sql,
                "CREATE INDEX {t}_f_{n} ON {t}(archived, {c});",
                n = field.name,
                c = column(field.name)
            );
        }
    }
    sql
});

/// A fingerprint of the projection DDL: when it changes (a new field, a new index), the
/// projections are rebuilt from the documents on open.
pub(crate) fn projection_fingerprint() -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in PROJECTIONS.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The projection column of a schema field; prefixed so no field name can clash with the
/// bookkeeping columns (`title`, `id`, …) or an SQL keyword.
pub(crate) fn column(field: &str) -> String {
    format!("f_{field}")
}

/// The projection table of a kind.
pub(crate) fn table(kind: Kind) -> String {
    format!("rec_{}", kind.as_str())
}

pub(crate) fn column_type(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Int { .. } | FieldType::Money | FieldType::Bool => "INTEGER",
        _ => "TEXT",
    }
}

/// Drops every projection table (before a rebuild).
pub(crate) fn drop_projections_sql() -> String {
    let mut sql = String::from(
        "DROP TABLE IF EXISTS record_tags;\nDROP TABLE IF EXISTS record_refs;\nDROP TABLE IF EXISTS record_history;\nDROP TABLE IF EXISTS conflicts;\nDROP TABLE IF EXISTS search;\n",
    );
    for kind in Kind::ALL {
        let _ = writeln!(sql, "DROP TABLE IF EXISTS {};", table(*kind));
    }
    sql
}
