//! Checkpoints keep the WAL bounded while writes never pause (they run mostly on a
//! background thread; see crm-store's checkpoint module).

use crm_model::{Edit, Kind};
use crm_store::Store;

#[test]
fn wal_stays_bounded_under_continuous_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut store = Store::init(dir.path(), "alice", "laptop").expect("init");
    let wal = dir.path().join("replica.db-wal");
    let mut largest = 0;
    for i in 0..1500 {
        let mut e = Edit::new(Kind::Account);
        e.set("name", &format!("account {i}")).expect("valid");
        e.replace_notes(&"lorem ipsum ".repeat(50)).expect("valid");
        store.create(&e).expect("create");
        largest = largest.max(std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0));
    }
    // 4000 pages of 4 KiB plus the transaction that crosses the line; unchecked, 1500
    // accounts like these fill a WAL of about 200 MiB.
    assert!(largest < 24 << 20, "the WAL grew to {largest} bytes");
    assert_eq!(store.count(Kind::Account, false).expect("count"), 1500);
}
