//! The worker end to end: a real store (an SQLite file), sealed messages as the core writes
//! them, the real SMTP transport and a real SMTP server — including an SMTP outage.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use rekey_core::crypto::Sealer;
use rekey_core::domain::{OutboxMessage, OutboxState};
use rekey_core::ports::store::Store;
use rekey_core::ports::{OsRandom, Random, SystemClock};
use rekey_notify::email::{Sender, SmtpEmail};
use rekey_notify::smtp::{SmtpConfig, SmtpMailer, SmtpTls};
use rekey_notify::{Templates, Transports, Worker, WorkerConfig};
use tokio::sync::Notify;

use crate::outbox_fixture::{queue_resets, sealer, store_with_ada, QUEUED_CODE};
use crate::sink::{SinkTls, SmtpSink};
use rekey_testkit::free_port;

struct Setup {
    store: Arc<dyn Store>,
    sealer: Sealer,
    _dir: tempfile::TempDir,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    Setup {
        store: store_with_ada(dir.path(), "de").await,
        sealer: sealer(),
        _dir: dir,
    }
}

impl Setup {
    async fn queue(&self, count: usize) {
        queue_resets(&self.store, &self.sealer, count, "de").await;
    }

    fn worker(&self, smtp_port: u16, config: WorkerConfig) -> Worker {
        let mut smtp = SmtpConfig::new("127.0.0.1", SmtpTls::None);
        smtp.port = Some(smtp_port);
        smtp.timeout = Duration::from_secs(5);
        smtp.max_connections = config.concurrency;
        let email = SmtpEmail::new(
            Arc::new(SmtpMailer::new(smtp).unwrap()),
            Sender::new(
                "rekey@example.com",
                Some("Rekey"),
                None,
                "https://id.example.com",
            )
            .unwrap(),
            Arc::new(SystemClock),
        );
        let rng: Arc<dyn Random> = Arc::new(OsRandom);
        Worker::new(
            self.store.clone().into(),
            self.sealer.clone(),
            Templates::builtin().unwrap(),
            Transports {
                email: Some(Arc::new(email)),
                sms: None,
                webhook: None,
            },
            Arc::new(SystemClock),
            rng,
            config,
        )
    }

    async fn all(&self) -> Vec<OutboxMessage> {
        self.store.outbox_messages(None, 0).await.unwrap()
    }
}

fn config() -> WorkerConfig {
    WorkerConfig {
        poll: Duration::from_millis(25),
        lease: Duration::from_secs(30),
        max_attempts: 8,
        backoff: Duration::from_millis(100),
        concurrency: 4,
        ..WorkerConfig::default()
    }
}

/// Runs the worker until `done` says so (checked every 25 ms, at most 15 s), then stops it.
async fn run_until(worker: Worker, done: impl AsyncFn() -> bool) {
    let stop = Arc::new(Notify::new());
    let run = tokio::spawn(worker.run({
        let stop = stop.clone();
        async move { stop.notified().await }
    }));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done().await && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    stop.notify_one();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the worker stops")
        .unwrap();
}

#[tokio::test]
async fn queued_messages_arrive_once_each_and_their_bodies_are_erased() {
    let sink = SmtpSink::start();
    let s = setup().await;
    s.queue(40).await;
    run_until(s.worker(sink.port, config()), async || {
        sink.received().len() >= 40
    })
    .await;

    let got = sink.received();
    assert_eq!(got.len(), 40);
    let ids: HashSet<String> = got.iter().map(|m| m.header("Message-ID")).collect();
    assert_eq!(ids.len(), 40, "one distinct Message-ID per message");
    assert!(ids.contains("<m00000.t1@id.example.com>"));
    assert_eq!(
        got[0].header("Subject"),
        "Passwort zurücksetzen",
        "the user's language"
    );
    assert!(got[0].part("text/plain").contains(QUEUED_CODE));

    let all = s.all().await;
    assert!(all
        .iter()
        .all(|m| m.state == OutboxState::Sent && m.body.is_empty() && m.sent_at.is_some()));
}

#[tokio::test]
async fn an_smtp_outage_delays_delivery_without_losing_or_doubling_messages() {
    let port = free_port();
    let s = setup().await;
    s.queue(3).await;
    let worker = s.worker(port, config());

    // SMTP is down: every attempt fails and is rescheduled with backoff.
    let outcomes = worker.run_once().await.unwrap();
    assert_eq!(outcomes.len(), 3);
    for m in s.all().await {
        assert_eq!((m.state, m.attempts), (OutboxState::Pending, 1));
        let error = m.last_error.unwrap();
        assert!(error.starts_with("smtp: cannot connect"), "{error}");
        assert!(!m.body.is_empty());
    }
    let counted = |worker: &Worker| {
        worker
            .deliveries()
            .into_iter()
            .filter(|(_, _, n)| *n > 0)
            .map(|(channel, outcome, n)| (channel.as_str(), outcome.as_str(), n))
            .collect::<Vec<_>>()
    };
    assert_eq!(counted(&worker), [("email", "retry", 3)]);

    // It comes back: the retries deliver each message once.
    let sink = SmtpSink::start_with(port, SinkTls::None, None);
    let watched = worker.clone();
    run_until(worker, async || sink.received().len() >= 3).await;
    assert_eq!(
        counted(&watched),
        [("email", "sent", 3), ("email", "retry", 3)]
    );
    let got = sink.received();
    let ids: HashSet<String> = got.iter().map(|m| m.header("Message-ID")).collect();
    assert_eq!(got.len(), 3);
    assert_eq!(ids.len(), 3);
    for m in s.all().await {
        assert_eq!(m.state, OutboxState::Sent);
        assert!(m.attempts >= 2);
        assert_eq!(m.last_error, None);
    }
}
