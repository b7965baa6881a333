//! The append-only event log (the audit trail) and the details a change reports back.

use chrono::{DateTime, Utc};

use crate::domain::ids::TenantId;

/// ZITADEL's object details of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub sequence: u64,
    pub change_date: DateTime<Utc>,
    pub resource_owner: TenantId,
    /// Only for operations that create something.
    pub creation_date: Option<DateTime<Utc>>,
}

/// An entry of the append-only event log (the audit trail). Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub tenant_id: TenantId,
    /// The user or tenant the event belongs to.
    pub aggregate_id: String,
    pub sequence: u64,
    pub kind: String,
    pub actor: String,
    pub ip: Option<String>,
    pub at: DateTime<Utc>,
    pub payload: serde_json::Value,
}

/// The parts of an event the flow chooses; the store assigns aggregate and sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub kind: &'static str,
    pub actor: String,
    pub ip: Option<String>,
    pub payload: serde_json::Value,
}
