//! Stable exit codes and one-line error messages, as in the `crm` CLI.

use crm_relay::ParseError;
use crm_relay::service::backup::FileError;
use crm_relay::service::migrate::MigrateError;
use crm_relay::store::{AdminError, StoreError};

pub(crate) use crm_cli_support::exit::{OK, RUNTIME, USAGE, Usage, message, one_line_usage};

pub(crate) fn code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if cause.is::<Usage>() || cause.is::<ParseError>() {
            return USAGE;
        }
        if let Some(file) = cause.downcast_ref::<FileError>() {
            return if file.is_usage() { USAGE } else { RUNTIME };
        }
        if matches!(cause.downcast_ref(), Some(StoreError::NotEmpty(_)))
            || matches!(cause.downcast_ref(), Some(MigrateError::NotEmpty))
        {
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
