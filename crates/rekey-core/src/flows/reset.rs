//! Issuing reset codes: by an admin or the user (ZITADEL v2 and v1, F5), and unauthenticated
//! from the hosted "forgot password" form, which must not reveal whether an account exists.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::domain::{
    Channel, CodeId, CodeKind, CodePolicy, Details, EmailAddress, EventPrincipal, EventType,
    MessageId, MessageKind, MessagePayload, NewEvent, OutboxMessage, Role, Tenant, TenantId, User,
    UserId, UserState,
};
use crate::error::{Error, ErrorKind};
use crate::flows::{decoy_tenant, decoy_user, state_error, Caller, RateLimit, Rekey};
use crate::policy::{EffectiveSettings, UrlTemplate, Values};
use crate::ports::store::{NewResetCode, RateLimitHit, StoreError, UserChange};

/// Who issues a code: the event's actor, the principal webhook events name, the client's
/// address and the request's id.
struct Issuer {
    actor: String,
    principal: EventPrincipal,
    ip: Option<String>,
    request_id: Option<String>,
}

/// How a reset code leaves the service.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// Returned in the response; nothing is sent. Admins only.
    ReturnCode,
    /// Sent on a channel with a link from the template (or the tenant's default link).
    Send {
        channel: Channel,
        url_template: Option<UrlTemplate>,
    },
}

#[derive(Debug)]
pub struct ResetIssued {
    pub details: Details,
    /// Only for [`Delivery::ReturnCode`].
    pub code: Option<SecretString>,
    /// The queued message, for [`Delivery::Send`].
    pub message_id: Option<MessageId>,
}

impl Rekey {
    /// ZITADEL v2 `PasswordReset`.
    pub async fn request_password_reset(
        &self,
        caller: &Caller,
        user_id: &UserId,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let principal = caller.principal()?;
        let target = self.target_user_with_tenant(principal, user_id).await;
        self.reset_target(caller, target, delivery).await
    }

    /// [`Rekey::request_password_reset`] for a caller known by its token: the token is
    /// checked in the same read that finds the user and its tenant (one round trip instead of
    /// two), with the same answers in the same order. `caller` carries the request's address
    /// and id; its principal is the token's.
    pub async fn request_password_reset_with_token(
        &self,
        token: &SecretString,
        caller: Caller,
        user_id: &UserId,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let (principal, target) = self.authenticate_with_target(token, user_id).await?;
        let caller = Caller {
            principal: Some(principal),
            ..caller
        };
        self.reset_target(&caller, target, delivery).await
    }

    /// The reset of the user the caller's principal may see (`target`): a user may not have
    /// its own code returned.
    async fn reset_target(
        &self,
        caller: &Caller,
        target: Result<(User, Tenant), Error>,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let principal = caller.principal()?;
        let (user, tenant) = target?;
        if matches!(delivery, Delivery::ReturnCode) && matches!(principal.role, Role::User { .. }) {
            return Err(Error::permission_denied());
        }
        self.issue_code_in(caller, &user, &tenant, delivery).await
    }

    /// ZITADEL v1 `SendHumanResetPasswordNotification`: admins of the org in context only.
    pub async fn send_reset_notification(
        &self,
        caller: &Caller,
        org: Option<TenantId>,
        user_id: &UserId,
        channel: Channel,
    ) -> Result<Details, Error> {
        let principal = caller.principal()?;
        let user = self.user_in_org(principal, org, user_id).await?;
        let delivery = Delivery::Send {
            channel,
            url_template: None,
        };
        Ok(self.issue_code(caller, &user, delivery).await?.details)
    }

    /// Issues a new code for `user` (voiding earlier ones), and queues its message when it is
    /// to be sent — all in one transaction with the event and the per-user message counter.
    pub(crate) async fn issue_code(
        &self,
        caller: &Caller,
        user: &User,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let tenant = self.tenant_of(user).await?;
        self.issue_code_in(caller, user, &tenant, delivery).await
    }

    /// [`Rekey::issue_code`] with the user's tenant already read.
    async fn issue_code_in(
        &self,
        caller: &Caller,
        user: &User,
        tenant: &Tenant,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let issuer = Issuer {
            actor: caller.actor(),
            principal: EventPrincipal::of(caller.principal.as_ref()),
            ip: caller.ip.clone(),
            request_id: caller.request_id.clone(),
        };
        self.issue_code_as(issuer, user, tenant, delivery).await
    }

    /// [`Rekey::issue_code`] for an actor that is not an API caller (the CLI, an operator's
    /// retry): it acts with the instance's authority (`system` in webhook events).
    pub(crate) async fn issue_code_by(
        &self,
        actor: String,
        ip: Option<String>,
        user: &User,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let tenant = self.tenant_of(user).await?;
        let issuer = Issuer {
            actor,
            principal: EventPrincipal::System,
            ip,
            request_id: None,
        };
        self.issue_code_as(issuer, user, &tenant, delivery).await
    }

    /// Issues the code for `issuer`, the queued message tagged with the request's id.
    async fn issue_code_as(
        &self,
        issuer: Issuer,
        user: &User,
        tenant: &Tenant,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let Issuer {
            actor,
            principal,
            ip,
            request_id,
        } = issuer;
        if let Some(err) = state_error(user.state) {
            return Err(err);
        }
        let settings = self.config.effective(&tenant.settings)?;
        let now = self.now();
        let kind = if user.state == UserState::Initial {
            CodeKind::Init
        } else {
            CodeKind::Reset
        };
        let expires_at = now
            + match kind {
                CodeKind::Init => settings.code_init_expiry,
                CodeKind::Reset => settings.code_expiry,
            };
        let code = settings.code.generate(self.rng.as_ref());
        let (key_id, mac) = self.codes.sign(&user.tenant_id, &user.id, &code)?;
        let code_id: CodeId = self.new_id();

        let events = self.event_messages(
            EventType::ResetRequested,
            &user.tenant_id,
            &user.id,
            principal,
            ip.as_deref(),
            now,
        )?;
        let events = events
            .into_iter()
            .map(|event| event.with_request_id(request_id.clone()))
            .collect::<Vec<_>>();
        let medium = match &delivery {
            Delivery::ReturnCode => "return_code",
            Delivery::Send { channel, .. } => channel.as_str(),
        };
        let mut change = UserChange::new(
            user.tenant_id.clone(),
            user.id.clone(),
            now,
            NewEvent {
                kind: "user.password.code.added",
                actor,
                ip,
                payload: json!({ "medium": medium, "kind": kind.as_str(), "code_id": code_id }),
            },
        );
        change.require_state = vec![UserState::Initial, UserState::Active];
        change.void_pending_codes = true;
        change.new_code = Some(NewResetCode {
            id: code_id,
            key_id,
            mac,
            kind,
            expires_at,
        });

        if let Delivery::Send {
            channel,
            url_template,
        } = &delivery
        {
            let template = url_template.as_ref().unwrap_or(match kind {
                CodeKind::Reset => &settings.link_template,
                CodeKind::Init => &settings.init_link_template,
            });
            let link = template.render(&Values {
                user_id: user.id.as_str(),
                code: code.expose_secret(),
                org_id: user.tenant_id.as_str(),
            });
            let message_kind = match kind {
                CodeKind::Init => MessageKind::PasswordInit,
                CodeKind::Reset => MessageKind::PasswordReset,
            };
            let payload = MessagePayload {
                tenant_id: user.tenant_id.clone(),
                user_id: user.id.clone(),
                display_name: user.display_name.clone(),
                language: self.language_of(user, &settings),
                code: Some(code.expose_secret().to_owned()),
                link: Some(link),
                expires_at: Some(expires_at),
            };
            change.outbox.push(
                self.new_outbox_message(user, *channel, message_kind, &payload, now)?
                    .with_request_id(request_id),
            );
            change.rate_limit = Some(RateLimitHit {
                key: format!("msg:{}:{}", user.tenant_id, user.id),
                limit: settings.messages_per_user_per_hour,
                window_secs: 3600,
                at: now,
            });
        }

        let message_id = change.outbox.first().map(|m| m.id.clone());
        change.outbox.extend(events);
        let details = self.refusals.count(
            RateLimit::MessagesPerUserPerHour,
            self.store.change_user(&change).await,
        )?;
        Ok(ResetIssued {
            details,
            code: matches!(delivery, Delivery::ReturnCode).then_some(code),
            message_id,
        })
    }
    /// F5 `admin_reset` / `send_password_email`: an admin emails a user, named by email, a
    /// reset link. A tenant admin acts in its own tenant; a system principal on the one user
    /// with that email across tenants (several → ABORTED, "ambiguous").
    pub async fn admin_reset_by_email(
        &self,
        caller: &Caller,
        email: &EmailAddress,
    ) -> Result<Details, Error> {
        let principal = caller.principal()?;
        let scope = match &principal.role {
            Role::System => None,
            Role::TenantAdmin(tenant) => Some(tenant),
            Role::User { .. } => return Err(Error::permission_denied()),
        };
        let mut users: Vec<User> = self
            .store
            .users_by_email(scope, email.as_str())
            .await?
            .into_iter()
            .filter(|u| u.state != UserState::Deleted)
            .collect();
        let user = match users.len() {
            0 => return Err(Error::user_not_found_by_email()),
            1 => users.remove(0),
            _ => return Err(Error::email_ambiguous()),
        };
        let delivery = Delivery::Send {
            channel: Channel::Email,
            url_template: None,
        };
        Ok(self.issue_code(caller, &user, delivery).await?.details)
    }

    /// F5's self-service twin: the calling user is emailed a reset link.
    pub async fn self_service_reset(&self, caller: &Caller) -> Result<Details, Error> {
        let principal = caller.principal()?;
        let Role::User { tenant_id, user_id } = &principal.role else {
            return Err(Error::permission_denied());
        };
        let user = self
            .find_user_in(tenant_id, user_id)
            .await?
            .ok_or_else(Error::unauthenticated)?;
        let delivery = Delivery::Send {
            channel: Channel::Email,
            url_template: None,
        };
        Ok(self.issue_code(caller, &user, delivery).await?.details)
    }

    /// F5 `no_auth/send_password_email` and the hosted "forgot password" form. Never reveals
    /// whether the tenant or the email exists: only the input-keyed rate limits can refuse
    /// (429); every other outcome — unknown tenant, unknown email, inactive user, the user's
    /// own message limit — answers `Ok` exactly like a sent message, after the same shape of
    /// work. The caller pads the reply to a fixed deadline.
    pub async fn request_reset_unauthenticated(
        &self,
        caller: &Caller,
        cname: &str,
        email: &EmailAddress,
    ) -> Result<(), Error> {
        let now = self.now();
        let limits = self.config.limits;
        let email_key = email.as_str().to_lowercase();
        if let Some(ip) = &caller.ip {
            let hit = self
                .store
                .hit_rate_limit(&RateLimitHit {
                    key: format!("unauth_ip:{}", limits.ip_key(ip)),
                    limit: limits.unauth_per_ip_per_minute,
                    window_secs: 60,
                    at: now,
                })
                .await;
            self.refusals.count(RateLimit::UnauthPerIpPerMinute, hit)?;
        }
        let hit = self
            .store
            .hit_rate_limit(&RateLimitHit {
                key: format!(
                    "unauth_input:{}:{}",
                    hex::encode(Sha256::digest(cname.to_lowercase().as_bytes())),
                    hex::encode(Sha256::digest(email_key.as_bytes()))
                ),
                limit: limits.unauth_per_cname_email_per_hour,
                window_secs: 3600,
                at: now,
            })
            .await;
        self.refusals
            .count(RateLimit::UnauthPerCnameEmailPerHour, hit)?;

        // From here on nothing may show in the answer: the work is the same reads for every
        // input (an unknown cname is looked up in a tenant that cannot exist, never across
        // tenants), and whatever happens to an existing account's reset — its own message
        // limit, its state, even a failing write — is answered as a sent message.
        let tenant = self.store.tenant_by_cname(cname).await?;
        let tenant_id = tenant.as_ref().map_or_else(decoy_tenant, |t| t.id.clone());
        let users = self
            .store
            .users_by_email(Some(&tenant_id), email.as_str())
            .await?;
        let user = users.into_iter().find(|u| {
            tenant.is_some() && matches!(u.state, UserState::Initial | UserState::Active)
        });
        let Some(user) = user else {
            self.decoy_issue(caller, &tenant_id).await;
            return Ok(());
        };
        let delivery = Delivery::Send {
            channel: Channel::Email,
            url_template: None,
        };
        if let Err(err) = self.issue_code(caller, &user, delivery).await {
            if !matches!(
                err.kind,
                ErrorKind::ResourceExhausted | ErrorKind::FailedPrecondition
            ) {
                tracing::warn!(error = %err, "unauthenticated reset not issued");
            }
        }
        Ok(())
    }

    /// What issuing a code costs — its reads, its CPU work and its write transaction — for a
    /// request that names no account, so both kinds of input do the same work. The write is a
    /// user change on a user id no user can have (longer than any id the API accepts); the
    /// store refuses it as not found after taking the same locks a real issue takes first.
    async fn decoy_issue(&self, caller: &Caller, tenant: &TenantId) {
        let _ = self.store.tenant(tenant).await;
        let policy = CodePolicy {
            alphabet: self.config.code_alphabet,
            length: self.config.code_length,
        };
        let code = policy.generate(self.rng.as_ref());
        let user = decoy_user();
        let _ = self.codes.sign(tenant, &user, &code);
        let _ = self
            .sealer
            .seal(self.rng.as_ref(), b"decoy", code.expose_secret().as_bytes());
        let now = self.now();
        let mut change = UserChange::new(
            tenant.clone(),
            user,
            now,
            NewEvent {
                kind: "user.password.code.added",
                actor: caller.actor(),
                ip: caller.ip.clone(),
                payload: json!({}),
            },
        );
        change.require_state = vec![UserState::Initial, UserState::Active];
        change.void_pending_codes = true;
        // The event rows a real request queues, built and sealed the same way; the store
        // refuses the change before it inserts anything, as it does for the code and message.
        match self.event_messages(
            EventType::ResetRequested,
            tenant,
            &change.user_id,
            EventPrincipal::Anonymous,
            caller.ip.as_deref(),
            now,
        ) {
            Ok(events) => change.outbox = events,
            Err(err) => tracing::debug!(error = %err, "decoy events not built"),
        }
        change.rate_limit = Some(RateLimitHit {
            key: format!("msg:{tenant}:decoy"),
            limit: self.config.limits.messages_per_user_per_hour,
            window_secs: 3600,
            at: now,
        });
        match self.store.change_user(&change).await {
            Err(StoreError::NotFound) => {}
            Ok(_) => tracing::error!("a decoy user change found a user"),
            Err(err) => tracing::debug!(error = %err, "decoy user change failed"),
        }
    }
    pub(crate) fn language_of(&self, user: &User, settings: &EffectiveSettings) -> String {
        if user.preferred_language.is_empty() {
            settings.language.clone()
        } else {
            user.preferred_language.clone()
        }
    }
    /// A message to `user`, its payload sealed under a fresh id.
    pub(crate) fn new_outbox_message(
        &self,
        user: &User,
        channel: Channel,
        kind: MessageKind,
        payload: &MessagePayload,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, Error> {
        let id: MessageId = self.new_id();
        let sealed = payload.seal(&self.sealer, self.rng.as_ref(), &id)?;
        Ok(OutboxMessage::for_user(
            id, user, channel, kind, payload, sealed, now,
        ))
    }
}
