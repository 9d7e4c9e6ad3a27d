//! `crm-relay user|team add|list|edit` and `crm-relay role show|set`: the workspace's
//! directory (its `user` and `team` records) and role matrix, managed by an admin.

use clap::Subcommand;
use crm_model::access::{DirectoryTeam, DirectoryUser};
use crm_model::{Action, Kind, Level, Role};
use crm_relay::service::{TeamEdit, UserEdit};
use crm_relay::store::Database;
use serde::Serialize;

use super::output;

#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user: a `user` record of the workspace, which the relay writes itself.
    Add {
        #[arg(long, value_name = "W")]
        workspace: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        email: Option<String>,
        /// admin, sales_manager, sales_rep or support_agent.
        #[arg(long)]
        role: Role,
        /// A team (name or id) the user belongs to; repeat for several.
        #[arg(long = "team", value_name = "TEAM")]
        teams: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the workspace's users.
    List {
        #[arg(long, value_name = "W")]
        workspace: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a user (by name or id): role, teams, active, name, email. Their devices see
    /// the new scope at their next sync, or at once when connected.
    Edit {
        #[arg(long, value_name = "W")]
        workspace: String,
        user: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        role: Option<Role>,
        /// The user's teams become exactly these (repeat); `--team ''` alone clears them.
        #[arg(long = "team", value_name = "TEAM")]
        teams: Option<Vec<String>>,
        #[arg(long)]
        active: Option<bool>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TeamCommand {
    /// Add a team.
    Add {
        #[arg(long, value_name = "W")]
        workspace: String,
        #[arg(long)]
        name: String,
        /// The user (name or id) who manages it: they see its members' records.
        #[arg(long)]
        manager: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// List the workspace's teams with their members.
    List {
        #[arg(long, value_name = "W")]
        workspace: String,
        #[arg(long)]
        json: bool,
    },
    /// Change a team (by name or id).
    Edit {
        #[arg(long, value_name = "W")]
        workspace: String,
        team: String,
        #[arg(long)]
        name: Option<String>,
        /// The manager (name or id); '' for none.
        #[arg(long)]
        manager: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RoleCommand {
    /// Show the workspace's role matrix: for every kind and role, read/create/edit/archive.
    Show {
        #[arg(long, value_name = "W")]
        workspace: String,
        #[arg(long)]
        json: bool,
    },
    /// Set one level: `role set --workspace W sales_rep ticket read all`.
    Set {
        #[arg(long, value_name = "W")]
        workspace: String,
        role: Role,
        kind: Kind,
        action: Action,
        level: Level,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct TeamOut<'a> {
    #[serde(flatten)]
    team: &'a DirectoryTeam,
    users: Vec<String>,
}

fn print_users(users: &[DirectoryUser], json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(&users);
    }
    output::table(
        &["ID", "NAME", "ROLE", "TEAMS", "ACTIVE", "EMAIL"],
        users
            .iter()
            .map(|u| {
                vec![
                    u.id.to_string(),
                    u.name.clone(),
                    u.role.to_string(),
                    u.teams.len().to_string(),
                    if u.active { "yes" } else { "no" }.into(),
                    u.email.clone().unwrap_or_default(),
                ]
            })
            .collect(),
    );
    Ok(())
}

pub(crate) fn users(data: &Database, command: UserCommand) -> anyhow::Result<()> {
    let store = super::open(data, false)?;
    match command {
        UserCommand::Add {
            workspace,
            name,
            email,
            role,
            teams,
            json,
        } => {
            let ws = store.find_workspace(&workspace)?;
            let user = store.add_user(ws.id, &name, email.as_deref(), role, &teams)?;
            if json {
                output::json(&user)?;
            } else {
                println!("user {} ({}, {})", user.id, user.name, user.role);
                eprintln!(
                    "Give them a device: crm-relay device add --workspace {:?} --user {:?}",
                    ws.name, user.name
                );
            }
        }
        UserCommand::List { workspace, json } => {
            let ws = store.find_workspace(&workspace)?;
            print_users(&store.users(ws.id)?, json)?;
        }
        UserCommand::Edit {
            workspace,
            user,
            name,
            email,
            role,
            teams,
            active,
            json,
        } => {
            let ws = store.find_workspace(&workspace)?;
            let teams = teams.map(|t| t.into_iter().filter(|t| !t.trim().is_empty()).collect());
            let edit = UserEdit {
                name,
                email,
                role,
                teams,
                active,
            };
            let user = store.edit_user(ws.id, &user, &edit)?;
            print_users(&[user], json)?;
        }
    }
    Ok(())
}

pub(crate) fn teams(data: &Database, command: TeamCommand) -> anyhow::Result<()> {
    let store = super::open(data, false)?;
    match command {
        TeamCommand::Add {
            workspace,
            name,
            manager,
            json,
        } => {
            let ws = store.find_workspace(&workspace)?;
            let team = store.add_team(ws.id, &name, manager.as_deref())?;
            if json {
                output::json(&team)?;
            } else {
                println!("team {} ({})", team.id, team.name);
            }
        }
        TeamCommand::List { workspace, json } => {
            let ws = store.find_workspace(&workspace)?;
            let teams = store.teams(ws.id)?;
            let users = store.users(ws.id)?;
            let name = |id: &crm_model::RecordId| {
                users
                    .iter()
                    .find(|u| u.id == *id)
                    .map_or_else(|| id.to_string(), |u| u.name.clone())
            };
            if json {
                let out: Vec<TeamOut<'_>> = teams
                    .iter()
                    .map(|(t, members)| TeamOut {
                        team: t,
                        users: members.iter().map(|m| m.to_string()).collect(),
                    })
                    .collect();
                output::json(&out)?;
            } else {
                output::table(
                    &["ID", "NAME", "MANAGER", "MEMBERS"],
                    teams
                        .iter()
                        .map(|(t, members)| {
                            vec![
                                t.id.to_string(),
                                t.name.clone(),
                                t.manager.as_ref().map(&name).unwrap_or_default(),
                                members.iter().map(&name).collect::<Vec<_>>().join(", "),
                            ]
                        })
                        .collect(),
                );
            }
        }
        TeamCommand::Edit {
            workspace,
            team,
            name,
            manager,
            json,
        } => {
            let ws = store.find_workspace(&workspace)?;
            let team = store.edit_team(ws.id, &team, &TeamEdit { name, manager })?;
            if json {
                output::json(&team)?;
            } else {
                println!("team {} ({})", team.id, team.name);
            }
        }
    }
    Ok(())
}

pub(crate) fn roles(data: &Database, command: RoleCommand) -> anyhow::Result<()> {
    let store = super::open(data, false)?;
    let (ws, matrix, json) = match command {
        RoleCommand::Show { workspace, json } => {
            let ws = store.find_workspace(&workspace)?;
            let matrix = store.access_state(ws.id)?.matrix.clone();
            (ws, matrix, json)
        }
        RoleCommand::Set {
            workspace,
            role,
            kind,
            action,
            level,
            json,
        } => {
            let ws = store.find_workspace(&workspace)?;
            let matrix = store.set_level(ws.id, role, kind, action, level)?;
            (ws, matrix, json)
        }
    };
    if json {
        let mut out = serde_json::Map::new();
        for kind in Kind::ALL {
            let mut roles = serde_json::Map::new();
            for role in Role::ALL {
                roles.insert(
                    role.to_string(),
                    serde_json::to_value(matrix.levels(role, *kind))?,
                );
            }
            out.insert(kind.as_str().into(), roles.into());
        }
        output::json(&out)?;
    } else {
        println!("role matrix of {} (read/create/edit/archive)", ws.name);
        output::table(
            &[
                "KIND",
                "ADMIN",
                "SALES_MANAGER",
                "SALES_REP",
                "SUPPORT_AGENT",
            ],
            Kind::ALL
                .iter()
                .map(|k| {
                    std::iter::once(k.as_str().to_string())
                        .chain(Role::ALL.iter().map(|r| matrix.levels(*r, *k).to_string()))
                        .collect()
                })
                .collect(),
        );
    }
    Ok(())
}
