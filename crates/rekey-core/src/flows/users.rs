//! Creating, reading, listing and changing the state of users (setup API, SPEC §11, and CLI).

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::json;

use crate::crypto::BoundedHash;
use crate::domain::{
    Details, EmailAddress, NewEvent, OrgRef, PhoneNumber, Role, TenantId, Transition, User, UserId,
    UserQuery, UserState, MAX_LIST_LIMIT,
};
use crate::error::{Error, ErrorKind};
use crate::flows::access::{not_admin, tenant_not_found};
use crate::flows::{Caller, Rekey};
use crate::ports::store::{UserChange, UserFilter, UserPage, UserSearch};

/// A new user (setup API and CLI).
#[derive(Debug)]
pub struct NewUser {
    pub email: EmailAddress,
    pub username: Option<String>,
    pub phone: Option<PhoneNumber>,
    pub first_name: String,
    pub last_name: String,
    pub display_name: Option<String>,
    pub preferred_language: Option<String>,
    pub password: Option<SecretString>,
}

/// What the setup API can say about a new user beyond [`NewUser`].
#[derive(Debug, Default)]
pub struct NewUserOptions {
    /// A caller-chosen id (ZITADEL lets importers keep theirs); generated when absent. Only a
    /// `system` principal may set it: ids are global, so a tenant admin's choice would probe
    /// other tenants ([`Rekey::add_human_user`] enforces this).
    pub id: Option<UserId>,
    pub email_verified: bool,
    pub phone_verified: bool,
    /// An argon2id PHC hash to import instead of a password, within
    /// [`crate::crypto::HashBounds::ACCEPTED`].
    pub password_hash: Option<String>,
    pub change_required: bool,
}

/// A page of users and when it was read.
#[derive(Debug, Clone)]
pub struct ListedUsers {
    pub page: UserPage,
    pub at: DateTime<Utc>,
}

/// An admin to create with a new organization.
#[derive(Debug)]
pub struct NewAdmin {
    pub user: NewUser,
    pub options: NewUserOptions,
}

impl Rekey {
    pub async fn add_user(
        &self,
        actor: &str,
        tenant: &TenantId,
        new: NewUser,
    ) -> Result<User, Error> {
        self.add_user_with(actor, tenant, new, NewUserOptions::default())
            .await
    }

    pub async fn add_user_with(
        &self,
        actor: &str,
        tenant: &TenantId,
        new: NewUser,
        options: NewUserOptions,
    ) -> Result<User, Error> {
        if new.password.is_none() {
            if let Some(phc) = &options.password_hash {
                BoundedHash::check_import(phc)?;
            }
        }
        let tenant = self
            .store
            .tenant(tenant)
            .await?
            .ok_or_else(tenant_not_found)?;
        let settings = self.config.effective(&tenant.settings)?;
        let hash = match new.password {
            Some(password) => {
                settings.password.check(&password)?;
                Some(self.hasher.hash(password).await?)
            }
            None => options.password_hash,
        };
        let now = self.now();
        let display_name = new.display_name.unwrap_or_else(|| {
            let full = format!("{} {}", new.first_name, new.last_name);
            let full = full.trim();
            if full.is_empty() {
                new.email.as_str().to_owned()
            } else {
                full.to_owned()
            }
        });
        let user = User {
            id: options.id.unwrap_or_else(|| self.new_id()),
            tenant_id: tenant.id.clone(),
            username: new
                .username
                .unwrap_or_else(|| new.email.as_str().to_owned()),
            email: new.email,
            email_verified: options.email_verified,
            phone: new.phone,
            phone_verified: options.phone_verified,
            first_name: new.first_name,
            last_name: new.last_name,
            display_name,
            preferred_language: new.preferred_language.unwrap_or_default(),
            state: if hash.is_some() {
                UserState::Active
            } else {
                UserState::Initial
            },
            password_hash: hash,
            password_change_required: options.change_required,
            sequence: 1,
            creation_date: now,
            change_date: now,
        };
        let event = NewEvent {
            kind: "user.added",
            actor: actor.to_owned(),
            ip: None,
            payload: json!({ "state": user.state.as_str() }),
        };
        self.store.insert_user(&user, &event).await?;
        Ok(user)
    }

    pub async fn user_by_id(&self, user_id: &UserId) -> Result<User, Error> {
        let tenant = self
            .store
            .user_tenant(user_id)
            .await?
            .ok_or_else(Error::user_not_found)?;
        self.store
            .user(&tenant, user_id)
            .await?
            .ok_or_else(Error::user_not_found)
    }

    /// Moves a user to another state; a deleted user stays deleted. Deleting erases the user's
    /// personal data at once, in the same transaction (SPEC §12).
    pub async fn set_user_state(
        &self,
        actor: &str,
        user: &User,
        state: UserState,
    ) -> Result<Details, Error> {
        if state == UserState::Initial {
            return Err(Error::invalid(
                "REKEY-StIni",
                "A user cannot be moved back to the initial state",
            ));
        }
        let mut change = UserChange::new(
            user.tenant_id.clone(),
            user.id.clone(),
            self.now(),
            NewEvent {
                kind: "user.state.changed",
                actor: actor.to_owned(),
                ip: None,
                payload: json!({ "from": user.state.as_str(), "to": state.as_str() }),
            },
        );
        change.set_state = Some(state);
        if state == UserState::Deleted {
            change.void_pending_codes = true;
            change.revoke_user_tokens = true;
            change.erase_personal_data = true;
        }
        Ok(self.store.change_user(&change).await?)
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
        self.target_user(principal, user_id).await
    }

    /// [`Rekey::list_users`] with the time the list was read, for faces that report it
    /// (ZITADEL's `details.timestamp`).
    pub async fn list_users_at(
        &self,
        caller: &Caller,
        query: UserQuery,
    ) -> Result<ListedUsers, Error> {
        let page = self.list_users(caller, query).await?;
        Ok(ListedUsers {
            page,
            at: self.now(),
        })
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
        let user = self.target_user(principal, user_id).await?;
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
                Transition::Delete => Error::user_not_found(),
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
            change.erase_personal_data = to == UserState::Deleted;
        }
        Ok(self.store.change_user(&change).await?)
    }
}
