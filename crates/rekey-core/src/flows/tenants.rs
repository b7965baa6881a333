//! Creating tenants (CLI, and ZITADEL v2 `AddOrganization` with its first admins), finding
//! them, and changing their settings.

use serde_json::json;

use crate::domain::{
    cname_from_name, Cname, NewEvent, Role, Tenant, TenantId, TenantSettings, User,
};
use crate::error::{Error, ErrorKind};
use crate::flows::users::NewAdmin;
use crate::flows::{Caller, Rekey};
use crate::policy::settings::validate_settings;

impl Rekey {
    pub async fn add_tenant(&self, actor: &str, name: &str, cname: Cname) -> Result<Tenant, Error> {
        self.add_tenant_with_id(actor, None, name, cname).await
    }

    /// Creates a tenant, with a caller-chosen id when given.
    pub(crate) async fn add_tenant_with_id(
        &self,
        actor: &str,
        id: Option<TenantId>,
        name: &str,
        cname: Cname,
    ) -> Result<Tenant, Error> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(Error::invalid(
                "REKEY-TnNam",
                "Tenant name must be 1 to 200 characters",
            ));
        }
        let now = self.now();
        let tenant = Tenant {
            id: id.unwrap_or_else(|| self.new_id()),
            name: name.to_owned(),
            cname,
            settings: TenantSettings::default(),
            creation_date: now,
            change_date: now,
        };
        let event = NewEvent {
            kind: "tenant.added",
            actor: actor.to_owned(),
            ip: None,
            payload: json!({ "name": tenant.name, "cname": tenant.cname.as_str() }),
        };
        self.store.insert_tenant(&tenant, &event).await?;
        Ok(tenant)
    }

    /// A tenant by id, or `None` (hosted pages show a tenant's name and rules: tenant ids are
    /// not secret, SPEC §9).
    pub async fn tenant(&self, id: &TenantId) -> Result<Option<Tenant>, Error> {
        Ok(self.store.tenant(id).await?)
    }

    /// A tenant by id or, failing that, by cname.
    pub async fn tenant_by_ref(&self, reference: &str) -> Result<Tenant, Error> {
        let not_found = || Error::new(ErrorKind::NotFound, "REKEY-TnNF", "Tenant not found");
        if let Ok(id) = TenantId::parse(reference) {
            if let Some(t) = self.store.tenant(&id).await? {
                return Ok(t);
            }
        }
        self.store
            .tenant_by_cname(reference)
            .await?
            .ok_or_else(not_found)
    }

    /// Replaces a tenant's settings after checking they make sense.
    pub async fn set_tenant_settings(
        &self,
        actor: &str,
        tenant: &TenantId,
        settings: TenantSettings,
    ) -> Result<(), Error> {
        self.store_tenant_settings(actor, None, tenant, settings)
            .await
    }

    /// Changes the named settings of a tenant (`rekey tenant set` and the operations route
    /// alike): each `(name, value)` goes through the one mapping
    /// ([`TenantSettings::assign`]); `None` (or an empty value) unsets the setting. Every
    /// change is checked before any is stored; a refused one changes nothing. The tenant as
    /// stored afterwards.
    pub async fn change_tenant_settings(
        &self,
        actor: &str,
        ip: Option<String>,
        tenant: &Tenant,
        changes: &[(String, Option<String>)],
    ) -> Result<Tenant, Error> {
        if changes.is_empty() {
            return Ok(tenant.clone());
        }
        let mut settings = tenant.settings.clone();
        for (name, value) in changes {
            settings
                .assign(name, value.as_deref().unwrap_or(""))
                .map_err(|err| Error::invalid("REKEY-TnSet", err.to_string()))?;
        }
        self.store_tenant_settings(actor, ip, &tenant.id, settings)
            .await?;
        self.store
            .tenant(&tenant.id)
            .await?
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "REKEY-TnNF", "Tenant not found"))
    }

    async fn store_tenant_settings(
        &self,
        actor: &str,
        ip: Option<String>,
        tenant: &TenantId,
        settings: TenantSettings,
    ) -> Result<(), Error> {
        validate_settings(&settings)?;
        let event = NewEvent {
            kind: "tenant.settings.changed",
            actor: actor.to_owned(),
            ip,
            payload: serde_json::to_value(&settings).map_err(|_| Error::internal())?,
        };
        Ok(self
            .store
            .update_tenant_settings(tenant, &settings, self.now(), &event)
            .await?)
    }

    /// ZITADEL v2 `AddOrganization`: a new tenant (cname derived from the name) with its
    /// human admins created as users of it. System principals only.
    pub async fn add_organization(
        &self,
        caller: &Caller,
        name: &str,
        id: Option<TenantId>,
        admins: Vec<NewAdmin>,
    ) -> Result<(Tenant, Vec<User>), Error> {
        let principal = caller.principal()?;
        if principal.role != Role::System {
            return Err(Error::permission_denied());
        }
        let cname = Cname::parse(&cname_from_name(name))?;
        let tenant = self
            .add_tenant_with_id(&caller.actor(), id, name, cname)
            .await?;
        let mut created = Vec::new();
        for admin in admins {
            created.push(
                self.add_user_with(&caller.actor(), &tenant.id, admin.user, admin.options)
                    .await?,
            );
        }
        Ok((tenant, created))
    }
}
