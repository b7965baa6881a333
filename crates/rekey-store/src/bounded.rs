//! A client-side bound on every store operation over the network.
//!
//! PostgreSQL's `statement_timeout` and `lock_timeout` are enforced by the server, and the
//! pool's acquire timeout covers getting a connection; but once a statement is on the wire, sqlx
//! waits for the reply for as long as the socket stays open. In a partition (the database host
//! or a network hop goes silent: no answer, no reset) that wait has no end, so a request caught
//! inside a round trip would run into the request deadline and answer 504 instead of 503
//! `UNAVAILABLE`, and the outbox worker would stall. [`Bounded`] ends each operation that takes
//! longer than its limit as [`StoreError::Unavailable`]; the operation's future is dropped,
//! which rolls back an open transaction (the connection comes back to the pool mid-transaction
//! and `release_guard` closes it).

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_core::domain::{
    ApiToken, Channel, Details, Event, NewEvent, OutboxMessage, OutboxState, ResetCodeRecord,
    Tenant, TenantSettings, User,
};
use rekey_core::domain::{CodeId, MessageId, TenantId, TokenId, UserId};
use rekey_core::ports::store::{
    AttemptReservation, AuditLog, CodeStore, EventFilter, Health, OutboxQuery, OutboxStats,
    OutboxStore, PoolStats, RateLimitHit, RateLimitStore, StoreError, TenantStore, TokenStore,
    UserChange, UserPage, UserSearch, UserStore,
};

/// A [`Store`](rekey_core::ports::store::Store) whose every operation ends within `limit`.
pub struct Bounded<S> {
    inner: S,
    limit: Duration,
}

impl<S> Bounded<S> {
    pub fn new(inner: S, limit: Duration) -> Self {
        Self { inner, limit }
    }

    async fn run<T>(
        &self,
        op: &'static str,
        fut: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        match tokio::time::timeout(self.limit, fut).await {
            Ok(result) => result,
            Err(_) => {
                crate::error::count_db_error();
                tracing::error!(
                    op,
                    limit_ms = self.limit.as_millis(),
                    "database did not answer in time"
                );
                Err(StoreError::Unavailable)
            }
        }
    }
}

#[async_trait]
impl<S: Health> Health for Bounded<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", self.inner.ping()).await
    }

    async fn outbox_stats(&self) -> Result<OutboxStats, StoreError> {
        self.run("outbox stats", self.inner.outbox_stats()).await
    }

    fn pool_stats(&self) -> PoolStats {
        self.inner.pool_stats()
    }
}

#[async_trait]
impl<S: TenantStore> TenantStore for Bounded<S> {
    async fn insert_tenant(&self, tenant: &Tenant, event: &NewEvent) -> Result<(), StoreError> {
        self.run("insert tenant", self.inner.insert_tenant(tenant, event))
            .await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        self.run("tenant", self.inner.tenant(id)).await
    }

    async fn tenant_by_cname(&self, cname: &str) -> Result<Option<Tenant>, StoreError> {
        self.run("tenant by cname", self.inner.tenant_by_cname(cname))
            .await
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        self.run("tenants", self.inner.tenants()).await
    }

    async fn update_tenant_settings(
        &self,
        id: &TenantId,
        settings: &TenantSettings,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        self.run(
            "update tenant settings",
            self.inner.update_tenant_settings(id, settings, at, event),
        )
        .await
    }
}

#[async_trait]
impl<S: UserStore> UserStore for Bounded<S> {
    async fn insert_user(&self, user: &User, event: &NewEvent) -> Result<(), StoreError> {
        self.run("insert user", self.inner.insert_user(user, event))
            .await
    }

    async fn user(&self, tenant: &TenantId, id: &UserId) -> Result<Option<User>, StoreError> {
        self.run("user", self.inner.user(tenant, id)).await
    }

    async fn user_with_tenant(
        &self,
        tenant: &TenantId,
        id: &UserId,
    ) -> Result<Option<(User, Tenant)>, StoreError> {
        self.run("user with tenant", self.inner.user_with_tenant(tenant, id))
            .await
    }

    async fn user_tenant(&self, id: &UserId) -> Result<Option<TenantId>, StoreError> {
        self.run("user tenant", self.inner.user_tenant(id)).await
    }

    async fn users_by_email(
        &self,
        tenant: Option<&TenantId>,
        email: &str,
    ) -> Result<Vec<User>, StoreError> {
        self.run("users by email", self.inner.users_by_email(tenant, email))
            .await
    }

    async fn search_users(&self, search: &UserSearch) -> Result<UserPage, StoreError> {
        self.run("search users", self.inner.search_users(search))
            .await
    }

    async fn change_user(&self, change: &UserChange) -> Result<Details, StoreError> {
        self.run("change user", self.inner.change_user(change))
            .await
    }
}

#[async_trait]
impl<S: TokenStore> TokenStore for Bounded<S> {
    async fn insert_token(&self, token: &ApiToken) -> Result<(), StoreError> {
        self.run("insert token", self.inner.insert_token(token))
            .await
    }

    async fn token_by_hash(&self, hash: &[u8; 32]) -> Result<Option<ApiToken>, StoreError> {
        self.run("token by hash", self.inner.token_by_hash(hash))
            .await
    }

    async fn token_with_user(
        &self,
        hash: &[u8; 32],
        user_id: &UserId,
    ) -> Result<Option<(ApiToken, Option<(User, Tenant)>)>, StoreError> {
        self.run("token with user", self.inner.token_with_user(hash, user_id))
            .await
    }

    async fn count_tokens(&self) -> Result<u64, StoreError> {
        self.run("count tokens", self.inner.count_tokens()).await
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiToken>, StoreError> {
        self.run("tokens", self.inner.tokens(tenant)).await
    }

    async fn token(&self, id: &TokenId) -> Result<Option<ApiToken>, StoreError> {
        self.run("token", self.inner.token(id)).await
    }

    async fn revoke_token(
        &self,
        id: &TokenId,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        self.run("revoke token", self.inner.revoke_token(id, at, event))
            .await
    }

    async fn record_token_use(
        &self,
        hash: &[u8; 32],
        at: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.run(
            "record token use",
            self.inner.record_token_use(hash, at, stale_before),
        )
        .await
    }
}

#[async_trait]
impl<S: CodeStore> CodeStore for Bounded<S> {
    async fn pending_code(
        &self,
        tenant: &TenantId,
        user: &UserId,
    ) -> Result<Option<ResetCodeRecord>, StoreError> {
        self.run("pending code", self.inner.pending_code(tenant, user))
            .await
    }

    async fn reserve_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &CodeId,
        max_attempts: u32,
        on_last: &[OutboxMessage],
    ) -> Result<AttemptReservation, StoreError> {
        self.run(
            "reserve code attempt",
            self.inner
                .reserve_code_attempt(tenant, user, code_id, max_attempts, on_last),
        )
        .await
    }

    async fn refund_code_attempt(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code_id: &CodeId,
    ) -> Result<(), StoreError> {
        self.run(
            "refund code attempt",
            self.inner.refund_code_attempt(tenant, user, code_id),
        )
        .await
    }
}

#[async_trait]
impl<S: RateLimitStore> RateLimitStore for Bounded<S> {
    async fn hit_rate_limit(&self, hit: &RateLimitHit) -> Result<(), StoreError> {
        self.run("hit rate limit", self.inner.hit_rate_limit(hit))
            .await
    }

    async fn purge_rate_limits(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.run("purge rate limits", self.inner.purge_rate_limits(now))
            .await
    }
}

#[async_trait]
impl<S: AuditLog> AuditLog for Bounded<S> {
    async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, StoreError> {
        self.run("events", self.inner.events(filter)).await
    }

    async fn delete_events_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.run(
            "delete old events",
            self.inner.delete_events_before(before, limit),
        )
        .await
    }
}

#[async_trait]
impl<S: OutboxStore> OutboxStore for Bounded<S> {
    async fn outbox_messages(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.run("outbox messages", self.inner.outbox_messages(state, limit))
            .await
    }

    async fn outbox_message(&self, id: &MessageId) -> Result<Option<OutboxMessage>, StoreError> {
        self.run("outbox message", self.inner.outbox_message(id))
            .await
    }

    async fn outbox_page(&self, query: &OutboxQuery) -> Result<Vec<OutboxMessage>, StoreError> {
        self.run("outbox page", self.inner.outbox_page(query)).await
    }

    async fn requeue_outbox(
        &self,
        id: &MessageId,
        now: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<Option<TenantId>, StoreError> {
        self.run("requeue outbox", self.inner.requeue_outbox(id, now, event))
            .await
    }

    async fn claim_outbox(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        channels: &[Channel],
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, StoreError> {
        self.run(
            "claim outbox",
            self.inner.claim_outbox(now, lease_until, channels, limit),
        )
        .await
    }

    async fn mark_outbox_sent(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        at: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.run(
            "mark outbox sent",
            self.inner.mark_outbox_sent(tenant, id, at),
        )
        .await
    }

    async fn reschedule_outbox(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.run(
            "reschedule outbox",
            self.inner
                .reschedule_outbox(tenant, id, next_attempt_at, error),
        )
        .await
    }

    async fn park_outbox_failed(
        &self,
        tenant: &TenantId,
        id: &MessageId,
        error: &str,
    ) -> Result<bool, StoreError> {
        self.run(
            "park outbox failed",
            self.inner.park_outbox_failed(tenant, id, error),
        )
        .await
    }

    async fn erase_expired_failed_bodies(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        self.run(
            "erase expired outbox bodies",
            self.inner.erase_expired_failed_bodies(now),
        )
        .await
    }

    async fn retry_outbox(&self, id: &MessageId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.run("retry outbox", self.inner.retry_outbox(id, now))
            .await
    }

    async fn delete_finished_outbox_before(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<u64, StoreError> {
        self.run(
            "delete old outbox messages",
            self.inner.delete_finished_outbox_before(before, limit),
        )
        .await
    }
}
