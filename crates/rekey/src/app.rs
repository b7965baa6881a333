//! Wiring: settings → store, keys, hasher, flows, router; and the server's life cycle.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rekey_api::metrics::{DeliveryCounts, Metrics};
use rekey_api::serve::ServeOptions;
use rekey_api::{AppState, ServeSettings};
use rekey_core::crypto::CodeMac;
use rekey_core::crypto::KeyRing;
use rekey_core::crypto::PasswordHasher;
use rekey_core::crypto::Sealer;
use rekey_core::flows::{Deps, Rekey};
use rekey_core::ports::{OsRandom, Random, SystemClock};
use rekey_notify::email::{Sender, SmtpEmail};
use rekey_notify::sms::{self, TwilioSms, WebhookSms};
use rekey_notify::smtp::SmtpMailer;
use rekey_notify::{Templates, Transport, Transports, Worker, WorkerConfig};
use secrecy::{ExposeSecret, SecretString};

use crate::config::{Settings, SmsProvider};

/// A configured key ring, or the one generated into the data directory on first start.
fn key_ring(
    configured: Option<&SecretString>,
    data_dir: &Path,
    file: &str,
    rng: &dyn Random,
) -> anyhow::Result<KeyRing> {
    if let Some(spec) = configured {
        return KeyRing::parse(spec.expose_secret())
            .with_context(|| format!("invalid key ring for {file}"));
    }
    let path = data_dir.join(file);
    if !path.exists() {
        rekey_store::create_private_dir(data_dir)
            .with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let spec = KeyRing::generate_spec("k1", rng);
        write_private(&path, &spec)?;
        tracing::info!(path = %path.display(), "generated a new key ring");
    }
    let spec = std::fs::read_to_string(&path)
        .with_context(|| format!("reading key ring {}", path.display()))?;
    KeyRing::parse(spec.trim()).with_context(|| format!("invalid key ring in {}", path.display()))
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(content.as_bytes())?;
    Ok(())
}

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
    let store = rekey_store::connect(&url)
        .await
        .context("connecting to the database")?;
    let codes = key_ring(
        settings.keys.code_hmac.as_ref(),
        &settings.data_dir,
        "code_hmac.keys",
        rng.as_ref(),
    )?;
    let outbox = key_ring(
        settings.keys.outbox.as_ref(),
        &settings.data_dir,
        "outbox.keys",
        rng.as_ref(),
    )?;
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
        channels: vec![("email".to_owned(), email), ("sms".to_owned(), sms)],
        cors: settings.cors.allowed_origins.clone(),
        metrics: Arc::new(Metrics::new()),
        metrics_on_main_listener: settings.metrics_listen.is_none(),
    })
}

/// The outbox worker of `serve`, with a transport for each configured channel, and the SMTP
/// mailer (to close its pooled connections at shutdown).
pub fn outbox_worker(
    settings: &Settings,
    deps: &Deps,
) -> anyhow::Result<(Worker, Option<Arc<SmtpMailer>>)> {
    let config = WorkerConfig::from(&settings.outbox);
    let clock = deps.clock.clone();
    let mut transports = Transports::default();
    let mut mailer = None;
    if let Some(smtp_config) = settings.smtp.mailer_config(&config) {
        let smtp = &settings.smtp;
        let smtp_mailer = Arc::new(SmtpMailer::new(smtp_config)?);
        let sender = Sender::new(
            &smtp.from,
            smtp.from_name.as_deref(),
            smtp.reply_to.as_deref(),
            &settings.public_url,
        )?;
        transports.email = Some(Arc::new(SmtpEmail::new(
            smtp_mailer.clone(),
            sender,
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
    let worker = Worker::new(
        deps.store.clone(),
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
        eprintln!(
            "\nNo API token existed, so a system token was created. It is shown only this once:\n\n    {}\n",
            issued.secret.expose_secret()
        );
    }
    let (worker, mailer) = outbox_worker(&settings, &deps)?;
    let mut serve_settings = serve_settings(&settings)?;
    serve_settings.metrics =
        Arc::new(Metrics::new().with_deliveries(Arc::new(WorkerDeliveries(worker.clone()))));
    let state = AppState {
        rekey,
        settings: Arc::new(serve_settings),
    };
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
    tracing::info!(listen = %listener.local_addr()?, "rekey is serving");
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

    #[test]
    fn a_partial_twilio_configuration_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = settings(dir.path());
        s.sms.twilio_account_sid = Some("AC1".to_owned());
        s.sms.twilio_from = Some("+15550001".to_owned());
        assert!(serve_settings(&s).is_err());
    }
}
