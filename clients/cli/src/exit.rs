//! Exit codes: the shared ones (crm-cli-support), and which of this binary's errors are
//! usage errors.

use crm_model::{ParseIdError, UnknownKind, ValidationError};
use crm_store::{BackupError, StoreError};

pub(crate) use crm_cli_support::exit::{OK, RUNTIME, USAGE, Usage, message, one_line_usage};

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
        if let Some(backup) = cause.downcast_ref::<BackupError>() {
            return if backup.is_invalid_input() {
                USAGE
            } else {
                RUNTIME
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
