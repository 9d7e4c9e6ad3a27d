//! Revocation takes effect on open sessions: a background task of `serve` looks for devices
//! revoked since it last looked and closes every session they have open (`Error 402`).
//!
//! `crm-relay device revoke` writes the store from another process, so the serving relay
//! learns of it from the store itself: a poll every [`crate::Config::revocation_poll`]
//! (250 ms by default) of the devices revoked recently. Each poll looks back
//! [`LOOK_BACK`] more than the time since the previous one, so a revocation committed a
//! little after the time it records is still seen; closing a session twice is harmless.
//! With several relay processes on one database, each one polls and closes its own sessions.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::server::Shared;

/// How far before the previous poll each poll looks.
const LOOK_BACK: Duration = Duration::from_secs(10);
/// Rest after the store failed, so a broken disk does not flood the log.
const AFTER_ERROR: Duration = Duration::from_secs(5);

/// Runs until the relay starts shutting down.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut shutdown = shared.shutdown.subscribe();
    let look_back = chrono::Duration::from_std(LOOK_BACK).unwrap_or(chrono::Duration::zero());
    let mut since = Utc::now() - look_back;
    loop {
        let at = Utc::now();
        let store = shared.relay.clone();
        let wait = match tokio::task::spawn_blocking(move || store.revoked_since(since)).await {
            Ok(Ok(devices)) => {
                for device in devices {
                    if shared.hub.revoke(device.workspace, device.id) {
                        tracing::info!(
                            device = %device.id,
                            user = %device.user,
                            "closing the sessions of a revoked device"
                        );
                    }
                }
                since = at - look_back;
                // The same poll notices role, team and matrix changes made elsewhere (another
                // process, `crm-relay user edit`), for the workspaces with sessions here.
                let workspaces = shared.hub.workspaces();
                let store = shared.relay.clone();
                if let Ok(Ok(versions)) =
                    tokio::task::spawn_blocking(move || store.access_versions(&workspaces)).await
                {
                    for (workspace, version) in versions {
                        shared.hub.access_changed(workspace, version);
                    }
                }
                shared.config.revocation_poll
            }
            Ok(Err(e)) => {
                tracing::error!(error = %crate::error_chain(&e), "cannot read revocations");
                AFTER_ERROR
            }
            Err(_) => AFTER_ERROR,
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}
