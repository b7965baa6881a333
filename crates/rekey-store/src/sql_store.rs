//! The one implementation of [`Store`], generic over the sqlx database. Every statement is
//! written once in SQL both SQLite and PostgreSQL accept (`$n` placeholders work in both); the
//! few real differences live in a [`Dialect`].

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_core::ids::{TenantId, UserId};
use rekey_core::model::{
    ApiToken, Channel, Details, Event, NewEvent, OutboxMessage, OutboxState, ResetCodeRecord, Role,
    Tenant, TenantSettings, User, UserState,
};
use rekey_core::store::{
    AttemptReservation, EventFilter, RateLimitHit, Store, StoreError, TextMatch, UserChange,
    UserFilter, UserPage, UserSearch,
};
use sqlx::migrate::Migrator;
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Transaction, Type,
};

use crate::codec::{
    from_json, json_text, micros, opt_time, parse, time, to_i64, to_u32, to_u64, truncate,
};
use crate::error::{
    corrupt, db_error, is_foreign_key_violation, is_unique_violation, unique_as, violation_mentions,
};

/// What differs between the databases, beyond column types (which live in the migrations).
pub(crate) struct Dialect {
    pub(crate) name: &'static str,
    /// How a write transaction begins. SQLite: `BEGIN IMMEDIATE`, which takes the write lock up
    /// front (waiting under `busy_timeout`) instead of failing with `SQLITE_BUSY` when a read
    /// transaction later tries to upgrade. PostgreSQL: plain `BEGIN` (READ COMMITTED + row locks).
    pub(crate) begin_write: Option<&'static str>,
    /// Reads the user's state at the start of `change_user`, locking the row where the database
    /// has row locks (`FOR UPDATE`); SQLite's write transaction already excludes other writers.
    pub(crate) lock_user_state: &'static str,
    /// Appended to the outbox claim's inner SELECT. PostgreSQL: `FOR UPDATE SKIP LOCKED`, so
    /// concurrent claimers on several replicas each lock (and then lease) different rows instead
    /// of queueing behind one another; SQLite: nothing (the write transaction is exclusive).
    pub(crate) claim_lock: &'static str,
    /// The function giving the 1-based character position of a text in another, 0 when it does
    /// not occur: SQLite `instr`, PostgreSQL `strpos` (same arguments: haystack, needle).
    pub(crate) position: &'static str,
    /// Appended to a text column in `ORDER BY` so that it sorts by code point, as Rust compares
    /// strings: PostgreSQL ` COLLATE "C"` (the database's default collation may be a
    /// language's); SQLite's default BINARY collation already does.
    pub(crate) code_point_order: &'static str,
    /// A subquery yielding the strings of a JSON array bound at the placeholder given, so that
    /// a list of any length is one parameter (parameter counts are capped, differently per
    /// database).
    pub(crate) json_strings: fn(&str) -> String,
    pub(crate) migrator: &'static Migrator,
}

/// A [`Store`] on an sqlx database: [`crate::SqliteStore`] or [`crate::PgStore`].
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

const TENANT_COLUMNS: &str = "id, name, cname, settings, creation_date, change_date";

const USER_COLUMNS: &str = "tenant_id, id, username, email, email_verified, phone, \
    phone_verified, first_name, last_name, display_name, preferred_language, state, \
    password_hash, password_change_required, sequence, creation_date, change_date";

const TOKEN_COLUMNS: &str = "token_hash, id, role, tenant_id, user_id, created_at, revoked_at";

const CODE_COLUMNS: &str =
    "tenant_id, user_id, id, key_id, mac, kind, created_at, expires_at, attempts, used_at";

const EVENT_COLUMNS: &str = "tenant_id, aggregate_id, sequence, kind, actor, ip, at, payload";

const OUTBOX_COLUMNS: &str = "tenant_id, id, user_id, channel, recipient, kind, \
    idempotency_key, key_id, body, state, attempts, next_attempt_at, last_error, created_at, \
    sent_at, body_expires_at";

/// Fixed-window counter. A hit from a later window restarts the count; a hit stamped with an
/// earlier window than the stored one (a replica whose clock lags) counts toward the stored,
/// newer window instead of resetting it, so skewed clocks cannot reset each other's counters.
const COUNT_HIT: &str = "INSERT INTO rate_limits (key, window_start, count, window_end) \
    VALUES ($1, $2, 1, $3) \
    ON CONFLICT (key) DO UPDATE SET \
    count = CASE WHEN excluded.window_start > rate_limits.window_start THEN 1 \
        ELSE rate_limits.count + 1 END, \
    window_end = CASE WHEN excluded.window_start > rate_limits.window_start \
        THEN excluded.window_end ELSE rate_limits.window_end END, \
    window_start = CASE WHEN excluded.window_start > rate_limits.window_start \
        THEN excluded.window_start ELSE rate_limits.window_start END \
    RETURNING count";

// The bounds below say "DB can bind and decode the portable column types" (BIGINT, BOOLEAN,
// TEXT, bytes). Rust does not carry where-clauses along with a type parameter, so the two impl
// blocks of this file repeat them.
impl<DB> SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<bool>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
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

    fn get<'r, T>(row: &'r DB::Row, column: &'static str) -> Result<T, StoreError>
    where
        T: Decode<'r, DB> + Type<DB>,
    {
        row.try_get(column).map_err(|e| db_error("decode", e))
    }

    fn tenant_from_row(row: &DB::Row) -> Result<Tenant, StoreError> {
        let settings: String = Self::get(row, "settings")?;
        Ok(Tenant {
            id: TenantId::from_trusted(Self::get(row, "id")?),
            name: Self::get(row, "name")?,
            cname: Self::get(row, "cname")?,
            settings: from_json("tenants.settings", &settings)?,
            creation_date: time("creation_date", Self::get(row, "creation_date")?)?,
            change_date: time("change_date", Self::get(row, "change_date")?)?,
        })
    }

    fn user_from_row(row: &DB::Row) -> Result<User, StoreError> {
        let state: String = Self::get(row, "state")?;
        Ok(User {
            id: UserId::from_trusted(Self::get(row, "id")?),
            tenant_id: TenantId::from_trusted(Self::get(row, "tenant_id")?),
            username: Self::get(row, "username")?,
            email: Self::get(row, "email")?,
            email_verified: Self::get(row, "email_verified")?,
            phone: Self::get(row, "phone")?,
            phone_verified: Self::get(row, "phone_verified")?,
            first_name: Self::get(row, "first_name")?,
            last_name: Self::get(row, "last_name")?,
            display_name: Self::get(row, "display_name")?,
            preferred_language: Self::get(row, "preferred_language")?,
            state: parse("users.state", &state)?,
            password_hash: Self::get(row, "password_hash")?,
            password_change_required: Self::get(row, "password_change_required")?,
            sequence: to_u64("users.sequence", Self::get(row, "sequence")?)?,
            creation_date: time("users.creation_date", Self::get(row, "creation_date")?)?,
            change_date: time("users.change_date", Self::get(row, "change_date")?)?,
        })
    }

    fn token_from_row(row: &DB::Row) -> Result<ApiToken, StoreError> {
        let hash: Vec<u8> = Self::get(row, "token_hash")?;
        let role: String = Self::get(row, "role")?;
        let tenant_id: Option<String> = Self::get(row, "tenant_id")?;
        let user_id: Option<String> = Self::get(row, "user_id")?;
        let role = match (role.as_str(), tenant_id, user_id) {
            ("system", None, None) => Role::System,
            ("tenant_admin", Some(tenant), None) => {
                Role::TenantAdmin(TenantId::from_trusted(tenant))
            }
            ("user", Some(tenant), Some(user)) => Role::User {
                tenant_id: TenantId::from_trusted(tenant),
                user_id: UserId::from_trusted(user),
            },
            (other, ..) => return Err(corrupt(format!("api_tokens.role: {other:?} inconsistent"))),
        };
        Ok(ApiToken {
            id: Self::get(row, "id")?,
            hash: hash
                .try_into()
                .map_err(|_| corrupt("api_tokens.token_hash: not 32 bytes"))?,
            role,
            created_at: time("api_tokens.created_at", Self::get(row, "created_at")?)?,
            revoked_at: opt_time("api_tokens.revoked_at", Self::get(row, "revoked_at")?)?,
        })
    }

    fn code_from_row(row: &DB::Row) -> Result<ResetCodeRecord, StoreError> {
        let kind: String = Self::get(row, "kind")?;
        Ok(ResetCodeRecord {
            id: Self::get(row, "id")?,
            tenant_id: TenantId::from_trusted(Self::get(row, "tenant_id")?),
            user_id: UserId::from_trusted(Self::get(row, "user_id")?),
            key_id: Self::get(row, "key_id")?,
            mac: Self::get(row, "mac")?,
            kind: parse("reset_codes.kind", &kind)?,
            created_at: time("reset_codes.created_at", Self::get(row, "created_at")?)?,
            expires_at: time("reset_codes.expires_at", Self::get(row, "expires_at")?)?,
            attempts: to_u32("reset_codes.attempts", Self::get(row, "attempts")?)?,
            used_at: opt_time("reset_codes.used_at", Self::get(row, "used_at")?)?,
        })
    }

    fn event_from_row(row: &DB::Row) -> Result<Event, StoreError> {
        let payload: String = Self::get(row, "payload")?;
        Ok(Event {
            tenant_id: TenantId::from_trusted(Self::get(row, "tenant_id")?),
            aggregate_id: Self::get(row, "aggregate_id")?,
            sequence: to_u64("events.sequence", Self::get(row, "sequence")?)?,
            kind: Self::get(row, "kind")?,
            actor: Self::get(row, "actor")?,
            ip: Self::get(row, "ip")?,
            at: time("events.at", Self::get(row, "at")?)?,
            payload: from_json("events.payload", &payload)?,
        })
    }

    fn outbox_from_row(row: &DB::Row) -> Result<OutboxMessage, StoreError> {
        let channel: String = Self::get(row, "channel")?;
        let kind: String = Self::get(row, "kind")?;
        let state: String = Self::get(row, "state")?;
        Ok(OutboxMessage {
            id: Self::get(row, "id")?,
            tenant_id: TenantId::from_trusted(Self::get(row, "tenant_id")?),
            user_id: UserId::from_trusted(Self::get(row, "user_id")?),
            channel: parse("outbox.channel", &channel)?,
            recipient: Self::get(row, "recipient")?,
            kind: parse("outbox.kind", &kind)?,
            idempotency_key: Self::get(row, "idempotency_key")?,
            key_id: Self::get(row, "key_id")?,
            body: Self::get(row, "body")?,
            state: parse("outbox.state", &state)?,
            attempts: to_u32("outbox.attempts", Self::get(row, "attempts")?)?,
            next_attempt_at: time("outbox.next_attempt_at", Self::get(row, "next_attempt_at")?)?,
            last_error: Self::get(row, "last_error")?,
            created_at: time("outbox.created_at", Self::get(row, "created_at")?)?,
            sent_at: opt_time("outbox.sent_at", Self::get(row, "sent_at")?)?,
            body_expires_at: opt_time(
                "outbox.body_expires_at",
                Self::get(row, "body_expires_at")?,
            )?,
        })
    }

    async fn insert_event(
        conn: &mut DB::Connection,
        tenant: &TenantId,
        aggregate_id: &str,
        sequence: i64,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        sqlx::query(
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

    /// Counts `hit` inside the caller's transaction; `RateLimited` when over the limit (the
    /// caller rolls back, so a refused hit is not counted).
    async fn count_hit(conn: &mut DB::Connection, hit: &RateLimitHit) -> Result<(), StoreError> {
        let row = sqlx::query(COUNT_HIT)
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
    async fn refuse_if_full(&self, hit: &RateLimitHit) -> Result<(), StoreError> {
        let row = sqlx::query("SELECT window_start, count FROM rate_limits WHERE key = $1")
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

    /// The body of `change_user`, in the order documented on [`UserChange`]; returns the new
    /// sequence. Any error leaves the transaction to be rolled back by the caller.
    async fn apply_change(
        &self,
        conn: &mut DB::Connection,
        change: &UserChange,
    ) -> Result<i64, StoreError> {
        let tenant = change.tenant_id.as_str();
        let user = change.user_id.as_str();
        let at = micros(change.at);

        let row = sqlx::query(self.dialect.lock_user_state)
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
            sqlx::query(
                "UPDATE reset_codes SET used_at = $1, outcome = 'used' \
                 WHERE tenant_id = $2 AND user_id = $3 AND id = $4 AND used_at IS NULL \
                 RETURNING id",
            )
            .bind(at)
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .bind(code_id.clone())
            .fetch_optional(&mut *conn)
            .await
            .map_err(|e| db_error("change user: consume code", e))?
            .ok_or(StoreError::CodeGone)?;
        }

        // A new code always replaces the pending one (only the latest is valid; a partial
        // unique index holds at most one pending code per user).
        if change.void_pending_codes || change.new_code.is_some() {
            sqlx::query(
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
            sqlx::query(
                "INSERT INTO reset_codes \
                 (tenant_id, user_id, id, key_id, mac, kind, created_at, expires_at, attempts) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0)",
            )
            .bind(tenant.to_owned())
            .bind(user.to_owned())
            .bind(code.id.clone())
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
        let row = sqlx::query(
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
            sqlx::query(
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

    async fn insert_outbox(
        conn: &mut DB::Connection,
        message: &OutboxMessage,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox (tenant_id, id, user_id, channel, recipient, kind, \
             idempotency_key, key_id, body, state, attempts, next_attempt_at, last_error, \
             created_at, sent_at, body_expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
        )
        .bind(message.tenant_id.as_str().to_owned())
        .bind(message.id.clone())
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

    /// Runs one `UPDATE outbox … RETURNING id` in a write transaction; whether it changed a
    /// row (its `WHERE` names the state the change starts from, so a lost race is `false`).
    async fn update_outbox<'q>(
        &self,
        op: &'static str,
        query: sqlx::query::Query<'q, DB, DB::Arguments<'q>>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.begin_write(op).await?;
        let result = query
            .fetch_all(&mut *tx)
            .await
            .map(|rows| !rows.is_empty())
            .map_err(|e| db_error(op, e));
        Self::finish(op, tx, result).await
    }

    async fn reserve_in(
        conn: &mut DB::Connection,
        tenant: &TenantId,
        user: &UserId,
        code_id: &str,
        max_attempts: u32,
    ) -> Result<AttemptReservation, StoreError> {
        // One statement decides: concurrent guesses serialize on the row and none passes the cap.
        let reserved = sqlx::query(
            "UPDATE reset_codes SET attempts = attempts + 1 \
             WHERE tenant_id = $1 AND user_id = $2 AND id = $3 AND used_at IS NULL \
             AND attempts < $4 \
             RETURNING attempts",
        )
        .bind(tenant.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .bind(code_id.to_owned())
        .bind(i64::from(max_attempts))
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| db_error("reserve code attempt", e))?;
        if let Some(row) = reserved {
            let attempts = to_u32("reset_codes.attempts", Self::get(&row, "attempts")?)?;
            return Ok(AttemptReservation::Reserved { attempts });
        }
        // Not reserved: only tells the two refusals apart.
        let pending = sqlx::query(
            "SELECT id FROM reset_codes \
             WHERE tenant_id = $1 AND user_id = $2 AND id = $3 AND used_at IS NULL",
        )
        .bind(tenant.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .bind(code_id.to_owned())
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
impl<DB> Store for SqlStore<DB>
where
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> DB::Arguments<'q>: IntoArguments<'q, DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> bool: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Vec<u8>: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> Option<i64>: Encode<'q, DB>,
    for<'q> Option<bool>: Encode<'q, DB>,
    for<'q> Option<String>: Encode<'q, DB>,
    for<'a> &'a str: ColumnIndex<DB::Row>,
{
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
        let row = sqlx::query(
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

    async fn insert_tenant(&self, tenant: &Tenant, event: &NewEvent) -> Result<(), StoreError> {
        const OP: &str = "insert tenant";
        let settings = json_text("tenant settings", &tenant.settings)?;
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            sqlx::query(
                "INSERT INTO tenants (id, name, cname, settings, creation_date, change_date) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant.id.as_str().to_owned())
            .bind(tenant.name.clone())
            .bind(tenant.cname.clone())
            .bind(settings)
            .bind(micros(tenant.creation_date))
            .bind(micros(tenant.change_date))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) && violation_mentions(&e, "cname") {
                    StoreError::Conflict("cname")
                } else {
                    unique_as(OP, "tenant id", e)
                }
            })?;
            let id = tenant.id.as_str();
            Self::insert_event(&mut tx, &tenant.id, id, 1, tenant.creation_date, event).await
        }
        .await;
        Self::finish(OP, tx, result).await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row = sqlx::query(&sql)
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("tenant", e))?;
        row.as_ref().map(Self::tenant_from_row).transpose()
    }

    async fn tenant_by_cname(&self, cname: &str) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE cname = $1");
        let row = sqlx::query(&sql)
            .bind(cname.to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("tenant by cname", e))?;
        row.as_ref().map(Self::tenant_from_row).transpose()
    }

    async fn update_tenant_settings(
        &self,
        id: &TenantId,
        settings: &TenantSettings,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        const OP: &str = "update tenant settings";
        let settings = json_text("tenant settings", settings)?;
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            // The UPDATE locks the tenant row first, so concurrent changes number their events
            // one after the other.
            sqlx::query(
                "UPDATE tenants SET settings = $1, change_date = $2 WHERE id = $3 RETURNING id",
            )
            .bind(settings)
            .bind(micros(at))
            .bind(id.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?
            .ok_or(StoreError::NotFound)?;
            let row = sqlx::query(
                "SELECT COALESCE(MAX(sequence), 0) AS last FROM events \
                 WHERE tenant_id = $1 AND aggregate_id = $1",
            )
            .bind(id.as_str().to_owned())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?;
            let last: i64 = Self::get(&row, "last")?;
            Self::insert_event(&mut tx, id, id.as_str(), last + 1, at, event).await
        }
        .await;
        Self::finish(OP, tx, result).await
    }

    async fn insert_user(&self, user: &User, event: &NewEvent) -> Result<(), StoreError> {
        const OP: &str = "insert user";
        let email_lower = user.email.to_lowercase();
        let sequence = to_i64("users.sequence", user.sequence)?;
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            // The global index first: a taken id is reported as such, whatever the tenant.
            sqlx::query("INSERT INTO user_index (user_id, tenant_id) VALUES ($1, $2)")
                .bind(user.id.as_str().to_owned())
                .bind(user.tenant_id.as_str().to_owned())
                .execute(&mut *tx)
                .await
                .map_err(|e| unique_as(OP, "user id", e))?;
            let sql = format!(
                "INSERT INTO users ({USER_COLUMNS}, email_lower, username_lower) VALUES \
                 ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, \
                 $19)"
            );
            sqlx::query(&sql)
                .bind(user.tenant_id.as_str().to_owned())
                .bind(user.id.as_str().to_owned())
                .bind(user.username.clone())
                .bind(user.email.clone())
                .bind(user.email_verified)
                .bind(user.phone.clone())
                .bind(user.phone_verified)
                .bind(user.first_name.clone())
                .bind(user.last_name.clone())
                .bind(user.display_name.clone())
                .bind(user.preferred_language.clone())
                .bind(user.state.as_str().to_owned())
                .bind(user.password_hash.clone())
                .bind(user.password_change_required)
                .bind(sequence)
                .bind(micros(user.creation_date))
                .bind(micros(user.change_date))
                .bind(email_lower.clone())
                .bind(user.username.to_lowercase())
                .execute(&mut *tx)
                .await
                .map_err(|e| {
                    if is_foreign_key_violation(&e) {
                        StoreError::NotFound
                    } else if is_unique_violation(&e) && violation_mentions(&e, "email") {
                        StoreError::Conflict("email")
                    } else {
                        unique_as(OP, "user id", e)
                    }
                })?;
            sqlx::query(
                "INSERT INTO email_index (email_lower, tenant_id, user_id) VALUES ($1, $2, $3)",
            )
            .bind(email_lower.clone())
            .bind(user.tenant_id.as_str().to_owned())
            .bind(user.id.as_str().to_owned())
            .execute(&mut *tx)
            .await
            .map_err(|e| unique_as(OP, "email", e))?;
            Self::insert_event(
                &mut tx,
                &user.tenant_id,
                user.id.as_str(),
                sequence,
                user.creation_date,
                event,
            )
            .await
        }
        .await;
        Self::finish(OP, tx, result).await
    }

    async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND id = $2");
        let row = sqlx::query(&sql)
            .bind(tenant.as_str().to_owned())
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("user", e))?;
        row.as_ref().map(Self::user_from_row).transpose()
    }

    async fn user_tenant(&self, id: &UserId) -> Result<Option<TenantId>, StoreError> {
        let row = sqlx::query("SELECT tenant_id FROM user_index WHERE user_id = $1")
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("user tenant", e))?;
        row.map(|r| Self::get(&r, "tenant_id").map(TenantId::from_trusted))
            .transpose()
    }

    async fn search_users(&self, search: &UserSearch) -> Result<UserPage, StoreError> {
        const OP: &str = "search users";
        let conditions = UserConditions::of(self.dialect, search)?;
        let where_sql = &conditions.sql;

        let count_sql = format!("SELECT COUNT(*) AS total FROM users WHERE {where_sql}");
        let mut count = sqlx::query(&count_sql);
        for value in &conditions.values {
            count = count.bind(value.clone());
        }
        let row = count
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error(OP, e))?;
        let total = to_u64("users count", Self::get(&row, "total")?)?;

        let direction = if search.asc { "ASC" } else { "DESC" };
        let n = conditions.values.len();
        let page_sql = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE {where_sql} \
             ORDER BY creation_date {direction}, id{order} {direction} \
             LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2,
            order = self.dialect.code_point_order,
        );
        let mut page = sqlx::query(&page_sql);
        for value in &conditions.values {
            page = page.bind(value.clone());
        }
        // An offset past i64::MAX is past every row there can be.
        let offset = i64::try_from(search.offset).unwrap_or(i64::MAX);
        let rows = page
            .bind(i64::from(search.limit))
            .bind(offset)
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error(OP, e))?;
        let users = rows
            .iter()
            .map(Self::user_from_row)
            .collect::<Result<_, _>>()?;
        Ok(UserPage { total, users })
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        const OP: &str = "list tenants";
        let rows = sqlx::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY creation_date, id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(OP, e))?;
        rows.iter().map(Self::tenant_from_row).collect()
    }

    async fn users_by_email(
        &self,
        tenant: Option<&TenantId>,
        email: &str,
    ) -> Result<Vec<User>, StoreError> {
        const OP: &str = "users by email";
        let email_lower = email.to_lowercase();
        let by_tenant = format!(
            "SELECT {USER_COLUMNS} FROM users WHERE tenant_id = $1 AND email_lower = $2 \
             ORDER BY id"
        );
        let tenants: Vec<String> = match tenant {
            Some(tenant) => vec![tenant.as_str().to_owned()],
            // Across tenants: the global index names the tenants, then each tenant is read on
            // its own (no query spans tenants).
            None => sqlx::query(
                "SELECT tenant_id FROM email_index WHERE email_lower = $1 ORDER BY tenant_id",
            )
            .bind(email_lower.clone())
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error(OP, e))?
            .iter()
            .map(|r| Self::get(r, "tenant_id"))
            .collect::<Result<_, _>>()?,
        };
        let mut users = Vec::new();
        for tenant in tenants {
            let rows = sqlx::query(&by_tenant)
                .bind(tenant)
                .bind(email_lower.clone())
                .fetch_all(&self.reader)
                .await
                .map_err(|e| db_error(OP, e))?;
            for row in &rows {
                users.push(Self::user_from_row(row)?);
            }
        }
        Ok(users)
    }

    async fn change_user(&self, change: &UserChange) -> Result<Details, StoreError> {
        const OP: &str = "change user";
        if let Some(hit) = &change.rate_limit {
            self.refuse_if_full(hit).await?;
        }
        let mut tx = self.begin_write(OP).await?;
        let result = self.apply_change(&mut tx, change).await;
        let sequence = Self::finish(OP, tx, result).await?;
        Ok(Details {
            sequence: to_u64("users.sequence", sequence)?,
            change_date: truncate(change.at),
            resource_owner: change.tenant_id.clone(),
            creation_date: None,
        })
    }

    async fn insert_token(&self, token: &ApiToken) -> Result<(), StoreError> {
        const OP: &str = "insert token";
        let (tenant, user) = match &token.role {
            Role::System => (None, None),
            Role::TenantAdmin(tenant) => (Some(tenant.as_str().to_owned()), None),
            Role::User { tenant_id, user_id } => (
                Some(tenant_id.as_str().to_owned()),
                Some(user_id.as_str().to_owned()),
            ),
        };
        let mut tx = self.begin_write(OP).await?;
        let sql =
            format!("INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        let result = sqlx::query(&sql)
            .bind(token.hash.to_vec())
            .bind(token.id.clone())
            .bind(token.role.name().to_owned())
            .bind(tenant)
            .bind(user)
            .bind(micros(token.created_at))
            .bind(token.revoked_at.map(micros))
            .execute(&mut *tx)
            .await
            .map(|_| ())
            .map_err(|e| unique_as(OP, "token", e));
        Self::finish(OP, tx, result).await
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        );
        let row = sqlx::query(&sql)
            .bind(hash.to_vec())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("token by hash", e))?;
        row.as_ref().map(Self::token_from_row).transpose()
    }

    async fn count_tokens(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error("count tokens", e))?;
        to_u64("count", Self::get(&row, "n")?)
    }

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
        let row = sqlx::query(&sql)
            .bind(tenant.as_str().to_owned())
            .bind(user.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("pending code", e))?;
        row.as_ref().map(Self::code_from_row).transpose()
    }

    async fn reserve_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &str,
        max_attempts: u32,
    ) -> Result<AttemptReservation, StoreError> {
        const OP: &str = "reserve code attempt";
        let mut tx = self.begin_write(OP).await?;
        let result = Self::reserve_in(&mut tx, tenant, user, code_id, max_attempts).await;
        Self::finish(OP, tx, result).await
    }

    async fn refund_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &str,
    ) -> Result<(), StoreError> {
        const OP: &str = "refund code attempt";
        let mut tx = self.begin_write(OP).await?;
        let result = sqlx::query(
            "UPDATE reset_codes SET attempts = attempts - 1 \
             WHERE tenant_id = $1 AND user_id = $2 AND id = $3 AND used_at IS NULL \
             AND attempts > 0",
        )
        .bind(tenant.as_str().to_owned())
        .bind(user.as_str().to_owned())
        .bind(code_id.to_owned())
        .execute(&mut *tx)
        .await
        .map(|_| ())
        .map_err(|e| db_error(OP, e));
        Self::finish(OP, tx, result).await
    }

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
        let result = sqlx::query("DELETE FROM rate_limits WHERE window_end <= $1 RETURNING key")
            .bind(now.timestamp())
            .fetch_all(&mut *tx)
            .await
            .map(|rows| u64::try_from(rows.len()).unwrap_or(u64::MAX))
            .map_err(|e| db_error(OP, e));
        Self::finish(OP, tx, result).await
    }

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
        sql.push_str(&format!(
            " ORDER BY at, sequence, tenant_id, aggregate_id LIMIT ${}",
            n + 1
        ));
        let mut query = sqlx::query(&sql);
        if let Some(tenant) = &filter.tenant_id {
            query = query.bind(tenant.as_str().to_owned());
        }
        if let Some(aggregate) = &filter.aggregate_id {
            query = query.bind(aggregate.clone());
        }
        if let Some(since) = filter.since {
            query = query.bind(micros(since));
        }
        let rows = query
            .bind(limit(filter.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(|e| db_error("events", e))?;
        rows.iter().map(Self::event_from_row).collect()
    }

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
                sqlx::query(&sql)
                    .bind(state.as_str().to_owned())
                    .bind(limit(max))
                    .fetch_all(&self.reader)
                    .await
            }
            None => {
                let sql = format!(
                    "SELECT {OUTBOX_COLUMNS} FROM outbox ORDER BY created_at, tenant_id, id LIMIT $1"
                );
                sqlx::query(&sql)
                    .bind(limit(max))
                    .fetch_all(&self.reader)
                    .await
            }
        }
        .map_err(|e| db_error("outbox messages", e))?;
        rows.iter().map(Self::outbox_from_row).collect()
    }

    async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, StoreError> {
        let sql =
            format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1 ORDER BY tenant_id LIMIT 1");
        let row = sqlx::query(&sql)
            .bind(id.to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("outbox message", e))?;
        row.as_ref().map(Self::outbox_from_row).transpose()
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
        let mut query = sqlx::query(&sql)
            .bind(micros(lease_until))
            .bind(micros(now))
            .bind(i64::from(max));
        for channel in channels {
            query = query.bind(channel.as_str().to_owned());
        }
        let mut tx = self.begin_write(OP).await?;
        let result = query.fetch_all(&mut *tx).await.map_err(|e| db_error(OP, e));
        let rows = Self::finish(OP, tx, result).await?;
        let mut claimed = rows
            .iter()
            .map(Self::outbox_from_row)
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
        id: &str,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE outbox SET state = 'sent', sent_at = $1, body = $2, last_error = NULL, \
             body_expires_at = NULL \
             WHERE tenant_id = $3 AND id = $4 AND state = 'pending' RETURNING id",
        )
        .bind(micros(at))
        .bind(Vec::<u8>::new())
        .bind(tenant.as_str().to_owned())
        .bind(id.to_owned());
        self.update_outbox("mark outbox sent", query).await
    }

    async fn reschedule_outbox(
        &self,
        tenant: &TenantId,
        id: &str,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE outbox SET next_attempt_at = $1, last_error = $2 \
             WHERE tenant_id = $3 AND id = $4 AND state = 'pending' RETURNING id",
        )
        .bind(micros(next_attempt_at))
        .bind(error.to_owned())
        .bind(tenant.as_str().to_owned())
        .bind(id.to_owned());
        self.update_outbox("reschedule outbox", query).await
    }

    async fn park_outbox_failed(
        &self,
        tenant: &TenantId,
        id: &str,
        error: &str,
    ) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE outbox SET state = 'failed', last_error = $1 \
             WHERE tenant_id = $2 AND id = $3 AND state = 'pending' RETURNING id",
        )
        .bind(error.to_owned())
        .bind(tenant.as_str().to_owned())
        .bind(id.to_owned());
        self.update_outbox("park outbox message", query).await
    }

    async fn erase_expired_failed_bodies(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        const OP: &str = "erase expired outbox bodies";
        let mut tx = self.begin_write(OP).await?;
        let result = sqlx::query(
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

    async fn retry_outbox(&self, id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let query = sqlx::query(
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = $1, \
             last_error = NULL WHERE id = $2 AND state = 'failed' RETURNING id",
        )
        .bind(micros(now))
        .bind(id.to_owned());
        self.update_outbox("retry outbox message", query).await
    }
}

/// The WHERE clause of a user search, with the values it binds in placeholder order (`$1`
/// is `values[0]`). Every value is bound, never spliced into the SQL; the text comparisons use
/// `=`, `substr` and the dialect's position function rather than LIKE, so a needle's `%`, `_`
/// or `\` are plain characters and no escaping is needed.
struct UserConditions {
    sql: String,
    values: Vec<String>,
}

impl UserConditions {
    fn of(dialect: &Dialect, search: &UserSearch) -> Result<Self, StoreError> {
        let mut this = Self {
            sql: "1 = 1".to_owned(),
            values: Vec::new(),
        };
        if let Some(tenant) = &search.tenant {
            let p = this.bind(tenant.as_str());
            this.and(&format!("tenant_id = {p}"));
        }
        if !search.include_deleted {
            let p = this.bind(UserState::Deleted.as_str());
            this.and(&format!("state <> {p}"));
        }
        for filter in &search.filters {
            match filter {
                UserFilter::UserName(needle, how) => {
                    // The lower-cased copy is written by `insert_user` with Rust's
                    // `to_lowercase`, the same folding as the needle's below; SQL's LOWER
                    // folds only ASCII on SQLite, but per locale on PostgreSQL.
                    let column = if how.ignores_case() {
                        "username_lower"
                    } else {
                        "username"
                    };
                    this.text(dialect, column, needle, *how);
                }
                UserFilter::Email(needle, how) => {
                    let column = if how.ignores_case() {
                        "email_lower"
                    } else {
                        "email"
                    };
                    this.text(dialect, column, needle, *how);
                }
                UserFilter::State(state) => {
                    let p = this.bind(state.as_str());
                    this.and(&format!("state = {p}"));
                }
                UserFilter::InIds(ids) => {
                    let list = this.list(ids.iter().map(String::as_str))?;
                    this.and(&format!("id IN ({})", (dialect.json_strings)(&list)));
                }
                UserFilter::InEmails(emails) => {
                    // The request compares ignoring ASCII case; emails are ASCII (validated),
                    // so their `email_lower` is their ASCII lower case.
                    let lowered: Vec<String> =
                        emails.iter().map(|e| e.to_ascii_lowercase()).collect();
                    let list = this.list(lowered.iter().map(String::as_str))?;
                    this.and(&format!(
                        "email_lower IN ({})",
                        (dialect.json_strings)(&list)
                    ));
                }
                UserFilter::Tenant(tenant) => {
                    let p = this.bind(tenant.as_str());
                    this.and(&format!("tenant_id = {p}"));
                }
            }
        }
        Ok(this)
    }

    fn and(&mut self, condition: &str) {
        self.sql.push_str(" AND ");
        self.sql.push_str(condition);
    }

    /// Binds a value; its placeholder.
    fn bind(&mut self, value: &str) -> String {
        self.values.push(value.to_owned());
        format!("${}", self.values.len())
    }

    /// Binds a list as one JSON array; its placeholder. Strings with NUL are left out: no stored
    /// text can hold one on PostgreSQL (and its jsonb refuses `\u0000`), so on both databases
    /// they match nothing.
    fn list<'a>(&mut self, items: impl Iterator<Item = &'a str>) -> Result<String, StoreError> {
        let items: Vec<&str> = items.filter(|item| !item.contains('\0')).collect();
        let json = json_text("user search list", &items)?;
        Ok(self.bind(&json))
    }

    /// `column` compared with `needle` as `how` says. The caller picks the lower-cased column
    /// for the case-insensitive modes; the needle is folded here to match.
    fn text(&mut self, dialect: &Dialect, column: &str, needle: &str, how: TextMatch) {
        if needle.contains('\0') {
            // PostgreSQL refuses NUL in text parameters, and stores none; see `list`.
            self.and("1 = 0");
            return;
        }
        let needle = if how.ignores_case() {
            needle.to_lowercase()
        } else {
            needle.to_owned()
        };
        let p = self.bind(&needle);
        // `length` and `substr` count characters on both databases; for an empty needle each
        // form holds, as `str::starts_with("")` and friends do.
        let condition = match how {
            TextMatch::Equals | TextMatch::EqualsIgnoreCase => format!("{column} = {p}"),
            TextMatch::StartsWith | TextMatch::StartsWithIgnoreCase => {
                format!("substr({column}, 1, length({p})) = {p}")
            }
            TextMatch::EndsWith | TextMatch::EndsWithIgnoreCase => format!(
                "length({column}) >= length({p}) \
                 AND substr({column}, length({column}) - length({p}) + 1) = {p}"
            ),
            TextMatch::Contains | TextMatch::ContainsIgnoreCase => {
                format!("{}({column}, {p}) > 0", dialect.position)
            }
        };
        self.and(&condition);
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
