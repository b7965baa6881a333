//! API tokens: created with at least 256 bits of randomness, stored only as their SHA-256.

use secrecy::SecretString;

use crate::domain::{token_hash, ApiToken, Role};
use crate::error::Error;
use crate::flows::Rekey;

/// A freshly created API token: the secret is shown once.
pub struct IssuedToken {
    pub secret: SecretString,
    pub token: ApiToken,
}

impl Rekey {
    /// Creates an API token (≥ 256 bits of randomness); only its SHA-256 is stored.
    pub async fn create_token(&self, role: Role) -> Result<IssuedToken, Error> {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes);
        let secret = format!(
            "rk_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let token = ApiToken {
            id: self.new_id(),
            hash: token_hash(&secret),
            role,
            created_at: self.now(),
            revoked_at: None,
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
}
