//! Delivery of outbox messages (SPEC §8): the [`Worker`] claims due messages from the store,
//! opens their sealed payload, renders the [`templates`] and hands the result to a channel's
//! [`Transport`] — [`email::SmtpEmail`] (SMTP through a pooled, `TCP_NODELAY` connection, see
//! [`smtp`]), or for SMS [`sms::WebhookSms`] / [`sms::TwilioSms`].
//!
//! Nothing here is called from a request: requests only write outbox rows; the worker runs
//! beside the server.

pub mod email;
pub mod signature;
pub mod sms;
pub mod smtp;
pub mod stats;
pub mod templates;
pub mod worker;

use async_trait::async_trait;
use rekey_core::domain::MessagePayload;
use rekey_core::domain::OutboxMessage;

pub use stats::Delivered;
pub use templates::{Rendered, Templates};
pub use worker::{Transports, Worker, WorkerConfig};

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
