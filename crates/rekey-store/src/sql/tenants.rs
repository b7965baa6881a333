//! [`TenantStore`] on SQL: a tenant row and its events (aggregate id = tenant id).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rekey_core::domain::TenantId;
use rekey_core::domain::{NewEvent, Tenant, TenantSettings};
use rekey_core::ports::store::{StoreError, TenantStore};

use super::backend::SqlBackend;
use super::rows::{TenantRow, TENANT_COLUMNS};
use super::SqlStore;
use crate::codec::{json_text, micros};
use crate::error::{db_error, is_unique_violation, unique_as, violation_mentions};

#[async_trait]
impl<DB: SqlBackend> TenantStore for SqlStore<DB> {
    async fn insert_tenant(&self, tenant: &Tenant, event: &NewEvent) -> Result<(), StoreError> {
        const OP: &str = "insert tenant";
        let settings = json_text("tenant settings", &tenant.settings)?;
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            Self::query(
                "INSERT INTO tenants (id, name, cname, settings, creation_date, change_date) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant.id.as_str().to_owned())
            .bind(tenant.name.clone())
            .bind(tenant.cname.as_str().to_owned())
            .bind(settings)
            .bind(micros(tenant.creation_date))
            .bind(micros(tenant.change_date))
            .execute(&mut *tx)
            .await
            .map_err(|e| {
                if is_unique_violation(&e) && violation_mentions(&e, "cname") {
                    StoreError::Conflict("cname")
                } else {
                    unique_as(OP, "tenant id", e)
                }
            })?;
            let id = tenant.id.as_str();
            Self::insert_event(&mut tx, &tenant.id, id, 1, tenant.creation_date, event).await
        }
        .await;
        Self::finish(OP, tx, result).await
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE id = $1");
        let row = Self::query(&sql)
            .bind(id.as_str().to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("tenant", e))?;
        row.as_ref()
            .map(Self::decode::<TenantRow, Tenant>)
            .transpose()
    }

    async fn tenant_by_cname(&self, cname: &str) -> Result<Option<Tenant>, StoreError> {
        let sql = format!("SELECT {TENANT_COLUMNS} FROM tenants WHERE cname = $1");
        let row = Self::query(&sql)
            .bind(cname.to_owned())
            .fetch_optional(&self.reader)
            .await
            .map_err(|e| db_error("tenant by cname", e))?;
        row.as_ref()
            .map(Self::decode::<TenantRow, Tenant>)
            .transpose()
    }

    async fn tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        const OP: &str = "list tenants";
        let rows = Self::query(&format!(
            "SELECT {TENANT_COLUMNS} FROM tenants ORDER BY creation_date, id"
        ))
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error(OP, e))?;
        rows.iter().map(Self::decode::<TenantRow, Tenant>).collect()
    }

    async fn update_tenant_settings(
        &self,
        id: &TenantId,
        settings: &TenantSettings,
        at: DateTime<Utc>,
        event: &NewEvent,
    ) -> Result<(), StoreError> {
        const OP: &str = "update tenant settings";
        let settings = json_text("tenant settings", settings)?;
        let mut tx = self.begin_write(OP).await?;
        let result = async {
            // The UPDATE locks the tenant row first, so concurrent changes number their events
            // one after the other.
            Self::query(
                "UPDATE tenants SET settings = $1, change_date = $2 WHERE id = $3 RETURNING id",
            )
            .bind(settings)
            .bind(micros(at))
            .bind(id.as_str().to_owned())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?
            .ok_or(StoreError::NotFound)?;
            let row = Self::query(
                "SELECT COALESCE(MAX(sequence), 0) AS last FROM events \
                 WHERE tenant_id = $1 AND aggregate_id = $1",
            )
            .bind(id.as_str().to_owned())
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| db_error(OP, e))?;
            let last: i64 = Self::get(&row, "last")?;
            Self::insert_event(&mut tx, id, id.as_str(), last + 1, at, event).await
        }
        .await;
        Self::finish(OP, tx, result).await
    }
}
