//! `stats`: per workspace its devices, records and changes, and the database's size.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::Relay;
use crate::ids::{DeviceId, Role, WorkspaceId};
use crate::store::StoreError;

/// What [`Relay::stats`] counts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Stats {
    pub backend: &'static str,
    pub location: String,
    pub relay_id: Uuid,
    /// Bytes on disk: SQLite's file and WAL, or PostgreSQL's database.
    pub database_bytes: u64,
    pub workspaces: Vec<WorkspaceStats>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkspaceStats {
    pub id: WorkspaceId,
    pub name: String,
    pub created_at: DateTime<Utc>,
    /// Documents in its directory: one per record.
    pub records: u64,
    /// Changes in its log: its head.
    pub changes: u64,
    pub devices: DeviceStats,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceStats {
    pub total: u64,
    /// Devices not revoked.
    pub active: u64,
    /// Each device, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub list: Option<Vec<DeviceSeen>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeviceSeen {
    pub id: DeviceId,
    pub user: String,
    pub role: Role,
    pub revoked_at: Option<DateTime<Utc>>,
    pub last_seen_at: Option<DateTime<Utc>>,
}

impl Relay {
    /// Counts every workspace's devices, records and changes; lists each device if
    /// `devices`.
    pub fn stats(&self, devices: bool) -> Result<Stats, StoreError> {
        let mut workspaces = Vec::new();
        for w in self.store.workspaces()? {
            let all = self.store.devices(Some(w.id))?;
            let active = all.iter().filter(|d| d.revoked_at.is_none()).count();
            workspaces.push(WorkspaceStats {
                id: w.id,
                name: w.name,
                created_at: w.created_at,
                records: self.store.count_documents(w.id)?,
                changes: w.head,
                devices: DeviceStats {
                    total: all.len() as u64,
                    active: active as u64,
                    list: devices.then(|| {
                        all.into_iter()
                            .map(|d| DeviceSeen {
                                id: d.id,
                                user: d.user,
                                role: d.role,
                                revoked_at: d.revoked_at,
                                last_seen_at: d.last_seen_at,
                            })
                            .collect()
                    }),
                },
            });
        }
        Ok(Stats {
            backend: self.store.backend(),
            location: self.store.location(),
            relay_id: Uuid::from_bytes(self.store.relay_id()),
            database_bytes: self.store.size()?,
            workspaces,
        })
    }
}
