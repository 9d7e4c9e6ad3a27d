//! The command tree. Record commands are generated from the record schemas, so every kind
//! gets the same verbs and every field its own flag and help text.

use clap::{Arg, ArgAction, Command};
use crm_model::{FieldDef, FieldType, Kind};

/// Flags of the field syntax shared by `add` and `edit`; a schema field whose flag would
/// clash with one of these is only reachable through `--set`.
const RESERVED_FLAGS: &[&str] = &[
    "set",
    "unset",
    "tag",
    "untag",
    "notes",
    "append-notes",
    "json",
    "data-dir",
    "help",
    "id",
    "where",
    "archived",
    "limit",
    "offset",
    "sort",
    "desc",
    "kind",
    "version",
];

pub(crate) fn command() -> Command {
    Command::new("crm")
        .about("Local-first CRM: customer records on every device, merged without conflicts or lost work")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .after_help(
            "Exit codes: 0 success, 1 runtime error, 2 usage or validation error.\n\
             The replica is DIR from --data-dir, else $CRM_HOME, else the platform data directory.",
        )
        .arg(
            Arg::new("data-dir")
                .long("data-dir")
                .value_name("DIR")
                .global(true)
                .help("The replica's data directory [default: $CRM_HOME, else the platform data dir]"),
        )
        .arg(
            Arg::new("json")
                .long("json")
                .global(true)
                .action(ArgAction::SetTrue)
                .help("Print JSON instead of tables"),
        )
        .subcommand(
            Command::new("init")
                .about("Create a replica for a user on this device")
                .arg(Arg::new("user").long("user").value_name("NAME").required(true))
                .arg(Arg::new("device").long("device").value_name("NAME").required(true)),
        )
        .subcommands(Kind::ALL.iter().map(|k| kind_command(*k)))
        .subcommands(crate::commands::flows::commands())
        .subcommand(
            Command::new("show")
                .about("Show any record by id")
                .arg(id_arg()),
        )
        .subcommand(
            Command::new("search")
                .about("Full-text search across kinds (names, emails, phones, notes, tags)")
                .arg(Arg::new("text").required(true).num_args(1..).value_name("TEXT"))
                .arg(Arg::new("kind").long("kind").value_name("KIND").help("Only this kind"))
                .arg(archived_arg())
                .arg(limit_arg()),
        )
        .subcommand(
            Command::new("history")
                .about("A record's timeline: every change with time, user, device and fields (old → new)")
                .arg(id_arg()),
        )
        .subcommand(
            Command::new("conflicts")
                .about("Fields holding concurrent values, for one record or all")
                .arg(Arg::new("id").value_name("ID")),
        )
        .subcommand(
            Command::new("resolve")
                .about("Settle a conflict by choosing (or typing) the value")
                .arg(id_arg())
                .arg(Arg::new("field").required(true).value_name("FIELD"))
                .arg(Arg::new("value").required(true).value_name("VALUE")),
        )
        .subcommand(
            Command::new("merge-from")
                .about("Merge another replica's changes into this one (sneakernet sync)")
                .arg(Arg::new("other").required(true).value_name("OTHER_DATA_DIR"))
                .arg(
                    Arg::new("both-ways")
                        .long("both-ways")
                        .action(ArgAction::SetTrue)
                        .help("Also merge this replica's changes into the other"),
                ),
        )
        .subcommand(
            Command::new("join")
                .about("Remember the relay to sync with and this device's token")
                .arg(Arg::new("url").required(true).value_name("URL").help("The relay, e.g. https://crm.example.com or 127.0.0.1:7070; several relay processes of one database separated by commas (the first that answers is used)"))
                .arg(
                    Arg::new("token")
                        .long("token")
                        .required(true)
                        .value_name("TOKEN")
                        .help("The device token printed by `crm-relay device add`"),
                ),
        )
        .subcommand(
            Command::new("sync")
                .about("Push local changes, pull everyone else's; exits 0 once everything local is acknowledged")
                .arg(
                    Arg::new("watch")
                        .long("watch")
                        .action(ArgAction::SetTrue)
                        .help("Stay connected: apply live changes, push local ones, reconnect after failures"),
                ),
        )
        .subcommand(
            Command::new("report")
                .about("Sales, service, marketing and activity reports; without NAME, the list of reports")
                .arg(Arg::new("name").value_name("NAME"))
                .arg(Arg::new("from").long("from").value_name("DATE").help("Only records dated on or after DATE (YYYY-MM-DD)"))
                .arg(Arg::new("to").long("to").value_name("DATE").help("Only records dated on or before DATE (YYYY-MM-DD)")),
        )
        .subcommand(Command::new("status").about("The relay, the last sync, the pending outbox and the cursor"))
        .subcommand(crate::commands::rejected::command())
        .subcommand(Command::new("whoami").about("Who this replica acts as: the user, their role and teams as the relay says, the device and the relay"))
        .subcommand(Command::new("reindex").about("Rebuild every projection and the search index from the documents"))
        .subcommand(Command::new("check").about("Verify the replica (file, every change's hash, every document and its projections) without changing it; exit 1 when something is wrong"))
        .subcommand(crate::commands::backup::backup_command())
        .subcommand(crate::commands::backup::restore_command())
        .subcommand(
            Command::new("schema")
                .about("List the record kinds, or the fields of one kind with their types and merge rules")
                .arg(Arg::new("kind").value_name("KIND")),
        )
        .subcommand(
            Command::new("seed")
                .about("Add a realistic sample company to this replica (for trying things out)")
                .arg(
                    Arg::new("accounts")
                        .long("accounts")
                        .value_name("N")
                        .value_parser(clap::value_parser!(usize))
                        .default_value("300")
                        .help("How many accounts (contacts, deals, activities and tickets scale with it)"),
                ),
        )
        .subcommand(
            Command::new("demo")
                .about(
                    "Start a relay, create two devices (a laptop seeded with a sample company, a phone), \
                     sync them through the relay and print what to try next",
                )
                .arg(
                    Arg::new("serve")
                        .long("serve")
                        .action(ArgAction::SetTrue)
                        .help("Keep the demo relay running until Ctrl-C"),
                )
                .arg(
                    Arg::new("no-web")
                        .long("no-web")
                        .action(ArgAction::SetTrue)
                        .help("Don't end with the web UI served on the laptop (it is skipped anyway when stdout is not a terminal or with --json)"),
                )
                .arg(
                    Arg::new("accounts")
                        .long("accounts")
                        .value_name("N")
                        .value_parser(clap::value_parser!(usize))
                        .default_value("500")
                        .help("How many accounts to seed (contacts, deals, activities and tickets scale with it)"),
                ),
        )
        .subcommand(crate::commands::import::command())
        .subcommand(crate::commands::export::command())
        .subcommand(crate::commands::dedup::duplicates_command())
        .subcommand(crate::commands::dedup::merge_command())
        .subcommand(
            Command::new("serve")
                .about("Serve the web UI over this replica (syncing in the background when it has joined a relay)")
                .arg(
                    Arg::new("listen")
                        .long("listen")
                        .value_name("ADDR")
                        .help("Address to listen on; port 0 picks a free one [default: 127.0.0.1:7878]"),
                )
                .arg(
                    Arg::new("token")
                        .long("token")
                        .value_name("SECRET")
                        .env("CRM_WEB_TOKEN")
                        .help("Access token every request must carry (required beyond loopback)"),
                )
                .arg(
                    Arg::new("open")
                        .long("open")
                        .action(ArgAction::SetTrue)
                        .help("Open the UI in the desktop's browser"),
                )
                .arg(
                    Arg::new("no-sync")
                        .long("no-sync")
                        .action(ArgAction::SetTrue)
                        .help("Don't sync with the relay in the background"),
                ),
        )
        .subcommand(
            Command::new("completions")
                .about("Print shell completions")
                .arg(
                    Arg::new("shell")
                        .required(true)
                        .value_parser(clap::value_parser!(clap_complete::Shell)),
                ),
        )
}

/// A flag that may be given several times.
fn repeated(name: &'static str, value_name: &'static str, help: &'static str) -> Arg {
    Arg::new(name)
        .long(name)
        .value_name(value_name)
        .action(ArgAction::Append)
        .help(help)
}

fn id_arg() -> Arg {
    Arg::new("id")
        .required(true)
        .value_name("ID")
        .help("Record id")
}

fn archived_arg() -> Arg {
    Arg::new("archived")
        .long("archived")
        .action(ArgAction::SetTrue)
        .help("Include archived records")
}

fn limit_arg() -> Arg {
    Arg::new("limit")
        .long("limit")
        .value_name("N")
        .value_parser(clap::value_parser!(usize))
        .default_value("50")
}

/// The flag of a field: its name with dashes.
pub(crate) fn flag_name(field: &FieldDef) -> String {
    field.name.replace('_', "-")
}

pub(crate) fn field_flags(kind: Kind) -> impl Iterator<Item = &'static FieldDef> {
    kind.schema()
        .all_fields()
        .filter(|f| !RESERVED_FLAGS.contains(&f.name.replace('_', "-").as_str()))
}

fn help_for(field: &FieldDef) -> String {
    let mut help = format!("{} [{}]", field.ty.describe(), field.rule_code());
    if field.required {
        help.push_str(" (required)");
    }
    if let Some(d) = field.default {
        help.push_str(&format!(" (default {d})"));
    }
    help
}

fn field_syntax_args(cmd: Command, kind: Kind) -> Command {
    let cmd = cmd
        .arg(repeated(
            "set",
            "FIELD=VALUE",
            "Set a field (references take the other record's id; custom.NAME for custom fields)",
        ))
        .arg(repeated("unset", "FIELD", "Clear a field"))
        .arg(repeated("tag", "TAG", "Add a tag"))
        .arg(repeated("untag", "TAG", "Remove a tag"))
        .arg(
            Arg::new("notes")
                .long("notes")
                .value_name("TEXT")
                .conflicts_with("append-notes")
                .help("Replace the notes"),
        )
        .arg(
            Arg::new("append-notes")
                .long("append-notes")
                .value_name("TEXT")
                .help("Append a paragraph to the notes"),
        );
    field_flags(kind).fold(cmd, |cmd, field| {
        cmd.arg(
            Arg::new(field.name)
                .long(flag_name(field))
                .value_name(value_name(field.ty))
                .help(help_for(field))
                .help_heading("Fields"),
        )
    })
}

fn value_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::Ref(_) => "ID",
        FieldType::Set(_) => "A,B,…",
        FieldType::Int { .. } => "N",
        FieldType::Money => "AMOUNT",
        FieldType::Date => "YYYY-MM-DD",
        FieldType::DateTime => "TIME",
        FieldType::Bool => "BOOL",
        FieldType::Email => "EMAIL",
        FieldType::LineItems | FieldType::List | FieldType::Answers => "JSON",
        _ => "TEXT",
    }
}

fn kind_command(kind: Kind) -> Command {
    let name = kind.command_name();
    let mut aliases: Vec<String> = vec![kind.plural().replace('_', "-")];
    aliases.extend(kind.aliases().iter().map(|a| a.replace('_', "-")));
    aliases.retain(|a| *a != name);
    let list = field_flags(kind).filter(|f| f.filter).fold(
        Command::new("list")
            .about(format!("List {}", kind.plural().replace('_', " ")))
            .arg(
                repeated("where", "FIELD OP VALUE", "Filter, OP one of = != < <= > >= ~ (contains), e.g. amount>=10000"),
            )
            .arg(repeated("tag", "TAG", "Only records with this tag"))
            .arg(archived_arg())
            .arg(limit_arg())
            .arg(
                Arg::new("offset")
                    .long("offset")
                    .value_name("N")
                    .value_parser(clap::value_parser!(usize))
                    .default_value("0"),
            )
            .arg(
                Arg::new("sort")
                    .long("sort")
                    .value_name("FIELD")
                    .help("Sort by a field, or title, created_at, updated_at [default: most recently changed first]"),
            )
            .arg(Arg::new("desc").long("desc").action(ArgAction::SetTrue).help("Sort descending")),
        |cmd, field| {
            cmd.arg(
                Arg::new(field.name)
                    .long(flag_name(field))
                    .value_name(value_name(field.ty))
                    .help(format!("Only records whose {} is this", field.name))
                    .help_heading("Filters"),
            )
        },
    );
    Command::new(name)
        .about(format!("Manage {}", kind.plural().replace('_', " ")))
        .visible_aliases(aliases)
        .subcommand_required(true)
        .subcommand(field_syntax_args(
            Command::new("add").about(format!(
                "Create a {}; prints its id",
                kind.as_str().replace('_', " ")
            )),
            kind,
        ))
        .subcommand(list)
        .subcommand(
            Command::new("show")
                .about("Show one record")
                .arg(id_arg())
                .args(crate::commands::flows::show_args(kind)),
        )
        .subcommand(field_syntax_args(
            Command::new("edit")
                .about("Change fields, tags and notes")
                .arg(id_arg()),
            kind,
        ))
        .subcommand(
            Command::new("archive")
                .about("Archive (records are never deleted)")
                .arg(id_arg()),
        )
        .subcommand(
            Command::new("restore")
                .about("Restore an archived record")
                .arg(id_arg()),
        )
        .subcommands(crate::commands::flows::verbs(kind))
}

#[cfg(test)]
mod tests {
    #[test]
    fn command_tree_is_valid() {
        super::command().debug_assert();
    }
}
