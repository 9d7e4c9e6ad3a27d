//! Stable exit codes and one-line error messages, as in the `crm` CLI.

use crm_relay::ParseError;
use crm_relay::store::AdminError;

pub(crate) const OK: u8 = 0;
/// A runtime failure: the store could not be read or written, the address was taken, …
pub(crate) const RUNTIME: u8 = 1;
/// The input was wrong (unknown workspace or device, a bad name or role). Nothing changed.
pub(crate) const USAGE: u8 = 2;

/// An input error found by the CLI itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Usage(pub(crate) String);

pub(crate) fn code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Usage>() || cause.is::<ParseError>() {
            return USAGE;
        }
        if let Some(admin) = cause.downcast_ref::<AdminError>() {
            return if admin.is_invalid_input() {
                USAGE
            } else {
                RUNTIME
            };
        }
    }
    RUNTIME
}

/// The error and its causes on one line.
pub(crate) fn message(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// clap's usage error folded onto one line: the message and its tips, without the usage
/// block, then where to look for help.
pub(crate) fn one_line_usage(rendered: &str) -> String {
    let text: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|l| !l.starts_with("Usage:"))
        .filter(|l| !l.is_empty() && !l.starts_with("For more information"))
        .collect();
    let mut line = text.join(" ");
    if !line.starts_with("error") {
        line = format!("error: {line}");
    }
    format!("{line} (see --help)")
}
