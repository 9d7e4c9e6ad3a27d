//! `crm-relay workspace create|list`.

use clap::Subcommand;
use crm_relay::store::Database;

use super::output;

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Create a workspace; prints its id.
    Create {
        /// A unique name, e.g. the team's.
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List the workspaces.
    List {
        #[arg(long)]
        json: bool,
    },
}

pub(crate) fn run(data: &Database, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Create { name, json } => {
            let store = super::open(data, true)?;
            let workspace = store.create_workspace(&name)?;
            if json {
                output::json(&workspace)?;
            } else {
                println!("{}", workspace.id);
                eprintln!(
                    "created workspace {:?}; add its users with `crm-relay user add --workspace {:?} \
                     --name NAME --role ROLE`, then their devices with `crm-relay device add \
                     --workspace {:?} --user NAME`",
                    workspace.name, workspace.name, workspace.name
                );
            }
        }
        Command::List { json } => {
            let store = super::open(data, false)?;
            let workspaces = store.workspaces()?;
            if json {
                output::json(&workspaces)?;
            } else {
                output::table(
                    &["ID", "NAME", "CHANGES", "CREATED"],
                    workspaces
                        .iter()
                        .map(|w| {
                            vec![
                                w.id.to_string(),
                                w.name.clone(),
                                w.head.to_string(),
                                output::time(&w.created_at),
                            ]
                        })
                        .collect(),
                );
            }
        }
    }
    Ok(())
}
