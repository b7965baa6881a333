//! The transaction of a [`UserChange`]: every write of one flow step for one user, in the order
//! the type documents.

use rekey_core::domain::{erased_email, UserState};
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

        if change.erase_personal_data {
            Self::erase_personal_data(conn, change).await?;
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

    /// A deleted user's personal data, erased in the change's transaction (SPEC §12): what
    /// is left names ids only. The email becomes [`erased_email`] — in `email_lower` too,
    /// as it is (ids are case-sensitive, so lower-casing could make two placeholders collide;
    /// no lookup ever folds one, as no placeholder parses as an address) — and its global index
    /// row goes, so the address can be given to a new user. The user's email and SMS
    /// messages lose body, recipient and error text (a pending one is parked); the client
    /// addresses in the user's events go. The event this change appends comes after, and keeps
    /// its caller's address.
    async fn erase_personal_data(
        conn: &mut DB::Connection,
        change: &UserChange,
    ) -> Result<(), StoreError> {
        const OP: &str = "change user: erase personal data";
        let tenant = change.tenant_id.as_str();
        let user = change.user_id.as_str();
        let row = Self::query("SELECT email_lower FROM users WHERE tenant_id = $1 AND id = $2")
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .fetch_one(&mut *conn)
            .await
            .map_err(|e| db_error(OP, e))?;
        let email_lower: String = Self::get(&row, "email_lower")?;
        Self::query(
            "DELETE FROM email_index WHERE email_lower = $1 AND tenant_id = $2 AND user_id = $3",
        )
        .bind(email_lower)
        .bind(tenant.to_owned())
        .bind(user.to_owned())
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error(OP, e))?;

        let placeholder = erased_email(&change.user_id).as_str().to_owned();
        Self::query(
            "UPDATE users SET email = $1, email_lower = $1, email_verified = $2, \
             phone = NULL, phone_verified = $2, username = '', username_lower = '', \
             first_name = '', last_name = '', display_name = '', password_hash = NULL, \
             password_change_required = $2 \
             WHERE tenant_id = $3 AND id = $4",
        )
        .bind(placeholder)
        .bind(false)
        .bind(tenant.to_owned())
        .bind(user.to_owned())
        .execute(&mut *conn)
        .await
        .map_err(|e| unique_as(OP, "email", e))?;

        // Messages to the person only: email and SMS carry their address and, sealed, their
        // name; both sides of each CASE read the row as it was.
        Self::query(
            "UPDATE outbox SET body = $1, recipient = NULL, body_expires_at = NULL, \
             last_error = CASE WHEN state = 'sent' THEN NULL ELSE $2 END, \
             state = CASE WHEN state = 'pending' THEN 'failed' ELSE state END \
             WHERE tenant_id = $3 AND user_id = $4 AND channel IN ('email', 'sms')",
        )
        .bind(Vec::<u8>::new())
        .bind(ERASED_ERROR.to_owned())
        .bind(tenant.to_owned())
        .bind(user.to_owned())
        .execute(&mut *conn)
        .await
        .map_err(|e| db_error(OP, e))?;

        Self::query("UPDATE events SET ip = NULL WHERE tenant_id = $1 AND aggregate_id = $2")
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .execute(&mut *conn)
            .await
            .map_err(|e| db_error(OP, e))?;
        Ok(())
    }
}

/// The error text of a message whose user was deleted (and whose data was erased).
const ERASED_ERROR: &str = "user deleted: personal data erased";
