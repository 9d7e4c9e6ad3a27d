//! `migrate`: every row of one store copied as it is into another, empty one of any backend
//! (SQLite to PostgreSQL and back, or SQLite to SQLite), then checked.
//!
//! The source is read in one consistent snapshot ([`RelayStore::export`]) and written in
//! batches of bounded size ([`RelayStore::import`], one transaction each), so the log is
//! never in memory whole. The target has the source's relay identity (made so by its
//! creator) and keeps every position and hash: a device's next sync against it resumes
//! from its cursor as against the source. The copy is then verified, and each workspace's
//! head and the hash there compared with what was read.
//!
//! [`RelayStore::export`]: crate::store::RelayStore::export
//! [`RelayStore::import`]: crate::store::RelayStore::import

use std::collections::HashMap;

use crm_sync::Hash;
use serde::Serialize;
use uuid::Uuid;

use super::verify::VerifyReport;
use super::{Relay, hex};
use crate::ids::WorkspaceId;
use crate::store::{Row, StoreError};

/// Rows written per transaction, at most.
const BATCH_ROWS: usize = 2000;
/// Row bytes held before they are written, at most (one change may pass it alone).
const BATCH_BYTES: usize = 8 << 20;

/// What [`migrate`] copied and checked.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MigrateReport {
    pub relay_id: Uuid,
    pub copied: RowCounts,
    pub workspaces: Vec<MigratedWorkspace>,
    /// Workspaces whose source log grew during the copy: the target has them as of the copy.
    pub moved_on: Vec<WorkspaceId>,
    pub verify: VerifyReport,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RowCounts {
    pub workspaces: u64,
    pub devices: u64,
    pub documents: u64,
    pub changes: u64,
    pub snapshots: u64,
}

/// A workspace as copied: its head and the hash of the change there (zeros for none).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MigratedWorkspace {
    pub id: WorkspaceId,
    pub name: String,
    pub head: u64,
    pub head_hash: String,
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("the target has another relay identity than the source")]
    Identity,
    #[error("the target holds data already; migrate into an empty database")]
    NotEmpty,
    #[error("reading the source failed")]
    Source(#[source] StoreError),
    #[error("writing the target failed")]
    Target(#[source] StoreError),
    #[error(
        "the copy does not verify: {} problems ({})",
        .0.problem_count,
        .0.problems.first().map_or("", |p| p.detail.as_str())
    )]
    Damaged(Box<VerifyReport>),
    #[error("the copy of workspace {workspace} ends at {found}, not at {expected} as the source")]
    Mismatch {
        workspace: WorkspaceId,
        expected: String,
        found: String,
    },
}

/// Copies every row of `source` into `target`, which must be empty and have the source's
/// relay identity, then verifies the target and compares its heads with the source's.
pub fn migrate(source: &Relay, target: &Relay) -> Result<MigrateReport, MigrateError> {
    if source.relay_id() != target.relay_id() {
        return Err(MigrateError::Identity);
    }
    let target_store = target.store();
    let has_workspaces = !target_store
        .workspaces()
        .map_err(MigrateError::Target)?
        .is_empty();
    let has_devices = !target_store
        .devices(None)
        .map_err(MigrateError::Target)?
        .is_empty();
    if has_workspaces || has_devices {
        return Err(MigrateError::NotEmpty);
    }

    let mut report = MigrateReport {
        relay_id: Uuid::from_bytes(source.relay_id()),
        ..MigrateReport::default()
    };
    // Per workspace, in the source's order: name, head, and the hash at the head.
    let mut heads: Vec<(WorkspaceId, String, u64, Hash)> = Vec::new();
    let mut index: HashMap<WorkspaceId, usize> = HashMap::new();
    let mut batch: Vec<Row> = Vec::new();
    let mut batch_bytes = 0;
    let mut failed: Option<StoreError> = None;
    let exported = source.store().export(&mut |row| {
        let counts = &mut report.copied;
        match &row {
            Row::Workspace(w) => {
                counts.workspaces += 1;
                index.insert(w.id, heads.len());
                heads.push((w.id, w.name.clone(), w.head, [0; 32]));
            }
            Row::Device(_) => counts.devices += 1,
            Row::Document(_) => counts.documents += 1,
            Row::Change(c) => {
                counts.changes += 1;
                if let Some(&i) = index.get(&c.workspace)
                    && heads[i].2 == c.seq
                {
                    heads[i].3 = c.hash;
                }
            }
            Row::Snapshot(_) => counts.snapshots += 1,
        }
        batch_bytes += row.weight();
        batch.push(row);
        if batch.len() >= BATCH_ROWS || batch_bytes >= BATCH_BYTES {
            if let Err(e) = target_store.import(&batch) {
                failed = Some(e);
                return false;
            }
            batch.clear();
            batch_bytes = 0;
        }
        true
    });
    if let Some(e) = failed {
        return Err(MigrateError::Target(e));
    }
    exported.map_err(MigrateError::Source)?;
    if !batch.is_empty() {
        target_store.import(&batch).map_err(MigrateError::Target)?;
    }

    let verify = target.verify().map_err(MigrateError::Target)?;
    if !verify.is_sound() {
        return Err(MigrateError::Damaged(Box::new(verify)));
    }
    for (id, name, head, hash) in heads {
        let (found, found_hash) = target.head(id).map_err(MigrateError::Target)?;
        if (found, found_hash) != (head, hash) {
            return Err(MigrateError::Mismatch {
                workspace: id,
                expected: format!("{head} ({})", hex(&hash)),
                found: format!("{found} ({})", hex(&found_hash)),
            });
        }
        let now = source.store().head(id).map_err(MigrateError::Source)?;
        if now.is_some_and(|now| now > head) {
            report.moved_on.push(id);
        }
        report.workspaces.push(MigratedWorkspace {
            id,
            name,
            head,
            head_hash: hex(&hash),
        });
    }
    report.verify = verify;
    Ok(report)
}
