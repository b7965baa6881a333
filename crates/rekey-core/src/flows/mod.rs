//! The flows every face calls, one file per use case. A face decodes its request into one of
//! the commands here, authenticates the caller, and maps the result or [`Error`] back to its
//! own shape; no face holds a business rule and no flow knows which face called it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::crypto::{CodeMac, PasswordHasher, Sealer};
use crate::domain::{NewId, TenantId, UserId, UserState};
use crate::error::Error;
use crate::policy::Config;
use crate::ports::{Clock, Random, Store};

mod access;
mod admin;
mod operations;
mod password;
mod reset;
mod stats;
mod tenants;
mod tokens;
mod users;
mod webhooks;

pub use access::Caller;
pub use admin::Retried;
pub use operations::{EventQuery, OutboxListing, Page, DEFAULT_PAGE, MAX_PAGE};
pub use password::{SetPassword, Verification};
pub use reset::{Delivery, ResetIssued};
pub use stats::{RateLimit, Stats};
pub use tokens::{IssuedToken, ListedTokens, TokenRevoked};
pub use users::{ListedUsers, NewAdmin, NewUser, NewUserOptions};

/// Everything the flows run on, built once at start. The binary builds one and hands clones
/// to both [`Rekey::new`] and the outbox worker (which needs the same store, sealer and
/// clock), so nothing outside the core has to ask a [`Rekey`] for its parts.
#[derive(Clone)]
pub struct Deps {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub rng: Arc<dyn Random>,
    /// Signs and checks reset codes.
    pub codes: CodeMac,
    /// Seals outbox bodies (they may hold a code).
    pub sealer: Sealer,
    pub hasher: PasswordHasher,
}

/// The service every face and the CLI call: one method per use case, each in the file of
/// its use case under `flows/`.
pub struct Rekey {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<dyn Random>,
    codes: CodeMac,
    sealer: Sealer,
    pub(crate) hasher: PasswordHasher,
    pub(crate) config: Config,
    /// Tokens whose last use is being recorded ([`Rekey::authenticate`]).
    uses_in_flight: Arc<tokens::UsesInFlight>,
    /// Rate-limit refusals, for `/metrics`.
    refusals: stats::RateLimitRefusals,
}

/// Where lookups for input that names nothing go, so they cost what a real lookup costs.
/// Generated ids are time-ordered numbers, never 0; a system principal could still choose "0"
/// for a tenant, so callers never use what a decoy lookup finds.
fn decoy_tenant() -> TenantId {
    TenantId::from_trusted(String::from("0"))
}

/// A user id no user can have: one character longer than any id the API accepts.
fn decoy_user() -> UserId {
    UserId::from_trusted("0".repeat(crate::domain::ids::MAX_ID_LEN + 1))
}

fn state_error(state: UserState) -> Option<Error> {
    match state {
        UserState::Inactive => Some(Error::user_inactive()),
        UserState::Locked => Some(Error::user_locked()),
        _ => None,
    }
}

impl Rekey {
    /// The flows over `deps`, with the instance-wide defaults in `config`. There are no getters
    /// for the parts: whoever else needs the store, clock or sealer (the outbox worker, tests)
    /// keeps its own clone of the [`Deps`] it built.
    pub fn new(deps: Deps, config: Config) -> Self {
        let Deps {
            store,
            clock,
            rng,
            codes,
            sealer,
            hasher,
        } = deps;
        Self {
            store,
            clock,
            rng,
            codes,
            sealer,
            hasher,
            config,
            uses_in_flight: Arc::default(),
            refusals: stats::RateLimitRefusals::default(),
        }
    }

    /// The instance-wide settings (public URL, default link templates, limits): values, not
    /// a way around the flows.
    pub fn config(&self) -> &Config {
        &self.config
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// A new id of any kind (tenant, user, code, token, message).
    pub(crate) fn new_id<I: NewId>(&self) -> I {
        I::generate(self.clock.as_ref(), self.rng.as_ref())
    }
}
