//! WAL checkpoints off the write path.
//!
//! SQLite's automatic checkpoint runs inside the commit that grows the WAL past 1000 pages,
//! and a checkpoint syncs the database file: one edit in about sixty paid several
//! milliseconds for it. Instead, a WAL hook notices a large WAL and wakes a thread with its
//! own connection, which runs a passive checkpoint (it never blocks writers or readers). When
//! the last connection to a replica closes, SQLite checkpoints and removes the WAL as usual.

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};

use rusqlite::{Connection, OpenFlags};

/// WAL size, in pages, at which a checkpoint is started.
const CHECKPOINT_PAGES: i32 = 1000;

/// Registers the WAL hook on `conn` and starts the checkpoint thread for the database at
/// `path`. The thread ends when `conn` is closed (the hook, which holds the only sender,
/// goes with it).
pub(crate) fn install(conn: &mut Connection, path: PathBuf) -> rusqlite::Result<()> {
    let (wake, wakes) = sync_channel::<()>(1);
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages: i32| {
        if pages >= CHECKPOINT_PAGES {
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
                if let Some(c) = &conn
                    && let Err(e) = c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                {
                    tracing::debug!(error = %e, "passive checkpoint failed; SQLite retries at close");
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
