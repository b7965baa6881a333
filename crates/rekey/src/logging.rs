//! Logs on stderr, as text or — `REKEY_LOG_FORMAT=json` — one JSON object per line. In JSON
//! every line on stderr is such an object, from the first: the format is decided from the raw
//! environment and configuration file before the settings are loaded, so a refused
//! configuration, a command-line error and the start-up warnings come out as JSON too.
//!
//! Lines name ids (request, message, tenant, user), never a password, code, link or token.

use std::path::Path;

use figment::providers::{Format, Toml};
use figment::Figment;
use rekey_core::ports::{Clock, SystemClock};
use serde_json::json;

use crate::config::LogFormat;

/// The format to log in before the settings are loaded: `REKEY_LOG_FORMAT`, else the
/// configuration file's `log_format`, else text. A value that is neither `text` nor `json`
/// counts as text here; loading the settings then refuses it.
pub fn early_format(config_file: Option<&Path>) -> LogFormat {
    let parse = |value: &str| match value.trim().to_ascii_lowercase().as_str() {
        "json" => Some(LogFormat::Json),
        "text" => Some(LogFormat::Text),
        _ => None,
    };
    if let Ok(value) = std::env::var("REKEY_LOG_FORMAT") {
        return parse(&value).unwrap_or_default();
    }
    config_file
        .filter(|file| file.exists())
        .and_then(|file| {
            Figment::from(Toml::file(file))
                .extract_inner::<String>("log_format")
                .ok()
        })
        .and_then(|value| parse(&value))
        .unwrap_or_default()
}

/// Installs the subscriber: `RUST_LOG` filters (default `info`, quieter for the libraries).
pub fn init(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,hyper=warn,h2=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == LogFormat::Json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Why the command failed, on stderr: `rekey: …` in text, one error line in JSON.
pub fn failure(format: LogFormat, err: &dyn std::fmt::Display) {
    match format {
        LogFormat::Text => eprintln!("rekey: {err}"),
        LogFormat::Json => {
            let error = err.to_string();
            tracing::error!(error, "rekey failed");
        }
    }
}

/// The one line that may carry a secret: the first system token, which SPEC §11 prints once to
/// stderr so a newcomer can call the API. It bypasses the subscriber — no log filter or layer
/// ever sees it — and in JSON it is still one object (the subscriber's shape) on its line.
pub fn first_token(format: LogFormat, token: &str) {
    const NOTICE: &str =
        "No API token existed, so a system token was created. It is shown only this once";
    match format {
        LogFormat::Text => eprintln!("\n{NOTICE}:\n\n    {token}\n"),
        LogFormat::Json => eprintln!(
            "{}",
            json!({
                "timestamp": SystemClock.now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                "level": "WARN",
                "fields": { "message": NOTICE, "token": token },
                "target": "rekey",
            })
        ),
    }
}

/// A notice for the operator outside the log (the CLI's advice on stderr): as it is in text,
/// a warning line in JSON.
pub fn notice(format: LogFormat, text: &str) {
    match format {
        LogFormat::Text => eprintln!("rekey: {text}"),
        LogFormat::Json => tracing::warn!("{text}"),
    }
}

#[cfg(test)]
mod tests {
    // figment's `Jail` takes closures returning its own (large) error type; not ours to shrink.
    #![allow(clippy::result_large_err)]
    use super::*;

    /// The format is known before the settings load: the environment wins over the file, the
    /// file over the default, and an unknown value is left for the loader to refuse.
    #[test]
    fn the_early_format_follows_the_layers() {
        figment::Jail::expect_with(|jail| {
            let file = Path::new("rekey.toml");
            assert_eq!(early_format(None), LogFormat::Text);
            assert_eq!(early_format(Some(file)), LogFormat::Text, "no such file");
            jail.create_file("rekey.toml", "log_format = \"json\"\n")?;
            assert_eq!(early_format(Some(file)), LogFormat::Json);
            jail.set_env("REKEY_LOG_FORMAT", " Text ");
            assert_eq!(early_format(Some(file)), LogFormat::Text);
            jail.set_env("REKEY_LOG_FORMAT", "JSON");
            assert_eq!(early_format(None), LogFormat::Json);
            jail.set_env("REKEY_LOG_FORMAT", "yaml");
            assert_eq!(early_format(Some(file)), LogFormat::Text);
            Ok(())
        });
    }
}
