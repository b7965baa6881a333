//! Who is calling, and what a call may act on: the token behind a request, the user a v2 call
//! targets, and the one rule for the organization a v1 or setup call acts in.

use secrecy::{ExposeSecret, SecretString};

use crate::domain::{
    token_hash, OrgRef, Principal, Role, Tenant, TenantId, TokenStatus, User, UserId, UserState,
};
use crate::error::{Error, ErrorKind};
use crate::flows::Rekey;

/// Who is calling and from where.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub ip: Option<String>,
    /// The request's id (`x-request-id`), carried into the outbox rows the call queues so the
    /// delivery worker's lines name it too. Not a secret, not in the audit trail.
    pub request_id: Option<String>,
}

impl Caller {
    pub(crate) fn actor(&self) -> String {
        self.principal
            .as_ref()
            .map_or_else(|| "anonymous".to_owned(), Principal::actor)
    }

    pub(crate) fn principal(&self) -> Result<&Principal, Error> {
        self.principal.as_ref().ok_or_else(Error::unauthenticated)
    }
}

/// The one rule for the organization a call acts in, for v1 management calls and the setup
/// API alike: a system principal must name one; a tenant admin acts in its own tenant and may
/// name only that; a user acts in none. `how_to_name` tells the caller where its face takes
/// the organization (a header, a body field).
pub(crate) fn org_in_context(
    principal: &Principal,
    named: Option<TenantId>,
    how_to_name: &'static str,
) -> Result<TenantId, Error> {
    match (&principal.role, named) {
        (Role::System, Some(org)) => Ok(org),
        (Role::System, None) => Err(Error::invalid(
            "REKEY-OrgRq",
            format!("Organization required: {how_to_name}"),
        )),
        (Role::TenantAdmin(own), None) => Ok(own.clone()),
        (Role::TenantAdmin(own), Some(org)) if *own == org => Ok(org),
        _ => Err(Error::permission_denied()),
    }
}

pub(crate) fn tenant_not_found() -> Error {
    Error::new(ErrorKind::NotFound, "REKEY-TnNF", "Tenant not found")
}

pub(crate) fn not_admin(principal: &Principal) -> bool {
    matches!(principal.role, Role::User { .. })
}

/// The user a user v2 call may act on, of the one found in the principal's tenant (a system
/// principal's: the user's own): the caller themself or, for an admin, any live user there.
/// Anything else looks exactly like a user that does not exist.
fn visible_target(
    principal: &Principal,
    user_id: &UserId,
    found: Option<(User, Tenant)>,
) -> Result<(User, Tenant), Error> {
    let visible = match &principal.role {
        Role::System | Role::TenantAdmin(_) => found,
        Role::User { user_id: me, .. } if me == user_id => found,
        Role::User { .. } => None,
    };
    visible
        .filter(|(user, _)| user.state != UserState::Deleted)
        .ok_or_else(Error::user_not_found)
}

impl Rekey {
    /// The principal of a bearer/API token; unknown, revoked or expired → UNAUTHENTICATED,
    /// alike. One token read; the token's last use is written at most once a minute, off
    /// the request's path ([`Rekey::record_token_use`]).
    pub async fn authenticate(&self, secret: &SecretString) -> Result<Principal, Error> {
        let hash = token_hash(secret.expose_secret());
        let now = self.now();
        let token = self
            .store
            .token_by_hash(&hash)
            .await?
            .filter(|token| token.status(now) == TokenStatus::Active)
            .ok_or_else(Error::unauthenticated)?;
        self.record_token_use(&token, now).await;
        Ok(Principal {
            token_id: token.id,
            role: token.role,
        })
    }

    pub(crate) async fn tenant_of(&self, user: &User) -> Result<Tenant, Error> {
        self.store.tenant(&user.tenant_id).await?.ok_or_else(|| {
            tracing::error!(tenant = %user.tenant_id, "user without tenant");
            Error::internal()
        })
    }

    /// Any live user by id, whatever the tenant.
    pub(crate) async fn find_user(&self, user_id: &UserId) -> Result<Option<User>, Error> {
        let Some(tenant) = self.store.user_tenant(user_id).await? else {
            return Ok(None);
        };
        self.find_user_in(&tenant, user_id).await
    }

    pub(crate) async fn find_user_in(
        &self,
        tenant: &TenantId,
        user_id: &UserId,
    ) -> Result<Option<User>, Error> {
        Ok(self
            .store
            .user(tenant, user_id)
            .await?
            .filter(|u| u.state != UserState::Deleted))
    }

    /// The user a user v2 call (or the setup API's `GetUserByID`) acts on: the caller themself
    /// or a user of the admin's tenant (any tenant for a system principal). Anything else looks exactly like a
    /// user that does not exist, so ids cannot be probed.
    pub(crate) async fn target_user(
        &self,
        principal: &Principal,
        user_id: &UserId,
    ) -> Result<User, Error> {
        let user = match &principal.role {
            Role::System => self.find_user(user_id).await?,
            Role::TenantAdmin(tenant) => self.find_user_in(tenant, user_id).await?,
            Role::User {
                tenant_id,
                user_id: me,
            } if me == user_id => self.find_user_in(tenant_id, me).await?,
            Role::User { .. } => None,
        };
        user.ok_or_else(Error::user_not_found)
    }

    /// [`Rekey::target_user`] and its tenant, in one read of each: a reset needs the tenant's
    /// settings.
    pub(crate) async fn target_user_with_tenant(
        &self,
        principal: &Principal,
        user_id: &UserId,
    ) -> Result<(User, Tenant), Error> {
        let tenant = match &principal.role {
            Role::System => self.store.user_tenant(user_id).await?,
            Role::TenantAdmin(tenant) => Some(tenant.clone()),
            Role::User {
                tenant_id,
                user_id: me,
            } if me == user_id => Some(tenant_id.clone()),
            Role::User { .. } => None,
        };
        let found = match tenant {
            Some(tenant) => self.store.user_with_tenant(&tenant, user_id).await?,
            None => None,
        };
        visible_target(principal, user_id, found)
    }

    /// [`Rekey::authenticate`] and [`Rekey::target_user_with_tenant`] in one read: the token,
    /// and the user it names in the token's tenant (for a system token, in the user's) with
    /// that tenant. The same answers, in the same order: an unknown, revoked or expired token
    /// is UNAUTHENTICATED before anything about the user is looked at.
    pub(crate) async fn authenticate_with_target(
        &self,
        secret: &SecretString,
        user_id: &UserId,
    ) -> Result<(Principal, Result<(User, Tenant), Error>), Error> {
        let hash = token_hash(secret.expose_secret());
        let now = self.now();
        let (token, found) = self
            .store
            .token_with_user(&hash, user_id)
            .await?
            .filter(|(token, _)| token.status(now) == TokenStatus::Active)
            .ok_or_else(Error::unauthenticated)?;
        self.record_token_use(&token, now).await;
        let principal = Principal {
            token_id: token.id,
            role: token.role,
        };
        let target = visible_target(&principal, user_id, found);
        Ok((principal, target))
    }

    /// A user of the organization in context (management v1 API): `org` is the one the call
    /// names (its `x-zitadel-orgid` header), else the caller's own ([`org_in_context`]). A user
    /// outside it is [`Error::user_not_in_org`].
    pub(crate) async fn user_in_org(
        &self,
        principal: &Principal,
        org: Option<TenantId>,
        user_id: &UserId,
    ) -> Result<User, Error> {
        let org = org_in_context(principal, org, "set the x-zitadel-orgid header")?;
        self.find_user_in(&org, user_id)
            .await?
            .ok_or_else(Error::user_not_in_org)
    }

    /// The tenant an admin's setup call acts in. A tenant admin may only name its own.
    pub(crate) async fn resolve_org(
        &self,
        principal: &Principal,
        org: Option<OrgRef>,
    ) -> Result<TenantId, Error> {
        let named = match org {
            None => None,
            Some(OrgRef::Id(id)) => Some(id),
            Some(OrgRef::Domain(domain)) => Some(
                self.store
                    .tenant_by_cname(&domain)
                    .await?
                    .ok_or_else(tenant_not_found)?
                    .id,
            ),
        };
        let id = org_in_context(principal, named, "set organization.orgId")?;
        if principal.role == Role::System {
            // A tenant admin's own tenant exists; a system principal's choice may not.
            self.store.tenant(&id).await?.ok_or_else(tenant_not_found)?;
        }
        Ok(id)
    }
}
