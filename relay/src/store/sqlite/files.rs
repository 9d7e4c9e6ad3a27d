//! A SQLite store as a file: opening one read-only (a backup to check), copying one with
//! SQLite's online backup API while a relay serves it, and finding out whether a relay has it
//! open. What `backup` and `restore` do with these is in `crate::service::files`.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;

use super::{FORMAT_VERSION, Header, SqliteStore, connect, header, read_relay_id};
use crate::store::StoreError;

/// Pages copied per step of a backup: writers wait at most one step for the copy.
const BACKUP_STEP_PAGES: i32 = 1024;

impl SqliteStore {
    /// Opens the database file at `path` for reading only: nothing is written to it, not
    /// even an upgrade. It must be a crm-relay database of this build's format
    /// ([`StoreError::Older`] otherwise: an upgrade writes).
    pub fn open_read_only(path: &Path) -> Result<SqliteStore, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = connect(path, true)?;
        match header(&conn, path)? {
            Header::Empty => return Err(StoreError::Foreign(path.display().to_string())),
            Header::Relay(version) if version < FORMAT_VERSION => {
                return Err(StoreError::Older {
                    location: path.display().to_string(),
                    found: version,
                    supported: FORMAT_VERSION,
                });
            }
            Header::Relay(_) => {}
        }
        let relay_id = read_relay_id(&conn)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            relay_id,
            read_only: true,
            writer: Mutex::new(conn),
            readers: Mutex::new(Vec::new()),
        })
    }

    /// The format of the crm-relay database at `path`, read without writing anything;
    /// [`StoreError::Foreign`] for any other file, [`StoreError::Newer`] for a format this
    /// build does not know.
    pub fn format_of(path: &Path) -> Result<i64, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Missing(path.display().to_string()));
        }
        let conn = connect(path, true)?;
        match header(&conn, path)? {
            Header::Empty => Err(StoreError::Foreign(path.display().to_string())),
            Header::Relay(version) => {
                read_relay_id(&conn)?;
                Ok(version)
            }
        }
    }

    /// Copies the database to `target` with SQLite's online backup API, while the relay
    /// serves: the copy is the database as of one moment, in rollback-journal mode (one
    /// self-contained file). `target` must not exist.
    pub fn backup_to(&self, target: &Path) -> Result<(), StoreError> {
        copy_database(&self.path, self.read_only, target)
    }

    /// Copies the database file at `source`, opened read-only, to a new file `target` with
    /// the online backup API: a consistent copy whatever writes `source` meanwhile,
    /// including what is still in its WAL.
    pub fn copy_file(source: &Path, target: &Path) -> Result<(), StoreError> {
        copy_database(source, true, target)
    }

    /// Folds the WAL into the database file and empties it, so the file alone holds
    /// everything (before it is moved or copied as a file).
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let conn = self
            .writer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err(StoreError::Corrupt(format!(
                "{}: the WAL could not be checkpointed (a reader holds it)",
                self.path.display()
            )));
        }
        Ok(())
    }
}

/// Copies the database at `source` (read-only if `read_only`) to a new file `target` with
/// the online backup API: pages in steps, so a serving relay's writers are held off for one
/// step at a time, and restarted by SQLite when a writer changes a page already copied.
fn copy_database(source: &Path, read_only: bool, target: &Path) -> Result<(), StoreError> {
    let from = connect(source, read_only)?;
    let mut out = Connection::open(target)?;
    out.pragma_update(None, "synchronous", "FULL")?;
    {
        let backup = rusqlite::backup::Backup::new(&from, &mut out)?;
        backup.run_to_completion(BACKUP_STEP_PAGES, std::time::Duration::from_millis(5), None)?;
    }
    out.pragma_update(None, "journal_mode", "DELETE")?;
    Ok(())
}

/// Whether `path` is a database in WAL mode (its header says so) with no `-wal` file beside
/// it: one that nothing is writing, which a read-only connection would leave `-wal` and
/// `-shm` files beside.
pub(super) fn wal_mode_without_wal(path: &Path) -> bool {
    use std::io::Read as _;
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    if Path::new(&wal).exists() {
        return false;
    }
    // Bytes 18 and 19 of the header: the write and read versions, 2 for WAL.
    let mut header = [0u8; 20];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .is_ok_and(|()| header[18] == 2 && header[19] == 2)
}

/// The URI of `path` opened as immutable: read as it is, without locks or WAL files.
pub(super) fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for c in path.to_string_lossy().chars() {
        match c {
            '%' => uri.push_str("%25"),
            '?' => uri.push_str("%3f"),
            '#' => uri.push_str("%23"),
            c => uri.push(c),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Whether some process has the database at `path` open (a serving relay keeps its
/// connections open; so does any crm-relay command while it runs). Found out by asking
/// SQLite for an exclusive lock without waiting: in WAL mode every open connection holds a
/// shared lock, so the lock is refused while any is open. A file that does not exist is not
/// in use.
pub fn in_use(path: &Path) -> Result<bool, StoreError> {
    if !path.exists() {
        return Ok(false);
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::ZERO)?;
    conn.pragma_update(None, "locking_mode", "EXCLUSIVE")?;
    let probe = conn.execute_batch("BEGIN EXCLUSIVE; SELECT count(*) FROM sqlite_schema; COMMIT");
    match probe {
        Ok(()) => Ok(false),
        Err(rusqlite::Error::SqliteFailure(e, _))
            if matches!(
                e.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Ok(true)
        }
        Err(e) => Err(e.into()),
    }
}
