//! Events for the configured webhooks (SPEC §10, §12): what happened to which user, when, by
//! which kind of principal and from which address — never a secret (no code, password, hash,
//! token, link or email address), so a receiver (the identity platform in front) can end
//! sessions after a password change without learning anything it could use.
//!
//! A flow queues one outbox row per configured URL in the transaction of the change; the row's
//! sealed body is the event's JSON, which the worker posts as it is, signed.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::sealer::Sealer;
use crate::domain::ids::{MessageId, TenantId, UserId};
use crate::domain::token::{Principal, Role};
use crate::error::Error;
use crate::ports::random::Random;

text_enum! {
    /// The `type` of an event.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    pub enum EventType ("event type") {
        /// Every successful password change (code, current password, admin, v1, initial).
        #[serde(rename = "user.password.changed")]
        PasswordChanged => "user.password.changed",
        /// Every reset code issued (sent or returned to an admin).
        #[serde(rename = "user.password.reset_requested")]
        ResetRequested => "user.password.reset_requested",
        /// A code killed by its last allowed wrong try.
        #[serde(rename = "user.code.locked")]
        CodeLocked => "user.code.locked",
    }
}

text_enum! {
    /// Who caused an event: the role of the calling token, `code` for the holder of a reset
    /// code on the unauthenticated path, `anonymous` for an unauthenticated reset request.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum EventPrincipal ("event principal") {
        System => "system",
        TenantAdmin => "tenant_admin",
        User => "user",
        Code => "code",
        Anonymous => "anonymous",
    }
}

impl EventPrincipal {
    /// The kind of an authenticated principal, or `anonymous` for none.
    pub fn of(principal: Option<&Principal>) -> Self {
        match principal.map(|p| &p.role) {
            Some(Role::System) => Self::System,
            Some(Role::TenantAdmin(_)) => Self::TenantAdmin,
            Some(Role::User { .. }) => Self::User,
            None => Self::Anonymous,
        }
    }
}

/// The body of one webhook request, exactly as sent (field order included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEvent {
    /// The event's id: the same in the request to every URL, and stable across retries
    /// (also sent as `X-Rekey-Event-Id`), so a receiver can drop duplicates.
    pub id: MessageId,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub at: DateTime<Utc>,
    pub principal: EventPrincipal,
    pub ip: Option<String>,
}

impl WebhookEvent {
    /// The JSON body.
    pub fn to_json(&self) -> Result<Vec<u8>, Error> {
        serde_json::to_vec(self).map_err(|_| Error::internal())
    }

    /// Seals the body for the outbox row `message_id`: `(key_id, body)`.
    pub fn seal(
        &self,
        sealer: &Sealer,
        rng: &dyn Random,
        message_id: &MessageId,
    ) -> Result<(String, Vec<u8>), Error> {
        sealer.seal(rng, message_id.as_str().as_bytes(), &self.to_json()?)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn the_body_has_the_documented_form() {
        let event = WebhookEvent {
            id: MessageId::parse("300").unwrap(),
            kind: EventType::PasswordChanged,
            tenant_id: TenantId::parse("100").unwrap(),
            user_id: UserId::parse("200").unwrap(),
            at: Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap(),
            principal: EventPrincipal::Code,
            ip: None,
        };
        assert_eq!(
            String::from_utf8(event.to_json().unwrap()).unwrap(),
            r#"{"id":"300","type":"user.password.changed","tenant_id":"100","user_id":"200","at":"2026-03-01T12:00:00Z","principal":"code","ip":null}"#
        );
        for kind in [
            EventType::PasswordChanged,
            EventType::ResetRequested,
            EventType::CodeLocked,
        ] {
            assert_eq!(serde_json::to_value(kind).unwrap(), kind.as_str());
        }
        assert_eq!(
            serde_json::to_value(EventPrincipal::TenantAdmin).unwrap(),
            "tenant_admin"
        );
    }
}
