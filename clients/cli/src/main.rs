//! `crm`: the command line of the local-first CRM. Every CRM operation on the device replica,
//! `--json` on every read, aligned tables otherwise.
//!
//! Exit codes: 0 success, 1 runtime error (the replica or the machine failed), 2 usage or
//! validation error (the input was wrong; nothing was changed).

mod cli;
mod commands;
mod exit;
mod output;

use std::process::ExitCode;

fn main() -> ExitCode {
    let matches = cli::command().try_get_matches();
    // One-shot commands print a `warning:` line of their own for each quarantined change;
    // the store's log line about it would say the same again. `crm serve` logs it.
    let default_filter = match &matches {
        Ok(m) if m.subcommand_name() != Some("serve") => "warn,crm_store::quarantine=error",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = match matches {
        Ok(m) => m,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::from(exit::OK);
        }
        Err(e) => {
            eprintln!("{}", exit::one_line_usage(&e.render().to_string()));
            return ExitCode::from(exit::USAGE);
        }
    };
    // `crm … | head` must end quietly, not panic on the closed pipe: one-shot commands take
    // the default SIGPIPE action. The long-running ones (a server, a sync loop) keep Rust's
    // default of ignoring it, so a peer closing a socket never kills them.
    if !matches!(
        matches.subcommand_name(),
        Some("serve" | "demo" | "sync" | "merge-from")
    ) {
        sigpipe::reset();
    }
    match commands::run(&matches) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {}", exit::message(&e));
            ExitCode::from(exit::code(&e))
        }
    }
}
