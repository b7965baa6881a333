//! Key rings for code MACs and outbox sealing: `id:base64key` entries, comma-separated. The
//! first key signs/encrypts; every key verifies/decrypts, so keys can rotate.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use crate::ports::random::Random;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyRingError {
    #[error("key ring is empty")]
    Empty,
    #[error("key entry {0} is not of the form id:base64key")]
    Malformed(usize),
    #[error("key {0:?} must be 32 bytes (base64 of 32 random bytes)")]
    BadLength(String),
    #[error("key id {0:?} appears twice")]
    DuplicateId(String),
}

#[derive(Clone)]
struct Key {
    id: String,
    material: [u8; 32],
}

/// An ordered, never empty set of 256-bit keys with ids.
#[derive(Clone)]
pub struct KeyRing {
    current: Key,
    older: Vec<Key>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ids: Vec<&str> = self.keys().map(|k| k.id.as_str()).collect();
        f.debug_struct("KeyRing").field("ids", &ids).finish()
    }
}

impl KeyRing {
    pub fn parse(spec: &str) -> Result<Self, KeyRingError> {
        let mut keys: Vec<Key> = Vec::new();
        for (index, entry) in spec
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let (id, encoded) = entry
                .split_once(':')
                .ok_or(KeyRingError::Malformed(index + 1))?;
            let id = id.trim();
            if id.is_empty() {
                return Err(KeyRingError::Malformed(index + 1));
            }
            let bytes = STANDARD
                .decode(encoded.trim())
                .map_err(|_| KeyRingError::Malformed(index + 1))?;
            let material: [u8; 32] = bytes
                .try_into()
                .map_err(|_| KeyRingError::BadLength(id.to_owned()))?;
            if keys.iter().any(|k| k.id == id) {
                return Err(KeyRingError::DuplicateId(id.to_owned()));
            }
            keys.push(Key {
                id: id.to_owned(),
                material,
            });
        }
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or(KeyRingError::Empty)?;
        Ok(Self {
            current,
            older: keys.collect(),
        })
    }

    /// A fresh one-key ring spec (`id:base64`), for first start.
    pub fn generate_spec(id: &str, rng: &dyn Random) -> String {
        let mut material = [0u8; 32];
        rng.fill(&mut material);
        format!("{id}:{}", STANDARD.encode(material))
    }

    /// The key that signs or encrypts new data.
    pub fn current(&self) -> (&str, &[u8; 32]) {
        (&self.current.id, &self.current.material)
    }

    pub fn get(&self, id: &str) -> Option<&[u8; 32]> {
        self.keys().find(|k| k.id == id).map(|k| &k.material)
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(self.older.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::random::SeededRandom;

    #[test]
    fn parses_rotation_list_first_key_signs() {
        let rng = SeededRandom::new(1);
        let a = KeyRing::generate_spec("k2", &rng);
        let b = KeyRing::generate_spec("k1", &rng);
        let ring = KeyRing::parse(&format!("{a}, {b}")).unwrap();
        assert_eq!(ring.current().0, "k2");
        assert!(ring.get("k1").is_some());
        assert!(ring.get("k3").is_none());
    }

    #[test]
    fn rejects_bad_specs() {
        assert_eq!(KeyRing::parse("").unwrap_err(), KeyRingError::Empty);
        assert_eq!(
            KeyRing::parse("nocolon").unwrap_err(),
            KeyRingError::Malformed(1)
        );
        assert!(matches!(
            KeyRing::parse("k:c2hvcnQ="),
            Err(KeyRingError::BadLength(_))
        ));
        let rng = SeededRandom::new(2);
        let a = KeyRing::generate_spec("k", &rng);
        assert!(matches!(
            KeyRing::parse(&format!("{a},{a}")),
            Err(KeyRingError::DuplicateId(_))
        ));
    }

    #[test]
    fn debug_shows_ids_only() {
        let rng = SeededRandom::new(3);
        let spec = KeyRing::generate_spec("k1", &rng);
        let ring = KeyRing::parse(&spec).unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains("k1"));
        assert!(!shown.contains(spec.split_once(':').unwrap().1));
    }
}
