//! PostgreSQL: many Rekey replicas, one database. READ COMMITTED transactions; `change_user`
//! locks the user row (`SELECT … FOR UPDATE`) before anything else, so concurrent changes of one
//! user apply one after the other, and single-statement updates (`… WHERE used_at IS NULL`,
//! `attempts < cap`) re-check their condition on the latest row version.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgSslMode};
use sqlx::Postgres;

use crate::sql::{release_guard, BatchForm, Dialect, SqlStore};
use crate::{ConnectError, DatabaseOptions};

/// The [`rekey_core::ports::store::Store`] on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

static DIALECT: Dialect = Dialect {
    name: "postgres",
    begin_write: None,
    lone_statement_commits: true,
    lock_user: Some("SELECT 1 AS locked FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE"),
    batch: BatchForm::Ctes,
    claim_lock: " FOR UPDATE SKIP LOCKED",
    position: "strpos",
    code_point_order: " COLLATE \"C\"",
    json_strings: |placeholder| {
        format!("SELECT jsonb_array_elements_text(CAST({placeholder} AS jsonb))")
    },
    migrator: &MIGRATOR,
};

/// The `application_name` of Rekey's sessions (in `pg_stat_activity`), unless the URL or
/// `PGAPPNAME` names another.
pub const APPLICATION_NAME: &str = "rekey";

/// A caller waits this long for a pooled connection (which includes connecting when the pool
/// is empty) before the request fails as unavailable (503): with the database gone, the answer
/// comes in about this time instead of as a 504 at the request deadline.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// Every store operation ends within this on the client side too ([`crate::bounded`]): a
/// partition leaves a statement on the wire without an answer, which no server-side limit can
/// end. Above `statement_timeout`, so a merely slow statement ends with the server's own error;
/// well under the 10 s request deadline, so a request caught in a partition answers 503.
pub(crate) const OPERATION_LIMIT: Duration = Duration::from_secs(6);

/// Server-side limits for every statement of the service, well under the 10 s request
/// deadline. Migrations run on their own connection without them.
const SESSION_LIMITS: [(&str, &str); 3] = [
    ("statement_timeout", "5s"),
    ("lock_timeout", "2s"),
    // A connection left inside a transaction (its client vanished) is ended by the server
    // rather than holding row locks forever.
    ("idle_in_transaction_session_timeout", "15s"),
];

impl SqlStore<Postgres> {
    /// Connects to `postgres://…` / `postgresql://…` with the default pool shape and applies
    /// pending migrations (see [`Self::connect_with`]).
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, &DatabaseOptions::default()).await
    }

    /// Connects to `postgres://…` / `postgresql://…` and applies pending migrations (under
    /// sqlx's advisory lock, so replicas starting together migrate once). The pool keeps at
    /// most `options.max_connections` connections; TLS follows the URL (see
    /// [`crate::connect`]).
    pub async fn connect_with(url: &str, options: &DatabaseOptions) -> Result<Self, ConnectError> {
        if options.max_connections == 0 {
            return Err(ConnectError::InvalidSetting(
                "database.max_connections must be at least 1",
            ));
        }
        let connect = connect_options(url).await?;
        let migration = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(connect.clone())
            .await
            .map_err(open_error)?;
        MIGRATOR
            .run(&migration)
            .await
            .map_err(ConnectError::Migrate)?;
        migration.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(release_guard::<Postgres>)
            .connect_with(connect.options(SESSION_LIMITS))
            .await
            .map_err(open_error)?;
        SqlStore::migrate(pool.clone(), pool, &DIALECT).await
    }
}

/// The URL's options as sqlx reads them (host, credentials, `sslmode`, `sslrootcert`, … and
/// the `PG…` environment), with two additions: an `sslrootcert` given with `sslmode=require`
/// verifies the server's certificate (`verify-ca`), as libpq does; and the sessions are named
/// [`APPLICATION_NAME`] unless named otherwise. A root certificate that will be needed but
/// cannot be read is an error here, before any connection (sqlx would report only "no such
/// file").
async fn connect_options(url: &str) -> Result<PgConnectOptions, ConnectError> {
    let mut options = PgConnectOptions::from_str(url).map_err(ConnectError::Database)?;
    let root_cert = root_cert_file(url);
    if matches!(options.get_ssl_mode(), PgSslMode::Require) && root_cert.is_some() {
        options = options.ssl_mode(PgSslMode::VerifyCa);
    }
    if matches!(
        options.get_ssl_mode(),
        PgSslMode::VerifyCa | PgSslMode::VerifyFull
    ) {
        if let Some(path) = root_cert {
            if let Err(source) = tokio::fs::read(&path).await {
                return Err(ConnectError::RootCert { path, source });
            }
        }
    }
    if options.get_application_name().is_none() {
        options = options.application_name(APPLICATION_NAME);
    }
    Ok(options)
}

/// The root certificate file sqlx will read: the URL's last `sslrootcert` (or its aliases
/// `ssl-root-cert`, `ssl-ca`), else `PGSSLROOTCERT`. `None` when none is given or it is an
/// inline PEM.
fn root_cert_file(url: &str) -> Option<PathBuf> {
    let from_url = url::Url::parse(url).ok().and_then(|url| {
        url.query_pairs()
            .filter(|(key, _)| matches!(&**key, "sslrootcert" | "ssl-root-cert" | "ssl-ca"))
            .map(|(_, value)| value.into_owned())
            .last()
    });
    let value = from_url.or_else(|| std::env::var("PGSSLROOTCERT").ok())?;
    let trimmed = value.trim();
    if trimmed.starts_with("-----BEGIN") && trimmed.ends_with("-----") {
        None
    } else {
        Some(PathBuf::from(value))
    }
}

/// A failure to open a pool: TLS failures apart, with rustls's reason as their cause, so that
/// the message points at `sslmode`. sqlx reports a refused certificate as an I/O error
/// wrapping the rustls error, and a server without TLS as its own TLS error.
fn open_error(err: sqlx::Error) -> ConnectError {
    match err {
        sqlx::Error::Tls(cause) => ConnectError::Tls(cause),
        sqlx::Error::Io(io) => match io.downcast::<rustls::Error>() {
            Ok(cause) => ConnectError::Tls(Box::new(cause)),
            Err(io) => ConnectError::Database(sqlx::Error::Io(io)),
        },
        other => ConnectError::Database(other),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_root_certificate_is_read_from_the_url() {
        assert_eq!(
            root_cert_file("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem"),
            Some(PathBuf::from("/etc/ca.pem"))
        );
        assert_eq!(
            root_cert_file("postgres://u@h/db?ssl-ca=/a.pem&sslrootcert=/b.pem"),
            Some(PathBuf::from("/b.pem"))
        );
    }

    #[tokio::test]
    async fn require_with_a_root_certificate_verifies_it() {
        let options = connect_options("postgres://u@h/db?sslmode=require&sslrootcert=/dev/null")
            .await
            .unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::VerifyCa));
        assert_eq!(options.get_application_name(), Some(APPLICATION_NAME));
        let options = connect_options("postgres://u@h/db?sslmode=require&application_name=x")
            .await
            .unwrap();
        assert!(matches!(options.get_ssl_mode(), PgSslMode::Require));
        assert_eq!(options.get_application_name(), Some("x"));
    }
}
