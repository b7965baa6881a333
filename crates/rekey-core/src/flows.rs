//! The flows every face calls. A face decodes its request into one of the commands here,
//! authenticates the caller, and maps the result or [`Error`] back to its own shape; no face
//! holds a business rule and no flow knows which face called it.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::{Clock, Random};
use crate::code::{CodeMac, CodePolicy, MAX_CODE_INPUT};
use crate::crypto::Sealer;
use crate::error::{Error, ErrorHint, ErrorKind};
use crate::hasher::{BoundedHash, PasswordHasher};
use crate::ids::{new_id, TenantId, UserId};
use crate::model::{
    ApiToken, Channel, CodeAlphabet, CodeKind, Details, MessageKind, NewEvent, OutboxMessage,
    OutboxState, Principal, Role, Tenant, TenantSettings, User, UserState,
};
use crate::outbox::MessagePayload;
use crate::password::PasswordPolicy;
use crate::store::{
    AttemptReservation, NewResetCode, PasswordChange, RateLimitHit, Store, StoreError, UserChange,
};
use crate::url_template::{UrlTemplate, Values};
use crate::validate::{Cname, EmailAddress, PhoneNumber};

/// Shortest and longest code lifetime a tenant may choose (SPEC §7).
const MIN_EXPIRY_SECS: u64 = 5 * 60;
const MAX_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// Instance-wide defaults (SPEC §7, §10, §12); tenants override them in their settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base of every link in a message; never taken from a request.
    pub public_url: String,
    pub code_length: u32,
    pub code_alphabet: CodeAlphabet,
    pub code_expiry_secs: u64,
    pub code_init_expiry_secs: u64,
    pub max_code_attempts: u32,
    pub password: PasswordPolicy,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub messages_per_user_per_hour: u32,
    pub unauth_per_cname_email_per_hour: u32,
    pub unauth_per_ip_per_minute: u32,
    pub code_tries_per_ip_per_minute: u32,
    /// Per-IP limits count an IPv6 client by this prefix of its address (SPEC §12): one
    /// subscriber usually holds a whole /64 and could otherwise rotate through it.
    pub ipv6_prefix: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            messages_per_user_per_hour: 5,
            unauth_per_cname_email_per_hour: 5,
            unauth_per_ip_per_minute: 20,
            code_tries_per_ip_per_minute: 30,
            ipv6_prefix: 64,
        }
    }
}

impl Limits {
    /// The part of a client address that per-IP limits count: an IPv4 address (also one
    /// mapped into IPv6) as it is, an IPv6 address cut to [`Limits::ipv6_prefix`] bits.
    pub fn ip_key(&self, ip: &str) -> String {
        match ip.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(std::net::IpAddr::V6(v6)) => {
                let bits = u32::from(self.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                format!("{net}/{bits}")
            }
            Ok(v4) => v4.to_string(),
            Err(_) => ip.to_owned(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".to_owned(),
            code_length: 8,
            code_alphabet: CodeAlphabet::Rekey,
            code_expiry_secs: 3600,
            code_init_expiry_secs: 72 * 3600,
            max_code_attempts: 5,
            password: PasswordPolicy::default(),
            limits: Limits::default(),
        }
    }
}

/// A tenant's settings merged over the instance defaults.
#[derive(Debug, Clone)]
pub struct EffectiveSettings {
    pub code: CodePolicy,
    pub code_expiry: Duration,
    pub code_init_expiry: Duration,
    pub password: PasswordPolicy,
    pub messages_per_user_per_hour: u32,
    /// The link of a reset message: the tenant's template, else the hosted reset page.
    pub link_template: UrlTemplate,
    /// The link of an onboarding message: the tenant's template, else the hosted "set your
    /// password" page (SPEC §8).
    pub init_link_template: UrlTemplate,
    pub language: String,
}

fn clamp_expiry(secs: u64) -> Duration {
    let secs = secs.clamp(MIN_EXPIRY_SECS, MAX_EXPIRY_SECS);
    Duration::seconds(i64::try_from(secs).unwrap_or(3600))
}

impl Config {
    /// The hosted page's link for a code of `kind` (SPEC §8).
    pub fn default_link_template(&self, kind: CodeKind) -> String {
        let page = match kind {
            CodeKind::Reset => "reset",
            CodeKind::Init => "set",
        };
        format!(
            "{}/ui/password/{page}?userID={{{{.UserID}}}}&code={{{{.Code}}}}&orgID={{{{.OrgID}}}}",
            self.public_url.trim_end_matches('/')
        )
    }

    /// A tenant's password policy merged over the instance default.
    pub fn password_policy(&self, settings: &TenantSettings) -> PasswordPolicy {
        let d = &self.password;
        PasswordPolicy {
            min_length: settings.password_min_length.unwrap_or(d.min_length),
            max_length: settings.password_max_length.unwrap_or(d.max_length),
            require_lower: settings.password_require_lower.unwrap_or(d.require_lower),
            require_upper: settings.password_require_upper.unwrap_or(d.require_upper),
            require_digit: settings.password_require_digit.unwrap_or(d.require_digit),
            require_symbol: settings.password_require_symbol.unwrap_or(d.require_symbol),
        }
    }

    pub fn effective(&self, settings: &TenantSettings) -> Result<EffectiveSettings, Error> {
        let link = |kind| {
            let template = settings
                .link_template
                .clone()
                .unwrap_or_else(|| self.default_link_template(kind));
            UrlTemplate::parse_unbounded(&template).map_err(|_| {
                tracing::error!("tenant link template is invalid");
                Error::internal()
            })
        };
        Ok(EffectiveSettings {
            code: CodePolicy {
                alphabet: settings.code_alphabet.unwrap_or(self.code_alphabet),
                length: settings
                    .code_length
                    .unwrap_or(match settings.code_alphabet {
                        Some(CodeAlphabet::Zitadel) => 6,
                        _ => self.code_length,
                    }),
            },
            code_expiry: clamp_expiry(settings.code_expiry_secs.unwrap_or(self.code_expiry_secs)),
            code_init_expiry: clamp_expiry(
                settings
                    .code_init_expiry_secs
                    .unwrap_or(self.code_init_expiry_secs),
            ),
            password: self.password_policy(settings),
            messages_per_user_per_hour: settings
                .limits_messages_per_user_per_hour
                .unwrap_or(self.limits.messages_per_user_per_hour),
            link_template: link(CodeKind::Reset)?,
            init_link_template: link(CodeKind::Init)?,
            language: settings.language.clone().unwrap_or_else(|| "en".to_owned()),
        })
    }
}

/// Who is calling and from where.
#[derive(Debug, Clone, Default)]
pub struct Caller {
    pub principal: Option<Principal>,
    pub ip: Option<String>,
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
    pub message_id: Option<String>,
}

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
    /// [`crate::hasher::HashBounds::ACCEPTED`].
    pub password_hash: Option<String>,
    pub change_required: bool,
}

/// A freshly created API token: the secret is shown once.
pub struct IssuedToken {
    pub secret: SecretString,
    pub token: ApiToken,
}

pub struct Rekey {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) rng: Arc<dyn Random>,
    codes: CodeMac,
    sealer: Sealer,
    pub(crate) hasher: PasswordHasher,
    pub(crate) config: Config,
}

/// Why a message was parked at once: the user has no address on its channel.
const NO_EMAIL: &str = "no email";
const NO_PHONE: &str = "no phone";

/// Where lookups for input that names nothing go, so they cost what a real lookup costs.
/// Generated ids are time-ordered numbers, never 0; a system principal could still choose "0"
/// for a tenant, so callers never use what a decoy lookup finds.
fn decoy_tenant() -> TenantId {
    TenantId::from_trusted(String::from("0"))
}

/// A user id no user can have: one character longer than any id the API accepts.
fn decoy_user() -> UserId {
    UserId::from_trusted("0".repeat(crate::ids::MAX_ID_LEN + 1))
}

fn state_error(state: UserState) -> Option<Error> {
    match state {
        UserState::Inactive => Some(Error::user_inactive()),
        UserState::Locked => Some(Error::user_locked()),
        _ => None,
    }
}

/// SHA-256 of an API token, the only form in which tokens are stored.
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Rekey {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Random>,
        codes: CodeMac,
        sealer: Sealer,
        hasher: PasswordHasher,
        config: Config,
    ) -> Self {
        Self {
            store,
            clock,
            rng,
            codes,
            sealer,
            hasher,
            config,
        }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub fn hasher(&self) -> &PasswordHasher {
        &self.hasher
    }

    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub(crate) fn new_id(&self) -> String {
        new_id(self.clock.as_ref(), self.rng.as_ref())
    }

    // ------------------------------------------------------------------ authentication

    /// The principal of a bearer/API token; unknown or revoked → UNAUTHENTICATED.
    pub async fn authenticate(&self, secret: &SecretString) -> Result<Principal, Error> {
        let hash = token_hash(secret.expose_secret());
        let token = self
            .store
            .token_by_hash(&hash)
            .await?
            .ok_or_else(Error::unauthenticated)?;
        Ok(Principal {
            token_id: token.id,
            role: token.role,
        })
    }

    // ------------------------------------------------------------------ lookups

    async fn tenant_of(&self, user: &User) -> Result<Tenant, Error> {
        self.store.tenant(&user.tenant_id).await?.ok_or_else(|| {
            tracing::error!(tenant = %user.tenant_id, "user without tenant");
            Error::internal()
        })
    }

    /// Any live user by id, whatever the tenant.
    async fn find_user(&self, user_id: &UserId) -> Result<Option<User>, Error> {
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

    /// The v2 target of a call: the user themself or a user of the admin's tenant. Anything
    /// else looks exactly like a user that does not exist, so ids cannot be probed.
    pub(crate) async fn v2_target(
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
        user.ok_or_else(Error::user_not_found_v2)
    }

    /// The org a v1 management call acts in (`x-zitadel-orgid`, else the caller's own).
    pub fn v1_org(
        &self,
        principal: &Principal,
        header: Option<TenantId>,
    ) -> Result<TenantId, Error> {
        match (&principal.role, header) {
            (Role::System, Some(org)) => Ok(org),
            (Role::System, None) => Err(Error::invalid(
                "REKEY-OrgRq",
                "Organisation required: set the x-zitadel-orgid header",
            )),
            (Role::TenantAdmin(own), None) => Ok(own.clone()),
            (Role::TenantAdmin(own), Some(org)) if *own == org => Ok(org),
            _ => Err(Error::permission_denied()),
        }
    }

    async fn v1_target(
        &self,
        principal: &Principal,
        org: Option<TenantId>,
        user_id: &UserId,
    ) -> Result<User, Error> {
        let org = self.v1_org(principal, org)?;
        self.find_user_in(&org, user_id)
            .await?
            .ok_or_else(Error::user_not_found_v1)
    }

    // ------------------------------------------------------------------ reset codes

    /// ZITADEL v2 `PasswordReset`.
    pub async fn request_password_reset(
        &self,
        caller: &Caller,
        user_id: &UserId,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        let principal = caller.principal()?;
        let user = self.v2_target(principal, user_id).await?;
        if matches!(delivery, Delivery::ReturnCode) && matches!(principal.role, Role::User { .. }) {
            return Err(Error::permission_denied());
        }
        self.issue_code(caller, &user, delivery).await
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
        let user = self.v1_target(principal, org, user_id).await?;
        let delivery = Delivery::Send {
            channel,
            url_template: None,
        };
        Ok(self.issue_code(caller, &user, delivery).await?.details)
    }

    /// Issues a new code for `user` (voiding earlier ones), and queues its message when it is
    /// to be sent — all in one transaction with the event and the per-user message counter.
    pub async fn issue_code(
        &self,
        caller: &Caller,
        user: &User,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        self.issue_code_by(caller.actor(), caller.ip.clone(), user, delivery)
            .await
    }

    /// [`Rekey::issue_code`] for an actor that is not an API caller (the CLI).
    pub(crate) async fn issue_code_by(
        &self,
        actor: String,
        ip: Option<String>,
        user: &User,
        delivery: Delivery,
    ) -> Result<ResetIssued, Error> {
        if let Some(err) = state_error(user.state) {
            return Err(err);
        }
        let tenant = self.tenant_of(user).await?;
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
        let code_id = self.new_id();

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
                tenant_id: user.tenant_id.to_string(),
                user_id: user.id.to_string(),
                display_name: user.display_name.clone(),
                language: self.language_of(user, &settings),
                code: Some(code.expose_secret().to_owned()),
                link: Some(link),
                expires_at: Some(expires_at),
            };
            change
                .outbox
                .push(self.outbox_message(user, *channel, message_kind, &payload, now)?);
            change.rate_limit = Some(RateLimitHit {
                key: format!("msg:{}:{}", user.tenant_id, user.id),
                limit: settings.messages_per_user_per_hour,
                window_secs: 3600,
                at: now,
            });
        }

        let message_id = change.outbox.first().map(|m| m.id.clone());
        let details = self.store.change_user(&change).await?;
        Ok(ResetIssued {
            details,
            code: matches!(delivery, Delivery::ReturnCode).then_some(code),
            message_id,
        })
    }

    // ------------------------------------------------------------------ F5 faces

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
            self.store
                .hit_rate_limit(&RateLimitHit {
                    key: format!("unauth_ip:{}", limits.ip_key(ip)),
                    limit: limits.unauth_per_ip_per_minute,
                    window_secs: 60,
                    at: now,
                })
                .await?;
        }
        self.store
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
            .await?;

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

    fn language_of(&self, user: &User, settings: &EffectiveSettings) -> String {
        if user.preferred_language.is_empty() {
            settings.language.clone()
        } else {
            user.preferred_language.clone()
        }
    }

    fn outbox_message(
        &self,
        user: &User,
        channel: Channel,
        kind: MessageKind,
        payload: &MessagePayload,
        now: DateTime<Utc>,
    ) -> Result<OutboxMessage, Error> {
        let id = self.new_id();
        let (key_id, body) = payload.seal(&self.sealer, self.rng.as_ref(), &id)?;
        let recipient = match channel {
            Channel::Email => Some(user.email.clone()).filter(|e| !e.is_empty()),
            Channel::Sms => user.phone.clone(),
        };
        // A user without the address is not an error for the caller (as in ZITADEL); the
        // message is parked as failed so admins can see it.
        let (state, last_error) = match (&recipient, channel) {
            (Some(_), _) => (OutboxState::Pending, None),
            (None, Channel::Email) => (OutboxState::Failed, Some(NO_EMAIL.to_owned())),
            (None, Channel::Sms) => (OutboxState::Failed, Some(NO_PHONE.to_owned())),
        };
        // A message that can never be sent keeps no secret: parked without its body, it is
        // re-issued with a fresh code once the user has the address (retry).
        let (body, body_expires_at) = if recipient.is_some() {
            (body, payload.code.as_ref().and(payload.expires_at))
        } else {
            (Vec::new(), None)
        };
        Ok(OutboxMessage {
            idempotency_key: format!("{id}.{}", user.tenant_id),
            id,
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
            channel,
            recipient,
            kind,
            key_id,
            body,
            state,
            attempts: 0,
            next_attempt_at: now,
            last_error,
            created_at: now,
            sent_at: None,
            body_expires_at,
        })
    }

    // ------------------------------------------------------------------ passwords

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
                let user = self.v2_target(principal, &cmd.user_id).await?;
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
                let user = self.v2_target(principal, &cmd.user_id).await?;
                if matches!(principal.role, Role::User { .. }) {
                    return Err(Error::permission_denied());
                }
                self.admin_set_password(caller, &user, cmd.new_password, cmd.change_required)
                    .await
            }
        }
    }

    /// ZITADEL v1 `SetHumanPassword` / `SetHumanInitialPassword`: admins of the org in context.
    pub async fn set_password_v1(
        &self,
        caller: &Caller,
        org: Option<TenantId>,
        user_id: &UserId,
        new_password: SecretString,
        change_required: bool,
    ) -> Result<Details, Error> {
        let principal = caller.principal()?;
        let user = self.v1_target(principal, org, user_id).await?;
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
            self.store
                .hit_rate_limit(&RateLimitHit {
                    key: format!("code_ip:{}", self.config.limits.ip_key(ip)),
                    limit: self.config.limits.code_tries_per_ip_per_minute,
                    window_secs: 60,
                    at: now,
                })
                .await?;
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
        match self
            .store
            .reserve_code_attempt(
                &user.tenant_id,
                &user.id,
                &pending.id,
                self.config.max_code_attempts,
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
        if !self.codes.verify(
            &pending.key_id,
            &pending.mac,
            &user.tenant_id,
            &user.id,
            &code,
        ) {
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
        consume_code: Option<String>,
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
        if !user.email.is_empty() {
            let payload = MessagePayload {
                tenant_id: user.tenant_id.to_string(),
                user_id: user.id.to_string(),
                display_name: user.display_name.clone(),
                language: self.language_of(user, &settings),
                code: None,
                link: None,
                expires_at: None,
            };
            change.outbox.push(self.outbox_message(
                user,
                Channel::Email,
                MessageKind::PasswordChanged,
                &payload,
                now,
            )?);
        }
        Ok(self.store.change_user(&change).await?)
    }

    // ------------------------------------------------------------------ setup

    pub async fn add_tenant(&self, actor: &str, name: &str, cname: Cname) -> Result<Tenant, Error> {
        self.add_tenant_with_id(actor, None, name, cname).await
    }

    /// Creates a tenant, with a caller-chosen id when given.
    pub async fn add_tenant_with_id(
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
            id: id.unwrap_or_else(|| TenantId::from_trusted(self.new_id())),
            name: name.to_owned(),
            cname: cname.as_str().to_owned(),
            settings: TenantSettings::default(),
            creation_date: now,
            change_date: now,
        };
        let event = NewEvent {
            kind: "tenant.added",
            actor: actor.to_owned(),
            ip: None,
            payload: json!({ "name": tenant.name, "cname": tenant.cname }),
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
        validate_settings(&settings)?;
        let event = NewEvent {
            kind: "tenant.settings.changed",
            actor: actor.to_owned(),
            ip: None,
            payload: serde_json::to_value(&settings).map_err(|_| Error::internal())?,
        };
        Ok(self
            .store
            .update_tenant_settings(tenant, &settings, self.now(), &event)
            .await?)
    }

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
            .ok_or_else(|| Error::new(ErrorKind::NotFound, "REKEY-TnNF", "Tenant not found"))?;
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
            id: options
                .id
                .unwrap_or_else(|| UserId::from_trusted(self.new_id())),
            tenant_id: tenant.id.clone(),
            username: new
                .username
                .unwrap_or_else(|| new.email.as_str().to_owned()),
            email: new.email.as_str().to_owned(),
            email_verified: options.email_verified,
            phone: new.phone.map(|p| p.as_str().to_owned()),
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
            .ok_or_else(Error::user_not_found_v2)?;
        self.store
            .user(&tenant, user_id)
            .await?
            .ok_or_else(Error::user_not_found_v2)
    }

    /// Moves a user to another state; a deleted user stays deleted.
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
        }
        Ok(self.store.change_user(&change).await?)
    }

    /// Creates an API token (≥ 256 bits of randomness); only its SHA-256 is stored.
    pub async fn create_token(&self, role: Role) -> Result<IssuedToken, Error> {
        use base64::Engine;
        let mut bytes = [0u8; 32];
        self.rng.fill(&mut bytes);
        let secret = format!(
            "rk_{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
        );
        let token = ApiToken {
            id: self.new_id(),
            hash: token_hash(&secret),
            role,
            created_at: self.now(),
            revoked_at: None,
        };
        self.store.insert_token(&token).await?;
        Ok(IssuedToken {
            secret: SecretString::from(secret),
            token,
        })
    }
}

fn validate_settings(s: &TenantSettings) -> Result<(), Error> {
    let bad = |what: &'static str| Error::invalid("REKEY-TnSet", what);
    if let Some(len) = s.code_length {
        if !(6..=20).contains(&len) {
            return Err(bad("code.length must be between 6 and 20"));
        }
    }
    for secs in [s.code_expiry_secs, s.code_init_expiry_secs]
        .into_iter()
        .flatten()
    {
        if !(MIN_EXPIRY_SECS..=MAX_EXPIRY_SECS).contains(&secs) {
            return Err(bad("code expiry must be between 300 and 604800 seconds"));
        }
    }
    let min = s.password_min_length.unwrap_or(1);
    let max = s.password_max_length.unwrap_or(1024);
    if min == 0 || max > 1024 || min > max {
        return Err(bad("password lengths must satisfy 1 <= min <= max <= 1024"));
    }
    if s.limits_messages_per_user_per_hour == Some(0) {
        return Err(bad("limits.messages_per_user_per_hour must be at least 1"));
    }
    if let Some(template) = &s.link_template {
        UrlTemplate::parse_unbounded(template)?;
    }
    if let Some(url) = &s.ui_login_url {
        validate_login_url(url).map_err(bad)?;
    }
    if let Some(lang) = &s.language {
        if lang.is_empty() || lang.len() > 16 {
            return Err(bad("language must be a language tag such as en or de"));
        }
    }
    Ok(())
}

/// `ui.login_url`: an absolute http(s) URL with a host, shown as a link on the hosted pages.
pub fn validate_login_url(value: &str) -> Result<(), &'static str> {
    const WHAT: &str =
        "ui.login_url must be an absolute http or https URL of at most 2048 characters";
    if value.len() > 2048 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(WHAT);
    }
    match url::Url::parse(value) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty())
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            Ok(())
        }
        _ => Err(WHAT),
    }
}

#[cfg(test)]
mod limit_tests {
    use super::Limits;

    #[test]
    fn ipv6_clients_are_counted_by_their_prefix() {
        let limits = Limits::default();
        assert_eq!(limits.ip_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            limits.ip_key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            limits.ip_key("2001:db8:1:2::9")
        );
        assert_ne!(
            limits.ip_key("2001:db8:1:3::1"),
            limits.ip_key("2001:db8:1:2::1")
        );
        assert_eq!(limits.ip_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(limits.ip_key("::ffff:192.0.2.7"), "192.0.2.7");
        let whole = Limits {
            ipv6_prefix: 128,
            ..Limits::default()
        };
        assert_eq!(whole.ip_key("2001:db8::1"), "2001:db8::1/128");
        let none = Limits {
            ipv6_prefix: 0,
            ..Limits::default()
        };
        assert_eq!(none.ip_key("2001:db8::1"), "::/0");
    }
}
