//! PostgreSQL: many Rekey replicas, one database. READ COMMITTED transactions; `change_user`
//! locks the user row (`SELECT … FOR UPDATE`) before anything else, so concurrent changes of one
//! user apply one after the other, and single-statement updates (`… WHERE used_at IS NULL`,
//! `attempts < cap`) re-check their condition on the latest row version.

use std::time::Duration;

use sqlx::postgres::PgPoolOptions;
use sqlx::Postgres;

use crate::sql_store::{Dialect, SqlStore};
use crate::ConnectError;

/// The [`rekey_core::store::Store`] on PostgreSQL.
pub type PgStore = SqlStore<Postgres>;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

static DIALECT: Dialect = Dialect {
    name: "postgres",
    begin_write: None,
    lock_user_state: "SELECT state FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE",
    claim_lock: " FOR UPDATE SKIP LOCKED",
    migrator: &MIGRATOR,
};

const MAX_CONNECTIONS: u32 = 16;
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);

impl SqlStore<Postgres> {
    /// Connects to `postgres://…` / `postgresql://…` and applies pending migrations (under
    /// sqlx's advisory lock, so replicas starting together migrate once).
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect(url)
            .await
            .map_err(ConnectError::Database)?;
        SqlStore::migrate(pool.clone(), pool, &DIALECT).await
    }
}
