//! What the environment layer needs beyond figment's `Env` provider: which keys hold text, the
//! `REKEY_…_FILE` secrets, and a provider that merges both verbatim.
//!
//! figment reads every environment value as data, so `+15005550006` becomes the number
//! 15005550006 and `007` the number 7; a text key must be taken verbatim instead. Which keys
//! are text is not kept in a list by hand: [`text_keys`] asks the settings type itself, by
//! deserializing it from a probe that answers every request with an empty value and records
//! each path whose type asks for a string (strings, paths, secrets, enums, and the values
//! parsed from a string such as the trusted proxies). The same probe lists every key
//! ([`keys_of`]), for the documentation and its tests.

use std::cell::RefCell;

use anyhow::Context;
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};
use serde::de::value::{MapDeserializer, SeqDeserializer, StrDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Visitor};

/// One configuration key, as the settings type declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigKey {
    /// The dotted, lower-case path: `smtp.host` (TOML section `[smtp]`, key `host`).
    pub path: String,
    /// Its value is text, taken verbatim from the environment.
    pub text: bool,
    /// Its type is an `Option`: it may be left unset.
    pub optional: bool,
}

impl ConfigKey {
    /// The environment variable: `REKEY_SMTP__HOST`.
    pub fn env(&self) -> String {
        format!("REKEY_{}", self.path.replace('.', "__").to_uppercase())
    }

    /// The TOML section (`smtp`, or `""` at the top level) and the key within it (`host`).
    pub fn toml(&self) -> (&str, &str) {
        self.path.rsplit_once('.').unwrap_or(("", &self.path))
    }
}

/// Every key of a settings type (each leaf of its nested structs), in declaration order.
pub(super) fn keys_of<T: DeserializeOwned>() -> anyhow::Result<Vec<ConfigKey>> {
    let found = RefCell::new(Vec::new());
    T::deserialize(Probe {
        path: String::new(),
        optional: false,
        found: &found,
    })
    .context("finding the keys of the configuration")?;
    Ok(found.into_inner())
}

/// The dotted, lower-case paths (`smtp.host`) of a settings type's fields that hold text.
#[derive(Debug, Clone)]
pub(super) struct TextKeys(Vec<String>);

impl TextKeys {
    pub(super) fn of<T: DeserializeOwned>() -> anyhow::Result<Self> {
        Ok(Self(
            keys_of::<T>()?
                .into_iter()
                .filter(|key| key.text)
                .map(|key| key.path)
                .collect(),
        ))
    }

    /// Whether `key` (as figment's `Env` spells it, any case) holds text.
    pub(super) fn contains(&self, key: &str) -> bool {
        self.0.iter().any(|k| k.eq_ignore_ascii_case(key))
    }
}

/// `REKEY_SMTP__PASSWORD_FILE` → (`smtp.password`, file content without the final newline).
pub(super) fn file_secrets(
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

/// Values merged as text, exactly as given, under dotted keys (`smtp.password`); named in
/// error messages as where they came from.
pub(super) struct Verbatim {
    name: &'static str,
    values: Vec<(String, String)>,
}

impl Verbatim {
    pub(super) fn new(name: &'static str, values: Vec<(String, String)>) -> Self {
        Self { name, values }
    }
}

impl Provider for Verbatim {
    fn metadata(&self) -> Metadata {
        Metadata::named(self.name)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        fn insert(dict: &mut Dict, path: &[&str], value: &str) {
            match path {
                [] => {}
                [last] => {
                    dict.insert((*last).to_owned(), Value::from(value));
                }
                [first, rest @ ..] => {
                    let entry = dict
                        .entry((*first).to_owned())
                        .or_insert_with(|| Value::from(Dict::new()));
                    if !matches!(entry, Value::Dict(..)) {
                        *entry = Value::from(Dict::new());
                    }
                    if let Value::Dict(_, inner) = entry {
                        insert(inner, rest, value);
                    }
                }
            }
        }
        let mut dict = Dict::new();
        for (key, value) in &self.values {
            insert(&mut dict, &key.split('.').collect::<Vec<_>>(), value);
        }
        Ok(Map::from([(Profile::Default, dict)]))
    }
}

/// A deserializer for the value at `path`, which holds nothing: it hands each type the
/// emptiest value of the shape the type asks for.
struct Probe<'a> {
    path: String,
    /// Inside an `Option`.
    optional: bool,
    found: &'a RefCell<Vec<ConfigKey>>,
}

impl Probe<'_> {
    /// The value at `path` is a key (not a section), holding text or not.
    fn leaf(&self, text: bool) {
        self.found.borrow_mut().push(ConfigKey {
            path: self.path.clone(),
            text,
            optional: self.optional,
        });
    }

    fn text(&self) {
        self.leaf(true);
    }
}

type ProbeError = de::value::Error;

macro_rules! numbers {
    ($($method:ident),*) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
            self.leaf(false);
            visitor.visit_u8(0)
        })*
    };
}

impl<'de> de::Deserializer<'de> for Probe<'_> {
    type Error = ProbeError;

    /// A type that accepts any shape cannot say whether it is text: refuse it, so that such a
    /// field is noticed (by the tests) instead of being read as a number.
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, ProbeError> {
        Err(de::Error::custom(format!(
            "{}: a value of no fixed shape",
            self.path
        )))
    }

    numbers!(
        deserialize_u8,
        deserialize_u16,
        deserialize_u32,
        deserialize_u64,
        deserialize_u128,
        deserialize_i8,
        deserialize_i16,
        deserialize_i32,
        deserialize_i64,
        deserialize_i128,
        deserialize_f32,
        deserialize_f64
    );

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(false);
        visitor.visit_bool(false)
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.text();
        visitor.visit_char(' ')
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.text();
        visitor.visit_str("")
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(false);
        visitor.visit_bytes(&[])
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(false);
        visitor.visit_bytes(&[])
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_some(Probe {
            optional: true,
            ..self
        })
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(false);
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.leaf(false);
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(false);
        visitor.visit_seq(SeqDeserializer::new(std::iter::empty::<()>()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        self.leaf(false);
        visitor.visit_map(MapDeserializer::new(std::iter::empty::<((), ())>()))
    }

    /// Each field is probed under its own path.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        visitor.visit_map(Fields {
            probe: self,
            fields: fields.iter(),
            current: "",
        })
    }

    /// An enum read from configuration is its variant's name: text.
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, ProbeError> {
        self.text();
        let first: StrDeserializer<'_, ProbeError> =
            variants.first().copied().unwrap_or("").into_deserializer();
        visitor.visit_enum(first)
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_str("")
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ProbeError> {
        visitor.visit_unit()
    }
}

/// A struct's fields, each probed as `path.field`.
struct Fields<'a> {
    probe: Probe<'a>,
    fields: std::slice::Iter<'static, &'static str>,
    current: &'static str,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = ProbeError;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ProbeError> {
        let Some(&field) = self.fields.next() else {
            return Ok(None);
        };
        self.current = field;
        let key: StrDeserializer<'_, ProbeError> = field.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, ProbeError> {
        let path = if self.probe.path.is_empty() {
            self.current.to_owned()
        } else {
            format!("{}.{}", self.probe.path, self.current)
        };
        seed.deserialize(Probe {
            path,
            optional: false,
            found: self.probe.found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;
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
    fn every_leaf_is_a_key_with_its_environment_name() {
        let keys = keys_of::<Settings>().unwrap();
        let key = |path: &str| keys.iter().find(|k| k.path == path).unwrap();
        assert_eq!(keys[0].path, "database_url");
        assert!(keys[0].optional && keys[0].text);
        assert_eq!(key("smtp.port").env(), "REKEY_SMTP__PORT");
        assert_eq!(key("smtp.port").toml(), ("smtp", "port"));
        assert!(key("smtp.port").optional && !key("smtp.port").text);
        assert!(!key("limits.ipv6_prefix").optional);
        assert_eq!(key("listen").toml(), ("", "listen"));
        assert!(!keys.iter().any(|k| k.path == "smtp" || k.path == "limits"));
        let mut paths: Vec<_> = keys.iter().map(|k| &k.path).collect();
        paths.sort();
        paths.dedup();
        assert_eq!(paths.len(), keys.len());
    }

    /// The keys whose values are text, however numeric they look (the list that used to be
    /// kept by hand), found from the types.
    #[test]
    fn text_keys_come_from_the_types() {
        let mut keys = TextKeys::of::<Settings>().unwrap().0;
        keys.sort();
        assert!(TextKeys::of::<Settings>()
            .unwrap()
            .contains("SMS.Twilio_From"));
        let mut expected = vec![
            "database_url",
            "listen",
            "metrics_listen",
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
            "mail.dir",
        ];
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
}
