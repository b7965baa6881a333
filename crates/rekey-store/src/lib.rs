//! Rekey's [`Store`] on SQLite (embedded default) and PostgreSQL (many replicas, one database).
//!
//! One implementation, [`SqlStore`], is generic over the sqlx database: every statement is
//! written once in SQL both accept. What differs lives in the migrations (one folder per
//! database, same tables and keys) and in a small dialect: how a write transaction begins, how
//! `change_user` locks the user row, and how the outbox claim keeps concurrent delivery workers
//! apart. Both pass the same conformance suite (`tests/it`).
//!
//! Schema rules: every tenant table's primary key begins with `tenant_id`; instance-wide lookups
//! (user id → tenant, email → tenants, token hash → token) use small global tables; timestamps
//! are BIGINT microseconds since the Unix epoch and always come from the caller (no SQL clock).

mod backup;
mod bounded;
mod codec;
mod error;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use rekey_core::ports::store::Store;

pub use backup::{backup, BackupError, BackupReport};
pub use bounded::Bounded;
pub use error::ConnectError;
pub use postgres::PgStore;
pub use sql::SqlStore;
pub use sqlite::{create_private_dir, SqliteStore};

/// Opens the database named by `url` and applies pending migrations:
/// - `sqlite://rel/path` (relative to the working directory) or `sqlite:///abs/path`: the file
///   and its directory are created when missing;
/// - `sqlite::memory:`: a private in-memory database (tests);
/// - `postgres://…` or `postgresql://…`, every operation bounded by [`Bounded`] (a partition
///   leaves a statement unanswered, which the server's own limits cannot end).
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, ConnectError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(Bounded::new(
            PgStore::connect(url).await?,
            postgres::OPERATION_LIMIT,
        )))
    } else {
        Err(ConnectError::InvalidUrl(
            "expected sqlite://…, postgres://… or postgresql://…",
        ))
    }
}
