//! Reading a workspace's log for a device: entries after its position, within one frame.

use crm_sync::relay::LogRead;
use crm_sync::{Entry, MAX_BATCH_CHANGES, MAX_FRAME_BYTES};

use super::Relay;
use crate::ids::WorkspaceId;
use crate::store::StoreError;

/// Change bytes per `Changes` frame: the frame limit less room for the per-entry envelope
/// (at most ~30 bytes times `MAX_BATCH_CHANGES`) and the frame's own fields.
pub(super) const READ_BUDGET: usize = MAX_FRAME_BYTES - (64 << 10);
/// Counted against `READ_BUDGET` for each entry besides its change bytes.
pub(super) const ENTRY_OVERHEAD: usize = 40;

impl Relay {
    /// Up to `limit` log entries after position `after`, ascending, within one frame's size.
    pub fn read(
        &self,
        workspace: WorkspaceId,
        after: u64,
        limit: usize,
    ) -> Result<LogRead, StoreError> {
        let limit = limit.min(MAX_BATCH_CHANGES);
        let mut entries: Vec<Entry> = Vec::new();
        let mut last_hash = None;
        let mut size = 0;
        let head = self.store.read_log(workspace, after, limit, &mut |row| {
            // Every entry must fit in one frame with the others; the first always fits,
            // since a change is far smaller than a frame.
            if !entries.is_empty() && size + row.bytes.len() + ENTRY_OVERHEAD > READ_BUDGET {
                return false;
            }
            size += row.bytes.len() + ENTRY_OVERHEAD;
            last_hash = Some(row.hash);
            entries.push(Entry {
                seq: row.seq,
                doc_id: row.doc_id,
                bytes: row.bytes,
            });
            true
        })?;
        let (through, through_hash) = match (entries.last(), last_hash) {
            (Some(e), Some(h)) => (e.seq, h),
            _ if after == 0 => (0, [0; 32]),
            _ => (
                after,
                self.store.hash_at(workspace, after)?.unwrap_or([0; 32]),
            ),
        };
        Ok(LogRead {
            entries,
            through,
            through_hash,
            head,
        })
    }
}
