//! Outbox messages: what a flow queues in its transaction and the delivery worker sends. The
//! payload is sealed before it is stored because it may hold a code; the worker opens it,
//! renders and sends, then erases it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::crypto::sealer::Sealer;
use crate::domain::ids::{MessageId, TenantId, UserId};
use crate::domain::phone_number::PhoneNumber;
use crate::domain::user::User;
use crate::domain::webhook_event::WebhookEvent;
use crate::error::Error;
use crate::ports::random::Random;

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Channel ("channel") {
        Email => "email",
        Sms => "sms",
        /// An event webhook (SPEC §12); the recipient is the receiver's URL.
        Webhook => "webhook",
    }
}

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum MessageKind ("message kind") {
        PasswordReset => "password_reset",
        PasswordInit => "password_init",
        PasswordChanged => "password_changed",
        /// A signed event for a webhook ([`crate::domain::WebhookEvent`]).
        Event => "event",
    }
}

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum OutboxState ("outbox state") {
        Pending => "pending",
        Sent => "sent",
        Failed => "failed",
    }
}

/// A message waiting for (or done with) delivery. The body is sealed (AEAD) because it may
/// hold a code; it is erased after delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxMessage {
    pub id: MessageId,
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
    /// The id of the request that queued the message (`x-request-id`), so the worker's lines
    /// for it can be found with the request's; `None` for messages from the CLI or older rows.
    /// An opaque, non-secret tag.
    pub request_id: Option<String>,
}

/// Why a message was parked at once: the user has no address on its channel.
const NO_EMAIL: &str = "no email";
const NO_PHONE: &str = "no phone";
const NO_URL: &str = "no webhook url";

impl OutboxMessage {
    /// The message of `kind` to `user` on `channel`, with `sealed` = `payload` sealed for `id`
    /// ([`MessagePayload::seal`]): pending when the user has an address on the channel,
    /// otherwise parked as failed at once.
    pub fn for_user(
        id: MessageId,
        user: &User,
        channel: Channel,
        kind: MessageKind,
        payload: &MessagePayload,
        sealed: (String, Vec<u8>),
        now: DateTime<Utc>,
    ) -> Self {
        let (key_id, body) = sealed;
        // An address read back from the store is trusted, not checked again: an empty one
        // still counts as none.
        let recipient = match channel {
            Channel::Email => Some(user.email.as_str()).filter(|e| !e.is_empty()),
            Channel::Sms => user.phone.as_ref().map(PhoneNumber::as_str),
            // Events are queued with [`OutboxMessage::event`], never for a user's address.
            Channel::Webhook => None,
        }
        .map(str::to_owned);
        // A user without the address is not an error for the caller (as in ZITADEL); the
        // message is parked as failed so admins can see it.
        let (state, last_error) = match (&recipient, channel) {
            (Some(_), _) => (OutboxState::Pending, None),
            (None, Channel::Email) => (OutboxState::Failed, Some(NO_EMAIL.to_owned())),
            (None, Channel::Sms) => (OutboxState::Failed, Some(NO_PHONE.to_owned())),
            (None, Channel::Webhook) => (OutboxState::Failed, Some(NO_URL.to_owned())),
        };
        // A message that can never be sent keeps no secret: parked without its body, it is
        // re-issued with a fresh code once the user has the address (retry).
        let (body, body_expires_at) = if recipient.is_some() {
            (body, payload.code.as_ref().and(payload.expires_at))
        } else {
            (Vec::new(), None)
        };
        OutboxMessage {
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
            request_id: None,
        }
    }

    /// The message tagged with the id of the request that queues it.
    pub fn with_request_id(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }
}

impl OutboxMessage {
    /// The event `event` for the webhook receiver at `url`, sealed as `sealed`
    /// ([`WebhookEvent::seal`] for `id`): one row per configured URL, each with its own id
    /// and retries. The body holds no code, so it has no expiry.
    pub fn event(
        id: MessageId,
        event: &WebhookEvent,
        url: &str,
        sealed: (String, Vec<u8>),
        now: DateTime<Utc>,
    ) -> Self {
        let (key_id, body) = sealed;
        OutboxMessage {
            idempotency_key: format!("{id}.{}", event.tenant_id),
            id,
            tenant_id: event.tenant_id.clone(),
            user_id: event.user_id.clone(),
            channel: Channel::Webhook,
            recipient: Some(url.to_owned()),
            kind: MessageKind::Event,
            key_id,
            body,
            state: OutboxState::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            created_at: now,
            sent_at: None,
            body_expires_at: None,
            request_id: None,
        }
    }
}

/// The sealed content of an outbox message.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessagePayload {
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub display_name: String,
    pub language: String,
    /// The code, for messages that carry one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The rendered reset link, for messages that carry one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for MessagePayload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessagePayload")
            .field("tenant_id", &self.tenant_id)
            .field("user_id", &self.user_id)
            .finish_non_exhaustive()
    }
}

impl MessagePayload {
    /// Seals the payload for the message with this id: `(key_id, body)`.
    pub fn seal(
        &self,
        sealer: &Sealer,
        rng: &dyn Random,
        message_id: &MessageId,
    ) -> Result<(String, Vec<u8>), Error> {
        let plain = serde_json::to_vec(self).map_err(|_| Error::internal())?;
        sealer.seal(rng, message_id.as_str().as_bytes(), &plain)
    }

    pub fn open(sealer: &Sealer, message: &OutboxMessage) -> Result<Self, Error> {
        let plain = sealer.open(
            &message.key_id,
            message.id.as_str().as_bytes(),
            &message.body,
        )?;
        serde_json::from_slice(&plain).map_err(|_| Error::internal())
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    /// The sealed body is this JSON: typed ids must keep it byte for byte, so messages sealed
    /// by an older version (plain string ids) still open.
    #[test]
    fn the_payload_json_keeps_its_form() {
        let payload = MessagePayload {
            tenant_id: TenantId::parse("100").unwrap(),
            user_id: UserId::parse("200").unwrap(),
            display_name: "Ada Lovelace".to_owned(),
            language: "en".to_owned(),
            code: Some("ABCD2345".to_owned()),
            link: None,
            expires_at: Some(Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()),
        };
        let old = r#"{"tenant_id":"100","user_id":"200","display_name":"Ada Lovelace","language":"en","code":"ABCD2345","expires_at":"2026-03-01T12:00:00Z"}"#;
        assert_eq!(serde_json::to_string(&payload).unwrap(), old);
        assert_eq!(
            serde_json::from_str::<MessagePayload>(old).unwrap(),
            payload
        );
    }
}
