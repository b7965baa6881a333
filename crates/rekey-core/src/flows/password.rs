//! Setting a password: with a reset code, with the current password, or by an admin; and the
//! one transaction every successful change ends in.

use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use subtle::ConstantTimeEq;

use crate::domain::reset_code::MAX_CODE_INPUT;
use crate::domain::{
    Channel, CodeId, Details, EventPrincipal, EventType, MessageKind, MessagePayload, NewEvent,
    Role, TenantId, User, UserId, UserState,
};
use crate::error::{Error, ErrorHint, ErrorKind};
use crate::flows::{decoy_tenant, state_error, Caller, Rekey};
use crate::ports::store::{AttemptReservation, PasswordChange, RateLimitHit, UserChange};

/// How a password change proves itself.
#[derive(Debug)]
pub enum Verification {
    /// A reset code; no authentication needed.
    Code(SecretString),
    /// The current password; the caller must be the user or an admin.
    CurrentPassword(SecretString),
    /// Neither: an admin sets the password.
    Admin,
}

#[derive(Debug)]
pub struct SetPassword {
    pub user_id: UserId,
    pub new_password: SecretString,
    pub change_required: bool,
    pub verification: Verification,
}

impl Rekey {
    /// ZITADEL v2 `SetPassword`, all three verifications.
    pub async fn set_password(&self, caller: &Caller, cmd: SetPassword) -> Result<Details, Error> {
        match cmd.verification {
            Verification::Code(code) => {
                self.set_password_with_code(
                    caller,
                    &cmd.user_id,
                    code,
                    cmd.new_password,
                    cmd.change_required,
                )
                .await
            }
            Verification::CurrentPassword(current) => {
                let principal = caller.principal()?;
                let user = self.target_user(principal, &cmd.user_id).await?;
                if let Some(err) = state_error(user.state) {
                    return Err(err);
                }
                let Some(hash) = user.password_hash.clone() else {
                    return Err(Error::password_invalid());
                };
                if !self.hasher.verify(current.clone(), hash).await? {
                    return Err(Error::password_invalid());
                }
                let same = current
                    .expose_secret()
                    .as_bytes()
                    .ct_eq(cmd.new_password.expose_secret().as_bytes());
                if bool::from(same) {
                    return Err(Error::new(
                        ErrorKind::FailedPrecondition,
                        "COMMAND-3M0fsd",
                        "The new password must differ from the current one",
                    ));
                }
                self.store_new_password(caller, &user, cmd.new_password, cmd.change_required, None)
                    .await
            }
            Verification::Admin => {
                let principal = caller.principal()?;
                let user = self.target_user(principal, &cmd.user_id).await?;
                if matches!(principal.role, Role::User { .. }) {
                    return Err(Error::permission_denied());
                }
                self.admin_set_password(caller, &user, cmd.new_password, cmd.change_required)
                    .await
            }
        }
    }

    /// An admin of the organization in context sets the password of one of its users, with no
    /// other proof: the management v1 API's `SetHumanPassword` / `SetHumanInitialPassword`.
    pub async fn admin_set_password_in_org(
        &self,
        caller: &Caller,
        org: Option<TenantId>,
        user_id: &UserId,
        new_password: SecretString,
        change_required: bool,
    ) -> Result<Details, Error> {
        let principal = caller.principal()?;
        let user = self.user_in_org(principal, org, user_id).await?;
        self.admin_set_password(caller, &user, new_password, change_required)
            .await
    }

    async fn admin_set_password(
        &self,
        caller: &Caller,
        user: &User,
        new_password: SecretString,
        change_required: bool,
    ) -> Result<Details, Error> {
        if let Some(err) = state_error(user.state) {
            return Err(err);
        }
        self.store_new_password(caller, user, new_password, change_required, None)
            .await
    }

    /// The code path (SPEC §3.2, §7): not found → state → expired → attempt counted in the
    /// database → constant-time compare → policy (a refused password gives the attempt back)
    /// → hash → consume atomically with the password change.
    pub async fn set_password_with_code(
        &self,
        caller: &Caller,
        user_id: &UserId,
        code: SecretString,
        new_password: SecretString,
        change_required: bool,
    ) -> Result<Details, Error> {
        let code_len = code.expose_secret().chars().count();
        if code_len == 0 || code_len > MAX_CODE_INPUT {
            return Err(Error::invalid(
                "REKEY-CoLen",
                "Verification code must be 1 to 20 characters",
            ));
        }
        let now = self.now();
        if let Some(ip) = &caller.ip {
            let hit = self
                .store
                .hit_rate_limit(&RateLimitHit {
                    key: format!("code_ip:{}", self.config.limits.ip_key(ip)),
                    limit: self.config.limits.code_tries_per_ip_per_minute,
                    window_secs: 60,
                    at: now,
                })
                .await;
            self.refusals
                .count(super::RateLimit::CodeTriesPerIpPerMinute, hit)?;
        }
        // The same reads whether or not the id names a user (index, user, pending code), so
        // an unknown id cannot be told apart by the time its answer takes.
        let tenant = self.store.user_tenant(user_id).await?;
        let known = tenant.is_some();
        let tenant = tenant.unwrap_or_else(decoy_tenant);
        let user = self.find_user_in(&tenant, user_id).await?;
        let pending = self.store.pending_code(&tenant, user_id).await?;
        let (Some(user), Some(pending), true) = (user, pending, known) else {
            return Err(Error::code_not_found());
        };
        if let Some(err) = state_error(user.state) {
            return Err(err);
        }
        if now >= pending.expires_at {
            return Err(Error::code_expired());
        }
        // The comparison is made here but acted on only after the attempt is counted (the
        // count still comes first for everything the caller can observe): the counted update
        // must know whether a wrong code dies with it, to queue `user.code.locked` in the
        // same transaction.
        let matched = self.codes.verify(
            &pending.key_id,
            &pending.mac,
            &user.tenant_id,
            &user.id,
            &code,
        );
        let on_last = if matched {
            Vec::new()
        } else {
            self.event_messages(
                EventType::CodeLocked,
                &user.tenant_id,
                &user.id,
                EventPrincipal::Code,
                caller.ip.as_deref(),
                now,
            )?
            .into_iter()
            .map(|event| event.with_request_id(caller.request_id.clone()))
            .collect()
        };
        match self
            .store
            .reserve_code_attempt(
                &user.tenant_id,
                &user.id,
                &pending.id,
                self.config.max_code_attempts,
                &on_last,
            )
            .await?
        {
            AttemptReservation::Reserved { .. } => {}
            // The API says "Code is invalid" either way; the hint lets the hosted page say
            // the code is used up and offer a new one.
            AttemptReservation::Exhausted => {
                return Err(Error::code_invalid().with_hint(ErrorHint::CodeUsedUp))
            }
            AttemptReservation::Gone => return Err(Error::code_not_found()),
        }
        if !matched {
            return Err(Error::code_invalid());
        }
        let result = self
            .store_new_password(
                caller,
                &user,
                new_password,
                change_required,
                Some(pending.id.clone()),
            )
            .await;
        if let Err(err) = &result {
            // The code was right: a refused password (or a busy hash pool) must not use up
            // one of the holder's attempts.
            if err.id != Error::code_not_found().id {
                if let Err(refund) = self
                    .store
                    .refund_code_attempt(&user.tenant_id, &user.id, &pending.id)
                    .await
                {
                    tracing::warn!(error = %refund, "could not refund a code attempt");
                }
            }
        }
        result
    }

    /// Policy, hash, then one transaction: password, state `initial` → `active`, code consumed,
    /// other codes voided, the user's own tokens revoked, event, "password changed" notice.
    async fn store_new_password(
        &self,
        caller: &Caller,
        user: &User,
        new_password: SecretString,
        change_required: bool,
        consume_code: Option<CodeId>,
    ) -> Result<Details, Error> {
        let tenant = self.tenant_of(user).await?;
        let settings = self.config.effective(&tenant.settings)?;
        settings.password.check(&new_password)?;
        let hash = self.hasher.hash(new_password).await?;
        let now = self.now();
        let via = if consume_code.is_some() {
            "code"
        } else {
            "password"
        };
        let mut change = UserChange::new(
            user.tenant_id.clone(),
            user.id.clone(),
            now,
            NewEvent {
                kind: "user.password.changed",
                actor: caller.actor(),
                ip: caller.ip.clone(),
                payload: json!({ "via": via, "change_required": change_required }),
            },
        );
        change.require_state = vec![UserState::Initial, UserState::Active];
        change.consume_code = consume_code;
        change.void_pending_codes = true;
        change.set_password = Some(PasswordChange {
            hash,
            change_required,
        });
        if user.state == UserState::Initial {
            change.set_state = Some(UserState::Active);
        }
        change.revoke_user_tokens = true;
        if !user.email.as_str().is_empty() {
            let payload = MessagePayload {
                tenant_id: user.tenant_id.clone(),
                user_id: user.id.clone(),
                display_name: user.display_name.clone(),
                language: self.language_of(user, &settings),
                code: None,
                link: None,
                expires_at: None,
            };
            change.outbox.push(
                self.new_outbox_message(
                    user,
                    Channel::Email,
                    MessageKind::PasswordChanged,
                    &payload,
                    now,
                )?
                .with_request_id(caller.request_id.clone()),
            );
        }
        // The holder of a code acts as `code`, whoever the caller is; otherwise the token's role.
        let principal = if change.consume_code.is_some() {
            EventPrincipal::Code
        } else {
            EventPrincipal::of(caller.principal.as_ref())
        };
        let events = self.event_messages(
            EventType::PasswordChanged,
            &user.tenant_id,
            &user.id,
            principal,
            caller.ip.as_deref(),
            now,
        )?;
        change.outbox.extend(
            events
                .into_iter()
                .map(|event| event.with_request_id(caller.request_id.clone())),
        );
        Ok(self.store.change_user(&change).await?)
    }
}
