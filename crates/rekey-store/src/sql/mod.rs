//! The one implementation of the store ports, generic over the sqlx database. Every statement
//! is written once in SQL both SQLite and PostgreSQL accept (`$n` placeholders work in both);
//! the few real differences live in a [`Dialect`], and what the code needs of sqlx in
//! [`SqlBackend`]. One file per port: `tenants.rs` ([`TenantStore`]), `users.rs`
//! ([`UserStore`]; the transaction of a user change in `change.rs`), `codes.rs`, `tokens.rs`,
//! `outbox.rs`, `events.rs` ([`AuditLog`]), `rate_limits.rs`; the rows they read in `rows.rs`.
//!
//! [`TenantStore`]: rekey_core::ports::store::TenantStore
//! [`UserStore`]: rekey_core::ports::store::UserStore
//! [`AuditLog`]: rekey_core::ports::store::AuditLog

mod backend;
mod change;
mod codes;
mod dialect;
mod events;
mod outbox;
mod rate_limits;
mod rows;
mod stats;
mod tenants;
mod tokens;
mod users;

use std::fmt;

use async_trait::async_trait;
use rekey_core::ports::store::{Health, OutboxStats, PoolStats, StoreError};
use sqlx::{Database, Pool, Transaction};

pub(crate) use dialect::{BatchForm, Dialect};

use crate::error::db_error;
use backend::SqlBackend;
use backend::{Decodes, Reads, Stmt};

/// A [`Store`](rekey_core::ports::store::Store) on an sqlx database: [`crate::SqliteStore`] or [`crate::PgStore`].
///
/// Reads go to `reader`, writes to `writer` in a write transaction. On PostgreSQL both are the
/// same pool; on SQLite the writer is a pool of one connection (see [`crate::sqlite`]).
pub struct SqlStore<DB: Database> {
    reader: Pool<DB>,
    writer: Pool<DB>,
    dialect: &'static Dialect,
}

impl<DB: Database> fmt::Debug for SqlStore<DB> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlStore")
            .field("database", &self.dialect.name)
            .finish_non_exhaustive()
    }
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        Self {
            reader: self.reader.clone(),
            writer: self.writer.clone(),
            dialect: self.dialect,
        }
    }
}

impl<DB: Database> SqlStore<DB> {
    /// Closes both pools, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }
}

/// The pools' `after_release` hook: a connection that comes back to its pool inside a
/// transaction (its owner was cancelled at a point sqlx could not clean up after) is closed —
/// which rolls the transaction back — instead of being handed to the next caller.
pub(crate) fn release_guard<DB: Database>(
    conn: &mut DB::Connection,
    _meta: sqlx::pool::PoolConnectionMetadata,
) -> futures::future::BoxFuture<'_, Result<bool, sqlx::Error>> {
    use sqlx::Connection as _;
    let clean = !conn.is_in_transaction();
    if !clean {
        tracing::warn!("a connection came back inside a transaction; closing it");
    }
    Box::pin(async move { Ok(clean) })
}

impl<DB: SqlBackend> SqlStore<DB> {
    /// Applies the dialect's migrations through the writer and wraps the pools.
    pub(crate) async fn migrate(
        reader: Pool<DB>,
        writer: Pool<DB>,
        dialect: &'static Dialect,
    ) -> Result<Self, crate::ConnectError>
    where
        DB::Connection: sqlx::migrate::Migrate,
    {
        dialect
            .migrator
            .run(&writer)
            .await
            .map_err(crate::ConnectError::Migrate)?;
        Ok(Self {
            reader,
            writer,
            dialect,
        })
    }

    /// Opens a write transaction, in a task of its own so that it cannot be cut in half.
    ///
    /// A caller may go away at any `.await` (client disconnect, request deadline). Inside a
    /// transaction that is harmless: dropping a `Transaction` queues its rollback. But between
    /// the database's answer to `BEGIN` and the `Transaction` value existing, sqlx has a window
    /// (on SQLite, the check that the custom `BEGIN IMMEDIATE` took effect) where a cancel
    /// leaves the connection inside a transaction nobody owns — SQLite's one writer connection
    /// then refuses every later write. Run in its own task, the begin always finishes; when
    /// nobody waits for it any more, the `Transaction` it made is dropped and rolled back.
    /// [`release_guard`] discards any connection that still comes back mid-transaction.
    async fn begin_write(&self, op: &'static str) -> Result<Transaction<'static, DB>, StoreError> {
        let writer = self.writer.clone();
        let statement = self.dialect.begin_write;
        let begin = tokio::spawn(async move {
            match statement {
                Some(statement) => writer.begin_with(statement).await,
                None => writer.begin().await,
            }
        });
        match begin.await {
            Ok(tx) => tx.map_err(|e| db_error(op, e)),
            Err(err) => {
                tracing::error!(op, error = %err, "begin task failed");
                Err(StoreError::Unavailable)
            }
        }
    }

    async fn commit(op: &'static str, tx: Transaction<'static, DB>) -> Result<(), StoreError> {
        tx.commit().await.map_err(|e| db_error(op, e))
    }

    /// Ends a failed write at once (rather than when the connection is next used), so SQLite's
    /// write lock is not held while the error travels up.
    async fn rollback(op: &'static str, tx: Transaction<'static, DB>) {
        if let Err(err) = tx.rollback().await {
            tracing::warn!(op, error = %err, "rollback failed");
        }
    }

    /// Commits on `Ok`, rolls back on `Err`.
    async fn finish<T>(
        op: &'static str,
        tx: Transaction<'static, DB>,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match result {
            Ok(value) => {
                Self::commit(op, tx).await?;
                Ok(value)
            }
            Err(err) => {
                Self::rollback(op, tx).await;
                Err(err)
            }
        }
    }

    /// Runs one write statement and returns its rows: alone where the database makes a lone
    /// statement its own transaction (PostgreSQL: one round trip instead of three), else in a
    /// write transaction ([`Dialect::lone_statement_commits`]).
    async fn write_statement(
        &self,
        op: &'static str,
        query: Stmt<'_, DB>,
    ) -> Result<Vec<DB::Row>, StoreError> {
        if self.dialect.lone_statement_commits {
            return query
                .fetch_all(&self.writer)
                .await
                .map_err(|e| db_error(op, e));
        }
        let mut tx = self.begin_write(op).await?;
        let result = query.fetch_all(&mut *tx).await.map_err(|e| db_error(op, e));
        Self::finish(op, tx, result).await
    }

    /// Runs one bounded batch delete in its own write transaction: `sql` deletes at most `$2`
    /// rows older than `$1` (oldest first, through a keyed subquery: `DELETE … LIMIT` is not
    /// portable) and returns a column per deleted row. Small batches never hold SQLite's
    /// writer for long. The number of rows deleted.
    async fn delete_batch(
        &self,
        op: &'static str,
        sql: &'static str,
        before: chrono::DateTime<chrono::Utc>,
        max: u32,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write(op).await?;
        let result = Self::query(sql)
            .bind(crate::codec::micros(before))
            .bind(i64::from(max))
            .fetch_all(&mut *tx)
            .await
            .map(|rows| u64::try_from(rows.len()).unwrap_or(u64::MAX))
            .map_err(|e| db_error(op, e));
        Self::finish(op, tx, result).await
    }

    /// A statement of `sql` on this store's database; see [`Stmt`].
    fn query(sql: &str) -> Stmt<'_, DB> {
        backend::query(sql)
    }

    /// One column of a row, by name.
    fn get<T>(row: &DB::Row, column: &'static str) -> Result<T, StoreError>
    where
        DB: Decodes<T>,
    {
        DB::get(row, column).map_err(|e| db_error("decode", e))
    }

    /// A whole row, read as its row struct `R` and checked into the domain's record `T`.
    fn decode<R, T>(row: &DB::Row) -> Result<T, StoreError>
    where
        DB: Reads<R>,
        T: TryFrom<R, Error = StoreError>,
    {
        DB::read(row)
            .map_err(|e| db_error("decode", e))
            .and_then(T::try_from)
    }
}

#[async_trait]
impl<DB: SqlBackend> Health for SqlStore<DB> {
    async fn ping(&self) -> Result<(), StoreError> {
        const OP: &str = "ping";
        let latest = self
            .dialect
            .migrator
            .iter()
            .map(|m| m.version)
            .max()
            .unwrap_or(0);
        // Through the write path: a database that answers reads but cannot start a write (a
        // stuck writer, a read-only replica, a full disk's lock) is not ready.
        let mut tx = self.begin_write(OP).await?;
        let row = Self::query(
            "SELECT COUNT(*) AS n FROM _sqlx_migrations WHERE version = $1 AND success = $2",
        )
        .bind(latest)
        .bind(true)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| db_error(OP, e));
        Self::rollback(OP, tx).await;
        let applied: i64 = Self::get(&row?, "n")?;
        if applied == 0 {
            tracing::error!(latest, "database is not migrated to this version");
            return Err(StoreError::Unavailable);
        }
        Ok(())
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.read_outbox_stats().await
    }

    fn pool_stats(&self) -> PoolStats {
        self.read_pool_stats()
    }
}

/// A listing's row limit; 0 means "no limit".
fn limit(max: u32) -> i64 {
    if max == 0 {
        i64::MAX
    } else {
        i64::from(max)
    }
}
