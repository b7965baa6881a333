//! rekey-notify against real servers on loopback: an SMTP server (aiosmtpd, see `sink`), and
//! HTTP receivers for the SMS webhook and Twilio (axum, inside the test).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod email;
#[path = "../fixtures/outbox.rs"]
mod outbox_fixture;
mod sink;
mod sms;
mod worker;

use chrono::{DateTime, TimeZone, Utc};
use rekey_core::domain::MessagePayload;
use rekey_core::domain::{Channel, MessageKind, OutboxMessage, OutboxState};
use rekey_core::domain::{TenantId, UserId};
use rekey_notify::{Rendered, Templates};

pub const CODE: &str = "QX7KM2PA";
pub const LINK: &str = "https://id.example.com/ui/password/reset?userID=u1&code=QX7KM2PA&orgID=t1";

pub fn at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
}

/// A reset message for Ada, as the worker would hand it to a transport.
pub struct Fixture {
    pub message: OutboxMessage,
    pub payload: MessagePayload,
    pub rendered: Rendered,
}

impl Fixture {
    pub fn new(id: &str, channel: Channel, recipient: &str) -> Self {
        let payload = MessagePayload {
            tenant_id: "t1".to_owned(),
            user_id: "u1".to_owned(),
            display_name: "Ada Lovelace".to_owned(),
            language: "en".to_owned(),
            code: Some(CODE.to_owned()),
            link: Some(LINK.to_owned()),
            expires_at: Some(at() + chrono::Duration::hours(1)),
        };
        let rendered = Templates::builtin()
            .unwrap()
            .render(MessageKind::PasswordReset, &payload, at())
            .unwrap();
        let message = OutboxMessage {
            id: id.to_owned(),
            tenant_id: TenantId::parse("t1").unwrap(),
            user_id: UserId::parse("u1").unwrap(),
            channel,
            recipient: Some(recipient.to_owned()),
            kind: MessageKind::PasswordReset,
            idempotency_key: format!("{id}.t1"),
            key_id: "o1".to_owned(),
            body: Vec::new(),
            state: OutboxState::Pending,
            attempts: 1,
            next_attempt_at: at(),
            last_error: None,
            created_at: at(),
            sent_at: None,
            body_expires_at: None,
        };
        Self {
            message,
            payload,
            rendered,
        }
    }

    pub fn outgoing(&self) -> rekey_notify::Outgoing<'_> {
        rekey_notify::Outgoing {
            message: &self.message,
            recipient: self.message.recipient.as_deref().unwrap(),
            payload: &self.payload,
            rendered: &self.rendered,
        }
    }
}
