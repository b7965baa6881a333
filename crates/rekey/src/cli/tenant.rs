//! `rekey tenant …`: create a tenant, change its settings, show it.

use anyhow::{anyhow, bail, Context};
use rekey_core::domain::Cname;
use rekey_core::domain::{CodeAlphabet, Tenant, TenantSettings};
use rekey_core::flows::Rekey;
use serde_json::{json, Value};

use super::{core_err, Output, CLI_ACTOR};

/// `rekey tenant add`: prints the new tenant's id.
pub async fn add(rekey: &Rekey, out: &Output, name: &str, cname: &str) -> anyhow::Result<()> {
    let cname = Cname::parse(cname).map_err(core_err)?;
    let tenant = rekey
        .add_tenant(CLI_ACTOR, name, cname)
        .await
        .map_err(core_err)?;
    out.print(tenant.id.as_str(), tenant_json(&tenant));
    Ok(())
}

/// `rekey tenant set TENANT KEY=VALUE…`: every assignment is checked before any is stored.
pub async fn set(
    rekey: &Rekey,
    out: &Output,
    tenant: &str,
    assignments: &[String],
) -> anyhow::Result<()> {
    let tenant = rekey.tenant_by_ref(tenant).await.map_err(core_err)?;
    let mut settings = tenant.settings.clone();
    for assignment in assignments {
        apply_setting(&mut settings, assignment)?;
    }
    rekey
        .set_tenant_settings(CLI_ACTOR, &tenant.id, settings)
        .await
        .map_err(core_err)?;
    let tenant = rekey
        .tenant_by_ref(tenant.id.as_str())
        .await
        .map_err(core_err)?;
    out.print(tenant.id.as_str(), tenant_json(&tenant));
    Ok(())
}

/// `rekey tenant show`: always pretty JSON, with or without `--json`.
pub async fn show(rekey: &Rekey, tenant: &str) -> anyhow::Result<()> {
    let tenant = rekey.tenant_by_ref(tenant).await.map_err(core_err)?;
    let value = tenant_json(&tenant);
    println!("{}", serde_json::to_string_pretty(&value)?);
    Ok(())
}

/// `key=value` for `rekey tenant set`; an empty value resets the key.
fn apply_setting(settings: &mut TenantSettings, assignment: &str) -> anyhow::Result<()> {
    let (key, value) = assignment
        .split_once('=')
        .with_context(|| format!("{assignment:?} is not KEY=VALUE"))?;
    let value = value.trim();
    let reset = value.is_empty();
    fn num<T: std::str::FromStr>(key: &str, value: &str) -> anyhow::Result<T> {
        value
            .parse()
            .map_err(|_| anyhow!("{key}: {value:?} is not a number"))
    }
    fn flag(key: &str, value: &str) -> anyhow::Result<bool> {
        match value {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => bail!("{key}: {value:?} is not true or false"),
        }
    }
    match key.trim() {
        "code.length" => settings.code_length = (!reset).then(|| num(key, value)).transpose()?,
        "code.alphabet" => {
            settings.code_alphabet = match value {
                "" => None,
                "rekey" => Some(CodeAlphabet::Rekey),
                "zitadel" => Some(CodeAlphabet::Zitadel),
                _ => bail!("code.alphabet must be rekey or zitadel"),
            }
        }
        "code.expiry_secs" => {
            settings.code_expiry_secs = (!reset).then(|| num(key, value)).transpose()?
        }
        "code.init_expiry_secs" => {
            settings.code_init_expiry_secs = (!reset).then(|| num(key, value)).transpose()?
        }
        "password.min_length" => {
            settings.password_min_length = (!reset).then(|| num(key, value)).transpose()?
        }
        "password.max_length" => {
            settings.password_max_length = (!reset).then(|| num(key, value)).transpose()?
        }
        "password.require_lower" => {
            settings.password_require_lower = (!reset).then(|| flag(key, value)).transpose()?
        }
        "password.require_upper" => {
            settings.password_require_upper = (!reset).then(|| flag(key, value)).transpose()?
        }
        "password.require_digit" => {
            settings.password_require_digit = (!reset).then(|| flag(key, value)).transpose()?
        }
        "password.require_symbol" => {
            settings.password_require_symbol = (!reset).then(|| flag(key, value)).transpose()?
        }
        "limits.messages_per_user_per_hour" => {
            settings.limits_messages_per_user_per_hour =
                (!reset).then(|| num(key, value)).transpose()?
        }
        "link_template" => settings.link_template = (!reset).then(|| value.to_owned()),
        "language" => settings.language = (!reset).then(|| value.to_owned()),
        "ui.login_url" => {
            if !reset {
                rekey_core::policy::validate_login_url(value).map_err(|what| anyhow!(what))?;
            }
            settings.ui_login_url = (!reset).then(|| value.to_owned());
        }
        other => bail!("unknown tenant setting {other:?}"),
    }
    Ok(())
}

fn tenant_json(t: &Tenant) -> Value {
    json!({
        "id": t.id.as_str(),
        "name": t.name,
        "cname": t.cname,
        "settings": t.settings,
        "creationDate": t.creation_date.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_settings_assignments() {
        let mut s = TenantSettings::default();
        apply_setting(&mut s, "code.length=10").unwrap();
        apply_setting(&mut s, "code.alphabet=zitadel").unwrap();
        apply_setting(&mut s, "password.require_upper=true").unwrap();
        apply_setting(&mut s, "link_template=https://x.test/r?c={{.Code}}").unwrap();
        assert_eq!(s.code_length, Some(10));
        assert_eq!(s.code_alphabet, Some(CodeAlphabet::Zitadel));
        assert_eq!(s.password_require_upper, Some(true));
        apply_setting(&mut s, "code.length=").unwrap();
        assert_eq!(s.code_length, None);
        assert!(apply_setting(&mut s, "nope=1").is_err());
        assert!(apply_setting(&mut s, "code.length=ten").is_err());
        assert!(apply_setting(&mut s, "novalue").is_err());
    }
}
