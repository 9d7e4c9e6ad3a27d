//! Backups of a device's replica: a copy written while other processes keep writing, the
//! check that a file is a replica, and putting a copy back in place.
//!
//! - [`Store::backup`] copies the replica with SQLite's online backup API in one step: the
//!   copy is the replica as of one read transaction, taken while `crm serve` or `crm sync
//!   --watch` keep committing (a WAL reader does not block writers, and a step-by-step backup
//!   would start over after every commit of another connection). The copy is written to a
//!   temporary file beside the destination, switched to a rollback journal (one
//!   self-contained file), synced, checked like a file to restore, and only then renamed to
//!   its name.
//! - [`Store::verify_file`] opens a file read-only and checks it as `Store::open` checks a
//!   replica (`replica::format_of`: our application id, a format this build reads, the
//!   tables) plus SQLite's `PRAGMA integrity_check`, and says what it holds
//!   ([`ReplicaSummary`]).
//! - [`Store::restore`] checks the file, copies it (again with the backup API, so a WAL
//!   beside it counts) into a temporary file in the data directory, syncs it, and renames it
//!   over the replica while holding the old replica's exclusive lock, which it can only take
//!   when no other process has the replica open. The old replica's `-wal`, `-shm` and
//!   `-journal` go first: SQLite would otherwise apply them to the new file.
//!
//! A restored replica keeps the backup's sync cursor and outbox: the next sync pulls what the
//! relay has after that position (this device's own pushed changes included) and pushes the
//! outbox again (pushes are idempotent). What was edited here after the backup and never
//! reached the relay is lost.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::error::StoreError;
use crate::replica::{REPLICA_FILE, format_of, immutable_uri};

/// How long a step of the backup API waits for a lock before it tries again, and how many
/// times it tries. Our source connection holds its read transaction before the step, so a
/// wait is rare (another connection recovering the WAL).
const STEP_RETRY: std::time::Duration = std::time::Duration::from_millis(50);
const STEP_TRIES: u32 = 200;

/// How long a restore waits for the old replica's exclusive lock before it decides another
/// process has the replica open.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Lines of `PRAGMA integrity_check` kept in an error.
const INTEGRITY_LINES: usize = 5;

/// What to do when the destination already exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IfExists {
    /// Fail with [`BackupError::Exists`] or [`BackupError::ReplicaExists`].
    Refuse,
    /// Replace it.
    Replace,
}

/// What a replica file holds, as [`Store::verify_file`], [`Store::backup`] and
/// [`Store::restore`] found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSummary {
    /// The file: the backup written, the file verified, or the replica restored.
    pub path: PathBuf,
    /// Its size in bytes.
    pub bytes: u64,
    /// Its replica format (`PRAGMA user_version`).
    pub format: i64,
    pub replica_id: String,
    pub user: String,
    pub device: String,
    /// Records (documents whose creation is there).
    pub records: u64,
    /// Stored changes.
    pub changes: u64,
    /// Local changes the relay had not acknowledged (they are pushed again after a restore).
    pub pending: u64,
    /// The relay log position the replica had synced to, when it had synced.
    pub cursor: Option<u64>,
}

/// Why a backup, a check of a file or a restore failed. Nothing was changed: a backup that
/// fails leaves no file, a restore that fails leaves the replica as it was.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("there is no file {}", path.display())]
    Missing { path: PathBuf },
    #[error("{} is not a file", path.display())]
    NotAFile { path: PathBuf },
    #[error("there is no directory {} to write {} in", dir.display(), path.display())]
    NoDirectory { dir: PathBuf, path: PathBuf },
    #[error("{} is an empty file, not a replica backup", path.display())]
    Empty { path: PathBuf },
    /// The file is not a replica this build reads (another application's database, a newer
    /// format, not SQLite at all); the source says which.
    #[error("{} is not a replica backup", path.display())]
    NotAReplica {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    #[error("{} is damaged: SQLite's integrity check found: {detail}", path.display())]
    Damaged { path: PathBuf, detail: String },
    #[error("{} already exists; nothing was written (pass --force to replace it)", path.display())]
    Exists { path: PathBuf },
    #[error(
        "{} already holds a replica; nothing was changed (pass --force to replace it with the \
         backup: its edits that never reached the relay are lost)",
        dir.display()
    )]
    ReplicaExists { dir: PathBuf },
    #[error("{} is the replica itself, not a separate file", path.display())]
    SameFile { path: PathBuf },
    #[error(
        "the replica in {} is open in another process (`crm serve`, `crm sync --watch`?); stop \
         it and try again; nothing was changed",
        dir.display()
    )]
    InUse {
        dir: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{} stayed locked by another connection; try again", path.display())]
    Locked { path: PathBuf },
    /// The copy of a backup did not pass its check; it was removed.
    #[error("the copy of the replica failed its check, so {} was not written", path.display())]
    BadCopy {
        path: PathBuf,
        #[source]
        source: Box<BackupError>,
    },
    /// The replica to back up cannot be read.
    #[error(transparent)]
    Replica(#[from] StoreError),
    #[error("{}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl BackupError {
    /// Whether the error is the caller's input (a file that is not a replica backup, a
    /// destination that exists) rather than a failure of the replica or the machine.
    pub fn is_invalid_input(&self) -> bool {
        match self {
            BackupError::Missing { .. }
            | BackupError::NotAFile { .. }
            | BackupError::NoDirectory { .. }
            | BackupError::Empty { .. }
            | BackupError::NotAReplica { .. }
            | BackupError::Damaged { .. }
            | BackupError::Exists { .. }
            | BackupError::ReplicaExists { .. }
            | BackupError::SameFile { .. } => true,
            BackupError::Replica(e) => e.is_invalid_input(),
            BackupError::InUse { .. }
            | BackupError::Locked { .. }
            | BackupError::BadCopy { .. }
            | BackupError::Sqlite { .. }
            | BackupError::Io { .. } => false,
        }
    }
}

type Result<T, E = BackupError> = std::result::Result<T, E>;

impl crate::Store {
    /// Copies the replica in `dir` to the file `to` while other processes may be writing it
    /// (see the module docs), checks the copy and says what it holds. `to` must not be the
    /// replica itself; an existing `to` is replaced only with [`IfExists::Replace`].
    pub fn backup(dir: &Path, to: &Path, if_exists: IfExists) -> Result<ReplicaSummary> {
        let replica = dir.join(REPLICA_FILE);
        if !replica.is_file() {
            return Err(StoreError::NotAReplica { dir: dir.into() }.into());
        }
        if std::fs::metadata(&replica).is_ok_and(|m| m.len() == 0) {
            return Err(StoreError::EmptyFile { path: replica }.into());
        }
        if same_file(&replica, to) {
            return Err(BackupError::SameFile { path: to.into() });
        }
        match std::fs::metadata(to) {
            Ok(m) if m.is_dir() => return Err(BackupError::NotAFile { path: to.into() }),
            Ok(_) if if_exists == IfExists::Refuse => {
                return Err(BackupError::Exists { path: to.into() });
            }
            _ => {}
        }
        if !parent_of(to).is_dir() {
            return Err(BackupError::NoDirectory {
                dir: parent_of(to).into(),
                path: to.into(),
            });
        }
        let source = open_source(&replica)?;

        let temp = temp_beside(to, ".crm-backup-")?;
        copy(&source, &replica, &temp)?;
        drop(source);
        let mut summary = match inspect(&temp, to, Integrity::Check) {
            Ok((_, summary)) => summary,
            // Dropping `temp` removes the copy.
            Err(e) => {
                return Err(BackupError::BadCopy {
                    path: to.into(),
                    source: Box::new(e),
                });
            }
        };
        remove_side_files(to)?;
        let persisted = match if_exists {
            IfExists::Replace => temp.persist(to),
            IfExists::Refuse => temp.persist_noclobber(to),
        };
        if let Err(e) = persisted {
            return Err(if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::Exists { path: to.into() }
            } else {
                BackupError::Io {
                    path: to.into(),
                    source: e.error,
                }
            });
        }
        sync_dir(to)?;
        summary.path = to.into();
        summary.bytes = file_len(to)?;
        Ok(summary)
    }

    /// Checks that `path` is a replica this build can open (the checks of `Store::open`) and
    /// that SQLite's integrity check passes; says what it holds. Reads only.
    pub fn verify_file(path: &Path) -> Result<ReplicaSummary> {
        inspect(path, path, Integrity::Check).map(|(_, summary)| summary)
    }

    /// Replaces the replica in `dir` with the backup `from` (see the module docs), creating
    /// `dir` if need be. `from` is checked first ([`Store::verify_file`]); an existing
    /// replica is replaced only with [`IfExists::Replace`] and only when no other process has
    /// it open. The replica is never half-written: it is the old one or the backup.
    pub fn restore(dir: &Path, from: &Path, if_exists: IfExists) -> Result<ReplicaSummary> {
        let replica = dir.join(REPLICA_FILE);
        if same_file(&replica, from) {
            return Err(BackupError::SameFile { path: from.into() });
        }
        // Checked and copied in one read transaction of `from`.
        let (source, mut summary) = inspect(from, from, Integrity::Check)?;
        let exists = std::fs::symlink_metadata(&replica).is_ok();
        if exists && if_exists == IfExists::Refuse {
            return Err(BackupError::ReplicaExists { dir: dir.into() });
        }
        std::fs::create_dir_all(dir).map_err(|source| BackupError::Io {
            path: dir.into(),
            source,
        })?;
        let temp = temp_beside(&replica, ".replica.db.restore-")?;
        copy(&source, from, &temp)?;
        drop(source);
        // The backup API copies pages faithfully and `from` passed its integrity check: a
        // quick look at the copy suffices.
        inspect(&temp, &replica, Integrity::Skip)?;

        // Held until the new file is in place: no other process reads or writes the old
        // replica meanwhile, nor makes a `-wal` for it.
        let lock = if exists {
            lock_old(dir, &replica)?
        } else {
            None
        };
        remove_side_files(&replica)?;
        let persisted = match if_exists {
            IfExists::Replace => temp.persist(&replica),
            IfExists::Refuse => temp.persist_noclobber(&replica),
        };
        if let Err(e) = persisted {
            return Err(if e.error.kind() == std::io::ErrorKind::AlreadyExists {
                BackupError::ReplicaExists { dir: dir.into() }
            } else {
                BackupError::Io {
                    path: replica,
                    source: e.error,
                }
            });
        }
        sync_dir(&replica)?;
        drop(lock);
        summary.bytes = file_len(&replica)?;
        summary.path = replica;
        Ok(summary)
    }
}

/// Whether to run `PRAGMA integrity_check`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Integrity {
    Check,
    Skip,
}

/// Opens `path` read-only and checks it is a replica (errors name `shown`); returns the
/// connection, with the read transaction the checks ran in still open, and the summary.
fn inspect(
    path: &Path,
    shown: &Path,
    integrity: Integrity,
) -> Result<(Connection, ReplicaSummary)> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Missing { path: shown.into() });
        }
        Err(source) => {
            return Err(BackupError::Io {
                path: shown.into(),
                source,
            });
        }
    };
    if !meta.is_file() {
        return Err(BackupError::NotAFile { path: shown.into() });
    }
    if meta.len() == 0 {
        return Err(BackupError::Empty { path: shown.into() });
    }
    let not_a_replica = |source| BackupError::NotAReplica {
        path: shown.into(),
        source,
    };
    let corrupt = |source| {
        not_a_replica(StoreError::Corrupt {
            path: shown.into(),
            source,
        })
    };
    let conn = open_read_only(path).map_err(corrupt)?;
    // Everything below reads one snapshot, which a restore then copies.
    conn.execute_batch("BEGIN").map_err(corrupt)?;
    let format = format_of(&conn, shown).map_err(not_a_replica)?;
    let count = |sql: &str| -> rusqlite::Result<u64> {
        let n: i64 = conn.query_row(sql, [], |r| r.get(0))?;
        Ok(u64::try_from(n).unwrap_or(0))
    };
    let records =
        count("SELECT count(*) FROM documents WHERE kind IS NOT NULL").map_err(corrupt)?;
    let changes = count("SELECT count(*) FROM changes").map_err(corrupt)?;
    let pending = count("SELECT count(*) FROM outbox").map_err(corrupt)?;
    let meta_value = |key: &str| -> rusqlite::Result<String> {
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()?
            .unwrap_or_default())
    };
    let replica_id = meta_value("replica_id").map_err(corrupt)?;
    let user = meta_value("user").map_err(corrupt)?;
    let device = meta_value("device").map_err(corrupt)?;
    let cursor = crate::sync::read_cursor(&conn)
        .map_err(not_a_replica)?
        .map(|c| c.seq);
    if integrity == Integrity::Check {
        let mut stmt = conn
            .prepare(&format!("PRAGMA integrity_check({INTEGRITY_LINES})"))
            .map_err(corrupt)?;
        let lines: Vec<String> = stmt
            .query_map([], |r| r.get(0))
            .and_then(|rows| rows.collect())
            .map_err(corrupt)?;
        drop(stmt);
        if lines.iter().any(|l| l != "ok") {
            return Err(BackupError::Damaged {
                path: shown.into(),
                detail: lines.join("; "),
            });
        }
    }
    let summary = ReplicaSummary {
        path: shown.into(),
        bytes: meta.len(),
        format,
        replica_id,
        user,
        device,
        records,
        changes,
        pending,
        cursor,
    };
    Ok((conn, summary))
}

fn file_len(path: &Path) -> Result<u64> {
    std::fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| BackupError::Io {
            path: path.into(),
            source,
        })
}

fn open_read_only(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(conn)
}

/// The replica at `path` opened read-only for a backup. One that SQLite cannot make the
/// shared files of a WAL reader for (a read-only directory, a full disk) is read as it is on
/// disk, as `Store::open` reads it.
fn open_source(path: &Path) -> Result<Connection> {
    let corrupt = |source| StoreError::Corrupt {
        path: path.into(),
        source,
    };
    let conn = open_read_only(path).map_err(corrupt)?;
    match format_of(&conn, path) {
        Ok(_) => Ok(conn),
        Err(e) if e.cannot_write().is_some() => {
            drop(conn);
            let conn = Connection::open_with_flags(
                immutable_uri(path),
                OpenFlags::SQLITE_OPEN_READ_ONLY
                    | OpenFlags::SQLITE_OPEN_URI
                    | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(corrupt)?;
            format_of(&conn, path)?;
            Ok(conn)
        }
        Err(e) => Err(e.into()),
    }
}

/// Copies the database open on `source` (named `shown` in errors) into the empty file `to`
/// in one step of the backup API, as of `source`'s read transaction (or one the step opens),
/// then leaves the copy in rollback-journal mode and synced to disk.
fn copy(source: &Connection, shown: &Path, to: &Path) -> Result<()> {
    let sqlite = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Sqlite { path, source }
    };
    let mut dest = Connection::open(to).map_err(sqlite(to))?;
    {
        let backup = Backup::new(source, &mut dest).map_err(sqlite(shown))?;
        let mut tries = 0;
        loop {
            // All pages in one step: a step-by-step copy starts over whenever another
            // connection commits between two steps, so under steady writes it never ends.
            match backup.step(-1).map_err(sqlite(shown))? {
                StepResult::Done => break,
                StepResult::More => {}
                // Busy, Locked, and whatever a later rusqlite adds: wait and retry.
                _ => {
                    tries += 1;
                    if tries >= STEP_TRIES {
                        return Err(BackupError::Locked { path: shown.into() });
                    }
                    std::thread::sleep(STEP_RETRY);
                }
            }
        }
    }
    // The copy carries the source's WAL flag in its header; a rollback journal makes it one
    // self-contained file (opening it as a replica turns WAL back on).
    let mode: String = dest
        .query_row("PRAGMA journal_mode = DELETE", [], |r| r.get(0))
        .map_err(sqlite(to))?;
    if !mode.eq_ignore_ascii_case("delete") {
        tracing::warn!(file = %to.display(), mode, "the copy stayed in another journal mode");
    }
    dest.close().map_err(|(_, e)| sqlite(to)(e))?;
    File::open(to)
        .and_then(|f| f.sync_all())
        .map_err(|source| BackupError::Io {
            path: to.into(),
            source,
        })
}

/// An empty temporary file in the directory of `path`, removed when dropped.
fn temp_beside(path: &Path, prefix: &str) -> Result<tempfile::TempPath> {
    let dir = parent_of(path);
    tempfile::Builder::new()
        .prefix(prefix)
        .tempfile_in(dir)
        .map(tempfile::NamedTempFile::into_temp_path)
        .map_err(|source| BackupError::Io {
            path: dir.into(),
            source,
        })
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Whether `other` names the replica file `replica` (or one of its SQLite side files), by
/// way of any path.
fn same_file(replica: &Path, other: &Path) -> bool {
    let canonical = |p: &Path| -> Option<PathBuf> {
        let name = p.file_name()?;
        Some(std::fs::canonicalize(parent_of(p)).ok()?.join(name))
    };
    let (Some(replica), Some(other)) = (canonical(replica), canonical(other)) else {
        return false;
    };
    if replica == other {
        return true;
    }
    ["-wal", "-shm", "-journal"]
        .iter()
        .any(|suffix| side_file(&replica, suffix) == other)
}

fn side_file(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Removes the `-wal`, `-shm` and `-journal` files of the database at `path`: left beside a
/// new file under that name, SQLite would apply them to it.
fn remove_side_files(path: &Path) -> Result<()> {
    for suffix in ["-wal", "-journal", "-shm"] {
        let side = side_file(path, suffix);
        match std::fs::remove_file(&side) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BackupError::Io { path: side, source }),
        }
    }
    Ok(())
}

/// Takes the old replica's exclusive lock for a restore, after folding its WAL into it:
/// leaving WAL mode needs every other connection closed, so this fails with
/// [`BackupError::InUse`] while another process has the replica open. A file SQLite cannot
/// open as a database has no lock to take (`None`): it is replaced as it is.
fn lock_old(dir: &Path, replica: &Path) -> Result<Option<Connection>> {
    let in_use = |source| BackupError::InUse {
        dir: dir.into(),
        source,
    };
    let conn = match Connection::open_with_flags(
        replica,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "the old replica does not open; replacing it as it is");
            return Ok(None);
        }
    };
    let locked = conn
        .busy_timeout(LOCK_WAIT)
        .and_then(|()| {
            conn.query_row("PRAGMA journal_mode = DELETE", [], |r| {
                r.get::<_, String>(0)
            })
        })
        .and_then(|mode| {
            // SQLite reports the mode it kept when it could not leave WAL.
            if !mode.eq_ignore_ascii_case("delete") {
                return Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                    Some(format!("the replica stayed in {mode} mode")),
                ));
            }
            conn.execute_batch("BEGIN EXCLUSIVE")
        });
    match locked {
        Ok(()) => Ok(Some(conn)),
        Err(e)
            if matches!(
                e.sqlite_error_code(),
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            ) =>
        {
            Err(in_use(e))
        }
        Err(e) => {
            tracing::warn!(error = %e, "the old replica cannot be locked; replacing it as it is");
            Ok(None)
        }
    }
}

/// Syncs the directory of `path`, so a rename into it survives a power cut.
fn sync_dir(path: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let dir = parent_of(path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|source| BackupError::Io {
                path: dir.into(),
                source,
            })?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}
