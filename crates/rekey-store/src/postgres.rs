//! PostgreSQL: many Rekey replicas, one database. READ COMMITTED transactions; `change_user`
//! locks the user row (`SELECT … FOR UPDATE`) before anything else, so concurrent changes of one
//! user apply one after the other, and single-statement updates (`… WHERE used_at IS NULL`,
//! `attempts < cap`) re-check their condition on the latest row version.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::Postgres;

use crate::sql::{release_guard, Dialect, SqlStore};
use crate::ConnectError;

/// The [`rekey_core::ports::store::Store`] on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

static DIALECT: Dialect = Dialect {
    name: "postgres",
    begin_write: None,
    lock_user_state: "SELECT state FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    claim_lock: " FOR UPDATE SKIP LOCKED",
    position: "strpos",
    code_point_order: " COLLATE \"C\"",
    json_strings: |placeholder| {
        format!("SELECT jsonb_array_elements_text(CAST({placeholder} AS jsonb))")
    },
    migrator: &MIGRATOR,
};

const MAX_CONNECTIONS: u32 = 16;

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
    /// Connects to `postgres://…` / `postgresql://…` and applies pending migrations (under
    /// sqlx's advisory lock, so replicas starting together migrate once).
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let options = PgConnectOptions::from_str(url).map_err(ConnectError::Database)?;
        let migration = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options.clone())
            .await
            .map_err(ConnectError::Database)?;
        MIGRATOR
            .run(&migration)
            .await
            .map_err(ConnectError::Migrate)?;
        migration.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_release(release_guard::<Postgres>)
            .connect_with(options.options(SESSION_LIMITS))
            .await
            .map_err(ConnectError::Database)?;
        SqlStore::migrate(pool.clone(), pool, &DIALECT).await
    }
}
