//! The operations' statements on PostgreSQL: a workspace's log and directory as they are
//! stored (for `verify` and `stats`), and every row out and in (for `migrate`). Reads stream
//! (`query_raw`): rows are handed on as they arrive, never collected.

use crm_sync::{DocId, Hash};
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{GenericClient, IsolationLevel};
use uuid::Uuid;

use super::{PostgresStore, doc_uuid, hash, seq, sql_limit, sql_seq, to_device, to_workspace};
use crate::ids::{DeviceId, WorkspaceId};
use crate::store::{
    ChangeRow, DeviceRow, DocumentRow, LogExtent, Row, SnapshotRow, StoreError, StoredSnapshot,
};

const CHANGE_COLUMNS: &str =
    "workspace, seq, hash, doc_id, kind, deps, author, arrived_at, bytes, scope, prev_scope";
const DOCUMENT_COLUMNS: &str = "doc_id, workspace, kind, first_seq, created_by, owner, teams, \
     last_seq, snap_seq, scope, attrs";

impl PostgresStore {
    pub(super) fn read_log_extent(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Option<LogExtent>, StoreError> {
        // One statement: one snapshot of the row and the log.
        let row = self.client()?.query_opt(
            "SELECT w.head, c.n, c.lo, c.hi FROM workspaces w,
                 LATERAL (SELECT count(*), min(seq), max(seq) FROM changes
                          WHERE workspace = w.id) AS c(n, lo, hi)
             WHERE w.id = $1",
            &[workspace.as_uuid()],
        )?;
        let Some(row) = row else {
            return Ok(None);
        };
        Ok(Some(LogExtent {
            head: seq(row.try_get(0)?),
            changes: seq(row.try_get(1)?),
            first: row.try_get::<_, Option<i64>>(2)?.map(seq),
            last: row.try_get::<_, Option<i64>>(3)?.map(seq),
        }))
    }

    pub(super) fn read_changes(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
        each: &mut dyn FnMut(ChangeRow) -> bool,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let (ws, after, limit) = (*workspace.as_uuid(), sql_seq(after), sql_limit(limit));
        let params: [&(dyn ToSql + Sync); 3] = [&ws, &after, &limit];
        let mut rows = client.query_raw(
            &format!(
                "SELECT {CHANGE_COLUMNS} FROM changes
                 WHERE workspace = $1 AND seq > $2 ORDER BY seq LIMIT $3"
            ),
            params,
        )?;
        while let Some(row) = rows.next()? {
            if !each(change_row(&row)?) {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn read_document_rows(
        &self,
        workspace: WorkspaceId,
        after: Option<DocId>,
        limit: usize,
        each: &mut dyn FnMut(DocumentRow) -> bool,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let ws = *workspace.as_uuid();
        let after: Option<Uuid> = after.as_ref().map(doc_uuid);
        let limit = sql_limit(limit);
        let params: [&(dyn ToSql + Sync); 3] = [&ws, &after, &limit];
        let mut rows = client.query_raw(
            &format!(
                "SELECT {DOCUMENT_COLUMNS} FROM documents
                 WHERE workspace = $1 AND ($2::uuid IS NULL OR doc_id > $2)
                 ORDER BY doc_id LIMIT $3"
            ),
            params,
        )?;
        while let Some(row) = rows.next()? {
            if !each(document_row(&row)?) {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn read_document_log(
        &self,
        workspace: WorkspaceId,
        doc: DocId,
        each: &mut dyn FnMut(u64, Hash) -> bool,
    ) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let (ws, doc) = (*workspace.as_uuid(), doc_uuid(&doc));
        let params: [&(dyn ToSql + Sync); 2] = [&ws, &doc];
        let mut rows = client.query_raw(
            "SELECT seq, hash FROM changes WHERE workspace = $1 AND doc_id = $2 ORDER BY seq",
            params,
        )?;
        while let Some(row) = rows.next()? {
            if !each(seq(row.try_get(0)?), hash(row.try_get(1)?)?) {
                break;
            }
        }
        Ok(())
    }

    pub(super) fn read_count_documents(&self, workspace: WorkspaceId) -> Result<u64, StoreError> {
        let n: i64 = self
            .client()?
            .query_one(
                "SELECT count(*) FROM documents WHERE workspace = $1",
                &[workspace.as_uuid()],
            )?
            .try_get(0)?;
        Ok(seq(n))
    }

    pub(super) fn read_size(&self) -> Result<u64, StoreError> {
        let bytes: i64 = self
            .client()?
            .query_one("SELECT pg_database_size(current_database())", &[])?
            .try_get(0)?;
        Ok(seq(bytes))
    }

    /// Every row, table by table, in one read-only repeatable-read transaction: one
    /// consistent snapshot however long the copy takes.
    pub(super) fn export_rows(&self, each: &mut dyn FnMut(Row) -> bool) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()?;
        let none: [&(dyn ToSql + Sync); 0] = [];
        let mut rows = tx.query_raw(
            "SELECT id, name, created_at, head, matrix, access_version FROM workspaces
             ORDER BY created_at, id",
            none,
        )?;
        while let Some(row) = rows.next()? {
            if !each(Row::Workspace(to_workspace(&row)?)) {
                return Ok(());
            }
        }
        drop(rows);
        let mut rows = tx.query_raw(
            r#"SELECT id, workspace, "user", role, created_at, revoked_at, last_seen_at, user_id,
                      wiped_at, token_hash
               FROM devices ORDER BY created_at, id"#,
            none,
        )?;
        while let Some(row) = rows.next()? {
            let token_hash: &[u8] = row.try_get(9)?;
            let device = DeviceRow {
                device: to_device(&row)?,
                token_hash: <[u8; 32]>::try_from(token_hash)
                    .map_err(|_| StoreError::Corrupt("a token hash is not 32 bytes".into()))?,
            };
            if !each(Row::Device(device)) {
                return Ok(());
            }
        }
        drop(rows);
        let mut rows = tx.query_raw(
            &format!("SELECT {DOCUMENT_COLUMNS} FROM documents ORDER BY workspace, doc_id"),
            none,
        )?;
        while let Some(row) = rows.next()? {
            if !each(Row::Document(document_row(&row)?)) {
                return Ok(());
            }
        }
        drop(rows);
        let mut rows = tx.query_raw(
            &format!("SELECT {CHANGE_COLUMNS} FROM changes ORDER BY workspace, seq"),
            none,
        )?;
        while let Some(row) = rows.next()? {
            if !each(Row::Change(change_row(&row)?)) {
                return Ok(());
            }
        }
        drop(rows);
        let mut rows = tx.query_raw(
            "SELECT doc_id, seq, bytes, hashes FROM snapshots ORDER BY doc_id",
            none,
        )?;
        while let Some(row) = rows.next()? {
            let doc: Uuid = row.try_get(0)?;
            let snapshot = SnapshotRow {
                doc_id: *doc.as_bytes(),
                snapshot: StoredSnapshot {
                    seq: seq(row.try_get(1)?),
                    bytes: row.try_get(2)?,
                    hashes: row.try_get(3)?,
                },
            };
            if !each(Row::Snapshot(snapshot)) {
                return Ok(());
            }
        }
        drop(rows);
        tx.commit()?;
        Ok(())
    }

    /// Writes rows as they are in one transaction, a statement per table (arrays through
    /// `unnest`), in the order of references: a batch is a stretch of `export`'s order.
    pub(super) fn import_rows(&self, batch: &[Row]) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction()?;
        insert_workspaces(&mut tx, batch)?;
        insert_devices(&mut tx, batch)?;
        insert_documents(&mut tx, batch)?;
        insert_changes(&mut tx, batch)?;
        insert_snapshots(&mut tx, batch)?;
        tx.commit()?;
        Ok(())
    }
}

fn insert_workspaces(tx: &mut impl GenericClient, batch: &[Row]) -> Result<(), StoreError> {
    let rows: Vec<_> = batch
        .iter()
        .filter_map(|r| match r {
            Row::Workspace(w) => Some(w),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|w| *w.id.as_uuid()).collect();
    let names: Vec<&str> = rows.iter().map(|w| w.name.as_str()).collect();
    let created: Vec<i64> = rows
        .iter()
        .map(|w| w.created_at.timestamp_millis())
        .collect();
    let heads: Vec<i64> = rows.iter().map(|w| sql_seq(w.head)).collect();
    let matrices: Vec<Option<&str>> = rows.iter().map(|w| w.matrix.as_deref()).collect();
    let versions: Vec<i64> = rows.iter().map(|w| sql_seq(w.access_version)).collect();
    tx.execute(
        "INSERT INTO workspaces (id, name, created_at, head, matrix, access_version)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int8[], $5::text[],
                              $6::int8[])",
        &[&ids, &names, &created, &heads, &matrices, &versions],
    )?;
    Ok(())
}

fn insert_devices(tx: &mut impl GenericClient, batch: &[Row]) -> Result<(), StoreError> {
    let rows: Vec<_> = batch
        .iter()
        .filter_map(|r| match r {
            Row::Device(d) => Some(d),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|d| *d.device.id.as_uuid()).collect();
    let workspaces: Vec<Uuid> = rows.iter().map(|d| *d.device.workspace.as_uuid()).collect();
    let users: Vec<&str> = rows.iter().map(|d| d.device.user.as_str()).collect();
    let roles: Vec<&str> = rows.iter().map(|d| d.device.role.as_str()).collect();
    let tokens: Vec<&[u8]> = rows.iter().map(|d| d.token_hash.as_slice()).collect();
    let created: Vec<i64> = rows
        .iter()
        .map(|d| d.device.created_at.timestamp_millis())
        .collect();
    let revoked: Vec<Option<i64>> = rows
        .iter()
        .map(|d| d.device.revoked_at.map(|t| t.timestamp_millis()))
        .collect();
    let seen: Vec<Option<i64>> = rows
        .iter()
        .map(|d| d.device.last_seen_at.map(|t| t.timestamp_millis()))
        .collect();
    let user_ids: Vec<Option<Uuid>> = rows.iter().map(|d| d.device.user_id).collect();
    let wiped: Vec<Option<i64>> = rows
        .iter()
        .map(|d| d.device.wiped_at.map(|t| t.timestamp_millis()))
        .collect();
    tx.execute(
        r#"INSERT INTO devices
           (id, workspace, "user", role, token_hash, created_at, revoked_at, last_seen_at,
            user_id, wiped_at)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bytea[],
                                $6::int8[], $7::int8[], $8::int8[], $9::uuid[], $10::int8[])"#,
        &[
            &ids,
            &workspaces,
            &users,
            &roles,
            &tokens,
            &created,
            &revoked,
            &seen,
            &user_ids,
            &wiped,
        ],
    )?;
    Ok(())
}

fn insert_documents(tx: &mut impl GenericClient, batch: &[Row]) -> Result<(), StoreError> {
    let rows: Vec<_> = batch
        .iter()
        .filter_map(|r| match r {
            Row::Document(d) => Some(d),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = rows.iter().map(|d| doc_uuid(&d.doc_id)).collect();
    let workspaces: Vec<Uuid> = rows.iter().map(|d| *d.workspace.as_uuid()).collect();
    let kinds: Vec<&str> = rows.iter().map(|d| d.kind.as_str()).collect();
    let firsts: Vec<i64> = rows.iter().map(|d| sql_seq(d.first_seq)).collect();
    let creators: Vec<Uuid> = rows.iter().map(|d| *d.created_by.as_uuid()).collect();
    let owners: Vec<Option<&str>> = rows.iter().map(|d| d.owner.as_deref()).collect();
    let teams: Vec<Option<&str>> = rows.iter().map(|d| d.teams.as_deref()).collect();
    let lasts: Vec<i64> = rows.iter().map(|d| sql_seq(d.last_seq)).collect();
    let snaps: Vec<i64> = rows.iter().map(|d| sql_seq(d.snap_seq)).collect();
    let scopes: Vec<Option<&str>> = rows.iter().map(|d| d.scope.as_deref()).collect();
    let attrs: Vec<Option<&str>> = rows.iter().map(|d| d.attrs.as_deref()).collect();
    tx.execute(
        &format!(
            "INSERT INTO documents ({DOCUMENT_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::int8[], $5::uuid[],
                                  $6::text[], $7::text[], $8::int8[], $9::int8[], $10::text[],
                                  $11::text[])"
        ),
        &[
            &ids,
            &workspaces,
            &kinds,
            &firsts,
            &creators,
            &owners,
            &teams,
            &lasts,
            &snaps,
            &scopes,
            &attrs,
        ],
    )?;
    Ok(())
}

fn insert_changes(tx: &mut impl GenericClient, batch: &[Row]) -> Result<(), StoreError> {
    let rows: Vec<_> = batch
        .iter()
        .filter_map(|r| match r {
            Row::Change(c) => Some(c),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let workspaces: Vec<Uuid> = rows.iter().map(|c| *c.workspace.as_uuid()).collect();
    let seqs: Vec<i64> = rows.iter().map(|c| sql_seq(c.seq)).collect();
    let hashes: Vec<&[u8]> = rows.iter().map(|c| c.hash.as_slice()).collect();
    let docs: Vec<Uuid> = rows.iter().map(|c| doc_uuid(&c.doc_id)).collect();
    let kinds: Vec<&str> = rows.iter().map(|c| c.kind.as_str()).collect();
    let deps: Vec<&[u8]> = rows.iter().map(|c| c.deps.as_slice()).collect();
    let authors: Vec<Uuid> = rows.iter().map(|c| *c.author.as_uuid()).collect();
    let arrived: Vec<i64> = rows
        .iter()
        .map(|c| c.arrived_at.timestamp_millis())
        .collect();
    let bytes: Vec<&[u8]> = rows.iter().map(|c| c.bytes.as_slice()).collect();
    let scopes: Vec<Option<&str>> = rows.iter().map(|c| c.scope.as_deref()).collect();
    let prev: Vec<Option<&str>> = rows.iter().map(|c| c.prev_scope.as_deref()).collect();
    tx.execute(
        &format!(
            "INSERT INTO changes ({CHANGE_COLUMNS})
             SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], $4::uuid[], $5::text[],
                                  $6::bytea[], $7::uuid[], $8::int8[], $9::bytea[], $10::text[],
                                  $11::text[])"
        ),
        &[
            &workspaces,
            &seqs,
            &hashes,
            &docs,
            &kinds,
            &deps,
            &authors,
            &arrived,
            &bytes,
            &scopes,
            &prev,
        ],
    )?;
    Ok(())
}

fn insert_snapshots(tx: &mut impl GenericClient, batch: &[Row]) -> Result<(), StoreError> {
    let rows: Vec<_> = batch
        .iter()
        .filter_map(|r| match r {
            Row::Snapshot(s) => Some(s),
            _ => None,
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    let docs: Vec<Uuid> = rows.iter().map(|s| doc_uuid(&s.doc_id)).collect();
    let seqs: Vec<i64> = rows.iter().map(|s| sql_seq(s.snapshot.seq)).collect();
    let bytes: Vec<&[u8]> = rows.iter().map(|s| s.snapshot.bytes.as_slice()).collect();
    let hashes: Vec<&[u8]> = rows.iter().map(|s| s.snapshot.hashes.as_slice()).collect();
    tx.execute(
        "INSERT INTO snapshots (doc_id, seq, bytes, hashes)
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::bytea[], $4::bytea[])",
        &[&docs, &seqs, &bytes, &hashes],
    )?;
    Ok(())
}

fn change_row(row: &postgres::Row) -> Result<ChangeRow, StoreError> {
    let doc: Uuid = row.try_get(3)?;
    Ok(ChangeRow {
        workspace: WorkspaceId::from_uuid(row.try_get(0)?),
        seq: seq(row.try_get(1)?),
        hash: hash(row.try_get(2)?)?,
        doc_id: *doc.as_bytes(),
        kind: row.try_get(4)?,
        deps: row.try_get(5)?,
        author: DeviceId::from_uuid(row.try_get(6)?),
        arrived_at: super::time(row.try_get(7)?)?,
        bytes: row.try_get(8)?,
        scope: row.try_get(9)?,
        prev_scope: row.try_get(10)?,
    })
}

fn document_row(row: &postgres::Row) -> Result<DocumentRow, StoreError> {
    let doc: Uuid = row.try_get(0)?;
    Ok(DocumentRow {
        doc_id: *doc.as_bytes(),
        workspace: WorkspaceId::from_uuid(row.try_get(1)?),
        kind: row.try_get(2)?,
        first_seq: seq(row.try_get(3)?),
        created_by: DeviceId::from_uuid(row.try_get(4)?),
        owner: row.try_get(5)?,
        teams: row.try_get(6)?,
        last_seq: seq(row.try_get(7)?),
        snap_seq: seq(row.try_get(8)?),
        scope: row.try_get(9)?,
        attrs: row.try_get(10)?,
    })
}
