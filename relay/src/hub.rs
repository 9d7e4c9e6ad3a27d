//! Per-workspace fan-out and limits shared by the sessions of a workspace.
//!
//! Each workspace has a `watch` channel of its log's head: a session that commits a batch
//! raises it, every other session of the workspace wakes and reads what it has not sent yet.
//! A watch holds one value and never queues, so a slow reader costs the others nothing; it
//! simply sees the latest head when it gets round to it. The hub also counts each
//! workspace's sessions (a bounded number) and meters each device's pushes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::watch;

use crate::ids::{DeviceId, WorkspaceId};

#[derive(Debug)]
pub(crate) struct Hub {
    workspaces: Mutex<HashMap<WorkspaceId, Arc<WorkspaceHub>>>,
    max_connections: usize,
    pushes_per_second: f64,
}

#[derive(Debug)]
struct WorkspaceHub {
    head: watch::Sender<u64>,
    connections: AtomicUsize,
    buckets: Mutex<HashMap<DeviceId, Bucket>>,
}

/// A token bucket: `pushes_per_second` tokens a second, holding at most one second's worth.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
    sessions: usize,
}

/// The workspace already has its maximum number of sessions.
#[derive(Debug)]
pub(crate) struct Full;

/// A session's place in its workspace; leaving frees it.
#[derive(Debug)]
pub(crate) struct Slot {
    hub: Arc<WorkspaceHub>,
    device: DeviceId,
    pushes_per_second: f64,
}

impl Hub {
    pub(crate) fn new(max_connections: usize, pushes_per_second: u32) -> Hub {
        Hub {
            workspaces: Mutex::new(HashMap::new()),
            max_connections,
            pushes_per_second: f64::from(pushes_per_second.max(1)),
        }
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
                    connections: AtomicUsize::new(0),
                    buckets: Mutex::new(HashMap::new()),
                })
            })
            .clone();
        hub.connections
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_connections).then_some(n + 1)
            })
            .map_err(|_| Full)?;
        hub.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(device)
            .or_insert_with(|| Bucket {
                tokens: self.pushes_per_second,
                at: Instant::now(),
                sessions: 0,
            })
            .sessions += 1;
        let slot = Slot {
            hub: hub.clone(),
            device,
            pushes_per_second: self.pushes_per_second,
        };
        slot.publish(head);
        Ok((slot, hub.head.subscribe()))
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
        self.hub.connections.fetch_sub(1, Ordering::AcqRel);
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
        let hub = Hub::new(2, 10);
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
        let hub = Hub::new(10, 10);
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
    fn pushes_are_metered_per_device() {
        let hub = Hub::new(10, 3);
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
