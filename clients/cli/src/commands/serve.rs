//! `crm serve`: the device node with the web UI over this replica, syncing in the background
//! when the replica has joined a relay. `crm demo` ends with the same server on its laptop.

use std::io::Write as _;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;

use anyhow::{Context, Result};
use clap::ArgMatches;
use crm_web::{AppState, Config};

use crate::exit::Usage;

/// Where `crm serve` listens unless told otherwise.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

pub(crate) fn run(m: &ArgMatches, _as_json: bool) -> Result<()> {
    let dir = super::data_dir(m)?;
    // Open once here so a wrong directory gets the CLI's usual one-line error.
    drop(super::open(m)?);
    let listen = m
        .get_one::<String>("listen")
        .map_or(DEFAULT_LISTEN, String::as_str);
    let addr = parse_listen(listen)?;
    let token = m.get_one::<String>("token").cloned();
    if let Some(t) = &token {
        check_token(t)?;
    }
    check_exposure(addr, token.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .with_context(|| format!("cannot listen on {addr}"))?;
    let served = serve_on(
        &rt,
        listener,
        &dir,
        token,
        !m.get_flag("no-sync"),
        m.get_flag("open"),
    );
    // Dropping the runtime would wait for every blocking task, including a request's write
    // that the server stopped waiting for (see `crm_web::SHUTDOWN_GRACE`).
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    served
}

/// Serves `dir` on `listener` until Ctrl-C or SIGTERM, after printing `serving http://ADDR/`.
pub(crate) fn serve_on(
    rt: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    dir: &Path,
    token: Option<String>,
    sync: bool,
    open: bool,
) -> Result<()> {
    let state = AppState::new(Config {
        data_dir: dir.to_path_buf(),
        token: token.clone(),
        sync,
    })
    .context("cannot start the web UI")?;
    let local = listener.local_addr()?;
    let url = format!("http://{local}/");
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "serving {url}")?;
        out.flush()?;
    }
    if open {
        let target = match &token {
            Some(t) => format!("{url}?token={t}"),
            None => url.clone(),
        };
        open_browser(&target);
    }
    rt.block_on(crm_web::serve(listener, state, stop_signal()))
        .context("the web UI stopped")?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM.
async fn stop_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn parse_listen(listen: &str) -> Result<SocketAddr> {
    let bad = || {
        Usage(format!(
            "invalid --listen {listen:?}: expected HOST:PORT, e.g. 127.0.0.1:7878"
        ))
    };
    let mut addrs = listen.to_socket_addrs().map_err(|_| bad())?;
    Ok(addrs.next().ok_or_else(bad)?)
}

/// Refuses to serve beyond loopback without a token.
fn check_exposure(addr: SocketAddr, token: Option<&str>) -> Result<()> {
    if !addr.ip().is_loopback() && token.is_none() {
        return Err(Usage(format!(
            "{addr} is reachable from other machines; pass --token SECRET (every request must then carry it) or listen on 127.0.0.1"
        ))
        .into());
    }
    Ok(())
}

fn check_token(token: &str) -> Result<()> {
    if token.len() < 12
        || !token
            .chars()
            .all(|c| c.is_ascii_graphic() && c != ';' && c != ',')
    {
        return Err(Usage(
            "--token must be at least 12 visible ASCII characters without ';' or ','".into(),
        )
        .into());
    }
    Ok(())
}

/// Best effort: asks the desktop to open `url`; the printed URL is the fallback.
pub(crate) fn open_browser(url: &str) {
    let opener: Option<(&str, Vec<&str>)> = if cfg!(target_os = "macos") {
        Some(("open", vec![url]))
    } else if cfg!(windows) {
        Some(("cmd", vec!["/C", "start", "", url]))
    } else if std::env::var_os("DISPLAY").is_some() || std::env::var_os("WAYLAND_DISPLAY").is_some()
    {
        Some(("xdg-open", vec![url]))
    } else {
        None
    };
    if let Some((program, args)) = opener {
        let spawned = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not open a browser; open the printed URL yourself");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_and_tokens_are_checked() {
        assert!(parse_listen("127.0.0.1:0").is_ok());
        assert!(parse_listen("nonsense").is_err());
        assert!(check_token("short").is_err());
        assert!(check_token("a-long-enough-secret").is_ok());
        assert!(check_token("has space in it!").is_err());
        let lan: SocketAddr = "0.0.0.0:7878".parse().expect("addr");
        let lo: SocketAddr = "127.0.0.1:7878".parse().expect("addr");
        assert!(check_exposure(lan, None).is_err());
        assert!(check_exposure(lan, Some("a-long-enough-secret")).is_ok());
        assert!(check_exposure(lo, None).is_ok());
    }
}
