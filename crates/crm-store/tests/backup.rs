//! Backups of a replica taken while another connection writes it, and restores that refuse
//! anything but a sound replica backup and never replace a replica by surprise.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{assert_unchanged, create, edit, replica, state};
use crm_model::{Kind, RecordId};
use crm_store::{BackupError, IfExists, REPLICA_FILE, Store, StoreError, SyncCursor};

/// Opens a backup file as a replica: copies it into a fresh data directory.
fn as_replica(backup: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(backup, dir.path().join(REPLICA_FILE)).expect("copy the backup");
    dir
}

/// A path for a file in `dir` that does not exist yet.
fn file_in(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

#[test]
fn backup_while_another_connection_writes_is_consistent_and_complete() {
    let (dir, mut store) = replica("alice", "laptop");
    let before: Vec<RecordId> = (0..200)
        .map(|i| {
            create(
                &mut store,
                Kind::Account,
                &[("name", &format!("before {i}"))],
            )
        })
        .collect();
    drop(store);

    let out = tempfile::tempdir().expect("tempdir");
    let stop = AtomicBool::new(false);
    // Accounts the writer has committed, in order; `committed` counts them.
    let committed = AtomicUsize::new(0);
    let (first_tx, first_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut w = Store::open(dir.path()).expect("the writer opens the replica");
            let mut ids = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                let name = format!("live {}", ids.len());
                ids.push(create(&mut w, Kind::Account, &[("name", &name)]));
                committed.fetch_add(1, Ordering::SeqCst);
                if ids.len() == 1 {
                    let _ = first_tx.send(());
                }
            }
            ids
        });
        first_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the writer commits its first record");

        // Back up until one backup ran from start to end while the writer committed.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut overlapped = false;
        let mut checked = Vec::new();
        for round in 0.. {
            let file = file_in(&out, &format!("backup-{round}.db"));
            let started_with = committed.load(Ordering::SeqCst);
            let summary = Store::backup(dir.path(), &file, IfExists::Refuse)
                .expect("the backup succeeds under writes");
            let ended_with = committed.load(Ordering::SeqCst);
            checked.push((file, summary, started_with));
            overlapped |= ended_with > started_with;
            if overlapped && round >= 2 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "no backup overlapped a write of the other connection"
            );
        }
        stop.store(true, Ordering::SeqCst);
        let live = writer.join().expect("the writer did not panic");

        for (file, summary, started_with) in checked {
            let copy = as_replica(&file);
            // Consistent: every change against its hash, every document against its heads
            // and its projection rows, and SQLite's integrity check.
            let report = Store::check(copy.path()).expect("the backup checks");
            assert!(report.is_clean(), "{}: {report:?}", file.display());
            let mut restored = Store::open(copy.path()).expect("the backup opens as a replica");
            // Complete: everything committed before the backup started is in it.
            for id in before.iter().chain(&live[..started_with]) {
                restored
                    .get_kind(Kind::Account, *id)
                    .unwrap_or_else(|e| panic!("{}: record {id} is missing: {e}", file.display()));
            }
            let accounts = restored.count(Kind::Account, true).expect("count");
            // The summary describes the copy: the user's own record and the accounts.
            assert_eq!(summary.records, accounts + 1, "{summary:?}");
            assert!(
                accounts >= u64::try_from(before.len() + started_with).expect("fits"),
                "{summary:?}"
            );
            assert_eq!(summary.bytes, std::fs::metadata(&file).expect("file").len());
            assert_eq!(
                (summary.user.as_str(), summary.device.as_str()),
                ("alice", "laptop")
            );
        }
    });
    // The backups left nothing else beside them: no temporary file, `-wal` or `-shm`.
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("backup-") && n.ends_with(".db")),
        "{names:?}"
    );
}

#[test]
fn backup_refuses_an_existing_file_without_force_and_the_replica_itself() {
    let (dir, mut store) = replica("alice", "laptop");
    create(&mut store, Kind::Account, &[("name", "ACME")]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = file_in(&out, "backup.db");
    std::fs::write(&file, b"keep me").expect("write");

    let err = Store::backup(dir.path(), &file, IfExists::Refuse).expect_err("refused");
    assert!(matches!(err, BackupError::Exists { .. }), "{err}");
    assert!(err.is_invalid_input());
    assert_eq!(std::fs::read(&file).expect("read"), b"keep me");

    let summary = Store::backup(dir.path(), &file, IfExists::Replace).expect("replaced");
    assert_eq!(summary.records, 2);
    Store::verify_file(&file).expect("the new file is a replica backup");

    for target in [
        dir.path().join(REPLICA_FILE),
        dir.path().join(".").join(REPLICA_FILE),
        dir.path().join("replica.db-wal"),
    ] {
        let err = Store::backup(dir.path(), &target, IfExists::Replace).expect_err("refused");
        assert!(matches!(err, BackupError::SameFile { .. }), "{err}");
    }
    let err = Store::backup(dir.path(), out.path(), IfExists::Replace).expect_err("a directory");
    assert!(matches!(err, BackupError::NotAFile { .. }), "{err}");

    let err = Store::backup(
        dir.path(),
        &out.path().join("no/such/dir.db"),
        IfExists::Refuse,
    )
    .expect_err("no directory");
    assert!(matches!(err, BackupError::NoDirectory { .. }), "{err}");

    let empty = tempfile::tempdir().expect("tempdir");
    let err = Store::backup(empty.path(), &file_in(&out, "x.db"), IfExists::Refuse)
        .expect_err("no replica");
    assert!(
        matches!(err, BackupError::Replica(StoreError::NotAReplica { .. })),
        "{err}"
    );
    drop(store);
}

#[test]
fn restore_brings_back_the_backup_its_cursor_and_its_outbox() {
    let (dir, mut store) = replica("alice", "laptop");
    let kept = create(&mut store, Kind::Account, &[("name", "ACME")]);
    let cursor = SyncCursor {
        relay_id: [7; 16],
        seq: 41,
        hash: [9; 32],
    };
    store.apply_pulled(&[], cursor).expect("store a cursor");
    let pending = store.outbox_len().expect("outbox");
    let before = state(&store);
    let out = tempfile::tempdir().expect("tempdir");
    let file = file_in(&out, "backup.db");
    let summary = Store::backup(dir.path(), &file, IfExists::Refuse).expect("backup");
    assert_eq!(summary.cursor, Some(41));
    assert_eq!(summary.pending, pending);

    // After the backup: an edit, a new record, a later cursor and an empty outbox.
    store
        .edit(kept, &edit(Kind::Account, &[("name", "ACME after")]))
        .expect("edit");
    let later = create(&mut store, Kind::Account, &[("name", "later")]);
    store
        .apply_pulled(&[], SyncCursor { seq: 99, ..cursor })
        .expect("advance the cursor");
    let all: Vec<i64> = store
        .outbox(usize::MAX)
        .expect("outbox")
        .iter()
        .map(|c| c.local_seq)
        .collect();
    store.acknowledge(&all).expect("acknowledge");
    drop(store);

    let restored =
        Store::restore(dir.path(), &file, IfExists::Replace).expect("the restore succeeds");
    assert_eq!(restored.path, dir.path().join(REPLICA_FILE));
    assert_eq!(restored.cursor, Some(41));
    let mut store = Store::open(dir.path()).expect("the restored replica opens");
    assert_unchanged(&store, dir.path(), &before, "restore");
    assert_eq!(
        store.get(kept).expect("kept").fields["name"].display(),
        "ACME"
    );
    assert!(matches!(store.get(later), Err(StoreError::NotFound(_))));
    assert_eq!(store.sync_cursor().expect("cursor"), Some(cursor));
    assert_eq!(store.outbox_len().expect("outbox"), pending);
    assert!(Store::check(dir.path()).expect("check").is_clean());
    // Nothing left beside the replica but SQLite's own files.
    for entry in std::fs::read_dir(dir.path()).expect("read dir") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with(REPLICA_FILE), "left behind: {name}");
    }
}

#[test]
fn restore_refuses_an_existing_replica_without_force() {
    let (dir, mut store) = replica("alice", "laptop");
    create(&mut store, Kind::Account, &[("name", "ACME")]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = file_in(&out, "backup.db");
    Store::backup(dir.path(), &file, IfExists::Refuse).expect("backup");
    create(&mut store, Kind::Account, &[("name", "after the backup")]);
    let before = state(&store);
    drop(store);

    let err = Store::restore(dir.path(), &file, IfExists::Refuse).expect_err("refused");
    assert!(matches!(err, BackupError::ReplicaExists { .. }), "{err}");
    assert!(err.is_invalid_input());
    assert!(err.to_string().contains("--force"), "{err}");
    let store = Store::open(dir.path()).expect("open");
    assert_unchanged(&store, dir.path(), &before, "a refused restore");
}

#[test]
fn restore_refuses_a_replica_another_connection_has_open() {
    let (dir, mut store) = replica("alice", "laptop");
    create(&mut store, Kind::Account, &[("name", "ACME")]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = file_in(&out, "backup.db");
    Store::backup(dir.path(), &file, IfExists::Refuse).expect("backup");
    create(&mut store, Kind::Account, &[("name", "after the backup")]);
    let before = state(&store);

    // `store` stays open, as `crm serve` would.
    let err = Store::restore(dir.path(), &file, IfExists::Replace).expect_err("in use");
    assert!(matches!(err, BackupError::InUse { .. }), "{err}");
    assert!(!err.is_invalid_input());
    assert_unchanged(
        &store,
        dir.path(),
        &before,
        "a restore refused while in use",
    );
    // The refused restore left the replica fully usable.
    create(&mut store, Kind::Account, &[("name", "still writable")]);
    drop(store);

    let summary = Store::restore(dir.path(), &file, IfExists::Replace).expect("closed now");
    assert_eq!(summary.records, 2);
    let store = Store::open(dir.path()).expect("open");
    assert_eq!(store.count(Kind::Account, true).expect("count"), 1);
}

/// Whether an error is the one expected.
type Expected = fn(&BackupError) -> bool;

#[test]
fn restore_refuses_a_file_that_is_not_a_replica_backup() {
    let (dir, mut store) = replica("alice", "laptop");
    create(&mut store, Kind::Account, &[("name", "ACME")]);
    let before = state(&store);
    drop(store);
    let out = tempfile::tempdir().expect("tempdir");

    let text = file_in(&out, "notes.txt");
    std::fs::write(
        &text,
        "not a database, just some text that is long enough ".repeat(100),
    )
    .expect("write");
    let foreign = file_in(&out, "other.db");
    rusqlite::Connection::open(&foreign)
        .and_then(|c| {
            c.execute_batch("CREATE TABLE documents (x); INSERT INTO documents VALUES (1);")
        })
        .expect("another application's database");
    let empty = file_in(&out, "empty.db");
    std::fs::write(&empty, b"").expect("write");

    let refusals: [(&Path, Expected); 5] = [
        (&text, |e| {
            matches!(
                e,
                BackupError::NotAReplica {
                    source: StoreError::Corrupt { .. },
                    ..
                }
            )
        }),
        (&foreign, |e| {
            matches!(
                e,
                BackupError::NotAReplica {
                    source: StoreError::Foreign { .. },
                    ..
                }
            )
        }),
        (&empty, |e| matches!(e, BackupError::Empty { .. })),
        (&out.path().join("missing.db"), |e| {
            matches!(e, BackupError::Missing { .. })
        }),
        (out.path(), |e| matches!(e, BackupError::NotAFile { .. })),
    ];
    for (file, expected) in refusals {
        let err = Store::restore(dir.path(), file, IfExists::Replace).expect_err("refused");
        assert!(expected(&err), "{}: {err:?}", file.display());
        assert!(err.is_invalid_input(), "{err}");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "the message names the file: {err}"
        );
        let err = Store::verify_file(file).expect_err("verify refuses it too");
        assert!(expected(&err), "{}: {err:?}", file.display());
    }
    let store = Store::open(dir.path()).expect("open");
    assert_unchanged(&store, dir.path(), &before, "refused restores");
    // The refused files were left as they were, with nothing beside them.
    let mut names: Vec<String> = std::fs::read_dir(out.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["empty.db", "notes.txt", "other.db"]);
}

#[test]
fn restore_refuses_a_damaged_backup() {
    let (dir, mut store) = replica("alice", "laptop");
    for i in 0..300 {
        create(
            &mut store,
            Kind::Account,
            &[("name", &format!("account {i}"))],
        );
    }
    let out = tempfile::tempdir().expect("tempdir");
    let file = file_in(&out, "backup.db");
    let summary = Store::backup(dir.path(), &file, IfExists::Refuse).expect("backup");
    let before = state(&store);
    drop(store);

    // Overwrite the middle pages of the file, as a failing disk would.
    let mut bytes = std::fs::read(&file).expect("read");
    let len = bytes.len();
    assert_eq!(u64::try_from(len).expect("fits"), summary.bytes);
    for b in &mut bytes[len / 3..len / 3 + 16384] {
        *b = 0x5a;
    }
    std::fs::write(&file, &bytes).expect("damage");

    let err = Store::restore(dir.path(), &file, IfExists::Replace).expect_err("refused");
    assert!(
        matches!(
            err,
            BackupError::Damaged { .. }
                | BackupError::NotAReplica {
                    source: StoreError::Corrupt { .. },
                    ..
                }
        ),
        "{err:?}"
    );
    assert!(err.is_invalid_input());
    let store = Store::open(dir.path()).expect("open");
    assert_unchanged(&store, dir.path(), &before, "a refused damaged backup");
}

#[test]
fn restore_into_a_new_directory_needs_no_force() {
    let (dir, mut store) = replica("alice", "laptop");
    let id = create(&mut store, Kind::Account, &[("name", "ACME")]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = file_in(&out, "backup.db");
    Store::backup(dir.path(), &file, IfExists::Refuse).expect("backup");
    let before = state(&store);

    let new_device = tempfile::tempdir().expect("tempdir");
    let data = new_device.path().join("crm");
    Store::restore(&data, &file, IfExists::Refuse).expect("restore into a new directory");
    let restored = Store::open(&data).expect("open");
    assert_eq!(state(&restored), before);
    assert_eq!(restored.identity(), store.identity());
    assert_eq!(restored.kind_of(id).expect("kind"), Kind::Account);
}

/// Leaves a write in the replica's `-wal`, never checkpointed: what a process killed after
/// its commit leaves behind.
fn leave_wal_frames(dir: &Path) {
    let conn = rusqlite::Connection::open(dir.join(REPLICA_FILE)).expect("open");
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .expect("no checkpoint on close");
    conn.execute("INSERT INTO meta (key, value) VALUES ('stale', 'x')", [])
        .expect("write");
    drop(conn);
    let wal = std::fs::metadata(dir.join("replica.db-wal")).expect("a -wal is left");
    assert!(wal.len() > 0);
}

/// Whether the replica in `dir` holds the row [`leave_wal_frames`] wrote.
fn has_stale_row(dir: &Path) -> bool {
    let conn = rusqlite::Connection::open(dir.join(REPLICA_FILE)).expect("open");
    conn.query_row("SELECT count(*) FROM meta WHERE key = 'stale'", [], |r| {
        r.get::<_, i64>(0)
    })
    .expect("read")
        > 0
}

#[test]
fn restore_over_a_replica_with_a_left_over_wal_gives_exactly_the_backup() {
    let (dir, mut store) = replica("alice", "laptop");
    create(&mut store, Kind::Account, &[("name", "ACME")]);
    let out = tempfile::tempdir().expect("tempdir");
    let file = file_in(&out, "backup.db");
    Store::backup(dir.path(), &file, IfExists::Refuse).expect("backup");
    let before = state(&store);
    create(&mut store, Kind::Account, &[("name", "after the backup")]);
    drop(store);

    // The old replica's WAL holds a write: it must not end up in the restored replica.
    leave_wal_frames(dir.path());
    Store::restore(dir.path(), &file, IfExists::Replace).expect("restore");
    assert!(!has_stale_row(dir.path()));
    let store = Store::open(dir.path()).expect("open");
    assert_unchanged(&store, dir.path(), &before, "restore over a WAL");
    assert!(Store::check(dir.path()).expect("check").is_clean());
    drop(store);

    // The same with an old replica SQLite cannot open at all, beside a WAL of frames.
    leave_wal_frames(dir.path());
    let wal = dir.path().join("replica.db-wal");
    let frames = std::fs::read(&wal).expect("the WAL");
    std::fs::write(dir.path().join(REPLICA_FILE), vec![0x5a; 8192]).expect("garbage");
    std::fs::write(&wal, frames).expect("the WAL again");
    Store::restore(dir.path(), &file, IfExists::Replace).expect("restore over garbage");
    assert!(!has_stale_row(dir.path()));
    let store = Store::open(dir.path()).expect("open");
    assert_unchanged(
        &store,
        dir.path(),
        &before,
        "restore over garbage and a WAL",
    );
    assert!(Store::check(dir.path()).expect("check").is_clean());
}
