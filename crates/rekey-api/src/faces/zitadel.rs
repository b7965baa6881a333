//! ZITADEL operations at the proto level: request message in, response message out. Every
//! ZITADEL wire form (REST now; Connect, gRPC and gRPC-Web later) calls these, so the forms
//! differ only in framing. Order on every operation: decode → authenticate → authorize → flow.

use chrono::{DateTime, Utc};
use http::HeaderMap;
use rekey_core::domain::UserId;
use rekey_core::domain::{Channel, Details};
use rekey_core::flows::{Caller, Delivery, SetPassword, Verification};
use rekey_core::policy::url_template::UrlTemplate;
use rekey_core::{Error, ErrorKind};
use rekey_proto::zitadel::management::v1 as mgmt;
use rekey_proto::zitadel::object::v2 as object_v2;
use rekey_proto::zitadel::user::v2 as user_v2;
use rekey_proto::zitadel::v1 as zv1;
use secrecy::{ExposeSecret, SecretString};

use crate::auth;
use crate::AppState;

/// Transport facts a face hands to the operations.
pub struct RequestMeta {
    pub headers: HeaderMap,
    pub ip: Option<String>,
}

impl RequestMeta {
    fn anonymous(&self) -> Caller {
        Caller {
            principal: None,
            ip: self.ip.clone(),
            request_id: crate::request_id::of(&self.headers),
        }
    }

    pub(crate) async fn authenticated(&self, state: &AppState) -> Result<Caller, Error> {
        Ok(Caller {
            principal: Some(auth::principal(state, &self.headers).await?),
            ip: self.ip.clone(),
            request_id: crate::request_id::of(&self.headers),
        })
    }
}

pub(crate) fn timestamp(t: DateTime<Utc>) -> pbjson_types::Timestamp {
    pbjson_types::Timestamp {
        seconds: t.timestamp(),
        nanos: i32::try_from(t.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

pub fn details_v2(d: &Details) -> object_v2::Details {
    object_v2::Details {
        sequence: d.sequence,
        change_date: Some(timestamp(d.change_date)),
        resource_owner: d.resource_owner.to_string(),
        creation_date: d.creation_date.map(timestamp),
    }
}

pub fn details_v1(d: &Details) -> zv1::ObjectDetails {
    zv1::ObjectDetails {
        sequence: d.sequence,
        creation_date: d.creation_date.map(timestamp),
        change_date: Some(timestamp(d.change_date)),
        resource_owner: d.resource_owner.to_string(),
    }
}

fn bounded_secret(
    value: String,
    max: usize,
    id: &'static str,
    what: &'static str,
) -> Result<SecretString, Error> {
    let len = value.chars().count();
    if len == 0 || len > max {
        return Err(Error::invalid(
            id,
            format!("{what} must be 1 to {max} characters"),
        ));
    }
    Ok(SecretString::from(value))
}

fn unknown_enum(what: &'static str) -> Error {
    Error::invalid("REKEY-Enum1", format!("Unknown value for {what}"))
}

// ---------------------------------------------------------------------- user v2

/// `zitadel.user.v2.UserService/PasswordReset` (SPEC §3.1).
pub async fn password_reset(
    state: &AppState,
    meta: &RequestMeta,
    req: user_v2::PasswordResetRequest,
) -> Result<user_v2::PasswordResetResponse, Error> {
    use user_v2::password_reset_request::Medium;
    let user_id = UserId::parse(req.user_id)?;
    let delivery = match req.medium {
        None => Delivery::Send {
            channel: Channel::Email,
            url_template: None,
        },
        Some(Medium::ReturnCode(_)) => Delivery::ReturnCode,
        Some(Medium::SendLink(link)) => {
            let channel = match user_v2::NotificationType::try_from(link.notification_type) {
                Ok(user_v2::NotificationType::Unspecified | user_v2::NotificationType::Email) => {
                    Channel::Email
                }
                Ok(user_v2::NotificationType::Sms) => Channel::Sms,
                Err(_) => return Err(unknown_enum("notificationType")),
            };
            let url_template = link
                .url_template
                .as_deref()
                .map(UrlTemplate::parse)
                .transpose()?;
            Delivery::Send {
                channel,
                url_template,
            }
        }
    };
    // The token is checked in the read that finds the user (the hot path of a reset).
    let token = auth::bearer(&meta.headers).ok_or_else(Error::unauthenticated)?;
    let issued = state
        .rekey
        .request_password_reset_with_token(&token, meta.anonymous(), &user_id, delivery)
        .await?;
    Ok(user_v2::PasswordResetResponse {
        details: Some(details_v2(&issued.details)),
        verification_code: issued.code.map(|c| c.expose_secret().to_owned()),
    })
}

/// `zitadel.user.v2.UserService/SetPassword` (SPEC §3.2).
pub async fn set_password(
    state: &AppState,
    meta: &RequestMeta,
    req: user_v2::SetPasswordRequest,
) -> Result<user_v2::SetPasswordResponse, Error> {
    use user_v2::set_password_request::Verification as V;
    let user_id = UserId::parse(req.user_id)?;
    let new = req
        .new_password
        .ok_or_else(|| Error::invalid("REKEY-PwReq", "newPassword is required"))?;
    let new_password = bounded_secret(new.password, 200, "REKEY-PwLn1", "newPassword.password")?;
    let verification = match req.verification {
        Some(V::VerificationCode(code)) => {
            Verification::Code(bounded_secret(code, 20, "REKEY-CoLen", "verificationCode")?)
        }
        Some(V::CurrentPassword(current)) => Verification::CurrentPassword(bounded_secret(
            current,
            200,
            "REKEY-PwLn2",
            "currentPassword",
        )?),
        None => Verification::Admin,
    };
    // The code is the proof: that path ignores any Authorization header.
    let caller = match verification {
        Verification::Code(_) => meta.anonymous(),
        _ => meta.authenticated(state).await?,
    };
    let details = state
        .rekey
        .set_password(
            &caller,
            SetPassword {
                user_id,
                new_password,
                change_required: new.change_required,
                verification,
            },
        )
        .await?;
    Ok(user_v2::SetPasswordResponse {
        details: Some(details_v2(&details)),
    })
}

// ---------------------------------------------------------------------- management v1

/// `zitadel.management.v1.ManagementService/SendHumanResetPasswordNotification` (SPEC §3.3).
pub async fn send_human_reset_password_notification(
    state: &AppState,
    meta: &RequestMeta,
    req: mgmt::SendHumanResetPasswordNotificationRequest,
) -> Result<mgmt::SendHumanResetPasswordNotificationResponse, Error> {
    use mgmt::send_human_reset_password_notification_request::Type;
    let user_id = UserId::parse(req.user_id)?;
    let channel = match Type::try_from(req.r#type) {
        Ok(Type::Email) => Channel::Email,
        Ok(Type::Sms) => Channel::Sms,
        Err(_) => return Err(unknown_enum("type")),
    };
    let org = auth::org_header(&meta.headers)?;
    let caller = meta.authenticated(state).await?;
    let details = state
        .rekey
        .send_reset_notification(&caller, org, &user_id, channel)
        .await?;
    Ok(mgmt::SendHumanResetPasswordNotificationResponse {
        details: Some(details_v1(&details)),
    })
}

/// The shared body of the two v1 password setters: decode, authenticate, admin set.
async fn set_password_v1(
    state: &AppState,
    meta: &RequestMeta,
    user_id: String,
    password: String,
    change_required: bool,
) -> Result<zv1::ObjectDetails, Error> {
    let user_id = UserId::parse(user_id)?;
    let password = bounded_secret(password, 72, "REKEY-PwLn3", "password")?;
    let org = auth::org_header(&meta.headers)?;
    let caller = meta.authenticated(state).await?;
    let details = state
        .rekey
        .admin_set_password_in_org(&caller, org, &user_id, password, change_required)
        .await?;
    Ok(details_v1(&details))
}

/// `zitadel.management.v1.ManagementService/SetHumanPassword`.
pub async fn set_human_password(
    state: &AppState,
    meta: &RequestMeta,
    req: mgmt::SetHumanPasswordRequest,
) -> Result<mgmt::SetHumanPasswordResponse, Error> {
    let details = set_password_v1(
        state,
        meta,
        req.user_id,
        req.password,
        !req.no_change_required,
    )
    .await?;
    Ok(mgmt::SetHumanPasswordResponse {
        details: Some(details),
    })
}

/// `zitadel.management.v1.ManagementService/SetHumanInitialPassword`.
pub async fn set_human_initial_password(
    state: &AppState,
    meta: &RequestMeta,
    req: mgmt::SetHumanInitialPasswordRequest,
) -> Result<mgmt::SetHumanInitialPasswordResponse, Error> {
    let details = set_password_v1(state, meta, req.user_id, req.password, false).await?;
    Ok(mgmt::SetHumanInitialPasswordResponse {
        details: Some(details),
    })
}

/// The error for an RPC this service does not have.
pub fn unimplemented(method: &str) -> Error {
    Error::new(
        ErrorKind::Unimplemented,
        "REKEY-Unimp",
        format!("Method {method} is not implemented"),
    )
}
