//! Email over a real SMTP conversation: headers, parts, Message-ID, TLS modes, AUTH, the
//! server's replies, outages, and the delayed-ACK stall.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rekey_core::domain::Channel;
use rekey_core::ports::ManualClock;
use rekey_notify::email::{Sender, SmtpEmail};
use rekey_notify::smtp::{SmtpConfig, SmtpMailer, SmtpTls};
use rekey_notify::Transport;
use secrecy::SecretString;

use crate::sink::{SinkTls, SmtpSink};
use crate::{at, Fixture, CODE, LINK};
use rekey_testkit::free_port;

fn config(port: u16, tls: SmtpTls) -> SmtpConfig {
    let mut config = SmtpConfig::new("127.0.0.1", tls);
    config.port = Some(port);
    config.accept_invalid_certs = true;
    config.timeout = Duration::from_secs(5);
    config
}

fn email_with(config: SmtpConfig) -> SmtpEmail {
    SmtpEmail::new(
        Arc::new(SmtpMailer::new(config).unwrap()),
        Sender::new(
            "rekey@example.com",
            Some("Rekey Test"),
            Some("helpdesk@example.com"),
            "https://id.example.com/rekey",
        )
        .unwrap(),
        Arc::new(ManualClock::new(at())),
    )
}

fn email(port: u16) -> SmtpEmail {
    email_with(config(port, SmtpTls::None))
}

#[tokio::test]
async fn the_mail_arrives_with_headers_both_parts_and_a_stable_message_id() {
    let sink = SmtpSink::start();
    let email = email(sink.port);
    let fixture = Fixture::new("m1", Channel::Email, "ada@example.com");
    email.send(fixture.outgoing()).await.unwrap();
    // A retry of the same outbox message (as after a crash before the commit).
    email.send(fixture.outgoing()).await.unwrap();

    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2);
    let mail = &got[0];
    assert_eq!(mail.mail_from, "rekey@example.com");
    assert_eq!(mail.rcpt_tos, ["ada@example.com"]);
    assert_eq!(mail.header("Message-ID"), "<m1.t1@id.example.com>");
    assert_eq!(got[1].header("Message-ID"), "<m1.t1@id.example.com>");
    assert_eq!(mail.header("From"), "\"Rekey Test\" <rekey@example.com>");
    assert_eq!(mail.header("Reply-To"), "helpdesk@example.com");
    assert_eq!(mail.header("To"), "\"Ada Lovelace\" <ada@example.com>");
    assert_eq!(mail.header("Subject"), "Reset password");
    assert!(mail.header("Date").contains("1 May 2026 08:00:00"));

    let parsed = mail.parsed();
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let types: Vec<_> = parsed
        .subparts
        .iter()
        .map(|p| p.ctype.mimetype.clone())
        .collect();
    assert_eq!(
        types,
        ["text/plain", "text/html"],
        "plain first, HTML preferred"
    );
    let text = mail.part("text/plain");
    assert!(text.starts_with("Hello Ada Lovelace,"), "{text}");
    assert!(text.contains(&format!("(Code {CODE})")));
    assert!(text.contains(LINK), "the link, intact: {text}");
    let html = mail.part("text/html");
    assert!(html.contains("<p>Hello Ada Lovelace,</p>"));
    assert!(html.contains("code=QX7KM2PA&amp;orgID=t1"), "{html}");
}

#[tokio::test]
async fn one_pooled_connection_has_no_delayed_ack_stall() {
    // With the body and the end-of-data marker in separate writes and Nagle on, every message
    // waits ~40 ms for the server's delayed ACK (Linux's minimum delayed-ACK timer); with
    // TCP_NODELAY it takes a few ms. The stall is a floor under *every* message, so the fastest
    // of 30 tells it apart even on a loaded machine, where the total time says little.
    let sink = SmtpSink::start();
    let mut config = config(sink.port, SmtpTls::None);
    config.max_connections = 1;
    let email = email_with(config);
    let fixture = Fixture::new("warm", Channel::Email, "ada@example.com");
    email.send(fixture.outgoing()).await.unwrap(); // connect outside the timing
    let mut fastest = Duration::MAX;
    for i in 0..30 {
        let fixture = Fixture::new(&format!("m{i}"), Channel::Email, "ada@example.com");
        let started = Instant::now();
        email.send(fixture.outgoing()).await.unwrap();
        fastest = fastest.min(started.elapsed());
    }
    assert_eq!(sink.wait_for(31).await.len(), 31);
    assert!(
        fastest < Duration::from_millis(25),
        "the fastest of 30 messages on one connection took {fastest:?}: the delayed-ACK stall is back"
    );
}

#[tokio::test]
async fn server_replies_decide_retry_or_park_and_name_no_address() {
    let sink = SmtpSink::start();
    let email = email(sink.port);
    let rejected = Fixture::new("m1", Channel::Email, "reject@example.com");
    let err = email.send(rejected.outgoing()).await.unwrap_err();
    assert!(err.permanent, "{err:?}");
    assert_eq!(err.reason, "smtp: server replied 550");
    let later = Fixture::new("m2", Channel::Email, "tempfail@example.com");
    let err = email.send(later.outgoing()).await.unwrap_err();
    assert!(!err.permanent, "{err:?}");
    assert_eq!(err.reason, "smtp: server replied 451");
    // The connection that saw the errors is gone; the next message goes through.
    let fine = Fixture::new("m3", Channel::Email, "ada@example.com");
    email.send(fine.outgoing()).await.unwrap();
    assert_eq!(sink.wait_for(1).await.len(), 1);
}

#[tokio::test]
async fn an_smtp_outage_is_transient_and_a_restarted_server_is_reconnected() {
    let port = free_port();
    let email = email(port);
    let fixture = Fixture::new("m1", Channel::Email, "ada@example.com");
    let err = email.send(fixture.outgoing()).await.unwrap_err();
    assert!(!err.permanent);
    assert!(err.reason.starts_with("smtp: cannot connect"), "{err:?}");

    let first = SmtpSink::start_with(port, SinkTls::None, None);
    email.send(fixture.outgoing()).await.unwrap();
    assert_eq!(first.wait_for(1).await.len(), 1);
    drop(first); // the pooled connection dies with the server
    let second = SmtpSink::start_with(port, SinkTls::None, None);
    email.send(fixture.outgoing()).await.unwrap();
    assert_eq!(second.wait_for(1).await.len(), 1, "reconnected, no error");
}

async fn send_over_tls(sink_tls: SinkTls, tls: SmtpTls) {
    let sink = SmtpSink::start_with(0, sink_tls, Some("mailer:s3cret"));
    let mut config = config(sink.port, tls);
    config.username = Some("mailer".to_owned());
    config.password = Some(SecretString::from("s3cret"));
    let email = email_with(config.clone());
    for id in ["m1", "m2"] {
        let fixture = Fixture::new(id, Channel::Email, "ada@example.com");
        email.send(fixture.outgoing()).await.unwrap();
    }
    let got = sink.wait_for(2).await;
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("Message-ID"), "<m2.t1@id.example.com>");

    config.password = Some(SecretString::from("wrong"));
    let fixture = Fixture::new("m3", Channel::Email, "ada@example.com");
    let err = email_with(config)
        .send(fixture.outgoing())
        .await
        .unwrap_err();
    assert!(err.permanent, "535 authentication failed: {err:?}");
    assert!(!err.reason.contains("wrong"));
}

#[tokio::test]
async fn starttls_with_auth() {
    send_over_tls(SinkTls::StartTls, SmtpTls::StartTls).await;
}

#[tokio::test]
async fn implicit_tls_with_auth() {
    send_over_tls(SinkTls::Implicit, SmtpTls::Tls).await;
}

#[tokio::test]
async fn starttls_required_but_not_offered_is_refused() {
    let sink = SmtpSink::start();
    let email = email_with(config(sink.port, SmtpTls::StartTls));
    let fixture = Fixture::new("m1", Channel::Email, "ada@example.com");
    let err = email.send(fixture.outgoing()).await.unwrap_err();
    assert_eq!(err.reason, "smtp: the server does not offer STARTTLS");
    assert!(sink.received().is_empty(), "nothing sent in the clear");
}

/// A server that speaks SMTP up to the end of the message data and then never answers — not
/// to the data, not to QUIT. Each accepted connection is held open until the test ends.
async fn silent_after_data_server() -> (u16, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            let (read, mut write) = stream.into_split();
            let mut lines = BufReader::new(read).lines();
            write.write_all(b"220 silent.test ESMTP\r\n").await.unwrap();
            let mut in_data = false;
            while let Ok(Some(line)) = lines.next_line().await {
                if in_data {
                    if line == "." {
                        break; // the message is complete: from here on, silence
                    }
                    continue;
                }
                let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                let reply: &[u8] = match verb.as_str() {
                    "EHLO" | "HELO" => b"250 silent.test\r\n",
                    "DATA" => {
                        in_data = true;
                        b"354 go ahead\r\n"
                    }
                    _ => b"250 ok\r\n",
                };
                write.write_all(reply).await.unwrap();
            }
            held.push((lines, write));
        }
    });
    (port, task)
}

/// A server that accepts the message and then goes silent costs one bounded attempt: the send
/// fails (transient) within its timeout — the `QUIT` that follows a failure must not wait
/// forever either — so delivery goes on and shutdown is not held up.
#[tokio::test]
async fn a_silent_server_costs_a_bounded_time() {
    let (port, server) = silent_after_data_server().await;
    let mut cfg = config(port, SmtpTls::None);
    cfg.timeout = Duration::from_millis(500);
    let mailer = Arc::new(SmtpMailer::new(cfg).unwrap());
    let email = SmtpEmail::new(
        mailer.clone(),
        Sender::new("rekey@example.com", None, None, "https://id.example.com").unwrap(),
        Arc::new(ManualClock::new(at())),
    );
    let fx = Fixture::new("m-silent", Channel::Email, "ada@example.com");
    let started = Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(5), email.send(fx.outgoing()))
        .await
        .expect("the send must give up, not hang")
        .unwrap_err();
    assert!(!err.permanent, "{err:?}");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "{:?}",
        started.elapsed()
    );
    tokio::time::timeout(Duration::from_secs(3), mailer.close())
        .await
        .expect("closing the mailer is bounded");
    server.abort();
}
