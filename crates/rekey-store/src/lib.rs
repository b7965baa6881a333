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
mod options;
mod postgres;
mod sql;
mod sqlite;

use std::sync::Arc;

use rekey_core::ports::store::Store;

pub use backup::{backup, BackupError, BackupReport};
pub use bounded::Bounded;
pub use error::ConnectError;
pub use options::DatabaseOptions;
pub use postgres::PgStore;
pub use sql::SqlStore;
pub use sqlite::{create_private_dir, SqliteStore};

/// Opens the database named by `url` and applies pending migrations:
/// - `sqlite://rel/path` (relative to the working directory) or `sqlite:///abs/path`: the file
///   and its directory are created when missing;
/// - `sqlite::memory:`: a private in-memory database (tests);
/// - `postgres://…` or `postgresql://…`, every operation bounded by [`Bounded`] (a partition
///   leaves a statement unanswered, which the server's own limits cannot end). TLS follows the
///   URL's `sslmode` as libpq does, over rustls: `disable`; `prefer` (the default: TLS when the
///   server offers it, unverified); `require` (TLS or no connection, unverified — unless an
///   `sslrootcert` is given, which makes it `verify-ca`, as in libpq); `verify-ca` (the
///   server's certificate must chain to `sslrootcert` or to the built-in Mozilla roots);
///   `verify-full` (that, and the certificate must name the URL's host). Two differences
///   from libpq, both sqlx 0.8's: `sslrootcert` is trusted besides the built-in roots, not
///   instead of them (so prefer `verify-full`, whose name check a public CA cannot satisfy
///   for a private host); and `verify-ca` also checks the name (sqlx issue #3793), so
///   connect by a name the certificate carries. Failures are [`ConnectError::Tls`], with
///   rustls's reason and never the URL.
///
/// The pool has [`DatabaseOptions::default`]'s shape; see [`connect_with`].
pub async fn connect(url: &str) -> Result<Arc<dyn Store>, ConnectError> {
    connect_with(url, &DatabaseOptions::default()).await
}

/// [`connect`] with the pool shaped by `options` (PostgreSQL only; see [`DatabaseOptions`]).
pub async fn connect_with(
    url: &str,
    options: &DatabaseOptions,
) -> Result<Arc<dyn Store>, ConnectError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::connect(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(Bounded::new(
            PgStore::connect_with(url, options).await?,
            postgres::OPERATION_LIMIT,
        )))
    } else {
        Err(ConnectError::InvalidUrl(
            "expected sqlite://…, postgres://… or postgresql://…",
        ))
    }
}
