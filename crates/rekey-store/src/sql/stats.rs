//! The store's numbers for `/metrics`: the outbox backlog (one grouped read) and the pools' use
//! (from sqlx's own counters, no query).

use rekey_core::domain::OutboxState;
use rekey_core::ports::store::{OutboxStats, PoolStats, StoreError};
use sqlx::{Database, Pool};

use super::backend::SqlBackend;
use super::SqlStore;
use crate::codec::{parse, time, to_u64};
use crate::error::{db_error, db_errors};

impl<DB: SqlBackend> SqlStore<DB> {
    /// Pending and failed messages and the oldest pending one's creation, in one read. Sent
    /// rows are left out: they are history, and counting them would scan what retention keeps.
    pub(crate) async fn read_outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        const OP: &str = "outbox stats";
        let rows = Self::query(
            "SELECT state, COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox \
             WHERE state IN ('pending', 'failed') GROUP BY state",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(OP, e))?;
        let mut stats = OutboxStats::default();
        for row in &rows {
            let state: String = Self::get(row, "state")?;
            let count = to_u64("n", Self::get(row, "n")?)?;
            match parse::<OutboxState>("state", &state)? {
                OutboxState::Pending => {
                    stats.pending = count;
                    stats.oldest_pending = Some(time("oldest", Self::get(row, "oldest")?)?);
                }
                OutboxState::Failed => stats.failed = count,
                OutboxState::Sent => {}
            }
        }
        Ok(stats)
    }

    pub(crate) fn read_pool_stats(&self) -> PoolStats {
        let mut stats = PoolStats {
            errors: db_errors(),
            ..PoolStats::default()
        };
        add_pool(&mut stats, &self.writer);
        // PostgreSQL reads and writes share one pool; SQLite has a writer and a reader pool.
        if self.dialect.name != "postgres" {
            add_pool(&mut stats, &self.reader);
        }
        stats
    }
}

fn add_pool<DB: Database>(stats: &mut PoolStats, pool: &Pool<DB>) {
    let size = u64::from(pool.size());
    let idle = u64::try_from(pool.num_idle()).unwrap_or(u64::MAX).min(size);
    stats.idle += idle;
    stats.in_use += size - idle;
    stats.max += u64::from(pool.options().get_max_connections());
}
