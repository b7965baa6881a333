//! The operator's flows (CLI): readiness, the outbox and the audit trail. They take no
//! [`crate::flows::Caller`]: whoever reaches them is already trusted, and the actor named in
//! the audit trail is passed in. The operations routes reach the same flows through
//! `flows/operations.rs`, which scopes them to the calling token.
//!
//! An admin's retry of a parked (failed) outbox message (SPEC §11): a message whose sealed
//! body is still usable goes back to the queue as it is (same Message-ID); one whose body was
//! erased or whose code has expired is never resent dead: the user gets a fresh code in a new
//! message, as if reset again.

use serde_json::json;

use crate::domain::{Channel, Event, MessageId, MessageKind, NewEvent, OutboxMessage, OutboxState};
use crate::error::{Error, ErrorKind};
use crate::flows::{Delivery, Rekey};
use crate::ports::store::EventFilter;

/// What a retry did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retried {
    /// The message itself is pending again.
    Requeued { id: MessageId },
    /// A fresh code went out in a new message (new id, new Message-ID); the old one stays
    /// failed.
    Reissued { id: MessageId },
}

pub(crate) fn outbox_not_found() -> Error {
    Error::new(
        ErrorKind::NotFound,
        "REKEY-ObNF",
        "No failed outbox message with this id",
    )
}

impl Rekey {
    /// Whether the store is reachable and migrated (`/readyz`).
    pub async fn ready(&self) -> Result<(), Error> {
        Ok(self.store.ping().await?)
    }

    /// Outbox messages, oldest first, at most `limit`, optionally only those in `state`.
    pub async fn list_outbox(
        &self,
        state: Option<OutboxState>,
        limit: u32,
    ) -> Result<Vec<OutboxMessage>, Error> {
        Ok(self.store.outbox_messages(state, limit).await?)
    }

    /// The outbox message with this id, in any tenant and any state. `id` is as the operator
    /// typed it: one that is no valid id names no message.
    pub async fn outbox_message(&self, id: &str) -> Result<Option<OutboxMessage>, Error> {
        let Ok(id) = MessageId::parse(id) else {
            return Ok(None);
        };
        Ok(self.store.outbox_message(&id).await?)
    }

    /// The audit trail, oldest first (time, tenant, aggregate, sequence).
    pub async fn events(&self, filter: &EventFilter) -> Result<Vec<Event>, Error> {
        Ok(self.store.events(filter).await?)
    }

    /// Retries the failed message `id` on behalf of `actor` (who appears in the audit trail):
    /// the CLI's `rekey outbox retry`. `id` is as the operator typed it: one that is no valid id
    /// (empty, too long) is "not found" like any id that names no failed message, never a
    /// format error (SPEC §1). The operations route goes through the same
    /// [`Rekey::retry_failed_message`], scoped to its caller ([`Rekey::retry_outbox_for`]).
    pub async fn retry_outbox_message(&self, actor: &str, id: &str) -> Result<Retried, Error> {
        let message = self.failed_message(id).await?;
        self.retry_failed_message(actor, None, message).await
    }

    /// The failed message with this id, in any tenant.
    pub(crate) async fn failed_message(&self, id: &str) -> Result<OutboxMessage, Error> {
        let id = MessageId::parse(id).map_err(|_| outbox_not_found())?;
        self.store
            .outbox_message(&id)
            .await?
            .filter(|m| m.state == OutboxState::Failed)
            .ok_or_else(outbox_not_found)
    }

    /// The one retry (CLI and operations route): requeued as it is, with an
    /// `outbox.message.retried` event on the tenant, or reissued with a fresh code (whose
    /// `user.password.code.added` event names the actor and address).
    pub(crate) async fn retry_failed_message(
        &self,
        actor: &str,
        ip: Option<String>,
        message: OutboxMessage,
    ) -> Result<Retried, Error> {
        let id = message.id.clone();
        let now = self.now();
        let usable = !message.body.is_empty()
            && message.recipient.is_some()
            && message.body_expires_at.is_none_or(|at| at > now);
        if usable {
            let event = NewEvent {
                kind: "outbox.message.retried",
                actor: actor.to_owned(),
                ip,
                payload: json!({
                    "message_id": id,
                    "user_id": message.user_id,
                    "channel": message.channel.as_str(),
                    "kind": message.kind.as_str(),
                    "outcome": "requeued",
                }),
            };
            return match self.store.requeue_outbox(&id, now, &event).await? {
                Some(_) => Ok(Retried::Requeued { id }),
                None => Err(outbox_not_found()),
            };
        }
        if message.kind == MessageKind::Event {
            return Err(Error::new(
                ErrorKind::FailedPrecondition,
                "REKEY-ObEvt",
                "A webhook event without its body cannot be sent again",
            ));
        }
        if message.kind == MessageKind::PasswordChanged {
            return Err(Error::new(
                ErrorKind::FailedPrecondition,
                "REKEY-ObChg",
                "A password-changed notice without its body cannot be sent again",
            ));
        }
        let user = self
            .find_user_in(&message.tenant_id, &message.user_id)
            .await?
            .ok_or_else(Error::user_not_found)?;
        let has_address = match message.channel {
            Channel::Email => !user.email.as_str().is_empty(),
            Channel::Sms => user.phone.as_ref().is_some_and(|p| !p.as_str().is_empty()),
            Channel::Webhook => false, // events are refused above
        };
        if !has_address {
            return Err(Error::new(
                ErrorKind::FailedPrecondition,
                "REKEY-ObAdr",
                match message.channel {
                    Channel::Email => "The user still has no email address",
                    Channel::Sms => "The user still has no phone number",
                    Channel::Webhook => "A webhook event cannot be re-issued",
                },
            ));
        }
        let delivery = Delivery::Send {
            channel: message.channel,
            url_template: None,
        };
        let issued = self
            .issue_code_by(actor.to_owned(), ip, &user, delivery)
            .await?;
        let id = issued.message_id.ok_or_else(Error::internal)?;
        Ok(Retried::Reissued { id })
    }
}
