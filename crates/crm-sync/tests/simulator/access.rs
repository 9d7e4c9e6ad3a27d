//! The relay's access control, as the simulator's relay does it: the directory projected
//! from the log's `user` and `team` records (relay/src/service/push.rs `project`), the
//! built-in role matrix, and per session the user's [`Viewer`] and the `Access` message.
//! The rule itself is crm-model's ([`Viewer::sees`]); what the relay adds around it is
//! copied here from relay/src/service/access.rs, since the relay is not a dependency of
//! crm-sync.
//!
//! The directory lives in the log, as on the real relay: users and teams are records
//! (created by [`World::with_directory`] as `crm-relay user|team add` does, authored by the
//! relay), and a role or team change is an admin device's edit of a `user` record, pushed
//! like any other change. The relay re-projects them in the appending step and tells every
//! open session whose access key changed.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};

use crm_model::access::{DirectoryTeam, DirectoryUser};
use crm_model::{Directory, Edit, FieldValue, Kind, Matrix, RecordId, Role, Scope, Viewer};
use crm_store::Store;
use crm_sync::{Access, ErrorCode, ErrorFrame};

use super::{Device, LogEntry, World, envelope, record};

/// A user of a simulated workspace and the teams (by name) they belong to.
pub(crate) struct Person {
    pub(crate) name: &'static str,
    pub(crate) role: Role,
    pub(crate) teams: &'static [&'static str],
}

/// What the relay knows about users: the directory, the matrix, whose each token is, and
/// the access key each open session was last told.
pub(crate) struct Acl {
    pub(crate) directory: Directory,
    pub(crate) matrix: Matrix,
    /// Token → the user's record id (`crm-relay device add --user`).
    pub(crate) users: HashMap<String, RecordId>,
    /// The teams by name, for tests.
    pub(crate) teams: HashMap<&'static str, RecordId>,
    /// The changes of every user and team record, to project them.
    records: HashMap<RecordId, (String, Vec<Vec<u8>>)>,
    /// Per open session (by device), the access key it was told.
    pub(crate) told: HashMap<usize, [u8; 32]>,
}

impl Acl {
    pub(crate) fn viewer(&self, user: RecordId) -> Option<Viewer> {
        self.directory.viewer(user, &self.matrix)
    }

    /// relay/src/service/access.rs `access_message`.
    pub(crate) fn access(&self, device: [u8; 16], viewer: &Viewer) -> Access {
        let mut teams: Vec<[u8; 16]> = viewer
            .teams
            .iter()
            .map(|t| *t.as_uuid().as_bytes())
            .collect();
        teams.sort_unstable();
        Access {
            device,
            user: *viewer.user.as_uuid().as_bytes(),
            name: viewer.name.clone(),
            role: viewer.role.as_str().to_string(),
            teams,
            key: key_of(viewer),
            matrix: "[]".into(),
        }
    }

    /// Authentication's access part: the token's user must be an active user of the
    /// directory (403 otherwise).
    pub(crate) fn authorize(
        &mut self,
        session: usize,
        device: [u8; 16],
        token: &str,
    ) -> Result<Access, ErrorFrame> {
        let viewer = self
            .users
            .get(token)
            .and_then(|u| self.viewer(*u))
            .filter(|v| v.active)
            .ok_or_else(|| ErrorFrame {
                code: ErrorCode::FORBIDDEN,
                message: "this device's user is not an active user of the directory".into(),
            })?;
        let access = self.access(device, &viewer);
        self.told.insert(session, access.key);
        Ok(access)
    }

    /// Takes newly stored entries into the directory; whether it changed.
    pub(crate) fn absorb(&mut self, entries: &[LogEntry]) -> bool {
        let mut touched = Vec::new();
        for e in entries
            .iter()
            .filter(|e| e.kind == "user" || e.kind == "team")
        {
            let slot = self
                .records
                .entry(e.doc)
                .or_insert_with(|| (e.kind.clone(), Vec::new()));
            slot.1.push(e.bytes.clone());
            touched.push(e.doc);
        }
        let before = self.directory.clone();
        for doc in touched {
            let (kind, changes) = &self.records[&doc];
            project(&mut self.directory, kind, doc, changes);
        }
        self.directory != before
    }

    /// The open sessions whose user's access key differs from the one they were told, with
    /// their new `Access` (the relay's recomputation after a directory change).
    pub(crate) fn changed_sessions(
        &mut self,
        devices: &[Device],
        sessions: impl Iterator<Item = usize>,
    ) -> Vec<(usize, Access)> {
        let mut out = Vec::new();
        for s in sessions {
            let Some(viewer) = self.viewer(self.users[&devices[s].token]) else {
                continue;
            };
            let access = self.access(devices[s].id, &viewer);
            if self.told.get(&s) != Some(&access.key) {
                self.told.insert(s, access.key);
                out.push((s, access));
            }
        }
        out
    }
}

/// relay/src/service/push.rs `project`: a user or team record's directory entry, from its
/// changes.
fn project(directory: &mut Directory, kind: &str, id: RecordId, changes: &[Vec<u8>]) {
    let mut am = crm_model::automerge::Automerge::new();
    for bytes in changes {
        // A change this document refuses stays out of it, as on every device.
        let _ = am.load_incremental(bytes);
    }
    let Ok(record) = crm_model::doc::read(&am, None) else {
        return;
    };
    let text = |name: &str| match record.fields.get(name) {
        Some(FieldValue::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let ids = |name: &str| -> Vec<RecordId> {
        match record.fields.get(name) {
            Some(FieldValue::Set(set)) => set.iter().filter_map(|s| s.parse().ok()).collect(),
            _ => Vec::new(),
        }
    };
    match kind {
        "user" => {
            directory.users.insert(
                id,
                DirectoryUser {
                    id,
                    name: text("name").unwrap_or_default(),
                    email: text("email"),
                    role: text("role")
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(Role::SalesRep),
                    teams: ids("teams"),
                    active: !matches!(record.fields.get("active"), Some(FieldValue::Bool(false)))
                        && !record.archived,
                },
            );
        }
        "team" => {
            directory.teams.insert(
                id,
                DirectoryTeam {
                    id,
                    name: text("name").unwrap_or_default(),
                    manager: match record.fields.get("manager") {
                        Some(FieldValue::Ref(r)) => Some(*r),
                        _ => None,
                    },
                    members: ids("members"),
                },
            );
        }
        _ => {}
    }
}

/// The digest devices compare to notice that their access changed. The relay takes the
/// SHA-256 of [`Viewer::fingerprint`]; any digest of it does here (crm-sync has no sha2),
/// and `DefaultHasher::new` is deterministic.
pub(crate) fn key_of(viewer: &Viewer) -> [u8; 32] {
    let fingerprint = viewer.fingerprint();
    let mut key = [0u8; 32];
    for (i, chunk) in key.chunks_mut(8).enumerate() {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (i, &fingerprint).hash(&mut h);
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

/// relay/src/service/access.rs `sees`: a kind this build does not know is visible only to
/// whoever sees everything.
pub(crate) fn sees(viewer: &Viewer, kind: &str, scope: &Scope) -> bool {
    match kind.parse::<Kind>() {
        Ok(kind) => viewer.sees(kind, scope),
        Err(_) => viewer.sees_everything(),
    }
}

/// crm-node/src/sync.rs `adopt`: takes the relay's word for who this device's user is.
/// Returns whether what the user may see changed since the replica last settled its scope
/// (then it re-syncs): never on the first identity a replica learns.
pub(crate) fn adopt(store: &mut Store, access: &Access) -> bool {
    // A relay that knows no users: the replica's own User record is its user's.
    if access.user == [0; 16] {
        store.release_local_user().expect("release");
        return false;
    }
    let user_id = record(access.user);
    let role: Role = access.role.parse().expect("a role");
    let identity = crm_store::RelayIdentity {
        user_id,
        user_name: access.name.clone(),
        role,
        teams: access.teams.iter().copied().map(record).collect(),
        device_id: uuid::Uuid::from_bytes(access.device).to_string(),
        access_key: access.key,
    };
    let known = store.access_key();
    let same_user = store.identity().user_id == Some(user_id);
    if known.is_some() && same_user && known != Some(access.key) {
        // The old key stays until the re-sync has swept.
        return true;
    }
    if !same_user || known.is_none() || store.identity().role != Some(role) {
        store.adopt_identity(&identity).expect("adopt");
    }
    false
}

impl World {
    /// A world whose relay knows users: `teams` and `people` are created as `team` and
    /// `user` records in the log before any device connects (as `crm-relay team add` and
    /// `crm-relay user add` do, authored by the relay), and device `i` belongs to
    /// `people[i]`.
    pub(crate) fn with_directory(teams: &[&'static str], people: &[Person]) -> World {
        let mut world = World::new(people.len());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut relay = Store::init(dir.path(), "relay", "relay").expect("init");
        let mut team_ids = HashMap::new();
        for name in teams {
            let mut e = Edit::new(Kind::Team);
            e.set("name", name).expect("valid");
            team_ids.insert(*name, relay.create(&e).expect("team").id);
        }
        let mut users = HashMap::new();
        for (i, p) in people.iter().enumerate() {
            let mut e = Edit::new(Kind::User);
            e.set("name", p.name).expect("valid");
            e.set("role", p.role.as_str()).expect("valid");
            let ids: Vec<String> = p.teams.iter().map(|t| team_ids[t].to_string()).collect();
            if !ids.is_empty() {
                e.set("teams", &ids.join(",")).expect("valid");
            }
            users.insert(format!("token{i}"), relay.create(&e).expect("user").id);
        }
        let envelopes: Vec<crm_sync::Envelope> = relay
            .outbox(usize::MAX)
            .expect("outbox")
            .into_iter()
            .map(envelope)
            .collect();
        world.log.store(&envelopes, None).expect("directory");
        let mut acl = Acl {
            directory: Directory::default(),
            matrix: Matrix::default(),
            users,
            teams: team_ids,
            records: HashMap::new(),
            told: HashMap::new(),
        };
        acl.absorb(&world.log.entries);
        world.acl = Some(acl);
        world
    }

    fn acl(&self) -> &Acl {
        self.acl.as_ref().expect("a world with a directory")
    }

    /// Device `d`'s user.
    pub(crate) fn user(&self, d: usize) -> RecordId {
        self.acl().users[&self.devices[d].token]
    }

    pub(crate) fn team(&self, name: &str) -> RecordId {
        self.acl().teams[name]
    }

    /// Device `d`'s user as the relay's directory has them now.
    pub(crate) fn viewer(&self, d: usize) -> Viewer {
        self.acl().viewer(self.user(d)).expect("a user")
    }
}

/// The records a replica holds, by kind.
pub(crate) fn held(store: &mut Store) -> BTreeMap<Kind, BTreeSet<RecordId>> {
    let mut out: BTreeMap<Kind, BTreeSet<RecordId>> = BTreeMap::new();
    for id in store.all_heads().expect("heads").into_keys() {
        let kind = store.get(id).expect("record").kind;
        out.entry(kind).or_default().insert(id);
    }
    out
}

/// Every device is synced and holds exactly the records its user may see: those of the
/// admin's replica (device `admin`, which holds every record of the log) that
/// [`Viewer::sees`] lets through, by the scope the admin's replica gives them, each with
/// the admin's heads. Each replica's own idea of its user's access (`Store::viewer`, from
/// the identity it adopted and the directory records it holds) is the relay's.
pub(crate) fn assert_scoped(world: &mut World, admin: usize) {
    for (i, d) in world.devices.iter().enumerate() {
        assert!(d.synced, "device {i} reported synced");
        assert_eq!(
            d.store.outbox_len().expect("outbox"),
            0,
            "device {i} outbox"
        );
    }
    let in_log: BTreeSet<RecordId> = world.log.entries.iter().map(|e| e.doc).collect();
    let everything = held(&mut world.devices[admin].store);
    assert_eq!(
        everything
            .values()
            .flatten()
            .copied()
            .collect::<BTreeSet<_>>(),
        in_log,
        "the admin's replica holds every record of the log, and nothing else"
    );
    let heads = world.devices[admin].store.all_heads().expect("heads");
    let mut scopes = Vec::new();
    for (kind, ids) in &everything {
        for id in ids {
            let store = &mut world.devices[admin].store;
            let record = store.get(*id).expect("record");
            scopes.push((*kind, *id, store.scope_of_record(&record)));
        }
    }
    for d in 0..world.devices.len() {
        let viewer = world.viewer(d);
        let mut expected: BTreeMap<Kind, BTreeSet<RecordId>> = BTreeMap::new();
        for (kind, id, scope) in &scopes {
            if viewer.sees(*kind, scope) {
                expected.entry(*kind).or_default().insert(*id);
            }
        }
        let store = &mut world.devices[d].store;
        assert_eq!(
            held(store),
            expected,
            "device {d} ({} {}) holds what its user may see",
            viewer.role,
            viewer.name
        );
        let own = store.all_heads().expect("heads");
        for (id, h) in &own {
            assert_eq!(Some(h), heads.get(id), "device {d}: heads of {id}");
        }
        assert_eq!(
            store.viewer().expect("viewer").map(|v| v.fingerprint()),
            Some(viewer.fingerprint()),
            "device {d}'s replica knows its user's access as the relay does"
        );
    }
}
