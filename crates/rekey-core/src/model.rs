//! The records the flows work on and the store keeps.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{TenantId, UserId};

/// A tenant (= ZITADEL organization, = F5 tenant).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub id: TenantId,
    pub name: String,
    pub cname: String,
    pub settings: TenantSettings,
    pub creation_date: DateTime<Utc>,
    pub change_date: DateTime<Utc>,
}

/// Which generator a tenant's codes come from (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeAlphabet {
    /// `ABCDEFGHJKMNPQRSTUVWXYZ23456789`, no look-alikes.
    Rekey,
    /// ZITADEL's generator: A–Z and 0–9.
    Zitadel,
}

/// Per-tenant settings; `None` means "use the instance default".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TenantSettings {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_alphabet: Option<CodeAlphabet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_expiry_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code_init_expiry_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_min_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_max_length: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_lower: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_upper: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_digit: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_require_symbol: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits_messages_per_user_per_hour: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link_template: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Where the hosted pages send a person after a successful change (`ui.login_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ui_login_url: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserState {
    /// Onboarded, no password yet.
    Initial,
    Active,
    Inactive,
    Locked,
    Deleted,
}

impl UserState {
    pub fn as_str(self) -> &'static str {
        match self {
            UserState::Initial => "initial",
            UserState::Active => "active",
            UserState::Inactive => "inactive",
            UserState::Locked => "locked",
            UserState::Deleted => "deleted",
        }
    }
}

impl fmt::Display for UserState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for UserState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "initial" => Ok(UserState::Initial),
            "active" => Ok(UserState::Active),
            "inactive" => Ok(UserState::Inactive),
            "locked" => Ok(UserState::Locked),
            "deleted" => Ok(UserState::Deleted),
            other => Err(format!("unknown user state {other:?}")),
        }
    }
}

/// A human user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub username: String,
    /// As given; compared case-insensitively (the store keeps a lower-cased copy).
    pub email: String,
    pub email_verified: bool,
    pub phone: Option<String>,
    pub phone_verified: bool,
    pub first_name: String,
    pub last_name: String,
    pub display_name: String,
    pub preferred_language: String,
    pub state: UserState,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    pub password_change_required: bool,
    pub sequence: u64,
    pub creation_date: DateTime<Utc>,
    pub change_date: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("state", &self.state)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Instance-wide (= ZITADEL IAM_OWNER).
    System,
    /// Admin of one tenant (= ORG_OWNER, = F5 tenant admin).
    TenantAdmin(TenantId),
    /// A user acting on themself.
    User {
        tenant_id: TenantId,
        user_id: UserId,
    },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::TenantAdmin(_) => "tenant_admin",
            Role::User { .. } => "user",
        }
    }
}

/// An API token as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: String,
    pub hash: [u8; 32],
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: String,
    pub role: Role,
}

impl Principal {
    /// How the principal appears in the audit trail.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }
}

/// ZITADEL's object details of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub sequence: u64,
    pub change_date: DateTime<Utc>,
    pub resource_owner: TenantId,
    /// Only for operations that create something.
    pub creation_date: Option<DateTime<Utc>>,
}

/// An entry of the append-only event log (the audit trail). Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub tenant_id: TenantId,
    /// The user or tenant the event belongs to.
    pub aggregate_id: String,
    pub sequence: u64,
    pub kind: String,
    pub actor: String,
    pub ip: Option<String>,
    pub at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

/// The parts of an event the flow chooses; the store assigns aggregate and sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: &'static str,
    pub actor: String,
    pub ip: Option<String>,
    pub payload: serde_json::Value,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodeKind {
    /// A reset of an existing password.
    Reset,
    /// Onboarding: the first password of an `initial` user (longer expiry).
    Init,
}

impl CodeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CodeKind::Reset => "reset",
            CodeKind::Init => "init",
        }
    }
}

impl FromStr for CodeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reset" => Ok(CodeKind::Reset),
            "init" => Ok(CodeKind::Init),
            other => Err(format!("unknown code kind {other:?}")),
        }
    }
}

/// A reset code as stored: only its keyed MAC, never the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetCodeRecord {
    pub id: String,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub key_id: String,
    pub mac: Vec<u8>,
    pub kind: CodeKind,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub attempts: u32,
    pub used_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    Email,
    Sms,
}

impl Channel {
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Sms => "sms",
        }
    }
}

impl FromStr for Channel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "email" => Ok(Channel::Email),
            "sms" => Ok(Channel::Sms),
            other => Err(format!("unknown channel {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    PasswordReset,
    PasswordInit,
    PasswordChanged,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::PasswordReset => "password_reset",
            MessageKind::PasswordInit => "password_init",
            MessageKind::PasswordChanged => "password_changed",
        }
    }
}

impl FromStr for MessageKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "password_reset" => Ok(MessageKind::PasswordReset),
            "password_init" => Ok(MessageKind::PasswordInit),
            "password_changed" => Ok(MessageKind::PasswordChanged),
            other => Err(format!("unknown message kind {other:?}")),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutboxState {
    Pending,
    Sent,
    Failed,
}

impl OutboxState {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Sent => "sent",
            OutboxState::Failed => "failed",
        }
    }
}

impl FromStr for OutboxState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(OutboxState::Pending),
            "sent" => Ok(OutboxState::Sent),
            "failed" => Ok(OutboxState::Failed),
            other => Err(format!("unknown outbox state {other:?}")),
        }
    }
}

/// A message waiting for (or done with) delivery. The body is sealed (AEAD) because it may
/// hold a code; it is erased after delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: String,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub channel: Channel,
    /// Email address or phone number; `None` when the user has none (parked as failed).
    pub recipient: Option<String>,
    pub kind: MessageKind,
    /// Stable across retries; becomes the email `Message-ID`.
    pub idempotency_key: String,
    /// Key id of the AEAD key that sealed `body`.
    pub key_id: String,
    /// nonce ‖ ciphertext; empty once delivered.
    pub body: Vec<u8>,
    pub state: OutboxState,
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    /// When the code sealed in `body` expires (`None`: the body holds no code, or is erased).
    /// A message parked as failed loses its body then: nothing in it could still be used.
    pub body_expires_at: Option<DateTime<Utc>>,
}
