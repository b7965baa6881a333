//! The flows every face calls, one file per use case. A face decodes its request into one of
//! the commands here, authenticates the caller, and maps the result or [`Error`] back to its
//! own shape; no face holds a business rule and no flow knows which face called it.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::crypto::{CodeMac, PasswordHasher, Sealer};
use crate::domain::{new_id, TenantId, UserId, UserState};
use crate::error::Error;
use crate::ports::{Clock, Random, Store};

mod access;
mod admin;
mod password;
mod reset;
mod tenants;
mod tokens;
mod users;

pub use access::Caller;
pub use admin::Retried;
pub use password::{SetPassword, Verification};
pub use reset::{Delivery, ResetIssued};
pub use tokens::IssuedToken;
pub use users::{ListedUsers, NewAdmin, NewUser, NewUserOptions};

// Old paths, kept while the other crates move to the new ones (issue 9).
#[doc(hidden)]
pub use crate::domain::token::token_hash;
#[doc(hidden)]
pub use crate::policy::settings::{validate_login_url, Config, EffectiveSettings, Limits};

/// Everything the flows run on, built once at start. The binary builds one and hands clones
/// to both [`Rekey::with_deps`] and the outbox worker (which needs the same store, sealer and
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
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Random>,
        codes: CodeMac,
        sealer: Sealer,
        hasher: PasswordHasher,
        config: Config,
    ) -> Self {
        Self {
            store,
            clock,
            rng,
            codes,
            sealer,
            hasher,
            config,
        }
    }

    /// The flows over `deps`, with the instance-wide defaults in `config`.
    pub fn with_deps(deps: Deps, config: Config) -> Self {
        let Deps {
            store,
            clock,
            rng,
            codes,
            sealer,
            hasher,
        } = deps;
        Self::new(store, clock, rng, codes, sealer, hasher, config)
    }

    /// The store behind the flows. Callers outside the core are moving to flows instead:
    /// [`Rekey::ready`], [`Rekey::list_outbox`], [`Rekey::outbox_message`], [`Rekey::events`],
    /// [`Rekey::create_first_token`], and [`Deps`] for the outbox worker.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The clock of the flows. Callers outside the core are moving to [`Deps`] (the worker)
    /// and [`Rekey::list_users_at`] (the listing's timestamp).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The outbox sealer. Callers outside the core are moving to [`Deps`].
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The password hasher. Callers outside the core are moving to [`Deps`].
    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn new_id(&self) -> String {
        new_id(self.clock.as_ref(), self.rng.as_ref())
    }
}
