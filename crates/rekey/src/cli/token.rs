//! `rekey token create`: the secret is printed once and never stored in the clear.

use anyhow::Context;
use rekey_core::domain::Role;
use rekey_core::domain::UserId;
use rekey_core::flows::Rekey;
use secrecy::ExposeSecret;
use serde_json::json;

use super::{core_err, Output, RoleArg};

/// `rekey token create --role …`.
pub async fn create(
    rekey: &Rekey,
    out: &Output,
    role: RoleArg,
    tenant: Option<String>,
    user: Option<String>,
) -> anyhow::Result<()> {
    let role = resolve_role(rekey, role, tenant, user).await?;
    let issued = rekey.create_token(role.clone()).await.map_err(core_err)?;
    let secret = issued.secret.expose_secret();
    out.print(
        secret,
        json!({ "id": issued.token.id, "role": role.name(), "token": secret }),
    );
    Ok(())
}

/// The role the flags name; a tenant-admin token needs `--tenant`, a user token `--user`.
async fn resolve_role(
    rekey: &Rekey,
    role: RoleArg,
    tenant: Option<String>,
    user: Option<String>,
) -> anyhow::Result<Role> {
    match role {
        RoleArg::System => Ok(Role::System),
        RoleArg::TenantAdmin => {
            let tenant = tenant.context("--role tenant-admin needs --tenant")?;
            let tenant = rekey.tenant_by_ref(&tenant).await.map_err(core_err)?;
            Ok(Role::TenantAdmin(tenant.id))
        }
        RoleArg::User => {
            let user = user.context("--role user needs --user")?;
            let user = rekey
                .user_by_id(&UserId::parse(user).map_err(core_err)?)
                .await
                .map_err(core_err)?;
            Ok(Role::User {
                tenant_id: user.tenant_id,
                user_id: user.id,
            })
        }
    }
}
