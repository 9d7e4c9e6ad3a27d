//! `crm-relay`: run the relay and administer its workspaces and devices.
//!
//! Exit codes: 0 success, 1 runtime error (the store, the network or the machine failed),
//! 2 usage error (the input was wrong; nothing was changed).

mod cli;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = match cli::Cli::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            // --help and --version.
            let _ = e.print();
            return ExitCode::from(cli::exit::OK);
        }
        Err(e) => {
            eprintln!("{}", cli::exit::one_line_usage(&e.render().to_string()));
            return ExitCode::from(cli::exit::USAGE);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CRM_RELAY_LOG").unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(if args.is_serve() { "info" } else { "warn" })
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli::run(args) {
        Ok(()) => ExitCode::from(cli::exit::OK),
        Err(e) => {
            eprintln!("error: {}", cli::exit::message(&e));
            ExitCode::from(cli::exit::code(&e))
        }
    }
}
