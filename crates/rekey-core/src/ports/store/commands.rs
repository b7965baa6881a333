//! What the flows hand the store and get back, besides records: the one-transaction user change
//! ([`UserChange`] and its parts), the fixed-window rate-limit hit, the outcome of reserving a
//! code attempt, and the filters and pages of the event and user listings.

use chrono::{DateTime, Utc};

use crate::domain::ids::{CodeId, MessageId, TenantId, UserId};
use crate::domain::{NewEvent, OutboxMessage, OutboxState, User, UserState};

/// A fixed-window rate-limit counter hit. The key is built from the input (never from whether
/// an account exists); the window starts at `at` rounded down to a multiple of `window_secs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHit {
    pub key: String,
    pub limit: u32,
    pub window_secs: u64,
    pub at: DateTime<Utc>,
}

impl RateLimitHit {
    pub fn window_start(&self) -> i64 {
        let window = i64::try_from(self.window_secs.max(1)).unwrap_or(i64::MAX);
        self.at.timestamp().div_euclid(window) * window
    }

    /// When the window ends (seconds since the Unix epoch).
    pub fn window_end(&self) -> i64 {
        let window = i64::try_from(self.window_secs.max(1)).unwrap_or(i64::MAX);
        self.window_start().saturating_add(window)
    }

    /// Seconds from `at` until the window ends.
    pub fn retry_after(&self) -> u64 {
        u64::try_from(self.window_end() - self.at.timestamp())
            .unwrap_or(1)
            .max(1)
    }
}

/// A new reset code to insert (after voiding the user's pending ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewResetCode {
    pub id: CodeId,
    pub key_id: String,
    pub mac: Vec<u8>,
    pub kind: crate::domain::CodeKind,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct PasswordChange {
    /// argon2id PHC string.
    pub hash: String,
    pub change_required: bool,
}

impl std::fmt::Debug for PasswordChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChange")
            .field("change_required", &self.change_required)
            .finish_non_exhaustive()
    }
}

/// Everything one flow step changes about one user, applied in one transaction, in this order:
/// check `require_state`, count `rate_limit`, consume `consume_code`, void pending codes,
/// insert `new_code`, update the user (`set_password`, `set_state`, sequence + 1, change date),
/// revoke the user's `user`-role tokens, erase the user's personal data
/// (`erase_personal_data`), append `event`, insert `outbox` rows.
#[derive(Debug, Clone)]
pub struct UserChange {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub at: DateTime<Utc>,
    pub event: NewEvent,
    /// The change applies only while the user is in one of these states; otherwise
    /// `StoreError::StateConflict(current)`. Empty: any state except `deleted`.
    pub require_state: Vec<UserState>,
    pub rate_limit: Option<RateLimitHit>,
    /// Code id that must still be pending; marked used, else `StoreError::CodeGone`.
    pub consume_code: Option<CodeId>,
    pub void_pending_codes: bool,
    pub new_code: Option<NewResetCode>,
    pub set_password: Option<PasswordChange>,
    pub set_state: Option<UserState>,
    pub revoke_user_tokens: bool,
    /// Erase the user's personal data at once (a deletion, SPEC §12): email (to
    /// [`crate::domain::erased_email`], so the address is free again) and its global index
    /// row, username, phone, names and password hash; their email and SMS messages lose
    /// body and recipient (a pending one is parked as failed); their events keep ids only
    /// (the client address is dropped).
    pub erase_personal_data: bool,
    pub outbox: Vec<OutboxMessage>,
}

impl UserChange {
    /// A change that only appends an event (and bumps the sequence); fill in the rest.
    pub fn new(tenant_id: TenantId, user_id: UserId, at: DateTime<Utc>, event: NewEvent) -> Self {
        Self {
            tenant_id,
            user_id,
            at,
            event,
            require_state: Vec::new(),
            rate_limit: None,
            consume_code: None,
            void_pending_codes: false,
            new_code: None,
            set_password: None,
            set_state: None,
            revoke_user_tokens: false,
            erase_personal_data: false,
            outbox: Vec::new(),
        }
    }
}

/// Outcome of reserving one attempt on a pending code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptReservation {
    /// The attempt was counted; `attempts` is the new count (≤ the cap).
    Reserved { attempts: u32 },
    /// The code already has the maximum number of attempts: it is dead.
    Exhausted,
    /// The code is no longer pending.
    Gone,
}

/// Which events to read: all conditions given must hold. Events come in the order of
/// [`EventKey`] — time, then tenant, aggregate and sequence — which is also the order of keyset
/// paging: `after` starts the page just past the event with that key.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventFilter {
    pub tenant_id: Option<TenantId>,
    pub aggregate_id: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// Only events ordered after this key (the last of the previous page).
    pub after: Option<EventKey>,
    /// Most events returned; 0: no limit.
    pub limit: u32,
}

/// Where an event stands in the audit trail's order: unique (the primary key plus the time),
/// and stable under inserts, since new events carry the current time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventKey {
    pub at: DateTime<Utc>,
    pub tenant_id: TenantId,
    pub aggregate_id: String,
    pub sequence: u64,
}

impl EventKey {
    pub fn of(event: &crate::domain::Event) -> Self {
        Self {
            at: event.at,
            tenant_id: event.tenant_id.clone(),
            aggregate_id: event.aggregate_id.clone(),
            sequence: event.sequence,
        }
    }
}

/// A page of outbox messages, oldest first (created, then tenant, then id), for the admin
/// listing: keyset paging like [`EventFilter`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboxQuery {
    pub state: Option<OutboxState>,
    /// Only this tenant's messages (a tenant admin's view).
    pub tenant_id: Option<TenantId>,
    /// Only messages ordered after this key (the last of the previous page).
    pub after: Option<OutboxKey>,
    /// Most messages returned; 0: no limit.
    pub limit: u32,
}

/// Where a message stands in the outbox listing's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxKey {
    pub created_at: DateTime<Utc>,
    pub tenant_id: TenantId,
    pub id: MessageId,
}

impl OutboxKey {
    pub fn of(message: &OutboxMessage) -> Self {
        Self {
            created_at: message.created_at,
            tenant_id: message.tenant_id.clone(),
            id: message.id.clone(),
        }
    }
}

/// How a text condition of a user search compares (ZITADEL's `TextQueryMethod`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextMatch {
    Equals,
    EqualsIgnoreCase,
    StartsWith,
    StartsWithIgnoreCase,
    Contains,
    ContainsIgnoreCase,
    EndsWith,
    EndsWithIgnoreCase,
}

impl TextMatch {
    /// Whether case is ignored (both sides lower-cased with [`str::to_lowercase`]).
    pub fn ignores_case(self) -> bool {
        matches!(
            self,
            TextMatch::EqualsIgnoreCase
                | TextMatch::StartsWithIgnoreCase
                | TextMatch::ContainsIgnoreCase
                | TextMatch::EndsWithIgnoreCase
        )
    }

    /// The meaning of each mode, in Rust. A store evaluates searches in its database; its
    /// conformance tests hold its answers to this definition.
    pub fn matches(self, value: &str, wanted: &str) -> bool {
        let (v, w) = if self.ignores_case() {
            (value.to_lowercase(), wanted.to_lowercase())
        } else {
            (value.to_owned(), wanted.to_owned())
        };
        match self {
            TextMatch::Equals | TextMatch::EqualsIgnoreCase => v == w,
            TextMatch::StartsWith | TextMatch::StartsWithIgnoreCase => v.starts_with(&w),
            TextMatch::Contains | TextMatch::ContainsIgnoreCase => v.contains(&w),
            TextMatch::EndsWith | TextMatch::EndsWithIgnoreCase => v.ends_with(&w),
        }
    }
}

/// One condition of a user search; all conditions of a search must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserFilter {
    UserName(String, TextMatch),
    Email(String, TextMatch),
    State(UserState),
    /// The user's id is one of these (none: no user matches).
    InIds(Vec<String>),
    /// The user's email is one of these, ASCII case ignored (none: no user matches).
    InEmails(Vec<String>),
    Tenant(TenantId),
}

/// One page of a user search, evaluated by the store: filtered, counted and paged in the
/// database rather than in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSearch {
    /// The one tenant searched, or `None` for every tenant of the instance.
    pub tenant: Option<TenantId>,
    pub filters: Vec<UserFilter>,
    /// Deleted users count and are returned only when this is set.
    pub include_deleted: bool,
    /// Ordered by (creation date, id): oldest first when true, newest first otherwise.
    pub asc: bool,
    /// Matching users skipped before the page starts.
    pub offset: u64,
    /// Most users returned; 0 returns none (the caller applies its own default and cap).
    pub limit: u32,
}

/// A page of users and how many users match the search in all.
#[derive(Debug, Clone, Default)]
pub struct UserPage {
    pub total: u64,
    pub users: Vec<User>,
}
