//! The operations' statements on SQLite: a workspace's log and directory as they are stored
//! (for `verify` and `stats`), and every row out and in (for `migrate`). Each function runs
//! inside the transaction its caller opened.

use crm_sync::{DocId, Hash};
use rusqlite::{Connection, params};

use super::{doc_id, hash, seq, sql_limit, sql_seq, time};
use crate::ids::{DeviceId, WorkspaceId};
use crate::store::{
    ChangeRow, Device, DeviceRow, DocumentRow, LogExtent, Row, SnapshotRow, StoreError,
    StoredSnapshot, Workspace,
};

pub(super) const CHANGE_ROWS_SQL: &str = "
    SELECT workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes, scope,
           prev_scope
    FROM changes WHERE workspace = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3";
pub(super) const DOCUMENT_ROWS_SQL: &str = "
    SELECT doc_id, workspace, kind, first_seq, created_by, owner, teams, last_seq, snap_seq,
           scope, attrs
    FROM documents INDEXED BY documents_by_workspace
    WHERE workspace = ?1 AND doc_id > ?2 ORDER BY doc_id LIMIT ?3";
pub(super) const DOCUMENT_LOG_SQL: &str = "
    SELECT seq, hash FROM changes INDEXED BY changes_by_doc
    WHERE workspace = ?1 AND doc_id = ?2 ORDER BY seq";
pub(super) const COUNT_DOCUMENTS_SQL: &str = "
    SELECT count(*) FROM documents INDEXED BY documents_by_workspace WHERE workspace = ?1";

pub(super) fn log_extent(
    conn: &Connection,
    workspace: WorkspaceId,
) -> Result<Option<LogExtent>, StoreError> {
    use rusqlite::OptionalExtension as _;
    let head: Option<i64> = conn
        .prepare_cached("SELECT head FROM workspaces WHERE id = ?1")?
        .query_row([workspace], |r| r.get(0))
        .optional()?;
    let Some(head) = head else {
        return Ok(None);
    };
    let (changes, first, last): (i64, Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT count(*), min(seq), max(seq) FROM changes WHERE workspace = ?1")?
        .query_row([workspace], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
    Ok(Some(LogExtent {
        head: seq(head),
        changes: seq(changes),
        first: first.map(seq),
        last: last.map(seq),
    }))
}

pub(super) fn changes(
    conn: &Connection,
    workspace: WorkspaceId,
    after: u64,
    limit: usize,
    each: &mut dyn FnMut(ChangeRow) -> bool,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(CHANGE_ROWS_SQL)?;
    let mut rows = stmt.query(params![workspace, sql_seq(after), sql_limit(limit)])?;
    while let Some(row) = rows.next()? {
        if !each(change_row(row)?) {
            break;
        }
    }
    Ok(())
}

pub(super) fn document_rows(
    conn: &Connection,
    workspace: WorkspaceId,
    after: Option<DocId>,
    limit: usize,
    each: &mut dyn FnMut(DocumentRow) -> bool,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(DOCUMENT_ROWS_SQL)?;
    // Every 16-byte id sorts after the empty blob.
    let after = after.map_or_else(Vec::new, |a| a.to_vec());
    let mut rows = stmt.query(params![workspace, after, sql_limit(limit)])?;
    while let Some(row) = rows.next()? {
        if !each(document_row(row)?) {
            break;
        }
    }
    Ok(())
}

pub(super) fn document_log(
    conn: &Connection,
    workspace: WorkspaceId,
    doc: DocId,
    each: &mut dyn FnMut(u64, Hash) -> bool,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(DOCUMENT_LOG_SQL)?;
    let mut rows = stmt.query(params![workspace, doc.as_slice()])?;
    while let Some(row) = rows.next()? {
        if !each(seq(row.get(0)?), hash(&row.get::<_, Vec<u8>>(1)?)?) {
            break;
        }
    }
    Ok(())
}

pub(super) fn count_documents(
    conn: &Connection,
    workspace: WorkspaceId,
) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached(COUNT_DOCUMENTS_SQL)?
        .query_row([workspace], |r| r.get(0))?;
    Ok(seq(n))
}

/// Every row, table by table, inside one read transaction.
pub(super) fn export(
    conn: &Connection,
    each: &mut dyn FnMut(Row) -> bool,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare(
        "SELECT id, name, created_at, head, matrix, access_version FROM workspaces
         ORDER BY created_at, id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let workspace = Workspace {
            id: r.get(0)?,
            name: r.get(1)?,
            created_at: time(r.get(2)?)?,
            head: seq(r.get(3)?),
            matrix: r.get(4)?,
            access_version: seq(r.get(5)?),
        };
        if !each(Row::Workspace(workspace)) {
            return Ok(());
        }
    }
    let mut stmt = conn.prepare(
        "SELECT id, workspace, user, role, created_at, revoked_at, last_seen_at, token_hash,
                user_id, wiped_at
         FROM devices ORDER BY created_at, id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let token_hash: Vec<u8> = r.get(7)?;
        let device = DeviceRow {
            device: Device {
                id: r.get(0)?,
                workspace: r.get(1)?,
                user: r.get(2)?,
                role: crate::store::values::role(&r.get::<_, String>(3)?)?,
                created_at: time(r.get(4)?)?,
                revoked_at: r.get::<_, Option<i64>>(5)?.map(time).transpose()?,
                last_seen_at: r.get::<_, Option<i64>>(6)?.map(time).transpose()?,
                user_id: crate::store::values::user_id(r.get::<_, Option<String>>(8)?.as_deref())?,
                wiped_at: r.get::<_, Option<i64>>(9)?.map(time).transpose()?,
            },
            token_hash: <[u8; 32]>::try_from(token_hash.as_slice())
                .map_err(|_| StoreError::Corrupt("a token hash is not 32 bytes".into()))?,
        };
        if !each(Row::Device(device)) {
            return Ok(());
        }
    }
    let mut stmt = conn.prepare(
        "SELECT doc_id, workspace, kind, first_seq, created_by, owner, teams, last_seq, snap_seq,
                scope, attrs
         FROM documents ORDER BY workspace, doc_id",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if !each(Row::Document(document_row(r)?)) {
            return Ok(());
        }
    }
    let mut stmt = conn.prepare(
        "SELECT workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes, scope,
                prev_scope
         FROM changes ORDER BY workspace, seq",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        if !each(Row::Change(change_row(r)?)) {
            return Ok(());
        }
    }
    let mut stmt =
        conn.prepare("SELECT doc_id, seq, bytes, hashes FROM snapshots ORDER BY doc_id")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let snapshot = SnapshotRow {
            doc_id: doc_id(&r.get::<_, Vec<u8>>(0)?)?,
            snapshot: StoredSnapshot {
                seq: seq(r.get(1)?),
                bytes: r.get(2)?,
                hashes: r.get(3)?,
            },
        };
        if !each(Row::Snapshot(snapshot)) {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes rows as they are, inside the caller's write transaction.
pub(super) fn import(conn: &Connection, rows: &[Row]) -> Result<(), StoreError> {
    for row in rows {
        match row {
            Row::Workspace(w) => {
                conn.prepare_cached(
                    "INSERT INTO workspaces (id, name, created_at, head, matrix, access_version)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    w.id,
                    w.name,
                    w.created_at.timestamp_millis(),
                    sql_seq(w.head),
                    w.matrix,
                    sql_seq(w.access_version),
                ])?;
            }
            Row::Device(d) => {
                let (device, token_hash) = (&d.device, &d.token_hash);
                conn.prepare_cached(
                    "INSERT INTO devices
                     (id, workspace, user, role, token_hash, created_at, revoked_at, last_seen_at,
                      user_id, wiped_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    device.id,
                    device.workspace,
                    device.user,
                    device.role.as_str(),
                    token_hash.as_slice(),
                    device.created_at.timestamp_millis(),
                    device.revoked_at.map(|t| t.timestamp_millis()),
                    device.last_seen_at.map(|t| t.timestamp_millis()),
                    device.user_id.map(|u| u.to_string()),
                    device.wiped_at.map(|t| t.timestamp_millis()),
                ])?;
            }
            Row::Document(d) => {
                conn.prepare_cached(
                    "INSERT INTO documents (doc_id, workspace, kind, first_seq, created_by,
                                            owner, teams, last_seq, snap_seq, scope, attrs)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    d.doc_id.as_slice(),
                    d.workspace,
                    d.kind,
                    sql_seq(d.first_seq),
                    d.created_by,
                    d.owner,
                    d.teams,
                    sql_seq(d.last_seq),
                    sql_seq(d.snap_seq),
                    d.scope,
                    d.attrs,
                ])?;
            }
            Row::Change(c) => {
                conn.prepare_cached(
                    "INSERT INTO changes
                     (workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes, scope,
                      prev_scope)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                )?
                .execute(params![
                    c.workspace,
                    sql_seq(c.seq),
                    c.hash.as_slice(),
                    c.doc_id.as_slice(),
                    c.kind,
                    c.deps,
                    c.author,
                    c.arrived_at.timestamp_millis(),
                    c.bytes,
                    c.scope,
                    c.prev_scope,
                ])?;
            }
            Row::Snapshot(s) => {
                conn.prepare_cached(
                    "INSERT INTO snapshots (doc_id, seq, bytes, hashes) VALUES (?1, ?2, ?3, ?4)",
                )?
                .execute(params![
                    s.doc_id.as_slice(),
                    sql_seq(s.snapshot.seq),
                    s.snapshot.bytes,
                    s.snapshot.hashes,
                ])?;
            }
        }
    }
    Ok(())
}

fn change_row(r: &rusqlite::Row<'_>) -> Result<ChangeRow, StoreError> {
    Ok(ChangeRow {
        workspace: r.get(0)?,
        seq: seq(r.get(1)?),
        hash: hash(&r.get::<_, Vec<u8>>(2)?)?,
        doc_id: doc_id(&r.get::<_, Vec<u8>>(3)?)?,
        kind: r.get(4)?,
        deps: r.get(5)?,
        author: r.get::<_, DeviceId>(6)?,
        arrived_at: time(r.get(7)?)?,
        bytes: r.get(8)?,
        scope: r.get(9)?,
        prev_scope: r.get(10)?,
    })
}

fn document_row(r: &rusqlite::Row<'_>) -> Result<DocumentRow, StoreError> {
    Ok(DocumentRow {
        doc_id: doc_id(&r.get::<_, Vec<u8>>(0)?)?,
        workspace: r.get(1)?,
        kind: r.get(2)?,
        first_seq: seq(r.get(3)?),
        created_by: r.get(4)?,
        owner: r.get(5)?,
        teams: r.get(6)?,
        last_seq: seq(r.get(7)?),
        snap_seq: seq(r.get(8)?),
        scope: r.get(9)?,
        attrs: r.get(10)?,
    })
}
