//! The embedded default: SQLite in WAL mode.
//!
//! **Write strategy.** SQLite has one writer at a time. Writes go through a pool of exactly one
//! connection, so writers in this process queue fairly in the pool (async, FIFO) instead of
//! sleeping in SQLite's busy handler; every write is a `BEGIN IMMEDIATE` transaction, which
//! takes the write lock when it starts. The immediate start matters when another process (the
//! CLI while the server runs) writes to the same file: a deferred transaction that has read and
//! then wants to write fails at once with `SQLITE_BUSY` when its snapshot is stale, whereas an
//! immediate one waits up to `busy_timeout` (2 s) for the lock and then reads fresh data. Reads
//! use a separate pool of read-only (`query_only`) connections, which WAL lets run alongside the
//! writer.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Pool, Sqlite};

use crate::sql::{release_guard, BatchForm, Dialect, SqlStore};
use crate::ConnectError;

/// The [`rekey_core::ports::store::Store`] on SQLite.
pub type SqliteStore = SqlStore<Sqlite>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

static DIALECT: Dialect = Dialect {
    name: "sqlite",
    begin_write: Some("BEGIN IMMEDIATE"),
    lone_statement_commits: false,
    lock_user: None,
    batch: BatchForm::Statements,
    claim_lock: "",
    position: "instr",
    code_point_order: "",
    json_strings: |placeholder| format!("SELECT value FROM json_each({placeholder})"),
    migrator: &MIGRATOR,
};

/// How long a statement waits for another process's write lock, and a caller for a pooled
/// connection, before the request fails as unavailable (503): well under the request deadline,
/// so a stuck database is reported as such instead of as a timeout.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(2);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);
const READERS: u32 = 8;

/// Where a `sqlite:` URL points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SqliteTarget {
    File(PathBuf),
    Memory,
}

/// `sqlite://rel/path` (relative to the working directory), `sqlite:///abs/path`, or
/// `sqlite::memory:`. Query parameters are not supported: the store sets its own options.
pub(crate) fn parse_url(url: &str) -> Result<SqliteTarget, ConnectError> {
    if url == "sqlite::memory:" || url == "sqlite://:memory:" {
        return Ok(SqliteTarget::Memory);
    }
    let path = url
        .strip_prefix("sqlite://")
        .ok_or(ConnectError::InvalidUrl("expected sqlite://path"))?;
    if path.contains('?') {
        return Err(ConnectError::InvalidUrl(
            "sqlite URL parameters are not supported",
        ));
    }
    if path.is_empty() || path.ends_with('/') {
        return Err(ConnectError::InvalidUrl("sqlite URL names no file"));
    }
    Ok(SqliteTarget::File(PathBuf::from(path)))
}

/// Creates `dir` (and missing parents) readable by the service's user only: it holds the
/// password hashes and, beside them, the generated keys.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Creates the database file 0600 before SQLite opens it (SQLite gives its `-wal` and `-shm`
/// files the database file's mode), and narrows a file an older version left group- or
/// world-readable.
fn make_private_file(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), "database file was readable by others; making it 0600");
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                }
            }
            Err(err) => return Err(err),
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

impl SqlStore<Sqlite> {
    /// Opens `sqlite://…` (see [`crate::connect`] for the forms).
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        match parse_url(url)? {
            SqliteTarget::File(path) => Self::open(&path).await,
            SqliteTarget::Memory => Self::open_in_memory().await,
        }
    }

    /// Opens (creating it and its directory when missing) the database file at `path` and
    /// applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self, ConnectError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(ConnectError::CreateDir)?;
        }
        make_private_file(path).map_err(ConnectError::CreateDir)?;
        let base = SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(BUSY_TIMEOUT)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Normal);
        // WAL is a property of the file: set once by the writer, which also creates the file.
        let writer_options = base
            .clone()
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(release_guard::<Sqlite>)
            .connect_with(writer_options)
            .await
            .map_err(ConnectError::Database)?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .map_err(ConnectError::Database)?;
        SqlStore::migrate(reader, writer, &DIALECT).await
    }

    /// A private in-memory database (one connection serves reads and writes; it lives as long
    /// as the store). For tests and experiments.
    pub async fn open_in_memory() -> Result<Self, ConnectError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")
            .map_err(ConnectError::Database)?
            .foreign_keys(true);
        let pool: Pool<Sqlite> = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(ConnectError::Database)?;
        SqlStore::migrate(pool.clone(), pool, &DIALECT).await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("sqlite://rekey-data/rekey.db").unwrap(),
            SqliteTarget::File(PathBuf::from("rekey-data/rekey.db"))
        );
        assert_eq!(
            parse_url("sqlite:///var/lib/rekey/rekey.db").unwrap(),
            SqliteTarget::File(PathBuf::from("/var/lib/rekey/rekey.db"))
        );
        assert_eq!(parse_url("sqlite::memory:").unwrap(), SqliteTarget::Memory);
        for bad in [
            "sqlite://",
            "sqlite:///",
            "sqlite:x.db",
            "sqlite://x.db?mode=rwc",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }
}
