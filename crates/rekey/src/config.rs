//! Layered configuration (SPEC §12): defaults → optional TOML file → `REKEY_…` environment
//! (`__` separates sections: `REKEY_SMTP__HOST` is `smtp.host`) → `REKEY_…_FILE` secrets read
//! from files. Validated once at start into [`Settings`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// `REKEY_DATABASE_URL`: `sqlite://path` or `postgres://…`; default `{data_dir}/rekey.db`.
    pub database_url: Option<String>,
    /// `REKEY_LISTEN`: the one listener for every face and form.
    pub listen: String,
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
    pub trusted_proxies: String,
    /// `REKEY_LOG_FORMAT`: `text` or `json`.
    pub log_format: String,
    pub limits: LimitSettings,
    pub keys: KeySettings,
    pub argon2: Argon2Settings,
    pub code: CodeSettings,
    pub password: PasswordSettings,
    pub smtp: SmtpSettings,
    pub sms: SmsSettings,
    pub tls: TlsSettings,
    pub events: EventSettings,
    pub outbox: OutboxSettings,
    pub cors: CorsSettings,
}

/// Browsers on other origins (`REKEY_CORS__…`, SPEC §5).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CorsSettings {
    /// `ALLOWED_ORIGINS`: comma-separated origins, or `*`; empty = no CORS headers.
    pub allowed_origins: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitSettings {
    pub messages_per_user_per_hour: u32,
    pub unauth_per_cname_email_per_hour: u32,
    pub unauth_per_ip_per_minute: u32,
    pub code_tries_per_ip_per_minute: u32,
    /// `REKEY_LIMITS__IPV6_PREFIX`: per-IP limits key IPv6 clients by this prefix (0..=128).
    pub ipv6_prefix: u8,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KeySettings {
    /// `REKEY_KEYS__CODE_HMAC`: `id:base64key,…`, first signs.
    pub code_hmac: Option<String>,
    /// `REKEY_KEYS__OUTBOX`: `id:base64key,…`, first encrypts.
    pub outbox: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct CodeSettings {
    pub length: u32,
    /// `rekey` or `zitadel`.
    pub alphabet: String,
    pub expiry_secs: u64,
    pub init_expiry_secs: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct PasswordSettings {
    pub min_length: u32,
    pub max_length: u32,
    pub require_lower: bool,
    pub require_upper: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct SmtpSettings {
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `none`, `starttls` or `tls`.
    pub tls: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub from: String,
    pub from_name: Option<String>,
    pub reply_to: Option<String>,
    pub accept_invalid_certs: bool,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SmsSettings {
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
    pub twilio_base_url: Option<String>,
    pub twilio_account_sid: Option<String>,
    pub twilio_auth_token: Option<String>,
    pub twilio_from: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsSettings {
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct EventSettings {
    pub webhook_url: Option<String>,
    pub webhook_secret: Option<String>,
}

/// The delivery worker (`REKEY_OUTBOX__…`).
#[derive(Debug, Clone, Serialize, Deserialize)]
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

impl Default for Settings {
    fn default() -> Self {
        Self {
            database_url: None,
            listen: "127.0.0.1:8080".to_owned(),
            public_url: "http://127.0.0.1:8080".to_owned(),
            data_dir: PathBuf::from("rekey-data"),
            unauth_deadline_ms: 400,
            request_timeout_ms: 10_000,
            body_limit_bytes: 65_536,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 75_000,
            max_connections: 4096,
            shutdown_timeout_ms: 10_000,
            trusted_proxies: String::new(),
            log_format: "text".to_owned(),
            limits: LimitSettings::default(),
            keys: KeySettings::default(),
            argon2: Argon2Settings::default(),
            code: CodeSettings::default(),
            password: PasswordSettings::default(),
            smtp: SmtpSettings::default(),
            sms: SmsSettings::default(),
            tls: TlsSettings::default(),
            events: EventSettings::default(),
            outbox: OutboxSettings::default(),
            cors: CorsSettings::default(),
        }
    }
}

impl Default for LimitSettings {
    fn default() -> Self {
        Self {
            messages_per_user_per_hour: 5,
            unauth_per_cname_email_per_hour: 5,
            unauth_per_ip_per_minute: 20,
            code_tries_per_ip_per_minute: 30,
            ipv6_prefix: 64,
        }
    }
}

impl Default for Argon2Settings {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
            queue: 64,
            threads: None,
        }
    }
}

impl Default for CodeSettings {
    fn default() -> Self {
        Self {
            length: 8,
            alphabet: "rekey".to_owned(),
            expiry_secs: 3600,
            init_expiry_secs: 72 * 3600,
        }
    }
}

impl Default for PasswordSettings {
    fn default() -> Self {
        Self {
            min_length: 12,
            max_length: 128,
            require_lower: false,
            require_upper: false,
            require_digit: false,
            require_symbol: false,
        }
    }
}

impl Default for SmtpSettings {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            tls: "starttls".to_owned(),
            username: None,
            password: None,
            from: "rekey@localhost".to_owned(),
            from_name: Some("Rekey".to_owned()),
            reply_to: None,
            accept_invalid_certs: false,
        }
    }
}

impl Default for OutboxSettings {
    fn default() -> Self {
        Self {
            poll_ms: 500,
            max_attempts: 8,
            backoff_ms: 1000,
            lease_ms: 60_000,
            concurrency: 8,
        }
    }
}

/// Settings that hold secrets print which keys are set, never their values.
macro_rules! redacted_debug {
    ($ty:ident { $($field:ident),* }) => {
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let mut s = f.debug_struct(stringify!($ty));
                $( s.field(stringify!($field), &RedactedField(&self.$field)); )*
                s.finish()
            }
        }
    };
}

struct RedactedField<'a, T>(&'a T);

impl<T: Serialize> std::fmt::Debug for RedactedField<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match serde_json::to_value(self.0) {
            Ok(serde_json::Value::Null) => f.write_str("None"),
            Ok(_) => f.write_str("<set>"),
            Err(_) => f.write_str("<?>"),
        }
    }
}

redacted_debug!(KeySettings { code_hmac, outbox });
redacted_debug!(SmtpSettings {
    host,
    port,
    tls,
    username,
    password,
    from,
    from_name,
    reply_to,
    accept_invalid_certs
});
redacted_debug!(SmsSettings {
    webhook_url,
    webhook_secret,
    twilio_base_url,
    twilio_account_sid,
    twilio_auth_token,
    twilio_from
});
redacted_debug!(EventSettings {
    webhook_url,
    webhook_secret
});

/// Keys whose values are text, however numeric they look.
const TEXT_KEYS: &[&str] = &[
    "database_url",
    "listen",
    "public_url",
    "data_dir",
    "trusted_proxies",
    "log_format",
    "keys.code_hmac",
    "keys.outbox",
    "code.alphabet",
    "smtp.host",
    "smtp.tls",
    "smtp.username",
    "smtp.password",
    "smtp.from",
    "smtp.from_name",
    "smtp.reply_to",
    "sms.webhook_url",
    "sms.webhook_secret",
    "sms.twilio_base_url",
    "sms.twilio_account_sid",
    "sms.twilio_auth_token",
    "sms.twilio_from",
    "tls.cert",
    "tls.key",
    "events.webhook_url",
    "events.webhook_secret",
    "cors.allowed_origins",
];

fn is_text_key(key: &str) -> bool {
    TEXT_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key))
}

/// `REKEY_SMTP__PASSWORD_FILE` → (`smtp.password`, file content without the final newline).
fn file_secrets(
    vars: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut secrets = Vec::new();
    for (name, path) in vars {
        let Some(key) = name
            .strip_prefix("REKEY_")
            .and_then(|rest| rest.strip_suffix("_FILE"))
        else {
            continue;
        };
        let value =
            std::fs::read_to_string(&path).with_context(|| format!("reading {name} ({path})"))?;
        let key = key.to_lowercase().replace("__", ".");
        secrets.push((key, value.trim_end_matches(['\n', '\r']).to_owned()));
    }
    Ok(secrets)
}

impl Settings {
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let env = || Env::prefixed("REKEY_").split("__");
        figment = figment.merge(
            env().filter(|key| !key.as_str().ends_with("_file") && !is_text_key(key.as_str())),
        );
        // Text keys are taken verbatim: figment would read `+15005550006` or `12345` as a
        // number (dropping the `+`) and then refuse it for a string field.
        for (key, value) in env().iter() {
            if is_text_key(key.as_str()) {
                figment = figment.merge((key.as_str().to_owned(), value));
            }
        }
        for (key, value) in file_secrets(std::env::vars())? {
            figment = figment.merge((key, value));
        }
        let settings: Settings = figment.extract().context("invalid configuration")?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if !(self.public_url.starts_with("http://") || self.public_url.starts_with("https://")) {
            bail!("public_url must start with http:// or https://");
        }
        if !matches!(self.code.alphabet.as_str(), "rekey" | "zitadel") {
            bail!("code.alphabet must be rekey or zitadel");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format must be text or json");
        }
        if !matches!(self.smtp.tls.as_str(), "none" | "starttls" | "tls") {
            bail!("smtp.tls must be none, starttls or tls");
        }
        if self.limits.ipv6_prefix > 128 {
            bail!("limits.ipv6_prefix must be 0 to 128");
        }
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
        self.trusted_proxy_nets()?;
        self.cors_policy()?;
        Ok(())
    }

    pub fn trusted_proxy_nets(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        self.trusted_proxies
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<ipnet::IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .with_context(|| format!("trusted_proxies: {s:?} is not a CIDR"))
            })
            .collect()
    }

    pub fn cors_policy(&self) -> anyhow::Result<rekey_api::cors::CorsPolicy> {
        rekey_api::cors::CorsPolicy::parse(&self.cors.allowed_origins)
            .map_err(|err| anyhow::anyhow!("cors.allowed_origins: {err}"))
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
    use super::*;

    #[test]
    fn file_secrets_map_to_nested_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret\n").unwrap();
        let vars = vec![
            (
                "REKEY_SMTP__PASSWORD_FILE".to_owned(),
                path.display().to_string(),
            ),
            ("OTHER_FILE".to_owned(), "/nope".to_owned()),
        ];
        let secrets = file_secrets(vars.into_iter()).unwrap();
        assert_eq!(
            secrets,
            vec![("smtp.password".to_owned(), "s3cret".to_owned())]
        );
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
            let s = Settings::load(Some(Path::new("rekey.toml"))).map_err(|e| e.to_string())?;
            assert_eq!(s.listen, "0.0.0.0:9000"); // TOML over default
            assert_eq!(s.public_url, "https://env.test"); // env over TOML
            assert_eq!(s.smtp.host.as_deref(), Some("toml-smtp"));
            assert_eq!(s.smtp.port, Some(587));
            assert_eq!(s.code.length, 12);
            assert_eq!(s.limits.messages_per_user_per_hour, 3);
            assert_eq!(s.smtp.password.as_deref(), Some("from-file"));
            assert_eq!(s.sms.twilio_from.as_deref(), Some("+15005550006"));
            assert_eq!(s.smtp.username.as_deref(), Some("12345"));
            assert_eq!(s.idle_timeout_ms, 60_000);
            assert_eq!(s.max_connections, 512);
            Ok(())
        });
    }

    #[test]
    fn invalid_values_are_refused_at_start() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("REKEY_SMTP__TLS", "sometimes");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_SMTP__TLS", "none");
            jail.set_env("REKEY_TRUSTED_PROXIES", "10.0.0.0/8, not-a-cidr");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1");
            jail.set_env("REKEY_OUTBOX__LEASE_MS", "999");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_OUTBOX__LEASE_MS", "2000");
            jail.set_env("REKEY_OUTBOX__CONCURRENCY", "0");
            assert!(Settings::load(None).is_err());
            jail.set_env("REKEY_OUTBOX__CONCURRENCY", "2");
            jail.set_env("REKEY_CORS__ALLOWED_ORIGINS", "https://app.example/path");
            assert!(Settings::load(None).is_err());
            jail.set_env(
                "REKEY_CORS__ALLOWED_ORIGINS",
                "https://app.example, http://127.0.0.1:3000",
            );
            assert_eq!(
                Settings::load(None).unwrap().cors_policy().unwrap(),
                rekey_api::cors::CorsPolicy::Origins(vec![
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
                Settings::load(None)
                    .unwrap()
                    .trusted_proxy_nets()
                    .unwrap()
                    .len(),
                2
            );
            Ok(())
        });
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let mut s = Settings::default();
        s.smtp.password = Some("smtp-secret-value".to_owned());
        s.keys.code_hmac = Some("k1:c2VjcmV0".to_owned());
        s.sms.twilio_auth_token = Some("twilio-secret".to_owned());
        let shown = format!("{s:?}");
        for secret in ["smtp-secret-value", "c2VjcmV0", "twilio-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert!(shown.contains("<set>"));
    }

    #[test]
    fn defaults_match_the_spec() {
        let s = Settings::default();
        assert_eq!(s.listen, "127.0.0.1:8080");
        assert_eq!(s.public_url, "http://127.0.0.1:8080");
        assert_eq!(s.database_url(), "sqlite://rekey-data/rekey.db");
        assert_eq!(s.unauth_deadline_ms, 400);
        assert_eq!(s.argon2.queue, 64);
        assert_eq!(s.outbox.max_attempts, 8);
        assert_eq!(s.outbox.poll_ms, 500);
        assert_eq!(s.outbox.backoff_ms, 1000);
        assert_eq!(s.outbox.lease_ms, 60_000);
        assert_eq!(s.header_timeout_ms, 10_000);
        assert_eq!(s.idle_timeout_ms, 75_000);
        assert_eq!(s.max_connections, 4096);
        assert_eq!(s.shutdown_timeout_ms, 10_000);
    }
}
