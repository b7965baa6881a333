//! Instance-wide defaults (SPEC §7, §10, §12), a tenant's settings merged over them, and the
//! checks a tenant's settings must pass.

use chrono::Duration;
use serde::Deserialize;

use crate::domain::reset_code::{CodeKind, CodePolicy};
use crate::domain::tenant::{CodeAlphabet, TenantSettings};
use crate::error::Error;
use crate::policy::password::PasswordPolicy;
use crate::policy::url_template::UrlTemplate;

/// Shortest and longest code lifetime a tenant may choose (SPEC §7).
const MIN_EXPIRY_SECS: u64 = 5 * 60;
const MAX_EXPIRY_SECS: u64 = 7 * 24 * 3600;

/// Wrong submissions that kill a code (SPEC §7). A rule of the product, not a setting.
pub const MAX_CODE_ATTEMPTS: u32 = 5;

/// Instance-wide defaults (SPEC §7, §10, §12); tenants override them in their settings.
/// [`Config::default`] holds the defaults of the matching `REKEY_CODE__…` keys.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base of every link in a message; never taken from a request.
    pub public_url: String,
    pub code_length: u32,
    pub code_alphabet: CodeAlphabet,
    pub code_expiry_secs: u64,
    pub code_init_expiry_secs: u64,
    pub max_code_attempts: u32,
    pub password: PasswordPolicy,
    pub limits: Limits,
    /// The event webhook URLs (SPEC §12): each event is queued once per URL. Empty: no
    /// events are queued. (The signing secret stays with the delivery worker.)
    pub event_webhooks: Vec<String>,
}

/// Instance-wide rate limits (SPEC §10); also the `[limits]` section of the configuration
/// (`REKEY_LIMITS__…`), whose defaults are [`Limits::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub messages_per_user_per_hour: u32,
    pub unauth_per_cname_email_per_hour: u32,
    pub unauth_per_ip_per_minute: u32,
    pub code_tries_per_ip_per_minute: u32,
    /// Per-IP limits count an IPv6 client by this prefix of its address (SPEC §12): one
    /// subscriber usually holds a whole /64 and could otherwise rotate through it.
    pub ipv6_prefix: u8,
}

impl Default for Limits {
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

impl Limits {
    /// The part of a client address that per-IP limits count: an IPv4 address (also one
    /// mapped into IPv6) as it is, an IPv6 address cut to [`Limits::ipv6_prefix`] bits.
    pub fn ip_key(&self, ip: &str) -> String {
        match ip.parse::<std::net::IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(std::net::IpAddr::V6(v6)) => {
                let bits = u32::from(self.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
                let net = std::net::Ipv6Addr::from(u128::from(v6) & mask);
                format!("{net}/{bits}")
            }
            Ok(v4) => v4.to_string(),
            Err(_) => ip.to_owned(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080".to_owned(),
            code_length: 8,
            code_alphabet: CodeAlphabet::Rekey,
            code_expiry_secs: 3600,
            code_init_expiry_secs: 72 * 3600,
            max_code_attempts: MAX_CODE_ATTEMPTS,
            password: PasswordPolicy::default(),
            limits: Limits::default(),
            event_webhooks: Vec::new(),
        }
    }
}

/// A tenant's settings merged over the instance defaults.
#[derive(Debug, Clone)]
pub struct EffectiveSettings {
    pub code: CodePolicy,
    pub code_expiry: Duration,
    pub code_init_expiry: Duration,
    pub password: PasswordPolicy,
    pub messages_per_user_per_hour: u32,
    /// The link of a reset message: the tenant's template, else the hosted reset page.
    pub link_template: UrlTemplate,
    /// The link of an onboarding message: the tenant's template, else the hosted "set your
    /// password" page (SPEC §8).
    pub init_link_template: UrlTemplate,
    pub language: String,
}

fn clamp_expiry(secs: u64) -> Duration {
    let secs = secs.clamp(MIN_EXPIRY_SECS, MAX_EXPIRY_SECS);
    Duration::seconds(i64::try_from(secs).unwrap_or(3600))
}

impl Config {
    /// The hosted page's link for a code of `kind` (SPEC §8).
    pub fn default_link_template(&self, kind: CodeKind) -> String {
        let page = match kind {
            CodeKind::Reset => "reset",
            CodeKind::Init => "set",
        };
        format!(
            "{}/ui/password/{page}?userID={{{{.UserID}}}}&code={{{{.Code}}}}&orgID={{{{.OrgID}}}}",
            self.public_url.trim_end_matches('/')
        )
    }

    /// A tenant's password policy merged over the instance default.
    pub fn password_policy(&self, settings: &TenantSettings) -> PasswordPolicy {
        let d = &self.password;
        PasswordPolicy {
            min_length: settings.password_min_length.unwrap_or(d.min_length),
            max_length: settings.password_max_length.unwrap_or(d.max_length),
            require_lower: settings.password_require_lower.unwrap_or(d.require_lower),
            require_upper: settings.password_require_upper.unwrap_or(d.require_upper),
            require_digit: settings.password_require_digit.unwrap_or(d.require_digit),
            require_symbol: settings.password_require_symbol.unwrap_or(d.require_symbol),
        }
    }

    pub fn effective(&self, settings: &TenantSettings) -> Result<EffectiveSettings, Error> {
        let link = |kind| {
            let template = settings
                .link_template
                .clone()
                .unwrap_or_else(|| self.default_link_template(kind));
            UrlTemplate::parse_unbounded(&template).map_err(|_| {
                tracing::error!("tenant link template is invalid");
                Error::internal()
            })
        };
        Ok(EffectiveSettings {
            code: CodePolicy {
                alphabet: settings.code_alphabet.unwrap_or(self.code_alphabet),
                length: settings
                    .code_length
                    .unwrap_or(match settings.code_alphabet {
                        Some(CodeAlphabet::Zitadel) => 6,
                        _ => self.code_length,
                    }),
            },
            code_expiry: clamp_expiry(settings.code_expiry_secs.unwrap_or(self.code_expiry_secs)),
            code_init_expiry: clamp_expiry(
                settings
                    .code_init_expiry_secs
                    .unwrap_or(self.code_init_expiry_secs),
            ),
            password: self.password_policy(settings),
            messages_per_user_per_hour: settings
                .limits_messages_per_user_per_hour
                .unwrap_or(self.limits.messages_per_user_per_hour),
            link_template: link(CodeKind::Reset)?,
            init_link_template: link(CodeKind::Init)?,
            language: settings.language.clone().unwrap_or_else(|| "en".to_owned()),
        })
    }
}

/// Checks a tenant's settings before they are stored.
pub(crate) fn validate_settings(s: &TenantSettings) -> Result<(), Error> {
    let bad = |what: &'static str| Error::invalid("REKEY-TnSet", what);
    if let Some(len) = s.code_length {
        if !(6..=20).contains(&len) {
            return Err(bad("code.length must be between 6 and 20"));
        }
    }
    for secs in [s.code_expiry_secs, s.code_init_expiry_secs]
        .into_iter()
        .flatten()
    {
        if !(MIN_EXPIRY_SECS..=MAX_EXPIRY_SECS).contains(&secs) {
            return Err(bad("code expiry must be between 300 and 604800 seconds"));
        }
    }
    let min = s.password_min_length.unwrap_or(1);
    let max = s.password_max_length.unwrap_or(1024);
    if min == 0 || max > 1024 || min > max {
        return Err(bad("password lengths must satisfy 1 <= min <= max <= 1024"));
    }
    if s.limits_messages_per_user_per_hour == Some(0) {
        return Err(bad("limits.messages_per_user_per_hour must be at least 1"));
    }
    if let Some(template) = &s.link_template {
        UrlTemplate::parse_unbounded(template)?;
    }
    if let Some(url) = &s.ui_login_url {
        validate_login_url(url).map_err(bad)?;
    }
    if let Some(lang) = &s.language {
        if lang.is_empty() || lang.len() > 16 {
            return Err(bad("language must be a language tag such as en or de"));
        }
    }
    Ok(())
}

/// `ui.login_url`: an absolute http(s) URL with a host, shown as a link on the hosted pages.
pub fn validate_login_url(value: &str) -> Result<(), &'static str> {
    const WHAT: &str =
        "ui.login_url must be an absolute http or https URL of at most 2048 characters";
    if value.len() > 2048 || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(WHAT);
    }
    match url::Url::parse(value) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host_str().is_some_and(|h| !h.is_empty())
                && url.username().is_empty()
                && url.password().is_none() =>
        {
            Ok(())
        }
        _ => Err(WHAT),
    }
}

#[cfg(test)]
mod limit_tests {
    use super::Limits;

    #[test]
    fn ipv6_clients_are_counted_by_their_prefix() {
        let limits = Limits::default();
        assert_eq!(limits.ip_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            limits.ip_key("2001:db8:1:2:ffff:ffff:ffff:ffff"),
            limits.ip_key("2001:db8:1:2::9")
        );
        assert_ne!(
            limits.ip_key("2001:db8:1:3::1"),
            limits.ip_key("2001:db8:1:2::1")
        );
        assert_eq!(limits.ip_key("192.0.2.7"), "192.0.2.7");
        assert_eq!(limits.ip_key("::ffff:192.0.2.7"), "192.0.2.7");
        let whole = Limits {
            ipv6_prefix: 128,
            ..Limits::default()
        };
        assert_eq!(whole.ip_key("2001:db8::1"), "2001:db8::1/128");
        let none = Limits {
            ipv6_prefix: 0,
            ..Limits::default()
        };
        assert_eq!(none.ip_key("2001:db8::1"), "::/0");
    }
}
