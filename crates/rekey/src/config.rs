//! Layered configuration (SPEC §12): defaults → optional TOML file → `REKEY_…` environment
//! (`__` separates sections: `REKEY_SMTP__HOST` is `smtp.host`) → `REKEY_…_FILE` secrets read
//! from files. Deserialized once at start into typed [`Settings`]: an unknown `smtp.tls`, a
//! bad CIDR or origin is refused at load, naming its key, and nothing is parsed again later.
//!
//! Each default is defined once, by the component that owns the value: the `[limits]` and
//! `[password]` sections are the core's [`Limits`] and [`PasswordPolicy`]; the code, argon2,
//! outbox and serving defaults come from [`Config`], [`HashParams`], [`WorkerConfig`],
//! [`ServeSettings`] and [`ServeOptions`]. Only what no component owns (the listener, the data
//! directory, the sender address, …) is written here. Each section turns itself into its
//! component's configuration ([`Settings::core_config`], [`Argon2Settings::hash_params`],
//! `WorkerConfig::from(&settings.outbox)`, [`SmtpSettings::mailer_config`],
//! [`SmsSettings::provider`]).

mod env;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use rekey_api::cors::CorsPolicy;
use rekey_api::serve::ServeOptions;
use rekey_api::ServeSettings;
use rekey_core::crypto::{default_threads, HashParams};
use rekey_core::domain::tenant::CodeAlphabet;
use rekey_core::policy::{Config, Limits, PasswordPolicy, MAX_CODE_ATTEMPTS};
use rekey_notify::smtp::SmtpConfig;
use rekey_notify::{Retention, WorkerConfig};
use rekey_store::DatabaseOptions;
use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// The type of `smtp.tls`, for those who build [`Settings`] in code.
pub use rekey_notify::smtp::SmtpTls;

pub use env::ConfigKey;

/// Every key [`Settings::load`] accepts (`smtp.host`, i.e. `REKEY_SMTP__HOST`), in declaration
/// order, found from the types themselves: the README's configuration table and
/// `deploy/rekey.example.toml` are checked against it.
pub fn all_keys() -> anyhow::Result<Vec<ConfigKey>> {
    env::keys_of::<Settings>()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `REKEY_DATABASE_URL`: `sqlite://path` or `postgres://…`; default `{data_dir}/rekey.db`.
    pub database_url: Option<String>,
    /// `REKEY_DATABASE__…`: the PostgreSQL pool (TLS is the URL's `sslmode`).
    pub database: DatabaseSettings,
    /// `REKEY_LISTEN`: the one listener for every face and form.
    pub listen: String,
    /// `REKEY_METRICS_LISTEN`: a listener of its own for `/metrics` (plain HTTP); unset =
    /// `/metrics` on the main listener.
    pub metrics_listen: Option<String>,
    /// `REKEY_PUBLIC_URL`: base of every link in a message.
    pub public_url: String,
    /// `REKEY_DATA_DIR`: SQLite file (when the URL names none) and generated keys.
    pub data_dir: PathBuf,
    /// `REKEY_UNAUTH_DEADLINE_MS`: padded deadline of unauthenticated reset requests.
    pub unauth_deadline_ms: u64,
    /// `REKEY_REQUEST_TIMEOUT_MS`: per-request deadline (→ 504).
    pub request_timeout_ms: u64,
    /// `REKEY_BODY_LIMIT_BYTES`: request body limit (→ 413).
    pub body_limit_bytes: usize,
    /// `REKEY_HEADER_TIMEOUT_MS`: from opening a connection (and from each HTTP/1.1 response)
    /// to a complete request head.
    pub header_timeout_ms: u64,
    /// `REKEY_IDLE_TIMEOUT_MS`: a connection with no request in flight is closed after this.
    pub idle_timeout_ms: u64,
    /// `REKEY_MAX_CONNECTIONS`: connections open at once (lowered to fit the open-file limit).
    pub max_connections: usize,
    /// `REKEY_SHUTDOWN_TIMEOUT_MS`: after SIGTERM, how long requests in flight may still run.
    pub shutdown_timeout_ms: u64,
    /// `REKEY_TRUSTED_PROXIES`: comma-separated CIDRs whose `X-Forwarded-For` is believed.
    pub trusted_proxies: TrustedProxies,
    /// `REKEY_LOG_FORMAT`: `text` or `json`.
    pub log_format: LogFormat,
    /// `REKEY_LIMITS__…`: instance-default rate limits (SPEC §10).
    pub limits: Limits,
    pub keys: KeySettings,
    pub argon2: Argon2Settings,
    pub code: CodeSettings,
    /// `REKEY_PASSWORD__…`: the instance-default password policy (SPEC §10).
    pub password: PasswordPolicy,
    pub smtp: SmtpSettings,
    pub sms: SmsSettings,
    pub tls: TlsSettings,
    pub events: EventSettings,
    pub outbox: OutboxSettings,
    pub cors: CorsSettings,
    pub mail: MailSettings,
    /// `REKEY_RETENTION__…`: how long old outbox messages and audit events are kept.
    pub retention: RetentionSettings,
}

/// `REKEY_DATABASE__…`, beside the top-level `database_url`; defaults from
/// [`DatabaseOptions::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct DatabaseSettings {
    /// `MAX_CONNECTIONS`: PostgreSQL pool size per process (at least 1). SQLite ignores it:
    /// one writer and a fixed few readers.
    pub max_connections: u32,
}

impl Default for DatabaseSettings {
    fn default() -> Self {
        Self {
            max_connections: DatabaseOptions::default().max_connections,
        }
    }
}

impl From<&DatabaseSettings> for DatabaseOptions {
    fn from(database: &DatabaseSettings) -> Self {
        Self {
            max_connections: database.max_connections,
        }
    }
}

/// `REKEY_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The proxies whose `X-Forwarded-For` is believed: CIDRs or single addresses, read from one
/// comma-separated string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<ipnet::IpNet>);

impl TrustedProxies {
    pub fn parse(list: &str) -> Result<Self, String> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| format!("{s:?} is not a CIDR"))
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    pub fn nets(&self) -> &[ipnet::IpNet] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for TrustedProxies {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
    }
}

/// Browsers on other origins (`REKEY_CORS__…`, SPEC §5).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct CorsSettings {
    /// `ALLOWED_ORIGINS`: comma-separated origins, or `*`; empty = no CORS headers.
    #[serde(deserialize_with = "cors_policy")]
    pub allowed_origins: CorsPolicy,
}

fn cors_policy<'de, D: Deserializer<'de>>(deserializer: D) -> Result<CorsPolicy, D::Error> {
    CorsPolicy::parse(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

/// Optional text: surrounding spaces are dropped and a blank value means unset, so that
/// `REKEY_SMTP__HOST=` turns email off even over a host in the TOML file.
fn optional_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: From<String>,
{
    Ok(Option::<String>::deserialize(deserializer)?
        .map(|value| value.trim().to_owned())
        .filter(|value| !value.is_empty())
        .map(T::from))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct KeySettings {
    /// `REKEY_KEYS__CODE_HMAC`: `id:base64key,…`, first signs.
    #[serde(deserialize_with = "optional_text")]
    pub code_hmac: Option<SecretString>,
    /// `REKEY_KEYS__OUTBOX`: `id:base64key,…`, first encrypts.
    #[serde(deserialize_with = "optional_text")]
    pub outbox: Option<SecretString>,
    /// `REKEY_KEYS__RELOAD_MS`: how often `serve` looks for a rotated key file in the data
    /// directory (0: only on SIGHUP).
    pub reload_ms: u64,
}

impl Default for KeySettings {
    fn default() -> Self {
        Self {
            code_hmac: None,
            outbox: None,
            reload_ms: 5000,
        }
    }
}

/// `REKEY_ARGON2__…`: the cost of each hash ([`HashParams`]) and the pool that computes them.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct Argon2Settings {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// `REKEY_ARGON2__QUEUE`: hashes that may wait for a thread before 429.
    pub queue: usize,
    /// `REKEY_ARGON2__THREADS`: hash pool width; default max(1, cores − 1).
    pub threads: Option<usize>,
}

impl Default for Argon2Settings {
    fn default() -> Self {
        let params = HashParams::default();
        Self {
            memory_kib: params.memory_kib,
            iterations: params.iterations,
            parallelism: params.parallelism,
            queue: 64,
            threads: None,
        }
    }
}

impl Argon2Settings {
    pub fn hash_params(&self) -> HashParams {
        HashParams {
            memory_kib: self.memory_kib,
            iterations: self.iterations,
            parallelism: self.parallelism,
        }
    }

    pub fn threads(&self) -> usize {
        self.threads.unwrap_or_else(default_threads)
    }
}

/// `REKEY_CODE__…`: the instance-default code policy (SPEC §7); tenants override it.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CodeSettings {
    pub length: u32,
    /// `rekey` or `zitadel`.
    pub alphabet: CodeAlphabet,
    pub expiry_secs: u64,
    pub init_expiry_secs: u64,
}

impl Default for CodeSettings {
    fn default() -> Self {
        let config = Config::default();
        Self {
            length: config.code_length,
            alphabet: config.code_alphabet,
            expiry_secs: config.code_expiry_secs,
            init_expiry_secs: config.code_init_expiry_secs,
        }
    }
}

/// `REKEY_SMTP__…`: email delivery; no host = email messages stay queued.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    #[serde(deserialize_with = "optional_text")]
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `none`, `starttls` or `tls`.
    pub tls: SmtpTls,
    #[serde(deserialize_with = "optional_text")]
    pub username: Option<String>,
    /// Taken as written: spaces may be part of a password.
    pub password: Option<SecretString>,
    pub from: String,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub accept_invalid_certs: bool,
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: SmtpTls::StartTls,
            username: None,
            password: None,
            from: "rekey@localhost".to_owned(),
            from_name: Some("Rekey".to_owned()),
            reply_to: None,
            accept_invalid_certs: false,
        }
    }
}

impl SmtpSettings {
    /// The mailer's configuration, or `None` when no host is set. It keeps one connection
    /// per worker slot and bounds each step of a send by the worker's send timeout.
    pub fn mailer_config(&self, worker: &WorkerConfig) -> Option<SmtpConfig> {
        let host = self.host.as_deref()?;
        let mut config = SmtpConfig::new(host, self.tls);
        config.port = self.port;
        config.username = self.username.clone();
        config.password = self.password.clone();
        config.accept_invalid_certs = self.accept_invalid_certs;
        config.max_connections = worker.concurrency;
        config.timeout = worker.send_timeout();
        Some(config)
    }
}

/// `REKEY_SMS__…`: SMS delivery by a signed webhook or by Twilio.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    #[serde(deserialize_with = "optional_text")]
    pub webhook_url: Option<String>,
    #[serde(deserialize_with = "optional_text")]
    pub webhook_secret: Option<SecretString>,
    #[serde(deserialize_with = "optional_text")]
    pub twilio_base_url: Option<String>,
    #[serde(deserialize_with = "optional_text")]
    pub twilio_account_sid: Option<String>,
    #[serde(deserialize_with = "optional_text")]
    pub twilio_auth_token: Option<SecretString>,
    #[serde(deserialize_with = "optional_text")]
    pub twilio_from: Option<String>,
}

/// The SMS provider in use, with what it needs.
#[derive(Debug, Clone, Copy)]
pub enum SmsProvider<'a> {
    Webhook {
        url: &'a str,
        secret: Option<&'a SecretString>,
    },
    Twilio {
        base_url: Option<&'a str>,
        account_sid: &'a str,
        auth_token: &'a SecretString,
        from: &'a str,
    },
}

impl SmsSettings {
    /// The webhook when its URL is set (it wins over Twilio, SPEC §12), else Twilio when
    /// configured — completely, or it is an error.
    pub fn provider(&self) -> anyhow::Result<Option<SmsProvider<'_>>> {
        if let Some(url) = self.webhook_url.as_deref() {
            return Ok(Some(SmsProvider::Webhook {
                url,
                secret: self.webhook_secret.as_ref(),
            }));
        }
        match (
            self.twilio_account_sid.as_deref(),
            self.twilio_auth_token.as_ref(),
            self.twilio_from.as_deref(),
        ) {
            (None, None, None) => Ok(None),
            (Some(account_sid), Some(auth_token), Some(from)) => Ok(Some(SmsProvider::Twilio {
                base_url: self.twilio_base_url.as_deref(),
                account_sid,
                auth_token,
                from,
            })),
            _ => bail!(
                "Twilio needs all of sms.twilio_account_sid, sms.twilio_auth_token and sms.twilio_from"
            ),
        }
    }
}

/// `REKEY_MAIL__…`: development mail.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct MailSettings {
    /// `DIR`: write each email as an `.eml` file into this directory instead of sending it
    /// (development only; wins over `smtp.host`).
    #[serde(deserialize_with = "optional_text")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// `REKEY_EVENTS__…`: event webhooks (SPEC §10, §12): signed events to each URL.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EventSettings {
    /// One URL or a comma-separated list.
    #[serde(deserialize_with = "optional_text")]
    pub webhook_url: Option<String>,
    /// The HMAC key (its UTF-8 bytes) of `X-Rekey-Signature`; required with a URL.
    #[serde(deserialize_with = "optional_text")]
    pub webhook_secret: Option<SecretString>,
}

impl EventSettings {
    /// The configured webhook URLs, in order, without blanks and duplicates.
    pub fn webhook_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = Vec::new();
        for url in self.webhook_url.as_deref().unwrap_or("").split(',') {
            let url = url.trim();
            if !url.is_empty() && !urls.iter().any(|u| u == url) {
                urls.push(url.to_owned());
            }
        }
        urls
    }

    fn validate(&self) -> anyhow::Result<()> {
        let urls = self.webhook_urls();
        // The URL is not echoed: it may carry a token.
        if urls
            .iter()
            .any(|u| !(u.starts_with("http://") || u.starts_with("https://")))
        {
            bail!("every events.webhook_url entry must start with http:// or https://");
        }
        if !urls.is_empty() && self.webhook_secret.is_none() {
            bail!(
                "events.webhook_url is set but events.webhook_secret is not \
                 (REKEY_EVENTS__WEBHOOK_SECRET or REKEY_EVENTS__WEBHOOK_SECRET_FILE): \
                 receivers could not verify the events"
            );
        }
        Ok(())
    }
}

/// The delivery worker (`REKEY_OUTBOX__…`); defaults from [`WorkerConfig::default`].
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct OutboxSettings {
    /// `POLL_MS`: how often an idle worker looks for due messages.
    pub poll_ms: u64,
    /// `MAX_ATTEMPTS`: attempts before a message is parked as failed.
    pub max_attempts: u32,
    /// `BACKOFF_MS`: wait before the second attempt, doubled for each further one (±20%).
    pub backoff_ms: u64,
    /// `LEASE_MS`: how long a claimed message is reserved for the worker that claimed it; a
    /// worker that dies mid-send leaves its messages to others after this long. Each send's
    /// timeouts are a third of it (at most 30 s).
    pub lease_ms: u64,
    /// `CONCURRENCY`: messages in flight at once (and SMTP connections).
    pub concurrency: usize,
}

impl Default for OutboxSettings {
    fn default() -> Self {
        let worker = WorkerConfig::default();
        Self {
            poll_ms: millis(worker.poll),
            max_attempts: worker.max_attempts,
            backoff_ms: millis(worker.backoff),
            lease_ms: millis(worker.lease),
            concurrency: worker.concurrency,
        }
    }
}

impl From<&OutboxSettings> for WorkerConfig {
    fn from(outbox: &OutboxSettings) -> Self {
        Self {
            poll: Duration::from_millis(outbox.poll_ms),
            lease: Duration::from_millis(outbox.lease_ms),
            max_attempts: outbox.max_attempts,
            backoff: Duration::from_millis(outbox.backoff_ms),
            concurrency: outbox.concurrency,
            ..WorkerConfig::default()
        }
    }
}

/// `REKEY_RETENTION__…` (SPEC §12): days the worker's housekeeping keeps sent and failed
/// outbox messages and audit events (0: forever); defaults from [`Retention::default`].
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(default)]
pub struct RetentionSettings {
    /// `EVENTS_DAYS`: audit events older than this are deleted.
    pub events_days: u32,
    /// `OUTBOX_DAYS`: sent and failed outbox messages older than this are deleted.
    pub outbox_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        let retention = Retention::default();
        Self {
            events_days: retention.events_days,
            outbox_days: retention.outbox_days,
        }
    }
}

impl From<&RetentionSettings> for Retention {
    fn from(settings: &RetentionSettings) -> Self {
        Self {
            events_days: settings.events_days,
            outbox_days: settings.outbox_days,
        }
    }
}

/// A duration as the whole milliseconds of a `…_MS` key.
fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Default for Settings {
    fn default() -> Self {
        let serve = ServeSettings::default();
        let connections = ServeOptions::default();
        Self {
            database_url: None,
            database: DatabaseSettings::default(),
            listen: "127.0.0.1:8080".to_owned(),
            metrics_listen: None,
            public_url: Config::default().public_url,
            data_dir: PathBuf::from("rekey-data"),
            unauth_deadline_ms: millis(serve.unauth_deadline),
            request_timeout_ms: millis(serve.request_timeout),
            body_limit_bytes: serve.body_limit_bytes,
            header_timeout_ms: millis(connections.header_timeout),
            idle_timeout_ms: millis(connections.idle_timeout),
            max_connections: connections.max_connections,
            shutdown_timeout_ms: millis(connections.shutdown_timeout),
            trusted_proxies: TrustedProxies(serve.trusted_proxies),
            log_format: LogFormat::default(),
            limits: Limits::default(),
            keys: KeySettings::default(),
            argon2: Argon2Settings::default(),
            code: CodeSettings::default(),
            password: PasswordPolicy::default(),
            smtp: SmtpSettings::default(),
            sms: SmsSettings::default(),
            tls: TlsSettings::default(),
            events: EventSettings::default(),
            outbox: OutboxSettings::default(),
            cors: CorsSettings {
                allowed_origins: serve.cors,
            },
            mail: MailSettings::default(),
            retention: RetentionSettings::default(),
        }
    }
}

impl Settings {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        // Every section is `#[serde(default)]`: what no layer sets keeps its `Default`.
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let text = env::TextKeys::of::<Settings>()?;
        let env = || Env::prefixed("REKEY_").split("__");
        let data = text.clone();
        figment =
            figment.merge(env().filter(move |key| {
                !key.as_str().ends_with("_file") && !data.contains(key.as_str())
            }));
        // Text keys are taken verbatim: figment would read `+15005550006` or `12345` as a
        // number (dropping the `+`) and then refuse it for a string field.
        let verbatim = env()
            .iter()
            .filter(|(key, _)| text.contains(key.as_str()))
            .map(|(key, value)| (key.as_str().to_owned(), value))
            .collect();
        figment = figment.merge(env::Verbatim::new(
            "`REKEY_` environment variable(s)",
            verbatim,
        ));
        figment = figment.merge(env::Verbatim::new(
            "`REKEY_…_FILE` secret file(s)",
            env::file_secrets(std::env::vars())?,
        ));
        let settings: Settings = figment.extract().context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    /// The checks that span a value's type: ranges and relations between keys.
    fn validate(&self) -> anyhow::Result<()> {
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            bail!("public_url must start with http:// or https://");
        }
        if self.limits.ipv6_prefix > 128 {
            bail!("limits.ipv6_prefix must be 0 to 128");
        }
        if self.database.max_connections == 0 {
            bail!("database.max_connections must be at least 1");
        }
        self.events.validate()?;
        if self.outbox.max_attempts == 0 || self.outbox.concurrency == 0 {
            bail!("outbox.max_attempts and outbox.concurrency must be at least 1");
        }
        // Send timeouts are derived from the lease (a third of it, at most 30 s), so a send
        // always ends before its lease; below a second they would cut off healthy servers.
        if self.outbox.lease_ms < 1_000 {
            bail!("outbox.lease_ms must be at least 1000");
        }
        if self.header_timeout_ms == 0
            || self.idle_timeout_ms == 0
            || self.max_connections == 0
            || self.shutdown_timeout_ms == 0
        {
            bail!("header_timeout_ms, idle_timeout_ms, max_connections and shutdown_timeout_ms must be at least 1");
        }
        Ok(())
    }

    /// The core's instance defaults.
    pub fn core_config(&self) -> Config {
        Config {
            public_url: self.public_url.trim_end_matches('/').to_owned(),
            code_length: self.code.length,
            code_alphabet: self.code.alphabet,
            code_expiry_secs: self.code.expiry_secs,
            code_init_expiry_secs: self.code.init_expiry_secs,
            max_code_attempts: MAX_CODE_ATTEMPTS,
            password: self.password,
            limits: self.limits,
            event_webhooks: self.events.webhook_urls(),
        }
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("rekey.db").display()))
    }
}

#[cfg(test)]
mod tests {
    // figment's `Jail` takes closures returning its own (large) error type; not ours to shrink.
    #![allow(clippy::result_large_err)]
    use secrecy::ExposeSecret;

    use super::*;

    fn secret(value: Option<&SecretString>) -> Option<&str> {
        value.map(ExposeSecret::expose_secret)
    }

    #[test]
    fn layers_defaults_toml_env_and_file_secrets() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "rekey.toml",
                "listen = \"0.0.0.0:9000\"\npublic_url = \"https://toml.test\"\n[smtp]\nhost = \"toml-smtp\"\nport = 2525\n[code]\nlength = 12\n",
            )?;
            jail.create_file("smtp-password", "from-file\n")?;
            jail.set_env("REKEY_PUBLIC_URL", "https://env.test");
            jail.set_env("REKEY_SMTP__PORT", "587");
            jail.set_env("REKEY_LIMITS__MESSAGES_PER_USER_PER_HOUR", "3");
            jail.set_env("REKEY_SMTP__PASSWORD_FILE", "smtp-password");
            // Numeric-looking text stays text.
            jail.set_env("REKEY_SMS__TWILIO_FROM", "+15005550006");
            jail.set_env("REKEY_SMTP__USERNAME", "12345");
            jail.set_env("REKEY_IDLE_TIMEOUT_MS", "60000");
            jail.set_env("REKEY_MAX_CONNECTIONS", "512");
            jail.set_env("REKEY_MAIL__DIR", "2026");
            let s = Settings::load(Some(Path::new("rekey.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.mail.dir, Some(PathBuf::from("2026")));
            assert_eq!(s.listen, "0.0.0.0:9000"); // TOML over default
            assert_eq!(s.public_url, "https://env.test"); // env over TOML
            assert_eq!(s.smtp.host.as_deref(), Some("toml-smtp"));
            assert_eq!(s.smtp.port, Some(587));
            assert_eq!(s.code.length, 12);
            assert_eq!(s.limits.messages_per_user_per_hour, 3);
            assert_eq!(secret(s.smtp.password.as_ref()), Some("from-file"));
            assert_eq!(s.sms.twilio_from.as_deref(), Some("+15005550006"));
            assert_eq!(s.smtp.username.as_deref(), Some("12345"));
            assert_eq!(s.idle_timeout_ms, 60_000);
            assert_eq!(s.max_connections, 512);
            Ok(())
        });
    }

    #[test]
    fn typed_values_are_read_once() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REKEY_CODE__ALPHABET", "zitadel");
            jail.set_env("REKEY_LOG_FORMAT", "json");
            jail.set_env("REKEY_SMTP__TLS", "tls");
            jail.set_env("REKEY_PASSWORD__REQUIRE_DIGIT", "true");
            jail.set_env("REKEY_KEYS__CODE_HMAC", "k1:c2VjcmV0");
            jail.set_env("REKEY_PUBLIC_URL", "https://env.test/");
            let s = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(s.code.alphabet, CodeAlphabet::Zitadel);
            assert_eq!(s.log_format, LogFormat::Json);
            assert_eq!(s.smtp.tls, SmtpTls::Tls);
            assert_eq!(secret(s.keys.code_hmac.as_ref()), Some("k1:c2VjcmV0"));
            let config = s.core_config();
            assert!(config.password.require_digit);
            assert_eq!(config.code_alphabet, CodeAlphabet::Zitadel);
            assert_eq!(config.public_url, "https://env.test");
            assert_eq!(config.max_code_attempts, 5);
            Ok(())
        });
    }

    #[test]
    fn blank_optional_text_is_unset() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("rekey.toml", "[smtp]\nhost = \"toml-smtp\"\n")?;
            jail.set_env("REKEY_SMTP__HOST", "  ");
            jail.set_env("REKEY_SMS__TWILIO_AUTH_TOKEN", " ");
            jail.set_env("REKEY_SMS__TWILIO_FROM", " +15550001 ");
            jail.set_env("REKEY_KEYS__OUTBOX", "");
            jail.set_env("REKEY_MAIL__DIR", " ");
            let s = Settings::load(Some(Path::new("rekey.toml"))).map_err(|e| e.to_string())?;
            assert!(s.mail.dir.is_none());
            assert_eq!(s.smtp.host, None, "blank is unset, over the file");
            assert!(s.sms.twilio_auth_token.is_none());
            assert_eq!(s.sms.twilio_from.as_deref(), Some("+15550001"));
            assert!(s.keys.outbox.is_none());
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_refused_at_start() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REKEY_SMTP__TLS", "sometimes");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_SMTP__TLS", "none");
            jail.set_env("REKEY_CODE__ALPHABET", "digits");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_CODE__ALPHABET", "rekey");
            jail.set_env("REKEY_LOG_FORMAT", "xml");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_LOG_FORMAT", "text");
            jail.set_env("REKEY_TRUSTED_PROXIES", "10.0.0.0/8, not-a-cidr");
            let err = format!("{:#}", Settings::load(None).unwrap_err());
            assert!(
                err.contains("\"not-a-cidr\" is not a CIDR") && err.contains("trusted_proxies"),
                "{err}"
            );
            jail.set_env("REKEY_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1");
            jail.set_env("REKEY_OUTBOX__LEASE_MS", "999");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_OUTBOX__LEASE_MS", "2000");
            jail.set_env("REKEY_OUTBOX__CONCURRENCY", "0");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_OUTBOX__CONCURRENCY", "2");
            jail.set_env("REKEY_CORS__ALLOWED_ORIGINS", "https://app.example/path");
            let err = format!("{:#}", Settings::load(None).unwrap_err());
            assert!(err.contains("cors.allowed_origins"), "{err}");
            jail.set_env(
                "REKEY_CORS__ALLOWED_ORIGINS",
                "https://app.example, http://127.0.0.1:3000",
            );
            assert_eq!(
                Settings::load(None).unwrap().cors.allowed_origins,
                CorsPolicy::Origins(vec![
                    "https://app.example".to_owned(),
                    "http://127.0.0.1:3000".to_owned()
                ])
            );
            for key in [
                "REKEY_HEADER_TIMEOUT_MS",
                "REKEY_IDLE_TIMEOUT_MS",
                "REKEY_MAX_CONNECTIONS",
                "REKEY_SHUTDOWN_TIMEOUT_MS",
            ] {
                jail.set_env(key, "0");
                assert!(Settings::load(None).is_err(), "{key}=0 accepted");
                jail.set_env(key, "5");
            }
            assert_eq!(
                Settings::load(None).unwrap().trusted_proxies.nets().len(),
                2
            );
            Ok(())
        });
    }

    #[test]
    fn the_database_section_sits_beside_the_url() {
        assert_eq!(Settings::default().database.max_connections, 16);
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "rekey.toml",
                "database_url = \"postgres://db.internal/rekey?sslmode=verify-full\"\n[database]\nmax_connections = 24\n",
            )?;
            let s = Settings::load(Some(Path::new("rekey.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(
                s.database_url(),
                "postgres://db.internal/rekey?sslmode=verify-full"
            );
            assert_eq!(DatabaseOptions::from(&s.database).max_connections, 24);
            jail.set_env("REKEY_DATABASE_URL", "postgres://other/rekey");
            jail.set_env("REKEY_DATABASE__MAX_CONNECTIONS", "4");
            let s = Settings::load(Some(Path::new("rekey.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.database_url(), "postgres://other/rekey");
            assert_eq!(s.database.max_connections, 4);
            jail.set_env("REKEY_DATABASE__MAX_CONNECTIONS", "0");
            let err = format!("{:#}", Settings::load(None).unwrap_err());
            assert!(err.contains("database.max_connections"), "{err}");
            jail.set_env("REKEY_DATABASE__MAX_CONNECTIONS", "many");
            let err = format!("{:#}", Settings::load(None).unwrap_err());
            assert!(
                err.to_lowercase().contains("database.max_connections"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut s = Settings::default();
        s.smtp.password = Some("smtp-secret-value".into());
        s.keys.code_hmac = Some("k1:c2VjcmV0".into());
        s.sms.twilio_auth_token = Some("twilio-secret".into());
        let shown = format!("{s:?}");
        for secret in ["smtp-secret-value", "c2VjcmV0", "twilio-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("REDACTED"));
    }

    #[test]
    fn event_webhook_urls_need_a_secret_and_http() {
        let mut events = EventSettings::default();
        assert!(events.webhook_urls().is_empty());
        events.validate().unwrap();
        events.webhook_url = Some("https://a.example/h, https://a.example/h ,,http://b/h".into());
        assert_eq!(
            events.webhook_urls(),
            ["https://a.example/h", "http://b/h"],
            "trimmed, blanks and repeats dropped"
        );
        let err = events.validate().unwrap_err().to_string();
        assert!(
            err.contains("events.webhook_secret") && err.contains("REKEY_EVENTS__WEBHOOK_SECRET"),
            "{err}"
        );
        events.webhook_secret = Some("s".into());
        events.validate().unwrap();
        events.webhook_url = Some("https://a.example/h,ftp://secret@b/h".into());
        let err = events.validate().unwrap_err().to_string();
        assert!(err.contains("http://") && !err.contains("secret@"), "{err}");
    }

    #[test]
    fn the_webhook_wins_over_twilio_and_a_partial_twilio_is_refused() {
        let mut sms = SmsSettings {
            twilio_account_sid: Some("AC1".to_owned()),
            twilio_from: Some("+15550001".to_owned()),
            ..SmsSettings::default()
        };
        assert!(sms.provider().is_err());
        sms.twilio_auth_token = Some("token".into());
        assert!(matches!(
            sms.provider().unwrap(),
            Some(SmsProvider::Twilio {
                account_sid: "AC1",
                base_url: None,
                ..
            })
        ));
        sms.webhook_url = Some("http://127.0.0.1:9/hook".to_owned());
        assert!(matches!(
            sms.provider().unwrap(),
            Some(SmsProvider::Webhook {
                url: "http://127.0.0.1:9/hook",
                secret: None
            })
        ));
        assert!(SmsSettings::default().provider().unwrap().is_none());
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::default();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.public_url, "http://127.0.0.1:8080");
        assert_eq!(s.database_url(), "sqlite://rekey-data/rekey.db");
        assert_eq!(s.unauth_deadline_ms, 400);
        assert_eq!(s.request_timeout_ms, 10_000);
        assert_eq!(s.body_limit_bytes, 65_536);
        assert_eq!(s.trusted_proxies, TrustedProxies::default());
        assert_eq!(s.log_format, LogFormat::Text);
        assert_eq!(s.argon2.queue, 64);
        assert_eq!(s.argon2.memory_kib, 19_456);
        assert_eq!(s.argon2.iterations, 2);
        assert_eq!(s.argon2.parallelism, 1);
        assert_eq!(s.argon2.threads, None);
        assert_eq!(s.outbox.max_attempts, 8);
        assert_eq!(s.outbox.poll_ms, 500);
        assert_eq!(s.outbox.backoff_ms, 1000);
        assert_eq!(s.outbox.lease_ms, 60_000);
        assert_eq!(s.outbox.concurrency, 8);
        assert_eq!(
            (s.retention.events_days, s.retention.outbox_days),
            (365, 30)
        );
        assert_eq!(s.header_timeout_ms, 10_000);
        assert_eq!(s.idle_timeout_ms, 75_000);
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.shutdown_timeout_ms, 10_000);
        assert_eq!(s.code.length, 8);
        assert_eq!(s.code.alphabet, CodeAlphabet::Rekey);
        assert_eq!(s.code.expiry_secs, 3600);
        assert_eq!(s.code.init_expiry_secs, 72 * 3600);
        assert_eq!(
            (
                s.limits.messages_per_user_per_hour,
                s.limits.unauth_per_cname_email_per_hour,
                s.limits.unauth_per_ip_per_minute,
                s.limits.code_tries_per_ip_per_minute,
                s.limits.ipv6_prefix
            ),
            (5, 5, 20, 30, 64)
        );
        assert_eq!((s.password.min_length, s.password.max_length), (12, 128));
        assert!(
            !(s.password.require_lower
                || s.password.require_upper
                || s.password.require_digit
                || s.password.require_symbol)
        );
        assert_eq!(s.smtp.tls, SmtpTls::StartTls);
        assert_eq!(s.smtp.from, "rekey@localhost");
        assert_eq!(s.smtp.from_name.as_deref(), Some("Rekey"));
        assert_eq!(s.cors.allowed_origins, CorsPolicy::Off);
        // Loading with nothing set gives the same values as `Default`.
        figment::Jail::expect_with(|_| {
            let loaded = Settings::load(None).map_err(|e| e.to_string())?;
            assert_eq!(format!("{loaded:?}"), format!("{s:?}"));
            Ok(())
        });
    }
}
