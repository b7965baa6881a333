//! Key rings for code MACs and outbox sealing: `id:base64key` entries, comma-separated. The
//! first key signs/encrypts; every key verifies/decrypts, so keys can rotate: a new key goes in
//! front ([`KeyRing::rotated`]), old ones stay behind it until nothing sealed or signed with
//! them is left. A [`LiveRing`] is the ring a running server holds, replaced in place when the
//! ring file changes.

use std::fmt;
use std::sync::{Arc, PoisonError, RwLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;

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

    /// The key ids, the signing one first.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.keys().map(|k| k.id.as_str())
    }

    /// This ring with a fresh random key in front: the new key signs/encrypts, every key of
    /// this ring still verifies/decrypts. Its id is `k<N+1>`, N the highest number of this
    /// ring's `k<number>` ids (0 when there is none), so ids never repeat within a ring.
    pub fn rotated(&self, rng: &dyn Random) -> Self {
        let mut material = [0u8; 32];
        rng.fill(&mut material);
        let new = Key {
            id: self.next_id(),
            material,
        };
        let mut older = Vec::with_capacity(self.older.len() + 1);
        older.push(self.current.clone());
        older.extend(self.older.iter().cloned());
        Self {
            current: new,
            older,
        }
    }

    fn next_id(&self) -> String {
        let highest = self
            .ids()
            .filter_map(|id| id.strip_prefix('k')?.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        // `k007` and `k7` are different ids that share a number: skip until unused.
        let mut n = highest.saturating_add(1);
        loop {
            let id = format!("k{n}");
            if self.get(&id).is_none() {
                return id;
            }
            n = n.saturating_add(1);
        }
    }

    /// The ring as `id:base64key,…`, the form [`Self::parse`] reads: key material, so only
    /// for writing the ring file, or for printing a ring the operator asked for.
    pub fn expose_spec(&self) -> SecretString {
        self.keys()
            .map(|k| format!("{}:{}", k.id, STANDARD.encode(k.material)))
            .collect::<Vec<_>>()
            .join(",")
            .into()
    }

    fn keys(&self) -> impl Iterator<Item = &Key> {
        std::iter::once(&self.current).chain(self.older.iter())
    }
}

/// A key ring that a running server can replace without a restart. Clones share one ring, so
/// the flows and the outbox worker see a reload at the same moment. A reader takes a snapshot
/// (an `Arc` clone under a read lock held for no longer than that), so signing and sealing
/// never wait on a reload, and one operation uses one ring from start to end.
#[derive(Clone)]
pub struct LiveRing(Arc<RwLock<Arc<KeyRing>>>);

impl LiveRing {
    pub fn new(ring: KeyRing) -> Self {
        Self(Arc::new(RwLock::new(Arc::new(ring))))
    }

    /// The ring as it is now.
    pub fn snapshot(&self) -> Arc<KeyRing> {
        // A writer cannot leave the ring half-replaced (the swap is one assignment), so a
        // poisoned lock still holds a whole ring.
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Puts `ring` in place for every later operation; operations under way finish with the
    /// ring they started with.
    pub fn replace(&self, ring: KeyRing) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(ring);
    }
}

impl fmt::Debug for LiveRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.snapshot().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

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
    fn rotated_puts_a_new_key_in_front_and_keeps_the_old_ones_in_order() {
        let rng = SeededRandom::new(4);
        let ring = KeyRing::parse(&format!(
            "{},{}",
            KeyRing::generate_spec("k2", &rng),
            KeyRing::generate_spec("k1", &rng)
        ))
        .unwrap();
        let rotated = ring.rotated(&rng);
        assert_eq!(rotated.ids().collect::<Vec<_>>(), ["k3", "k2", "k1"]);
        assert_eq!(rotated.current().0, "k3");
        assert_ne!(rotated.current().1, ring.current().1, "fresh material");
        for id in ["k2", "k1"] {
            assert_eq!(rotated.get(id), ring.get(id), "{id} kept as it was");
        }
        // The rotated ring round-trips through its spec, the form the ring file holds.
        let reparsed = KeyRing::parse(rotated.expose_spec().expose_secret()).unwrap();
        assert_eq!(reparsed.ids().collect::<Vec<_>>(), ["k3", "k2", "k1"]);
        assert_eq!(reparsed.get("k3"), rotated.get("k3"));
        assert_eq!(
            reparsed.rotated(&rng).rotated(&rng).current().0,
            "k5",
            "ids keep counting up"
        );
    }

    #[test]
    fn rotated_ids_are_unique_whatever_the_existing_ids() {
        let rng = SeededRandom::new(7);
        let spec = |ids: &[&str]| {
            ids.iter()
                .map(|id| KeyRing::generate_spec(id, &rng))
                .collect::<Vec<_>>()
                .join(",")
        };
        let named = KeyRing::parse(&spec(&["prod-2026", "old"])).unwrap();
        assert_eq!(named.rotated(&rng).current().0, "k1");
        // "k007" counts as 7 but is not "k8"; "k8" is taken, so the next is k9.
        let odd = KeyRing::parse(&spec(&["k007", "k8x", "k8"])).unwrap();
        assert_eq!(odd.rotated(&rng).current().0, "k9");
    }

    #[test]
    fn a_live_ring_is_replaced_for_every_clone() {
        let rng = SeededRandom::new(8);
        let ring = KeyRing::parse(&KeyRing::generate_spec("k1", &rng)).unwrap();
        let live = LiveRing::new(ring.clone());
        let shared = live.clone();
        let before = live.snapshot();
        shared.replace(ring.rotated(&rng));
        assert_eq!(live.snapshot().current().0, "k2");
        assert_eq!(before.current().0, "k1", "a snapshot stays as it was taken");
        assert_eq!(format!("{live:?}"), r#"KeyRing { ids: ["k2", "k1"] }"#);
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
