//! Event webhooks (SPEC §10, §12): each `webhook` outbox row is one event for one configured
//! URL; its opened body — the event's JSON, exactly as queued — is POSTed there with
//! `Content-Type: application/json`, `X-Rekey-Event-Id` and `X-Rekey-Signature`
//! ([`crate::signature`], `t` from the worker's clock at each attempt). A 2xx is delivered;
//! a 4xx other than 408/429 is permanent (parked); anything else is retried with backoff.

use std::sync::Arc;

use async_trait::async_trait;
use rekey_core::ports::Clock;
use secrecy::{ExposeSecret, SecretString};

use crate::sms::{check_status, request_error};
use crate::{signature, EventTransport, OutgoingEvent, SendError};

/// The header naming the event (the same for every URL and every retry of one event).
pub const EVENT_ID_HEADER: &str = "X-Rekey-Event-Id";

/// POSTs events to the configured webhook URLs, signed with the one configured secret.
pub struct EventWebhook {
    client: reqwest::Client,
    urls: Vec<String>,
    secret: SecretString,
    clock: Arc<dyn Clock>,
}

impl EventWebhook {
    /// `client`: see [`crate::sms::http_client`] (no redirects, bounded timeout).
    pub fn new(
        client: reqwest::Client,
        urls: Vec<String>,
        secret: SecretString,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            client,
            urls,
            secret,
            clock,
        }
    }
}

impl std::fmt::Debug for EventWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventWebhook")
            .field("urls", &self.urls.len())
            .finish_non_exhaustive()
    }
}

const SERVICE: &str = "event webhook";

#[async_trait]
impl EventTransport for EventWebhook {
    async fn send_event(&self, event: OutgoingEvent<'_>) -> Result<(), SendError> {
        // Only to a URL that is still configured: a receiver removed from the configuration
        // gets nothing more, and a row cannot send an event anywhere else.
        if !self.urls.iter().any(|url| url == event.url) {
            return Err(SendError::permanent(format!(
                "{SERVICE}: URL no longer configured"
            )));
        }
        let header = signature::sign(
            self.secret.expose_secret().as_bytes(),
            self.clock.now().timestamp(),
            event.body,
        );
        let response = self
            .client
            .post(event.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(signature::HEADER, header)
            .header(EVENT_ID_HEADER, event.event_id)
            .body(event.body.to_vec())
            .send()
            .await
            .map_err(|e| request_error(SERVICE, &e))?;
        check_status(SERVICE, response.status(), None)
    }
}
