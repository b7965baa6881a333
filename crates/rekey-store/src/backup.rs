//! Online backup of the embedded SQLite database (`rekey backup FILE`).
//!
//! `VACUUM INTO` writes a compacted copy of the database as one read transaction sees it: a
//! consistent snapshot, taken from a WAL database while the server keeps writing (in WAL mode a
//! reader neither waits for the writer nor holds it up). The copy is a plain SQLite file in
//! rollback-journal mode — no `-wal` or `-shm` beside it — that the server opens like any other
//! (and switches back to WAL). It is checked with `PRAGMA integrity_check` before it is called
//! done.
//!
//! The source is opened read-only and no migration is applied, so a new binary can back up a
//! database before its first start migrates it. PostgreSQL has its own tools (`pg_dump`,
//! `pg_basebackup`); [`backup`] refuses such a URL and names them.

use std::path::{Path, PathBuf};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection, Row};

use crate::sqlite::{parse_url, SqliteTarget, BUSY_TIMEOUT};

/// What [`backup`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupReport {
    /// The database file that was copied.
    pub source: PathBuf,
    /// The size of the copy.
    pub bytes: u64,
    /// The latest migration applied in the copy (0 when none).
    pub schema_version: i64,
}

/// Why [`backup`] failed. A copy it started is removed again.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "this installation uses PostgreSQL, which `rekey backup` does not copy (it copies the \
         embedded SQLite database): back it up with pg_dump (a logical dump, e.g. \
         `pg_dump --format=custom`) or pg_basebackup (a physical copy, with WAL archiving for \
         point-in-time recovery)"
    )]
    Postgres,
    #[error("an in-memory database cannot be backed up")]
    Memory,
    #[error("unsupported database URL: {0}")]
    InvalidUrl(&'static str),
    #[error("there is no database at {}", .0.display())]
    NoDatabase(PathBuf),
    #[error("{} already exists: a backup never overwrites a file", .0.display())]
    Exists(PathBuf),
    #[error("the backup file name must be valid UTF-8")]
    NotUtf8,
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] std::io::Error),
    #[error("cannot copy the database")]
    Database(#[source] sqlx::Error),
    #[error("the copy failed its integrity check: {0}")]
    Integrity(String),
}

/// Copies the SQLite database named by `url` (see [`crate::connect`]) into the new file `dest`
/// (created 0600: it holds the password hashes), consistently and while other connections —
/// the running server's — keep reading and writing. Refuses when `dest` exists.
pub async fn backup(url: &str, dest: &Path) -> Result<BackupReport, BackupError> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Err(BackupError::Postgres);
    }
    let source = match parse_url(url).map_err(|err| match err {
        crate::ConnectError::InvalidUrl(why) => BackupError::InvalidUrl(why),
        _ => BackupError::InvalidUrl("expected sqlite://path"),
    })? {
        SqliteTarget::File(path) => path,
        SqliteTarget::Memory => return Err(BackupError::Memory),
    };
    if !source.is_file() {
        return Err(BackupError::NoDatabase(source));
    }
    let dest_text = dest.to_str().ok_or(BackupError::NotUtf8)?.to_owned();
    // Created here, empty, so that the name is ours (no race with another writer of it) and
    // private before any byte is in it; VACUUM INTO accepts an empty file.
    let file = create_private(dest)?;
    match copy(&source, dest, &dest_text, &file).await {
        Ok((bytes, schema_version)) => Ok(BackupReport {
            source,
            bytes,
            schema_version,
        }),
        Err(err) => {
            drop(file);
            if let Err(remove) = std::fs::remove_file(dest) {
                tracing::warn!(path = %dest.display(), error = %remove, "could not remove the failed backup");
            }
            Err(err)
        }
    }
}

fn create_private(dest: &Path) -> Result<std::fs::File, BackupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(dest).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            BackupError::Exists(dest.to_owned())
        } else {
            BackupError::Write(dest.to_owned(), err)
        }
    })
}

/// The copy, made durable and checked: its size and schema version.
async fn copy(
    source: &Path,
    dest: &Path,
    dest_text: &str,
    file: &std::fs::File,
) -> Result<(u64, i64), BackupError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(source)
        .read_only(true)
        .busy_timeout(BUSY_TIMEOUT)
        .connect()
        .await
        .map_err(BackupError::Database)?;
    let vacuum = sqlx::query("VACUUM INTO $1")
        .bind(dest_text)
        .execute(&mut conn)
        .await
        .map_err(BackupError::Database);
    let _ = conn.close().await;
    vacuum?;
    // VACUUM INTO does not sync what it wrote.
    file.sync_all()
        .map_err(|e| BackupError::Write(dest.to_owned(), e))?;
    sync_parent(dest);
    let bytes = file
        .metadata()
        .map_err(|e| BackupError::Write(dest.to_owned(), e))?
        .len();
    let schema_version = verify(dest).await?;
    Ok((bytes, schema_version))
}

/// The directory entry of a new file is durable only once its directory is synced.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Err(err) = std::fs::File::open(parent).and_then(|d| d.sync_all()) {
            tracing::warn!(path = %parent.display(), error = %err, "could not sync the backup's directory");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

/// `PRAGMA integrity_check` on the copy (read-only), and its latest applied migration.
pub async fn verify(path: &Path) -> Result<i64, BackupError> {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .connect()
        .await
        .map_err(BackupError::Database)?;
    let result = async {
        let rows = sqlx::query("PRAGMA integrity_check")
            .fetch_all(&mut conn)
            .await
            .map_err(BackupError::Database)?;
        let lines: Vec<String> = rows
            .iter()
            .map(|row| row.try_get::<String, _>(0))
            .collect::<Result<_, _>>()
            .map_err(BackupError::Database)?;
        if lines != ["ok"] {
            return Err(BackupError::Integrity(lines.join("; ")));
        }
        let version: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut conn)
                .await
                .map_err(BackupError::Database)?;
        Ok(version.unwrap_or(0))
    }
    .await;
    let _ = conn.close().await;
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::SqliteStore;

    async fn database(dir: &Path) -> (String, SqliteStore) {
        let db = dir.join("data").join("rekey.db");
        let url = format!("sqlite://{}", db.display());
        let store = SqliteStore::connect(&url).await.unwrap();
        (url, store)
    }

    #[tokio::test]
    async fn copies_a_live_database_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let (url, store) = database(dir.path()).await;
        let dest = dir.path().join("copy.db");
        let report = backup(&url, &dest).await.unwrap();
        assert!(report.bytes > 0 && report.schema_version > 0, "{report:?}");
        assert_eq!(verify(&dest).await.unwrap(), report.schema_version);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&dest).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Nothing beside the copy: it is one self-contained file.
        assert!(!dir.path().join("copy.db-wal").exists());

        let before = std::fs::read(&dest).unwrap();
        assert!(matches!(
            backup(&url, &dest).await,
            Err(BackupError::Exists(_))
        ));
        assert_eq!(std::fs::read(&dest).unwrap(), before, "left untouched");

        // With the store closed (no -shm left by a running server) it works as well.
        store.close().await;
        let second = dir.path().join("second.db");
        backup(&url, &second).await.unwrap();
    }

    #[tokio::test]
    async fn refuses_what_it_cannot_copy() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("copy.db");
        let err = backup("postgres://u@localhost/db", &dest)
            .await
            .unwrap_err();
        assert!(matches!(err, BackupError::Postgres));
        let text = err.to_string();
        assert!(
            text.contains("pg_dump") && text.contains("pg_basebackup"),
            "{text}"
        );
        assert!(matches!(
            backup("sqlite::memory:", &dest).await,
            Err(BackupError::Memory)
        ));
        let missing = format!("sqlite://{}", dir.path().join("none.db").display());
        assert!(matches!(
            backup(&missing, &dest).await,
            Err(BackupError::NoDatabase(_))
        ));
        assert!(!dest.exists(), "no file left behind");
        assert!(!dir.path().join("none.db").exists(), "no database created");

        // A source that is not a database: the started copy is removed again.
        let junk = dir.path().join("junk.db");
        std::fs::write(&junk, b"not a database, just some bytes").unwrap();
        let url = format!("sqlite://{}", junk.display());
        assert!(matches!(
            backup(&url, &dest).await,
            Err(BackupError::Database(_))
        ));
        assert!(!dest.exists());
    }
}
