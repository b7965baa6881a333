//! The setup RPCs of ZITADEL's user v2 and org v2 services at the proto level (SPEC §11):
//! AddHumanUser, GetUserByID, ListUsers, the state changes, AddOrganization. Like
//! `faces::zitadel`, every wire form calls these.

use rekey_core::domain::{EmailAddress, PhoneNumber};
use rekey_core::domain::{OrgRef, Transition, UserQuery};
use rekey_core::domain::{TenantId, UserId};
use rekey_core::domain::{User, UserState};
use rekey_core::flows::NewAdmin;
use rekey_core::flows::{NewUser, NewUserOptions};
use rekey_core::ports::store::{TextMatch, UserFilter};
use rekey_core::Error;
use rekey_proto::zitadel::object::v2 as object_v2;
use rekey_proto::zitadel::org::v2 as org_v2;
use rekey_proto::zitadel::user::v2 as user_v2;
use secrecy::SecretString;

use super::zitadel::{details_v2, timestamp, RequestMeta};
use crate::AppState;

fn bounded(value: &str, max: usize, what: &'static str) -> Result<(), Error> {
    let len = value.chars().count();
    if len == 0 || len > max {
        return Err(Error::invalid(
            "REKEY-Field",
            format!("{what} must be 1 to {max} characters"),
        ));
    }
    Ok(())
}

fn org_ref(org: Option<object_v2::Organization>) -> Result<Option<OrgRef>, Error> {
    use object_v2::organization::Org;
    Ok(match org.and_then(|o| o.org) {
        None => None,
        Some(Org::OrgId(id)) => Some(OrgRef::Id(TenantId::parse(id)?)),
        Some(Org::OrgDomain(domain)) => {
            bounded(&domain, 200, "organization.orgDomain")?;
            Some(OrgRef::Domain(domain))
        }
    })
}

/// Decodes an `AddHumanUserRequest` into the domain's new user.
fn new_user(
    req: user_v2::AddHumanUserRequest,
) -> Result<(Option<OrgRef>, NewUser, NewUserOptions), Error> {
    use user_v2::add_human_user_request::PasswordType;
    use user_v2::set_human_email::Verification as EmailVerification;
    use user_v2::set_human_phone::Verification as PhoneVerification;
    let org = org_ref(req.organization)?;
    let id = req.user_id.map(UserId::parse).transpose()?;
    if let Some(username) = &req.username {
        bounded(username, 200, "username")?;
    }
    let profile = req
        .profile
        .ok_or_else(|| Error::invalid("REKEY-Prof1", "profile is required"))?;
    bounded(&profile.given_name, 200, "profile.givenName")?;
    bounded(&profile.family_name, 200, "profile.familyName")?;
    let email = req
        .email
        .ok_or_else(|| Error::invalid("REKEY-EmReq", "email is required"))?;
    let email_verified = matches!(
        email.verification,
        Some(EmailVerification::IsVerified(true))
    );
    let email_address = EmailAddress::parse(&email.email)?;
    let (phone, phone_verified) = match req.phone.filter(|p| !p.phone.is_empty()) {
        Some(phone) => (
            Some(PhoneNumber::parse(&phone.phone)?),
            matches!(
                phone.verification,
                Some(PhoneVerification::IsVerified(true))
            ),
        ),
        None => (None, false),
    };
    let (password, password_hash, change_required) = match req.password_type {
        None => (None, None, false),
        Some(PasswordType::Password(p)) => {
            bounded(&p.password, 200, "password.password")?;
            (
                Some(SecretString::from(p.password)),
                None,
                p.change_required,
            )
        }
        Some(PasswordType::HashedPassword(h)) => (None, Some(h.hash), h.change_required),
    };
    Ok((
        org,
        NewUser {
            email: email_address,
            username: req.username,
            phone,
            first_name: profile.given_name,
            last_name: profile.family_name,
            display_name: profile.display_name.filter(|d| !d.is_empty()),
            preferred_language: profile.preferred_language.filter(|l| !l.is_empty()),
            password,
        },
        NewUserOptions {
            id,
            email_verified,
            phone_verified,
            password_hash,
            change_required,
        },
    ))
}

pub fn user_state(state: UserState) -> user_v2::UserState {
    match state {
        UserState::Initial => user_v2::UserState::Initial,
        UserState::Active => user_v2::UserState::Active,
        UserState::Inactive => user_v2::UserState::Inactive,
        UserState::Locked => user_v2::UserState::Locked,
        UserState::Deleted => user_v2::UserState::Deleted,
    }
}

fn details_of(user: &User) -> object_v2::Details {
    object_v2::Details {
        sequence: user.sequence,
        change_date: Some(timestamp(user.change_date)),
        resource_owner: user.tenant_id.to_string(),
        creation_date: Some(timestamp(user.creation_date)),
    }
}

/// A user in ZITADEL's v2 `User` shape.
pub fn user_message(user: &User) -> user_v2::User {
    let state = user_state(user.state) as i32;
    let human = user_v2::HumanUser {
        user_id: user.id.to_string(),
        state,
        username: user.username.clone(),
        login_names: vec![user.username.clone()],
        preferred_login_name: user.username.clone(),
        profile: Some(user_v2::HumanProfile {
            given_name: user.first_name.clone(),
            family_name: user.last_name.clone(),
            nick_name: None,
            display_name: Some(user.display_name.clone()),
            preferred_language: Some(user.preferred_language.clone()).filter(|l| !l.is_empty()),
            gender: None,
            avatar_url: String::new(),
        }),
        email: Some(user_v2::HumanEmail {
            email: user.email.as_str().to_owned(),
            is_verified: user.email_verified,
        }),
        phone: user.phone.as_ref().map(|phone| user_v2::HumanPhone {
            phone: phone.as_str().to_owned(),
            is_verified: user.phone_verified,
        }),
        password_change_required: user.password_change_required,
        password_changed: None,
        mfa_init_skipped: None,
    };
    user_v2::User {
        user_id: user.id.to_string(),
        details: Some(details_of(user)),
        state,
        username: user.username.clone(),
        login_names: vec![user.username.clone()],
        preferred_login_name: user.username.clone(),
        r#type: Some(user_v2::user::Type::Human(human)),
    }
}

/// `UserService/AddHumanUser`.
pub async fn add_human_user(
    state: &AppState,
    meta: &RequestMeta,
    req: user_v2::AddHumanUserRequest,
) -> Result<user_v2::AddHumanUserResponse, Error> {
    let (org, new, options) = new_user(req)?;
    let caller = meta.authenticated(state).await?;
    let (user, details) = state
        .rekey
        .add_human_user(&caller, org, new, options)
        .await?;
    Ok(user_v2::AddHumanUserResponse {
        user_id: user.id.to_string(),
        details: Some(details_v2(&details)),
        email_code: None,
        phone_code: None,
    })
}

/// `UserService/GetUserByID`.
pub async fn get_user_by_id(
    state: &AppState,
    meta: &RequestMeta,
    req: user_v2::GetUserByIdRequest,
) -> Result<user_v2::GetUserByIdResponse, Error> {
    let user_id = UserId::parse(req.user_id)?;
    let caller = meta.authenticated(state).await?;
    let user = state.rekey.get_user(&caller, &user_id).await?;
    Ok(user_v2::GetUserByIdResponse {
        details: Some(details_of(&user)),
        user: Some(user_message(&user)),
    })
}

fn text_match(method: i32) -> Result<TextMatch, Error> {
    use object_v2::TextQueryMethod as M;
    Ok(match M::try_from(method) {
        Ok(M::Equals) => TextMatch::Equals,
        Ok(M::EqualsIgnoreCase) => TextMatch::EqualsIgnoreCase,
        Ok(M::StartsWith) => TextMatch::StartsWith,
        Ok(M::StartsWithIgnoreCase) => TextMatch::StartsWithIgnoreCase,
        Ok(M::Contains) => TextMatch::Contains,
        Ok(M::ContainsIgnoreCase) => TextMatch::ContainsIgnoreCase,
        Ok(M::EndsWith) => TextMatch::EndsWith,
        Ok(M::EndsWithIgnoreCase) => TextMatch::EndsWithIgnoreCase,
        Err(_) => return Err(Error::invalid("REKEY-Enum1", "Unknown value for method")),
    })
}

fn filter(query: user_v2::SearchQuery) -> Result<UserFilter, Error> {
    use user_v2::search_query::Query;
    Ok(match query.query {
        Some(Query::UserNameQuery(q)) => UserFilter::UserName(q.user_name, text_match(q.method)?),
        Some(Query::EmailQuery(q)) => UserFilter::Email(q.email_address, text_match(q.method)?),
        Some(Query::StateQuery(q)) => {
            UserFilter::State(match user_v2::UserState::try_from(q.state) {
                Ok(user_v2::UserState::Initial) => UserState::Initial,
                Ok(user_v2::UserState::Active) => UserState::Active,
                Ok(user_v2::UserState::Inactive) => UserState::Inactive,
                Ok(user_v2::UserState::Locked) => UserState::Locked,
                Ok(user_v2::UserState::Deleted) => UserState::Deleted,
                _ => return Err(Error::invalid("REKEY-Enum1", "Unknown value for state")),
            })
        }
        Some(Query::InUserIdsQuery(q)) => UserFilter::InIds(q.user_ids),
        Some(Query::InUserEmailsQuery(q)) => UserFilter::InEmails(q.user_emails),
        Some(Query::OrganizationIdQuery(q)) => {
            UserFilter::Tenant(TenantId::parse(q.organization_id)?)
        }
        None => {
            return Err(Error::new(
                rekey_core::ErrorKind::Unimplemented,
                "REKEY-Query",
                "Unsupported or empty search query",
            ))
        }
    })
}

/// `UserService/ListUsers`.
pub async fn list_users(
    state: &AppState,
    meta: &RequestMeta,
    req: user_v2::ListUsersRequest,
) -> Result<user_v2::ListUsersResponse, Error> {
    let list = req.query.unwrap_or_default();
    let query = UserQuery {
        offset: list.offset,
        limit: list.limit,
        asc: list.asc,
        filters: req
            .queries
            .into_iter()
            .map(filter)
            .collect::<Result<_, _>>()?,
    };
    let caller = meta.authenticated(state).await?;
    let listed = state.rekey.list_users_at(&caller, query).await?;
    let page = listed.page;
    Ok(user_v2::ListUsersResponse {
        details: Some(object_v2::ListDetails {
            total_result: page.total,
            processed_sequence: 0,
            timestamp: Some(timestamp(listed.at)),
        }),
        sorting_column: req.sorting_column,
        result: page.users.iter().map(user_message).collect(),
    })
}

async fn transition(
    state: &AppState,
    meta: &RequestMeta,
    user_id: String,
    transition: Transition,
) -> Result<Option<object_v2::Details>, Error> {
    let user_id = UserId::parse(user_id)?;
    let caller = meta.authenticated(state).await?;
    let details = state
        .rekey
        .transition_user(&caller, &user_id, transition)
        .await?;
    Ok(Some(details_v2(&details)))
}

macro_rules! state_rpc {
    ($name:ident, $req:ident, $resp:ident, $transition:expr) => {
        pub async fn $name(
            state: &AppState,
            meta: &RequestMeta,
            req: user_v2::$req,
        ) -> Result<user_v2::$resp, Error> {
            Ok(user_v2::$resp {
                details: transition(state, meta, req.user_id, $transition).await?,
            })
        }
    };
}

state_rpc!(
    deactivate_user,
    DeactivateUserRequest,
    DeactivateUserResponse,
    Transition::Deactivate
);
state_rpc!(
    reactivate_user,
    ReactivateUserRequest,
    ReactivateUserResponse,
    Transition::Reactivate
);
state_rpc!(
    lock_user,
    LockUserRequest,
    LockUserResponse,
    Transition::Lock
);
state_rpc!(
    unlock_user,
    UnlockUserRequest,
    UnlockUserResponse,
    Transition::Unlock
);
state_rpc!(
    delete_user,
    DeleteUserRequest,
    DeleteUserResponse,
    Transition::Delete
);

/// `OrganizationService/AddOrganization`.
pub async fn add_organization(
    state: &AppState,
    meta: &RequestMeta,
    req: org_v2::AddOrganizationRequest,
) -> Result<org_v2::AddOrganizationResponse, Error> {
    use org_v2::add_organization_request::admin::UserType;
    bounded(&req.name, 200, "name")?;
    let id = req
        .organization_id
        .or(req.org_id)
        .map(TenantId::parse)
        .transpose()?;
    let mut admins = Vec::new();
    for admin in req.admins {
        match admin.user_type {
            Some(UserType::Human(human)) => {
                let (_, user, options) = new_user(human)?;
                admins.push(NewAdmin { user, options });
            }
            // Rekey keeps no org memberships: an existing user named as admin changes nothing.
            Some(UserType::UserId(_)) | None => {}
        }
    }
    let caller = meta.authenticated(state).await?;
    let (tenant, created) = state
        .rekey
        .add_organization(&caller, &req.name, id, admins)
        .await?;
    Ok(org_v2::AddOrganizationResponse {
        details: Some(object_v2::Details {
            sequence: 1,
            change_date: Some(timestamp(tenant.creation_date)),
            resource_owner: tenant.id.to_string(),
            creation_date: Some(timestamp(tenant.creation_date)),
        }),
        organization_id: tenant.id.to_string(),
        created_admins: created
            .iter()
            .map(|u| org_v2::add_organization_response::CreatedAdmin {
                user_id: u.id.to_string(),
                email_code: None,
                phone_code: None,
            })
            .collect(),
    })
}
