//! Message texts: minijinja templates shipped in the crate, per kind and language (`en`, `de`;
//! the user's language, falling back to `en`).
//!
//! Per kind and language there are two files: `{kind}.txt` with the blocks `subject`, `text`
//! (plain-text email) and `sms`, rendered without escaping; and `{kind}.html`, the HTML email,
//! autoescaped (a display name `<b>` arrives as `&lt;b&gt;`). The link comes from the sealed
//! payload, where the core built it from the configured public URL.
//!
//! Per-tenant overrides are not there yet: they would be templates of the same names loaded
//! from the tenant's settings ahead of these.

use chrono::{DateTime, Utc};
use minijinja::{context, AutoEscape, Environment, UndefinedBehavior, Value};
use rekey_core::domain::MessageKind;
use rekey_core::domain::MessagePayload;

/// The languages shipped; the first is the fallback.
pub const LANGUAGES: [&str; 2] = ["en", "de"];

const SOURCES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../templates/layout.html")),
    ("button.html", include_str!("../templates/button.html")),
    (
        "en/password_reset.txt",
        include_str!("../templates/en/password_reset.txt"),
    ),
    (
        "en/password_reset.html",
        include_str!("../templates/en/password_reset.html"),
    ),
    (
        "en/password_init.txt",
        include_str!("../templates/en/password_init.txt"),
    ),
    (
        "en/password_init.html",
        include_str!("../templates/en/password_init.html"),
    ),
    (
        "en/password_changed.txt",
        include_str!("../templates/en/password_changed.txt"),
    ),
    (
        "en/password_changed.html",
        include_str!("../templates/en/password_changed.html"),
    ),
    (
        "de/password_reset.txt",
        include_str!("../templates/de/password_reset.txt"),
    ),
    (
        "de/password_reset.html",
        include_str!("../templates/de/password_reset.html"),
    ),
    (
        "de/password_init.txt",
        include_str!("../templates/de/password_init.txt"),
    ),
    (
        "de/password_init.html",
        include_str!("../templates/de/password_init.html"),
    ),
    (
        "de/password_changed.txt",
        include_str!("../templates/de/password_changed.txt"),
    ),
    (
        "de/password_changed.html",
        include_str!("../templates/de/password_changed.html"),
    ),
];

/// A message rendered for every channel. Holds the code: no `Debug` of the texts.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The language the texts are in (one of [`LANGUAGES`]).
    pub language: &'static str,
    pub subject: String,
    /// The plain-text email part.
    pub text: String,
    /// The HTML email part.
    pub html: String,
    /// The SMS text.
    pub sms: String,
}

impl std::fmt::Debug for Rendered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rendered")
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

/// A template could not be rendered (a bug in a template: the shipped ones are tested).
#[derive(Debug, thiserror::Error)]
#[error("template {template}: {reason}")]
pub struct RenderError {
    pub template: String,
    /// minijinja's description; it names the template construct, never a value.
    pub reason: String,
}

/// The shipped templates, parsed once.
pub struct Templates {
    env: Environment<'static>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The templates shipped in the crate (English and German).
    pub fn builtin() -> Result<Self, RenderError> {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") {
                AutoEscape::Html
            } else {
                AutoEscape::None
            }
        });
        // A misspelt variable is an error, not an empty string in a sent message.
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        for (name, source) in SOURCES {
            env.add_template(name, source).map_err(|e| RenderError {
                template: (*name).to_owned(),
                reason: e.to_string(),
            })?;
        }
        Ok(Self { env })
    }

    /// Renders `kind` for `payload` in the user's language (fallback `en`). `queued_at` is when
    /// the message was written (the code's lifetime is counted from there).
    pub fn render(
        &self,
        kind: MessageKind,
        payload: &MessagePayload,
        queued_at: DateTime<Utc>,
    ) -> Result<Rendered, RenderError> {
        let language = language(&payload.language);
        let expires_at = payload.expires_at.unwrap_or(queued_at);
        let ctx = context! {
            language,
            display_name => display_name(payload),
            code => payload.code.clone().unwrap_or_default(),
            link => payload.link.clone(),
            expires_at => format_time(expires_at),
            valid_for => valid_for(language, expires_at - queued_at),
            changed_at => format_time(queued_at),
        };

        let txt = format!("{language}/{}.txt", kind.as_str());
        let (subject, text, sms) = self.with_template(&txt, |tmpl| {
            let mut captured = tmpl.render_captured(ctx.clone())?;
            captured.with_state_mut(|state| {
                Ok((
                    state.render_block("subject")?,
                    state.render_block("text")?,
                    state.render_block("sms")?,
                ))
            })
        })?;
        let subject = subject.trim().to_owned();
        let html_name = format!("{language}/{}.html", kind.as_str());
        let html = self.with_template(&html_name, |tmpl| {
            tmpl.render(context! { subject => subject.clone(), ..ctx.clone() })
        })?;
        Ok(Rendered {
            language,
            subject,
            text: text.trim().to_owned() + "\n",
            html,
            sms: sms.trim().to_owned(),
        })
    }

    fn with_template<T>(
        &self,
        name: &str,
        render: impl FnOnce(&minijinja::Template<'_, '_>) -> Result<T, minijinja::Error>,
    ) -> Result<T, RenderError> {
        let error = |e: minijinja::Error| RenderError {
            template: name.to_owned(),
            reason: e.kind().to_string(),
        };
        let tmpl = self.env.get_template(name).map_err(error)?;
        render(&tmpl).map_err(error)
    }
}

/// `de`, `de-CH`, `DE_de` → `de`; anything not shipped → `en`.
pub fn language(preferred: &str) -> &'static str {
    let primary = preferred
        .split(['-', '_'])
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    LANGUAGES
        .iter()
        .copied()
        .find(|l| *l == primary)
        .unwrap_or(LANGUAGES[0])
}

fn display_name(payload: &MessagePayload) -> Value {
    Value::from(payload.display_name.trim().to_owned())
}

fn format_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// A code's lifetime in words: whole days from two days on, else whole hours, else minutes.
pub fn valid_for(language: &str, lifetime: chrono::Duration) -> String {
    let secs = lifetime.num_seconds().max(0);
    let (n, unit) = if secs >= 2 * 86_400 && secs % 86_400 == 0 {
        (secs / 86_400, Unit::Day)
    } else if secs >= 3_600 && secs % 3_600 == 0 {
        (secs / 3_600, Unit::Hour)
    } else {
        ((secs + 30) / 60, Unit::Minute)
    };
    let word = match (language, unit, n == 1) {
        ("de", Unit::Day, true) => "Tag",
        ("de", Unit::Day, false) => "Tage",
        ("de", Unit::Hour, true) => "Stunde",
        ("de", Unit::Hour, false) => "Stunden",
        ("de", Unit::Minute, true) => "Minute",
        ("de", Unit::Minute, false) => "Minuten",
        (_, Unit::Day, true) => "day",
        (_, Unit::Day, false) => "days",
        (_, Unit::Hour, true) => "hour",
        (_, Unit::Hour, false) => "hours",
        (_, Unit::Minute, true) => "minute",
        (_, Unit::Minute, false) => "minutes",
    };
    format!("{n} {word}")
}

#[derive(Clone, Copy)]
enum Unit {
    Day,
    Hour,
    Minute,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use chrono::{Duration, TimeZone};
    use rekey_core::domain::{TenantId, UserId};

    use super::*;

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn payload(language: &str, hours: i64) -> MessagePayload {
        MessagePayload {
            tenant_id: TenantId::parse("100").unwrap(),
            user_id: UserId::parse("200").unwrap(),
            display_name: "Ada Lovelace".to_owned(),
            language: language.to_owned(),
            code: Some("ABCD2345".to_owned()),
            link: Some(
                "https://rekey.example/ui/password/reset?userID=200&code=ABCD2345&orgID=100"
                    .to_owned(),
            ),
            expires_at: Some(at() + Duration::hours(hours)),
        }
    }

    /// The HTML entities minijinja's escaper writes, decoded (enough for these assertions).
    fn unescape(html: &str) -> String {
        html.replace("&#x2f;", "/")
            .replace("&quot;", "\"")
            .replace("&#x27;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&")
    }

    fn render(kind: MessageKind, p: &MessagePayload) -> Rendered {
        Templates::builtin().unwrap().render(kind, p, at()).unwrap()
    }

    #[test]
    fn english_reset_has_the_spec_texts_code_link_and_expiry() {
        let r = render(MessageKind::PasswordReset, &payload("en", 1));
        assert_eq!(r.language, "en");
        assert_eq!(r.subject, "Reset password");
        assert!(r.text.starts_with("Hello Ada Lovelace,\n"), "{}", r.text);
        assert!(r.text.contains(
            "We received a password reset request. Please use the button below to reset your \
             password. (Code ABCD2345) If you didn't ask for this mail, please ignore it."
        ));
        let link = "https://rekey.example/ui/password/reset?userID=200&code=ABCD2345&orgID=100";
        assert!(r.text.contains(link), "plain text keeps the link as is");
        assert!(r
            .text
            .contains("valid for 1 hour, until 2026-03-01 13:00 UTC"));
        assert!(r.html.contains("Hello Ada Lovelace,"));
        assert!(r.html.contains(">Reset password</a>"), "the button");
        assert!(r.html.contains("<title>Reset password</title>"));
        assert!(
            unescape(&r.html).contains(&format!("<a href=\"{link}\"")),
            "the link as the button's target: {}",
            r.html
        );
        assert!(
            r.html.contains("code=ABCD2345&amp;orgID=100"),
            "attribute-escaped"
        );
        assert!(r.html.contains("ABCD2345"));
        assert!(r.html.contains("2026-03-01 13:00 UTC"));
        assert!(r.sms.contains("ABCD2345") && r.sms.contains(link));
        assert!(!r.sms.contains('\n'));
    }

    #[test]
    fn onboarding_says_set_your_password_and_shows_the_longer_expiry() {
        let r = render(MessageKind::PasswordInit, &payload("en", 72));
        assert_eq!(r.subject, "Set your password");
        assert!(r.text.contains("set your password"));
        assert!(r
            .text
            .contains("valid for 3 days, until 2026-03-04 12:00 UTC"));
        assert!(r.html.contains(">Set password</a>"));
        assert!(r.html.contains("3 days"));
        let de = render(MessageKind::PasswordInit, &payload("de", 72));
        assert_eq!(de.subject, "Passwort festlegen");
        assert!(de.text.contains("3 Tage gültig, bis 2026-03-04 12:00 UTC"));
    }

    #[test]
    fn german_by_preference_with_region_and_english_fallback() {
        for lang in ["de", "de-CH", "DE_de"] {
            let r = render(MessageKind::PasswordReset, &payload(lang, 1));
            assert_eq!(r.language, "de", "{lang}");
            assert_eq!(r.subject, "Passwort zurücksetzen");
            assert!(r.text.starts_with("Hallo Ada Lovelace,"));
            assert!(r.text.contains("(Code ABCD2345)"));
            assert!(r.text.contains("1 Stunde gültig"));
            assert!(r.html.contains(">Passwort zurücksetzen</a>"));
            assert!(r.html.contains("<html lang=\"de\">"));
        }
        for lang in ["fr", "", "x-klingon"] {
            let r = render(MessageKind::PasswordReset, &payload(lang, 1));
            assert_eq!(r.language, "en", "{lang:?}");
            assert_eq!(r.subject, "Reset password");
        }
    }

    #[test]
    fn html_is_autoescaped_and_text_is_not() {
        let mut p = payload("en", 1);
        p.display_name = "<script>alert(1)</script> O'Brien & Co".to_owned();
        let r = render(MessageKind::PasswordReset, &p);
        assert!(!r.html.contains("<script>"), "{}", r.html);
        assert!(r
            .html
            .contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"));
        assert!(r.html.contains("O&#x27;Brien &amp; Co"));
        assert!(unescape(&r.html).contains("<p>Hello <script>alert(1)</script> O'Brien & Co,</p>"));
        assert!(r
            .text
            .starts_with("Hello <script>alert(1)</script> O'Brien & Co,"));
        let mut p = payload("en", 1);
        p.link = Some("https://x.example/?a=\"><script>".to_owned());
        let r = render(MessageKind::PasswordReset, &p);
        assert!(
            !r.html.contains("\"><script>"),
            "attribute cannot be broken out of"
        );
    }

    #[test]
    fn a_message_without_link_has_no_button() {
        let mut p = payload("en", 1);
        p.link = None;
        let r = render(MessageKind::PasswordReset, &p);
        assert!(!r.html.contains("<a "));
        assert!(!r.text.contains("Reset password:"));
        assert!(r.sms.ends_with("(valid for 1 hour)."), "{}", r.sms);
    }

    #[test]
    fn password_changed_names_the_time_and_carries_no_code() {
        let p = MessagePayload {
            code: None,
            link: None,
            expires_at: None,
            ..payload("en", 1)
        };
        let r = render(MessageKind::PasswordChanged, &p);
        assert_eq!(r.subject, "Password changed");
        assert!(r.text.contains("changed on 2026-03-01 12:00 UTC"));
        assert!(!r.html.contains("<a "));
        let de = render(
            MessageKind::PasswordChanged,
            &MessagePayload {
                language: "de".to_owned(),
                ..p
            },
        );
        assert_eq!(de.subject, "Passwort geändert");
        assert!(de.html.contains("am 2026-03-01 12:00 UTC geändert"));
    }

    #[test]
    fn every_kind_renders_in_every_language() {
        let templates = Templates::builtin().unwrap();
        for kind in [
            MessageKind::PasswordReset,
            MessageKind::PasswordInit,
            MessageKind::PasswordChanged,
        ] {
            for lang in LANGUAGES {
                let r = templates.render(kind, &payload(lang, 1), at()).unwrap();
                for part in [&r.subject, &r.text, &r.html, &r.sms] {
                    assert!(!part.trim().is_empty(), "{kind:?} {lang}");
                }
                assert!(!r.subject.contains('\n'));
            }
        }
    }

    #[test]
    fn lifetimes_in_words() {
        assert_eq!(valid_for("en", Duration::hours(1)), "1 hour");
        assert_eq!(valid_for("en", Duration::hours(72)), "3 days");
        assert_eq!(valid_for("en", Duration::hours(36)), "36 hours");
        assert_eq!(valid_for("en", Duration::minutes(5)), "5 minutes");
        assert_eq!(valid_for("en", Duration::seconds(90)), "2 minutes");
        assert_eq!(valid_for("de", Duration::hours(1)), "1 Stunde");
        assert_eq!(valid_for("de", Duration::days(7)), "7 Tage");
        assert_eq!(valid_for("de", Duration::minutes(1)), "1 Minute");
    }

    #[test]
    fn debug_shows_no_text() {
        let r = render(MessageKind::PasswordReset, &payload("en", 1));
        let shown = format!("{r:?}");
        assert!(!shown.contains("ABCD2345"), "{shown}");
    }
}
