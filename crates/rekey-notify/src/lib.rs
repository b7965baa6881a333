//! Delivery of outbox messages (SPEC §8): the [`Worker`] claims due messages from the store,
//! opens their sealed payload, renders the [`templates`] and hands the result to a channel's
//! [`Transport`] — [`email::SmtpEmail`] (SMTP through a pooled, `TCP_NODELAY` connection, see
//! [`smtp`]) or, for development, [`mail_dir::MailDir`] (`.eml` files in a directory); for SMS
//! [`sms::WebhookSms`] / [`sms::TwilioSms`]; signed events to the configured webhooks by
//! [`webhook::EventWebhook`] (an [`EventTransport`]).
//!
//! Nothing here is called from a request: requests only write outbox rows; the worker runs
//! beside the server.

pub mod email;
pub mod mail_dir;
pub mod signature;
pub mod sms;
pub mod smtp;
pub mod stats;
pub mod templates;
pub mod webhook;
pub mod worker;

use async_trait::async_trait;
use rekey_core::domain::MessagePayload;
use rekey_core::domain::OutboxMessage;

pub use stats::Delivered;
pub use templates::{Rendered, Templates};
pub use worker::{Retention, Transports, Worker, WorkerConfig, WorkerStore};

/// One message ready to go out on its channel.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The outbox row (id, tenant, kind, idempotency key).
    pub message: &'a OutboxMessage,
    /// The email address or phone number.
    pub recipient: &'a str,
    /// The opened payload (code, link, names).
    pub payload: &'a MessagePayload,
    pub rendered: &'a Rendered,
}

/// Sends messages on one channel.
#[async_trait]
pub trait Transport: Send + Sync + 'static {
    async fn send(&self, outgoing: Outgoing<'_>) -> Result<(), SendError>;
}

/// One webhook event ready to go to its URL.
#[derive(Debug, Clone, Copy)]
pub struct OutgoingEvent<'a> {
    /// The outbox row (id, tenant, attempts).
    pub message: &'a OutboxMessage,
    /// The receiver: the row's recipient.
    pub url: &'a str,
    /// The event's id (the same for every URL and every retry).
    pub event_id: &'a str,
    /// The event's JSON, exactly as queued; this is what is signed.
    pub body: &'a [u8],
}

/// Sends webhook events (rows on [`rekey_core::domain::Channel::Webhook`]): they carry no
/// rendered text, only the body their flow queued.
#[async_trait]
pub trait EventTransport: Send + Sync + 'static {
    async fn send_event(&self, event: OutgoingEvent<'_>) -> Result<(), SendError>;
}

/// Why a send failed. The reason is stored in the outbox row and shown to admins, so it is
/// built from status codes and fixed words — never from the message, its code or its link.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct SendError {
    /// Another attempt cannot succeed (a refused recipient, a malformed address): the
    /// message is parked at once instead of retried.
    pub permanent: bool,
    pub reason: String,
}

impl SendError {
    pub fn transient(reason: impl Into<String>) -> Self {
        Self {
            permanent: false,
            reason: reason.into(),
        }
    }

    pub fn permanent(reason: impl Into<String>) -> Self {
        Self {
            permanent: true,
            reason: reason.into(),
        }
    }
}
