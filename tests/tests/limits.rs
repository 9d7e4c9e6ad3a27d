//! Limits across processes (issue 12, failure 2): a large import syncs through a real relay,
//! in pushes the relay accepts.

use crm_tests::{Relay, Replica, id_of};

/// `n` Chinese characters (3 bytes each in UTF-8) that compress poorly (a xorshift generator
/// over the CJK block): 24 KB of notes are 8,000 characters, a third of the Automerge text
/// operations that as many bytes of ASCII would take.
fn noise(n: usize, seed: u64) -> String {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from_u32(0x4E00 + (state % 20_000) as u32).unwrap_or('客')
        })
        .collect()
}

/// Issue 12, failure 2: 600 accounts with 24 KB notes made one push of 500 changes over the
/// relay's 8 MiB frame limit; the relay answered 413, the device reported "connection reset
/// by peer" and failed the same way on every try. Pushes are now cut by bytes: the import
/// syncs, and a second device receives every account.
#[test]
fn a_large_import_syncs_in_several_pushes() {
    let relay = Relay::start();
    let ws = relay.workspace("acme");
    let laptop = Replica::init("alice", "laptop");
    laptop.ok(&["join", &relay.url(), "--token", &relay.token(&ws, "alice")]);

    let csv = laptop.path().join("accounts.csv");
    let mut rows = String::from("name,notes\n");
    for i in 0..600 {
        rows.push_str(&format!("Account {i:03},\"{}\"\n", noise(8_000, i)));
    }
    std::fs::write(&csv, rows).expect("write the CSV");
    let csv = csv.to_str().expect("a UTF-8 path");
    let imported = laptop.json(&["import", "account", csv]);
    assert_eq!(imported["summary"]["created"], 600, "{imported}");

    let pushed = laptop.json(&["sync"]);
    assert!(pushed["pushed"].as_u64() >= Some(600), "{pushed}");
    let status = laptop.json(&["status"]);
    assert_eq!(status["pending"], 0, "{status}");

    let phone = Replica::init("alice", "phone");
    phone.ok(&["join", &relay.url(), "--token", &relay.token(&ws, "alice")]);
    phone.json(&["sync"]);
    let accounts = phone.list("account");
    assert_eq!(accounts.len(), 600);
    let sample = accounts
        .iter()
        .find(|a| a["name"] == "Account 599")
        .expect("the last account arrived");
    let shown = phone.json(&["show", id_of(sample)]);
    assert_eq!(shown["notes"].as_str(), Some(noise(8_000, 599).as_str()));
}
