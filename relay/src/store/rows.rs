//! The store's rows as they are, for the operations commands: `verify` reads them a
//! workspace and a document at a time, `migrate` copies them from one backend to another
//! ([`super::RelayStore::export`], [`super::RelayStore::import`]).

use chrono::{DateTime, Utc};
use crm_sync::{DocId, Hash};

use super::{Device, StoredSnapshot, Workspace};
use crate::ids::{DeviceId, WorkspaceId};

/// A row of any table, in the order `export` gives them: every workspace, then every device,
/// document, change and snapshot, so a row always follows the rows it refers to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Row {
    Workspace(Workspace),
    Device(DeviceRow),
    Document(DocumentRow),
    Change(ChangeRow),
    Snapshot(SnapshotRow),
}

impl Row {
    /// Roughly what the row takes in memory, to cut batches by size.
    pub fn weight(&self) -> usize {
        const ROW: usize = 128;
        ROW + match self {
            Row::Workspace(_) | Row::Device(_) | Row::Document(_) => 0,
            Row::Change(c) => c.bytes.len() + c.deps.len(),
            Row::Snapshot(s) => s.snapshot.bytes.len() + s.snapshot.hashes.len(),
        }
    }
}

/// A device with the SHA-256 of its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceRow {
    pub device: Device,
    pub token_hash: [u8; 32],
}

/// A document of the directory, every column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentRow {
    pub doc_id: DocId,
    pub workspace: WorkspaceId,
    pub kind: String,
    /// The log position of its first change.
    pub first_seq: u64,
    pub created_by: DeviceId,
    pub owner: Option<String>,
    pub teams: Option<String>,
    /// Its latest scope, encoded.
    pub scope: Option<String>,
    /// A `user` or `team` record's projected fields (JSON).
    pub attrs: Option<String>,
    /// The log position of its latest change.
    pub last_seq: u64,
    /// How far the compactor has folded it.
    pub snap_seq: u64,
}

/// A change of the log, every column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeRow {
    pub workspace: WorkspaceId,
    pub seq: u64,
    pub hash: Hash,
    pub doc_id: DocId,
    pub kind: String,
    /// The hashes the change depends on, 32 bytes each.
    pub deps: Vec<u8>,
    pub author: DeviceId,
    pub arrived_at: DateTime<Utc>,
    pub bytes: Vec<u8>,
    pub scope: Option<String>,
    pub prev_scope: Option<String>,
}

/// A document's snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotRow {
    pub doc_id: DocId,
    pub snapshot: StoredSnapshot,
}

/// A workspace's head as its row holds it, and what its log holds, read together.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogExtent {
    /// `workspaces.head`.
    pub head: u64,
    /// How many changes the log holds.
    pub changes: u64,
    /// The first and last positions of the log, `None` when it is empty.
    pub first: Option<u64>,
    pub last: Option<u64>,
}
