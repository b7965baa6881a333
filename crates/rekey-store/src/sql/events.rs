//! [`AuditLog`] on SQL: the events table, appended to inside the transaction of the change each
//! event records, and read back in order.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_core::domain::TenantId;
use rekey_core::domain::{Event, NewEvent};
use rekey_core::ports::store::{AuditLog, EventFilter, StoreError};

use super::backend::SqlBackend;
use super::rows::{EventRow, EVENT_COLUMNS};
use super::{limit, SqlStore};
use crate::codec::{json_text, micros};
use crate::error::{db_error, unique_as};

impl<DB: SqlBackend> SqlStore<DB> {
    pub(super) async fn insert_event(
        conn: &mut DB::Connection,
        tenant: &TenantId,
        aggregate_id: &str,
        sequence: i64,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        Self::query(
            "INSERT INTO events (tenant_id, aggregate_id, sequence, kind, actor, ip, at, payload) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant.as_str().to_owned())
        .bind(aggregate_id.to_owned())
        .bind(sequence)
        .bind(event.kind.to_owned())
        .bind(event.actor.clone())
        .bind(event.ip.clone())
        .bind(micros(at))
        .bind(json_text("event payload", &event.payload)?)
        .execute(&mut *conn)
        .await
        .map_err(|e| unique_as("insert event", "event sequence", e))?;
        Ok(())
    }
}

#[async_trait]
impl<DB: SqlBackend> AuditLog for SqlStore<DB> {
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        // Only the filters given become conditions (index-friendly plans); `$n` are numbered
        // in the order the values are bound below.
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM events WHERE 1 = 1");
        let mut n = 0;
        let mut condition = |clause: &str| {
            n += 1;
            sql.push_str(&format!(" AND {clause} ${n}"));
        };
        if filter.tenant_id.is_some() {
            condition("tenant_id =");
        }
        if filter.aggregate_id.is_some() {
            condition("aggregate_id =");
        }
        if filter.since.is_some() {
            condition("at >=");
        }
        if filter.after.is_some() {
            // Keyset paging: a row-value comparison in the listing's order (both databases).
            n += 4;
            sql.push_str(&format!(
                " AND (at, tenant_id, aggregate_id, sequence) > (${}, ${}, ${}, ${})",
                n - 3,
                n - 2,
                n - 1,
                n
            ));
        }
        sql.push_str(&format!(
            " ORDER BY at, tenant_id, aggregate_id, sequence LIMIT ${}",
            n + 1
        ));
        let mut query = Self::query(&sql);
        if let Some(tenant) = &filter.tenant_id {
            query = query.bind(tenant.as_str().to_owned());
        }
        if let Some(aggregate) = &filter.aggregate_id {
            query = query.bind(aggregate.clone());
        }
        if let Some(since) = filter.since {
            query = query.bind(micros(since));
        }
        if let Some(after) = &filter.after {
            query = query
                .bind(micros(after.at))
                .bind(after.tenant_id.as_str().to_owned())
                .bind(after.aggregate_id.clone())
                .bind(i64::try_from(after.sequence).unwrap_or(i64::MAX));
        }
        let rows = query
            .bind(limit(filter.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error("events", e))?;
        rows.iter().map(Self::decode::<EventRow, Event>).collect()
    }

    async fn delete_events_before(
        &self,
        before: DateTime<Utc>,
        max: u32,
    ) -> Result<u64, StoreError> {
        // The oldest first, off the `events_at` index.
        self.delete_batch(
            "delete old events",
            "DELETE FROM events WHERE (tenant_id, aggregate_id, sequence) IN (\
                 SELECT tenant_id, aggregate_id, sequence FROM events WHERE at < $1 \
                 ORDER BY at LIMIT $2) \
             RETURNING sequence",
            before,
            max,
        )
        .await
    }
}
