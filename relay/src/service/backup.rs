//! `backup` and `restore` of a SQLite relay: a file is written beside its destination, made
//! durable and checked ([`Relay::verify`]), and only then renamed into place, so a failure at
//! any point leaves the destination as it was. (A PostgreSQL relay is backed up with
//! `pg_dump`.)
//!
//! A restored relay keeps the backup's identity and log positions: a device whose cursor is
//! in the backup's log resumes from it; one whose cursor is past the backup's head (or names
//! a change the backup does not have at that position) starts over and pushes everything it
//! has again, so the relay gets back whatever any device still holds.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::Relay;
use super::verify::VerifyReport;
use crate::ids::WorkspaceId;
use crate::store::{FILE_NAME, SqliteStore, StoreError, in_use};

/// What [`backup`] wrote.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackupReport {
    pub file: PathBuf,
    pub bytes: u64,
    pub relay_id: Uuid,
    pub workspaces: Vec<WorkspaceHead>,
    pub verify: VerifyReport,
}

/// What [`restore`] put in place.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RestoreReport {
    /// The database file now in place.
    pub file: PathBuf,
    pub relay_id: Uuid,
    /// The backup's format, and the format it was upgraded to (this build's).
    pub format_before: i64,
    pub format: i64,
    pub workspaces: Vec<WorkspaceHead>,
    pub verify: VerifyReport,
}

/// A workspace and its log's head.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkspaceHead {
    pub id: WorkspaceId,
    pub name: String,
    pub head: u64,
}

/// Why a backup or a restore did nothing.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{0} exists already; --force replaces it")]
    Exists(PathBuf),
    #[error("no file {0}")]
    NoSuchFile(PathBuf),
    #[error("no directory {0} to write into")]
    NoSuchDirectory(PathBuf),
    #[error("{0} does not name a file")]
    NotAFile(PathBuf),
    #[error(
        "{0} is open in another process (a relay serving it, or another crm-relay command); \
         stop the relay first"
    )]
    InUse(PathBuf),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{what} has {} problems ({}); nothing was written (`crm-relay verify` lists them)",
        report.problem_count,
        report.problems.first().map_or("", |p| p.detail.as_str())
    )]
    Damaged {
        what: String,
        report: Box<VerifyReport>,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl FileError {
    /// Whether the input was wrong (rather than the files or the store failing).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            FileError::Exists(_)
                | FileError::NoSuchFile(_)
                | FileError::NoSuchDirectory(_)
                | FileError::NotAFile(_)
        )
    }
}

/// Copies the relay database in `dir` to `file` while a relay may serve it: SQLite's online
/// backup API into a temporary file beside `file`, synced, verified, then renamed. An
/// existing `file` is refused unless `force`.
pub fn backup(dir: &Path, file: &Path, force: bool) -> Result<BackupReport, FileError> {
    let source = dir.join(FILE_NAME);
    if !source.is_file() {
        return Err(StoreError::Missing(dir.display().to_string()).into());
    }
    let name = file
        .file_name()
        .ok_or_else(|| FileError::NotAFile(file.to_path_buf()))?;
    if file.is_dir() {
        return Err(FileError::NotAFile(file.to_path_buf()));
    }
    if file.exists() && !force {
        return Err(FileError::Exists(file.to_path_buf()));
    }
    let parent = parent_of(file);
    if !parent.is_dir() {
        return Err(FileError::NoSuchDirectory(parent));
    }
    let temp = Temp(parent.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        Uuid::now_v7().simple()
    )));
    {
        let store = SqliteStore::open_read_only(&source)?;
        store.backup_to(&temp.0)?;
    }
    sync_file(&temp.0)?;
    let (relay_id, workspaces, verify) = check(&temp.0, "the copy")?;
    let bytes = std::fs::metadata(&temp.0)
        .map_err(|source| io("read", &temp.0, source))?
        .len();
    rename(temp, file)?;
    Ok(BackupReport {
        file: file.to_path_buf(),
        bytes,
        relay_id,
        workspaces,
        verify,
    })
}

/// Puts the backup `file` in place as `dir`'s relay database: checked to be a crm-relay
/// database without writing to it, copied beside the destination, upgraded to this build's
/// format, verified, synced and renamed over `dir/relay.db` (whose stale WAL files are
/// removed). An existing database is refused unless `force`, and always while a process has
/// it open.
pub fn restore(file: &Path, dir: &Path, force: bool) -> Result<RestoreReport, FileError> {
    if !file.is_file() {
        return Err(FileError::NoSuchFile(file.to_path_buf()));
    }
    let format_before = SqliteStore::format_of(file)?;
    let target = dir.join(FILE_NAME);
    if target.exists() {
        if !force {
            return Err(FileError::Exists(target));
        }
        refuse_in_use(&target)?;
    }
    std::fs::create_dir_all(dir).map_err(|source| StoreError::DataDir {
        path: dir.to_path_buf(),
        source,
    })?;
    let temp = Temp(dir.join(format!(".{FILE_NAME}.restore-{}", Uuid::now_v7().simple())));
    SqliteStore::copy_file(file, &temp.0)?;
    let (relay_id, workspaces, verify) = {
        // Upgraded here, on the copy: the backup itself is never written.
        let store = SqliteStore::open_existing(&temp.0)?;
        store.checkpoint()?;
        drop(store);
        check(&temp.0, "the backup")?
    };
    for stale in wal_files(&temp.0) {
        remove_if_exists(&stale)?;
    }
    sync_file(&temp.0)?;
    if target.exists() {
        refuse_in_use(&target)?;
    }
    // The old database's WAL must not be read as the new one's.
    for stale in wal_files(&target) {
        remove_if_exists(&stale)?;
    }
    rename(temp, &target)?;
    Ok(RestoreReport {
        file: target,
        relay_id,
        format_before,
        format: crate::store::SQLITE_FORMAT,
        workspaces,
        verify,
    })
}

/// Opens the database file at `path` read-only and verifies it; refuses it with its
/// problems, named `what`.
fn check(path: &Path, what: &str) -> Result<(Uuid, Vec<WorkspaceHead>, VerifyReport), FileError> {
    let relay = Relay::new(Arc::new(SqliteStore::open_read_only(path)?));
    let report = relay.verify()?;
    if !report.is_sound() {
        return Err(FileError::Damaged {
            what: what.to_string(),
            report: Box::new(report),
        });
    }
    let workspaces = relay
        .workspaces()?
        .into_iter()
        .map(|w| WorkspaceHead {
            id: w.id,
            name: w.name,
            head: w.head,
        })
        .collect();
    Ok((Uuid::from_bytes(relay.relay_id()), workspaces, report))
}

fn refuse_in_use(path: &Path) -> Result<(), FileError> {
    if in_use(path)? {
        return Err(FileError::InUse(path.to_path_buf()));
    }
    Ok(())
}

/// A file being written, removed (with SQLite's files beside it) unless renamed into place.
struct Temp(PathBuf);

impl Drop for Temp {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        for file in wal_files(&self.0)
            .into_iter()
            .chain([suffixed(&self.0, "-journal")])
        {
            let _ = std::fs::remove_file(file);
        }
    }
}

/// Renames `temp` to `to` and syncs the directory, so the rename survives a power cut.
fn rename(temp: Temp, to: &Path) -> Result<(), FileError> {
    std::fs::rename(&temp.0, to).map_err(|source| io("rename a file to", to, source))?;
    // Renamed: nothing to remove any more.
    std::mem::forget(temp);
    let parent = parent_of(to);
    std::fs::File::open(&parent)
        .and_then(|d| d.sync_all())
        .map_err(|source| io("sync the directory", &parent, source))
}

fn sync_file(path: &Path) -> Result<(), FileError> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|source| io("sync", path, source))
}

fn remove_if_exists(path: &Path) -> Result<(), FileError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(io("remove", path, source)),
    }
}

fn wal_files(db: &Path) -> [PathBuf; 2] {
    [suffixed(db, "-wal"), suffixed(db, "-shm")]
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn parent_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn io(what: &'static str, path: &Path, source: std::io::Error) -> FileError {
    FileError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
