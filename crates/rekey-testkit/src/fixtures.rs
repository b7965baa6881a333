//! Builders for the records tests write over and over: a tenant, "Ada" the user, an outbox
//! message for her and the audit event that goes with every write.
//!
//! Every builder starts from one sensible default and lets a test override only the fields it
//! cares about, so a new record field is added here once instead of in every test. The setters
//! take plain strings (`.email("ada@example.com")`) on purpose: when a field's type becomes
//! stricter (a typed id, a checked address) only the builder's body changes, not its callers.

use chrono::{DateTime, TimeZone, Utc};
use rekey_core::domain::{
    Channel, Cname, CodeId, EmailAddress, MessageId, MessageKind, MessagePayload, NewEvent,
    OutboxMessage, OutboxState, PhoneNumber, Tenant, TenantId, TenantSettings, User, UserId,
    UserState,
};

/// The instant every builder uses unless told otherwise.
pub fn epoch() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn tenant_id(id: &str) -> TenantId {
    TenantId::parse(id).unwrap_or_else(|e| panic!("test tenant id {id:?}: {e}"))
}

fn user_id(id: &str) -> UserId {
    UserId::parse(id).unwrap_or_else(|e| panic!("test user id {id:?}: {e}"))
}

fn cname(raw: &str) -> Cname {
    Cname::parse(raw).unwrap_or_else(|e| panic!("test cname {raw:?}: {e}"))
}

fn email(raw: &str) -> EmailAddress {
    EmailAddress::parse(raw).unwrap_or_else(|e| panic!("test email {raw:?}: {e}"))
}

fn phone(raw: &str) -> PhoneNumber {
    PhoneNumber::parse(raw).unwrap_or_else(|e| panic!("test phone {raw:?}: {e}"))
}

/// An outbox message id for a test (`"m1"`); panics on one the API would refuse.
pub fn message_id(id: &str) -> MessageId {
    MessageId::parse(id).unwrap_or_else(|e| panic!("test message id {id:?}: {e}"))
}

/// A reset code id for a test (`"c1"`); panics on one the API would refuse.
pub fn code_id(id: &str) -> CodeId {
    CodeId::parse(id).unwrap_or_else(|e| panic!("test code id {id:?}: {e}"))
}

// --- tenant ------------------------------------------------------------------------------

/// A tenant: `t1`, named "T1", cname `t1.example`, default settings, created at [`epoch`].
pub fn tenant(id: &str) -> TenantBuilder {
    TenantBuilder(Tenant {
        id: tenant_id(id),
        name: id.to_uppercase(),
        cname: cname(&format!("{id}.example")),
        settings: TenantSettings::default(),
        creation_date: epoch(),
        change_date: epoch(),
    })
}

#[derive(Debug, Clone)]
pub struct TenantBuilder(Tenant);

impl TenantBuilder {
    pub fn name(mut self, name: &str) -> Self {
        self.0.name = name.to_owned();
        self
    }

    pub fn cname(mut self, cname: &str) -> Self {
        self.0.cname = self::cname(cname);
        self
    }

    pub fn settings(mut self, settings: TenantSettings) -> Self {
        self.0.settings = settings;
        self
    }

    /// Creation and change date.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.0.creation_date = at;
        self.0.change_date = at;
        self
    }

    pub fn build(self) -> Tenant {
        self.0
    }
}

// --- user --------------------------------------------------------------------------------

/// Ada Lovelace: user `u1` of tenant `t1`, username `ada`, `ada@example.com` (verified), no
/// phone, English, active, no password, sequence 1, created at [`epoch`].
pub fn user() -> UserBuilder {
    UserBuilder(User {
        id: user_id("u1"),
        tenant_id: tenant_id("t1"),
        username: "ada".to_owned(),
        email: email("ada@example.com"),
        email_verified: true,
        phone: None,
        phone_verified: false,
        first_name: "Ada".to_owned(),
        last_name: "Lovelace".to_owned(),
        display_name: "Ada Lovelace".to_owned(),
        preferred_language: "en".to_owned(),
        state: UserState::Active,
        password_hash: None,
        password_change_required: false,
        sequence: 1,
        creation_date: epoch(),
        change_date: epoch(),
    })
}

/// No `Debug`: `User` keeps its password hash out of debug output.
#[derive(Clone)]
pub struct UserBuilder(User);

impl UserBuilder {
    pub fn id(mut self, id: &str) -> Self {
        self.0.id = user_id(id);
        self
    }

    pub fn tenant(mut self, tenant: &str) -> Self {
        self.0.tenant_id = tenant_id(tenant);
        self
    }

    pub fn username(mut self, username: &str) -> Self {
        self.0.username = username.to_owned();
        self
    }

    pub fn email(mut self, email: &str) -> Self {
        self.0.email = self::email(email);
        self
    }

    pub fn email_verified(mut self, verified: bool) -> Self {
        self.0.email_verified = verified;
        self
    }

    /// A phone number and whether it is verified.
    pub fn phone(mut self, phone: &str, verified: bool) -> Self {
        self.0.phone = Some(self::phone(phone));
        self.0.phone_verified = verified;
        self
    }

    pub fn language(mut self, language: &str) -> Self {
        self.0.preferred_language = language.to_owned();
        self
    }

    pub fn state(mut self, state: UserState) -> Self {
        self.0.state = state;
        self
    }

    pub fn password_hash(mut self, hash: &str) -> Self {
        self.0.password_hash = Some(hash.to_owned());
        self
    }

    /// Creation and change date.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.0.creation_date = at;
        self.0.change_date = at;
        self
    }

    pub fn build(self) -> User {
        self.0
    }
}

// --- outbox ------------------------------------------------------------------------------

/// A pending email reset message `id` for Ada (`t1`/`u1`, `ada@example.com`), idempotency key
/// `<id>.t1`, sealed with key `o1` (empty body), no attempts yet, created and due at [`epoch`].
pub fn message(id: &str) -> MessageBuilder {
    MessageBuilder(OutboxMessage {
        id: message_id(id),
        tenant_id: tenant_id("t1"),
        user_id: user_id("u1"),
        channel: Channel::Email,
        recipient: Some("ada@example.com".to_owned()),
        kind: MessageKind::PasswordReset,
        idempotency_key: format!("{id}.t1"),
        key_id: "o1".to_owned(),
        body: Vec::new(),
        state: OutboxState::Pending,
        attempts: 0,
        next_attempt_at: epoch(),
        last_error: None,
        created_at: epoch(),
        sent_at: None,
        body_expires_at: None,
        request_id: None,
    })
}

#[derive(Debug, Clone)]
pub struct MessageBuilder(OutboxMessage);

impl MessageBuilder {
    /// Tenant and user the message is for.
    pub fn to(mut self, tenant: &str, user: &str) -> Self {
        self.0.tenant_id = tenant_id(tenant);
        self.0.user_id = user_id(user);
        self
    }

    /// Channel and recipient.
    pub fn channel(mut self, channel: Channel, recipient: &str) -> Self {
        self.0.channel = channel;
        self.0.recipient = Some(recipient.to_owned());
        self
    }

    pub fn idempotency_key(mut self, key: &str) -> Self {
        self.0.idempotency_key = key.to_owned();
        self
    }

    /// The sealed body and the key it was sealed with.
    pub fn sealed(mut self, key_id: &str, body: Vec<u8>) -> Self {
        self.0.key_id = key_id.to_owned();
        self.0.body = body;
        self
    }

    pub fn state(mut self, state: OutboxState) -> Self {
        self.0.state = state;
        self
    }

    pub fn attempts(mut self, attempts: u32) -> Self {
        self.0.attempts = attempts;
        self
    }

    /// Creation time, also when the message is first due.
    pub fn at(mut self, at: DateTime<Utc>) -> Self {
        self.0.created_at = at;
        self.0.next_attempt_at = at;
        self
    }

    pub fn body_expires_at(mut self, at: Option<DateTime<Utc>>) -> Self {
        self.0.body_expires_at = at;
        self
    }

    /// The id of the request that queued it.
    pub fn request_id(mut self, id: &str) -> Self {
        self.0.request_id = Some(id.to_owned());
        self
    }

    pub fn build(self) -> OutboxMessage {
        self.0
    }
}

/// What the core seals into a reset message for Ada (`t1`/`u1`, English), with `code` and
/// `link` and no expiry; chain struct-update syntax for the rest.
pub fn reset_payload(code: Option<&str>, link: Option<&str>) -> MessagePayload {
    MessagePayload {
        tenant_id: tenant_id("t1"),
        user_id: user_id("u1"),
        display_name: "Ada Lovelace".to_owned(),
        language: "en".to_owned(),
        code: code.map(str::to_owned),
        link: link.map(str::to_owned),
        expires_at: None,
    }
}

// --- audit event -------------------------------------------------------------------------

/// The audit event of a write: `kind` by actor `test`, no IP, an empty JSON payload.
pub fn event(kind: &'static str) -> EventBuilder {
    EventBuilder(NewEvent {
        kind,
        actor: "test".to_owned(),
        ip: None,
        payload: serde_json::json!({}),
    })
}

#[derive(Debug, Clone)]
pub struct EventBuilder(NewEvent);

impl EventBuilder {
    pub fn actor(mut self, actor: &str) -> Self {
        self.0.actor = actor.to_owned();
        self
    }

    pub fn ip(mut self, ip: &str) -> Self {
        self.0.ip = Some(ip.to_owned());
        self
    }

    pub fn payload(mut self, payload: serde_json::Value) -> Self {
        self.0.payload = payload;
        self
    }

    pub fn build(self) -> NewEvent {
        self.0
    }
}
