//! The transaction of a [`UserChange`]: every write of one flow step for one user, in the order
//! the type documents.

use rekey_core::domain::UserState;
use rekey_core::ports::store::{StoreError, UserChange};

use super::backend::SqlBackend;
use super::SqlStore;
use crate::codec::{micros, parse};
use crate::error::{corrupt, db_error, unique_as};

impl<DB: SqlBackend> SqlStore<DB> {
    /// The body of `change_user`, in the order documented on [`UserChange`]; returns the new
    /// sequence. Any error leaves the transaction to be rolled back by the caller.
    pub(super) async fn apply_change(
        &self,
        conn: &mut DB::Connection,
        change: &UserChange,
    ) -> Result<i64, StoreError> {
        let tenant = change.tenant_id.as_str();
        let user = change.user_id.as_str();
        let at = micros(change.at);

        let row = Self::query(self.dialect.lock_user_state)
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error("change user: read", e))?
            .ok_or(StoreError::NotFound)?;
        let state: String = Self::get(&row, "state")?;
        let state: UserState = parse("users.state", &state)?;
        if change.require_state.is_empty() {
            if state == UserState::Deleted {
                return Err(StoreError::NotFound);
            }
        } else if !change.require_state.contains(&state) {
            return Err(StoreError::StateConflict(state));
        }

        if let Some(hit) = &change.rate_limit {
            Self::count_hit(conn, hit).await?;
        }

        if let Some(code_id) = &change.consume_code {
            Self::query(
                "UPDATE reset_codes SET used_at = $1, outcome = 'used' \
                 WHERE tenant_id = $2 AND user_id = $3 AND id = $4 AND used_at IS NULL \
                 RETURNING id",
            )
            .bind(at)
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .bind(code_id.as_str().to_owned())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error("change user: consume code", e))?
            .ok_or(StoreError::CodeGone)?;
        }

        // A new code always replaces the pending one (only the latest is valid; a partial
        // unique index holds at most one pending code per user).
        if change.void_pending_codes || change.new_code.is_some() {
            Self::query(
                "UPDATE reset_codes SET used_at = $1, outcome = 'voided' \
                 WHERE tenant_id = $2 AND user_id = $3 AND used_at IS NULL",
            )
            .bind(at)
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("change user: void codes", e))?;
        }

        if let Some(code) = &change.new_code {
            Self::query(
                "INSERT INTO reset_codes \
                 (tenant_id, user_id, id, key_id, mac, kind, created_at, expires_at, attempts) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)",
            )
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .bind(code.id.as_str().to_owned())
            .bind(code.key_id.clone())
            .bind(code.mac.clone())
            .bind(code.kind.as_str().to_owned())
            .bind(at)
            .bind(micros(code.expires_at))
            .execute(&mut *conn)
            .await
            .map_err(|e| unique_as("change user: insert code", "code id", e))?;
        }

        let (hash, change_required) = match &change.set_password {
            Some(p) => (Some(p.hash.clone()), Some(p.change_required)),
            None => (None, None),
        };
        let row = Self::query(
            "UPDATE users SET \
             password_hash = COALESCE($1, password_hash), \
             password_change_required = COALESCE($2, password_change_required), \
             state = COALESCE($3, state), \
             sequence = sequence + 1, \
             change_date = $4 \
             WHERE tenant_id = $5 AND id = $6 \
             RETURNING sequence",
        )
        .bind(hash)
        .bind(change_required)
        .bind(change.set_state.map(|s| s.as_str().to_owned()))
        .bind(at)
        .bind(tenant.to_owned())
        .bind(user.to_owned())
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error("change user: update", e))?
        .ok_or(StoreError::NotFound)?;
        let sequence: i64 = Self::get(&row, "sequence")?;

        if change.revoke_user_tokens {
            Self::query(
                "UPDATE api_tokens SET revoked_at = $1 \
                 WHERE role = 'user' AND tenant_id = $2 AND user_id = $3 AND revoked_at IS NULL",
            )
            .bind(at)
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error("change user: revoke tokens", e))?;
        }

        Self::insert_event(
            conn,
            &change.tenant_id,
            user,
            sequence,
            change.at,
            &change.event,
        )
        .await?;

        for message in &change.outbox {
            // One transaction never spans tenants (DESIGN 11).
            if message.tenant_id != change.tenant_id {
                return Err(corrupt(
                    "outbox message for another tenant in a user change",
                ));
            }
            Self::insert_outbox(conn, message).await?;
        }
        Ok(sequence)
    }
}
