//! [`TokenStore`] on SQL: API tokens, found by the SHA-256 of their secret (a global table),
//! listed and revoked by id, and their last use recorded by a conditional write.

use std::sync::LazyLock;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_core::domain::{ApiToken, NewEvent, Role, Tenant, TenantId, TokenId, User, UserId};
use rekey_core::ports::store::{StoreError, TokenStore, INSTANCE_EVENTS};

use super::backend::SqlBackend;
use super::rows::{
    JoinedTenantRow, JoinedTokenRow, TokenRow, UserRow, JOINED_TENANT_COLUMNS,
    JOINED_TOKEN_COLUMNS, JOINED_USER_COLUMNS, TOKEN_COLUMNS,
};
use super::SqlStore;
use crate::codec::{micros, to_u64};
use crate::error::{db_error, unique_as};

/// A live token by its hash, and the user `$2` in the token's tenant — for a system token (no
/// tenant), in the tenant the user index names — with that tenant. Token, user and tenant
/// columns are named apart ([`JOINED_TOKEN_COLUMNS`], [`USER_COLUMNS`] as they are,
/// [`JOINED_TENANT_COLUMNS`]).
static TOKEN_WITH_USER: LazyLock<String> = LazyLock::new(|| {
    let user_columns = &*JOINED_USER_COLUMNS;
    format!(
        "SELECT {JOINED_TOKEN_COLUMNS}, {user_columns}, {JOINED_TENANT_COLUMNS} \
         FROM api_tokens k \
         LEFT JOIN users u ON u.id = $2 AND u.tenant_id = COALESCE(k.tenant_id, \
             (SELECT i.tenant_id FROM user_index i WHERE i.user_id = $2)) \
         LEFT JOIN tenants t ON t.id = u.tenant_id \
         WHERE k.token_hash = $1 AND k.revoked_at IS NULL"
    )
});

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
        let sql = format!(
            "INSERT INTO api_tokens ({TOKEN_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        );
        let result = Self::query(&sql)
            .bind(token.hash.to_vec())
            .bind(token.id.as_str().to_owned())
            .bind(token.role.name().to_owned())
            .bind(tenant)
            .bind(user)
            .bind(micros(token.created_at))
            .bind(token.revoked_at.map(micros))
            .bind(token.expires_at.map(micros))
            .bind(token.last_used_at.map(micros))
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

    async fn token_with_user(
        &self,
        hash: &[u8; 32],
        user_id: &UserId,
    ) -> Result<Option<(ApiToken, Option<(User, Tenant)>)>, StoreError> {
        let row = Self::query(&TOKEN_WITH_USER)
            .bind(hash.to_vec())
            .bind(user_id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("token with user", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let token = Self::decode::<JoinedTokenRow, ApiToken>(&row)?;
        // The user's columns are NULL when the join found no user.
        let found: Option<String> = Self::get(&row, "id")?;
        let target = match found {
            Some(_) => Some((
                Self::decode::<UserRow, User>(&row)?,
                Self::decode::<JoinedTenantRow, Tenant>(&row)?,
            )),
            None => None,
        };
        Ok(Some((token, target)))
    }

    async fn count_tokens(&self) -> Result<u64, StoreError> {
        let row = Self::query("SELECT COUNT(*) AS n FROM api_tokens")
            .fetch_one(&self.reader)
            .await
            .map_err(|e| db_error("count tokens", e))?;
        to_u64("count", Self::get(&row, "n")?)
    }

    async fn tokens(&self, tenant: Option<&TenantId>) -> Result<Vec<ApiToken>, StoreError> {
        const OP: &str = "tokens";
        let rows = match tenant {
            Some(tenant) => {
                let sql = format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE tenant_id = $1 \
                     ORDER BY created_at, id"
                );
                Self::query(&sql)
                    .bind(tenant.as_str().to_owned())
                    .fetch_all(&self.reader)
                    .await
            }
            None => {
                let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_at, id");
                Self::query(&sql).fetch_all(&self.reader).await
            }
        }
        .map_err(|e| db_error(OP, e))?;
        rows.iter()
            .map(Self::decode::<TokenRow, ApiToken>)
            .collect()
    }

    async fn token(&self, id: &TokenId) -> Result<Option<ApiToken>, StoreError> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1");
        let row = Self::query(&sql)
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("token", e))?;
        row.as_ref()
            .map(Self::decode::<TokenRow, ApiToken>)
            .transpose()
    }

    async fn revoke_token(
        &self,
        id: &TokenId,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<bool, StoreError> {
        const OP: &str = "revoke token";
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            let Some(row) = Self::query(
                "UPDATE api_tokens SET revoked_at = $1 \
                 WHERE id = $2 AND revoked_at IS NULL \
                 RETURNING COALESCE(tenant_id, $3) AS tenant_id",
            )
            .bind(micros(at))
            .bind(id.as_str().to_owned())
            .bind(INSTANCE_EVENTS.to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?
            else {
                return Ok(false);
            };
            let tenant = TenantId::from_trusted(Self::get(&row, "tenant_id")?);
            // The token is the event's aggregate; it is revoked once, but an aggregate's
            // sequence is counted, not assumed.
            let row = Self::query(
                "SELECT COALESCE(MAX(sequence), 0) AS last FROM events \
                 WHERE tenant_id = $1 AND aggregate_id = $2",
            )
            .bind(tenant.as_str().to_owned())
            .bind(id.as_str().to_owned())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?;
            let last: i64 = Self::get(&row, "last")?;
            Self::insert_event(&mut tx, &tenant, id.as_str(), last + 1, at, event).await?;
            Ok(true)
        }
        .await;
        Self::finish(OP, tx, result).await
    }

    async fn record_token_use(
        &self,
        hash: &[u8; 32],
        at: DateTime<Utc>,
        stale_before: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        const OP: &str = "record token use";
        let mut tx = self.begin_write(OP).await?;
        let result = Self::query(
            "UPDATE api_tokens SET last_used_at = $1 \
             WHERE token_hash = $2 AND (last_used_at IS NULL OR last_used_at < $3) \
             RETURNING id",
        )
        .bind(micros(at))
        .bind(hash.to_vec())
        .bind(micros(stale_before))
        .fetch_optional(&mut *tx)
        .await
        .map(|row| row.is_some())
        .map_err(|e| db_error(OP, e));
        Self::finish(OP, tx, result).await
    }
}
