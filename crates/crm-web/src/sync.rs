//! Background sync with the replica's relay, and the honest status shown on every page.
//!
//! The sync driver (`crm_node::sync::watch`) runs on its own thread with its own replica
//! connection, so its SQLite work never blocks a request. It reports each catch-up; whether
//! the relay is reachable at all is probed separately with a TCP connect every few seconds,
//! because the driver retries transient failures quietly.

use std::net::ToSocketAddrs;
use std::time::Duration;

use chrono::{DateTime, Utc};
use crm_store::Store;
use serde::Serialize;

use crate::state::AppState;

/// How often the relay's reachability is probed.
const PROBE_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// Where sync stands.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SyncStatus {
    /// The relay this replica syncs with, if it joined one.
    pub relay: Option<String>,
    /// Whether this node syncs in the background.
    pub syncing: bool,
    /// The relay answered the last probe.
    pub reachable: Option<bool>,
    /// When this node last caught up with the relay.
    pub caught_up_at: Option<DateTime<Utc>>,
    /// The sync driver stopped on a permanent error (e.g. a revoked token).
    pub error: Option<String>,
}

impl SyncStatus {
    pub(crate) fn new(relay: Option<String>, syncing: bool) -> Self {
        SyncStatus {
            relay,
            syncing,
            reachable: None,
            caught_up_at: None,
            error: None,
        }
    }

    /// `local` (no relay, or not syncing), `live`, `connecting` or `offline`.
    pub fn state(&self) -> &'static str {
        if self.relay.is_none() || !self.syncing {
            return "local";
        }
        if self.error.is_some() || self.reachable == Some(false) {
            return "offline";
        }
        if self.caught_up_at.is_some() && self.reachable == Some(true) {
            "live"
        } else {
            "connecting"
        }
    }

    pub fn label(&self) -> String {
        match self.state() {
            "local" if self.relay.is_none() => "Local only (not joined to a relay)".into(),
            "local" => "Not syncing".into(),
            "live" => "Live: connected to the relay".into(),
            "connecting" => "Connecting to the relay…".into(),
            _ => match &self.error {
                Some(e) => format!("Offline: {e}"),
                None => "Offline: relay unreachable; changes are kept and sent later".into(),
            },
        }
    }
}

/// The `host:port` of a relay URL (`http://h:p`, `wss://h/…`, `h:p`).
fn relay_addr(url: &str) -> Option<String> {
    let (rest, default_port) = match url.split_once("://") {
        Some((scheme, rest)) => (
            rest,
            if scheme == "https" || scheme == "wss" {
                443
            } else {
                80
            },
        ),
        None => (url, 80),
    };
    let host = rest.split('/').next()?.trim();
    if host.is_empty() {
        return None;
    }
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.chars().all(|c| c.is_ascii_digit()) && !host.ends_with(']'));
    Some(if has_port {
        host.to_string()
    } else {
        format!("{host}:{default_port}")
    })
}

/// Starts the background sync and the relay probe when the replica has joined a relay.
pub(crate) fn start(state: &AppState) -> Result<(), crate::error::WebError> {
    let status = state.status();
    let Some(relay) = status.relay.clone().filter(|_| status.syncing) else {
        return Ok(());
    };
    let mut store = Store::open(&state.config().data_dir)?;
    let sync_state = state.clone();
    std::thread::Builder::new()
        .name("crm-web-sync".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    sync_state.update_status(|s| s.error = Some(format!("no runtime: {e}")));
                    return;
                }
            };
            let probe_state = sync_state.clone();
            rt.spawn(probe(probe_state, relay));
            let mut stopping = sync_state.stopping();
            let stop = async move {
                let _ = stopping.wait_for(|s| *s).await;
            };
            let on_synced_state = sync_state.clone();
            let result = rt.block_on(crm_node::sync::watch(
                &mut store,
                move |_| {
                    on_synced_state.update_status(|s| {
                        s.caught_up_at = Some(Utc::now());
                        s.reachable = Some(true);
                        s.error = None;
                    });
                },
                stop,
            ));
            if let Err(e) = result {
                tracing::error!(error = %e, "background sync stopped");
                sync_state.update_status(|s| s.error = Some(e.to_string()));
            }
        })
        .map_err(|e| crate::error::WebError::Internal(format!("cannot start sync: {e}")))?;
    Ok(())
}

async fn probe(state: AppState, relay: String) {
    let Some(addr) = relay_addr(&relay) else {
        return;
    };
    let mut stopping = state.stopping();
    loop {
        let target = addr.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            target.to_socket_addrs().map(|a| a.collect::<Vec<_>>())
        })
        .await;
        let mut reachable = false;
        if let Ok(Ok(addrs)) = resolved {
            for a in addrs {
                if let Ok(Ok(_)) =
                    tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(a)).await
                {
                    reachable = true;
                    break;
                }
            }
        }
        state.update_status(|s| {
            s.reachable = Some(reachable);
            // Until the driver catches up again after an outage, the state is "connecting".
            if !reachable {
                s.caught_up_at = None;
            }
        });
        tokio::select! {
            () = tokio::time::sleep(PROBE_EVERY) => {}
            _ = stopping.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_urls_give_socket_addresses() {
        assert_eq!(
            relay_addr("http://127.0.0.1:7070").as_deref(),
            Some("127.0.0.1:7070")
        );
        assert_eq!(
            relay_addr("https://crm.example.com/x").as_deref(),
            Some("crm.example.com:443")
        );
        assert_eq!(relay_addr("10.0.0.2:9").as_deref(), Some("10.0.0.2:9"));
        assert_eq!(relay_addr("http://").as_deref(), None);
    }

    #[test]
    fn state_is_honest() {
        let mut s = SyncStatus::new(Some("http://r".into()), true);
        assert_eq!(s.state(), "connecting");
        s.reachable = Some(true);
        s.caught_up_at = Some(Utc::now());
        assert_eq!(s.state(), "live");
        s.reachable = Some(false);
        assert_eq!(s.state(), "offline");
        assert_eq!(SyncStatus::new(None, true).state(), "local");
    }
}
