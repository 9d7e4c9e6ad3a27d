//! `crm demo`: a replica seeded with a realistic sample company.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::ArgMatches;
use crm_model::Kind;
use crm_store::Store;
use serde_json::json;

use crate::output;

pub(crate) fn run(m: &ArgMatches, as_json: bool) -> Result<()> {
    let dir = match m.get_one::<String>("data-dir") {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("crm-demo-{}", uuid::Uuid::now_v7())),
    };
    let accounts = m.get_one::<usize>("accounts").copied().unwrap_or(300);
    let started = std::time::Instant::now();
    let mut store = Store::init(&dir, "demo", "demo-laptop")
        .with_context(|| format!("cannot create the demo replica in {}", dir.display()))?;
    let report = crm_seed::seed(
        &mut store,
        &crm_seed::SeedOptions {
            accounts,
            seed: 2026,
        },
    )?;
    let elapsed = started.elapsed();
    let counts: Vec<(Kind, u64)> = Kind::ALL
        .iter()
        .map(|k| Ok((*k, store.count(*k, true)?)))
        .collect::<Result<Vec<_>>>()?;
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    if as_json {
        output::json(&json!({
            "data_dir": dir.display().to_string(),
            "records": total,
            "seconds": elapsed.as_secs_f64(),
            "counts": counts.iter().filter(|(_, n)| *n > 0).map(|(k, n)| (k.as_str().to_string(), json!(n))).collect::<serde_json::Map<_, _>>(),
        }));
        return Ok(());
    }
    let _ = report;
    println!(
        "Seeded a sample company: {total} records in {:.1} s, replica in {}\n",
        elapsed.as_secs_f64(),
        dir.display()
    );
    output::table(
        &["kind", "records"],
        counts
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(k, n)| vec![k.plural().replace('_', " "), n.to_string()])
            .collect(),
    );
    let d = dir.display();
    println!("\nTry next:");
    if let Ok(exe) = std::env::current_exe() {
        println!("  alias crm={}", exe.display());
    }
    println!("  export CRM_HOME={d}");
    println!("  crm account list --grade vip");
    println!("  crm opportunity list --stage negotiation --sort amount --desc");
    println!("  crm search 星光");
    println!("  crm ticket list --priority urgent");
    println!("  crm account show ID        # then: crm history ID");
    Ok(())
}
