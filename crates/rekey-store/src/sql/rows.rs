//! The tables' rows as sqlx reads them (`sqlx::FromRow`, one field per selected column, in the
//! portable column types), and their conversion into the domain's records, which checks what
//! the database cannot: enum names, timestamp ranges, non-negative counters, JSON, and which
//! columns a token's role requires. A row that fails these checks is `Corrupt`. The parsed
//! values (ids, email address, phone number, cname) are taken back as stored (`from_trusted`):
//! only parsed ones are ever written, and an email keeps the case the user gave it.

use rekey_core::domain::{ApiToken, Event, OutboxMessage, ResetCodeRecord, Role, Tenant, User};
use rekey_core::domain::{Cname, EmailAddress, PhoneNumber};
use rekey_core::domain::{CodeId, MessageId, TenantId, TokenId, UserId};
use rekey_core::ports::store::StoreError;

use crate::codec::{from_json, opt_time, parse, time, to_u32, to_u64};
use crate::error::corrupt;

pub(super) const TENANT_COLUMNS: &str = "id, name, cname, settings, creation_date, change_date";

/// [`TENANT_COLUMNS`] of `tenants t` joined to another table, renamed apart from its columns.
pub(super) const JOINED_TENANT_COLUMNS: &str = "t.id AS t_id, t.name AS t_name, \
    t.cname AS t_cname, t.settings AS t_settings, t.creation_date AS t_creation_date, \
    t.change_date AS t_change_date";

/// [`TOKEN_COLUMNS`] of `api_tokens k` joined to a user's row, renamed apart from its columns.
pub(super) const JOINED_TOKEN_COLUMNS: &str = "k.token_hash AS k_token_hash, k.id AS k_id, \
    k.role AS k_role, k.tenant_id AS k_tenant_id, k.user_id AS k_user_id, \
    k.created_at AS k_created_at, k.revoked_at AS k_revoked_at, k.expires_at AS k_expires_at, \
    k.last_used_at AS k_last_used_at";

pub(super) const USER_COLUMNS: &str = "tenant_id, id, username, email, email_verified, phone, \
    phone_verified, first_name, last_name, display_name, preferred_language, state, \
    password_hash, password_change_required, sequence, creation_date, change_date";

/// [`USER_COLUMNS`] of `users u` in a join, under their own names.
pub(super) static JOINED_USER_COLUMNS: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        USER_COLUMNS
            .split(',')
            .map(|c| format!("u.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    });

pub(super) const TOKEN_COLUMNS: &str =
    "token_hash, id, role, tenant_id, user_id, created_at, revoked_at, expires_at, last_used_at";

pub(super) const CODE_COLUMNS: &str =
    "tenant_id, user_id, id, key_id, mac, kind, created_at, expires_at, attempts, used_at";

pub(super) const EVENT_COLUMNS: &str =
    "tenant_id, aggregate_id, sequence, kind, actor, ip, at, payload";

pub(super) const OUTBOX_COLUMNS: &str = "tenant_id, id, user_id, channel, recipient, kind, \
    idempotency_key, key_id, body, state, attempts, next_attempt_at, last_error, created_at, \
    sent_at, body_expires_at, request_id";

/// [`TENANT_COLUMNS`] of `tenants`.
#[derive(sqlx::FromRow)]
pub struct TenantRow {
    id: String,
    name: String,
    cname: String,
    settings: String,
    creation_date: i64,
    change_date: i64,
}

/// [`JOINED_TENANT_COLUMNS`]: a [`TenantRow`] read beside another table's columns.
#[derive(sqlx::FromRow)]
pub struct JoinedTenantRow {
    t_id: String,
    t_name: String,
    t_cname: String,
    t_settings: String,
    t_creation_date: i64,
    t_change_date: i64,
}

impl TryFrom<JoinedTenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: JoinedTenantRow) -> Result<Self, StoreError> {
        Tenant::try_from(TenantRow {
            id: row.t_id,
            name: row.t_name,
            cname: row.t_cname,
            settings: row.t_settings,
            creation_date: row.t_creation_date,
            change_date: row.t_change_date,
        })
    }
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: TenantId::from_trusted(row.id),
            name: row.name,
            cname: Cname::from_trusted(row.cname),
            settings: from_json("tenants.settings", &row.settings)?,
            creation_date: time("creation_date", row.creation_date)?,
            change_date: time("change_date", row.change_date)?,
        })
    }
}

/// [`USER_COLUMNS`] of `users`.
#[derive(sqlx::FromRow)]
pub struct UserRow {
    tenant_id: String,
    id: String,
    username: String,
    email: String,
    email_verified: bool,
    phone: Option<String>,
    phone_verified: bool,
    first_name: String,
    last_name: String,
    display_name: String,
    preferred_language: String,
    state: String,
    password_hash: Option<String>,
    password_change_required: bool,
    sequence: i64,
    creation_date: i64,
    change_date: i64,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;

    fn try_from(row: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            id: UserId::from_trusted(row.id),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            username: row.username,
            email: EmailAddress::from_trusted(row.email),
            email_verified: row.email_verified,
            phone: row.phone.map(PhoneNumber::from_trusted),
            phone_verified: row.phone_verified,
            first_name: row.first_name,
            last_name: row.last_name,
            display_name: row.display_name,
            preferred_language: row.preferred_language,
            state: parse("users.state", &row.state)?,
            password_hash: row.password_hash,
            password_change_required: row.password_change_required,
            sequence: to_u64("users.sequence", row.sequence)?,
            creation_date: time("users.creation_date", row.creation_date)?,
            change_date: time("users.change_date", row.change_date)?,
        })
    }
}

/// [`TOKEN_COLUMNS`] of `api_tokens`.
#[derive(sqlx::FromRow)]
pub struct TokenRow {
    token_hash: Vec<u8>,
    id: String,
    role: String,
    tenant_id: Option<String>,
    user_id: Option<String>,
    created_at: i64,
    revoked_at: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
}

/// [`JOINED_TOKEN_COLUMNS`]: a [`TokenRow`] read beside a user's columns.
#[derive(sqlx::FromRow)]
pub struct JoinedTokenRow {
    k_token_hash: Vec<u8>,
    k_id: String,
    k_role: String,
    k_tenant_id: Option<String>,
    k_user_id: Option<String>,
    k_created_at: i64,
    k_revoked_at: Option<i64>,
    k_expires_at: Option<i64>,
    k_last_used_at: Option<i64>,
}

impl TryFrom<JoinedTokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: JoinedTokenRow) -> Result<Self, StoreError> {
        ApiToken::try_from(TokenRow {
            token_hash: row.k_token_hash,
            id: row.k_id,
            role: row.k_role,
            tenant_id: row.k_tenant_id,
            user_id: row.k_user_id,
            created_at: row.k_created_at,
            revoked_at: row.k_revoked_at,
            expires_at: row.k_expires_at,
            last_used_at: row.k_last_used_at,
        })
    }
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        let role = match (row.role.as_str(), row.tenant_id, row.user_id) {
            ("system", None, None) => Role::System,
            ("tenant_admin", Some(tenant), None) => {
                Role::TenantAdmin(TenantId::from_trusted(tenant))
            }
            ("user", Some(tenant), Some(user)) => Role::User {
                tenant_id: TenantId::from_trusted(tenant),
                user_id: UserId::from_trusted(user),
            },
            (other, ..) => return Err(corrupt(format!("api_tokens.role: {other:?} inconsistent"))),
        };
        Ok(ApiToken {
            id: TokenId::from_trusted(row.id),
            hash: row
                .token_hash
                .try_into()
                .map_err(|_| corrupt("api_tokens.token_hash: not 32 bytes"))?,
            role,
            created_at: time("api_tokens.created_at", row.created_at)?,
            revoked_at: opt_time("api_tokens.revoked_at", row.revoked_at)?,
            expires_at: opt_time("api_tokens.expires_at", row.expires_at)?,
            last_used_at: opt_time("api_tokens.last_used_at", row.last_used_at)?,
        })
    }
}

/// [`CODE_COLUMNS`] of `reset_codes`.
#[derive(sqlx::FromRow)]
pub struct CodeRow {
    tenant_id: String,
    user_id: String,
    id: String,
    key_id: String,
    mac: Vec<u8>,
    kind: String,
    created_at: i64,
    expires_at: i64,
    attempts: i64,
    used_at: Option<i64>,
}

impl TryFrom<CodeRow> for ResetCodeRecord {
    type Error = StoreError;

    fn try_from(row: CodeRow) -> Result<Self, StoreError> {
        Ok(ResetCodeRecord {
            id: CodeId::from_trusted(row.id),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            user_id: UserId::from_trusted(row.user_id),
            key_id: row.key_id,
            mac: row.mac,
            kind: parse("reset_codes.kind", &row.kind)?,
            created_at: time("reset_codes.created_at", row.created_at)?,
            expires_at: time("reset_codes.expires_at", row.expires_at)?,
            attempts: to_u32("reset_codes.attempts", row.attempts)?,
            used_at: opt_time("reset_codes.used_at", row.used_at)?,
        })
    }
}

/// [`EVENT_COLUMNS`] of `events`.
#[derive(sqlx::FromRow)]
pub struct EventRow {
    tenant_id: String,
    aggregate_id: String,
    sequence: i64,
    kind: String,
    actor: String,
    ip: Option<String>,
    at: i64,
    payload: String,
}

impl TryFrom<EventRow> for Event {
    type Error = StoreError;

    fn try_from(row: EventRow) -> Result<Self, StoreError> {
        Ok(Event {
            tenant_id: TenantId::from_trusted(row.tenant_id),
            aggregate_id: row.aggregate_id,
            sequence: to_u64("events.sequence", row.sequence)?,
            kind: row.kind,
            actor: row.actor,
            ip: row.ip,
            at: time("events.at", row.at)?,
            payload: from_json("events.payload", &row.payload)?,
        })
    }
}

/// [`OUTBOX_COLUMNS`] of `outbox`.
#[derive(sqlx::FromRow)]
pub struct OutboxRow {
    tenant_id: String,
    id: String,
    user_id: String,
    channel: String,
    recipient: Option<String>,
    kind: String,
    idempotency_key: String,
    key_id: String,
    body: Vec<u8>,
    state: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
    body_expires_at: Option<i64>,
    request_id: Option<String>,
}

impl TryFrom<OutboxRow> for OutboxMessage {
    type Error = StoreError;

    fn try_from(row: OutboxRow) -> Result<Self, StoreError> {
        Ok(OutboxMessage {
            id: MessageId::from_trusted(row.id),
            tenant_id: TenantId::from_trusted(row.tenant_id),
            user_id: UserId::from_trusted(row.user_id),
            channel: parse("outbox.channel", &row.channel)?,
            recipient: row.recipient,
            kind: parse("outbox.kind", &row.kind)?,
            idempotency_key: row.idempotency_key,
            key_id: row.key_id,
            body: row.body,
            state: parse("outbox.state", &row.state)?,
            attempts: to_u32("outbox.attempts", row.attempts)?,
            next_attempt_at: time("outbox.next_attempt_at", row.next_attempt_at)?,
            last_error: row.last_error,
            created_at: time("outbox.created_at", row.created_at)?,
            sent_at: opt_time("outbox.sent_at", row.sent_at)?,
            body_expires_at: opt_time("outbox.body_expires_at", row.body_expires_at)?,
            request_id: row.request_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(email: &str, phone: Option<&str>) -> UserRow {
        UserRow {
            tenant_id: "t1".to_owned(),
            id: "u1".to_owned(),
            username: "ada".to_owned(),
            email: email.to_owned(),
            email_verified: true,
            phone: phone.map(str::to_owned),
            phone_verified: false,
            first_name: "Ada".to_owned(),
            last_name: "Lovelace".to_owned(),
            display_name: "Ada Lovelace".to_owned(),
            preferred_language: "en".to_owned(),
            state: "active".to_owned(),
            password_hash: None,
            password_change_required: false,
            sequence: 1,
            creation_date: 0,
            change_date: 0,
        }
    }

    #[test]
    fn a_user_read_back_keeps_the_case_of_its_email() {
        let user = User::try_from(row("Ada.Lovelace@Example.COM", Some("+41791234567"))).unwrap();
        assert_eq!(user.email.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(
            user.phone.as_ref().map(|p| p.as_str()),
            Some("+41791234567")
        );
        assert!(User::try_from(row("a@b.org", None))
            .unwrap()
            .phone
            .is_none());
    }

    #[test]
    fn a_tenant_read_back_keeps_its_cname() {
        let tenant = Tenant::try_from(TenantRow {
            id: "t1".to_owned(),
            name: "Acme".to_owned(),
            cname: "Acme.Example".to_owned(),
            settings: "{}".to_owned(),
            creation_date: 0,
            change_date: 0,
        })
        .unwrap();
        assert_eq!(tenant.cname.as_str(), "Acme.Example");
    }
}
