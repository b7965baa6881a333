//! [`TokenStore`] on SQL: API tokens, found by the SHA-256 of their secret (a global table).

use async_trait::async_trait;
use rekey_core::domain::{ApiToken, Role};
use rekey_core::ports::store::{StoreError, TokenStore};

use super::backend::SqlBackend;
use super::rows::{TokenRow, TOKEN_COLUMNS};
use super::SqlStore;
use crate::codec::{micros, to_u64};
use crate::error::{db_error, unique_as};

#[async_trait]
impl<DB: SqlBackend> TokenStore for SqlStore<DB> {
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
        let result = Self::query(&sql)
            .bind(token.hash.to_vec())
            .bind(token.id.as_str().to_owned())
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
        let row = Self::query(&sql)
            .bind(hash.to_vec())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("token by hash", e))?;
        row.as_ref()
            .map(Self::decode::<TokenRow, ApiToken>)
            .transpose()
    }

    async fn count_tokens(&self) -> Result<u64, StoreError> {
        let row = Self::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error("count tokens", e))?;
        to_u64("count", Self::get(&row, "n")?)
    }
}
