//! Measures email delivery against a local SMTP server (`tests/smtp_sink.py`, aiosmtpd, which
//! must be installed) and prints messages per second for:
//!
//! 1. a plain SMTP client (one connection, body and end-of-data marker in one write) — the
//!    server's own accept rate, the ceiling;
//! 2. lettre's stock `AsyncSmtpTransport` (pooled), one connection — shows the delayed-ACK stall;
//! 3. [`SmtpMailer`] (TCP_NODELAY), one connection;
//! 4. the whole outbox drain: messages sealed in an SQLite outbox, claimed, rendered and sent by
//!    the [`Worker`], marked sent — at concurrency 1, 2, 4 and 8 (the default).
//!
//! ```text
//! cargo run --release -p rekey-notify --example smtp_drain [MESSAGES]
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lettre::message::{Mailbox, MultiPart};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use outbox_fixture::{queue_resets, sealer, store_with_ada};
use rekey_core::clock::{OsRandom, SystemClock};
use rekey_core::model::OutboxState;
use rekey_notify::email::{Sender, SmtpEmail};
use rekey_notify::smtp::{SmtpConfig, SmtpMailer, SmtpTls};
use rekey_notify::{Templates, Transports, Worker, WorkerConfig};
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

async fn worker_drain(port: u16, n: usize, concurrency: usize) -> Duration {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_ada(dir.path(), "en").await;
    let sealer = sealer();
    queue_resets(&store, &sealer, n, "en").await;
    let mut smtp = SmtpConfig::new("127.0.0.1", SmtpTls::None);
    smtp.port = Some(port);
    smtp.max_connections = concurrency;
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
    let worker = Worker::new(
        store.clone(),
        sealer,
        Templates::builtin().unwrap(),
        Transports {
            email: Some(Arc::new(email)),
            sms: None,
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

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("MESSAGES is a number"))
        .unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/smtp_sink.py");
    let mut sink = Command::new("python3")
        .arg(script)
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 tests/smtp_sink.py (pip install aiosmtpd)");
    let mut line = String::new();
    BufReader::new(sink.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().strip_prefix("PORT ").unwrap().parse().unwrap();
    println!("SMTP sink: aiosmtpd on 127.0.0.1:{port}\n");

    let messages: Vec<Vec<u8>> = (0..n).map(|i| mail(i).formatted()).collect();
    let ceiling = rate(
        "1. plain client, 1 connection (server accept rate)",
        n,
        plain_client(port, &messages).await,
    );

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
        "2. lettre AsyncSmtpTransport, 1 connection",
        stock_n,
        started.elapsed(),
    );

    let mut config = SmtpConfig::new("127.0.0.1", SmtpTls::None);
    config.port = Some(port);
    config.max_connections = 1;
    let mailer = SmtpMailer::new(config).unwrap();
    let first = mail(0);
    mailer.send(first.envelope(), &messages[0]).await.unwrap();
    let started = Instant::now();
    for m in &messages {
        mailer.send(first.envelope(), m).await.unwrap();
    }
    let one = rate(
        "3. rekey SmtpMailer (TCP_NODELAY), 1 connection",
        n,
        started.elapsed(),
    );

    let mut drains = Vec::new();
    for concurrency in [1, 2, 4, 8] {
        let label = format!("4. outbox drain (SQLite, worker), concurrency {concurrency}");
        drains.push((
            concurrency,
            rate(&label, n, worker_drain(port, n, concurrency).await),
        ));
    }
    println!("\nratios to the plain client (1.):");
    println!("  SmtpMailer, 1 connection: {:.0}%", 100.0 * one / ceiling);
    for (concurrency, drain) in drains {
        println!(
            "  outbox drain, concurrency {concurrency}: {:.0}%",
            100.0 * drain / ceiling
        );
    }
    let _ = sink.kill();
    let _ = sink.wait();
}
