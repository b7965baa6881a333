//! Queuing webhook events (SPEC §10, §12): the rows a flow adds to the transaction of its
//! change, one per configured URL, so an event exists exactly when its change committed.

use chrono::{DateTime, Utc};

use crate::domain::{
    EventPrincipal, EventType, MessageId, OutboxMessage, TenantId, UserId, WebhookEvent,
};
use crate::error::Error;
use crate::flows::Rekey;

impl Rekey {
    /// The outbox rows of one event: one per configured webhook URL, each under its own
    /// message id and sealed on its own, all carrying the same event id. None when no
    /// webhook is configured.
    pub(crate) fn event_messages(
        &self,
        kind: EventType,
        tenant_id: &TenantId,
        user_id: &UserId,
        principal: EventPrincipal,
        ip: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<OutboxMessage>, Error> {
        let urls = &self.config.event_webhooks;
        if urls.is_empty() {
            return Ok(Vec::new());
        }
        let event = WebhookEvent {
            id: self.new_id(),
            kind,
            tenant_id: tenant_id.clone(),
            user_id: user_id.clone(),
            at: now,
            principal,
            ip: ip.map(str::to_owned),
        };
        urls.iter()
            .map(|url| {
                let id: MessageId = self.new_id();
                let sealed = event.seal(&self.sealer, self.rng.as_ref(), &id)?;
                Ok(OutboxMessage::event(id, &event, url, sealed, now))
            })
            .collect()
    }
}
