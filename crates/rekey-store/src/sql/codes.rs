//! [`CodeStore`] on SQL: reading a user's pending reset code and counting attempts on it. Codes
//! are written by a user change (`change.rs`).

use async_trait::async_trait;
use rekey_core::domain::{CodeId, TenantId, UserId};
use rekey_core::domain::{OutboxMessage, ResetCodeRecord};
use rekey_core::ports::store::{AttemptReservation, CodeStore, StoreError};

use super::backend::SqlBackend;
use super::rows::{CodeRow, CODE_COLUMNS};
use super::SqlStore;
use crate::codec::to_u32;
use crate::error::{corrupt, db_error};

impl<DB: SqlBackend> SqlStore<DB> {
    async fn reserve_in(
        conn: &mut DB::Connection,
        tenant: &TenantId,
        user: &UserId,
        code_id: &CodeId,
        max_attempts: u32,
        on_last: &[OutboxMessage],
    ) -> Result<AttemptReservation, StoreError> {
        // One statement decides: concurrent guesses serialize on the row and none passes the cap.
        let reserved = Self::query(
            "UPDATE reset_codes SET attempts = attempts + 1 \
             WHERE tenant_id = $1 AND user_id = $2 AND id = $3 AND used_at IS NULL \
             AND attempts < $4 \
             RETURNING attempts",
        )
        .bind(tenant.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .bind(code_id.as_str().to_owned())
        .bind(i64::from(max_attempts))
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error("reserve code attempt", e))?;
        if let Some(row) = reserved {
            let attempts = to_u32("reset_codes.attempts", Self::get(&row, "attempts")?)?;
            if attempts >= max_attempts {
                for message in on_last {
                    if message.tenant_id != *tenant {
                        return Err(corrupt(
                            "outbox message for another tenant in a code attempt",
                        ));
                    }
                    Self::insert_outbox(conn, message).await?;
                }
            }
            return Ok(AttemptReservation::Reserved { attempts });
        }
        // Not reserved: only tells the two refusals apart.
        let pending = Self::query(
            "SELECT id FROM reset_codes \
             WHERE tenant_id = $1 AND user_id = $2 AND id = $3 AND used_at IS NULL",
        )
        .bind(tenant.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .bind(code_id.as_str().to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error("reserve code attempt", e))?;
        Ok(match pending {
            Some(_) => AttemptReservation::Exhausted,
            None => AttemptReservation::Gone,
        })
    }
}

#[async_trait]
impl<DB: SqlBackend> CodeStore for SqlStore<DB> {
    async fn pending_code(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<ResetCodeRecord>, StoreError> {
        let sql = format!(
            "SELECT {CODE_COLUMNS} FROM reset_codes \
             WHERE tenant_id = $1 AND user_id = $2 AND used_at IS NULL \
             ORDER BY created_at DESC, id DESC LIMIT 1"
        );
        let row = Self::query(&sql)
            .bind(tenant.as_str().to_owned())
            .bind(user.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("pending code", e))?;
        row.as_ref()
            .map(Self::decode::<CodeRow, ResetCodeRecord>)
            .transpose()
    }

    async fn reserve_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &CodeId,
        max_attempts: u32,
        on_last: &[OutboxMessage],
    ) -> Result<AttemptReservation, StoreError> {
        const OP: &str = "reserve code attempt";
        let mut tx = self.begin_write(OP).await?;
        let result = Self::reserve_in(&mut tx, tenant, user, code_id, max_attempts, on_last).await;
        Self::finish(OP, tx, result).await
    }

    async fn refund_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &CodeId,
    ) -> Result<(), StoreError> {
        const OP: &str = "refund code attempt";
        let mut tx = self.begin_write(OP).await?;
        let result = Self::query(
            "UPDATE reset_codes SET attempts = attempts - 1 \
             WHERE tenant_id = $1 AND user_id = $2 AND id = $3 AND used_at IS NULL \
             AND attempts > 0",
        )
        .bind(tenant.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .bind(code_id.as_str().to_owned())
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(|e| db_error(OP, e));
        Self::finish(OP, tx, result).await
    }
}
