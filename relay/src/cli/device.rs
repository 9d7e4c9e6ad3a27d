//! `crm-relay device add|list|revoke`.

use std::collections::HashMap;

use clap::Subcommand;
use crm_relay::store::Database;
use crm_relay::{DeviceId, Role};
use serde::Serialize;

use super::output;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Add a device; prints its id and its token, once (only a hash of it is kept).
    Add {
        /// The workspace's name or id.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The user who holds the device.
        #[arg(long, value_name = "U")]
        user: String,
        /// admin, sales_manager, sales_rep or support_agent.
        #[arg(long, value_name = "R", default_value = "sales_rep")]
        role: Role,
        #[arg(long)]
        json: bool,
    },
    /// List devices, of one workspace or of all.
    List {
        /// The workspace's name or id.
        #[arg(long, value_name = "W")]
        workspace: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device's token: the device can no longer connect or push.
    Revoke {
        device_id: DeviceId,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Serialize)]
struct Added<'a> {
    #[serde(flatten)]
    device: &'a crm_relay::store::Device,
    token: &'a str,
}

pub(crate) fn run(data: &Database, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Add {
            workspace,
            user,
            role,
            json,
        } => {
            let store = super::open(data, false)?;
            let workspace = store.find_workspace(&workspace)?;
            let added = store.add_device(workspace.id, &user, role)?;
            if json {
                output::json(&Added {
                    device: &added.device,
                    token: added.token.expose(),
                })?;
            } else {
                println!("device {}", added.device.id);
                println!("token  {}", added.token.expose());
                eprintln!(
                    "This token is shown only once. On the device: crm join URL --token TOKEN"
                );
            }
        }
        Command::List { workspace, json } => {
            let store = super::open(data, false)?;
            let filter = workspace
                .map(|w| store.find_workspace(&w))
                .transpose()?
                .map(|w| w.id);
            let devices = store.devices(filter)?;
            if json {
                output::json(&devices)?;
            } else {
                let names: HashMap<_, _> = store
                    .workspaces()?
                    .into_iter()
                    .map(|w| (w.id, w.name))
                    .collect();
                output::table(
                    &["ID", "WORKSPACE", "USER", "ROLE", "CREATED", "REVOKED"],
                    devices
                        .iter()
                        .map(|d| {
                            vec![
                                d.id.to_string(),
                                names
                                    .get(&d.workspace)
                                    .cloned()
                                    .unwrap_or_else(|| d.workspace.to_string()),
                                d.user.clone(),
                                d.role.to_string(),
                                output::time(&d.created_at),
                                d.revoked_at.as_ref().map(output::time).unwrap_or_default(),
                            ]
                        })
                        .collect(),
                );
            }
        }
        Command::Revoke { device_id, json } => {
            let store = super::open(data, false)?;
            let device = store.revoke_device(device_id)?;
            if json {
                output::json(&device)?;
            } else {
                println!("revoked device {} (user {})", device.id, device.user);
            }
        }
    }
    Ok(())
}
