//! What the store tells `/metrics` about itself: the outbox's backlog and the connection
//! pools' use. Read at scrape time, never on a request's path.

use chrono::{DateTime, Utc};

/// The outbox's backlog: messages waiting for delivery and messages parked as failed.
/// Sent messages are history, not backlog (the worker counts deliveries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutboxStats {
    pub pending: u64,
    pub failed: u64,
    /// When the oldest pending message was queued.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// The database connection pools (summed when reads and writes have pools of their own) and
/// the database errors counted since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolStats {
    pub idle: u64,
    pub in_use: u64,
    pub max: u64,
    /// Operations that failed in the database (unavailable, timed out, or unreadable data);
    /// not the expected refusals such as a taken email or a rate limit.
    pub errors: u64,
}
