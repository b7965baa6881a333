//! Issue 3's speed section, mail side:
//!
//! - (e) outbox drain rate to a local SMTP server (aiosmtpd, `rekey-testkit/smtp_sink.py`)
//!   against that same server's accept rate from a plain SMTP client with the same number of
//!   connections, target ≥ 70 %;
//! - (f) `POST /no_auth/send_password_email` latency for existing vs unknown emails (the
//!   padded deadline must hide which is which), target |median difference| ≤ 5 ms; once on a
//!   quiet database and once with a competing writer that keeps taking the lock the existing
//!   path needs (SQLite: the database's write lock; PostgreSQL: the bench users' rows) for
//!   20 ms at a time (issue 7).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rekey::app;
use rekey::config::{Settings, SmtpTls};
use rekey_core::domain::UserId;
use rekey_core::domain::{Channel, OutboxState};
use rekey_core::flows::{Caller, Delivery};
use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
use tokio::runtime::Handle;

use crate::servers::{self, RekeyServer};

/// The aiosmtpd sink of the test kit in a child process; both measurements use this one server.
pub struct Sink {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Sink {
    pub fn start() -> anyhow::Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rekey-testkit/smtp_sink.py");
        let dir = tempfile::tempdir().context("sink directory")?;
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.path())
            .args(["--port", "0"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("starting python3 smtp_sink.py (needs `python3 -m pip install aiosmtpd`)")?;
        let mut line = String::new();
        let stdout = child.stdout.take().context("sink stdout")?;
        BufReader::new(stdout).read_line(&mut line)?;
        let port = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .with_context(|| format!("the SMTP sink did not start: {line:?}"))?;
        Ok(Self { child, port, dir })
    }

    /// Where the sink writes the messages it accepts (`1.eml`, `2.eml`, …).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The first message the sink accepted (as received), to replay byte for byte.
    fn first_message(&self) -> anyhow::Result<Vec<u8>> {
        let path: PathBuf = self.dir.path().join("1.eml");
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Lines = tokio::io::BufReader<tokio::net::tcp::OwnedReadHalf>;

async fn reply(read: &mut Lines) -> anyhow::Result<()> {
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await? == 0 {
            anyhow::bail!("SMTP server closed the connection");
        }
        if !(line.starts_with('2') || line.starts_with('3')) {
            anyhow::bail!("SMTP server answered {line:?}");
        }
        if line.as_bytes().get(3) == Some(&b' ') {
            return Ok(());
        }
    }
}

/// One plain SMTP connection (no pipelining): `count` messages, each MAIL/RCPT/DATA awaited, the
/// body and its terminator in one write.
async fn plain_connection(port: u16, body: Arc<Vec<u8>>, count: usize) -> anyhow::Result<()> {
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    stream.set_nodelay(true)?;
    let (read, mut write) = stream.into_split();
    let mut read = tokio::io::BufReader::new(read);
    reply(&mut read).await?;
    write.write_all(b"EHLO bench\r\n").await?;
    reply(&mut read).await?;
    let mut data = body.to_vec();
    if !data.ends_with(b"\r\n") {
        data.extend_from_slice(b"\r\n");
    }
    data.extend_from_slice(b".\r\n");
    for _ in 0..count {
        for command in [
            &b"MAIL FROM:<rekey@example.com>\r\n"[..],
            b"RCPT TO:<user0@bench-0.example>\r\n",
            b"DATA\r\n",
        ] {
            write.write_all(command).await?;
            reply(&mut read).await?;
        }
        write.write_all(&data).await?;
        reply(&mut read).await?;
    }
    write.write_all(b"QUIT\r\n").await?;
    Ok(())
}

/// `n` messages over `connections` plain connections → messages per second.
async fn plain_rate(port: u16, body: &[u8], n: usize, connections: usize) -> anyhow::Result<f64> {
    let body = Arc::new(body.to_vec());
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let count = n / connections + usize::from(c < n % connections);
        tasks.spawn(plain_connection(port, body.clone(), count));
    }
    while let Some(done) = tasks.join_next().await {
        done.context("plain SMTP client task")??;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

pub struct MailReport {
    pub database: String,
    pub messages: usize,
    pub concurrency: usize,
    pub ceiling: Vec<f64>,
    pub drain: Vec<f64>,
    pub existing: Vec<f64>,
    pub unknown: Vec<f64>,
    pub no_auth_failures: usize,
    /// (f) again while a competing writer holds the lock the existing path needs.
    pub existing_busy: Vec<f64>,
    pub unknown_busy: Vec<f64>,
    pub busy_failures: usize,
    /// Lock holds the competing writer completed during the busy run.
    pub busy_holds: usize,
    pub no_auth_clients: usize,
    pub deadline_ms: u64,
}

pub struct MailArgs {
    pub messages: usize,
    pub rounds: usize,
    pub samples: usize,
    pub clients: usize,
}

/// Queues `n` reset emails (admin-requested, sent by email) spread over the users.
async fn queue(rekey: &RekeyServer, n: usize) -> anyhow::Result<()> {
    let core = rekey.rekey.clone();
    let first = rekey.users.first().context("no users")?;
    let token = SecretString::from(first.admin_token.to_string());
    let principal = core
        .authenticate(&token)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let caller = Caller {
        principal: Some(principal),
        ip: Some("127.0.0.1".to_owned()),
        request_id: None,
    };
    let ids: Vec<UserId> = rekey
        .users
        .iter()
        .map(|u| UserId::parse(u.user_id.clone()).map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<_>>()?;
    let workers = 8;
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (core, caller, ids) = (core.clone(), caller.clone(), ids.clone());
        tasks.spawn(async move {
            // Worker w takes users i ≡ w (mod workers): no two share a user row.
            let mine: Vec<&UserId> = ids.iter().skip(w).step_by(workers).collect();
            let count = n / workers + usize::from(w < n % workers);
            for k in 0..count {
                let user = mine[k % mine.len()];
                core.request_password_reset(
                    &caller,
                    user,
                    Delivery::Send {
                        channel: Channel::Email,
                        url_template: None,
                    },
                )
                .await
                .map_err(|e| anyhow::anyhow!("queueing a reset: {e}"))?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.context("queue task")??;
    }
    Ok(())
}

/// Starts the worker `serve` builds from `settings`, times until no message is pending, stops it.
async fn drain(settings: &Settings, rekey: &RekeyServer, n: usize) -> anyhow::Result<f64> {
    let store = rekey.deps.store.clone();
    let sent_before = store
        .outbox_messages(Some(OutboxState::Sent), 0)
        .await?
        .len();
    let (worker, mailer) = app::outbox_worker(settings, &rekey.deps)?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let started = Instant::now();
    let run = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    let deadline = started + Duration::from_secs(600);
    loop {
        if store
            .outbox_messages(Some(OutboxState::Pending), 1)
            .await?
            .is_empty()
        {
            break;
        }
        if Instant::now() > deadline {
            anyhow::bail!("the outbox did not drain in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    run.await.context("worker task")?;
    if let Some(mailer) = mailer {
        mailer.close().await;
    }
    let sent = store
        .outbox_messages(Some(OutboxState::Sent), 0)
        .await?
        .len();
    if sent - sent_before != n {
        anyhow::bail!("drain: {} of {n} messages marked sent", sent - sent_before);
    }
    Ok(n as f64 / elapsed.as_secs_f64())
}

/// Everything for one database: Rekey with SMTP to `sink`, (e) in interleaved rounds, then (f)
/// with the worker running as under `serve`.
pub async fn bench_mail(
    args: &MailArgs,
    server: &Handle,
    url: &str,
    data_dir: &Path,
    sink: &Sink,
    database: String,
) -> anyhow::Result<MailReport> {
    let mut settings = Settings {
        database_url: Some(url.to_owned()),
        data_dir: data_dir.to_path_buf(),
        ..Settings::default()
    };
    settings.smtp.host = Some("127.0.0.1".to_owned());
    settings.smtp.port = Some(sink.port);
    settings.smtp.tls = SmtpTls::None;
    // Limits out of the way: every request below must really issue (no 429, no silent skip).
    settings.limits.messages_per_user_per_hour = 1_000_000;
    settings.limits.unauth_per_cname_email_per_hour = 1_000_000;
    settings.limits.unauth_per_ip_per_minute = 1_000_000;
    let clients = args.clients.max(1);
    let users = (args.samples.div_ceil(clients) * clients).max(64);
    let start_settings = settings.clone();
    let rekey: RekeyServer = crate::on(server, async move {
        servers::start_rekey(start_settings, 1, users).await
    })
    .await
    .context("starting Rekey for the mail phases")?;
    let rekey = Arc::new(rekey);
    let result = mail_phases(args, server, &settings, rekey.clone(), sink, database).await;
    let rekey = Arc::into_inner(rekey).context("Rekey still shared")?;
    let RekeyServer { running, .. } = rekey;
    crate::on(server, async move { running.stop().await }).await?;
    result
}

async fn mail_phases(
    args: &MailArgs,
    server: &Handle,
    settings: &Settings,
    rekey: Arc<RekeyServer>,
    sink: &Sink,
    database: String,
) -> anyhow::Result<MailReport> {
    let concurrency = settings.outbox.concurrency.max(1);
    let n = args.messages;
    // Warm-up: a few messages through the whole path; its first message is the body the plain
    // client replays, so both send the same bytes.
    {
        let (s, r) = (settings.clone(), rekey.clone());
        crate::on(server, async move {
            queue(&r, 16).await?;
            drain(&s, &r, 16).await
        })
        .await
        .context("mail warm-up")?;
    }
    let body = sink.first_message()?;
    let port = sink.port;
    plain_rate(port, &body, 16, concurrency).await?;
    let (mut ceiling, mut drained) = (Vec::new(), Vec::new());
    for round in 0..args.rounds.max(1) {
        eprintln!("rekey-bench:   mail round {}", round + 1);
        ceiling.push(plain_rate(port, &body, n, concurrency).await?);
        let r = rekey.clone();
        crate::on(server, async move { queue(&r, n).await }).await?;
        let (s, r) = (settings.clone(), rekey.clone());
        drained.push(crate::on(server, async move { drain(&s, &r, n).await }).await?);
    }

    // (f): the worker runs as under `serve`, so the existing path does all it does in production.
    let (s, r) = (settings.clone(), rekey.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = crate::on(server, async move {
        let (worker, _mailer) = app::outbox_worker(&s, &r.deps)?;
        Ok(tokio::spawn(worker.run(async move {
            let _ = stopped.await;
        })))
    })
    .await?;
    let quiet = no_auth(args, &rekey, "").await;
    let busy = match &quiet {
        Ok(_) => {
            let url = settings.database_url.clone().unwrap_or_default();
            let (halt, halted) = tokio::sync::watch::channel(false);
            let writer = crate::on(server, async move {
                Ok(tokio::spawn(competing_writer(url, halted)))
            })
            .await?;
            let result = no_auth(args, &rekey, "busy-").await;
            let _ = halt.send(true);
            let holds = writer.await.context("competing writer task")??;
            result.map(|r| (r, holds))
        }
        Err(_) => Err(anyhow::anyhow!("skipped")),
    };
    let _ = stop.send(());
    worker.await.context("worker task")?;
    let (existing, unknown, failures) = quiet?;
    let ((existing_busy, unknown_busy, busy_failures), busy_holds) = busy?;
    Ok(MailReport {
        database,
        messages: n,
        concurrency,
        ceiling,
        drain: drained,
        existing,
        unknown,
        no_auth_failures: failures,
        existing_busy,
        unknown_busy,
        busy_failures,
        busy_holds,
        no_auth_clients: args.clients,
        deadline_ms: settings.unauth_deadline_ms,
    })
}

/// Until `halt`, takes the lock an existing account's reset needs and holds it 20 ms, with
/// 5 ms between holds: SQLite's write lock (`BEGIN IMMEDIATE`), or on PostgreSQL the rows of
/// every user (`FOR UPDATE`). Returns how many holds it completed.
async fn competing_writer(
    url: String,
    mut halt: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<usize> {
    use sqlx::Connection;
    let hold = Duration::from_millis(20);
    let gap = Duration::from_millis(5);
    let mut holds = 0usize;
    if url.starts_with("sqlite") {
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        while !*halt.borrow_and_update() {
            sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await?;
            tokio::time::sleep(hold).await;
            sqlx::query("COMMIT").execute(&mut conn).await?;
            holds += 1;
            tokio::time::sleep(gap).await;
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(&url).await?;
        while !*halt.borrow_and_update() {
            sqlx::query("BEGIN").execute(&mut conn).await?;
            sqlx::query("SELECT id FROM users FOR UPDATE")
                .fetch_all(&mut conn)
                .await?;
            tokio::time::sleep(hold).await;
            sqlx::query("COMMIT").execute(&mut conn).await?;
            holds += 1;
            tokio::time::sleep(gap).await;
        }
    }
    Ok(holds)
}

/// `clients` closed-loop clients, each alternating existing and unknown emails; latencies in ms.
/// `prefix` keeps a second run's unknown emails apart from the first's.
async fn no_auth(
    args: &MailArgs,
    rekey: &RekeyServer,
    prefix: &'static str,
) -> anyhow::Result<(Vec<f64>, Vec<f64>, usize)> {
    let client = crate::load::client()?;
    let url = rekey.running.url("/no_auth/send_password_email")?;
    let clients = args.clients.max(1);
    let per_client = args.samples.div_ceil(clients);
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..clients {
        let (client, url) = (client.clone(), url.clone());
        tasks.spawn(async move {
            let (mut existing, mut unknown, mut failures) = (Vec::new(), Vec::new(), 0usize);
            for k in 0..per_client {
                let i = c + k * clients;
                for known in [k % 2 == 0, k % 2 != 0] {
                    let email = if known {
                        format!("user{i}@bench-0.example")
                    } else {
                        format!("{prefix}nobody{i}@bench-0.example")
                    };
                    let body = serde_json::json!({ "cname": "bench-0.example", "email": email });
                    let started = Instant::now();
                    let response = client.post(url.clone()).json(&body).send().await;
                    let ok = match response {
                        Ok(r) => {
                            let ok = r.status().is_success();
                            let _ = r.bytes().await;
                            ok
                        }
                        Err(_) => false,
                    };
                    let ms = started.elapsed().as_secs_f64() * 1000.0;
                    if !ok {
                        failures += 1;
                    }
                    if known {
                        existing.push(ms);
                    } else {
                        unknown.push(ms);
                    }
                }
            }
            (existing, unknown, failures)
        });
    }
    let (mut existing, mut unknown, mut failures) = (Vec::new(), Vec::new(), 0);
    while let Some(done) = tasks.join_next().await {
        let (e, u, f) = done.context("no_auth client")?;
        existing.extend(e);
        unknown.extend(u);
        failures += f;
    }
    Ok((existing, unknown, failures))
}

/// Percentile `p` of unsorted milliseconds; NaN (printed as such) when there are none.
fn percentile(values: &[f64], p: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    crate::stats::percentile(&sorted, p).unwrap_or(f64::NAN)
}

fn median(values: &[f64]) -> f64 {
    percentile(values, 50.0)
}

fn list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.0}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn verdict(pass: bool) -> &'static str {
    if pass {
        "PASS"
    } else {
        "MISS"
    }
}

pub fn markdown(reports: &[MailReport]) -> String {
    let mut out = String::new();
    out.push_str("| database | (e) plain client msg/s (rounds) | (e) outbox drain msg/s (rounds) | ratio of medians | target ≥ 70 % |\n|---|---|---|---|---|\n");
    for r in reports {
        let (c, d) = (median(&r.ceiling), median(&r.drain));
        out.push_str(&format!(
            "| {} | {:.0} ({}) | {:.0} ({}) | {:.0} % | {} |\n",
            r.database,
            c,
            list(&r.ceiling),
            d,
            list(&r.drain),
            100.0 * d / c,
            verdict(d / c >= 0.70)
        ));
    }
    out.push('\n');
    out.push_str("| database | (f) class | samples | p50 ms | p90 ms | p99 ms | max ms | non-2xx |\n|---|---|---|---|---|---|---|---|\n");
    for r in reports {
        for (class, values, failures) in [
            ("existing", &r.existing, r.no_auth_failures.to_string()),
            ("unknown", &r.unknown, "(both)".to_owned()),
            (
                "existing, competing writer",
                &r.existing_busy,
                r.busy_failures.to_string(),
            ),
            (
                "unknown, competing writer",
                &r.unknown_busy,
                "(both)".to_owned(),
            ),
        ] {
            let max = values.iter().copied().fold(f64::NAN, f64::max);
            out.push_str(&format!(
                "| {} | {class} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {} |\n",
                r.database,
                values.len(),
                percentile(values, 50.0),
                percentile(values, 90.0),
                percentile(values, 99.0),
                max,
                failures
            ));
        }
    }
    out.push('\n');
    for r in reports {
        let busy_diff = (median(&r.existing_busy) - median(&r.unknown_busy)).abs();
        out.push_str(&format!(
            "- {}: (f) with a competing writer ({} lock holds of 20 ms during the run): |median existing − median unknown| = {:.2} ms, p99 existing {:.1} ms vs unknown {:.1} ms: **{}**\n",
            r.database,
            r.busy_holds,
            busy_diff,
            percentile(&r.existing_busy, 99.0),
            percentile(&r.unknown_busy, 99.0),
            verdict(busy_diff <= 5.0 && r.busy_failures == 0),
        ));
    }
    for r in reports {
        let diff = (median(&r.existing) - median(&r.unknown)).abs();
        out.push_str(&format!(
            "- {}: (e) {} messages per round, {} SMTP connections / worker concurrency {}; (f) {} clients, deadline {} ms, |median existing − median unknown| = {:.2} ms (target ≤ 5 ms): **{}**; (e) **{}**\n",
            r.database,
            r.messages,
            r.concurrency,
            r.concurrency,
            r.no_auth_clients,
            r.deadline_ms,
            diff,
            verdict(diff <= 5.0 && r.no_auth_failures == 0),
            verdict(median(&r.drain) / median(&r.ceiling) >= 0.70),
        ));
    }
    out
}
