//! Deliveries counted by channel and outcome, for `/metrics`: plain atomics the worker bumps
//! after recording each outcome, read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};

use rekey_core::domain::Channel;

use crate::worker::Outcome;

/// What a delivery attempt came to, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    Sent,
    /// Failed, to be tried again.
    Retry,
    /// Failed for good (or on the last attempt), parked for an admin.
    Parked,
}

impl Delivered {
    pub const ALL: [Delivered; 3] = [Delivered::Sent, Delivered::Retry, Delivered::Parked];

    pub fn as_str(self) -> &'static str {
        match self {
            Delivered::Sent => "sent",
            Delivered::Retry => "retry",
            Delivered::Parked => "parked",
        }
    }

    /// Only recorded outcomes count: an unrecorded one comes back after its lease and is
    /// counted then.
    fn of(outcome: &Outcome) -> Option<Self> {
        match outcome {
            Outcome::Sent => Some(Delivered::Sent),
            Outcome::Retry(_) => Some(Delivered::Retry),
            Outcome::Parked => Some(Delivered::Parked),
            Outcome::Unrecorded => None,
        }
    }
}

/// One counter per channel (in [`Channel::ALL`] order) and [`Delivered`] outcome.
#[derive(Debug)]
pub(crate) struct DeliveryStats {
    counts: Vec<[AtomicU64; 3]>,
}

impl Default for DeliveryStats {
    fn default() -> Self {
        Self {
            counts: Channel::ALL.iter().map(|_| Default::default()).collect(),
        }
    }
}

impl DeliveryStats {
    pub(crate) fn record(&self, channel: Channel, outcome: &Outcome) {
        let (Some(delivered), Some(row)) = (
            Delivered::of(outcome),
            Channel::ALL.iter().position(|c| *c == channel),
        ) else {
            return;
        };
        if let Some(counts) = self.counts.get(row) {
            counts[delivered as usize].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Every channel and outcome, zeros included.
    pub(crate) fn snapshot(&self) -> Vec<(Channel, Delivered, u64)> {
        Channel::ALL
            .iter()
            .zip(&self.counts)
            .flat_map(|(channel, counts)| {
                Delivered::ALL
                    .iter()
                    .map(move |d| (*channel, *d, counts[*d as usize].load(Ordering::Relaxed)))
            })
            .collect()
    }
}
