//! [`OutboxStore`] on SQL: messages inserted with the change that sends them, listed and retried
//! by admins, and leased, marked and parked by the delivery worker.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_core::domain::{Channel, NewEvent, OutboxMessage, OutboxState};
use rekey_core::domain::{MessageId, TenantId};
use rekey_core::ports::store::{OutboxQuery, OutboxStore, StoreError};

use super::backend::{SqlBackend, Stmt};
use super::rows::{OutboxRow, OUTBOX_COLUMNS};
use super::{limit, SqlStore};
use crate::codec::micros;
use crate::error::{db_error, unique_as, violation_mentions};

impl<DB: SqlBackend> SqlStore<DB> {
    pub(super) async fn insert_outbox(
        conn: &mut DB::Connection,
        message: &OutboxMessage,
    ) -> Result<(), StoreError> {
        Self::query(&format!(
            "INSERT INTO outbox ({OUTBOX_COLUMNS}) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)"
        ))
        .bind(message.tenant_id.as_str().to_owned())
        .bind(message.id.as_str().to_owned())
        .bind(message.user_id.as_str().to_owned())
        .bind(message.channel.as_str().to_owned())
        .bind(message.recipient.clone())
        .bind(message.kind.as_str().to_owned())
        .bind(message.idempotency_key.clone())
        .bind(message.key_id.clone())
        .bind(message.body.clone())
        .bind(message.state.as_str().to_owned())
        .bind(i64::from(message.attempts))
        .bind(micros(message.next_attempt_at))
        .bind(message.last_error.clone())
        .bind(micros(message.created_at))
        .bind(message.sent_at.map(micros))
        .bind(message.body_expires_at.map(micros))
        .bind(message.request_id.clone())
        .execute(&mut *conn)
        .await
        .map_err(|e| {
            if violation_mentions(&e, "idempotency_key") {
                StoreError::Conflict("idempotency key")
            } else {
                unique_as("insert outbox", "outbox id", e)
            }
        })?;
        Ok(())
    }

    /// Runs one `UPDATE outbox … RETURNING id` ([`SqlStore::write_statement`]); whether it changed a
    /// row (its `WHERE` names the state the change starts from, so a lost race is `false`).
    async fn update_outbox<'q>(
        &self,
        op: &'static str,
        query: Stmt<'q, DB>,
    ) -> Result<bool, StoreError> {
        self.write_statement(op, query)
            .await
            .map(|rows| !rows.is_empty())
    }
}

#[async_trait]
impl<DB: SqlBackend> OutboxStore for SqlStore<DB> {
    async fn outbox_messages(
        &self,
        state: Option<OutboxState>,
        max: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        let rows = match state {
            Some(state) => {
                let sql = format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE state = $1 \
                     ORDER BY created_at, tenant_id, id LIMIT $2"
                );
                Self::query(&sql)
                    .bind(state.as_str().to_owned())
                    .bind(limit(max))
                    .fetch_all(&self.reader)
                    .await
            }
            None => {
                let sql = format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY created_at, tenant_id, id LIMIT $1"
                );
                Self::query(&sql)
                    .bind(limit(max))
                    .fetch_all(&self.reader)
                    .await
            }
        }
        .map_err(|e| db_error("outbox messages", e))?;
        rows.iter()
            .map(Self::decode::<OutboxRow, OutboxMessage>)
            .collect()
    }

    async fn outbox_message(&self, id: &MessageId) -> Result<Option<OutboxMessage>, StoreError> {
        let sql =
            format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1 ORDER BY tenant_id LIMIT 1");
        let row = Self::query(&sql)
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("outbox message", e))?;
        row.as_ref()
            .map(Self::decode::<OutboxRow, OutboxMessage>)
            .transpose()
    }

    async fn outbox_page(&self, query: &OutboxQuery) -> Result<Vec<OutboxMessage>, StoreError> {
        // Only the conditions given are written; `$n` are numbered in the order of the binds.
        let mut sql = format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE 1 = 1");
        let mut n = 0;
        if query.state.is_some() {
            n += 1;
            sql.push_str(&format!(" AND state = ${n}"));
        }
        if query.tenant_id.is_some() {
            n += 1;
            sql.push_str(&format!(" AND tenant_id = ${n}"));
        }
        if query.after.is_some() {
            n += 3;
            sql.push_str(&format!(
                " AND (created_at, tenant_id, id) > (${}, ${}, ${})",
                n - 2,
                n - 1,
                n
            ));
        }
        sql.push_str(&format!(
            " ORDER BY created_at, tenant_id, id LIMIT ${}",
            n + 1
        ));
        let mut statement = Self::query(&sql);
        if let Some(state) = query.state {
            statement = statement.bind(state.as_str().to_owned());
        }
        if let Some(tenant) = &query.tenant_id {
            statement = statement.bind(tenant.as_str().to_owned());
        }
        if let Some(after) = &query.after {
            statement = statement
                .bind(micros(after.created_at))
                .bind(after.tenant_id.as_str().to_owned())
                .bind(after.id.as_str().to_owned());
        }
        let rows = statement
            .bind(limit(query.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error("outbox page", e))?;
        rows.iter()
            .map(Self::decode::<OutboxRow, OutboxMessage>)
            .collect()
    }

    async fn requeue_outbox(
        &self,
        id: &MessageId,
        now: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<Option<TenantId>, StoreError> {
        const OP: &str = "requeue outbox message";
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            let Some(row) = Self::query(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, \
                 last_error = NULL WHERE id = $2 AND state = 'failed' RETURNING tenant_id",
            )
            .bind(micros(now))
            .bind(id.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?
            else {
                return Ok(None);
            };
            let tenant: String = Self::get(&row, "tenant_id")?;
            let tenant = TenantId::from_trusted(tenant);
            // The tenant's events are numbered under the tenant row's lock, as a settings
            // change numbers them (a no-op UPDATE takes it on PostgreSQL; SQLite's write
            // transaction is already exclusive).
            Self::query("UPDATE tenants SET change_date = change_date WHERE id = $1")
                .bind(tenant.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| db_error(OP, e))?;
            let row = Self::query(
                "SELECT COALESCE(MAX(sequence), 0) AS last FROM events \
                 WHERE tenant_id = $1 AND aggregate_id = $1",
            )
            .bind(tenant.as_str().to_owned())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?;
            let last: i64 = Self::get(&row, "last")?;
            Self::insert_event(&mut tx, &tenant, tenant.as_str(), last + 1, now, event).await?;
            Ok(Some(tenant))
        }
        .await;
        Self::finish(OP, tx, result).await
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        channels: &[Channel],
        max: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        const OP: &str = "claim outbox";
        if channels.is_empty() || max == 0 {
            return Ok(Vec::new());
        }
        // One statement: the inner SELECT picks (and on PostgreSQL locks, skipping rows another
        // claimer holds) the due rows; the UPDATE leases them. A row whose lease another claimer
        // committed meanwhile is re-checked against `next_attempt_at <= now` and drops out.
        let channel_params = (0..channels.len())
            .map(|i| format!("${}", i + 4))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!(
            "UPDATE outbox SET next_attempt_at = $1, attempts = attempts + 1 \
             WHERE (tenant_id, id) IN (\
                 SELECT tenant_id, id FROM outbox \
                 WHERE state = 'pending' AND next_attempt_at <= $2 \
                 AND channel IN ({channel_params}) \
                 ORDER BY next_attempt_at \
                 LIMIT $3{lock}) \
             RETURNING {OUTBOX_COLUMNS}",
            lock = self.dialect.claim_lock,
        );
        let mut query = Self::query(&sql)
            .bind(micros(lease_until))
            .bind(micros(now))
            .bind(i64::from(max));
        for channel in channels {
            query = query.bind(channel.as_str().to_owned());
        }
        let rows = self.write_statement(OP, query).await?;
        let mut claimed = rows
            .iter()
            .map(Self::decode::<OutboxRow, OutboxMessage>)
            .collect::<Result<Vec<_>, _>>()?;
        // RETURNING follows no ORDER BY; hand the oldest out first.
        claimed.sort_by(|a, b| {
            (a.created_at, &a.tenant_id, &a.id).cmp(&(b.created_at, &b.tenant_id, &b.id))
        });
        Ok(claimed)
    }

    async fn mark_outbox_sent(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let query = Self::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, body = $2, last_error = NULL, \
             body_expires_at = NULL \
             WHERE tenant_id = $3 AND id = $4 AND state = 'pending' RETURNING id",
        )
        .bind(micros(at))
        .bind(Vec::<u8>::new())
        .bind(tenant.as_str().to_owned())
        .bind(id.as_str().to_owned());
        self.update_outbox("mark outbox sent", query).await
    }

    async fn reschedule_outbox(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let query = Self::query(
            "UPDATE outbox SET next_attempt_at = $1, last_error = $2 \
             WHERE tenant_id = $3 AND id = $4 AND state = 'pending' RETURNING id",
        )
        .bind(micros(next_attempt_at))
        .bind(error.to_owned())
        .bind(tenant.as_str().to_owned())
        .bind(id.as_str().to_owned());
        self.update_outbox("reschedule outbox", query).await
    }

    async fn park_outbox_failed(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        error: &str,
    ) -> Result<bool, StoreError> {
        let query = Self::query(
            "UPDATE outbox SET state = 'failed', last_error = $1 \
             WHERE tenant_id = $2 AND id = $3 AND state = 'pending' RETURNING id",
        )
        .bind(error.to_owned())
        .bind(tenant.as_str().to_owned())
        .bind(id.as_str().to_owned());
        self.update_outbox("park outbox message", query).await
    }

    async fn erase_expired_failed_bodies(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        const OP: &str = "erase expired outbox bodies";
        let mut tx = self.begin_write(OP).await?;
        let result = Self::query(
            "UPDATE outbox SET body = $1, body_expires_at = NULL \
             WHERE state = 'failed' AND body_expires_at <= $2 RETURNING id",
        )
        .bind(Vec::<u8>::new())
        .bind(micros(now))
        .fetch_all(&mut *tx)
        .await
        .map(|rows| u64::try_from(rows.len()).unwrap_or(u64::MAX))
        .map_err(|e| db_error(OP, e));
        Self::finish(OP, tx, result).await
    }

    async fn retry_outbox(&self, id: &MessageId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let query = Self::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, \
             last_error = NULL WHERE id = $2 AND state = 'failed' RETURNING id",
        )
        .bind(micros(now))
        .bind(id.as_str().to_owned());
        self.update_outbox("retry outbox message", query).await
    }

    async fn delete_finished_outbox_before(
        &self,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u64, StoreError> {
        // The oldest first (the `outbox_created` index). Pending messages are never deleted,
        // however old.
        self.delete_batch(
            "delete old outbox messages",
            "DELETE FROM outbox WHERE (tenant_id, id) IN (\
                 SELECT tenant_id, id FROM outbox \
                 WHERE created_at < $1 AND state IN ('sent', 'failed') \
                 ORDER BY created_at LIMIT $2) \
             RETURNING id",
            before,
            max,
        )
        .await
    }
}
