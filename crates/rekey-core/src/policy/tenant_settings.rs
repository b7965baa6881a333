//! The one name of each tenant setting (`code.length`, `ui.login_url`, …) and how it is written
//! from text. The CLI's `rekey tenant set KEY=VALUE` goes through this table, so a setting is
//! added in one place: its field in [`TenantSettings`], its row here, its check in
//! [`validate_settings`](super::settings).

use crate::domain::tenant::{CodeAlphabet, TenantSettings};
use crate::policy::settings::validate_login_url;

/// A tenant setting: its name and the field it writes.
#[derive(Debug, Clone, Copy)]
pub struct TenantSetting {
    pub name: &'static str,
    field: Field,
}

/// The field a setting writes, by the kind of its value.
#[derive(Debug, Clone, Copy)]
enum Field {
    Number(fn(&mut TenantSettings) -> &mut Option<u32>),
    Seconds(fn(&mut TenantSettings) -> &mut Option<u64>),
    Flag(fn(&mut TenantSettings) -> &mut Option<bool>),
    Alphabet(fn(&mut TenantSettings) -> &mut Option<CodeAlphabet>),
    /// Text, with the check a value must pass before it is taken (the rest are checked when
    /// the settings are stored).
    Text(
        fn(&mut TenantSettings) -> &mut Option<String>,
        Option<Check>,
    ),
}

/// A check of a text value; the error is the whole message.
type Check = fn(&str) -> Result<(), &'static str>;

/// Every tenant setting, by name.
pub const TENANT_SETTINGS: &[TenantSetting] = &[
    setting("code.length", Field::Number(|s| &mut s.code_length)),
    setting("code.alphabet", Field::Alphabet(|s| &mut s.code_alphabet)),
    setting(
        "code.expiry_secs",
        Field::Seconds(|s| &mut s.code_expiry_secs),
    ),
    setting(
        "code.init_expiry_secs",
        Field::Seconds(|s| &mut s.code_init_expiry_secs),
    ),
    setting(
        "password.min_length",
        Field::Number(|s| &mut s.password_min_length),
    ),
    setting(
        "password.max_length",
        Field::Number(|s| &mut s.password_max_length),
    ),
    setting(
        "password.require_lower",
        Field::Flag(|s| &mut s.password_require_lower),
    ),
    setting(
        "password.require_upper",
        Field::Flag(|s| &mut s.password_require_upper),
    ),
    setting(
        "password.require_digit",
        Field::Flag(|s| &mut s.password_require_digit),
    ),
    setting(
        "password.require_symbol",
        Field::Flag(|s| &mut s.password_require_symbol),
    ),
    setting(
        "limits.messages_per_user_per_hour",
        Field::Number(|s| &mut s.limits_messages_per_user_per_hour),
    ),
    setting("link_template", Field::Text(|s| &mut s.link_template, None)),
    setting("language", Field::Text(|s| &mut s.language, None)),
    setting(
        "ui.login_url",
        Field::Text(|s| &mut s.ui_login_url, Some(validate_login_url)),
    ),
];

const fn setting(name: &'static str, field: Field) -> TenantSetting {
    TenantSetting { name, field }
}

/// Why `KEY=VALUE` was not taken. The texts are what `rekey tenant set` prints.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    #[error("unknown tenant setting {0:?}")]
    Unknown(String),
    #[error("{key}: {value:?} is not a number")]
    NotANumber { key: String, value: String },
    #[error("{key}: {value:?} is not true or false")]
    NotAFlag { key: String, value: String },
    #[error("{0}")]
    Invalid(&'static str),
}

impl TenantSettings {
    /// Sets the setting named `key` from its text form; an empty value resets it to the
    /// instance default. Spaces around the name and the value are ignored.
    pub fn assign(&mut self, key: &str, value: &str) -> Result<(), SettingError> {
        let name = key.trim();
        let setting = TENANT_SETTINGS
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| SettingError::Unknown(name.to_owned()))?;
        let value = value.trim();
        let given = (!value.is_empty()).then_some(value);
        fn number<T: std::str::FromStr>(key: &str, value: &str) -> Result<T, SettingError> {
            value.parse().map_err(|_| SettingError::NotANumber {
                key: key.to_owned(),
                value: value.to_owned(),
            })
        }
        match setting.field {
            Field::Number(field) => *field(self) = given.map(|v| number(key, v)).transpose()?,
            Field::Seconds(field) => *field(self) = given.map(|v| number(key, v)).transpose()?,
            Field::Flag(field) => {
                *field(self) = given
                    .map(|value| match value {
                        "true" | "yes" | "on" | "1" => Ok(true),
                        "false" | "no" | "off" | "0" => Ok(false),
                        _ => Err(SettingError::NotAFlag {
                            key: key.to_owned(),
                            value: value.to_owned(),
                        }),
                    })
                    .transpose()?;
            }
            Field::Alphabet(field) => {
                *field(self) = given
                    .map(|value| {
                        serde_json::from_value(value.into()).map_err(|_| {
                            SettingError::Invalid("code.alphabet must be rekey or zitadel")
                        })
                    })
                    .transpose()?;
            }
            Field::Text(field, check) => {
                if let (Some(value), Some(check)) = (given, check) {
                    check(value).map_err(SettingError::Invalid)?;
                }
                *field(self) = given.map(str::to_owned);
            }
        }
        Ok(())
    }
}

impl TenantSetting {
    /// The kind of value the setting takes, as a JSON Schema `type` (for documentation).
    pub fn json_type(&self) -> &'static str {
        match self.field {
            Field::Number(_) | Field::Seconds(_) => "integer",
            Field::Flag(_) => "boolean",
            Field::Alphabet(_) | Field::Text(..) => "string",
        }
    }

    /// The setting's value in `settings` as JSON (a number, boolean or string), `null` when
    /// unset (the instance default applies).
    pub fn value(&self, settings: &TenantSettings) -> serde_json::Value {
        use serde_json::Value;
        // The table holds writers only; reading goes through a copy.
        let mut copy = settings.clone();
        match self.field {
            Field::Number(field) => (*field(&mut copy)).map_or(Value::Null, Value::from),
            Field::Seconds(field) => (*field(&mut copy)).map_or(Value::Null, Value::from),
            Field::Flag(field) => (*field(&mut copy)).map_or(Value::Null, Value::from),
            Field::Alphabet(field) => (*field(&mut copy))
                .and_then(|a| serde_json::to_value(a).ok())
                .unwrap_or(Value::Null),
            Field::Text(field, _) => field(&mut copy).take().map_or(Value::Null, Value::from),
        }
    }
}

impl TenantSettings {
    /// Every setting by its name ([`TENANT_SETTINGS`]), `null` when unset: the settings object
    /// of the operations API.
    pub fn named(&self) -> serde_json::Map<String, serde_json::Value> {
        TENANT_SETTINGS
            .iter()
            .map(|s| (s.name.to_owned(), s.value(self)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_setting_is_written_and_reset_by_its_name() {
        for setting in TENANT_SETTINGS {
            let value = match setting.field {
                Field::Number(_) | Field::Seconds(_) => "600",
                Field::Flag(_) => "yes",
                Field::Alphabet(_) => "zitadel",
                Field::Text(..) => "https://login.example",
            };
            let mut s = TenantSettings::default();
            s.assign(setting.name, value).unwrap();
            assert_ne!(s, TenantSettings::default(), "{}", setting.name);
            // Read back by name, in the kind of value it takes.
            let read = &s.named()[setting.name];
            assert!(!read.is_null(), "{}", setting.name);
            let text = read
                .as_str()
                .map_or_else(|| read.to_string(), str::to_owned);
            let expected = if setting.json_type() == "boolean" {
                "true"
            } else {
                value
            };
            assert_eq!(text, expected, "{}", setting.name);
            s.assign(setting.name, " ").unwrap();
            assert_eq!(s, TenantSettings::default(), "{}", setting.name);
        }
    }

    #[test]
    fn refusals_name_the_key_and_value() {
        let mut s = TenantSettings::default();
        let err =
            |s: &mut TenantSettings, k: &str, v: &str| s.assign(k, v).err().map(|e| e.to_string());
        assert_eq!(
            err(&mut s, " nope ", "1").as_deref(),
            Some("unknown tenant setting \"nope\"")
        );
        assert_eq!(
            err(&mut s, "code.length", "ten").as_deref(),
            Some("code.length: \"ten\" is not a number")
        );
        assert_eq!(
            err(&mut s, "password.require_upper", "maybe").as_deref(),
            Some("password.require_upper: \"maybe\" is not true or false")
        );
        assert_eq!(
            err(&mut s, "code.alphabet", "digits").as_deref(),
            Some("code.alphabet must be rekey or zitadel")
        );
        assert!(err(&mut s, "ui.login_url", "ftp://x").is_some());
        assert_eq!(
            s,
            TenantSettings::default(),
            "a refused value changes nothing"
        );
    }
}
