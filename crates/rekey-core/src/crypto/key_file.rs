//! The text of a key ring file (`code_hmac.keys`, `outbox.keys` in the data directory): the
//! ring's `id:base64key` entries, one per line or comma-separated on one line, plus comment
//! lines. A comment of the form `# key <id> created <RFC 3339 time>` records when a key was
//! made, so `rekey keys list` can show ages; every other `#` line is ignored. A file written
//! before this format — a bare `id:base64key,…` line — reads as before, its keys' ages
//! unknown.
//!
//! ```text
//! # Rekey key ring. The first key signs/encrypts; every key verifies/decrypts.
//! # key k2 created 2026-12-02T12:00:00Z
//! k2:…base64…
//! # key k1 created 2026-09-01T08:30:00Z
//! k1:…base64…
//! ```

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::keys::{KeyRing, KeyRingError};
use crate::ports::random::Random;

const HEADER: &str = "# Rekey key ring. The first key signs/encrypts; every key verifies/decrypts.\n\
     # Rotate with `rekey keys rotate`; see the README, \"Key rotation\". Keep this file private.\n";

/// A key ring with each key's creation time, where known.
#[derive(Debug, Clone)]
pub struct KeyFile {
    ring: KeyRing,
    created: BTreeMap<String, DateTime<Utc>>,
}

/// One key as `rekey keys list` shows it: never its material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub id: String,
    pub created: Option<DateTime<Utc>>,
    /// Whether this key signs/encrypts (the first of the ring).
    pub current: bool,
}

impl KeyFile {
    /// A first ring of one fresh key, `k1`.
    pub fn generate(rng: &dyn Random, now: DateTime<Utc>) -> Result<Self, KeyRingError> {
        let ring = KeyRing::parse(&KeyRing::generate_spec("k1", rng))?;
        Ok(Self {
            ring,
            created: BTreeMap::from([("k1".to_owned(), now)]),
        })
    }

    /// A ring whose keys' ages are unknown (one from configuration).
    pub fn from_ring(ring: KeyRing) -> Self {
        Self {
            ring,
            created: BTreeMap::new(),
        }
    }

    pub fn parse(text: &str) -> Result<Self, KeyRingError> {
        let mut entries = Vec::new();
        let mut created = BTreeMap::new();
        for line in text.lines().map(str::trim) {
            if let Some(comment) = line.strip_prefix('#') {
                if let Some((id, at)) = creation(comment) {
                    created.insert(id, at);
                }
            } else if !line.is_empty() {
                entries.push(line);
            }
        }
        let ring = KeyRing::parse(&entries.join(","))?;
        // A note about a key no longer in the ring means nothing.
        created.retain(|id, _| ring.get(id).is_some());
        Ok(Self { ring, created })
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    /// Puts a fresh key in front (see [`KeyRing::rotated`]); returns its id.
    pub fn rotate(&mut self, rng: &dyn Random, now: DateTime<Utc>) -> String {
        self.ring = self.ring.rotated(rng);
        let id = self.ring.current().0.to_owned();
        self.created.insert(id.clone(), now);
        id
    }

    /// Ids, creation times and which key is current, in ring order.
    pub fn keys(&self) -> Vec<KeyInfo> {
        self.ring
            .ids()
            .enumerate()
            .map(|(n, id)| KeyInfo {
                id: id.to_owned(),
                created: self.created.get(id).copied(),
                current: n == 0,
            })
            .collect()
    }

    /// The file's text, which [`Self::parse`] reads back: key material.
    pub fn expose_text(&self) -> SecretString {
        let spec = self.ring.expose_spec();
        let mut text = HEADER.to_owned();
        for (id, entry) in self.ring.ids().zip(spec.expose_secret().split(',')) {
            if let Some(at) = self.created.get(id) {
                text.push_str(&format!(
                    "# key {id} created {}\n",
                    at.to_rfc3339_opts(SecondsFormat::Secs, true)
                ));
            }
            text.push_str(entry);
            text.push('\n');
        }
        text.into()
    }
}

/// `key <id> created <time>` → the key's id and creation time.
fn creation(comment: &str) -> Option<(String, DateTime<Utc>)> {
    let mut words = comment.split_whitespace();
    let (Some("key"), Some(id), Some("created"), Some(at), None) = (
        words.next(),
        words.next(),
        words.next(),
        words.next(),
        words.next(),
    ) else {
        return None;
    };
    let at = DateTime::parse_from_rfc3339(at).ok()?.with_timezone(&Utc);
    Some((id.to_owned(), at))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::ports::random::SeededRandom;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, day, 12, 0, 0).unwrap()
    }

    #[test]
    fn a_bare_ring_line_reads_as_before_with_unknown_ages() {
        let rng = SeededRandom::new(21);
        let old = KeyRing::generate_spec("k1", &rng);
        for text in [old.clone(), format!("{old}\n"), format!("  {old}  \n\n")] {
            let file = KeyFile::parse(&text).unwrap();
            assert_eq!(
                file.keys(),
                [KeyInfo {
                    id: "k1".to_owned(),
                    created: None,
                    current: true
                }]
            );
            assert_eq!(
                file.ring().get("k1"),
                KeyRing::parse(&old).unwrap().get("k1")
            );
        }
        // A comma-separated ring, as configured, reads the same from a file.
        let two = format!("{},{old}", KeyRing::generate_spec("k2", &rng));
        let ids: Vec<String> = KeyFile::parse(&two)
            .unwrap()
            .keys()
            .into_iter()
            .map(|k| k.id)
            .collect();
        assert_eq!(ids, ["k2", "k1"]);
    }

    #[test]
    fn generate_rotate_write_and_read_back() {
        let rng = SeededRandom::new(22);
        let mut file = KeyFile::generate(&rng, at(1)).unwrap();
        assert_eq!(file.rotate(&rng, at(2)), "k2");
        assert_eq!(file.rotate(&rng, at(3)), "k3");
        let text = file.expose_text();
        let back = KeyFile::parse(text.expose_secret()).unwrap();
        assert_eq!(
            back.keys(),
            [
                KeyInfo {
                    id: "k3".to_owned(),
                    created: Some(at(3)),
                    current: true
                },
                KeyInfo {
                    id: "k2".to_owned(),
                    created: Some(at(2)),
                    current: false
                },
                KeyInfo {
                    id: "k1".to_owned(),
                    created: Some(at(1)),
                    current: false
                },
            ]
        );
        for id in ["k1", "k2", "k3"] {
            assert_eq!(back.ring().get(id), file.ring().get(id));
        }
        // One key per line, each after its creation note.
        let lines: Vec<&str> = text.expose_secret().lines().collect();
        assert!(lines[2].starts_with("# key k3 created 2026-12-03T12:00:00Z"));
        assert!(lines[3].starts_with("k3:"));
    }

    #[test]
    fn odd_comments_are_ignored_and_bad_rings_refused() {
        let rng = SeededRandom::new(23);
        let k1 = KeyRing::generate_spec("k1", &rng);
        let text = format!(
            "# hello\n# key k1 created yesterday\n# key gone created 2026-12-01T00:00:00Z\n{k1}\n"
        );
        let file = KeyFile::parse(&text).unwrap();
        assert_eq!(file.keys()[0].created, None);
        assert!(file.created.is_empty());
        assert_eq!(
            KeyFile::parse("# only a comment\n").unwrap_err(),
            KeyRingError::Empty
        );
        assert!(KeyFile::parse(&format!("{k1}\ngarbage")).is_err());
        // A half-written file (cut inside the base64) is refused, not half-used.
        assert!(KeyFile::parse(&k1[..k1.len() - 5]).is_err());
    }
}
