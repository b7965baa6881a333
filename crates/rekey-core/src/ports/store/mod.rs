//! The storage port. Implemented for SQLite and PostgreSQL in `rekey-store`; both pass the same
//! conformance suite. Every write that belongs together (state change, event, outbox row, rate
//! counter) is one [`UserChange`] and therefore one transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::ids::{CodeId, MessageId, TenantId, TokenId, UserId};
use crate::domain::{
    ApiToken, Channel, Details, Event, NewEvent, OutboxMessage, OutboxState, ResetCodeRecord,
    Tenant, TenantSettings, User, UserState,
};
use crate::error::Error;

mod commands;
mod stats;

pub use commands::{
    AttemptReservation, EventFilter, EventKey, NewResetCode, OutboxKey, OutboxQuery,
    PasswordChange, RateLimitHit, TextMatch, UserChange, UserFilter, UserPage, UserSearch,
};
pub use stats::{OutboxStats, PoolStats};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or failed; the cause is logged by the store.
    #[error("database unavailable")]
    Unavailable,
    /// A uniqueness rule was violated (the name of the rule, e.g. `"email"`, `"cname"`).
    #[error("conflict on {0}")]
    Conflict(&'static str),
    /// The user (or tenant) the change names does not exist.
    #[error("not found")]
    NotFound,
    /// The code to consume is no longer pending (used or voided concurrently).
    #[error("code no longer pending")]
    CodeGone,
    /// The user's state is not one the change requires.
    #[error("user state changed")]
    StateConflict(UserState),
    /// A rate limit counted in the change's transaction is exceeded.
    #[error("rate limited")]
    RateLimited { retry_after_secs: u64 },
    /// Data in the database could not be read back (a bug or a manual edit).
    #[error("corrupt row: {0}")]
    Corrupt(String),
}

impl From<StoreError> for Error {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable => Error::unavailable(),
            StoreError::Conflict(what) => Error::new(
                crate::ErrorKind::AlreadyExists,
                "REKEY-Dup01",
                format!("The {what} is already taken"),
            ),
            StoreError::NotFound => Error::user_not_found(),
            StoreError::CodeGone => Error::code_not_found(),
            StoreError::StateConflict(UserState::Locked) => Error::user_locked(),
            StoreError::StateConflict(UserState::Deleted) => Error::user_not_found(),
            StoreError::StateConflict(_) => Error::user_inactive(),
            StoreError::RateLimited { retry_after_secs } => Error::rate_limited(retry_after_secs),
            StoreError::Corrupt(what) => {
                tracing::error!(%what, "corrupt row");
                Error::internal()
            }
        }
    }
}

// The port is a set of narrow traits, one per kind of record (as lldap's backend handlers), so
// a consumer can say which part of the store it uses; [`Store`] combines them, and every type
// that implements all of them is a `Store` (blanket impl), so `Arc<dyn Store>` still hands
// everything to the flows.

/// Whether the database can serve requests (`/readyz`), and how busy it is (`/metrics`).
#[async_trait]
pub trait Health: Send + Sync {
    /// Reachable and migrated.
    async fn ping(&self) -> Result<(), StoreError>;
    /// The outbox's backlog (one small read; for scrapes, not for requests).
    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError>;
    /// The pools' use and the errors counted so far, without touching the database.
    fn pool_stats(&self) -> PoolStats;
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Inserts the tenant and its `tenant.added` event (sequence 1).
    /// `Conflict("cname")` when the cname is taken.
    async fn insert_tenant(&self, tenant: &Tenant, event: &NewEvent) -> Result<(), StoreError>;
    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError>;
    async fn tenant_by_cname(&self, cname: &str) -> Result<Option<Tenant>, StoreError>;
    /// Every tenant, oldest first.
    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    /// Replaces the settings and appends a `tenant.settings.changed` event.
    async fn update_tenant_settings(
        &self,
        id: &TenantId,
        settings: &TenantSettings,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    /// Inserts the user (sequence must be 1) with its first event.
    /// `Conflict("email")` when the email (case-insensitive) exists in the tenant.
    async fn insert_user(&self, user: &User, event: &NewEvent) -> Result<(), StoreError>;
    async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError>;
    /// The user and its tenant, in one read (a reset needs both: the user's state and the
    /// tenant's settings).
    async fn user_with_tenant(
        &self,
        tenant: &TenantId,
        id: &UserId,
    ) -> Result<Option<(User, Tenant)>, StoreError>;
    /// The tenant a user id belongs to (global index).
    async fn user_tenant(&self, id: &UserId) -> Result<Option<TenantId>, StoreError>;
    /// Users with this email (case-insensitive), in one tenant or (None) in all tenants.
    async fn users_by_email(
        &self,
        tenant: Option<&TenantId>,
        email: &str,
    ) -> Result<Vec<User>, StoreError>;
    /// The page of users [`UserSearch`] describes and the number of users it matches.
    async fn search_users(&self, search: &UserSearch) -> Result<UserPage, StoreError>;
    /// Applies a [`UserChange`] in one transaction; returns the new details.
    async fn change_user(&self, change: &UserChange) -> Result<Details, StoreError>;
}

#[async_trait]
pub trait TokenStore: Send + Sync {
    async fn insert_token(&self, token: &ApiToken) -> Result<(), StoreError>;
    /// The token with this SHA-256, unless revoked (an expired one is returned: the flow
    /// decides by its clock).
    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError>;
    /// [`TokenStore::token_by_hash`] and, in the same read, the user `user_id` names with its
    /// tenant — the user in the token's tenant (a system token's: the tenant the user index
    /// names) — when there is one. Whether the token may act on that user is the caller's
    /// rule; this only saves the round trips.
    async fn token_with_user(
        &self,
        hash: &[u8; 32],
        user_id: &UserId,
    ) -> Result<Option<(ApiToken, Option<(User, Tenant)>)>, StoreError>;
    async fn count_tokens(&self) -> Result<u64, StoreError>;
    /// Every token, revoked and expired ones included, oldest first; with `tenant`, only the
    /// tokens of that tenant (its admins' and its users').
    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiToken>, StoreError>;
    /// The token with this id, revoked or not.
    async fn token(&self, id: &TokenId) -> Result<Option<ApiToken>, StoreError>;
    /// Revokes the token at `at` and appends `event` for it (aggregate: the token id; tenant:
    /// the token's, or [`INSTANCE_EVENTS`] for a `system` token), in one transaction. `false`,
    /// writing nothing, when no unrevoked token has this id.
    async fn revoke_token(
        &self,
        id: &TokenId,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<bool, StoreError>;
    /// Records a use of the token at `at`, unless the recorded last use is at or after
    /// `stale_before` (a conditional write: concurrent callers and replicas write it once).
    /// Whether it was written.
    async fn record_token_use(
        &self,
        hash: &[u8; 32],
        at: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
}

/// The tenant column of audit events that belong to no tenant (a `system` token's revocation).
pub const INSTANCE_EVENTS: &str = "";

#[async_trait]
pub trait CodeStore: Send + Sync {
    /// The user's pending (unused, not voided) code, if any.
    async fn pending_code(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<ResetCodeRecord>, StoreError>;
    /// Atomically counts one attempt on a pending code, unless it already has `max_attempts`.
    /// Committed on its own: a wrong guess changes nothing else — except that when this
    /// attempt is the last one allowed (the count reaches `max_attempts`), the outbox rows
    /// `on_last` (the `user.code.locked` webhook events of a wrong code) are inserted in the
    /// same transaction.
    async fn reserve_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &CodeId,
        max_attempts: u32,
        on_last: &[OutboxMessage],
    ) -> Result<AttemptReservation, StoreError>;
    /// Gives back an attempt reserved by a submission whose code matched but whose password
    /// the policy refused.
    async fn refund_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &CodeId,
    ) -> Result<(), StoreError>;
}

#[async_trait]
pub trait RateLimitStore: Send + Sync {
    /// Counts a hit in its own transaction; `RateLimited` when over the limit. A hit on a
    /// counter already at its limit is refused by a read, without a write transaction.
    async fn hit_rate_limit(&self, hit: &RateLimitHit) -> Result<(), StoreError>;
    /// Deletes the counters whose window ended at or before `now`; how many.
    async fn purge_rate_limits(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The audit trail. Events are appended by the writes they record (in the same transaction),
/// so this port reads them, and deletes those past the retention window.
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Events oldest first, in the order of [`EventKey`] (time, tenant, aggregate, sequence).
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError>;
    /// Deletes up to `limit` of the oldest events from before `before`, in one short write
    /// transaction; how many. Retention calls it in batches until fewer than `limit` go.
    async fn delete_events_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// The outbox: admin listings and retries, and the delivery worker's leases. Messages are
/// inserted by [`UserStore::change_user`], in the transaction of the change that sends them.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Outbox messages, oldest first, optionally only those in one state.
    async fn outbox_messages(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// The outbox message with this id (any tenant, any state).
    async fn outbox_message(&self, id: &MessageId) -> Result<Option<OutboxMessage>, StoreError>;
    /// A page of the admin listing: messages in the order of [`OutboxKey`] (oldest first).
    async fn outbox_page(&self, query: &OutboxQuery) -> Result<Vec<OutboxMessage>, StoreError>;
    /// [`OutboxStore::retry_outbox`] with its audit `event`, appended to the message's tenant
    /// (the tenant aggregate) in the same transaction. The message's tenant when it was failed
    /// and is now pending; `None` when no failed message has this id.
    async fn requeue_outbox(
        &self,
        id: &MessageId,
        now: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<Option<TenantId>, StoreError>;

    // --- delivery (the outbox worker) ---
    /// Claims up to `limit` due messages (`pending`, `next_attempt_at <= now`) on one of
    /// `channels`, most overdue first, for delivery: in one statement each claimed message's
    /// `next_attempt_at` becomes `lease_until` and its `attempts` grows by one, so the claim is
    /// a lease — a worker that dies mid-send leaves the message to be claimed again once the
    /// lease has run out. Concurrent claimers (threads, processes, replicas) never get the same
    /// message while its lease holds. Returns the claimed rows as updated.
    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        channels: &[Channel],
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError>;
    /// Marks a pending message sent at `at` and erases its body (it may hold a code).
    /// `false` when the message is not (or no longer) pending.
    async fn mark_outbox_sent(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError>;
    /// Leaves a pending message pending for another attempt at `next_attempt_at`, recording
    /// why this one failed. `error` must not hold the body or a code.
    /// `false` when the message is not (or no longer) pending.
    async fn reschedule_outbox(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Parks a pending message as `failed` (visible to admins), keeping its sealed body — until
    /// its code expires ([`OutboxStore::erase_expired_failed_bodies`]) — so
    /// [`OutboxStore::retry_outbox`] can send it again. `error` must not hold the body or a code.
    /// `false` when the message is not (or no longer) pending.
    async fn park_outbox_failed(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        error: &str,
    ) -> Result<bool, StoreError>;
    /// Erases the sealed body of every failed message whose code expired at or before `now`;
    /// how many.
    async fn erase_expired_failed_bodies(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
    /// An admin's retry of a failed message, by id alone: back to `pending`, due at `now`,
    /// attempts 0, error cleared. `false` when no failed message has this id.
    async fn retry_outbox(&self, id: &MessageId, now: DateTime<Utc>) -> Result<bool, StoreError>;
    /// Deletes up to `limit` of the oldest `sent` and `failed` messages created before
    /// `before` (never a pending one), in one short write transaction; how many.
    async fn delete_finished_outbox_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError>;
}

/// The whole storage port: what the flows are given. Implemented for every type that
/// implements each narrow trait; the methods of all of them can be called on a `dyn Store`
/// without importing the narrow traits.
pub trait Store:
    Health
    + TenantStore
    + UserStore
    + TokenStore
    + CodeStore
    + RateLimitStore
    + AuditLog
    + OutboxStore
    + 'static
{
}

impl<T> Store for T where
    T: Health
        + TenantStore
        + UserStore
        + TokenStore
        + CodeStore
        + RateLimitStore
        + AuditLog
        + OutboxStore
        + 'static
{
}

/// The store traits, for code that calls them on a concrete or generic store (a `dyn Store`
/// needs no import): `use rekey_core::ports::store::prelude::*;`.
pub mod prelude {
    pub use super::{
        AuditLog, CodeStore, Health, OutboxStore, RateLimitStore, Store, TenantStore, TokenStore,
        UserStore,
    };
}
