//! The setup flows (SPEC §11) behind ZITADEL's user and organization RPCs, so the same
//! published clients that request resets can also create the tenants and users they reset.

use serde_json::json;

use crate::error::{Error, ErrorKind};
use crate::flows::{Caller, NewUser, NewUserOptions, Rekey};
use crate::ids::{TenantId, UserId};
use crate::model::{Details, NewEvent, Principal, Role, Tenant, User, UserState};
use crate::store::{UserChange, UserSearch};
// The search's vocabulary is the store's (it evaluates searches); re-exported where the setup
// API has always offered it.
pub use crate::store::{TextMatch, UserFilter, UserPage};
use crate::validate::Cname;

/// Most users one list call returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// A v2 organization reference: by id, or by domain (Rekey: the tenant's cname).
#[derive(Debug, Clone)]
pub enum OrgRef {
    Id(TenantId),
    Domain(String),
}

#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub offset: u64,
    /// 0 means the maximum ([`MAX_LIST_LIMIT`]).
    pub limit: u32,
    /// Oldest first when true; newest first by default (as ZITADEL).
    pub asc: bool,
    pub filters: Vec<UserFilter>,
}

/// A state change of the setup API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Deactivate,
    Reactivate,
    Lock,
    Unlock,
    Delete,
}

/// An admin to create with a new organization.
#[derive(Debug)]
pub struct NewAdmin {
    pub user: NewUser,
    pub options: NewUserOptions,
}

fn tenant_not_found() -> Error {
    Error::new(ErrorKind::NotFound, "REKEY-TnNF", "Tenant not found")
}

fn not_admin(principal: &Principal) -> bool {
    matches!(principal.role, Role::User { .. })
}

/// A cname from an organization name: lower case, runs of other characters become `-`.
pub fn cname_from_name(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '.' {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-').to_owned();
    if slug.is_empty() || slug.chars().all(|c| c.is_ascii_digit()) {
        format!("org-{slug}").trim_end_matches('-').to_owned()
    } else {
        slug
    }
}

impl Rekey {
    /// The tenant an admin's setup call acts in. A tenant admin may only name its own.
    pub async fn resolve_org(
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
        match (&principal.role, named) {
            (Role::System, Some(id)) => {
                self.store.tenant(&id).await?.ok_or_else(tenant_not_found)?;
                Ok(id)
            }
            (Role::System, None) => Err(Error::invalid(
                "REKEY-OrgRq",
                "Organization required: set organization.orgId",
            )),
            (Role::TenantAdmin(own), None) => Ok(own.clone()),
            (Role::TenantAdmin(own), Some(id)) if *own == id => Ok(id),
            _ => Err(Error::permission_denied()),
        }
    }

    /// ZITADEL v2 `AddHumanUser`: admins only; a chosen `userId` from `system` only.
    pub async fn add_human_user(
        &self,
        caller: &Caller,
        org: Option<OrgRef>,
        new: NewUser,
        options: NewUserOptions,
    ) -> Result<(User, Details), Error> {
        let principal = caller.principal()?;
        if not_admin(principal) {
            return Err(Error::permission_denied());
        }
        // Before any store read, and alike whether or not the id exists anywhere: ids are
        // global, so a tenant admin's choice would tell it which ids other tenants hold.
        if options.id.is_some() && principal.role != Role::System {
            return Err(Error::invalid(
                "REKEY-UsrId",
                "userId may only be chosen by a system principal; omit it to get a new id",
            ));
        }
        let tenant = self.resolve_org(principal, org).await?;
        let user = self
            .add_user_with(&caller.actor(), &tenant, new, options)
            .await?;
        let details = Details {
            sequence: user.sequence,
            change_date: user.change_date,
            resource_owner: user.tenant_id.clone(),
            creation_date: Some(user.creation_date),
        };
        Ok((user, details))
    }

    /// ZITADEL v2 `GetUserByID`: the user themself or an admin of the user's tenant.
    pub async fn get_user(&self, caller: &Caller, user_id: &UserId) -> Result<User, Error> {
        let principal = caller.principal()?;
        self.v2_target(principal, user_id).await
    }

    /// ZITADEL v2 `ListUsers`: what the caller may see, filtered, newest first by default.
    pub async fn list_users(&self, caller: &Caller, query: UserQuery) -> Result<UserPage, Error> {
        let principal = caller.principal()?;
        let limit = if query.limit == 0 {
            MAX_LIST_LIMIT
        } else {
            query.limit.min(MAX_LIST_LIMIT)
        };
        // Deleted users are listed only to a caller who asks for them by state.
        let wants_deleted = query
            .filters
            .iter()
            .any(|f| matches!(f, UserFilter::State(UserState::Deleted)));
        let mut search = UserSearch {
            tenant: None,
            filters: query.filters,
            include_deleted: wants_deleted,
            asc: query.asc,
            offset: query.offset,
            limit,
        };
        match &principal.role {
            // The whole instance; organization filters narrow it like any other condition.
            Role::System => {}
            Role::TenantAdmin(tenant) => search.tenant = Some(tenant.clone()),
            // Only themself, and never once deleted (as everywhere else a user acts).
            Role::User { tenant_id, user_id } => {
                search.tenant = Some(tenant_id.clone());
                search
                    .filters
                    .push(UserFilter::InIds(vec![user_id.as_str().to_owned()]));
                search.include_deleted = false;
            }
        }
        Ok(self.store.search_users(&search).await?)
    }

    /// ZITADEL v2 `DeactivateUser`, `ReactivateUser`, `LockUser`, `UnlockUser`, `DeleteUser`:
    /// admins of the user's tenant only; each refuses a user not in the state it leaves.
    pub async fn transition_user(
        &self,
        caller: &Caller,
        user_id: &UserId,
        transition: Transition,
    ) -> Result<Details, Error> {
        let principal = caller.principal()?;
        let user = self.v2_target(principal, user_id).await?;
        if not_admin(principal) {
            return Err(Error::permission_denied());
        }
        let resting = if user.password_hash.is_some() {
            UserState::Active
        } else {
            UserState::Initial
        };
        let conflict =
            |text: &'static str| Error::new(ErrorKind::FailedPrecondition, "REKEY-UsTrn", text);
        let (from, to, kind): (Vec<UserState>, UserState, &'static str) = match transition {
            Transition::Deactivate => (
                vec![UserState::Active, UserState::Initial],
                UserState::Inactive,
                "user.deactivated",
            ),
            Transition::Reactivate => (vec![UserState::Inactive], resting, "user.reactivated"),
            Transition::Lock => (
                vec![UserState::Active, UserState::Initial],
                UserState::Locked,
                "user.locked",
            ),
            Transition::Unlock => (vec![UserState::Locked], resting, "user.unlocked"),
            Transition::Delete => (
                vec![
                    UserState::Initial,
                    UserState::Active,
                    UserState::Inactive,
                    UserState::Locked,
                ],
                UserState::Deleted,
                "user.removed",
            ),
        };
        if !from.contains(&user.state) {
            return Err(match transition {
                Transition::Deactivate if user.state == UserState::Inactive => {
                    conflict("User is already inactive")
                }
                Transition::Deactivate => conflict("Only an active user can be deactivated"),
                Transition::Reactivate => conflict("User is not inactive"),
                Transition::Lock if user.state == UserState::Locked => {
                    conflict("User is already locked")
                }
                Transition::Lock => conflict("Only an active user can be locked"),
                Transition::Unlock => conflict("User is not locked"),
                Transition::Delete => Error::user_not_found_v2(),
            });
        }
        let mut change = UserChange::new(
            user.tenant_id.clone(),
            user.id.clone(),
            self.now(),
            NewEvent {
                kind,
                actor: caller.actor(),
                ip: caller.ip.clone(),
                payload: json!({ "from": user.state.as_str(), "to": to.as_str() }),
            },
        );
        change.require_state = from;
        change.set_state = Some(to);
        if to != UserState::Active && to != UserState::Initial {
            // A user who cannot sign in must not be able to finish a reset either.
            change.void_pending_codes = true;
            change.revoke_user_tokens = to == UserState::Deleted;
        }
        Ok(self.store.change_user(&change).await?)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cnames_from_names() {
        assert_eq!(cname_from_name("Example Corp"), "example-corp");
        assert_eq!(cname_from_name("  ACME, Inc.  "), "acme-inc.");
        assert_eq!(cname_from_name("2024"), "org-2024");
        assert_eq!(cname_from_name("!!!"), "org");
    }

    #[test]
    fn text_matching() {
        assert!(TextMatch::EqualsIgnoreCase.matches("Ada@Example.com", "ada@example.COM"));
        assert!(!TextMatch::Equals.matches("Ada", "ada"));
        assert!(TextMatch::StartsWith.matches("minnie-mouse", "minnie"));
        assert!(TextMatch::ContainsIgnoreCase.matches("Minnie-Mouse", "MOUSE"));
        assert!(TextMatch::EndsWith.matches("a@b.com", ".com"));
    }
}
