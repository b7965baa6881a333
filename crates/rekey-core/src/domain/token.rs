//! API tokens and the principal a token speaks for. Only a token's SHA-256 is ever stored.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::domain::ids::{TenantId, TokenId, UserId};

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Instance-wide (= ZITADEL IAM_OWNER).
    System,
    /// Admin of one tenant (= ORG_OWNER, = F5 tenant admin).
    TenantAdmin(TenantId),
    /// A user acting on themself.
    User {
        tenant_id: TenantId,
        user_id: UserId,
    },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::TenantAdmin(_) => "tenant_admin",
            Role::User { .. } => "user",
        }
    }
}

/// An API token as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub hash: [u8; 32],
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: TokenId,
    pub role: Role,
}

impl Principal {
    /// How the principal appears in the audit trail.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }
}

/// SHA-256 of an API token, the only form in which tokens are stored.
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}
