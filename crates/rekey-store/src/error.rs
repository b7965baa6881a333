//! How sqlx errors become [`StoreError`]s, and the errors of opening a store.

use std::sync::atomic::{AtomicU64, Ordering};

use rekey_core::ports::store::StoreError;

/// Database failures since start, for `/metrics` (`PoolStats::errors`): every error mapped by
/// [`db_error`] or [`corrupt`] and every operation [`crate::Bounded`] gave up on. One count
/// for the process: the failures are the database's, whichever store handle met them.
static DB_ERRORS: AtomicU64 = AtomicU64::new(0);

pub(crate) fn count_db_error() {
    DB_ERRORS.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn db_errors() -> u64 {
    DB_ERRORS.load(Ordering::Relaxed)
}

/// Why [`crate::connect`] (or a store constructor) failed. Never contains the URL: it may carry a
/// password.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL names no supported database (`sqlite://…`, `postgres://…`, `postgresql://…`).
    #[error("unsupported database URL: {0}")]
    InvalidUrl(&'static str),
    /// The directory of the SQLite file could not be created.
    #[error("cannot create the database directory")]
    CreateDir(#[source] std::io::Error),
    /// The database could not be opened or reached.
    #[error("cannot open the database")]
    Database(#[source] sqlx::Error),
    /// TLS to PostgreSQL failed as the URL's `sslmode` demands: the server offers no TLS, or
    /// its certificate does not chain to `sslrootcert` (or the built-in roots) or, with
    /// `verify-full`, does not name the URL's host. The source says which.
    #[error("cannot open the database: TLS failed (check the URL's sslmode and sslrootcert)")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The root certificate file the URL names (`sslrootcert`, or `PGSSLROOTCERT`) cannot be
    /// read. A path, never the URL.
    #[error("cannot read the database's root certificate {path} (sslrootcert)")]
    RootCert {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A setting of the `[database]` section is out of range.
    #[error("invalid database setting: {0}")]
    InvalidSetting(&'static str),
    /// A migration failed (or the database holds migrations this binary does not know).
    #[error("cannot migrate the database")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Maps an error of operation `op` that has no more specific meaning there. Decoding failures
/// and integrity violations are bugs (or manual edits) → `Corrupt`; everything else (I/O, pool
/// timeouts, busy database, server errors) → `Unavailable`. The cause is logged here, once; sqlx
/// error texts carry no bound values, so no secret reaches the log.
pub(crate) fn db_error(op: &'static str, err: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    count_db_error();
    match &err {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::TypeNotFound { .. } => {
            tracing::error!(op, error = %err, "stored data could not be decoded");
            StoreError::Corrupt(format!("{op}: {err}"))
        }
        sqlx::Error::Database(db)
            if matches!(
                db.kind(),
                ErrorKind::UniqueViolation
                    | ErrorKind::ForeignKeyViolation
                    | ErrorKind::NotNullViolation
                    | ErrorKind::CheckViolation
            ) =>
        {
            tracing::error!(op, error = %err, "integrity rule violated");
            StoreError::Corrupt(format!("{op}: {err}"))
        }
        _ => {
            tracing::error!(op, error = %err, "database unavailable");
            StoreError::Unavailable
        }
    }
}

/// `Conflict(conflict)` when `err` is a unique violation, else the general mapping.
pub(crate) fn unique_as(op: &'static str, conflict: &'static str, err: sqlx::Error) -> StoreError {
    if is_unique_violation(&err) {
        StoreError::Conflict(conflict)
    } else {
        db_error(op, err)
    }
}

pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_unique_violation())
}

pub(crate) fn is_foreign_key_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.is_foreign_key_violation())
}

/// Which constraint a unique violation hit, as far as the database says: PostgreSQL names the
/// constraint, SQLite names the columns in its message (`UNIQUE constraint failed: t.col`).
pub(crate) fn violation_mentions(err: &sqlx::Error, needle: &str) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            db.constraint().is_some_and(|c| c.contains(needle)) || db.message().contains(needle)
        }
        _ => false,
    }
}

pub(crate) fn corrupt(what: impl Into<String>) -> StoreError {
    let what = what.into();
    count_db_error();
    tracing::error!(%what, "stored data is inconsistent");
    StoreError::Corrupt(what)
}
