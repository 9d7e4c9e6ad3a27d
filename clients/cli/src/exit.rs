//! Stable exit codes and one-line error messages.

use crm_model::{ParseIdError, UnknownKind, ValidationError};
use crm_store::StoreError;

pub(crate) const OK: u8 = 0;
/// A runtime failure: the replica could not be read or written, a file was missing, …
pub(crate) const RUNTIME: u8 = 1;
/// The input was wrong (unknown kind, field, id or value; a broken reference). Nothing changed.
pub(crate) const USAGE: u8 = 2;

/// An input error found by the CLI itself.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Usage(pub(crate) String);

pub(crate) fn code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Usage>()
            || cause.is::<ValidationError>()
            || cause.is::<UnknownKind>()
            || cause.is::<ParseIdError>()
        {
            return USAGE;
        }
        if let Some(sync) = cause.downcast_ref::<crm_node::sync::SyncError>() {
            return match sync {
                crm_node::sync::SyncError::NotJoined | crm_node::sync::SyncError::BadToken => USAGE,
                crm_node::sync::SyncError::Store(store) if store.is_invalid_input() => USAGE,
                _ => RUNTIME,
            };
        }
        if let Some(store) = cause.downcast_ref::<StoreError>() {
            return if store.is_invalid_input() {
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
        .filter(|l| !l.is_empty())
        .collect();
    let mut line = text.join(" ");
    if !line.starts_with("error") {
        line = format!("error: {line}");
    }
    format!("{line} (see --help)")
}

#[cfg(test)]
mod tests {
    #[test]
    fn usage_errors_fold_to_one_line() {
        let rendered = "error: the following required arguments were not provided:\n  --user <NAME>\n\nUsage: crm init --user <NAME>\n\nFor more information, try '--help'.\n";
        assert_eq!(
            super::one_line_usage(rendered),
            "error: the following required arguments were not provided: --user <NAME> (see --help)"
        );
    }
}
