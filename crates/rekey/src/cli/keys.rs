//! `rekey keys list` and `rekey keys rotate code-hmac|outbox`: the two key rings (SPEC §7,
//! §8, §12). Neither needs the database. `list` shows ids and ages, never key material.
//! `rotate` puts a new key in front of a ring kept in the data directory, which a running
//! `serve` picks up by itself; a ring that comes from configuration cannot be written, so
//! `rotate` prints the ring to configure instead and exits non-zero.

use anyhow::bail;
use chrono::{DateTime, SecondsFormat, Utc};
use clap::{Subcommand, ValueEnum};
use rekey_core::crypto::{KeyFile, KeyInfo, KeyRing};
use rekey_core::ports::{Clock, OsRandom, SystemClock};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

use super::Output;
use crate::config::Settings;
use crate::key_files::{self, Ring, Source};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Show each ring's key ids and ages (never the keys); the first key of a ring signs or
    /// encrypts, all of them verify or decrypt.
    List,
    /// Put a new random key in front of a ring; the old keys keep verifying/decrypting. A
    /// running server picks it up within `keys.reload_ms` (or at once on SIGHUP).
    Rotate { ring: RingArg },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RingArg {
    /// The key ring reset codes are signed with.
    CodeHmac,
    /// The key ring outbox bodies are encrypted with.
    Outbox,
}

impl From<RingArg> for Ring {
    fn from(arg: RingArg) -> Self {
        match arg {
            RingArg::CodeHmac => Self::CodeHmac,
            RingArg::Outbox => Self::Outbox,
        }
    }
}

pub fn run(settings: &Settings, out: &Output, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::List => list(settings, out),
        KeysCommand::Rotate { ring } => rotate(settings, out, ring.into()),
    }
}

/// `rekey keys list`: a tab-separated line per key (ring, id, age, role, source), or one JSON
/// object.
fn list(settings: &Settings, out: &Output) -> anyhow::Result<()> {
    let now = SystemClock.now();
    let mut rings = Vec::new();
    for ring in Ring::ALL {
        let (source, path, file) = match key_files::source(settings, ring) {
            Source::Configured(spec) => (
                "configuration",
                None,
                Some(KeyFile::from_ring(KeyRing::parse(spec.expose_secret())?)),
            ),
            Source::File(path) => ("file", Some(path.clone()), key_files::read(&path)?),
        };
        let keys = file.as_ref().map(KeyFile::keys).unwrap_or_default();
        if !out.json {
            if keys.is_empty() {
                println!(
                    "{}\t(none yet: `rekey serve` generates {} on first start)",
                    ring.name(),
                    path.as_ref()
                        .map_or_else(String::new, |p| p.display().to_string())
                );
            }
            for key in &keys {
                println!(
                    "{}\t{}\tage={}\t{}\t{source}",
                    ring.name(),
                    key.id,
                    key.created
                        .map_or_else(|| "unknown".to_owned(), |at| age(now, at)),
                    role(ring, key),
                );
            }
        }
        rings.push(json!({
            "ring": ring.name(),
            "source": source,
            "path": path.map(|p| p.display().to_string()),
            "keys": keys.iter().map(|k| key_json(now, k)).collect::<Vec<_>>(),
        }));
    }
    if out.json {
        println!("{}", json!({ "rings": rings }));
    }
    Ok(())
}

fn role(ring: Ring, key: &KeyInfo) -> &'static str {
    match (ring, key.current) {
        (Ring::CodeHmac, true) => "signs",
        (Ring::CodeHmac, false) => "verifies",
        (Ring::Outbox, true) => "encrypts",
        (Ring::Outbox, false) => "decrypts",
    }
}

fn key_json(now: DateTime<Utc>, key: &KeyInfo) -> Value {
    json!({
        "id": key.id,
        "current": key.current,
        "created": key.created.map(|at| at.to_rfc3339_opts(SecondsFormat::Secs, true)),
        "age_seconds": key.created.map(|at| (now - at).num_seconds().max(0)),
    })
}

/// `3d`, `5h`, `12m`, `40s`: the largest whole unit.
fn age(now: DateTime<Utc>, created: DateTime<Utc>) -> String {
    let seconds = (now - created).num_seconds().max(0);
    match seconds {
        s if s >= 86_400 => format!("{}d", s / 86_400),
        s if s >= 3_600 => format!("{}h", s / 3_600),
        s if s >= 60 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// `rekey keys rotate RING`: prints the new key's id (with `--json`, also the ring and file).
fn rotate(settings: &Settings, out: &Output, ring: Ring) -> anyhow::Result<()> {
    match key_files::source(settings, ring) {
        Source::File(path) => {
            let id = key_files::rotate_file(&path, &OsRandom, &SystemClock)?;
            out.print(
                &id,
                json!({ "ring": ring.name(), "id": id, "path": path.display().to_string() }),
            );
            Ok(())
        }
        Source::Configured(spec) => {
            let rotated = KeyRing::parse(spec.expose_secret())?.rotated(&OsRandom);
            let id = rotated.current().0;
            let value = rotated.expose_spec();
            // The one place Rekey prints key material, on purpose: the operator asked to
            // rotate a ring that lives in their configuration, which Rekey cannot write, so
            // the new ring is the answer. It goes to stdout only, never to a log.
            out.print(
                value.expose_secret(),
                json!({ "ring": ring.name(), "id": id, "value": value.expose_secret() }),
            );
            bail!(
                "the {name} key ring comes from configuration ({env}, {env}_FILE or keys.{key} \
                 in the TOML file), which rekey does not write; nothing was changed.\n\
                 The value printed on stdout is that ring with a new key {id} in front: put it \
                 where the ring is configured and restart. With several replicas sharing one \
                 database, first add the new key at the END of every replica's ring, restart \
                 them all, then move it to the front everywhere (README, \"Key rotation\").",
                name = ring.name(),
                env = ring.env(),
                key = ring.file_name().trim_end_matches(".keys"),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn ages_in_the_largest_whole_unit() {
        let now = Utc.with_ymd_and_hms(2026, 12, 2, 12, 0, 0).unwrap();
        let ago = |s: i64| age(now, now - chrono::Duration::seconds(s));
        assert_eq!(ago(0), "0s");
        assert_eq!(ago(59), "59s");
        assert_eq!(ago(60), "1m");
        assert_eq!(ago(3 * 3600 + 5), "3h");
        assert_eq!(ago(9 * 86_400), "9d");
        assert_eq!(
            ago(-30),
            "0s",
            "a clock that went back shows no negative age"
        );
    }
}
