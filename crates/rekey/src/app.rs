//! Wiring: settings → store, keys, hasher, flows, router; and the server's life cycle.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rekey_api::metrics::{DeliveryCounts, Metrics};
use rekey_api::serve::ServeOptions;
use rekey_api::{AppState, ServeSettings};
use rekey_core::crypto::CodeMac;
use rekey_core::crypto::PasswordHasher;
use rekey_core::crypto::Sealer;
use rekey_core::flows::{Deps, Rekey};
use rekey_core::ports::{OsRandom, Random, SystemClock};
use rekey_notify::email::{Sender, SmtpEmail};
use rekey_notify::mail_dir::MailDir;
use rekey_notify::sms::{self, TwilioSms, WebhookSms};
use rekey_notify::smtp::SmtpMailer;
use rekey_notify::webhook::EventWebhook;
use rekey_notify::{Templates, Transport, Transports, Worker, WorkerConfig};
use secrecy::ExposeSecret;

use crate::config::{Settings, SmsProvider};
use crate::key_files::{self, Ring};

/// Connects the store (applying migrations) and builds the flows.
pub async fn build(settings: &Settings) -> anyhow::Result<Arc<Rekey>> {
    let deps = deps(settings).await?;
    Ok(Arc::new(Rekey::new(deps, settings.core_config())))
}

/// What the flows and the outbox worker run on, built once: the store (migrations applied),
/// the key rings, the hash pool, the system clock and randomness. `serve` hands one clone to
/// [`Rekey::new`] and one to [`outbox_worker`].
pub async fn deps(settings: &Settings) -> anyhow::Result<Deps> {
    let rng: Arc<dyn Random> = Arc::new(OsRandom);
    let url = settings.database_url();
    let store = rekey_store::connect_with(&url, &(&settings.database).into())
        .await
        .context("connecting to the database")?;
    let codes = key_files::load_or_generate(settings, Ring::CodeHmac, rng.as_ref(), &SystemClock)?;
    let outbox = key_files::load_or_generate(settings, Ring::Outbox, rng.as_ref(), &SystemClock)?;
    let hasher = PasswordHasher::new(
        settings.argon2.hash_params(),
        settings.argon2.threads(),
        settings.argon2.queue,
        rng.clone(),
    )
    .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(Deps {
        store,
        clock: Arc::new(SystemClock),
        rng,
        codes: CodeMac::new(codes),
        sealer: Sealer::new(outbox),
        hasher,
    })
}

pub fn serve_settings(settings: &Settings) -> anyhow::Result<ServeSettings> {
    let email = match settings
        .smtp
        .mailer_config(&WorkerConfig::from(&settings.outbox))
    {
        Some(smtp) => format!(
            "configured: {}:{} ({})",
            smtp.host,
            smtp.port(),
            smtp.tls.as_str()
        ),
        None => "not configured: email messages stay queued".to_owned(),
    };
    // Development mail wins over SMTP (see `outbox_worker`).
    let email = match &settings.mail.dir {
        Some(dir) => format!(
            "development: written as .eml files to {}, not delivered",
            dir.display()
        ),
        None => email,
    };
    let sms = match settings.sms.provider()? {
        Some(SmsProvider::Webhook { .. }) => "configured: webhook".to_owned(),
        Some(SmsProvider::Twilio { .. }) => "configured: twilio".to_owned(),
        None => "not configured: SMS messages stay queued".to_owned(),
    };
    Ok(ServeSettings {
        body_limit_bytes: settings.body_limit_bytes,
        request_timeout: Duration::from_millis(settings.request_timeout_ms),
        trusted_proxies: settings.trusted_proxies.nets().to_vec(),
        unauth_deadline: Duration::from_millis(settings.unauth_deadline_ms),
        channels: vec![
            ("email".to_owned(), email),
            ("sms".to_owned(), sms),
            ("webhook".to_owned(), webhook_status(settings)),
        ],
        cors: settings.cors.allowed_origins.clone(),
        metrics: Arc::new(Metrics::new()),
        metrics_on_main_listener: settings.metrics_listen.is_none(),
    })
}

/// The event webhooks' line in `/readyz` (how many receivers, never their URLs).
fn webhook_status(settings: &Settings) -> String {
    match settings.events.webhook_urls().len() {
        0 => "not configured: no events are queued".to_owned(),
        1 => "configured: 1 url".to_owned(),
        n => format!("configured: {n} urls"),
    }
}

/// The outbox worker of `serve`, with a transport for each configured channel, and the SMTP
/// mailer (to close its pooled connections at shutdown).
pub fn outbox_worker(
    settings: &Settings,
    deps: &Deps,
) -> anyhow::Result<(Worker, Option<Arc<SmtpMailer>>)> {
    let config = WorkerConfig {
        retention: (&settings.retention).into(),
        ..WorkerConfig::from(&settings.outbox)
    };
    let clock = deps.clock.clone();
    let mut transports = Transports::default();
    let mut mailer = None;
    let smtp = &settings.smtp;
    let sender = || {
        Sender::new(
            &smtp.from,
            smtp.from_name.as_deref(),
            smtp.reply_to.as_deref(),
            &settings.public_url,
        )
    };
    if let Some(dir) = &settings.mail.dir {
        // Development mail wins over SMTP: a developer's directory never sends real mail.
        let smtp_too = if smtp.host.is_some() {
            "; smtp.host is set as well and is ignored"
        } else {
            ""
        };
        tracing::warn!(
            dir = %dir.display(),
            "DEVELOPMENT MAIL (mail.dir / REKEY_MAIL__DIR): emails are written as .eml files into this directory and are NOT delivered{smtp_too}; for development only, unset it in production"
        );
        let mail_dir = MailDir::new(dir, sender()?, clock.clone())
            .with_context(|| format!("creating the mail directory {}", dir.display()))?;
        transports.email = Some(Arc::new(mail_dir));
    } else if let Some(smtp_config) = smtp.mailer_config(&config) {
        let smtp_mailer = Arc::new(SmtpMailer::new(smtp_config)?);
        transports.email = Some(Arc::new(SmtpEmail::new(
            smtp_mailer.clone(),
            sender()?,
            clock.clone(),
        )));
        mailer = Some(smtp_mailer);
    }
    let http = || sms::http_client(config.send_timeout()).context("building the HTTP client");
    transports.sms = match settings.sms.provider()? {
        Some(SmsProvider::Webhook { url, secret }) => {
            if secret.is_none() {
                tracing::warn!("sms.webhook_secret is not set: SMS webhook requests are unsigned");
            }
            Some(Arc::new(WebhookSms::new(
                http()?,
                url.to_owned(),
                secret.cloned(),
                clock.clone(),
            )) as Arc<dyn Transport>)
        }
        Some(SmsProvider::Twilio {
            base_url,
            account_sid,
            auth_token,
            from,
        }) => Some(Arc::new(TwilioSms::new(
            http()?,
            base_url,
            account_sid.to_owned(),
            auth_token.clone(),
            from.to_owned(),
        ))),
        None => None,
    };
    let webhook_urls = settings.events.webhook_urls();
    if let (false, Some(secret)) = (webhook_urls.is_empty(), &settings.events.webhook_secret) {
        transports.webhook = Some(Arc::new(EventWebhook::new(
            http()?,
            webhook_urls,
            secret.clone(),
            clock.clone(),
        )));
    }
    let worker = Worker::new(
        deps.store.clone().into(),
        deps.sealer.clone(),
        Templates::builtin()?,
        transports,
        clock,
        Arc::new(OsRandom),
        config,
    );
    Ok((worker, mailer))
}

/// Runs the server until SIGINT/SIGTERM, finishing in-flight requests within the shutdown
/// timeout.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let deps = deps(&settings).await?;
    let rekey = Arc::new(Rekey::new(deps.clone(), settings.core_config()));
    if let Some(issued) = rekey
        .create_first_token()
        .await
        .map_err(|e| anyhow::anyhow!("creating the first token: {e}"))?
    {
        // Printed once, to stderr, so a newcomer can call the API straight away.
        crate::logging::first_token(settings.log_format, issued.secret.expose_secret());
    }
    let mut serving = serve_settings(&settings)?;
    // Each channel's status at start: a channel left unconfigured keeps its messages queued.
    for (channel, status) in &serving.channels {
        if status.starts_with("not configured") {
            tracing::warn!(channel, "{status}");
        } else {
            tracing::info!(channel, "{status}");
        }
    }
    let (worker, mailer) = outbox_worker(&settings, &deps)?;
    serving.metrics =
        Arc::new(Metrics::new().with_deliveries(Arc::new(WorkerDeliveries(worker.clone()))));
    let state = AppState {
        rekey,
        settings: Arc::new(serving),
    };
    // Rotated key files are picked up while serving; the flows and the worker share the rings.
    let reloader = key_files::Reloader::new(&settings, &deps);
    let reloading = (!reloader.is_empty())
        .then(|| tokio::spawn(reloader.run(Duration::from_millis(settings.keys.reload_ms))));
    let metrics_listener = match &settings.metrics_listen {
        Some(address) => Some(
            tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("binding the metrics listener {address}"))?,
        ),
        None => None,
    };
    let metrics_app = rekey_api::metrics::router(state.clone());
    let app = rekey_api::router(state);
    let tls = tls_config(&settings)?;
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "rekey is serving");
    if settings.metrics_listen.is_none() && !local.ip().is_loopback() {
        // On a quiet instance the counters of one unauthenticated reset show whether it found
        // an account, which its padded answer hides (README, Metrics).
        tracing::warn!(
            "/metrics is served on the public listener; set REKEY_METRICS_LISTEN to an \
             internal address (or block /metrics in the proxy in front)"
        );
    }
    let options = serve_options(&settings);
    let shutdown_timeout = options.shutdown_timeout;
    // The signal stops the listener and the worker together, and its moment starts the one
    // shutdown bound both are held to.
    let (signal, signalled) = tokio::sync::watch::channel(None::<tokio::time::Instant>);
    let shutdown = async move {
        shutdown_signal().await;
        let _ = signal.send(Some(tokio::time::Instant::now()));
    };
    let metrics_server = metrics_listener
        .map(|listener| {
            tracing::info!(listen = %listener.local_addr()?, "metrics on a listener of their own");
            let mut stop = signalled.clone();
            Ok::<_, std::io::Error>(tokio::spawn(rekey_api::serve::serve(
                listener,
                metrics_app,
                None,
                ServeOptions {
                    max_connections: METRICS_CONNECTIONS,
                    ..options.clone()
                },
                async move {
                    let _ = stop.wait_for(Option::is_some).await;
                },
            )))
        })
        .transpose()?;
    let mut worker_signalled = signalled.clone();
    let mut delivery = tokio::spawn(worker.run(async move {
        // An error means serve ended without a signal (the sender is gone): stop as well.
        let _ = worker_signalled.wait_for(Option::is_some).await;
    }));
    let served = rekey_api::serve::serve(listener, app, tls, options, shutdown).await;
    let since = (*signalled.borrow()).unwrap_or_else(tokio::time::Instant::now);
    if let Some(metrics_server) = metrics_server {
        // It stops at the same signal, within the same bound.
        match tokio::time::timeout_at(since + shutdown_timeout, metrics_server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => tracing::error!(error = %err, "metrics listener failed"),
            Ok(Err(err)) => tracing::error!(error = %err, "metrics listener task failed"),
            Err(_) => tracing::warn!("metrics listener still open at the shutdown timeout"),
        }
    }
    // The worker lets its sends in flight finish; one that outlasts the bound is dropped, and
    // its messages stay claimed until their lease runs out, then go out after the next start.
    match tokio::time::timeout_at(since + shutdown_timeout, &mut delivery).await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!(error = %err, "outbox worker failed"),
        Err(_) => {
            tracing::warn!("outbox worker still sending at the shutdown timeout; stopped");
            delivery.abort();
        }
    }
    if let Some(mailer) = mailer {
        // QUIT to idle SMTP connections is a courtesy, not worth holding the exit for.
        let _ = tokio::time::timeout(Duration::from_secs(1), mailer.close()).await;
    }
    if let Some(reloading) = reloading {
        reloading.abort();
    }
    served.context("server failed")?;
    tracing::info!("rekey stopped");
    Ok(())
}

/// Connections the metrics listener takes at once: a scraper or two, and a person with curl.
const METRICS_CONNECTIONS: usize = 16;

/// The outbox worker's delivery counters, as `/metrics` reads them.
struct WorkerDeliveries(Worker);

impl DeliveryCounts for WorkerDeliveries {
    fn delivery_counts(&self) -> Vec<(&'static str, &'static str, u64)> {
        self.0
            .deliveries()
            .into_iter()
            .map(|(channel, outcome, count)| (channel.as_str(), outcome.as_str(), count))
            .collect()
    }
}

/// Connection hygiene and the shutdown bound (SPEC §5).
pub fn serve_options(settings: &Settings) -> ServeOptions {
    let defaults = ServeOptions::default();
    ServeOptions {
        header_timeout: Duration::from_millis(settings.header_timeout_ms),
        idle_timeout: Duration::from_millis(settings.idle_timeout_ms),
        max_connections: settings.max_connections,
        shutdown_timeout: Duration::from_millis(settings.shutdown_timeout_ms),
        // The worker's SMTP connections draw on the same open-file limit as the listener.
        reserved_fds: defaults
            .reserved_fds
            .saturating_add(u64::try_from(settings.outbox.concurrency).unwrap_or(u64::MAX)),
    }
}

/// TLS from `REKEY_TLS__CERT` and `REKEY_TLS__KEY` (both or neither).
fn tls_config(settings: &Settings) -> anyhow::Result<Option<rekey_api::serve::TlsConfig>> {
    match (&settings.tls.cert, &settings.tls.key) {
        (None, None) => Ok(None),
        (Some(cert), Some(key)) => Ok(Some(rekey_api::serve::TlsConfig::from_pem_files(
            cert, key,
        )?)),
        _ => anyhow::bail!("TLS needs both tls.cert and tls.key (REKEY_TLS__CERT, REKEY_TLS__KEY)"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::path::Path;

    use rekey_core::domain::Channel;
    use rekey_notify::smtp::SmtpTls;

    use super::*;

    fn settings(dir: &Path) -> Settings {
        let mut settings = Settings {
            data_dir: dir.to_owned(),
            ..Settings::default()
        };
        settings.argon2.memory_kib = 64;
        settings.argon2.iterations = 1;
        settings
    }

    fn channel_lines(settings: &Settings) -> Vec<(String, String)> {
        serve_settings(settings).unwrap().channels
    }

    #[tokio::test]
    async fn channels_follow_the_settings_and_the_webhook_wins_over_twilio() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let deps = deps(&s).await.unwrap();
        let (worker, mailer) = outbox_worker(&s, &deps).unwrap();
        assert!(worker.channels().is_empty() && mailer.is_none());
        assert_eq!(
            channel_lines(&s),
            [
                (
                    "email".to_owned(),
                    "not configured: email messages stay queued".to_owned()
                ),
                (
                    "sms".to_owned(),
                    "not configured: SMS messages stay queued".to_owned()
                ),
                (
                    "webhook".to_owned(),
                    "not configured: no events are queued".to_owned()
                ),
            ]
        );

        s.smtp.host = Some("127.0.0.1".to_owned());
        s.smtp.tls = SmtpTls::None;
        s.sms.twilio_account_sid = Some("AC1".to_owned());
        s.sms.twilio_auth_token = Some("token".into());
        s.sms.twilio_from = Some("+15550001".to_owned());
        let (worker, mailer) = outbox_worker(&s, &deps).unwrap();
        assert_eq!(worker.channels(), [Channel::Email, Channel::Sms]);
        assert!(mailer.is_some());
        assert_eq!(channel_lines(&s)[0].1, "configured: 127.0.0.1:25 (none)");
        assert_eq!(channel_lines(&s)[1].1, "configured: twilio");

        s.sms.webhook_url = Some("http://127.0.0.1:9/hook".to_owned());
        assert_eq!(channel_lines(&s)[1].1, "configured: webhook");
    }

    #[tokio::test]
    async fn event_webhooks_get_a_channel_and_reach_the_flows() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let deps = deps(&s).await.unwrap();
        s.events.webhook_url =
            Some(" https://a.example/h ,https://b.example/h?token=x,".to_owned());
        s.events.webhook_secret = Some("s3cret".into());
        let (worker, _) = outbox_worker(&s, &deps).unwrap();
        assert_eq!(worker.channels(), [Channel::Webhook]);
        assert_eq!(
            s.core_config().event_webhooks,
            ["https://a.example/h", "https://b.example/h?token=x"]
        );
        assert_eq!(channel_lines(&s)[2].1, "configured: 2 urls", "no URL shown");
    }

    #[tokio::test]
    async fn development_mail_wins_over_smtp() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        let deps = deps(&s).await.unwrap();
        let mail = dir.path().join("mail");
        s.mail.dir = Some(mail.clone());
        s.smtp.host = Some("127.0.0.1".to_owned());
        let (worker, mailer) = outbox_worker(&s, &deps).unwrap();
        assert_eq!(worker.channels(), [Channel::Email]);
        assert!(mailer.is_none(), "no SMTP connection is ever made");
        assert!(mail.is_dir(), "created at start");
        assert_eq!(
            channel_lines(&s)[0].1,
            format!(
                "development: written as .eml files to {}, not delivered",
                mail.display()
            )
        );
    }

    #[test]
    fn a_partial_twilio_configuration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.sms.twilio_account_sid = Some("AC1".to_owned());
        s.sms.twilio_from = Some("+15550001".to_owned());
        assert!(serve_settings(&s).is_err());
    }
}
