//! `rekey token …`: create (the secret is printed once and never stored in the clear), list
//! (never the secret, never its hash) and revoke.

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use rekey_core::domain::{parse_lifetime, ApiToken, Role, UserId};
use rekey_core::flows::{Rekey, TokenRevoked};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::{core_err, Output, RoleArg, CLI_ACTOR};

/// `rekey token create --role … [--expires-in DURATION]`.
pub async fn create(
    rekey: &Rekey,
    out: &Output,
    role: RoleArg,
    tenant: Option<String>,
    user: Option<String>,
    expires_in: Option<String>,
) -> anyhow::Result<()> {
    let lifetime = expires_in
        .as_deref()
        .map(parse_lifetime)
        .transpose()
        .map_err(core_err)?;
    let role = resolve_role(rekey, role, tenant, user).await?;
    let issued = rekey
        .create_token_expiring(role.clone(), lifetime)
        .await
        .map_err(core_err)?;
    let secret = issued.secret.expose_secret();
    out.print(
        secret,
        json!({
            "id": issued.token.id,
            "role": role.name(),
            "token": secret,
            "expiresAt": issued.token.expires_at.map(time),
        }),
    );
    Ok(())
}

/// `rekey token list [--tenant T]`: one tab-separated line per token (id, role, tenant, user,
/// created, last used, expires, status), or one JSON object `{"tokens": […]}`.
pub async fn list(rekey: &Rekey, out: &Output, tenant: Option<String>) -> anyhow::Result<()> {
    let tenant = match tenant {
        Some(reference) => Some(rekey.tenant_by_ref(&reference).await.map_err(core_err)?.id),
        None => None,
    };
    let listed = rekey.list_tokens(tenant.as_ref()).await.map_err(core_err)?;
    if out.json {
        let items: Vec<Value> = listed
            .tokens
            .iter()
            .map(|t| token_json(t, listed.at))
            .collect();
        println!("{}", json!({ "tokens": items }));
        return Ok(());
    }
    for t in &listed.tokens {
        let (tenant, user) = owner(&t.role);
        println!(
            "{}\t{}\t{}\t{}\tcreated={}\tlast_used={}\texpires={}\t{}",
            t.id,
            t.role.name(),
            tenant.unwrap_or("-"),
            user.unwrap_or("-"),
            time(t.created_at),
            t.last_used_at.map_or_else(|| "never".to_owned(), time),
            t.expires_at.map_or_else(|| "never".to_owned(), time),
            t.status(listed.at).as_str(),
        );
    }
    Ok(())
}

/// `rekey token revoke ID`: prints the id. An unknown id is an error (non-zero exit); a
/// token revoked already is reported as such, unchanged.
pub async fn revoke(rekey: &Rekey, out: &Output, id: &str) -> anyhow::Result<()> {
    let (token, already) = match rekey.revoke_token(CLI_ACTOR, id).await.map_err(core_err)? {
        TokenRevoked::Now(token) => (token, false),
        TokenRevoked::Already(token) => {
            if !out.json {
                eprintln!("rekey: token {} was revoked already", token.id);
            }
            (token, true)
        }
    };
    out.print(
        token.id.as_str(),
        json!({
            "id": token.id,
            "revokedAt": token.revoked_at.map(time),
            "alreadyRevoked": already,
        }),
    );
    Ok(())
}

/// The tenant and user a role names.
fn owner(role: &Role) -> (Option<&str>, Option<&str>) {
    match role {
        Role::System => (None, None),
        Role::TenantAdmin(tenant) => (Some(tenant.as_str()), None),
        Role::User { tenant_id, user_id } => (Some(tenant_id.as_str()), Some(user_id.as_str())),
    }
}

/// Everything about a token except its secret and its hash.
fn token_json(t: &ApiToken, now: DateTime<Utc>) -> Value {
    let (tenant, user) = owner(&t.role);
    json!({
        "id": t.id,
        "role": t.role.name(),
        "tenantId": tenant,
        "userId": user,
        "createdAt": time(t.created_at),
        "lastUsedAt": t.last_used_at.map(time),
        "expiresAt": t.expires_at.map(time),
        "revokedAt": t.revoked_at.map(time),
        "status": t.status(now).as_str(),
    })
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
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
