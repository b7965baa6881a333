//! Measures email delivery against a local SMTP server (aiosmtpd, started by
//! `rekey_testkit::smtp::SmtpSink`) and prints messages per second for:
//!
//! - lettre's stock `AsyncSmtpTransport` (pooled), one connection — shows the delayed-ACK stall;
//! - a plain SMTP client (one connection, body and end-of-data marker in one write) — the
//!   server's own accept rate, the ceiling;
//! - [`SmtpMailer`] (TCP_NODELAY), one connection;
//! - the whole outbox drain: messages sealed in an SQLite outbox, claimed, rendered and sent by
//!   the [`Worker`], marked sent — at concurrency 1, 2, 4 and 8 (the default);
//! - the worker alone (a transport that accepts at once): its own cost per message.
//!
//! ```text
//! cargo run --release -p rekey-notify --example smtp_drain [MESSAGES] [worker-only]
//! ```
//!
//! `worker-only` measures just the worker with the null transport (no SMTP server).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use outbox_fixture::{queue_resets, sealer, store_with_ada};
use rekey_core::domain::OutboxState;
use rekey_core::ports::{OsRandom, SystemClock};
use rekey_notify::email::{Sender, SmtpEmail};
use rekey_notify::smtp::{SmtpConfig, SmtpMailer, SmtpTls};
use rekey_notify::{Templates, Transports, Worker, WorkerConfig};
use rekey_testkit::smtp::SmtpSink;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

#[path = "../tests/fixtures/outbox.rs"]
mod outbox_fixture;

fn mail(i: usize) -> Message {
    Message::builder()
        .from("Rekey <rekey@example.com>".parse::<Mailbox>().unwrap())
        .to("ada@example.com".parse().unwrap())
        .subject("Reset password")
        .message_id(Some(format!("<bench-{i}@rekey>")))
        .multipart(MultiPart::alternative_plain_html(
            "Hello Ada,\n\nWe received a password reset request. (Code QX7KM2PA)\n".repeat(8),
            "<p>Hello Ada,</p><p>We received a password reset request.</p>".repeat(8),
        ))
        .unwrap()
}

fn rate(label: &str, n: usize, elapsed: Duration) -> f64 {
    let per_sec = n as f64 / elapsed.as_secs_f64();
    println!(
        "{label:<58} {n:>5} msgs {:>8.1} msg/s {:>7.2} ms/msg",
        per_sec,
        elapsed.as_secs_f64() * 1000.0 / n as f64
    );
    per_sec
}

/// One connection, each message's body and terminator in a single write.
async fn plain_client(port: u16, messages: &[Vec<u8>]) -> Duration {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    async fn reply(read: &mut tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>) {
        loop {
            let mut line = String::new();
            read.read_line(&mut line).await.unwrap();
            assert!(line.starts_with('2') || line.starts_with('3'), "{line}");
            if line.as_bytes().get(3) == Some(&b' ') {
                return;
            }
        }
    }
    reply(&mut read).await;
    write.write_all(b"EHLO bench\r\n").await.unwrap();
    reply(&mut read).await;
    let started = Instant::now();
    for body in messages {
        for command in [
            &b"MAIL FROM:<rekey@example.com>\r\n"[..],
            b"RCPT TO:<ada@example.com>\r\n",
            b"DATA\r\n",
        ] {
            write.write_all(command).await.unwrap();
            reply(&mut read).await;
        }
        let mut data = body.clone();
        data.extend_from_slice(b"\r\n.\r\n");
        write.write_all(&data).await.unwrap();
        reply(&mut read).await;
    }
    started.elapsed()
}

/// Accepts every message at once: the worker's own cost (claim, open, render, mark sent).
struct NullTransport;

#[async_trait::async_trait]
impl rekey_notify::Transport for NullTransport {
    async fn send(&self, _: rekey_notify::Outgoing<'_>) -> Result<(), rekey_notify::SendError> {
        Ok(())
    }
}

/// Drains `n` queued messages to the SMTP server on `port` (or, with `None`, to nowhere).
async fn worker_drain(port: Option<u16>, n: usize, concurrency: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_ada(dir.path(), "en").await;
    let sealer = sealer();
    queue_resets(&store, &sealer, n, "en").await;
    let email: Arc<dyn rekey_notify::Transport> = match port {
        Some(port) => {
            let mut smtp = SmtpConfig::new("127.0.0.1", SmtpTls::None);
            smtp.port = Some(port);
            smtp.max_connections = concurrency;
            Arc::new(SmtpEmail::new(
                Arc::new(SmtpMailer::new(smtp).unwrap()),
                Sender::new(
                    "rekey@example.com",
                    Some("Rekey"),
                    None,
                    "https://id.example.com",
                )
                .unwrap(),
                Arc::new(SystemClock),
            ))
        }
        None => Arc::new(NullTransport),
    };
    let worker = Worker::new(
        store.clone().into(),
        sealer,
        Templates::builtin().unwrap(),
        Transports {
            email: Some(email),
            sms: None,
            webhook: None,
        },
        Arc::new(SystemClock),
        Arc::new(OsRandom),
        WorkerConfig {
            concurrency,
            ..WorkerConfig::default()
        },
    );
    let stop = Arc::new(tokio::sync::Notify::new());
    let started = Instant::now();
    let run = tokio::spawn(worker.run({
        let stop = stop.clone();
        async move { stop.notified().await }
    }));
    loop {
        let pending = store
            .outbox_messages(Some(OutboxState::Pending), 1)
            .await
            .unwrap();
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    stop.notify_one();
    run.await.unwrap();
    let sent = store
        .outbox_messages(Some(OutboxState::Sent), 0)
        .await
        .unwrap();
    assert_eq!(sent.len(), n, "every message sent");
    elapsed
}

/// Runs each measurement `ROUNDS` times, interleaved (so a burst of load elsewhere on the
/// machine hits every candidate alike), and reports the median rate.
const ROUNDS: usize = 3;

fn median(mut rates: Vec<f64>) -> f64 {
    rates.sort_by(f64::total_cmp);
    rates[rates.len() / 2]
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("MESSAGES is a number"))
        .unwrap_or(500);
    if std::env::args().nth(2).as_deref() == Some("worker-only") {
        for concurrency in [1, 8] {
            let label = format!("worker alone (null transport), concurrency {concurrency}");
            rate(&label, n, worker_drain(None, n, concurrency).await);
        }
        return;
    }
    let sink = SmtpSink::start();
    let port = sink.port;
    println!("SMTP sink: aiosmtpd on 127.0.0.1:{port}; {n} messages per run, median of {ROUNDS} interleaved rounds\n");
    let messages: Vec<Vec<u8>> = (0..n).map(|i| mail(i).formatted()).collect();

    // lettre's stock transport is ~50x slower: one short run shows it.
    let stock_n = n.min(100);
    let stock = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .build();
    stock.send(mail(0)).await.unwrap();
    let started = Instant::now();
    for i in 0..stock_n {
        stock.send(mail(i)).await.unwrap();
    }
    rate(
        "lettre AsyncSmtpTransport, 1 connection",
        stock_n,
        started.elapsed(),
    );

    let mut config = SmtpConfig::new("127.0.0.1", SmtpTls::None);
    config.port = Some(port);
    config.max_connections = 1;
    let mailer = SmtpMailer::new(config).unwrap();
    let envelope = mail(0).envelope().clone();
    mailer.send(&envelope, &messages[0]).await.unwrap();

    const DRAINS: [usize; 4] = [1, 2, 4, 8];
    let mut plain = Vec::new();
    let mut ours = Vec::new();
    let mut drains = vec![Vec::new(); DRAINS.len()];
    for round in 1..=ROUNDS {
        println!("round {round}");
        plain.push(rate(
            "  plain client, 1 connection (the server's accept rate)",
            n,
            plain_client(port, &messages).await,
        ));
        let started = Instant::now();
        for m in &messages {
            mailer.send(&envelope, m).await.unwrap();
        }
        ours.push(rate(
            "  rekey SmtpMailer (TCP_NODELAY), 1 connection",
            n,
            started.elapsed(),
        ));
        for (i, concurrency) in DRAINS.into_iter().enumerate() {
            let label = format!("  outbox drain (SQLite + worker), concurrency {concurrency}");
            drains[i].push(rate(
                &label,
                n,
                worker_drain(Some(port), n, concurrency).await,
            ));
        }
    }
    rate(
        "worker alone (null transport), concurrency 8",
        n,
        worker_drain(None, n, 8).await,
    );
    let ceiling = median(plain);
    println!("\nmedians, and ratio to the plain client ({ceiling:.0} msg/s):");
    let ours = median(ours);
    println!(
        "  SmtpMailer, 1 connection:     {ours:>7.0} msg/s  {:>4.0}%",
        100.0 * ours / ceiling
    );
    for (concurrency, rates) in DRAINS.into_iter().zip(drains) {
        let drain = median(rates);
        println!(
            "  outbox drain, concurrency {concurrency}: {drain:>7.0} msg/s  {:>4.0}%",
            100.0 * drain / ceiling
        );
    }
    drop(sink);
}
