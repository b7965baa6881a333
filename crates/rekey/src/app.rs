//! Wiring: settings → store, keys, hasher, flows, router; and the server's life cycle.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rekey_api::{AppState, ServeSettings};
use rekey_core::clock::{OsRandom, Random, SystemClock};
use rekey_core::code::CodeMac;
use rekey_core::crypto::Sealer;
use rekey_core::flows::{Config, Limits, Rekey};
use rekey_core::hasher::{default_threads, HashParams, PasswordHasher};
use rekey_core::keys::KeyRing;
use rekey_core::model::{CodeAlphabet, Role};
use rekey_core::password::PasswordPolicy;
use secrecy::ExposeSecret;

use crate::config::Settings;

/// A configured key ring, or the one generated into the data directory on first start.
fn key_ring(
    configured: Option<&str>,
    data_dir: &Path,
    file: &str,
    rng: &dyn Random,
) -> anyhow::Result<KeyRing> {
    if let Some(spec) = configured.filter(|s| !s.trim().is_empty()) {
        return KeyRing::parse(spec).with_context(|| format!("invalid key ring for {file}"));
    }
    let path = data_dir.join(file);
    if !path.exists() {
        std::fs::create_dir_all(data_dir)
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

pub fn core_config(settings: &Settings) -> Config {
    Config {
        public_url: settings.public_url.trim_end_matches('/').to_owned(),
        code_length: settings.code.length,
        code_alphabet: if settings.code.alphabet == "zitadel" {
            CodeAlphabet::Zitadel
        } else {
            CodeAlphabet::Rekey
        },
        code_expiry_secs: settings.code.expiry_secs,
        code_init_expiry_secs: settings.code.init_expiry_secs,
        max_code_attempts: 5,
        password: PasswordPolicy {
            min_length: settings.password.min_length,
            max_length: settings.password.max_length,
            require_lower: settings.password.require_lower,
            require_upper: settings.password.require_upper,
            require_digit: settings.password.require_digit,
            require_symbol: settings.password.require_symbol,
        },
        limits: Limits {
            messages_per_user_per_hour: settings.limits.messages_per_user_per_hour,
            unauth_per_cname_email_per_hour: settings.limits.unauth_per_cname_email_per_hour,
            unauth_per_ip_per_minute: settings.limits.unauth_per_ip_per_minute,
            code_tries_per_ip_per_minute: settings.limits.code_tries_per_ip_per_minute,
        },
    }
}

/// Connects the store (applying migrations) and builds the flows.
pub async fn build(settings: &Settings) -> anyhow::Result<Arc<Rekey>> {
    let rng: Arc<dyn Random> = Arc::new(OsRandom);
    let url = settings.database_url();
    let store = rekey_store::connect(&url)
        .await
        .context("connecting to the database")?;
    let codes = key_ring(
        settings.keys.code_hmac.as_deref(),
        &settings.data_dir,
        "code_hmac.keys",
        rng.as_ref(),
    )?;
    let outbox = key_ring(
        settings.keys.outbox.as_deref(),
        &settings.data_dir,
        "outbox.keys",
        rng.as_ref(),
    )?;
    let params = HashParams {
        memory_kib: settings.argon2.memory_kib,
        iterations: settings.argon2.iterations,
        parallelism: settings.argon2.parallelism,
    };
    let hasher = PasswordHasher::new(
        params,
        settings.argon2.threads.unwrap_or_else(default_threads),
        settings.argon2.queue,
        rng.clone(),
    )
    .map_err(|e| anyhow::anyhow!("argon2: {e}"))?;
    Ok(Arc::new(Rekey::new(
        store,
        Arc::new(SystemClock),
        rng,
        CodeMac::new(codes),
        Sealer::new(outbox),
        hasher,
        core_config(settings),
    )))
}

pub fn serve_settings(settings: &Settings) -> anyhow::Result<ServeSettings> {
    let email = if settings.smtp.host.is_some() {
        "configured (delivery arrives with the outbox worker)"
    } else {
        "not configured: email messages stay queued"
    };
    let sms = if settings.sms.webhook_url.is_some() || settings.sms.twilio_account_sid.is_some() {
        "configured (delivery arrives with the outbox worker)"
    } else {
        "not configured: SMS messages stay queued"
    };
    Ok(ServeSettings {
        body_limit_bytes: settings.body_limit_bytes,
        request_timeout: Duration::from_millis(settings.request_timeout_ms),
        trusted_proxies: settings.trusted_proxy_nets()?,
        unauth_deadline: Duration::from_millis(settings.unauth_deadline_ms),
        channels: vec![
            ("email".to_owned(), email.to_owned()),
            ("sms".to_owned(), sms.to_owned()),
        ],
    })
}

/// Runs the server until SIGINT/SIGTERM, finishing in-flight requests.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let rekey = build(&settings).await?;
    if rekey
        .store()
        .count_tokens()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?
        == 0
    {
        let issued = rekey
            .create_token(Role::System)
            .await
            .map_err(|e| anyhow::anyhow!("creating the first token: {e}"))?;
        // Printed once, to stderr, so a newcomer can call the API straight away.
        eprintln!(
            "\nNo API token existed, so a system token was created. It is shown only this once:\n\n    {}\n",
            issued.secret.expose_secret()
        );
    }
    let state = AppState {
        rekey,
        settings: Arc::new(serve_settings(&settings)?),
    };
    let app = rekey_api::router(state);
    let listener = tokio::net::TcpListener::bind(&settings.listen)
        .await
        .with_context(|| format!("binding {}", settings.listen))?;
    tracing::info!(listen = %listener.local_addr()?, "rekey is serving");
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await
    .context("server failed")?;
    tracing::info!("rekey stopped");
    Ok(())
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
