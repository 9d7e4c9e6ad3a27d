//! The admin's directory commands: users and teams are records of the workspace, and
//! `crm-relay user|team add|edit` writes them as any admin device would, as changes the
//! relay authors (`{"user":"crm-relay","device":"relay"}`), appended through the same push
//! rule and projected into the directory in the same transaction.

use crm_model::access::{DirectoryTeam, DirectoryUser};
use crm_model::automerge::{ActorId, Automerge};
use crm_model::{Author, Edit, Kind, RecordId, Role, Stamp};
use crm_sync::{Envelope, Scope};

use super::{Pusher, Relay, now, valid_name};
use crate::ids::{DeviceId, WorkspaceId};
use crate::store::{AdminError, Device, StoreError};
use crate::token::Token;

/// The name the relay's own changes are authored by, and its pseudo-device's user.
pub const RELAY_AUTHOR: &str = "crm-relay";

/// A change to a user: only what is `Some` changes.
#[derive(Clone, Debug, Default)]
pub struct UserEdit {
    pub name: Option<String>,
    pub email: Option<String>,
    pub role: Option<Role>,
    /// Team names or ids: the user's teams become exactly these.
    pub teams: Option<Vec<String>>,
    pub active: Option<bool>,
}

/// A change to a team: only what is `Some` changes.
#[derive(Clone, Debug, Default)]
pub struct TeamEdit {
    pub name: Option<String>,
    /// A user's name or id; `Some("")` clears it.
    pub manager: Option<String>,
}

impl Relay {
    /// The workspace's users, by name.
    pub fn users(&self, workspace: WorkspaceId) -> Result<Vec<DirectoryUser>, StoreError> {
        let state = self.access_state(workspace)?;
        let mut users: Vec<DirectoryUser> = state.directory.users.values().cloned().collect();
        users.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
        Ok(users)
    }

    /// The workspace's teams, by name, each with its members (from both sides).
    pub fn teams(
        &self,
        workspace: WorkspaceId,
    ) -> Result<Vec<(DirectoryTeam, Vec<RecordId>)>, StoreError> {
        let state = self.access_state(workspace)?;
        let mut teams: Vec<(DirectoryTeam, Vec<RecordId>)> = state
            .directory
            .teams
            .values()
            .map(|t| {
                let mut members: Vec<RecordId> = state
                    .directory
                    .users
                    .keys()
                    .filter(|u| state.directory.member_of(**u).contains(&t.id))
                    .copied()
                    .collect();
                members.sort();
                (t.clone(), members)
            })
            .collect();
        teams.sort_by(|a, b| a.0.name.cmp(&b.0.name).then(a.0.id.cmp(&b.0.id)));
        Ok(teams)
    }

    /// Adds a user to the workspace's directory.
    pub fn add_user(
        &self,
        workspace: WorkspaceId,
        name: &str,
        email: Option<&str>,
        role: Role,
        teams: &[String],
    ) -> Result<DirectoryUser, AdminError> {
        let name = valid_name("user name", name)?;
        let state = self.access_state(workspace)?;
        if state.directory.user_named(&name).is_some() {
            return Err(AdminError::DuplicateUser(name));
        }
        let team_ids = self.team_ids(workspace, teams)?;
        let mut edit = Edit::new(Kind::User);
        set(&mut edit, "name", &name)?;
        if let Some(email) = email {
            set(&mut edit, "email", email)?;
        }
        set(&mut edit, "role", role.as_str())?;
        set(&mut edit, "active", "true")?;
        if !team_ids.is_empty() {
            set(&mut edit, "teams", &ids(&team_ids))?;
        }
        let id = RecordId::new();
        self.write_record(workspace, id, None, &edit)?;
        self.users(workspace)?
            .into_iter()
            .find(|u| u.id == id)
            .ok_or_else(|| not_projected(id))
    }

    /// Changes a user (found by name or id).
    pub fn edit_user(
        &self,
        workspace: WorkspaceId,
        user: &str,
        change: &UserEdit,
    ) -> Result<DirectoryUser, AdminError> {
        let state = self.access_state(workspace)?;
        let found = find_user(&state.directory, user)?.clone();
        let mut edit = Edit::new(Kind::User);
        if let Some(name) = &change.name {
            let name = valid_name("user name", name)?;
            if state
                .directory
                .user_named(&name)
                .is_some_and(|u| u.id != found.id)
            {
                return Err(AdminError::DuplicateUser(name));
            }
            set(&mut edit, "name", &name)?;
        }
        if let Some(email) = &change.email {
            set(&mut edit, "email", email)?;
        }
        if let Some(role) = change.role {
            set(&mut edit, "role", role.as_str())?;
        }
        if let Some(active) = change.active {
            set(&mut edit, "active", if active { "true" } else { "false" })?;
        }
        if let Some(teams) = &change.teams {
            let team_ids = self.team_ids(workspace, teams)?;
            set(&mut edit, "teams", &ids(&team_ids))?;
            // A team's record may list the user as a member too: it must follow, or the
            // user would stay in a team they were taken out of.
            for team in state.directory.teams.values() {
                if team.members.contains(&found.id) && !team_ids.contains(&team.id) {
                    let members: Vec<RecordId> = team
                        .members
                        .iter()
                        .filter(|m| **m != found.id)
                        .copied()
                        .collect();
                    let mut t = Edit::new(Kind::Team);
                    set(&mut t, "members", &ids(&members))?;
                    self.write_record(workspace, team.id, Some(()), &t)?;
                }
            }
        }
        if !edit.ops().is_empty() {
            self.write_record(workspace, found.id, Some(()), &edit)?;
        }
        self.users(workspace)?
            .into_iter()
            .find(|u| u.id == found.id)
            .ok_or_else(|| not_projected(found.id))
    }

    /// A device for the user named `name`, adding the user with `role` first when the
    /// directory lacks them (for scripts, tests and benchmarks that set a workspace up in
    /// one go).
    pub fn add_user_device(
        &self,
        workspace: WorkspaceId,
        name: &str,
        role: Role,
    ) -> Result<super::NewDevice, AdminError> {
        let known = self
            .access_state(workspace)?
            .directory
            .user_named(name)
            .is_some();
        if !known {
            self.add_user(workspace, name, None, role, &[])?;
        }
        self.add_device(workspace, name)
    }

    /// A device bound to no user of the directory, as relays made them before they knew
    /// users: it works only as an admin's, sees everything and pushes changes that name no
    /// author or `name`. For tools and for tests of the sync machinery itself, which must
    /// not find user records in the log.
    pub fn add_unbound_device(
        &self,
        workspace: WorkspaceId,
        name: &str,
    ) -> Result<super::NewDevice, AdminError> {
        let name = valid_name("user", name)?;
        if self.store.workspace(workspace)?.is_none() {
            return Err(AdminError::UnknownWorkspace(workspace.to_string()));
        }
        let token = Token::generate(workspace)?;
        let device = Device {
            id: DeviceId::new(),
            workspace,
            user: name,
            user_id: None,
            role: Role::Admin,
            created_at: now(),
            revoked_at: None,
            last_seen_at: None,
            wiped_at: None,
        };
        self.store.insert_device(&device, &token.hash())?;
        Ok(super::NewDevice { device, token })
    }

    /// Adds a team.
    pub fn add_team(
        &self,
        workspace: WorkspaceId,
        name: &str,
        manager: Option<&str>,
    ) -> Result<DirectoryTeam, AdminError> {
        let name = valid_name("team name", name)?;
        let state = self.access_state(workspace)?;
        if state.directory.team_named(&name).is_some() {
            return Err(AdminError::DuplicateTeam(name));
        }
        let mut edit = Edit::new(Kind::Team);
        set(&mut edit, "name", &name)?;
        if let Some(manager) = manager {
            let m = find_user(&state.directory, manager)?;
            set(&mut edit, "manager", &m.id.to_string())?;
        }
        let id = RecordId::new();
        self.write_record(workspace, id, None, &edit)?;
        self.access_state(workspace)?
            .directory
            .teams
            .get(&id)
            .cloned()
            .ok_or_else(|| not_projected(id))
    }

    /// Changes a team (found by name or id).
    pub fn edit_team(
        &self,
        workspace: WorkspaceId,
        team: &str,
        change: &TeamEdit,
    ) -> Result<DirectoryTeam, AdminError> {
        let state = self.access_state(workspace)?;
        let found = find_team(&state.directory, team)?.clone();
        let mut edit = Edit::new(Kind::Team);
        if let Some(name) = &change.name {
            let name = valid_name("team name", name)?;
            if state
                .directory
                .team_named(&name)
                .is_some_and(|t| t.id != found.id)
            {
                return Err(AdminError::DuplicateTeam(name));
            }
            set(&mut edit, "name", &name)?;
        }
        match change.manager.as_deref() {
            Some("") => edit.unset("manager").map(|_| ()).map_err(invalid)?,
            Some(m) => {
                let m = find_user(&state.directory, m)?;
                set(&mut edit, "manager", &m.id.to_string())?;
            }
            None => {}
        }
        if !edit.ops().is_empty() {
            self.write_record(workspace, found.id, Some(()), &edit)?;
        }
        self.access_state(workspace)?
            .directory
            .teams
            .get(&found.id)
            .cloned()
            .ok_or_else(|| not_projected(found.id))
    }

    /// Sets one cell of the workspace's role matrix.
    pub fn set_level(
        &self,
        workspace: WorkspaceId,
        role: Role,
        kind: Kind,
        action: crm_model::Action,
        level: crm_model::Level,
    ) -> Result<crm_model::Matrix, AdminError> {
        let mut matrix = self.access_state(workspace)?.matrix.clone();
        matrix
            .set(role, kind, action, level)
            .map_err(|e| AdminError::Rejected(e.to_string()))?;
        let json = serde_json::to_string(&matrix.overrides())
            .map_err(|e| AdminError::Rejected(e.to_string()))?;
        self.store.set_matrix(workspace, &json)?;
        Ok(matrix)
    }

    fn team_ids(
        &self,
        workspace: WorkspaceId,
        teams: &[String],
    ) -> Result<Vec<RecordId>, AdminError> {
        let state = self.access_state(workspace)?;
        teams
            .iter()
            .map(|t| find_team(&state.directory, t).map(|t| t.id))
            .collect()
    }

    /// Creates (`existing` is `None`) or edits a user or team record as the relay.
    fn write_record(
        &self,
        workspace: WorkspaceId,
        id: RecordId,
        existing: Option<()>,
        edit: &Edit,
    ) -> Result<(), AdminError> {
        let author = Author::new(RELAY_AUTHOR, "relay");
        let stamp = Stamp {
            author: &author,
            now: now(),
        };
        let bytes = match existing {
            None => {
                let doc = crm_model::doc::create(id, edit, stamp, ActorId::random())
                    .map_err(|e| AdminError::Rejected(e.to_string()))?;
                doc.get_last_local_change()
                    .map(|c| c.raw_bytes().to_vec())
                    .ok_or_else(|| no_change(id))?
            }
            Some(()) => {
                let doc_id = *id.as_uuid().as_bytes();
                let mut doc = Automerge::new();
                let mut failed = None;
                self.store
                    .document_changes(workspace, &[(doc_id, 0)], None, &mut |row| {
                        if let Err(e) = doc.load_incremental(&row.bytes) {
                            failed = Some(e.to_string());
                            return false;
                        }
                        true
                    })?;
                if let Some(e) = failed {
                    return Err(AdminError::Store(StoreError::Corrupt(e)));
                }
                let mut doc = doc.with_actor(ActorId::random());
                match crm_model::doc::apply_edit(&mut doc, edit, stamp)
                    .map_err(|e| AdminError::Rejected(e.to_string()))?
                {
                    Some(_) => doc
                        .get_last_local_change()
                        .map(|c| c.raw_bytes().to_vec())
                        .ok_or_else(|| no_change(id))?,
                    None => return Ok(()),
                }
            }
        };
        let envelope = Envelope {
            doc_id: *id.as_uuid().as_bytes(),
            kind: edit.kind().as_str().to_string(),
            scope: Scope::default(),
            bytes,
        };
        let pusher = Pusher {
            device: self.relay_device(workspace)?,
            user_id: None,
            user: RELAY_AUTHOR.into(),
        };
        self.store_batch(workspace, &pusher, &[envelope])
            .map_err(|e| AdminError::Rejected(e.to_string()))?;
        Ok(())
    }

    /// The workspace's pseudo-device the relay's own changes are filed under (made the first
    /// time; its token is never shown, so nothing can connect as it).
    fn relay_device(&self, workspace: WorkspaceId) -> Result<DeviceId, AdminError> {
        if let Some(d) = self
            .store
            .devices(Some(workspace))?
            .into_iter()
            .find(is_relay_device)
        {
            return Ok(d.id);
        }
        let token = Token::generate(workspace)?;
        let device = Device {
            id: DeviceId::new(),
            workspace,
            user: RELAY_AUTHOR.into(),
            user_id: None,
            role: Role::Admin,
            created_at: now(),
            revoked_at: None,
            last_seen_at: None,
            wiped_at: None,
        };
        self.store.insert_device(&device, &token.hash())?;
        Ok(device.id)
    }
}

/// Whether a device is the relay's own (for the directory's changes), not a person's.
pub fn is_relay_device(device: &Device) -> bool {
    device.user == RELAY_AUTHOR && device.user_id.is_none()
}

fn find_user<'a>(
    directory: &'a crm_model::Directory,
    key: &str,
) -> Result<&'a DirectoryUser, AdminError> {
    let found = match key.trim().parse::<RecordId>() {
        Ok(id) => directory.users.get(&id),
        Err(_) => directory.user_named(key),
    };
    found.ok_or_else(|| AdminError::UnknownUser(key.to_string()))
}

fn find_team<'a>(
    directory: &'a crm_model::Directory,
    key: &str,
) -> Result<&'a DirectoryTeam, AdminError> {
    let found = match key.trim().parse::<RecordId>() {
        Ok(id) => directory.teams.get(&id),
        Err(_) => directory.team_named(key),
    };
    found.ok_or_else(|| AdminError::UnknownTeam(key.to_string()))
}

fn set(edit: &mut Edit, field: &str, value: &str) -> Result<(), AdminError> {
    edit.set(field, value).map(|_| ()).map_err(invalid)
}

fn invalid(e: crm_model::ValidationError) -> AdminError {
    AdminError::Rejected(e.to_string())
}

fn ids(ids: &[RecordId]) -> String {
    ids.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// A record the relay has just written that its directory does not show: the projection of
/// user and team records failed (the record's changes did not make a record).
fn not_projected(id: RecordId) -> AdminError {
    AdminError::Store(StoreError::Corrupt(format!(
        "record {id} was written but the directory does not show it"
    )))
}

/// An edit of record `id` that reported a change Automerge did not keep.
fn no_change(id: RecordId) -> AdminError {
    AdminError::Store(StoreError::Corrupt(format!(
        "writing record {id} made no change to store"
    )))
}
