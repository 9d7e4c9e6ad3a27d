//! `crm-relay device add|list|revoke`.

use std::collections::HashMap;

use clap::Subcommand;
use crm_relay::DeviceId;
use crm_relay::store::Database;
use serde::Serialize;

use super::output;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Add a device; prints its id and its token, once (only a hash of it is kept).
    Add {
        /// The workspace's name or id.
        #[arg(long, value_name = "W")]
        workspace: String,
        /// The user who holds the device (name or id): add them first with `crm-relay user
        /// add`. The device acts as that user, with that user's role and teams.
        #[arg(long, value_name = "U")]
        user: String,
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
        /// Also wipe it (a lost or stolen laptop): the next time it reaches the relay it
        /// deletes every record of the workspace it holds, after telling its user how many
        /// unsent changes it had.
        #[arg(long)]
        wipe: bool,
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
            json,
        } => {
            let store = super::open(data, false)?;
            let workspace = store.find_workspace(&workspace)?;
            let added = store.add_device(workspace.id, &user)?;
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
            let devices: Vec<_> = store
                .devices(filter)?
                .into_iter()
                .filter(|d| !crm_relay::service::is_relay_device(d))
                .collect();
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
        Command::Revoke {
            device_id,
            wipe,
            json,
        } => {
            let store = super::open(data, false)?;
            let device = if wipe {
                store.wipe_device(device_id)?
            } else {
                store.revoke_device(device_id)?
            };
            if json {
                output::json(&device)?;
            } else if wipe {
                println!(
                    "revoked and wiped device {} (user {}): it deletes the workspace's records \
                     the next time it reaches the relay",
                    device.id, device.user
                );
            } else {
                println!("revoked device {} (user {})", device.id, device.user);
            }
        }
    }
    Ok(())
}
