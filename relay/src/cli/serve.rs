//! `crm-relay serve`.

use std::io::Write as _;

use anyhow::Context as _;
use crm_relay::store::Database;
use crm_relay::{AppState, Config};

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Address to listen on; port 0 picks a free one (the bound address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:7878")]
    listen: String,
    /// Most simultaneous connections of one workspace.
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections_per_workspace)]
    max_connections_per_workspace: usize,
    /// Most simultaneous connections of one device (sync and bootstrap together).
    #[arg(long, value_name = "N", default_value_t = Config::default().max_sessions_per_device)]
    max_sessions_per_device: usize,
    /// Most open connections in all; never more than the process's file limit allows (the
    /// relay raises its soft limit to the hard one and keeps 256 files for itself).
    #[arg(long, value_name = "N", default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Most MiB of data queued for devices and not yet read by them, over all sessions;
    /// past half of it, devices that stop reading are dropped.
    #[arg(long, value_name = "MIB", default_value_t = Config::default().max_unsent_bytes >> 20)]
    max_unsent_mib: usize,
    /// Pushes a device may make per second.
    #[arg(long, value_name = "N", default_value_t = Config::default().pushes_per_second)]
    max_pushes_per_second: u32,
    /// Do not compact documents in the background. New devices still bootstrap, with the
    /// documents' changes from the log instead of snapshots.
    #[arg(long)]
    no_compact: bool,
}

/// Threads for store work: bounds the database connections and memory of bursts of reads.
const BLOCKING_THREADS: usize = 32;

pub(crate) fn run(data: &Database, args: Args) -> anyhow::Result<()> {
    let store = data.open(true)?;
    // Every connection is a file: take all the process may have (the cap stays below it).
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(files) => tracing::debug!(files, "file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the file limit"),
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(BLOCKING_THREADS)
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        // Install the handlers before announcing the address, so a signal sent as soon as
        // the address is read is not lost.
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let address = listener.local_addr()?;
        let relay_id = uuid::Uuid::from_bytes(store.relay_id());
        tracing::info!(
            %address,
            %relay_id,
            backend = store.backend(),
            database = %store.location(),
            "relay started"
        );
        let config = Config {
            max_connections_per_workspace: args.max_connections_per_workspace,
            max_sessions_per_device: args.max_sessions_per_device,
            max_connections: args.max_connections,
            max_unsent_bytes: args.max_unsent_mib.saturating_mul(1 << 20).max(1 << 20),
            pushes_per_second: args.max_pushes_per_second,
            compact: !args.no_compact,
            ..Config::default()
        };
        let state = AppState::new(store, config);
        println!("listening on {address}");
        std::io::stdout().flush()?;
        crm_relay::serve(listener, state, shutdown).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
