//! API tokens: created with at least 256 bits of randomness, stored only as their SHA-256,
//! optionally expiring; listed (never the secret, never the hash) and revoked by the operator;
//! their last use recorded cheaply, at most once a minute, off the request's path.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Duration, Utc};
use secrecy::SecretString;
use serde_json::json;

use crate::domain::{
    token_hash, ApiToken, NewEvent, Role, TenantId, TokenId, LAST_USE_PRECISION, MAX_TOKEN_LIFETIME,
};
use crate::error::{Error, ErrorKind};
use crate::flows::Rekey;
use crate::ports::store::TokenStore;

/// A freshly created API token: the secret is shown once.
pub struct IssuedToken {
    pub secret: SecretString,
    pub token: ApiToken,
}

/// The tokens listed at a moment (their status depends on it).
#[derive(Debug, Clone)]
pub struct ListedTokens {
    pub tokens: Vec<ApiToken>,
    pub at: DateTime<Utc>,
}

/// What a revocation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRevoked {
    /// Revoked now (and recorded in the audit trail).
    Now(ApiToken),
    /// It was revoked already, at this time; nothing changed.
    Already(ApiToken),
}

fn token_not_found() -> Error {
    Error::new(ErrorKind::NotFound, "REKEY-TkNF", "No token with this id")
}

/// The last-use writes in flight in this process, by token: while one is on its way, further
/// requests with the same token do not start another (the conditional write would find
/// nothing to do anyway, but on SQLite each attempt still takes the one writer).
#[derive(Debug, Default)]
pub(crate) struct UsesInFlight(Mutex<HashSet<TokenId>>);

impl UsesInFlight {
    /// Claims the token's slot; `false` when a write for it is already in flight.
    fn claim(&self, id: &TokenId) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone())
    }

    fn release(&self, id: &TokenId) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
    }
}

impl Rekey {
    /// Creates an API token (≥ 256 bits of randomness) that never expires; only its SHA-256
    /// is stored.
    pub async fn create_token(&self, role: Role) -> Result<IssuedToken, Error> {
        self.create_token_expiring(role, None).await
    }

    /// Creates an API token that stops authenticating `lifetime` from now (none: never),
    /// e.g. from [`crate::domain::parse_lifetime`].
    pub async fn create_token_expiring(
        &self,
        role: Role,
        lifetime: Option<Duration>,
    ) -> Result<IssuedToken, Error> {
        use base64::Engine;
        if lifetime.is_some_and(|d| d <= Duration::zero() || d > MAX_TOKEN_LIFETIME) {
            return Err(Error::invalid(
                "REKEY-TkLif",
                "A token's lifetime must be positive and at most 36500 days",
            ));
        }
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes);
        let secret = format!(
            "rk_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let now = self.now();
        let token = ApiToken {
            id: self.new_id(),
            hash: token_hash(&secret),
            role,
            created_at: now,
            revoked_at: None,
            expires_at: lifetime.map(|d| now + d),
            last_used_at: None,
        };
        self.store.insert_token(&token).await?;
        Ok(IssuedToken {
            secret: SecretString::from(secret),
            token,
        })
    }

    /// On first start, a `system` token so a newcomer can call the API straight away; `None`
    /// when any token exists already.
    pub async fn create_first_token(&self) -> Result<Option<IssuedToken>, Error> {
        if self.store.count_tokens().await? > 0 {
            return Ok(None);
        }
        Ok(Some(self.create_token(Role::System).await?))
    }

    /// The operator's list of tokens (CLI): all of them, or those of one tenant, oldest
    /// first, revoked and expired ones included. Records carry the hash, never the secret; a
    /// face shows neither.
    pub async fn list_tokens(&self, tenant: Option<&TenantId>) -> Result<ListedTokens, Error> {
        let tokens = self.store.tokens(tenant).await?;
        Ok(ListedTokens {
            tokens,
            at: self.now(),
        })
    }

    /// Revokes the token `id` on behalf of `actor`, recorded as a `token.revoked` audit event.
    /// `id` is as the operator typed it: one that names no token is "not found", never a
    /// format error. Revoking a revoked token changes nothing.
    pub async fn revoke_token(&self, actor: &str, id: &str) -> Result<TokenRevoked, Error> {
        let id = TokenId::parse(id).map_err(|_| token_not_found())?;
        let token = self.store.token(&id).await?.ok_or_else(token_not_found)?;
        if token.revoked_at.is_some() {
            return Ok(TokenRevoked::Already(token));
        }
        let now = self.now();
        let mut payload = json!({ "role": token.role.name() });
        if let Role::User { user_id, .. } = &token.role {
            payload["user_id"] = json!(user_id);
        }
        let event = NewEvent {
            kind: "token.revoked",
            actor: actor.to_owned(),
            ip: None,
            payload,
        };
        if !self.store.revoke_token(&id, now, &event).await? {
            // Revoked meanwhile (a concurrent revoke, or its user's deletion).
            let token = self.store.token(&id).await?.ok_or_else(token_not_found)?;
            return Ok(TokenRevoked::Already(token));
        }
        Ok(TokenRevoked::Now(ApiToken {
            revoked_at: Some(now),
            ..token
        }))
    }

    /// Records that `token` authenticated a request at `now`, when its recorded last use is
    /// stale ([`LAST_USE_PRECISION`]): a conditional write in a task of its own, so the request
    /// never waits for it (nor fails with it). Without a Tokio runtime it is done inline.
    pub(crate) async fn record_token_use(&self, token: &ApiToken, now: DateTime<Utc>) {
        if !token.last_use_is_stale(now) || !self.uses_in_flight.claim(&token.id) {
            return;
        }
        let store: Arc<dyn crate::ports::Store> = self.store.clone();
        let in_flight = self.uses_in_flight.clone();
        let (id, hash) = (token.id.clone(), token.hash);
        let write = async move {
            if let Err(err) =
                TokenStore::record_token_use(store.as_ref(), &hash, now, now - LAST_USE_PRECISION)
                    .await
            {
                tracing::debug!(token_id = %id, error = %err, "recording a token's last use failed");
            }
            in_flight.release(&id);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(write);
            }
            Err(_) => write.await,
        }
    }
}
