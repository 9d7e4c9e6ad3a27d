//! Per-workspace fan-out and limits shared by the sessions of a workspace.
//!
//! Each workspace has a `watch` channel of its log's head: a session that commits a batch
//! raises it, every other session of the workspace wakes and reads what it has not sent yet.
//! A watch holds one value and never queues, so a slow reader costs the others nothing; it
//! simply sees the latest head when it gets round to it. The hub also counts each
//! workspace's sessions (a bounded number) and meters each device's pushes.
//!
//! With the head, the hub keeps the **tail**: the entries of the workspace's latest stored
//! batch, as a read of the log after the previous head returns them. Every session at the
//! live edge wants exactly those entries next; it takes them from here instead of reading
//! the same rows back from the store on a blocking thread (which, with 100 devices
//! connected, was most of the relay's CPU per push). Any other position reads the store.
//! The tail holds the rows unfiltered, with their kinds and scopes; each session filters
//! them for its own user (`service::filter`, O(1) per row).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::service::RawRead as LogRead;
use tokio::sync::watch;

use crate::ids::{DeviceId, WorkspaceId};

/// The largest batch kept as a workspace's tail, in change bytes: live edits are small, and
/// a large batch (a device's first push) is read from the store like any catch-up. Each
/// workspace with sessions keeps at most this much.
const TAIL_BYTES: usize = 1 << 20;

#[derive(Debug)]
pub(crate) struct Hub {
    workspaces: Mutex<HashMap<WorkspaceId, Arc<WorkspaceHub>>>,
    max_connections: usize,
    max_per_device: usize,
    pushes_per_second: f64,
}

#[derive(Debug)]
struct WorkspaceHub {
    head: watch::Sender<u64>,
    /// The workspace's access version (directory and role matrix): sessions re-decide what
    /// their user may see when it moves.
    access: watch::Sender<u64>,
    connections: AtomicUsize,
    buckets: Mutex<HashMap<DeviceId, Bucket>>,
    /// The latest stored batch: the position before it, and its entries.
    tail: Mutex<Option<(u64, Arc<LogRead>)>>,
}

/// A connected device: its push meter (a token bucket: `pushes_per_second` tokens a second,
/// holding at most one second's worth), its sessions, and whether its token was revoked.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    sessions: usize,
    revoked: watch::Sender<bool>,
}

/// Why a session may not join.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// The workspace already has its maximum number of sessions.
    Workspace,
    /// The device already has its maximum number of sessions.
    Device,
}

/// A session's place in its workspace; leaving frees it.
#[derive(Debug)]
pub(crate) struct Slot {
    hub: Arc<WorkspaceHub>,
    access: watch::Receiver<u64>,
    device: DeviceId,
    pushes_per_second: f64,
    revoked: watch::Receiver<bool>,
}

impl Hub {
    pub(crate) fn new(
        max_connections: usize,
        max_per_device: usize,
        pushes_per_second: u32,
    ) -> Hub {
        Hub {
            workspaces: Mutex::new(HashMap::new()),
            max_connections,
            max_per_device: max_per_device.max(1),
            pushes_per_second: f64::from(pushes_per_second.max(1)),
        }
    }

    /// The workspace's shared state, if it has sessions in this process.
    fn hub_of(&self, workspace: WorkspaceId) -> Option<Arc<WorkspaceHub>> {
        self.workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&workspace)
            .cloned()
    }

    /// A device's token was revoked: every open session of it ends (they watch for this).
    /// Returns whether the device had any.
    pub(crate) fn revoke(&self, workspace: WorkspaceId, device: DeviceId) -> bool {
        let hub = self.hub_of(workspace);
        let Some(hub) = hub else { return false };
        let buckets = hub.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        match buckets.get(&device) {
            Some(bucket) => {
                bucket.revoked.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Another relay process raised a workspace's head: wake this process's sessions of it.
    pub(crate) fn advance(&self, workspace: WorkspaceId, head: u64) {
        let hub = self.hub_of(workspace);
        if let Some(hub) = hub {
            hub.head.send_if_modified(|h| {
                let raised = head > *h;
                *h = (*h).max(head);
                raised
            });
        }
    }

    /// The head this process's sessions of `workspace` were last woken for, if it has any.
    pub(crate) fn head_of(&self, workspace: WorkspaceId) -> Option<u64> {
        self.workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&workspace)
            .map(|hub| *hub.head.borrow())
    }

    /// Another relay process stored a batch, read here once (`read`, the log after the head
    /// this process knew): keep it as the workspace's tail, so its sessions at the live edge
    /// take it from memory instead of each reading it, and wake them.
    pub(crate) fn advance_with(&self, workspace: WorkspaceId, read: LogRead) {
        let hub = self.hub_of(workspace);
        if let Some(hub) = hub {
            let head = read.through;
            hub.keep_tail(read);
            hub.head.send_if_modified(|h| {
                let raised = head > *h;
                *h = (*h).max(head);
                raised
            });
        }
    }

    /// A workspace's access version moved (seen by the poller or by a push that changed the
    /// directory): its sessions re-decide what their users may see.
    pub(crate) fn access_changed(&self, workspace: WorkspaceId, version: u64) {
        let hub = self.hub_of(workspace);
        if let Some(hub) = hub {
            hub.access.send_if_modified(|v| {
                let raised = version > *v;
                *v = (*v).max(version);
                raised
            });
        }
    }

    /// The workspaces with sessions in this process.
    pub(crate) fn workspaces(&self) -> Vec<WorkspaceId> {
        self.workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .copied()
            .collect()
    }

    /// Joins a session of `device` to `workspace`, whose head was `head` when the device
    /// authenticated. The receiver yields every later head.
    pub(crate) fn join(
        &self,
        workspace: WorkspaceId,
        device: DeviceId,
        head: u64,
    ) -> Result<(Slot, watch::Receiver<u64>), Full> {
        let hub = self
            .workspaces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(workspace)
            .or_insert_with(|| {
                Arc::new(WorkspaceHub {
                    head: watch::channel(head).0,
                    access: watch::channel(0).0,
                    connections: AtomicUsize::new(0),
                    buckets: Mutex::new(HashMap::new()),
                    tail: Mutex::new(None),
                })
            })
            .clone();
        // The device's share first: a device at its limit takes no workspace slot.
        let revoked = {
            let mut buckets = hub.buckets.lock().unwrap_or_else(PoisonError::into_inner);
            let bucket = buckets.entry(device).or_insert_with(|| Bucket {
                tokens: self.pushes_per_second,
                at: Instant::now(),
                sessions: 0,
                revoked: watch::channel(false).0,
            });
            if bucket.sessions >= self.max_per_device {
                return Err(Full::Device);
            }
            if hub
                .connections
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                    (n < self.max_connections).then_some(n + 1)
                })
                .is_err()
            {
                if bucket.sessions == 0 {
                    buckets.remove(&device);
                }
                return Err(Full::Workspace);
            }
            bucket.sessions += 1;
            bucket.revoked.subscribe()
        };
        let slot = Slot {
            access: hub.access.subscribe(),
            hub: hub.clone(),
            device,
            pushes_per_second: self.pushes_per_second,
            revoked,
        };
        slot.publish(head);
        Ok((slot, hub.head.subscribe()))
    }
}

impl WorkspaceHub {
    /// Keeps a batch's entries (the log after `read.through − count`) as the tail, unless a
    /// later batch's are kept already or it is too large.
    fn keep_tail(&self, read: LogRead) {
        let size = read.rows.iter().map(|e| e.bytes.len()).sum::<usize>();
        if read.rows.is_empty() || size > TAIL_BYTES {
            return;
        }
        let after = read.through - read.rows.len() as u64;
        let mut kept = self.tail.lock().unwrap_or_else(PoisonError::into_inner);
        if kept.as_ref().is_none_or(|(_, k)| k.through < read.through) {
            *kept = Some((after, Arc::new(read)));
        }
    }
}

impl Slot {
    /// The log's head is now at least `head`: wake the workspace's sessions.
    pub(crate) fn publish(&self, head: u64) {
        self.hub.head.send_if_modified(|h| {
            let raised = head > *h;
            *h = (*h).max(head);
            raised
        });
    }

    /// A batch was stored: keep its entries (`tail`, the log after `tail.through − count`)
    /// for the other sessions, unless a later batch's are already kept, and wake them.
    pub(crate) fn publish_batch(&self, head: u64, tail: Option<LogRead>) {
        if let Some(read) = tail {
            self.hub.keep_tail(read);
        }
        self.publish(head);
    }

    /// The log after `after`, at most `limit` entries, if that is the latest batch's tail.
    pub(crate) fn tail(&self, after: u64, limit: usize) -> Option<Arc<LogRead>> {
        let kept = self.hub.tail.lock().unwrap_or_else(PoisonError::into_inner);
        let (from, read) = kept.as_ref()?;
        (*from == after && read.rows.len() <= limit).then(|| read.clone())
    }

    /// The workspace's access version, watched (see [`Hub::access_changed`]).
    pub(crate) fn access(&self) -> watch::Receiver<u64> {
        self.access.clone()
    }

    /// Resolves once the device's token is revoked (see [`Hub::revoke`]).
    pub(crate) async fn revoked(&self) {
        let mut revoked = self.revoked.clone();
        let _ = revoked.wait_for(|r| *r).await;
    }

    /// Whether the device may push once more now.
    pub(crate) fn allow_push(&self, now: Instant) -> bool {
        let mut buckets = self
            .hub
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(bucket) = buckets.get_mut(&self.device) else {
            return true;
        };
        let refill =
            now.saturating_duration_since(bucket.at).as_secs_f64() * self.pushes_per_second;
        bucket.tokens = (bucket.tokens + refill).min(self.pushes_per_second);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.hub.connections.fetch_sub(1, Ordering::AcqRel) == 1 {
            // No session left to take it.
            *self.hub.tail.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        let mut buckets = self
            .hub
            .buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // A device's bucket lives while it has a session, so the map stays as small as the
        // number of connected devices. A device that reconnects gets a fresh bucket, but the
        // reconnect itself costs it a handshake; the per-connection limit bounds the rest.
        if let Some(b) = buckets.get_mut(&self.device) {
            b.sessions -= 1;
            if b.sessions == 0 {
                buckets.remove(&self.device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_workspace_takes_at_most_its_limit_of_sessions() {
        let hub = Hub::new(2, 8, 10);
        let ws = WorkspaceId::new();
        let a = hub.join(ws, DeviceId::new(), 0).expect("first");
        let _b = hub.join(ws, DeviceId::new(), 0).expect("second");
        assert!(hub.join(ws, DeviceId::new(), 0).is_err());
        assert!(hub.join(WorkspaceId::new(), DeviceId::new(), 0).is_ok());
        drop(a);
        assert!(hub.join(ws, DeviceId::new(), 0).is_ok());
    }

    #[test]
    fn heads_only_rise_and_reach_every_session() {
        let hub = Hub::new(10, 8, 10);
        let ws = WorkspaceId::new();
        let (a, _) = hub.join(ws, DeviceId::new(), 5).expect("join");
        let (_b, mut rx) = hub.join(ws, DeviceId::new(), 3).expect("join");
        assert_eq!(*rx.borrow_and_update(), 5);
        a.publish(9);
        a.publish(7);
        assert!(rx.has_changed().expect("open"));
        assert_eq!(*rx.borrow_and_update(), 9);
    }

    #[test]
    fn the_latest_batch_is_kept_for_the_sessions_at_the_live_edge() {
        let hub = Hub::new(10, 8, 10);
        let ws = WorkspaceId::new();
        let (a, mut rx) = hub.join(ws, DeviceId::new(), 4).expect("join");
        let (b, _) = hub.join(ws, DeviceId::new(), 4).expect("join");
        let batch = |from: u64, to: u64| LogRead {
            rows: (from + 1..=to)
                .map(|seq| crate::service::RawRow {
                    seq,
                    doc_id: [1; 16],
                    hash: [2; 32],
                    bytes: vec![u8::try_from(seq).expect("small")],
                    kind: "account".into(),
                    scope: None,
                    prev_scope: None,
                    decoded: Default::default(),
                })
                .collect(),
            through: to,
            through_hash: [u8::try_from(to).expect("small"); 32],
            head: to,
        };
        a.publish_batch(7, Some(batch(4, 7)));
        assert_eq!(*rx.borrow_and_update(), 7);
        assert_eq!(b.tail(4, 100).as_deref(), Some(&batch(4, 7)));
        assert_eq!(b.tail(4, 2), None, "more entries than asked for");
        assert_eq!(b.tail(5, 100), None, "another position reads the store");
        // A later batch replaces it; an earlier one published late does not.
        b.publish_batch(9, Some(batch(7, 9)));
        a.publish_batch(7, Some(batch(4, 7)));
        assert_eq!(a.tail(7, 100).as_deref(), Some(&batch(7, 9)));
        assert_eq!(a.tail(4, 100), None);
        // A batch without a tail (too large for one read), or too large to keep, leaves the
        // kept one alone.
        a.publish_batch(20, None);
        assert_eq!(*rx.borrow_and_update(), 20);
        let mut large = batch(20, 21);
        large.rows[0].bytes = vec![0; TAIL_BYTES + 1];
        a.publish_batch(21, Some(large));
        assert_eq!(*rx.borrow_and_update(), 21);
        assert_eq!(b.tail(7, 100).as_deref(), Some(&batch(7, 9)));
        assert_eq!(b.tail(20, 100), None);
        // The last session to leave drops it.
        drop((a, rx));
        let c = hub.join(ws, DeviceId::new(), 21).expect("join").0;
        drop(b);
        drop(c);
        let (d, _) = hub.join(ws, DeviceId::new(), 21).expect("join");
        assert_eq!(d.tail(7, 100), None);
    }

    #[test]
    fn a_device_takes_at_most_its_share_of_sessions() {
        let hub = Hub::new(10, 2, 10);
        let ws = WorkspaceId::new();
        let greedy = DeviceId::new();
        let a = hub.join(ws, greedy, 0).expect("first");
        let _b = hub.join(ws, greedy, 0).expect("second");
        assert_eq!(hub.join(ws, greedy, 0).err(), Some(Full::Device));
        // Everyone else still gets in, up to the workspace's limit.
        for _ in 0..8 {
            let _ = hub.join(ws, DeviceId::new(), 0).expect("another device");
        }
        drop(a);
        assert!(hub.join(ws, greedy, 0).is_ok());
    }

    #[tokio::test]
    async fn revoking_a_device_wakes_each_of_its_sessions_and_no_other() {
        let hub = Hub::new(10, 8, 10);
        let ws = WorkspaceId::new();
        let (device, other) = (DeviceId::new(), DeviceId::new());
        let (a, _) = hub.join(ws, device, 0).expect("join");
        let (b, _) = hub.join(ws, device, 0).expect("join");
        let (c, _) = hub.join(ws, other, 0).expect("join");
        assert!(!hub.revoke(WorkspaceId::new(), device), "another workspace");
        assert!(hub.revoke(ws, device));
        let patience = Duration::from_secs(5);
        tokio::time::timeout(patience, a.revoked())
            .await
            .expect("a");
        tokio::time::timeout(patience, b.revoked())
            .await
            .expect("b");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), c.revoked())
                .await
                .is_err()
        );
    }

    #[test]
    fn pushes_are_metered_per_device() {
        let hub = Hub::new(10, 8, 3);
        let ws = WorkspaceId::new();
        let device = DeviceId::new();
        let (slot, _) = hub.join(ws, device, 0).expect("join");
        let (other, _) = hub.join(ws, device, 0).expect("join");
        let t = Instant::now();
        assert!(slot.allow_push(t));
        assert!(other.allow_push(t));
        assert!(slot.allow_push(t));
        assert!(
            !other.allow_push(t),
            "the device's two sessions share a bucket"
        );
        assert!(slot.allow_push(t + Duration::from_millis(400)));
    }
}
