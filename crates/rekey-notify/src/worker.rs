//! The delivery worker: claims due outbox messages, sends them, records the outcome.
//!
//! Per message: open the sealed payload, render, send on the channel's [`Transport`]; then
//! - sent → `mark_outbox_sent` (the body, which may hold a code, is erased);
//! - failed, transient → `reschedule_outbox` after `backoff · 2^(attempts−1)` ±20% jitter;
//! - failed permanently, or on the last attempt (`max_attempts`) → `park_outbox_failed`, kept
//!   with its body for an admin retry.
//!
//! Claims are leases (see [`OutboxStore::claim_outbox`]): a worker that dies mid-send leaves its
//! messages to be claimed again when the lease runs out, so delivery is at-least-once; the
//! email `Message-ID` is stable across attempts. Only channels that have a transport are
//! claimed: a message for an unconfigured channel stays pending without using an attempt.
//!
//! Up to `concurrency` messages are in flight at once, and a message is claimed only when a slot
//! is free to send it, so a lease never ticks away while its message waits in a local queue.
//! Claims are made for at least half the slots at once, to spread the cost of the claim's
//! write transaction.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rekey_core::crypto::Sealer;
use rekey_core::domain::{Channel, MessageId, OutboxMessage};
use rekey_core::domain::{MessagePayload, WebhookEvent};
use rekey_core::ports::store::{AuditLog, OutboxStore, RateLimitStore, Store, StoreError};
use rekey_core::ports::{Clock, Random};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::stats::{Delivered, DeliveryStats};
use crate::templates::Templates;
use crate::{EventTransport, Outgoing, OutgoingEvent, SendError, Transport};

/// The longest wait between two attempts, whatever the attempt count.
pub const MAX_BACKOFF: Duration = Duration::from_secs(6 * 3600);

/// How often the worker does its housekeeping ([`Worker::maintain`]).
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// Stored error texts are cut to this many characters.
const MAX_ERROR_CHARS: usize = 300;

/// Scheduling knobs (SPEC §12 `REKEY_OUTBOX__…`).
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// How often to look for due messages when idle (`POLL_MS`, 500 ms).
    pub poll: Duration,
    /// How long a claim holds a message before another worker may take it (`LEASE_MS`, 60 s).
    /// Must exceed the longest send: give the transports [`Self::send_timeout`].
    pub lease: Duration,
    /// Attempts before a message is parked as failed (`MAX_ATTEMPTS`, 8).
    pub max_attempts: u32,
    /// Wait before the second attempt, doubled for each further one (`BACKOFF_MS`, 1 s).
    pub backoff: Duration,
    /// Messages in flight at once (`CONCURRENCY`, 8).
    pub concurrency: usize,
    /// How long finished messages and audit events are kept (`REKEY_RETENTION__…`).
    pub retention: Retention,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(60),
            max_attempts: 8,
            backoff: Duration::from_secs(1),
            concurrency: 8,
            retention: Retention::default(),
        }
    }
}

/// How many days the housekeeping keeps what it may delete (SPEC §12 `REKEY_RETENTION__…`):
/// sent and failed outbox messages (never pending ones) and audit events older than this are
/// deleted. 0 keeps them forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// `EVENTS_DAYS` (365).
    pub events_days: u32,
    /// `OUTBOX_DAYS` (30).
    pub outbox_days: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            events_days: 365,
            outbox_days: 30,
        }
    }
}

/// Rows one retention delete removes: a short write transaction each, so SQLite's one writer
/// is free between batches for the requests' writes.
const RETENTION_BATCH: u32 = 500;

/// Batches per table per housekeeping round (10 000 rows a minute): a large backlog (the first
/// round after an upgrade, a shortened window) is worked off over several rounds instead of
/// holding up delivery, which waits for the round.
const RETENTION_BATCHES_PER_ROUND: u32 = 20;

impl WorkerConfig {
    /// The timeout for each step of a send (connecting, then sending): a third of the lease,
    /// at most 30 s, so that a send ends before another worker may claim its message.
    pub fn send_timeout(&self) -> Duration {
        (self.lease / 3).min(Duration::from_secs(30))
    }
}

/// `base · 2^(attempts−1)`, scaled by `0.8 + 0.4 · unit` (±20% jitter, `unit` in `[0, 1)`),
/// at most [`MAX_BACKOFF`], in whole milliseconds. `attempts` counts the attempt that just
/// failed (1 for the first).
pub fn backoff(base: Duration, attempts: u32, unit: f64) -> Duration {
    let exponent = attempts.saturating_sub(1).min(30);
    let nominal = base.as_secs_f64() * f64::from(1u32 << exponent);
    let jittered = nominal * (0.8 + 0.4 * unit.clamp(0.0, 1.0));
    // Whole milliseconds: the retry time is then exactly what the store keeps.
    let millis = (jittered.min(MAX_BACKOFF.as_secs_f64()) * 1000.0).round();
    Duration::from_millis(millis as u64)
}

/// What became of one claimed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent,
    /// Another attempt at this time.
    Retry(DateTime<Utc>),
    /// Parked as failed.
    Parked,
    /// The outcome could not be recorded (the message was no longer pending, or the store
    /// failed); the lease brings the message back if it still needs sending.
    Unrecorded,
}

/// The channels' senders; a channel without one is not delivered (its messages wait).
#[derive(Default, Clone)]
pub struct Transports {
    pub email: Option<Arc<dyn Transport>>,
    pub sms: Option<Arc<dyn Transport>>,
    /// Event webhooks ([`Channel::Webhook`]).
    pub webhook: Option<Arc<dyn EventTransport>>,
}

/// The parts of the store the worker uses, and only those: the outbox (claims, outcomes, the
/// erasure of expired bodies), the rate-limit counters its housekeeping purges and the audit
/// trail its retention trims.
#[derive(Clone)]
pub struct WorkerStore {
    pub outbox: Arc<dyn OutboxStore>,
    pub rate_limits: Arc<dyn RateLimitStore>,
    pub audit: Arc<dyn AuditLog>,
}

impl From<Arc<dyn Store>> for WorkerStore {
    /// The parts of one whole store (trait upcasting).
    fn from(store: Arc<dyn Store>) -> Self {
        Self {
            outbox: store.clone(),
            rate_limits: store.clone(),
            audit: store,
        }
    }
}

/// The outbox worker. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

struct Inner {
    store: WorkerStore,
    sealer: Sealer,
    templates: Templates,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn Random>,
    config: WorkerConfig,
    email: Option<Arc<dyn Transport>>,
    sms: Option<Arc<dyn Transport>>,
    webhook: Option<Arc<dyn EventTransport>>,
    wake: Arc<Notify>,
    deliveries: DeliveryStats,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.inner.config)
            .field("channels", &self.channels())
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(
        store: WorkerStore,
        sealer: Sealer,
        templates: Templates,
        transports: Transports,
        clock: Arc<dyn Clock>,
        rng: Arc<dyn Random>,
        config: WorkerConfig,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                sealer,
                templates,
                clock,
                rng,
                config,
                email: transports.email,
                sms: transports.sms,
                webhook: transports.webhook,
                wake: Arc::new(Notify::new()),
                deliveries: DeliveryStats::default(),
            }),
        }
    }

    /// The channels this worker delivers (those with a transport).
    pub fn channels(&self) -> Vec<Channel> {
        let mut channels = Vec::new();
        if self.inner.email.is_some() {
            channels.push(Channel::Email);
        }
        if self.inner.sms.is_some() {
            channels.push(Channel::Sms);
        }
        if self.inner.webhook.is_some() {
            channels.push(Channel::Webhook);
        }
        channels
    }

    /// Deliveries since start by channel and outcome, zeros included (for `/metrics`).
    pub fn deliveries(&self) -> Vec<(Channel, Delivered, u64)> {
        self.inner.deliveries.snapshot()
    }

    /// Notifying this wakes an idle worker at once (e.g. after a request queued a message),
    /// instead of at the next poll.
    pub fn waker(&self) -> Arc<Notify> {
        self.inner.wake.clone()
    }

    /// One round, for tests and tools: claims up to `concurrency` due messages, delivers them
    /// (concurrently) and returns their outcomes in claim order.
    pub async fn run_once(&self) -> Result<Vec<(MessageId, Outcome)>, StoreError> {
        let claimed = self.claim(self.inner.config.concurrency).await?;
        let deliveries = claimed.into_iter().map(|message| {
            let inner = self.inner.clone();
            async move {
                let id = message.id.clone();
                (id, inner.deliver(message).await)
            }
        });
        Ok(futures::future::join_all(deliveries).await)
    }

    /// Delivers until `shutdown` completes; then claims nothing more, lets the sends in flight
    /// finish and returns. Unclaimed messages stay pending for the next start.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) {
        let channels = self.channels();
        tokio::pin!(shutdown);
        if channels.is_empty() {
            tracing::info!("outbox worker: no delivery channel configured, messages stay queued");
            loop {
                tokio::select! {
                    () = &mut shutdown => return,
                    () = tokio::time::sleep(MAINTENANCE_EVERY) => self.maintain().await,
                }
            }
        }
        let config = &self.inner.config;
        tracing::info!(
            channels = ?channels.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
            concurrency = config.concurrency,
            "outbox worker started"
        );
        let concurrency = config.concurrency.max(1);
        let slots = Arc::new(Semaphore::new(concurrency));
        // A claim is a write transaction; claiming for half the slots at once (rather than one
        // message per freed slot) spreads its cost over several messages.
        let claim_batch = (concurrency / 2).max(1);
        let mut in_flight = JoinSet::new();
        let mut maintained = tokio::time::Instant::now();
        loop {
            while in_flight.try_join_next().is_some() {}
            if maintained.elapsed() >= MAINTENANCE_EVERY {
                self.maintain().await;
                maintained = tokio::time::Instant::now();
            }
            let free = slots.available_permits();
            if free < claim_batch {
                tokio::select! {
                    () = &mut shutdown => break,
                    _ = in_flight.join_next() => continue,
                }
            }
            let claimed = match self.claim(free).await {
                Ok(claimed) => claimed,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox worker: claim failed; retrying");
                    Vec::new()
                }
            };
            let more_due = claimed.len() == free;
            for message in claimed {
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    break; // cannot happen: at most `free` were claimed
                };
                let inner = self.inner.clone();
                in_flight.spawn(async move {
                    let _slot = slot;
                    inner.deliver(message).await
                });
            }
            if more_due {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(config.poll) => {}
                () = self.inner.wake.notified() => {}
            }
        }
        tracing::info!(
            in_flight = in_flight.len(),
            "outbox worker stopping: finishing the sends in flight"
        );
        while in_flight.join_next().await.is_some() {}
        tracing::info!("outbox worker stopped");
    }

    /// Housekeeping that keeps the database bounded and free of dead secrets: rate-limit
    /// counters whose window has ended are deleted, failed messages lose their sealed body
    /// once the code in it has expired, and sent or failed messages and audit events past
    /// their retention are deleted, in batches. Failures are logged and tried again next time.
    pub async fn maintain(&self) {
        self.purge_and_erase().await;
        self.apply_retention().await;
    }

    async fn purge_and_erase(&self) {
        let store = &self.inner.store;
        let now = self.inner.clock.now();
        match store.rate_limits.purge_rate_limits(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "ended rate-limit windows deleted"),
            Err(err) => tracing::warn!(error = %err, "rate-limit purge failed"),
        }
        match store.outbox.erase_expired_failed_bodies(now).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(erased = n, "expired bodies of failed messages erased"),
            Err(err) => tracing::warn!(error = %err, "erasing expired outbox bodies failed"),
        }
    }

    /// Deletes what is older than the retention windows, [`RETENTION_BATCH`] rows at a time;
    /// what is left after [`RETENTION_BATCHES_PER_ROUND`] batches waits for the next round.
    async fn apply_retention(&self) {
        let store = &self.inner.store;
        let retention = self.inner.config.retention;
        let now = self.inner.clock.now();
        let cutoff = |days: u32| (days > 0).then(|| now - chrono::Duration::days(i64::from(days)));
        if let Some(before) = cutoff(retention.outbox_days) {
            let deleted = batches(|| {
                store
                    .outbox
                    .delete_finished_outbox_before(before, RETENTION_BATCH)
            })
            .await;
            log_retention("outbox messages", deleted);
        }
        if let Some(before) = cutoff(retention.events_days) {
            let deleted =
                batches(|| store.audit.delete_events_before(before, RETENTION_BATCH)).await;
            log_retention("audit events", deleted);
        }
    }

    async fn claim(&self, limit: usize) -> Result<Vec<OutboxMessage>, StoreError> {
        let inner = &self.inner;
        let channels = self.channels();
        let now = inner.clock.now();
        let lease = chrono::Duration::from_std(inner.config.lease)
            .unwrap_or_else(|_| chrono::Duration::seconds(60));
        let limit = u32::try_from(limit).unwrap_or(u32::MAX);
        inner
            .store
            .outbox
            .claim_outbox(now, now + lease, &channels, limit)
            .await
    }
}

impl Inner {
    fn transport(&self, channel: Channel) -> Option<&Arc<dyn Transport>> {
        match channel {
            Channel::Email => self.email.as_ref(),
            Channel::Sms => self.sms.as_ref(),
            // Events go through their own transport ([`Inner::send_event`]).
            Channel::Webhook => None,
        }
    }

    /// Sends one claimed message and records the outcome. Whatever is logged meanwhile — here
    /// or by a transport — is in a span naming the message and the request that queued it.
    async fn deliver(&self, message: OutboxMessage) -> Outcome {
        let span = tracing::info_span!(
            "outbox",
            message_id = %message.id,
            request_id = message.request_id.as_deref()
        );
        tracing::Instrument::instrument(self.deliver_in_span(message), span).await
    }

    async fn deliver_in_span(&self, message: OutboxMessage) -> Outcome {
        let mut payload = None;
        let result = self.send(&message, &mut payload).await;
        let store = &self.store.outbox;
        let (recorded, outcome) = match result {
            Ok(()) => (
                store
                    .mark_outbox_sent(&message.tenant_id, &message.id, self.clock.now())
                    .await,
                Outcome::Sent,
            ),
            Err(err) => {
                let reason = redact(&err.reason, payload.as_ref());
                if err.permanent || message.attempts >= self.config.max_attempts {
                    let reason = if err.permanent {
                        reason
                    } else {
                        format!("gave up after {} attempts: {reason}", message.attempts)
                    };
                    (
                        store
                            .park_outbox_failed(&message.tenant_id, &message.id, &reason)
                            .await,
                        Outcome::Parked,
                    )
                } else {
                    let wait = backoff(self.config.backoff, message.attempts, self.unit());
                    let at = self.clock.now()
                        + chrono::Duration::from_std(wait)
                            .unwrap_or_else(|_| chrono::Duration::hours(6));
                    (
                        store
                            .reschedule_outbox(&message.tenant_id, &message.id, at, &reason)
                            .await,
                        Outcome::Retry(at),
                    )
                }
            }
        };
        let outcome = match recorded {
            Ok(true) => outcome,
            Ok(false) => {
                tracing::warn!(message_id = %message.id,
                    request_id = message.request_id.as_deref(),
                    "outbox message was no longer pending");
                Outcome::Unrecorded
            }
            Err(err) => {
                tracing::error!(message_id = %message.id, error = %err,
                    request_id = message.request_id.as_deref(),
                    "outbox outcome not recorded; the message comes back after its lease");
                Outcome::Unrecorded
            }
        };
        log_outcome(&message, &outcome, self.config.max_attempts);
        self.deliveries.record(message.channel, &outcome);
        outcome
    }

    /// Everything up to and including the send. `payload` is filled once opened, so a failure
    /// reason can be scrubbed of its code and link.
    async fn send(
        &self,
        message: &OutboxMessage,
        payload: &mut Option<MessagePayload>,
    ) -> Result<(), SendError> {
        let recipient = message.recipient.as_deref().ok_or_else(|| {
            SendError::permanent(match message.channel {
                Channel::Email => "no email",
                Channel::Sms => "no phone",
                Channel::Webhook => "no webhook url",
            })
        })?;
        if message.channel == Channel::Webhook {
            return self.send_event(message, recipient).await;
        }
        let transport = self.transport(message.channel).ok_or_else(|| {
            SendError::transient(format!("{} is not configured", message.channel.as_str()))
        })?;
        // A key missing here may be present on another replica (or after a configuration fix):
        // retried, not parked at once.
        let opened = MessagePayload::open(&self.sealer, message).map_err(|_| {
            SendError::transient(format!(
                "cannot open the sealed body (key id {:?})",
                message.key_id
            ))
        })?;
        let payload = payload.insert(opened);
        let rendered = self
            .templates
            .render(message.kind, payload, message.created_at)
            .map_err(|e| SendError::permanent(e.to_string()))?;
        transport
            .send(Outgoing {
                message,
                recipient,
                payload,
                rendered: &rendered,
            })
            .await
    }

    /// Opens an event row and posts its body as it was queued. The body holds no secret, so
    /// there is nothing to scrub from a failure reason.
    async fn send_event(&self, message: &OutboxMessage, url: &str) -> Result<(), SendError> {
        let transport = self
            .webhook
            .as_ref()
            .ok_or_else(|| SendError::transient("webhook is not configured"))?;
        let body = self
            .sealer
            .open(
                &message.key_id,
                message.id.as_str().as_bytes(),
                &message.body,
            )
            .map_err(|_| {
                SendError::transient(format!(
                    "cannot open the sealed body (key id {:?})",
                    message.key_id
                ))
            })?;
        let event: WebhookEvent = serde_json::from_slice(&body)
            .map_err(|_| SendError::permanent("the event body is not an event"))?;
        transport
            .send_event(OutgoingEvent {
                message,
                url,
                event_id: event.id.as_str(),
                body: &body,
            })
            .await
    }

    /// A jitter unit in `[0, 1)` from the injected randomness.
    fn unit(&self) -> f64 {
        let mut bytes = [0u8; 4];
        self.rng.fill(&mut bytes);
        f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
    }
}

/// Runs `delete` (one batch of at most [`RETENTION_BATCH`] rows) until a batch comes back
/// short, at most [`RETENTION_BATCHES_PER_ROUND`] times, yielding between batches; how many
/// rows went, or the error that stopped it with the count so far.
async fn batches<F, Fut>(mut delete: F) -> Result<u64, (u64, StoreError)>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, StoreError>>,
{
    let mut total = 0;
    for _ in 0..RETENTION_BATCHES_PER_ROUND {
        match delete().await {
            Ok(n) => {
                total += n;
                if n < u64::from(RETENTION_BATCH) {
                    break;
                }
            }
            Err(err) => return Err((total, err)),
        }
        tokio::task::yield_now().await;
    }
    Ok(total)
}

fn log_retention(what: &'static str, deleted: Result<u64, (u64, StoreError)>) {
    match deleted {
        Ok(0) => {}
        Ok(n) => tracing::info!(deleted = n, what, "retention: old rows deleted"),
        Err((n, err)) => {
            tracing::warn!(deleted = n, what, error = %err, "retention: deleting old rows failed")
        }
    }
}

/// A failure reason fit to store: the code and the link (which carries it) removed, whatever a
/// transport put in, and the length bounded.
fn redact(reason: &str, payload: Option<&MessagePayload>) -> String {
    let mut reason = reason.to_owned();
    if let Some(payload) = payload {
        for secret in [&payload.link, &payload.code].into_iter().flatten() {
            if !secret.is_empty() {
                reason = reason.replace(secret.as_str(), "[redacted]");
            }
        }
    }
    reason.chars().take(MAX_ERROR_CHARS).collect()
}

/// Ids and outcomes only: never the body, the code, the link or the recipient. `request_id`
/// is that of the request that queued the message (absent for the CLI's).
fn log_outcome(message: &OutboxMessage, outcome: &Outcome, max_attempts: u32) {
    let (id, tenant, kind, channel, attempt) = (
        &message.id,
        &message.tenant_id,
        message.kind.as_str(),
        message.channel.as_str(),
        message.attempts,
    );
    let request_id = message.request_id.as_deref();
    match outcome {
        Outcome::Sent => tracing::info!(message_id = %id, request_id, %tenant, kind, channel,
            attempt, "outbox message sent"),
        Outcome::Retry(at) => tracing::warn!(message_id = %id, request_id, %tenant, kind,
            channel, attempt, max_attempts, next_attempt_at = %at,
            "outbox message not sent; will retry"),
        Outcome::Parked => tracing::error!(message_id = %id, request_id, %tenant, kind, channel,
            attempt, "outbox message parked as failed"),
        Outcome::Unrecorded => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use chrono::TimeZone;
    use rekey_core::crypto::KeyRing;
    use rekey_core::domain::{NewEvent, OutboxState};
    use rekey_core::domain::{TenantId, UserId};
    use rekey_core::ports::store::UserChange;
    use rekey_core::ports::{ManualClock, SeededRandom};
    use rekey_testkit::fixtures;

    use super::*;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 5, 1, 8, 0, 0).unwrap()
    }

    const CODE: &str = "QX7KM2PA";
    const LINK: &str = "https://rekey.example/ui/password/reset?userID=u1&code=QX7KM2PA&orgID=t1";

    /// What the fake transport does with each message.
    #[derive(Clone)]
    enum Behaviour {
        Accept,
        Fail(SendError),
        /// Waits for the gate, then accepts.
        Gated(Arc<Notify>),
    }

    struct FakeTransport {
        behaviour: Mutex<Behaviour>,
        sent: Mutex<Vec<(String, String, String)>>,
        in_flight: AtomicUsize,
        max_in_flight: AtomicUsize,
    }

    impl FakeTransport {
        fn new(behaviour: Behaviour) -> Arc<Self> {
            Arc::new(Self {
                behaviour: Mutex::new(behaviour),
                sent: Mutex::new(Vec::new()),
                in_flight: AtomicUsize::new(0),
                max_in_flight: AtomicUsize::new(0),
            })
        }

        fn set(&self, behaviour: Behaviour) {
            *self.behaviour.lock().unwrap() = behaviour;
        }

        /// (message id, recipient, rendered text) of each send that got through.
        fn sent(&self) -> Vec<(String, String, String)> {
            self.sent.lock().unwrap().clone()
        }
    }

    #[async_trait::async_trait]
    impl Transport for FakeTransport {
        async fn send(&self, outgoing: Outgoing<'_>) -> Result<(), SendError> {
            let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            self.max_in_flight.fetch_max(now, Ordering::SeqCst);
            let behaviour = self.behaviour.lock().unwrap().clone();
            let result = match behaviour {
                Behaviour::Accept => Ok(()),
                Behaviour::Fail(err) => Err(err),
                Behaviour::Gated(gate) => {
                    gate.notified().await;
                    Ok(())
                }
            };
            if result.is_ok() {
                self.sent.lock().unwrap().push((
                    outgoing.message.id.to_string(),
                    outgoing.recipient.to_owned(),
                    outgoing.rendered.text.clone(),
                ));
            }
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            result
        }
    }

    struct Setup {
        store: Arc<dyn Store>,
        clock: Arc<ManualClock>,
        sealer: Sealer,
        rng: Arc<SeededRandom>,
        email: Arc<FakeTransport>,
        sms: Arc<FakeTransport>,
    }

    fn event() -> NewEvent {
        fixtures::event("test").build()
    }

    async fn setup() -> Setup {
        let store: Arc<dyn Store> = Arc::new(
            rekey_store::SqliteStore::open_in_memory()
                .await
                .expect("in-memory store"),
        );
        let rng = Arc::new(SeededRandom::new(7));
        let sealer =
            Sealer::new(KeyRing::parse(&KeyRing::generate_spec("o1", rng.as_ref())).unwrap());
        let tenant = fixtures::tenant("t1").at(start()).build();
        store.insert_tenant(&tenant, &event()).await.unwrap();
        let user = fixtures::user()
            .phone("+41790000001", true)
            .at(start())
            .build();
        store.insert_user(&user, &event()).await.unwrap();
        Setup {
            store,
            clock: Arc::new(ManualClock::new(start())),
            sealer,
            rng,
            email: FakeTransport::new(Behaviour::Accept),
            sms: FakeTransport::new(Behaviour::Accept),
        }
    }

    impl Setup {
        fn worker(&self, config: WorkerConfig, sms: bool) -> Worker {
            Worker::new(
                self.store.clone().into(),
                self.sealer.clone(),
                Templates::builtin().unwrap(),
                Transports {
                    email: Some(self.email.clone()),
                    sms: sms.then(|| self.sms.clone() as Arc<dyn Transport>),
                    webhook: None,
                },
                self.clock.clone(),
                self.rng.clone(),
                config,
            )
        }

        /// Queues one reset message per id on `channel`, sealed as the core does.
        async fn queue(&self, channel: Channel, ids: &[&str]) {
            let now = self.clock.now();
            let payload = MessagePayload {
                expires_at: Some(now + chrono::Duration::hours(1)),
                ..fixtures::reset_payload(Some(CODE), Some(LINK))
            };
            let mut change = UserChange::new(
                TenantId::parse("t1").unwrap(),
                UserId::parse("u1").unwrap(),
                now,
                event(),
            );
            for id in ids {
                let (key_id, body) = payload
                    .seal(&self.sealer, self.rng.as_ref(), &fixtures::message_id(id))
                    .unwrap();
                let recipient = match channel {
                    Channel::Email => "ada@example.com",
                    Channel::Sms => "+41790000001",
                    Channel::Webhook => "http://127.0.0.1:9/events",
                };
                change.outbox.push(
                    fixtures::message(id)
                        .channel(channel, recipient)
                        .sealed(&key_id, body)
                        .at(now)
                        .body_expires_at(payload.expires_at)
                        .build(),
                );
            }
            self.store.change_user(&change).await.unwrap();
        }

        async fn message(&self, id: &str) -> OutboxMessage {
            self.store
                .outbox_message(&fixtures::message_id(id))
                .await
                .unwrap()
                .unwrap()
        }
    }

    fn quick() -> WorkerConfig {
        WorkerConfig {
            poll: Duration::from_millis(20),
            lease: Duration::from_secs(60),
            max_attempts: 3,
            backoff: Duration::from_secs(10),
            concurrency: 4,
            retention: Retention::default(),
        }
    }

    #[test]
    fn send_timeouts_fit_in_the_lease() {
        let mut config = WorkerConfig::default();
        assert_eq!(config.send_timeout(), Duration::from_secs(20));
        config.lease = Duration::from_secs(600);
        assert_eq!(config.send_timeout(), Duration::from_secs(30));
        config.lease = Duration::from_millis(1500);
        assert_eq!(config.send_timeout(), Duration::from_millis(500));
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1, 0.5), Duration::from_secs(1));
        assert_eq!(backoff(base, 2, 0.5), Duration::from_secs(2));
        assert_eq!(backoff(base, 4, 0.5), Duration::from_secs(8));
        assert_eq!(backoff(base, 1, 0.0), Duration::from_millis(800));
        assert_eq!(backoff(base, 1, 0.999_999), Duration::from_millis(1200));
        assert_eq!(backoff(base, 3, 0.25), Duration::from_millis(3600));
        assert_eq!(
            backoff(base, 0, 0.5),
            Duration::from_secs(1),
            "attempt 0 as 1"
        );
        assert_eq!(backoff(base, 40, 0.5), MAX_BACKOFF, "capped, no overflow");
        assert_eq!(
            backoff(Duration::from_millis(1000), 8, 0.5),
            Duration::from_secs(128)
        );
    }

    #[tokio::test]
    async fn maintenance_deletes_ended_rate_limit_windows() {
        let s = setup().await;
        let worker = s.worker(WorkerConfig::default(), false);
        let hit = |key: &str| rekey_core::ports::store::RateLimitHit {
            key: key.to_owned(),
            limit: 1,
            window_secs: 60,
            at: s.clock.now(),
        };
        s.store.hit_rate_limit(&hit("ip:a")).await.unwrap();
        assert!(s.store.hit_rate_limit(&hit("ip:a")).await.is_err());
        worker.maintain().await;
        assert!(
            s.store.hit_rate_limit(&hit("ip:a")).await.is_err(),
            "window still running"
        );
        s.clock.advance(chrono::Duration::seconds(61));
        worker.maintain().await;
        // The counter is gone (not merely rolled over): nothing left to purge.
        assert_eq!(s.store.purge_rate_limits(s.clock.now()).await.unwrap(), 0);
        s.store.hit_rate_limit(&hit("ip:a")).await.unwrap();
    }

    #[tokio::test]
    async fn maintenance_erases_the_bodies_of_failed_messages_once_their_code_expired() {
        let s = setup().await;
        let worker = s.worker(WorkerConfig::default(), false);
        s.queue(Channel::Email, &["m1"]).await;
        let tenant = TenantId::parse("t1").unwrap();
        assert!(s
            .store
            .park_outbox_failed(&tenant, &fixtures::message_id("m1"), "gave up")
            .await
            .unwrap());
        worker.maintain().await;
        assert!(
            !s.message("m1").await.body.is_empty(),
            "the code is still good"
        );
        s.clock.advance(chrono::Duration::hours(1));
        worker.maintain().await;
        let parked = s.message("m1").await;
        assert!(parked.body.is_empty());
        assert_eq!(parked.state, OutboxState::Failed);
    }

    #[tokio::test]
    async fn maintenance_deletes_finished_messages_and_events_past_their_retention() {
        let s = setup().await;
        let worker = s.worker(WorkerConfig::default(), false);
        let tenant = TenantId::parse("t1").unwrap();
        s.queue(Channel::Email, &["m-sent", "m-failed", "m-pending"])
            .await;
        let now = s.clock.now();
        assert!(s
            .store
            .mark_outbox_sent(&tenant, &fixtures::message_id("m-sent"), now)
            .await
            .unwrap());
        assert!(s
            .store
            .park_outbox_failed(&tenant, &fixtures::message_id("m-failed"), "gave up")
            .await
            .unwrap());
        let events = s.store.events(&Default::default()).await.unwrap().len();
        assert_eq!(events, 3, "tenant, user, queue");

        // 30 days on: nothing is past its window yet.
        s.clock.advance(chrono::Duration::days(30));
        worker.maintain().await;
        assert_eq!(s.store.outbox_messages(None, 0).await.unwrap().len(), 3);
        // A moment later the sent and failed messages go; the pending one stays.
        s.clock.advance(chrono::Duration::seconds(1));
        worker.maintain().await;
        let left = s.store.outbox_messages(None, 0).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id.as_str(), "m-pending");
        assert_eq!(s.store.events(&Default::default()).await.unwrap().len(), 3);

        // A year on, the events go too; with both windows 0 nothing would have.
        s.clock.advance(chrono::Duration::days(336));
        let keep = s.worker(
            WorkerConfig {
                retention: Retention {
                    events_days: 0,
                    outbox_days: 0,
                },
                ..WorkerConfig::default()
            },
            false,
        );
        keep.maintain().await;
        assert_eq!(s.store.events(&Default::default()).await.unwrap().len(), 3);
        worker.maintain().await;
        assert!(s
            .store
            .events(&Default::default())
            .await
            .unwrap()
            .is_empty());
        assert_eq!(s.store.outbox_messages(None, 0).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn retention_deletes_in_bounded_batches() {
        use std::sync::atomic::AtomicU64;
        // A big backlog: full batches until the round's cap; the rest waits for the next round.
        let calls = AtomicU64::new(0);
        let full = batches(|| async {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(u64::from(RETENTION_BATCH))
        })
        .await
        .unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            u64::from(RETENTION_BATCHES_PER_ROUND)
        );
        assert_eq!(
            full,
            u64::from(RETENTION_BATCH * RETENTION_BATCHES_PER_ROUND)
        );
        // A short batch ends the round.
        let left = AtomicU64::new(1_234);
        let done = batches(|| async {
            let n = left.load(Ordering::SeqCst).min(u64::from(RETENTION_BATCH));
            left.fetch_sub(n, Ordering::SeqCst);
            Ok(n)
        })
        .await
        .unwrap();
        assert_eq!((done, left.load(Ordering::SeqCst)), (1_234, 0));
        // An error stops it, with what was deleted before.
        let calls = AtomicU64::new(0);
        let failed = batches(|| async {
            if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                Ok(u64::from(RETENTION_BATCH))
            } else {
                Err(StoreError::Unavailable)
            }
        })
        .await;
        assert!(matches!(failed, Err((500, StoreError::Unavailable))));
    }

    #[tokio::test]
    async fn a_due_message_is_rendered_sent_and_erased() {
        let s = setup().await;
        s.queue(Channel::Email, &["m1"]).await;
        let worker = s.worker(quick(), false);
        let outcomes = worker.run_once().await.unwrap();
        assert_eq!(outcomes, vec![(fixtures::message_id("m1"), Outcome::Sent)]);
        let sent = s.email.sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].1, "ada@example.com");
        assert!(sent[0].2.contains(CODE) && sent[0].2.contains(LINK));
        let m = s.message("m1").await;
        assert_eq!(m.state, OutboxState::Sent);
        assert_eq!(m.sent_at, Some(start()));
        assert!(m.body.is_empty(), "erased after delivery");
        assert_eq!(m.attempts, 1);
        assert!(worker.run_once().await.unwrap().is_empty(), "sent once");
    }

    #[tokio::test]
    async fn transient_failures_back_off_then_park_after_the_last_attempt() {
        let s = setup().await;
        s.queue(Channel::Email, &["m1"]).await;
        s.email.set(Behaviour::Fail(SendError::transient(format!(
            "smtp: server replied 451 for {CODE} at {LINK}"
        ))));
        let worker = s.worker(quick(), false);

        // Attempt 1 fails: retry after 10 s ±20%.
        let outcomes = worker.run_once().await.unwrap();
        let Outcome::Retry(at) = outcomes[0].1 else {
            panic!("{outcomes:?}")
        };
        let wait = (at - start()).num_milliseconds();
        assert!((8_000..12_000).contains(&wait), "{wait} ms");
        let m = s.message("m1").await;
        assert_eq!(
            (m.state, m.attempts, m.next_attempt_at),
            (OutboxState::Pending, 1, at)
        );
        let error = m.last_error.unwrap();
        assert!(
            !error.contains(CODE) && !error.contains("reset?userID"),
            "{error}"
        );
        assert!(
            error.starts_with("smtp: server replied 451 for [redacted]"),
            "{error}"
        );

        // Not due before the backoff ends.
        s.clock.advance(chrono::Duration::milliseconds(wait - 1));
        assert!(worker.run_once().await.unwrap().is_empty());
        s.clock.advance(chrono::Duration::milliseconds(1));

        // Attempt 2 fails: retry after 20 s ±20%.
        let Outcome::Retry(second) = worker.run_once().await.unwrap()[0].1 else {
            panic!()
        };
        let wait = (second - s.clock.now()).num_milliseconds();
        assert!((16_000..24_000).contains(&wait), "{wait} ms");

        // Attempt 3 (= max_attempts) fails: parked, body kept for an admin retry.
        s.clock.advance(chrono::Duration::seconds(30));
        assert_eq!(worker.run_once().await.unwrap()[0].1, Outcome::Parked);
        let m = s.message("m1").await;
        assert_eq!(m.state, OutboxState::Failed);
        assert_eq!(m.attempts, 3);
        assert!(!m.body.is_empty());
        let error = m.last_error.unwrap();
        assert!(
            error.starts_with("gave up after 3 attempts: smtp: server replied 451"),
            "{error}"
        );
        assert!(!error.contains(CODE));

        // The admin retry sends it.
        s.email.set(Behaviour::Accept);
        assert!(s
            .store
            .retry_outbox(&fixtures::message_id("m1"), s.clock.now())
            .await
            .unwrap());
        assert_eq!(worker.run_once().await.unwrap()[0].1, Outcome::Sent);
        assert_eq!(s.email.sent().len(), 1);
    }

    /// Records each event it is given.
    #[derive(Default)]
    struct FakeEvents {
        sent: Mutex<Vec<(String, String, Vec<u8>)>>,
    }

    #[async_trait::async_trait]
    impl EventTransport for FakeEvents {
        async fn send_event(&self, event: OutgoingEvent<'_>) -> Result<(), SendError> {
            self.sent.lock().unwrap().push((
                event.url.to_owned(),
                event.event_id.to_owned(),
                event.body.to_vec(),
            ));
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_event_row_is_posted_as_queued_without_rendering() {
        let s = setup().await;
        let now = s.clock.now();
        let hook = WebhookEvent {
            id: fixtures::message_id("ev1"),
            kind: rekey_core::domain::EventType::PasswordChanged,
            tenant_id: TenantId::parse("t1").unwrap(),
            user_id: UserId::parse("u1").unwrap(),
            at: now,
            principal: rekey_core::domain::EventPrincipal::Code,
            ip: None,
        };
        let mut change = UserChange::new(
            TenantId::parse("t1").unwrap(),
            UserId::parse("u1").unwrap(),
            now,
            event(),
        );
        for (id, url) in [("w1", "https://a.example/h"), ("w2", "https://b.example/h")] {
            let id = fixtures::message_id(id);
            let sealed = hook.seal(&s.sealer, s.rng.as_ref(), &id).unwrap();
            change
                .outbox
                .push(OutboxMessage::event(id, &hook, url, sealed, now));
        }
        // A webhook row whose body is not an event cannot become one: parked.
        let id = fixtures::message_id("w3");
        let sealed = s
            .sealer
            .seal(s.rng.as_ref(), id.as_str().as_bytes(), b"{}")
            .unwrap();
        change.outbox.push(OutboxMessage::event(
            id,
            &hook,
            "https://c.example/h",
            sealed,
            now,
        ));
        s.store.change_user(&change).await.unwrap();

        let events = Arc::new(FakeEvents::default());
        let worker = Worker::new(
            s.store.clone().into(),
            s.sealer.clone(),
            Templates::builtin().unwrap(),
            Transports {
                webhook: Some(events.clone()),
                ..Transports::default()
            },
            s.clock.clone(),
            s.rng.clone(),
            quick(),
        );
        assert_eq!(worker.channels(), [Channel::Webhook]);
        let mut outcomes = worker.run_once().await.unwrap();
        outcomes.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        assert_eq!(
            outcomes,
            [
                (fixtures::message_id("w1"), Outcome::Sent),
                (fixtures::message_id("w2"), Outcome::Sent),
                (fixtures::message_id("w3"), Outcome::Parked),
            ]
        );
        let mut sent = events.sent.lock().unwrap().clone();
        sent.sort();
        let body = hook.to_json().unwrap();
        assert_eq!(
            sent,
            [
                (
                    "https://a.example/h".to_owned(),
                    "ev1".to_owned(),
                    body.clone()
                ),
                ("https://b.example/h".to_owned(), "ev1".to_owned(), body),
            ]
        );
        assert!(s.message("w1").await.body.is_empty(), "erased once sent");
        assert_eq!(
            s.message("w3").await.last_error.as_deref(),
            Some("the event body is not an event")
        );
        assert!(s.email.sent().is_empty());
    }

    #[tokio::test]
    async fn a_permanent_failure_parks_at_once() {
        let s = setup().await;
        s.queue(Channel::Email, &["m1"]).await;
        s.email.set(Behaviour::Fail(SendError::permanent(
            "smtp: server replied 550",
        )));
        let worker = s.worker(quick(), false);
        assert_eq!(worker.run_once().await.unwrap()[0].1, Outcome::Parked);
        let m = s.message("m1").await;
        assert_eq!(m.state, OutboxState::Failed);
        assert_eq!(m.attempts, 1);
        assert_eq!(m.last_error.as_deref(), Some("smtp: server replied 550"));
    }

    #[tokio::test]
    async fn an_unconfigured_channel_leaves_its_messages_waiting() {
        let s = setup().await;
        s.queue(Channel::Sms, &["sms1"]).await;
        s.queue(Channel::Email, &["mail1"]).await;
        let email_only = s.worker(quick(), false);
        assert_eq!(email_only.channels(), vec![Channel::Email]);
        let outcomes = email_only.run_once().await.unwrap();
        assert_eq!(
            outcomes,
            vec![(fixtures::message_id("mail1"), Outcome::Sent)]
        );
        let waiting = s.message("sms1").await;
        assert_eq!((waiting.state, waiting.attempts), (OutboxState::Pending, 0));
        assert!(s.sms.sent().is_empty());

        // Once SMS is configured, it goes out.
        let both = s.worker(quick(), true);
        assert_eq!(
            both.run_once().await.unwrap(),
            vec![(fixtures::message_id("sms1"), Outcome::Sent)]
        );
        assert_eq!(s.sms.sent()[0].1, "+41790000001");
    }

    #[tokio::test]
    async fn a_message_without_recipient_is_parked_without_sending() {
        let s = setup().await;
        s.queue(Channel::Sms, &["sms1"]).await;
        // As a message queued for a user without phone, parked, then retried by an admin.
        s.store
            .park_outbox_failed(
                &TenantId::parse("t1").unwrap(),
                &fixtures::message_id("sms1"),
                "no phone",
            )
            .await
            .unwrap();
        let mut no_phone = s.message("sms1").await;
        no_phone.recipient = None;
        let worker = s.worker(quick(), true);
        assert_eq!(
            worker.inner.deliver(no_phone).await,
            Outcome::Unrecorded,
            "not pending"
        );
        s.store
            .retry_outbox(&fixtures::message_id("sms1"), s.clock.now())
            .await
            .unwrap();
        let mut claimed = worker.claim(1).await.unwrap();
        let mut message = claimed.remove(0);
        message.recipient = None;
        assert_eq!(worker.inner.deliver(message).await, Outcome::Parked);
        assert_eq!(
            s.message("sms1").await.last_error.as_deref(),
            Some("no phone")
        );
        assert!(s.sms.sent().is_empty());
    }

    #[tokio::test]
    async fn a_body_sealed_with_an_unknown_key_is_retried_not_lost() {
        let s = setup().await;
        s.queue(Channel::Email, &["m1"]).await;
        let other_keys = Sealer::new(
            KeyRing::parse(&KeyRing::generate_spec("o2", &SeededRandom::new(99))).unwrap(),
        );
        let worker = Worker::new(
            s.store.clone().into(),
            other_keys,
            Templates::builtin().unwrap(),
            Transports {
                email: Some(s.email.clone()),
                sms: None,
                webhook: None,
            },
            s.clock.clone(),
            s.rng.clone(),
            quick(),
        );
        assert!(matches!(
            worker.run_once().await.unwrap()[0].1,
            Outcome::Retry(_)
        ));
        let m = s.message("m1").await;
        assert_eq!(
            m.last_error.as_deref(),
            Some("cannot open the sealed body (key id \"o1\")")
        );
        assert!(!m.body.is_empty());
        assert!(s.email.sent().is_empty());
    }

    #[tokio::test]
    async fn sends_run_concurrently_up_to_the_limit() {
        let s = setup().await;
        let ids: Vec<String> = (0..10).map(|i| format!("m{i}")).collect();
        s.queue(
            Channel::Email,
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        let gate = Arc::new(Notify::new());
        s.email.set(Behaviour::Gated(gate.clone()));
        let worker = s.worker(quick(), false);
        let round = tokio::spawn({
            let worker = worker.clone();
            async move { worker.run_once().await }
        });
        while s.email.in_flight.load(Ordering::SeqCst) < 4 {
            tokio::task::yield_now().await;
        }
        gate.notify_waiters();
        let outcomes = round.await.unwrap().unwrap();
        assert_eq!(outcomes.len(), 4, "one round claims `concurrency` messages");
        assert_eq!(s.email.max_in_flight.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn shutdown_finishes_sends_in_flight_and_leaves_the_rest_pending() {
        let s = setup().await;
        s.queue(Channel::Email, &["m0", "m1", "m2", "m3", "m4"])
            .await;
        let gate = Arc::new(Notify::new());
        s.email.set(Behaviour::Gated(gate.clone()));
        let mut config = quick();
        config.concurrency = 2;
        let worker = s.worker(config, false);
        let stop = Arc::new(Notify::new());
        let run = tokio::spawn(worker.clone().run({
            let stop = stop.clone();
            async move { stop.notified().await }
        }));
        while s.email.in_flight.load(Ordering::SeqCst) < 2 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.notify_one();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!run.is_finished(), "waits for the sends in flight");
        gate.notify_waiters();
        tokio::time::timeout(Duration::from_secs(5), run)
            .await
            .expect("stops")
            .unwrap();

        let all = s.store.outbox_messages(None, 0).await.unwrap();
        let sent: Vec<_> = all
            .iter()
            .filter(|m| m.state == OutboxState::Sent)
            .collect();
        let untouched: Vec<_> = all
            .iter()
            .filter(|m| m.state == OutboxState::Pending && m.attempts == 0)
            .collect();
        assert_eq!(sent.len(), 2, "{all:?}");
        assert_eq!(untouched.len(), 3, "not claimed, due for the next start");
        assert_eq!(s.email.sent().len(), 2);
    }

    #[tokio::test]
    async fn the_run_loop_drains_everything_and_wakes_on_notify() {
        let s = setup().await;
        let ids: Vec<String> = (0..25).map(|i| format!("m{i:02}")).collect();
        s.queue(
            Channel::Email,
            &ids.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        let mut config = quick();
        config.poll = Duration::from_secs(3600); // only a wake-up can start the second batch
        let worker = s.worker(config, false);
        let stop = Arc::new(Notify::new());
        let run = tokio::spawn(worker.clone().run({
            let stop = stop.clone();
            async move { stop.notified().await }
        }));
        let drained = async {
            while s.email.sent().len() < 25 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), drained)
            .await
            .expect("drained without waiting for a poll");
        s.queue(Channel::Email, &["late"]).await;
        worker.waker().notify_one();
        let woke = async {
            while s.email.sent().len() < 26 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(10), woke)
            .await
            .expect("woken by the notify, not the hour-long poll");
        stop.notify_one();
        run.await.unwrap();
        let ids: std::collections::HashSet<_> = s.email.sent().into_iter().map(|s| s.0).collect();
        assert_eq!(ids.len(), 26, "each sent once");
    }
}
