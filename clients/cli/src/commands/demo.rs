//! `crm demo`: the whole product in one command. It starts a relay, creates two devices — a
//! laptop seeded with a realistic sample company and an empty phone — syncs both through the
//! relay, shows a change travelling from the phone to the laptop, and prints what to try next.

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::ArgMatches;
use crm_model::{Edit, Kind};
use crm_node::sync::{SyncReport, sync_once};
use crm_relay::{Config, Relay, Role, SqliteStore};
use crm_store::{ListQuery, RelayLink, Store};
use serde_json::json;

use crate::output;

struct Device {
    dir: PathBuf,
    store: Store,
}

fn device(base: &Path, name: &str, user: &str, url: &str, token: &str) -> Result<Device> {
    let dir = base.join(name);
    let mut store = Store::init(&dir, user, name)
        .with_context(|| format!("cannot create the {name} replica in {}", dir.display()))?;
    store.set_relay(&RelayLink {
        url: url.into(),
        token: token.into(),
    })?;
    Ok(Device { dir, store })
}

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let base = match m.get_one::<String>("data-dir") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("crm-demo-{}", uuid::Uuid::now_v7())),
    };
    if base.join("relay").exists() || base.join("laptop").exists() {
        return Err(crate::exit::Usage(format!(
            "{} already holds a demo; pick another directory",
            base.display()
        ))
        .into());
    }
    let accounts = m.get_one::<usize>("accounts").copied().unwrap_or(300);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;

    // The relay, with a workspace and a token per device.
    let relay_dir = base.join("relay");
    let relay_store =
        Arc::new(SqliteStore::open_or_create(&relay_dir).context("cannot create the demo relay")?);
    let relay = Relay::new(relay_store.clone());
    let workspace = relay.create_workspace("demo")?;
    // Alice, the team's admin, with a laptop and a phone: each sees the whole company.
    relay.add_user(workspace.id, "alice", None, Role::Admin, &[])?;
    let alice = relay.add_device(workspace.id, "alice")?;
    let alice_phone = relay.add_device(workspace.id, "alice")?;
    let state = crm_relay::AppState::new(relay_store, Config::default());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .context("cannot open a port for the demo relay")?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = rt.spawn(crm_relay::serve(listener, state, async {
        let _ = stop_rx.await;
    }));

    // The laptop: a sample company, pushed to the relay.
    let mut laptop = device(&base, "laptop", "alice", &url, alice.token.expose())?;
    let started = Instant::now();
    crm_seed::seed(
        &mut laptop.store,
        &crm_seed::SeedOptions {
            accounts,
            seed: 2026,
        },
    )?;
    let seeded = started.elapsed();
    let started = Instant::now();
    let pushed = rt.block_on(sync_once(&mut laptop.store))?;
    let push_time = started.elapsed();

    // The phone: a fresh device pulls everything.
    let mut phone = device(&base, "phone", "alice", &url, alice_phone.token.expose())?;
    let started = Instant::now();
    let pulled = rt.block_on(sync_once(&mut phone.store))?;
    let pull_time = started.elapsed();

    // A change made on the phone reaches the laptop.
    let deal = phone
        .store
        .list(&{
            let mut q = ListQuery::new(Kind::Opportunity);
            q.filters
                .push(crm_store::Filter::parse("stage=negotiation")?);
            q.limit = 1;
            q
        })?
        .into_iter()
        .next();
    let mut travelled = None;
    if let Some(deal) = &deal {
        let mut e = Edit::new(Kind::Opportunity);
        e.set("stage", "closed_won")?;
        e.append_notes("Signed on the phone during the demo.")?;
        phone.store.edit(deal.id, &e)?;
        rt.block_on(sync_once(&mut phone.store))?;
        let report: SyncReport = rt.block_on(sync_once(&mut laptop.store))?;
        let on_laptop = laptop.store.get(deal.id)?;
        travelled = Some((
            deal.title.clone(),
            report.pulled,
            on_laptop.get("stage").map(|v| v.display()),
        ));
    }

    let counts: Vec<(Kind, u64)> = Kind::ALL
        .iter()
        .map(|k| Ok((*k, phone.store.count(*k, true)?)))
        .collect::<Result<Vec<_>>>()?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();

    // Interactive runs end with the web UI on the laptop; scripts (--json, a pipe) don't.
    let web = !as_json && !m.get_flag("no-web") && std::io::stdout().is_terminal();
    if as_json {
        output::json(&json!({
            "data_dir": base.display().to_string(),
            "relay": { "url": url, "data": relay_dir.display().to_string(), "workspace": workspace.id.to_string() },
            "laptop": laptop.dir.display().to_string(),
            "phone": phone.dir.display().to_string(),
            "records": total,
            "seed_seconds": seeded.as_secs_f64(),
            "push": { "changes": pushed.pushed, "seconds": push_time.as_secs_f64() },
            "fresh_device_pull": { "changes": pulled.pulled, "records": pulled.records_changed, "seconds": pull_time.as_secs_f64() },
            "counts": counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        }));
    } else {
        println!(
            "A sample company: {total} records, seeded on the laptop in {:.1} s.",
            seeded.as_secs_f64()
        );
        println!(
            "The laptop pushed {} changes to the relay at {url} in {:.2} s; the phone, a fresh device, pulled them in {:.2} s.",
            pushed.pushed,
            push_time.as_secs_f64(),
            pull_time.as_secs_f64()
        );
        if let Some((title, n, stage)) = &travelled {
            println!(
                "On the phone, bob moved “{title}” to closed_won; the laptop pulled {n} change(s) and now shows stage {}.",
                stage.as_deref().unwrap_or("?")
            );
        }
        println!();
        output::table(
            &["kind", "records"],
            counts
                .iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| vec![k.plural().replace('_', " "), n.to_string()])
                .collect(),
        );
        let exe = std::env::current_exe().ok();
        let bin_dir = exe.as_deref().and_then(Path::parent);
        let crm = exe
            .as_ref()
            .map_or("crm".into(), |e| e.display().to_string());
        let relay_bin = bin_dir
            .map(|d| d.join("crm-relay"))
            .filter(|p| p.is_file())
            .map_or("crm-relay".into(), |p| p.display().to_string());
        println!("\nTry next:");
        println!("  alias crm={crm}");
        println!(
            "  export CRM_HOME={}            # the laptop",
            laptop.dir.display()
        );
        println!("  crm account list --grade vip");
        println!("  crm opportunity list --stage negotiation --sort amount --desc");
        println!("  crm search 星光");
        println!("  crm ticket list --priority urgent");
        println!("  crm show ID && crm history ID");
        println!(
            "  crm --data-dir {} status          # the phone",
            phone.dir.display()
        );
        if !m.get_flag("serve") && !web {
            println!(
                "  {relay_bin} --data {} serve --listen {addr}   # bring the relay back, then: crm sync",
                relay_dir.display()
            );
        }
    }

    if web {
        drop(phone);
        let listener =
            match rt.block_on(tokio::net::TcpListener::bind(super::serve::DEFAULT_LISTEN)) {
                Ok(l) => l,
                Err(_) => rt
                    .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
                    .context("cannot open a port for the web UI")?,
            };
        println!(
            "\nThe web UI serves the laptop replica, syncing live with the relay at {url}; Ctrl-C stops both."
        );
        super::serve::serve_on(&rt, listener, &laptop.dir, None, true, true)?;
    } else if m.get_flag("serve") {
        println!("\nThe relay is running at {url}; Ctrl-C to stop it.");
        rt.block_on(async {
            let _ = tokio::signal::ctrl_c().await;
        });
    }
    let _ = stop_tx.send(());
    rt.block_on(async {
        let _ = server.await;
    });
    Ok(())
}

/// `crm seed`: a sample company in the current replica.
pub(crate) fn seed(m: &ArgMatches, as_json: bool) -> Result<()> {
    let mut store = super::open(m)?;
    let accounts = m.get_one::<usize>("accounts").copied().unwrap_or(300);
    let started = Instant::now();
    let report = crm_seed::seed(
        &mut store,
        &crm_seed::SeedOptions {
            accounts,
            seed: 2026,
        },
    )?;
    let seconds = started.elapsed().as_secs_f64();
    if as_json {
        output::json(&json!({
            "records": report.total(),
            "seconds": seconds,
            "counts": report.counts.iter().map(|(k, n)| (k.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        }));
    } else {
        println!("added {} sample records in {seconds:.1} s", report.total());
    }
    Ok(())
}
