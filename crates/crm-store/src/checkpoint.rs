//! WAL checkpoints mostly off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that grows the WAL past 1000 pages,
//! copying every page and syncing the database file: one edit in about sixty paid several
//! milliseconds for it. Instead, a WAL hook wakes a thread with its own connection once the
//! WAL passes 1000 pages, and that thread copies pages back with passive checkpoints, which
//! never block writers or readers. A passive checkpoint running beside a busy writer always
//! ends a transaction behind, though, and the WAL only starts over from its beginning when it
//! is entirely checkpointed; so past 4000 pages the writer itself checkpoints between two
//! transactions, with little left to copy. When the last connection to a replica closes,
//! SQLite checkpoints and removes the WAL as usual.

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};

use rusqlite::{Connection, OpenFlags};

/// WAL size, in pages, at which a checkpoint is started.
const CHECKPOINT_PAGES: i32 = 1000;
/// WAL size, in pages, at which the writer checkpoints what the thread has not yet copied.
const WRITER_PAGES: i32 = 4000;

/// Registers the WAL hook on `conn` and starts the checkpoint thread for the database at
/// `path`. The thread ends when `conn` is closed (the hook, which holds the only sender,
/// goes with it).
pub(crate) fn install(conn: &mut Connection, path: PathBuf) -> rusqlite::Result<()> {
    let (wake, wakes) = sync_channel::<()>(1);
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        if pages >= WRITER_PAGES {
            // Failing here would fail a commit that has already happened; a checkpoint that
            // did not run is retried after the next commit.
            if let Err(e) = wal.checkpoint() {
                tracing::debug!(error = %e, "checkpoint after commit failed");
            }
        } else if pages >= CHECKPOINT_PAGES {
            // A full channel means a checkpoint is already pending.
            let _ = SyncSender::try_send(&wake, ());
        }
        Ok(())
    }))?;
    let spawned = std::thread::Builder::new()
        .name("crm-checkpoint".into())
        .spawn(move || {
            let mut conn: Option<Connection> = None;
            while wakes.recv().is_ok() {
                if conn.is_none() {
                    conn = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )
                    .ok();
                }
                let Some(c) = &conn else { continue };
                if let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::debug!(error = %e, "passive checkpoint failed; the writer retries");
                }
            }
        });
    if let Err(e) = spawned {
        // Without the thread, fall back to SQLite's own automatic checkpoints.
        tracing::warn!(error = %e, "no checkpoint thread; checkpoints run inside commits");
        conn.wal_hook(None::<fn(&mut rusqlite::hooks::Wal, i32) -> rusqlite::Result<()>>)?;
        conn.pragma_update(None, "wal_autocheckpoint", CHECKPOINT_PAGES)?;
    }
    Ok(())
}
