//! `rekey user …`: create a user, change a user's state.

use rekey_core::domain::UserId;
use rekey_core::domain::{EmailAddress, PhoneNumber};
use rekey_core::domain::{User, UserState};
use rekey_core::flows::{NewUser, Rekey};
use secrecy::SecretString;
use serde_json::{json, Value};

use super::{core_err, AddUser, Output, StateArg, CLI_ACTOR};

/// `rekey user add`: prints the new user's id; without a password the user is `initial`.
pub async fn add(rekey: &Rekey, out: &Output, args: AddUser) -> anyhow::Result<()> {
    let AddUser {
        tenant,
        email,
        username,
        phone,
        first_name,
        last_name,
        language,
        password,
    } = args;
    let tenant = rekey.tenant_by_ref(&tenant).await.map_err(core_err)?;
    let new = NewUser {
        email: EmailAddress::parse(&email).map_err(core_err)?,
        username,
        phone: phone
            .as_deref()
            .map(PhoneNumber::parse)
            .transpose()
            .map_err(core_err)?,
        first_name: first_name.unwrap_or_default(),
        last_name: last_name.unwrap_or_default(),
        display_name: None,
        preferred_language: language,
        password: password.map(SecretString::from),
    };
    let user = rekey
        .add_user(CLI_ACTOR, &tenant.id, new)
        .await
        .map_err(core_err)?;
    out.print(user.id.as_str(), user_json(&user));
    Ok(())
}

/// `rekey user set-state USER STATE`.
pub async fn set_state(
    rekey: &Rekey,
    out: &Output,
    user: String,
    state: StateArg,
) -> anyhow::Result<()> {
    let user_id = UserId::parse(user).map_err(core_err)?;
    let user = rekey.user_by_id(&user_id).await.map_err(core_err)?;
    let state = match state {
        StateArg::Active => UserState::Active,
        StateArg::Inactive => UserState::Inactive,
        StateArg::Locked => UserState::Locked,
        StateArg::Deleted => UserState::Deleted,
    };
    let details = rekey
        .set_user_state(CLI_ACTOR, &user, state)
        .await
        .map_err(core_err)?;
    out.print(
        user.id.as_str(),
        json!({ "id": user.id.as_str(), "state": state.as_str(), "sequence": details.sequence }),
    );
    Ok(())
}

fn user_json(u: &User) -> Value {
    json!({
        "id": u.id.as_str(),
        "tenantId": u.tenant_id.as_str(),
        "username": u.username,
        "email": u.email.as_str(),
        "phone": u.phone.as_ref().map(PhoneNumber::as_str),
        "displayName": u.display_name,
        "state": u.state.as_str(),
        "sequence": u.sequence,
    })
}
