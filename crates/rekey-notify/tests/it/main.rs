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
use rekey_core::domain::{Channel, MessageKind, OutboxMessage};
use rekey_notify::{Rendered, Templates};
use rekey_testkit::fixtures;

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
            expires_at: Some(at() + chrono::Duration::hours(1)),
            ..fixtures::reset_payload(Some(CODE), Some(LINK))
        };
        let rendered = Templates::builtin()
            .unwrap()
            .render(MessageKind::PasswordReset, &payload, at())
            .unwrap();
        let message = fixtures::message(id)
            .channel(channel, recipient)
            .attempts(1)
            .at(at())
            .build();
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
