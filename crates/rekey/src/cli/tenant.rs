//! `rekey tenant …`: create a tenant, change its settings, show it.

use anyhow::Context;
use rekey_core::domain::Cname;
use rekey_core::domain::Tenant;
#[cfg(test)]
use rekey_core::domain::TenantSettings;
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

/// `rekey tenant set TENANT KEY=VALUE…`: every assignment is checked before any is stored,
/// by the same flow as `PATCH /rekey/v1/tenants/{id}/settings` (an empty value unsets).
pub async fn set(
    rekey: &Rekey,
    out: &Output,
    tenant: &str,
    assignments: &[String],
) -> anyhow::Result<()> {
    let tenant = rekey.tenant_by_ref(tenant).await.map_err(core_err)?;
    let changes = assignments
        .iter()
        .map(|a| parse_assignment(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let tenant = rekey
        .change_tenant_settings(CLI_ACTOR, None, &tenant, &changes)
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

/// `key=value` for `rekey tenant set`: (key, value), an empty value unsetting the key. The
/// names and how each value is read are the core's ([`TenantSettings::assign`]).
fn parse_assignment(assignment: &str) -> anyhow::Result<(String, Option<String>)> {
    let (key, value) = assignment
        .split_once('=')
        .with_context(|| format!("{assignment:?} is not KEY=VALUE"))?;
    Ok((key.to_owned(), Some(value.to_owned())))
}

#[cfg(test)]
fn apply_setting(settings: &mut TenantSettings, assignment: &str) -> anyhow::Result<()> {
    let (key, value) = parse_assignment(assignment)?;
    Ok(settings.assign(&key, value.as_deref().unwrap_or(""))?)
}

fn tenant_json(t: &Tenant) -> Value {
    json!({
        "id": t.id.as_str(),
        "name": t.name,
        "cname": t.cname.as_str(),
        "settings": t.settings,
        "creationDate": t.creation_date.to_rfc3339(),
    })
}

#[cfg(test)]
mod tests {
    use rekey_core::domain::CodeAlphabet;

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
