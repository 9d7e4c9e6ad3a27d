//! crm-node's bootstrap against a relay sending small pages: the device builds each batch of
//! pages while it writes the one before, and ends up equal to the replica that pushed them.

mod common;

use common::Relay;
use crm_relay::Config;
use crm_seed::SeedOptions;
use crm_store::{RelayLink, Store};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_loads_many_pages_in_overlapping_batches() {
    // About 20 documents a page: batches of pages arrive while earlier ones are written, some
    // large enough for worker threads, some not.
    let relay = Relay::start_with(Config {
        compact: false,
        bootstrap_page_bytes: 16 << 10,
        ..Config::default()
    })
    .await;
    let ws = relay.workspace("acme");
    let (_, alice) = relay.device(ws, "alice");
    let (_, bob) = relay.device(ws, "bob");
    let dir = tempfile::tempdir().expect("tempdir");
    let link = |token: &str| RelayLink {
        url: relay.url(),
        token: token.to_string(),
    };

    let mut source = Store::init(&dir.path().join("source"), "alice", "laptop").expect("init");
    crm_seed::seed(
        &mut source,
        &SeedOptions {
            accounts: 40,
            seed: 7,
        },
    )
    .expect("seed");
    source.set_relay(&link(&alice)).expect("join");
    crm_node::sync::sync_once(&mut source)
        .await
        .expect("the source pushes");
    let documents = source.all_heads().expect("heads").len();
    assert!(documents > 300, "{documents} documents");
    assert_eq!(relay.store.compact(100_000).expect("compact"), documents);

    let mut fresh = Store::init(&dir.path().join("fresh"), "bob", "phone").expect("init");
    fresh.set_relay(&link(&bob)).expect("join");
    let report = crm_node::sync::sync_once(&mut fresh)
        .await
        .expect("the fresh device syncs");
    assert_eq!(report.bootstrapped, documents, "{report:?}");
    assert!(!report.reset, "{report:?}");
    // The source gets the fresh device's own user record; then both hold the same documents.
    crm_node::sync::sync_once(&mut source)
        .await
        .expect("the source syncs again");
    let (mine, theirs) = (
        fresh.all_heads().expect("heads"),
        source.all_heads().expect("heads"),
    );
    assert_eq!(mine.len(), documents + 1);
    let differing = theirs
        .iter()
        .filter(|(id, h)| mine.get(id) != Some(h))
        .count();
    assert_eq!(
        differing, 0,
        "documents with other heads on the fresh device"
    );
    assert!(!fresh.read_indexes_suspended().expect("meta"));
    // Its own user record went up after the bootstrap, and nothing else.
    assert_eq!(report.pushed, 1, "{report:?}");
}
