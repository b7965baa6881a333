//! Password policy (SPEC §10): length in characters (never truncated), optional character
//! classes, and a blocklist of common passwords (exact, case-insensitive whole-password match
//! against the list the `passwords` crate ships).

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorHint};

/// One rule of the password policy (SPEC §10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PasswordRule {
    MinLength,
    MaxLength,
    Lower,
    Upper,
    Digit,
    Symbol,
    Common,
}

impl PasswordRule {
    /// A stable name (`min_length`, `max_length`, `lower`, `upper`, `digit`, `symbol`,
    /// `common`).
    pub fn as_str(self) -> &'static str {
        match self {
            PasswordRule::MinLength => "min_length",
            PasswordRule::MaxLength => "max_length",
            PasswordRule::Lower => "lower",
            PasswordRule::Upper => "upper",
            PasswordRule::Digit => "digit",
            PasswordRule::Symbol => "symbol",
            PasswordRule::Common => "common",
        }
    }
}

/// The instance default is also the `[password]` section of the configuration
/// (`REKEY_PASSWORD__…`), whose defaults are [`PasswordPolicy::default`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PasswordPolicy {
    pub min_length: u32,
    pub max_length: u32,
    pub require_lower: bool,
    pub require_upper: bool,
    pub require_digit: bool,
    pub require_symbol: bool,
}

impl Default for PasswordPolicy {
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

/// Whole-password, case-insensitive lookup in the shipped common-password list.
pub fn is_common(password: &str) -> bool {
    passwords::analyzer::is_common_password(password)
        || passwords::analyzer::is_common_password(password.to_lowercase())
}

impl PasswordPolicy {
    /// Every rule `password` breaks, in the order [`check`](Self::check) reports them.
    pub fn violations(&self, password: &SecretString) -> Vec<PasswordRule> {
        let password = password.expose_secret();
        let length = u32::try_from(password.chars().count()).unwrap_or(u32::MAX);
        let mut broken = Vec::new();
        if length < self.min_length {
            broken.push(PasswordRule::MinLength);
        }
        if length > self.max_length {
            broken.push(PasswordRule::MaxLength);
        }
        let classes = [
            (
                self.require_lower,
                PasswordRule::Lower,
                password.chars().any(char::is_lowercase),
            ),
            (
                self.require_upper,
                PasswordRule::Upper,
                password.chars().any(char::is_uppercase),
            ),
            (
                self.require_digit,
                PasswordRule::Digit,
                password.chars().any(|c| c.is_ascii_digit()),
            ),
            (
                self.require_symbol,
                PasswordRule::Symbol,
                password.chars().any(|c| !c.is_alphanumeric()),
            ),
        ];
        for (required, rule, present) in classes {
            if required && !present {
                broken.push(rule);
            }
        }
        if is_common(password) {
            broken.push(PasswordRule::Common);
        }
        broken
    }

    /// Checks a new password; the error names the first rule it breaks (never the password)
    /// and carries the whole list as a hint for hosted pages.
    pub fn check(&self, password: &SecretString) -> Result<(), Error> {
        let broken = self.violations(password);
        let Some(first) = broken.first() else {
            return Ok(());
        };
        let err = match first {
            PasswordRule::MinLength => Error::invalid(
                "REKEY-PwLen",
                format!(
                    "Password is too short: at least {} characters",
                    self.min_length
                ),
            ),
            PasswordRule::MaxLength => Error::invalid(
                "REKEY-PwMax",
                format!(
                    "Password is too long: at most {} characters",
                    self.max_length
                ),
            ),
            PasswordRule::Lower => {
                Error::invalid("COMMAND-VoaRj", "Password must contain a lower-case letter")
            }
            PasswordRule::Upper => Error::invalid(
                "COMMAND-VoaRk",
                "Password must contain an upper-case letter",
            ),
            PasswordRule::Digit => {
                Error::invalid("COMMAND-VoaRl", "Password must contain a number")
            }
            PasswordRule::Symbol => {
                Error::invalid("COMMAND-VoaRm", "Password must contain a symbol")
            }
            PasswordRule::Common => Error::invalid(
                "REKEY-PwCom",
                "Password is too common: it appears in a list of frequently used passwords",
            ),
        };
        Err(err.with_hint(ErrorHint::PasswordRules {
            policy: *self,
            broken,
        }))
    }

    /// The rules in words, for hosted pages.
    pub fn rules(&self) -> Vec<String> {
        let mut rules = vec![format!(
            "{} to {} characters",
            self.min_length, self.max_length
        )];
        for (on, text) in [
            (self.require_lower, "a lower-case letter"),
            (self.require_upper, "an upper-case letter"),
            (self.require_digit, "a number"),
            (self.require_symbol, "a symbol"),
        ] {
            if on {
                rules.push(text.to_owned());
            }
        }
        rules.push("not a commonly used password".to_owned());
        rules
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pw(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn length_is_counted_in_characters_and_never_truncated() {
        let policy = PasswordPolicy::default();
        assert_eq!(policy.check(&pw("short")).unwrap_err().id, "REKEY-PwLen");
        assert!(policy.check(&pw("ääääääääääää")).is_ok()); // 12 chars, 24 bytes
        let long = "x".repeat(128) + "y";
        assert_eq!(policy.check(&pw(&long)).unwrap_err().id, "REKEY-PwMax");
    }

    #[test]
    fn zitadel_style_policy_is_expressible() {
        let policy = PasswordPolicy {
            min_length: 8,
            max_length: 72,
            require_lower: true,
            require_upper: true,
            require_digit: true,
            require_symbol: true,
        };
        assert_eq!(
            policy.check(&pw("ABCDEFG1!")).unwrap_err().id,
            "COMMAND-VoaRj"
        );
        assert_eq!(
            policy.check(&pw("abcdefg1!")).unwrap_err().id,
            "COMMAND-VoaRk"
        );
        assert_eq!(
            policy.check(&pw("abcdEFG!!")).unwrap_err().id,
            "COMMAND-VoaRl"
        );
        assert_eq!(
            policy.check(&pw("abcdEFG11")).unwrap_err().id,
            "COMMAND-VoaRm"
        );
        assert!(policy.check(&pw("Tr0ub4dor&3x")).is_ok());
    }

    #[test]
    fn blocklist_is_exact_and_case_insensitive() {
        let policy = PasswordPolicy {
            min_length: 1,
            ..PasswordPolicy::default()
        };
        for common in [
            "password",
            "PASSWORD",
            "123456789",
            "qwertyuiop",
            "iloveyou",
        ] {
            assert_eq!(
                policy.check(&pw(common)).unwrap_err().id,
                "REKEY-PwCom",
                "{common}"
            );
        }
        // no substring matching
        assert!(policy.check(&pw("password-horse-battery")).is_ok());
    }

    #[test]
    fn violations_name_every_broken_rule_in_order() {
        let policy = PasswordPolicy {
            min_length: 10,
            max_length: 72,
            require_lower: true,
            require_upper: true,
            require_digit: true,
            require_symbol: true,
        };
        assert_eq!(
            policy.violations(&pw("qzvw")),
            vec![
                PasswordRule::MinLength,
                PasswordRule::Upper,
                PasswordRule::Digit,
                PasswordRule::Symbol
            ]
        );
        let err = policy.check(&pw("qzvw")).unwrap_err();
        assert_eq!(err.id, "REKEY-PwLen");
        assert!(
            matches!(err.hint, Some(ErrorHint::PasswordRules { ref broken, .. }) if broken.len() == 4)
        );
        assert_eq!(
            PasswordPolicy::default().violations(&pw("password1234")),
            vec![PasswordRule::Common]
        );
        assert!(policy.violations(&pw("Tr0ub4dor&3x")).is_empty());
    }

    #[test]
    fn errors_never_echo_the_password() {
        let err = PasswordPolicy::default().check(&pw("hunter2")).unwrap_err();
        assert!(!err.message().contains("hunter2"));
    }
}
