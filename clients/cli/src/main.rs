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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let matches = match cli::command().try_get_matches() {
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
