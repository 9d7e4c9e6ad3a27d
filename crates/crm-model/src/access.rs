//! Roles, access levels and visibility scopes: who may read, create, edit and archive which
//! records (EspoCRM's model: for every role and kind, a level per action).
//!
//! A record's [`Scope`] is its owner, its assignee (tickets and activities) and its teams.
//! A [`Viewer`] is one user as the workspace's [`Directory`] and a role [`Matrix`] describe
//! them; [`Viewer::may`] decides an action on a record from its kind and scope alone, in
//! O(1), so the relay can filter every log entry without loading a document.
//!
//! Levels:
//! - **all**: every record of the kind;
//! - **team**: records the viewer may see at *own*, plus those whose owner or assignee is a
//!   member of one of the viewer's teams (the teams they belong to or manage), plus those
//!   whose `teams` names one of those teams;
//! - **own**: records whose owner or assignee is the viewer;
//! - **none**.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::id::RecordId;
use crate::kind::Kind;

/// A user's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    SalesManager,
    SalesRep,
    SupportAgent,
}

impl Role {
    pub const ALL: [Role; 4] = [
        Role::Admin,
        Role::SalesManager,
        Role::SalesRep,
        Role::SupportAgent,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::SalesManager => "sales_manager",
            Role::SalesRep => "sales_rep",
            Role::SupportAgent => "support_agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not a role, level or action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: expected {expected}")]
pub struct ParseAccessError {
    pub what: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl FromStr for Role {
    type Err = ParseAccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase().replace('-', "_");
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == wanted)
            .ok_or_else(|| ParseAccessError {
                what: "role",
                value: s.to_string(),
                expected: "admin, sales_manager, sales_rep or support_agent",
            })
    }
}

/// How far an action reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    None,
    Own,
    Team,
    All,
}

impl Level {
    pub const ALL: [Level; 4] = [Level::None, Level::Own, Level::Team, Level::All];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::None => "none",
            Level::Own => "own",
            Level::Team => "team",
            Level::All => "all",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Level {
    type Err = ParseAccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Level::ALL
            .into_iter()
            .find(|l| l.as_str() == wanted)
            .ok_or_else(|| ParseAccessError {
                what: "level",
                value: s.to_string(),
                expected: "all, team, own or none",
            })
    }
}

/// What a user does to a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Read,
    Create,
    Edit,
    Archive,
}

impl Action {
    pub const ALL: [Action; 4] = [Action::Read, Action::Create, Action::Edit, Action::Archive];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Read => "read",
            Action::Create => "create",
            Action::Edit => "edit",
            Action::Archive => "archive",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = ParseAccessError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let wanted = s.trim().to_ascii_lowercase();
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == wanted)
            .ok_or_else(|| ParseAccessError {
                what: "action",
                value: s.to_string(),
                expected: "read, create, edit or archive",
            })
    }
}

/// The levels of one role for one kind, per action.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Levels {
    pub read: Level,
    pub create: Level,
    pub edit: Level,
    pub archive: Level,
}

impl Levels {
    pub const fn new(read: Level, create: Level, edit: Level, archive: Level) -> Self {
        Self {
            read,
            create,
            edit,
            archive,
        }
    }

    pub fn get(&self, action: Action) -> Level {
        match action {
            Action::Read => self.read,
            Action::Create => self.create,
            Action::Edit => self.edit,
            Action::Archive => self.archive,
        }
    }

    pub fn set(&mut self, action: Action, level: Level) {
        match action {
            Action::Read => self.read = level,
            Action::Create => self.create = level,
            Action::Edit => self.edit = level,
            Action::Archive => self.archive = level,
        }
    }
}

impl fmt::Display for Levels {
    /// `read/create/edit/archive`, e.g. `team/team/team/own`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}/{}",
            self.read, self.create, self.edit, self.archive
        )
    }
}

/// Every role's levels for every kind. [`Matrix::default`] is the built-in matrix; a
/// workspace may override single cells ([`Matrix::overrides`] is what differs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matrix {
    cells: BTreeMap<(Role, Kind), Levels>,
}

const fn l(read: Level, create: Level, edit: Level, archive: Level) -> Levels {
    Levels::new(read, create, edit, archive)
}

/// The built-in levels (read/create/edit/archive) of a role for a kind.
pub fn default_levels(role: Role, kind: Kind) -> Levels {
    use Kind::*;
    use Level::{All as A, None as N, Own as O, Team as T};
    match role {
        Role::Admin => l(A, A, A, A),
        Role::SalesManager => match kind {
            User | Team | Article | Product => l(A, N, N, N),
            Account | AccountRelation | Contact | Lead | Opportunity | Activity | Quote
            | Contract | Order => l(T, T, T, T),
            Campaign | CampaignMember => l(A, T, T, T),
            Ticket => l(T, T, T, N),
            Survey | SurveyResponse => l(A, T, T, N),
        },
        Role::SalesRep => match kind {
            User | Team | Article | Product | Campaign | Survey => l(A, N, N, N),
            Account | AccountRelation | Contact | Lead | Opportunity | Activity | Quote
            | Contract | Order => l(T, T, T, O),
            CampaignMember => l(T, T, T, O),
            Ticket => l(T, T, O, N),
            SurveyResponse => l(T, T, N, N),
        },
        Role::SupportAgent => match kind {
            User | Team | Account | AccountRelation | Product | Survey => l(A, N, N, N),
            Contact => l(A, A, O, N),
            Lead | Opportunity | Quote | Contract | Order | Campaign | CampaignMember => {
                l(N, N, N, N)
            }
            Activity => l(T, A, O, O),
            Ticket | Article => l(A, A, A, A),
            SurveyResponse => l(A, A, N, N),
        },
    }
}

impl Default for Matrix {
    fn default() -> Self {
        let mut cells = BTreeMap::new();
        for role in Role::ALL {
            for kind in Kind::ALL {
                cells.insert((role, *kind), default_levels(role, *kind));
            }
        }
        Self { cells }
    }
}

/// One cell of a matrix that differs from the built-in one, as stored and exchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    pub role: Role,
    pub kind: String,
    pub action: Action,
    pub level: Level,
}

impl Matrix {
    pub fn levels(&self, role: Role, kind: Kind) -> Levels {
        self.cells
            .get(&(role, kind))
            .copied()
            .unwrap_or_else(|| default_levels(role, kind))
    }

    pub fn level(&self, role: Role, kind: Kind, action: Action) -> Level {
        self.levels(role, kind).get(action)
    }

    /// Changes one cell. The admin role always keeps every level at `all`, and everyone
    /// keeps reading users and teams (names are shown everywhere): those cells cannot change.
    pub fn set(
        &mut self,
        role: Role,
        kind: Kind,
        action: Action,
        level: Level,
    ) -> Result<(), MatrixError> {
        if role == Role::Admin && level != Level::All {
            return Err(MatrixError::Admin);
        }
        if matches!(kind, Kind::User | Kind::Team) && action == Action::Read && level != Level::All
        {
            return Err(MatrixError::Directory);
        }
        if matches!(kind, Kind::User | Kind::Team) && action != Action::Read && role != Role::Admin
        {
            return Err(MatrixError::DirectoryWrite);
        }
        let mut levels = self.levels(role, kind);
        levels.set(action, level);
        self.cells.insert((role, kind), levels);
        Ok(())
    }

    /// The cells that differ from the built-in matrix.
    pub fn overrides(&self) -> Vec<Override> {
        let mut out = Vec::new();
        for ((role, kind), levels) in &self.cells {
            let builtin = default_levels(*role, *kind);
            for action in Action::ALL {
                if levels.get(action) != builtin.get(action) {
                    out.push(Override {
                        role: *role,
                        kind: kind.as_str().to_string(),
                        action,
                        level: levels.get(action),
                    });
                }
            }
        }
        out
    }

    /// The built-in matrix with `overrides` applied (unknown kinds are skipped: a newer
    /// relay may know kinds this build does not).
    pub fn with_overrides(overrides: &[Override]) -> Self {
        let mut matrix = Self::default();
        for o in overrides {
            if let Ok(kind) = o.kind.parse::<Kind>() {
                // Overrides were checked when they were set.
                let _ = matrix.set(o.role, kind, o.action, o.level);
            }
        }
        matrix
    }

    /// The matrix as a Markdown table: one row per kind, one column per role, each cell
    /// `read/create/edit/archive`.
    pub fn markdown(&self) -> String {
        let mut out = String::from("| kind |");
        for role in Role::ALL {
            out.push_str(&format!(" {role} |"));
        }
        out.push_str("\n|---|");
        for _ in Role::ALL {
            out.push_str("---|");
        }
        out.push('\n');
        for kind in Kind::ALL {
            out.push_str(&format!("| {} |", kind.as_str()));
            for role in Role::ALL {
                out.push_str(&format!(" {} |", self.levels(role, *kind)));
            }
            out.push('\n');
        }
        out
    }
}

/// A matrix cell that may not change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatrixError {
    #[error("the admin role always has every level at `all`")]
    Admin,
    #[error("every role reads all users and teams (their names are shown on every record)")]
    Directory,
    #[error("only admins manage users and teams")]
    DirectoryWrite,
}

/// Who a record belongs to, for access decisions: its owner, its assignee (tickets and
/// activities) and its teams.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Scope {
    pub owner: Option<RecordId>,
    pub assignee: Option<RecordId>,
    pub teams: Vec<RecordId>,
}

/// A user of the workspace, as the directory holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    pub id: RecordId,
    pub name: String,
    #[serde(default)]
    pub email: Option<String>,
    pub role: Role,
    /// The teams the user's record names.
    #[serde(default)]
    pub teams: Vec<RecordId>,
    pub active: bool,
}

/// A team of the workspace, as the directory holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryTeam {
    pub id: RecordId,
    pub name: String,
    #[serde(default)]
    pub manager: Option<RecordId>,
    /// The members the team's record names.
    #[serde(default)]
    pub members: Vec<RecordId>,
}

/// A workspace's users and teams.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Directory {
    pub users: HashMap<RecordId, DirectoryUser>,
    pub teams: HashMap<RecordId, DirectoryTeam>,
}

impl Directory {
    /// The teams a user is a member of: those their record names, and those whose record
    /// names them as a member.
    pub fn member_of(&self, user: RecordId) -> HashSet<RecordId> {
        let mut teams: HashSet<RecordId> = self
            .users
            .get(&user)
            .map(|u| u.teams.iter().copied().collect())
            .unwrap_or_default();
        for team in self.teams.values() {
            if team.members.contains(&user) {
                teams.insert(team.id);
            }
        }
        teams
    }

    /// The user named `name` (names are compared exactly, then ignoring case).
    pub fn user_named(&self, name: &str) -> Option<&DirectoryUser> {
        let name = name.trim();
        let mut users: Vec<&DirectoryUser> = self.users.values().collect();
        users.sort_by_key(|u| u.id);
        users
            .iter()
            .find(|u| u.name == name)
            .or_else(|| users.iter().find(|u| u.name.eq_ignore_ascii_case(name)))
            .copied()
    }

    /// The team named `name`.
    pub fn team_named(&self, name: &str) -> Option<&DirectoryTeam> {
        let name = name.trim();
        let mut teams: Vec<&DirectoryTeam> = self.teams.values().collect();
        teams.sort_by_key(|t| t.id);
        teams
            .iter()
            .find(|t| t.name == name)
            .or_else(|| teams.iter().find(|t| t.name.eq_ignore_ascii_case(name)))
            .copied()
    }

    /// The user as a viewer under `matrix`; `None` for an unknown user.
    pub fn viewer(&self, user: RecordId, matrix: &Matrix) -> Option<Viewer> {
        let me = self.users.get(&user)?;
        let mut teams = self.member_of(user);
        for team in self.teams.values() {
            if team.manager == Some(user) {
                teams.insert(team.id);
            }
        }
        let mut teammates: HashSet<RecordId> = HashSet::new();
        for other in self.users.keys() {
            if self.member_of(*other).iter().any(|t| teams.contains(t)) {
                teammates.insert(*other);
            }
        }
        for team in teams.iter().filter_map(|t| self.teams.get(t)) {
            teammates.extend(team.members.iter().copied());
            teammates.extend(team.manager);
        }
        teammates.insert(user);
        let levels = Kind::ALL
            .iter()
            .map(|k| (*k, matrix.levels(me.role, *k)))
            .collect();
        Some(Viewer {
            user,
            name: me.name.clone(),
            role: me.role,
            active: me.active,
            teams,
            teammates,
            levels,
        })
    }
}

/// One user as the access checks see them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Viewer {
    pub user: RecordId,
    pub name: String,
    pub role: Role,
    pub active: bool,
    /// The teams the user belongs to or manages.
    pub teams: HashSet<RecordId>,
    /// The users of those teams, the viewer included.
    pub teammates: HashSet<RecordId>,
    levels: HashMap<Kind, Levels>,
}

impl Viewer {
    pub fn levels(&self, kind: Kind) -> Levels {
        self.levels.get(&kind).copied().unwrap_or(Levels::new(
            Level::None,
            Level::None,
            Level::None,
            Level::None,
        ))
    }

    /// Whether the viewer may do `action` on a record of `kind` with `scope`.
    pub fn may(&self, action: Action, kind: Kind, scope: &Scope) -> bool {
        if !self.active {
            return false;
        }
        match self.levels(kind).get(action) {
            Level::All => true,
            Level::None => false,
            Level::Own => self.owns(scope),
            Level::Team => {
                self.owns(scope)
                    || scope
                        .owner
                        .iter()
                        .chain(scope.assignee.iter())
                        .any(|u| self.teammates.contains(u))
                    || scope.teams.iter().any(|t| self.teams.contains(t))
            }
        }
    }

    /// Whether the viewer may read a record.
    pub fn sees(&self, kind: Kind, scope: &Scope) -> bool {
        self.may(Action::Read, kind, scope)
    }

    fn owns(&self, scope: &Scope) -> bool {
        scope.owner == Some(self.user) || scope.assignee == Some(self.user)
    }

    /// Whether the viewer sees every record of every kind whatever its scope (an admin).
    pub fn sees_everything(&self) -> bool {
        self.active && Kind::ALL.iter().all(|k| self.levels(*k).read == Level::All)
    }

    /// A canonical description of everything [`Viewer::may`] depends on: two viewers with
    /// the same fingerprint see exactly the same records. Devices compare a digest of it to
    /// notice that their user's access changed.
    pub fn fingerprint(&self) -> String {
        let mut teams: Vec<String> = self.teams.iter().map(|t| t.to_string()).collect();
        teams.sort();
        let mut mates: Vec<String> = self.teammates.iter().map(|t| t.to_string()).collect();
        mates.sort();
        let mut out = format!(
            "user={};role={};active={};teams={};mates={};levels=",
            self.user,
            self.role,
            self.active,
            teams.join(","),
            mates.join(",")
        );
        for kind in Kind::ALL {
            out.push_str(&format!("{}:{};", kind.as_str(), self.levels(*kind)));
        }
        out
    }
}

/// The kinds only admins write: the directory (users, their roles, teams and active flag;
/// teams, their members, managers and the workspace's SLA policy, which is a team's).
pub fn admin_only(kind: Kind) -> bool {
    matches!(kind, Kind::User | Kind::Team)
}

/// Whether `viewer` may give a record owned by `owner` (or, for a record with no owner or a
/// new one, the owner it gets) to someone else: admins, and managers of a team `owner`
/// belongs to.
pub fn may_reassign(viewer: &Viewer, directory: &Directory, owner: Option<RecordId>) -> bool {
    if viewer.role == Role::Admin {
        return viewer.active;
    }
    owner.is_some_and(|owner| {
        let teams = directory.member_of(owner);
        directory
            .teams
            .values()
            .any(|t| t.manager == Some(viewer.user) && teams.contains(&t.id))
    })
}

/// Whether `viewer` may make a change that does `touches` to a record of `kind`: created by
/// it (`created`), or with scope `before`; `after` is the scope the change leaves. `Err`
/// says why not, in words for the user who made it. Rules, in order:
///
/// 1. users and teams: admins only ([`admin_only`]);
/// 2. a creation: the role's *create* level for the kind, on the scope it creates;
/// 3. an edit: the *edit* level on the record as it was; writing `archived`, the *archive*
///    level;
/// 4. the owner: only admins and managers of a team the owner belongs to (the owner before,
///    or the new one on a record that had none) set it to someone else; creating a record
///    owned by oneself is no reassignment.
pub fn authorize_write(
    viewer: &Viewer,
    directory: &Directory,
    kind: Kind,
    created: bool,
    before: &Scope,
    after: &Scope,
    touches: &crate::shape::Touches,
) -> Result<(), String> {
    let role = viewer.role;
    if !viewer.active {
        return Err(format!("{} is not an active user", viewer.name));
    }
    if role == Role::Admin {
        return Ok(());
    }
    if admin_only(kind) {
        return Err(format!(
            "only admins change {}; {} is a {role}",
            kind.plural(),
            viewer.name
        ));
    }
    let refuse = |action: Action, scope: &Scope| {
        let level = viewer.levels(kind).get(action);
        let whose = match level {
            Level::None => String::new(),
            Level::Own => " that are not their own".to_string(),
            Level::Team | Level::All => " outside their teams".to_string(),
        };
        let _ = scope;
        Err(format!(
            "a {role} may not {} {}{whose}",
            action.as_str(),
            kind.plural()
        ))
    };
    if created {
        if !viewer.may(Action::Create, kind, after) {
            return refuse(Action::Create, after);
        }
    } else {
        if touches.edits() && !viewer.may(Action::Edit, kind, before) {
            return refuse(Action::Edit, before);
        }
        if touches.archives() && !viewer.may(Action::Archive, kind, before) {
            return refuse(Action::Archive, before);
        }
    }
    let reassigned = if created {
        after.owner.is_some_and(|o| o != viewer.user)
    } else {
        touches.fields.contains("owner") && after.owner != before.owner
    };
    if reassigned {
        let owner = if created {
            after.owner
        } else {
            before.owner.or(after.owner)
        };
        if !may_reassign(viewer, directory, owner) {
            return Err(format!(
                "only admins and managers of the owner's team reassign {}; {} is a {role}{}",
                kind.plural(),
                viewer.name,
                if role == Role::SalesManager {
                    " who does not manage the owner's team"
                } else {
                    ""
                }
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, role: Role, teams: &[RecordId]) -> DirectoryUser {
        DirectoryUser {
            id: RecordId::new(),
            name: name.into(),
            email: None,
            role,
            teams: teams.to_vec(),
            active: true,
        }
    }

    fn scope(owner: RecordId) -> Scope {
        Scope {
            owner: Some(owner),
            ..Scope::default()
        }
    }

    #[test]
    fn reps_see_their_team_and_managers_the_teams_they_manage() {
        let south = RecordId::new();
        let north = RecordId::new();
        let mut dir = Directory::default();
        let manager = user("Mia", Role::SalesManager, &[]);
        let rep = user("Rui", Role::SalesRep, &[south]);
        let mate = user("Sam", Role::SalesRep, &[south]);
        let other = user("Ola", Role::SalesRep, &[north]);
        let agent = user("Ann", Role::SupportAgent, &[]);
        for u in [&manager, &rep, &mate, &other, &agent] {
            dir.users.insert(u.id, u.clone());
        }
        dir.teams.insert(
            south,
            DirectoryTeam {
                id: south,
                name: "South".into(),
                manager: Some(manager.id),
                members: vec![],
            },
        );
        let m = Matrix::default();
        let rep_v = dir.viewer(rep.id, &m).expect("rep");
        let boss = dir.viewer(manager.id, &m).expect("manager");
        let agent_v = dir.viewer(agent.id, &m).expect("agent");
        assert!(rep_v.sees(Kind::Account, &scope(rep.id)));
        assert!(rep_v.sees(Kind::Account, &scope(mate.id)));
        assert!(!rep_v.sees(Kind::Account, &scope(other.id)));
        assert!(rep_v.sees(Kind::Product, &Scope::default()));
        assert!(boss.sees(Kind::Opportunity, &scope(mate.id)));
        assert!(!boss.sees(Kind::Opportunity, &scope(other.id)));
        assert!(agent_v.sees(Kind::Account, &scope(other.id)));
        assert!(!agent_v.sees(Kind::Opportunity, &scope(agent.id)));
        // A ticket assigned to the rep is theirs; one of another team's account is not.
        let ticket = Scope {
            owner: Some(agent.id),
            assignee: Some(rep.id),
            teams: vec![],
        };
        assert!(rep_v.sees(Kind::Ticket, &ticket));
        let foreign = Scope {
            owner: Some(agent.id),
            assignee: None,
            teams: vec![north],
        };
        assert!(!rep_v.sees(Kind::Ticket, &foreign));
        // A record shared with the team by its teams field.
        let shared = Scope {
            owner: Some(other.id),
            assignee: None,
            teams: vec![south],
        };
        assert!(rep_v.sees(Kind::Account, &shared));
        // An edit of another's record: team level; archive: own only.
        assert!(rep_v.may(Action::Edit, Kind::Account, &scope(mate.id)));
        assert!(!rep_v.may(Action::Archive, Kind::Account, &scope(mate.id)));
    }

    #[test]
    fn an_inactive_user_sees_nothing_and_fingerprints_follow_access() {
        let mut dir = Directory::default();
        let mut rep = user("Rui", Role::SalesRep, &[]);
        dir.users.insert(rep.id, rep.clone());
        let m = Matrix::default();
        let before = dir.viewer(rep.id, &m).expect("rep").fingerprint();
        rep.active = false;
        dir.users.insert(rep.id, rep.clone());
        let v = dir.viewer(rep.id, &m).expect("rep");
        assert!(!v.sees(Kind::Product, &Scope::default()));
        assert_ne!(before, v.fingerprint());
    }

    #[test]
    fn overrides_round_trip_and_protected_cells_stay() {
        let mut m = Matrix::default();
        m.set(Role::SalesRep, Kind::Ticket, Action::Read, Level::All)
            .expect("set");
        assert_eq!(
            m.level(Role::SalesRep, Kind::Ticket, Action::Read),
            Level::All
        );
        let o = m.overrides();
        assert_eq!(o.len(), 1);
        assert_eq!(Matrix::with_overrides(&o), m);
        assert_eq!(
            m.set(Role::Admin, Kind::Account, Action::Read, Level::Own),
            Err(MatrixError::Admin)
        );
        assert_eq!(
            m.set(Role::SalesRep, Kind::User, Action::Read, Level::None),
            Err(MatrixError::Directory)
        );
        assert_eq!(
            m.set(Role::SalesManager, Kind::User, Action::Edit, Level::All),
            Err(MatrixError::DirectoryWrite)
        );
        assert!(Matrix::default().markdown().contains("| ticket |"));
        assert_eq!("Sales-Rep".parse::<Role>(), Ok(Role::SalesRep));
        assert!("boss".parse::<Role>().is_err());
    }
}

#[cfg(test)]
mod readme {
    /// The README publishes the built-in matrix; it must be this one.
    #[test]
    fn the_readme_publishes_the_built_in_matrix() {
        let readme = include_str!("../../../README.md");
        let table = super::Matrix::default().markdown();
        assert!(
            readme.contains(&table),
            "README.md's matrix differs from the code's; it should read:\n{table}"
        );
    }
}
