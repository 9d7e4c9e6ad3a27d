//! The relay's policy over its storage: [`Relay`] is what the server, the compactor and the
//! command line call, and the same whatever the backend behind [`RelayStore`].
//!
//! It owns what is not storage: the rule a pushed change must pass (`validate`),
//! authentication and revocation, cursor checks, the budgets of a log read, the building of
//! snapshots and the assembly of bootstrap pages. A backend only runs plain statements.
//!
//! The operations commands are here too: [`Relay::verify`] (is the store sound),
//! [`Relay::stats`], [`migrate::migrate`] (every row into another, empty store, of either
//! backend) and, for SQLite, [`backup::backup`] and [`backup::restore`].

pub mod access;
pub mod backup;
mod compact;
mod directory;
mod log;
pub mod migrate;
mod pages;
mod push;
mod stats;
mod verify;

pub use directory::{RELAY_AUTHOR, TeamEdit, UserEdit, is_relay_device};
pub use log::{Filtered, RawRead, RawRow, filter};
pub use pages::DocumentsPage;
pub(crate) use push::shape_of;
pub use push::{Pusher, StoredBatch};
pub use stats::{DeviceSeen, DeviceStats, Stats, WorkspaceStats};
pub use verify::{MAX_LISTED_PROBLEMS, Problem, ProblemKind, VerifyReport};

use std::sync::Arc;

use chrono::{DateTime, Utc};
use crm_sync::relay::Authorized;
use crm_sync::{Cursor, Hash, RelayId};
use uuid::Uuid;

use crate::ids::{DeviceId, Role, WorkspaceId};
use crate::store::{
    AdminError, AuthError, Device, MAX_NAME_CHARS, RelayStore, StoreError, Workspace,
};
use crate::token::Token;

/// How stale a device's `last_seen_at` may get before a connection updates it: a reconnect
/// storm does not become a storm of writes.
const TOUCH_EVERY: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The relay's operations over a store. Cheap to clone.
#[derive(Clone)]
pub struct Relay {
    store: Arc<dyn RelayStore>,
    access: Arc<access::AccessCache>,
    /// Recent log rows' kinds and scopes, decoded once for every session (`log.rs`).
    decoded: Arc<log::DecodedCache>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("backend", &self.store.backend())
            .field("location", &self.store.location())
            .finish()
    }
}

/// A device just added, with the only copy of its token.
#[derive(Debug)]
pub struct NewDevice {
    pub device: Device,
    pub token: Token,
}

/// A device that proved its token.
#[derive(Clone, Debug)]
pub struct Authenticated {
    pub workspace: WorkspaceId,
    pub device: DeviceId,
    pub user: String,
    pub role: Role,
    /// The device as stored.
    pub row: Device,
    /// Who pushes through this session.
    pub pusher: Pusher,
    /// What the user may see; `None` when they see everything (an admin).
    pub viewer: Option<Arc<crm_model::Viewer>>,
    /// The workspace's access version the viewer was made from.
    pub access_version: u64,
    /// The log's head, whether the device's cursor is a position of this log, and the
    /// `Access` for `Welcome`.
    pub authorized: Authorized,
}

impl Relay {
    pub fn new(store: Arc<dyn RelayStore>) -> Relay {
        Relay {
            store,
            access: Arc::new(access::AccessCache::default()),
            decoded: Arc::new(log::DecodedCache::default()),
        }
    }

    /// A workspace's directory and role matrix, as of its latest access version.
    pub fn access_state(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Arc<access::AccessState>, StoreError> {
        self.access.get(self.store.as_ref(), workspace)
    }

    /// The access versions of these workspaces.
    pub fn access_versions(
        &self,
        workspaces: &[WorkspaceId],
    ) -> Result<Vec<(WorkspaceId, u64)>, StoreError> {
        self.store.access_versions(workspaces)
    }

    /// What a device's user may see now: the viewer (none: everything) and the `Access`
    /// message that describes it. Refused for a user the directory lacks or made inactive.
    pub fn viewer_of(
        &self,
        workspace: WorkspaceId,
        device: &Device,
    ) -> Result<(Option<Arc<crm_model::Viewer>>, crm_sync::Access, u64), AuthError> {
        let state = self.access_state(workspace)?;
        let Some(user_id) = device.user_id else {
            // Added before the relay knew users: only an admin's device keeps working.
            if device.role == Role::Admin {
                return Ok((
                    None,
                    access::access_message(device.id, None, &device.user, &state.matrix),
                    state.version,
                ));
            }
            return Err(AuthError::Forbidden(format!(
                "this device was added for {:?} before the relay knew users; add the user \
                 (`crm-relay user add`) and a new device for them (`crm-relay device add --user`)",
                device.user
            )));
        };
        let viewer = state
            .viewer(crm_model::RecordId::from_uuid(user_id))
            .ok_or_else(|| {
                AuthError::Forbidden(format!(
                    "user {:?} is not in the workspace's directory any more",
                    device.user
                ))
            })?;
        if !viewer.active {
            return Err(AuthError::Forbidden(format!(
                "user {:?} is inactive; an admin can reactivate them (`crm-relay user edit --active true`)",
                viewer.name
            )));
        }
        let message = access::access_message(device.id, Some(&viewer), &device.user, &state.matrix);
        let viewer = (!viewer.sees_everything()).then(|| Arc::new(viewer));
        Ok((viewer, message, state.version))
    }

    /// The storage backend.
    pub fn store(&self) -> &Arc<dyn RelayStore> {
        &self.store
    }

    pub fn relay_id(&self) -> RelayId {
        self.store.relay_id()
    }

    pub fn ping(&self) -> Result<(), StoreError> {
        self.store.ping()
    }

    /// Checks a device's token for a workspace, and the device's cursor against the log.
    /// `workspace` is the text the device sent (the workspace's UUID).
    pub fn authenticate(
        &self,
        workspace: &str,
        token: &str,
        cursor: Option<&Cursor>,
    ) -> Result<Authenticated, AuthError> {
        let unknown = || AuthError::UnknownWorkspace(workspace.chars().take(64).collect());
        let ws: WorkspaceId = workspace.parse().map_err(|_| unknown())?;
        let head = self.store.head(ws)?.ok_or_else(unknown)?;
        // Something not shaped like a token is refused without a lookup.
        if Token::workspace_of(token).is_none() {
            return Err(AuthError::Unauthenticated);
        }
        let device = self
            .store
            .device_by_token(&Token::hash_of(token))?
            .ok_or(AuthError::Unauthenticated)?;
        // A real token, of another workspace: it never opens this one.
        if device.workspace != ws {
            return Err(AuthError::OtherWorkspace);
        }
        if device.wiped_at.is_some() {
            return Err(AuthError::Wiped);
        }
        if device.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        let (viewer, access, access_version) = self.viewer_of(ws, &device)?;
        // Position 0 names no change, so it proves nothing about this log: start over.
        let cursor_known = match cursor {
            Some(c) if c.seq > 0 && c.seq <= head => {
                self.store.hash_at(ws, c.seq)?.is_some_and(|h| h == c.hash)
            }
            _ => false,
        };
        let now = Utc::now();
        if device.last_seen_at.is_none_or(|at| now - at >= TOUCH_EVERY) {
            self.store.touch_device(device.id, now)?;
        }
        let role = access.role.parse().unwrap_or(device.role);
        let name = access.name.clone();
        Ok(Authenticated {
            workspace: ws,
            device: device.id,
            row: device.clone(),
            pusher: Pusher {
                device: device.id,
                user_id: device.user_id.map(crm_model::RecordId::from_uuid),
                user: name.clone(),
            },
            user: name,
            role,
            viewer,
            access_version,
            authorized: Authorized {
                head,
                cursor_known,
                access,
            },
        })
    }

    /// The workspace log's head and the hash of the change there (zeros for an empty log):
    /// the cursor a device has once it holds everything up to the head.
    pub fn head(&self, workspace: WorkspaceId) -> Result<(u64, Hash), StoreError> {
        let head = self
            .store
            .head(workspace)?
            .ok_or_else(|| StoreError::Corrupt(format!("no workspace {workspace}")))?;
        if head == 0 {
            return Ok((0, [0; 32]));
        }
        let at = self.store.hash_at(workspace, head)?.ok_or_else(|| {
            StoreError::Corrupt(format!("no change at the head {head} of {workspace}"))
        })?;
        Ok((head, at))
    }

    /// Makes a workspace with a new, empty log.
    pub fn create_workspace(&self, name: &str) -> Result<Workspace, AdminError> {
        let name = valid_name("workspace name", name)?;
        if Uuid::try_parse(&name).is_ok() {
            return Err(AdminError::InvalidInput {
                what: "workspace name",
                value: name,
                expected: "a name, not a UUID (workspaces are found by id or name)".into(),
            });
        }
        let workspace = Workspace {
            id: WorkspaceId::new(),
            name,
            created_at: now(),
            head: 0,
            matrix: None,
            access_version: 0,
        };
        if !self.store.insert_workspace(&workspace)? {
            return Err(AdminError::DuplicateName(workspace.name));
        }
        Ok(workspace)
    }

    /// Every workspace, oldest first.
    pub fn workspaces(&self) -> Result<Vec<Workspace>, StoreError> {
        self.store.workspaces()
    }

    /// The workspace with this id or, failing that, this name.
    pub fn find_workspace(&self, id_or_name: &str) -> Result<Workspace, AdminError> {
        let key = id_or_name.trim();
        let found = match key.parse::<WorkspaceId>() {
            Ok(id) => self.store.workspace(id)?,
            Err(_) => self.store.workspace_named(key)?,
        };
        found.ok_or_else(|| AdminError::UnknownWorkspace(id_or_name.to_string()))
    }

    /// Adds a device for the user with this name or id (who must be in the workspace's
    /// directory) and returns it with its token, which is not stored (only its hash is) and
    /// so can never be shown again.
    pub fn add_device(&self, workspace: WorkspaceId, user: &str) -> Result<NewDevice, AdminError> {
        let key = valid_name("user", user)?;
        if self.store.workspace(workspace)?.is_none() {
            return Err(AdminError::UnknownWorkspace(workspace.to_string()));
        }
        let state = self.access_state(workspace)?;
        let found = match key.parse::<crm_model::RecordId>() {
            Ok(id) => state.directory.users.get(&id),
            Err(_) => state.directory.user_named(&key),
        };
        let found = found.ok_or_else(|| AdminError::UnknownUser(key.clone()))?;
        let token = Token::generate(workspace)?;
        let device = Device {
            id: DeviceId::new(),
            workspace,
            user: found.name.clone(),
            user_id: Some(*found.id.as_uuid()),
            role: found.role,
            created_at: now(),
            revoked_at: None,
            last_seen_at: None,
            wiped_at: None,
        };
        self.store.insert_device(&device, &token.hash())?;
        Ok(NewDevice { device, token })
    }

    /// The devices of one workspace, or of all, oldest first.
    pub fn devices(&self, workspace: Option<WorkspaceId>) -> Result<Vec<Device>, StoreError> {
        self.store.devices(workspace)
    }

    /// Revokes a device's token; its next connection or push is refused, and a serving
    /// relay closes its open sessions. Revoking twice keeps the first time.
    pub fn revoke_device(&self, device: DeviceId) -> Result<Device, AdminError> {
        self.store
            .revoke_device(device, now())?
            .ok_or(AdminError::UnknownDevice(device))
    }

    /// Revokes a device and marks it wiped: its next connection deletes every record of the
    /// workspace from its replica (after telling its user what unsent changes it had).
    pub fn wipe_device(&self, device: DeviceId) -> Result<Device, AdminError> {
        self.store
            .wipe_device(device, now())?
            .ok_or(AdminError::UnknownDevice(device))
    }

    /// Devices (of every workspace) revoked at or after `since`.
    pub fn revoked_since(&self, since: DateTime<Utc>) -> Result<Vec<Device>, StoreError> {
        self.store.revoked_since(since)
    }
}

/// A hash as hexadecimal text, for reports.
pub(crate) fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, to the millisecond: what every backend stores.
fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now)
}

pub(crate) fn valid_name(what: &'static str, value: &str) -> Result<String, AdminError> {
    let trimmed = value.trim();
    let invalid = |expected: &str| AdminError::InvalidInput {
        what,
        value: value.to_string(),
        expected: expected.to_string(),
    };
    if trimmed.is_empty() {
        return Err(invalid("it is empty"));
    }
    if trimmed.chars().count() > MAX_NAME_CHARS {
        return Err(invalid(&format!("at most {MAX_NAME_CHARS} characters")));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(invalid("no control characters"));
    }
    Ok(trimmed.to_string())
}
