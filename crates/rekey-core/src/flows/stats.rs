//! What the flows count for `/metrics`: rate-limit refusals by limit, and a snapshot of the hash
//! pool, the outbox backlog and the database pools. Plain atomics, read at scrape time: the
//! core has no metrics library and no global recorder.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Utc};

use super::Rekey;
use crate::crypto::HashPoolStats;
use crate::error::Error;
use crate::ports::store::{OutboxStats, PoolStats, StoreError};

/// The rate limits of SPEC §10, named as their configuration keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimit {
    MessagesPerUserPerHour,
    UnauthPerCnameEmailPerHour,
    UnauthPerIpPerMinute,
    CodeTriesPerIpPerMinute,
}

impl RateLimit {
    pub const ALL: [RateLimit; 4] = [
        RateLimit::MessagesPerUserPerHour,
        RateLimit::UnauthPerCnameEmailPerHour,
        RateLimit::UnauthPerIpPerMinute,
        RateLimit::CodeTriesPerIpPerMinute,
    ];

    /// The configuration key (`REKEY_LIMITS__…` in lower case).
    pub fn as_str(self) -> &'static str {
        match self {
            RateLimit::MessagesPerUserPerHour => "messages_per_user_per_hour",
            RateLimit::UnauthPerCnameEmailPerHour => "unauth_per_cname_email_per_hour",
            RateLimit::UnauthPerIpPerMinute => "unauth_per_ip_per_minute",
            RateLimit::CodeTriesPerIpPerMinute => "code_tries_per_ip_per_minute",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Refusals per [`RateLimit`], since start.
#[derive(Debug, Default)]
pub(crate) struct RateLimitRefusals([AtomicU64; 4]);

impl RateLimitRefusals {
    /// Counts `result` when the store refused it for `limit`; passes it on unchanged.
    pub(crate) fn count<T>(
        &self,
        limit: RateLimit,
        result: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if let Err(StoreError::RateLimited { .. }) = &result {
            self.0[limit.index()].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn snapshot(&self) -> Vec<(RateLimit, u64)> {
        RateLimit::ALL
            .iter()
            .map(|limit| (*limit, self.0[limit.index()].load(Ordering::Relaxed)))
            .collect()
    }
}

/// One scrape's view of the flows and what they run on.
#[derive(Debug, Clone)]
pub struct Stats {
    pub hash_pool: HashPoolStats,
    /// Every limit, with 0 for those never exceeded.
    pub rate_limit_refusals: Vec<(RateLimit, u64)>,
    /// `Err` when the database could not be read (the other numbers still are).
    pub outbox: Result<OutboxStats, Error>,
    pub pools: PoolStats,
    /// The clock's time when the snapshot was taken (for the age of the oldest message).
    pub at: DateTime<Utc>,
}

impl Stats {
    /// Seconds since the oldest pending message was queued; 0 when none is pending.
    pub fn oldest_pending_age_secs(&self) -> f64 {
        match &self.outbox {
            Ok(OutboxStats {
                oldest_pending: Some(oldest),
                ..
            }) => ((self.at - *oldest).num_milliseconds().max(0) as f64) / 1000.0,
            _ => 0.0,
        }
    }
}

impl Rekey {
    /// A snapshot for `/metrics`. Carries no tenant, user or secret.
    pub async fn stats(&self) -> Stats {
        let outbox = self.store.outbox_stats().await.map_err(Error::from);
        Stats {
            hash_pool: self.hasher.stats(),
            rate_limit_refusals: self.refusals.snapshot(),
            outbox,
            pools: self.store.pool_stats(),
            at: self.now(),
        }
    }
}
