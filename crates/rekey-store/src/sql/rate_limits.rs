//! [`RateLimitStore`] on SQL: fixed-window counters, one row per key.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_core::ports::store::{RateLimitHit, RateLimitStore, StoreError};

use super::backend::SqlBackend;
use super::SqlStore;
use crate::error::db_error;

/// Fixed-window counter. A hit from a later window restarts the count; a hit stamped with an
/// earlier window than the stored one (a replica whose clock lags) counts toward the stored,
/// newer window instead of resetting it, so skewed clocks cannot reset each other's counters.
/// The statement counting a hit on `key` in the window `start..end` (placeholders), returning
/// `returning`.
pub(super) fn count_hit_sql(key: &str, start: &str, end: &str, returning: &str) -> String {
    format!(
        "INSERT INTO rate_limits (key, window_start, count, window_end) \
         VALUES ({key}, {start}, 1, {end}) \
         ON CONFLICT (key) DO UPDATE SET \
         count = CASE WHEN excluded.window_start > rate_limits.window_start THEN 1 \
             ELSE rate_limits.count + 1 END, \
         window_end = CASE WHEN excluded.window_start > rate_limits.window_start \
             THEN excluded.window_end ELSE rate_limits.window_end END, \
         window_start = CASE WHEN excluded.window_start > rate_limits.window_start \
             THEN excluded.window_start ELSE rate_limits.window_start END \
         RETURNING {returning}"
    )
}

impl<DB: SqlBackend> SqlStore<DB> {
    /// Counts `hit` inside the caller's transaction; `RateLimited` when over the limit (the
    /// caller rolls back, so a refused hit is not counted).
    pub(super) async fn count_hit(
        conn: &mut DB::Connection,
        hit: &RateLimitHit,
    ) -> Result<(), StoreError> {
        let row = Self::query(&count_hit_sql("$1", "$2", "$3", "count"))
            .bind(hit.key.clone())
            .bind(hit.window_start())
            .bind(hit.window_end())
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error("count rate limit", e))?;
        let count: i64 = Self::get(&row, "count")?;
        if count > i64::from(hit.limit) {
            return Err(StoreError::RateLimited {
                retry_after_secs: hit.retry_after(),
            });
        }
        Ok(())
    }

    /// Refuses, by a read alone, a hit on a counter that its window has already filled: a
    /// client that is being refused (a flood) does not take the write lock — SQLite's one
    /// writer — for every refusal. A counter not yet full is left to [`Self::count_hit`], whose
    /// one statement decides under concurrency.
    pub(super) async fn refuse_if_full(&self, hit: &RateLimitHit) -> Result<(), StoreError> {
        let row = Self::query("SELECT window_start, count FROM rate_limits WHERE key = $1")
            .bind(hit.key.clone())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("read rate limit", e))?;
        if let Some(row) = row {
            let window_start: i64 = Self::get(&row, "window_start")?;
            let count: i64 = Self::get(&row, "count")?;
            if window_start >= hit.window_start() && count >= i64::from(hit.limit) {
                return Err(StoreError::RateLimited {
                    retry_after_secs: hit.retry_after(),
                });
            }
        }
        Ok(())
    }
}

#[async_trait]
impl<DB: SqlBackend> RateLimitStore for SqlStore<DB> {
    async fn hit_rate_limit(&self, hit: &RateLimitHit) -> Result<(), StoreError> {
        const OP: &str = "hit rate limit";
        self.refuse_if_full(hit).await?;
        let mut tx = self.begin_write(OP).await?;
        let result = Self::count_hit(&mut tx, hit).await;
        Self::finish(OP, tx, result).await
    }

    async fn purge_rate_limits(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        const OP: &str = "purge rate limits";
        let mut tx = self.begin_write(OP).await?;
        let result = Self::query("DELETE FROM rate_limits WHERE window_end <= $1 RETURNING key")
            .bind(now.timestamp())
            .fetch_all(&mut *tx)
            .await
            .map(|rows| u64::try_from(rows.len()).unwrap_or(u64::MAX))
            .map_err(|e| db_error(OP, e));
        Self::finish(OP, tx, result).await
    }
}
