//! `crm-relay stats`.

use crm_relay::store::Database;

use super::output;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// List each device: its user, role, when it last connected and whether it is revoked.
    #[arg(long)]
    devices: bool,
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(database: &Database, args: Args) -> anyhow::Result<()> {
    let relay = super::open(database, false)?;
    let stats = relay.stats(args.devices)?;
    if args.json {
        return output::json(&stats);
    }
    output::table(
        &["WORKSPACE", "ID", "RECORDS", "CHANGES", "DEVICES", "ACTIVE"],
        stats
            .workspaces
            .iter()
            .map(|w| {
                vec![
                    w.name.clone(),
                    w.id.to_string(),
                    w.records.to_string(),
                    w.changes.to_string(),
                    w.devices.total.to_string(),
                    w.devices.active.to_string(),
                ]
            })
            .collect(),
    );
    if args.devices {
        output::table(
            &[
                "WORKSPACE",
                "DEVICE",
                "USER",
                "ROLE",
                "LAST SEEN",
                "REVOKED",
            ],
            stats
                .workspaces
                .iter()
                .flat_map(|w| {
                    w.devices.list.iter().flatten().map(|d| {
                        vec![
                            w.name.clone(),
                            d.id.to_string(),
                            d.user.clone(),
                            d.role.to_string(),
                            d.last_seen_at
                                .as_ref()
                                .map_or_else(|| "never".into(), output::time),
                            d.revoked_at.as_ref().map(output::time).unwrap_or_default(),
                        ]
                    })
                })
                .collect(),
        );
    }
    println!(
        "database: {} {} ({})",
        stats.backend,
        stats.location,
        output::bytes(stats.database_bytes)
    );
    Ok(())
}
