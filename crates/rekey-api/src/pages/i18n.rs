//! The pages' two languages: every text of both in one place, and the choice from `?lang=`
//! (or the form's `lang` field), else `Accept-Language` with its q-values, else English.

use rekey_core::policy::password::{PasswordPolicy, PasswordRule};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    De,
}

impl Lang {
    pub fn tag(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::De => "de",
        }
    }

    pub fn other(self) -> Lang {
        match self {
            Lang::En => Lang::De,
            Lang::De => Lang::En,
        }
    }

    /// `en` or `de` (any case); anything else is not a choice.
    pub fn parse(value: &str) -> Option<Lang> {
        match value.trim().to_ascii_lowercase().as_str() {
            "en" => Some(Lang::En),
            "de" => Some(Lang::De),
            _ => None,
        }
    }

    /// The best supported language of an `Accept-Language` header: highest q wins, the earlier
    /// entry on a tie, `q=0` means "not this one", `*` means English. `None` when the header
    /// names neither language.
    pub fn from_accept_language(header: &str) -> Option<Lang> {
        let mut best: Option<(Lang, u16)> = None;
        for item in header.split(',') {
            let mut parts = item.split(';');
            let range = parts.next().unwrap_or("").trim();
            let primary = range.split('-').next().unwrap_or("").to_ascii_lowercase();
            let lang = match primary.as_str() {
                "en" | "*" => Lang::En,
                "de" => Lang::De,
                _ => continue,
            };
            let mut q = 1000u16;
            for param in parts {
                if let Some((name, value)) = param.split_once('=') {
                    if name.trim().eq_ignore_ascii_case("q") {
                        q = parse_q(value.trim()).unwrap_or(0);
                    }
                }
            }
            if q > 0 && best.is_none_or(|(_, b)| q > b) {
                best = Some((lang, q));
            }
        }
        best.map(|(lang, _)| lang)
    }

    pub fn texts(self) -> &'static Texts {
        match self {
            Lang::En => &EN,
            Lang::De => &DE,
        }
    }
}

/// A q-value (`0`, `0.5`, `1.000`) in thousandths.
fn parse_q(value: &str) -> Option<u16> {
    let (whole, frac) = value.split_once('.').unwrap_or((value, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let frac_value = format!("{frac:0<3}").parse::<u16>().ok()?;
    match whole {
        "0" => Some(frac_value),
        "1" if frac_value == 0 => Some(1000),
        _ => None,
    }
}

/// Every text of a page, in one language.
#[derive(Debug, Serialize)]
pub struct Texts {
    pub lang_name: &'static str,
    pub lang_nav: &'static str,
    pub title_reset: &'static str,
    pub title_set: &'static str,
    pub title_forgot: &'static str,
    pub title_changed: &'static str,
    pub title_set_done: &'static str,
    pub title_sent: &'static str,
    pub title_error: &'static str,
    pub title_csrf: &'static str,
    pub title_rate_limited: &'static str,
    pub organization: &'static str,
    pub intro_reset: &'static str,
    pub intro_set: &'static str,
    pub intro_forgot: &'static str,
    pub label_code: &'static str,
    pub hint_code: &'static str,
    pub label_password: &'static str,
    pub label_confirm: &'static str,
    pub rules_heading: &'static str,
    pub submit_reset: &'static str,
    pub submit_set: &'static str,
    pub submit_forgot: &'static str,
    pub label_cname: &'static str,
    pub hint_cname: &'static str,
    pub label_email: &'static str,
    pub summary_heading: &'static str,
    pub err_code_invalid: &'static str,
    pub err_code_used_up: &'static str,
    pub err_code_expired: &'static str,
    pub err_code_not_found: &'static str,
    pub err_code_format: &'static str,
    pub err_policy: &'static str,
    pub err_mismatch: &'static str,
    pub err_email: &'static str,
    pub err_cname: &'static str,
    pub err_csrf: &'static str,
    pub err_unavailable: &'static str,
    pub err_internal: &'static str,
    pub reload: &'static str,
    pub new_link: &'static str,
    pub success_reset: &'static str,
    pub success_set: &'static str,
    pub login: &'static str,
    pub sent_body: &'static str,
    pub sent_again: &'static str,
    pub rule_lower: &'static str,
    pub rule_upper: &'static str,
    pub rule_digit: &'static str,
    pub rule_symbol: &'static str,
    pub rule_common: &'static str,
    pub fail_lower: &'static str,
    pub fail_upper: &'static str,
    pub fail_digit: &'static str,
    pub fail_symbol: &'static str,
    pub fail_common: &'static str,
}

const EN: Texts = Texts {
    lang_name: "English",
    lang_nav: "Language",
    title_reset: "Reset your password",
    title_set: "Set your password",
    title_forgot: "Forgot your password?",
    title_changed: "Your password has been changed",
    title_set_done: "Your password has been set",
    title_sent: "Check your email",
    title_error: "Something went wrong",
    title_csrf: "Please reload the form",
    title_rate_limited: "Too many attempts",
    organization: "Organization",
    intro_reset: "Enter the code from your message and choose a new password.",
    intro_set: "Enter the code from your message and choose a password for your new account.",
    intro_forgot: "Enter your organization and your email address. If an account exists, we will send you a link to reset your password.",
    label_code: "Code",
    hint_code: "The code from the email or text message we sent you.",
    label_password: "New password",
    label_confirm: "Confirm new password",
    rules_heading: "Your password must",
    submit_reset: "Change password",
    submit_set: "Set password",
    submit_forgot: "Send link",
    label_cname: "Organization domain",
    hint_cname: "For example acme.example.com",
    label_email: "Email address",
    summary_heading: "There is a problem",
    err_code_invalid: "Code is invalid.",
    err_code_used_up: "This code can no longer be used: it was entered wrongly too many times. Ask for a new link.",
    err_code_expired: "This code has expired. Ask for a new link.",
    err_code_not_found: "Code not found: it may have been used already or replaced by a newer one. Ask for a new link.",
    err_code_format: "Enter the code: 1 to 20 characters.",
    err_policy: "The password does not meet these rules:",
    err_mismatch: "The passwords do not match.",
    err_email: "Enter a valid email address, like name@example.com.",
    err_cname: "Enter your organization's domain (at most 1024 characters).",
    err_csrf: "This form has expired or was sent from another site, so nothing was changed. Reload the form and try again.",
    err_unavailable: "The service is not available right now. Nothing was changed. Please try again later.",
    err_internal: "An unexpected error happened. Please try again later.",
    reload: "Reload the form",
    new_link: "Ask for a new link",
    success_reset: "You can now sign in with your new password.",
    success_set: "You can now sign in with your password.",
    login: "Continue to sign in",
    sent_body: "If an account exists for this address, we sent a link. It can take a few minutes to arrive; please also check your spam folder.",
    sent_again: "Ask again",
    rule_lower: "contain a lower-case letter",
    rule_upper: "contain an upper-case letter",
    rule_digit: "contain a number",
    rule_symbol: "contain a symbol (not a letter or number)",
    rule_common: "not be a commonly used password",
    fail_lower: "It has no lower-case letter.",
    fail_upper: "It has no upper-case letter.",
    fail_digit: "It has no number.",
    fail_symbol: "It has no symbol (a character that is not a letter or number).",
    fail_common: "It is a commonly used password. Choose a less common one.",
};

const DE: Texts = Texts {
    lang_name: "Deutsch",
    lang_nav: "Sprache",
    title_reset: "Passwort zurücksetzen",
    title_set: "Passwort festlegen",
    title_forgot: "Passwort vergessen?",
    title_changed: "Ihr Passwort wurde geändert",
    title_set_done: "Ihr Passwort wurde festgelegt",
    title_sent: "Prüfen Sie Ihre E-Mails",
    title_error: "Etwas ist schiefgelaufen",
    title_csrf: "Bitte laden Sie das Formular neu",
    title_rate_limited: "Zu viele Versuche",
    organization: "Organisation",
    intro_reset: "Geben Sie den Code aus Ihrer Nachricht ein und wählen Sie ein neues Passwort.",
    intro_set: "Geben Sie den Code aus Ihrer Nachricht ein und wählen Sie ein Passwort für Ihr neues Konto.",
    intro_forgot: "Geben Sie Ihre Organisation und Ihre E-Mail-Adresse ein. Wenn ein Konto existiert, senden wir Ihnen einen Link zum Zurücksetzen Ihres Passworts.",
    label_code: "Code",
    hint_code: "Der Code aus der E-Mail oder SMS, die wir Ihnen gesendet haben.",
    label_password: "Neues Passwort",
    label_confirm: "Neues Passwort bestätigen",
    rules_heading: "Ihr Passwort muss",
    submit_reset: "Passwort ändern",
    submit_set: "Passwort festlegen",
    submit_forgot: "Link senden",
    label_cname: "Domain der Organisation",
    hint_cname: "Zum Beispiel acme.example.com",
    label_email: "E-Mail-Adresse",
    summary_heading: "Es gibt ein Problem",
    err_code_invalid: "Der Code ist ungültig.",
    err_code_used_up: "Dieser Code kann nicht mehr verwendet werden: Er wurde zu oft falsch eingegeben. Fordern Sie einen neuen Link an.",
    err_code_expired: "Dieser Code ist abgelaufen. Fordern Sie einen neuen Link an.",
    err_code_not_found: "Code nicht gefunden: Er wurde vielleicht schon verwendet oder durch einen neueren ersetzt. Fordern Sie einen neuen Link an.",
    err_code_format: "Geben Sie den Code ein: 1 bis 20 Zeichen.",
    err_policy: "Das Passwort erfüllt diese Regeln nicht:",
    err_mismatch: "Die Passwörter stimmen nicht überein.",
    err_email: "Geben Sie eine gültige E-Mail-Adresse ein, zum Beispiel name@example.com.",
    err_cname: "Geben Sie die Domain Ihrer Organisation ein (höchstens 1024 Zeichen).",
    err_csrf: "Dieses Formular ist abgelaufen oder wurde von einer anderen Website gesendet, daher wurde nichts geändert. Laden Sie das Formular neu und versuchen Sie es noch einmal.",
    err_unavailable: "Der Dienst ist gerade nicht verfügbar. Es wurde nichts geändert. Bitte versuchen Sie es später noch einmal.",
    err_internal: "Ein unerwarteter Fehler ist aufgetreten. Bitte versuchen Sie es später noch einmal.",
    reload: "Formular neu laden",
    new_link: "Neuen Link anfordern",
    success_reset: "Sie können sich jetzt mit Ihrem neuen Passwort anmelden.",
    success_set: "Sie können sich jetzt mit Ihrem Passwort anmelden.",
    login: "Weiter zur Anmeldung",
    sent_body: "Wenn für diese Adresse ein Konto existiert, haben wir einen Link gesendet. Es kann einige Minuten dauern, bis er ankommt; bitte prüfen Sie auch Ihren Spam-Ordner.",
    sent_again: "Erneut anfordern",
    rule_lower: "einen Kleinbuchstaben enthalten",
    rule_upper: "einen Großbuchstaben enthalten",
    rule_digit: "eine Ziffer enthalten",
    rule_symbol: "ein Sonderzeichen enthalten (weder Buchstabe noch Ziffer)",
    rule_common: "darf kein häufig verwendetes Passwort sein",
    fail_lower: "Es enthält keinen Kleinbuchstaben.",
    fail_upper: "Es enthält keinen Großbuchstaben.",
    fail_digit: "Es enthält keine Ziffer.",
    fail_symbol: "Es enthält kein Sonderzeichen (ein Zeichen, das weder Buchstabe noch Ziffer ist).",
    fail_common: "Es ist ein häufig verwendetes Passwort. Wählen Sie ein weniger verbreitetes.",
};

/// One rule, keyed by its stable name, in words.
#[derive(Debug, Serialize)]
pub struct RuleText {
    pub rule: &'static str,
    pub text: String,
}

/// The policy's rules as the form lists them.
pub fn policy_rules(lang: Lang, policy: &PasswordPolicy) -> Vec<RuleText> {
    let t = lang.texts();
    let length = match lang {
        Lang::En => format!(
            "be {} to {} characters long",
            policy.min_length, policy.max_length
        ),
        Lang::De => format!(
            "{} bis {} Zeichen lang sein",
            policy.min_length, policy.max_length
        ),
    };
    let mut rules = vec![RuleText {
        rule: "length",
        text: length,
    }];
    for (on, rule, text) in [
        (policy.require_lower, PasswordRule::Lower, t.rule_lower),
        (policy.require_upper, PasswordRule::Upper, t.rule_upper),
        (policy.require_digit, PasswordRule::Digit, t.rule_digit),
        (policy.require_symbol, PasswordRule::Symbol, t.rule_symbol),
    ] {
        if on {
            rules.push(RuleText {
                rule: rule.as_str(),
                text: text.to_owned(),
            });
        }
    }
    rules.push(RuleText {
        rule: PasswordRule::Common.as_str(),
        text: t.rule_common.to_owned(),
    });
    rules
}

/// A broken rule, in words.
pub fn failed_rule(lang: Lang, policy: &PasswordPolicy, rule: PasswordRule) -> RuleText {
    let t = lang.texts();
    let text = match (rule, lang) {
        (PasswordRule::MinLength, Lang::En) => format!(
            "It is too short: use at least {} characters.",
            policy.min_length
        ),
        (PasswordRule::MinLength, Lang::De) => format!(
            "Es ist zu kurz: Verwenden Sie mindestens {} Zeichen.",
            policy.min_length
        ),
        (PasswordRule::MaxLength, Lang::En) => format!(
            "It is too long: use at most {} characters.",
            policy.max_length
        ),
        (PasswordRule::MaxLength, Lang::De) => format!(
            "Es ist zu lang: Verwenden Sie höchstens {} Zeichen.",
            policy.max_length
        ),
        (PasswordRule::Lower, _) => t.fail_lower.to_owned(),
        (PasswordRule::Upper, _) => t.fail_upper.to_owned(),
        (PasswordRule::Digit, _) => t.fail_digit.to_owned(),
        (PasswordRule::Symbol, _) => t.fail_symbol.to_owned(),
        (PasswordRule::Common, _) => t.fail_common.to_owned(),
    };
    RuleText {
        rule: rule.as_str(),
        text,
    }
}

/// "Too many attempts … wait N seconds".
pub fn rate_limited(lang: Lang, retry_after: u64) -> String {
    match lang {
        Lang::En => format!(
            "Too many attempts from your network. Nothing was changed. Please wait {retry_after} seconds and try again."
        ),
        Lang::De => format!(
            "Zu viele Versuche aus Ihrem Netzwerk. Es wurde nichts geändert. Bitte warten Sie {retry_after} Sekunden und versuchen Sie es dann noch einmal."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::Lang;

    #[test]
    fn accept_language_honours_q_values() {
        let pick = Lang::from_accept_language;
        assert_eq!(pick("de"), Some(Lang::De));
        assert_eq!(pick("de-CH, en;q=0.5"), Some(Lang::De));
        assert_eq!(pick("en;q=0.4, de;q=0.8"), Some(Lang::De));
        assert_eq!(pick("fr, de;q=0.1, en;q=0.2"), Some(Lang::En));
        assert_eq!(pick("de;q=0, en;q=0.1"), Some(Lang::En));
        assert_eq!(pick("de;q=0"), None);
        assert_eq!(pick("fr-FR, fr;q=0.9"), None);
        assert_eq!(pick("*;q=0.5, de;q=0.6"), Some(Lang::De));
        assert_eq!(pick("DE-de;Q=1.0"), Some(Lang::De));
        assert_eq!(pick("de;q=bogus, en"), Some(Lang::En));
        assert_eq!(pick(""), None);
    }
}
