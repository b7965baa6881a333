//! What an outbox message carries. The payload is sealed before it is stored because it may
//! hold a code; the delivery worker opens it, renders and sends, then erases it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::clock::Random;
use crate::crypto::Sealer;
use crate::error::Error;
use crate::model::OutboxMessage;

/// The sealed content of an outbox message.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MessagePayload {
    pub tenant_id: String,
    pub user_id: String,
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
        message_id: &str,
    ) -> Result<(String, Vec<u8>), Error> {
        let plain = serde_json::to_vec(self).map_err(|_| Error::internal())?;
        sealer.seal(rng, message_id.as_bytes(), &plain)
    }

    pub fn open(sealer: &Sealer, message: &OutboxMessage) -> Result<Self, Error> {
        let plain = sealer.open(&message.key_id, message.id.as_bytes(), &message.body)?;
        serde_json::from_slice(&plain).map_err(|_| Error::internal())
    }
}
