//! Access control above the store: the workspace's directory (users and teams, projected
//! from their records), the role matrix, and what each device's user may see.
//!
//! **Source of truth.** The `user` and `team` records in the workspace's log are the
//! directory: the relay projects their fields (`documents.attrs`) in the same transaction
//! that appends their changes, so the records and the directory never disagree. Only admins
//! write those records (an admin device, or `crm-relay user|team …`, whose changes the relay
//! authors itself); any other device's change to them is refused.
//!
//! **Decisions are O(1) per log entry.** A [`Viewer`] (crm-model) holds the user's levels
//! per kind, their teams and their teammates; deciding an entry reads its kind and its scope
//! (stored with the change, see `store::values::encode_scope`) and looks up two hash sets.
//! No document is loaded. The directory is cached per workspace and reloaded when the
//! workspace's access version moves.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use crm_model::access::{DirectoryTeam, DirectoryUser, Override};
use crm_model::{Directory, Kind, Matrix, RecordId, Viewer};
use crm_sync::{Access, DocId};
use sha2::{Digest, Sha256};

use crate::ids::{DeviceId, WorkspaceId};
use crate::store::{RelayStore, StoreError};

/// A workspace's directory and matrix as of an access version.
#[derive(Debug)]
pub struct AccessState {
    pub version: u64,
    pub directory: Directory,
    pub matrix: Matrix,
    /// Viewers made so far for this version (making one walks the directory; a push needs
    /// its pusher's).
    viewers: Mutex<HashMap<RecordId, Option<Arc<Viewer>>>>,
}

impl AccessState {
    pub fn new(version: u64, directory: Directory, matrix: Matrix) -> AccessState {
        AccessState {
            version,
            directory,
            matrix,
            viewers: Mutex::default(),
        }
    }

    /// The viewer for a user; `None` for a user the directory does not hold.
    pub fn viewer(&self, user: RecordId) -> Option<Viewer> {
        self.directory.viewer(user, &self.matrix)
    }

    /// [`AccessState::viewer`], made once per user and version.
    pub fn viewer_cached(&self, user: RecordId) -> Option<Arc<Viewer>> {
        let mut viewers = self.viewers.lock().unwrap_or_else(PoisonError::into_inner);
        viewers
            .entry(user)
            .or_insert_with(|| self.viewer(user).map(Arc::new))
            .clone()
    }
}

/// Per-workspace cache of [`AccessState`].
#[derive(Debug, Default)]
pub(crate) struct AccessCache {
    states: Mutex<HashMap<WorkspaceId, Arc<AccessState>>>,
}

impl AccessCache {
    /// The workspace's access state, reloaded when the stored version is newer than the
    /// cached one (or `at_least` asks for a newer one).
    pub(crate) fn get(
        &self,
        store: &dyn RelayStore,
        workspace: WorkspaceId,
    ) -> Result<Arc<AccessState>, StoreError> {
        let stored = store
            .access_versions(&[workspace])?
            .first()
            .map(|(_, v)| *v)
            .unwrap_or(0);
        if let Some(state) = self
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&workspace)
            && state.version >= stored
        {
            return Ok(state.clone());
        }
        self.reload(store, workspace)
    }

    /// The cached access state without asking the store whether it is current (the storing
    /// transaction checks the version it decided with); loaded if there is none.
    pub(crate) fn peek(
        &self,
        store: &dyn RelayStore,
        workspace: WorkspaceId,
    ) -> Result<Arc<AccessState>, StoreError> {
        if let Some(state) = self
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&workspace)
        {
            return Ok(state.clone());
        }
        self.reload(store, workspace)
    }

    /// Loads the workspace's access state from the store.
    pub(crate) fn reload(
        &self,
        store: &dyn RelayStore,
        workspace: WorkspaceId,
    ) -> Result<Arc<AccessState>, StoreError> {
        let state = Arc::new(load(store, workspace)?);
        self.states
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(workspace, state.clone());
        Ok(state)
    }
}

/// Reads a workspace's directory and matrix from the store.
pub fn load(store: &dyn RelayStore, workspace: WorkspaceId) -> Result<AccessState, StoreError> {
    let rows = store
        .directory(workspace)?
        .ok_or_else(|| StoreError::Corrupt(format!("no workspace {workspace}")))?;
    let mut directory = Directory::default();
    for (doc, kind, attrs) in rows.entries {
        match kind.as_str() {
            "user" => {
                if let Ok(user) = serde_json::from_str::<DirectoryUser>(&attrs) {
                    directory.users.insert(record(doc), user);
                }
            }
            "team" => {
                if let Ok(team) = serde_json::from_str::<DirectoryTeam>(&attrs) {
                    directory.teams.insert(record(doc), team);
                }
            }
            _ => {}
        }
    }
    let matrix = match rows.matrix.as_deref() {
        Some(json) => {
            let overrides: Vec<Override> = serde_json::from_str(json)
                .map_err(|e| StoreError::Corrupt(format!("role matrix: {e}")))?;
            Matrix::with_overrides(&overrides)
        }
        None => Matrix::default(),
    };
    Ok(AccessState::new(rows.version, directory, matrix))
}

pub(crate) fn record(doc: DocId) -> RecordId {
    RecordId::from_uuid(uuid::Uuid::from_bytes(doc))
}

fn doc(record: RecordId) -> DocId {
    *record.as_uuid().as_bytes()
}

/// What the relay tells a device about its user (`Welcome`, `Access`).
pub fn access_message(
    device: DeviceId,
    viewer: Option<&Viewer>,
    legacy_name: &str,
    matrix: &Matrix,
) -> Access {
    let matrix = serde_json::to_string(&matrix.overrides()).unwrap_or_else(|_| "[]".into());
    match viewer {
        Some(v) => {
            let mut teams: Vec<DocId> = v.teams.iter().map(|t| doc(*t)).collect();
            teams.sort_unstable();
            teams.truncate(crm_sync::MAX_SCOPE_TEAMS);
            Access {
                device: *device.as_uuid().as_bytes(),
                user: doc(v.user),
                name: v.name.clone(),
                role: v.role.as_str().to_string(),
                teams,
                key: key_of(v),
                matrix,
            }
        }
        // A device added before users existed, with the admin role: it sees everything.
        None => Access {
            device: *device.as_uuid().as_bytes(),
            user: [0; 16],
            name: legacy_name.to_string(),
            role: "admin".into(),
            teams: Vec::new(),
            key: [0; 32],
            matrix,
        },
    }
}

/// The digest devices compare to notice that their access changed.
pub fn key_of(viewer: &Viewer) -> [u8; 32] {
    Sha256::digest(viewer.fingerprint().as_bytes()).into()
}

/// Whether `viewer` (none: sees everything) may read a record of `kind` with the stored
/// `scope`. A kind this build does not know is visible only to whoever sees everything.
pub fn sees(viewer: Option<&Viewer>, kind: &str, scope: Option<&str>) -> bool {
    let Some(v) = viewer else { return true };
    match kind.parse::<Kind>() {
        Ok(kind) => v.sees(kind, &crate::store::decode_scope(scope)),
        Err(_) => v.sees_everything(),
    }
}
