//! Sealing of outbox bodies (they may hold a code): XChaCha20-Poly1305 with a random 192-bit
//! nonce per message and the message id as associated data, so a body cannot be moved to
//! another row. Stored as `nonce ‖ ciphertext` with the key id beside it.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};

use crate::crypto::keys::{KeyRing, LiveRing};
use crate::error::Error;
use crate::ports::random::Random;

const NONCE_LEN: usize = 24;

/// Seals and opens outbox bodies with a rotating key ring. Clones share the ring (the flows
/// seal, the outbox worker opens): a rotation put in through [`Self::ring`] reaches both.
#[derive(Debug, Clone)]
pub struct Sealer {
    keys: LiveRing,
}

impl Sealer {
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys: LiveRing::new(keys),
        }
    }

    /// The ring, for a reload to replace.
    pub fn ring(&self) -> &LiveRing {
        &self.keys
    }

    /// Encrypts under the current key: `(key_id, nonce ‖ ciphertext)`.
    pub fn seal(
        &self,
        rng: &dyn Random,
        associated: &[u8],
        plaintext: &[u8],
    ) -> Result<(String, Vec<u8>), Error> {
        let ring = self.keys.snapshot();
        let (id, key) = ring.current();
        let cipher = XChaCha20Poly1305::new(key.into());
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill(&mut nonce);
        let sealed = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: associated,
                },
            )
            .map_err(|_| Error::internal())?;
        let mut body = nonce.to_vec();
        body.extend_from_slice(&sealed);
        Ok((id.to_owned(), body))
    }

    /// Decrypts a body sealed by [`Self::seal`] under any key of the ring.
    pub fn open(&self, key_id: &str, associated: &[u8], body: &[u8]) -> Result<Vec<u8>, Error> {
        let ring = self.keys.snapshot();
        let key = ring.get(key_id).ok_or_else(Error::internal)?;
        if body.len() < NONCE_LEN {
            return Err(Error::internal());
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        XChaCha20Poly1305::new(key.into())
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: associated,
                },
            )
            .map_err(|_| Error::internal())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::random::SeededRandom;

    fn sealer(spec: &str) -> Sealer {
        Sealer::new(KeyRing::parse(spec).unwrap())
    }

    #[test]
    fn round_trip_with_fresh_nonces_and_bound_to_message() {
        let rng = SeededRandom::new(5);
        let s = sealer(&KeyRing::generate_spec("o1", &rng));
        let (kid, a) = s.seal(&rng, b"msg-1", b"code ABCD2345").unwrap();
        let (_, b) = s.seal(&rng, b"msg-1", b"code ABCD2345").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN], "nonce must never repeat");
        assert!(!a.windows(8).any(|w| w == b"ABCD2345"), "plaintext visible");
        assert_eq!(s.open(&kid, b"msg-1", &a).unwrap(), b"code ABCD2345");
        assert!(s.open(&kid, b"msg-2", &a).is_err(), "moved to another row");
        let mut tampered = a;
        *tampered.last_mut().unwrap() ^= 1;
        assert!(s.open(&kid, b"msg-1", &tampered).is_err());
    }

    #[test]
    fn old_keys_still_open_after_rotation() {
        let rng = SeededRandom::new(6);
        let old = KeyRing::generate_spec("old", &rng);
        let new = KeyRing::generate_spec("new", &rng);
        let (kid, body) = sealer(&old).seal(&rng, b"m", b"hello").unwrap();
        let rotated = sealer(&format!("{new},{old}"));
        assert_eq!(rotated.open(&kid, b"m", &body).unwrap(), b"hello");
        assert_eq!(rotated.seal(&rng, b"m", b"x").unwrap().0, "new");
    }

    #[test]
    fn a_reload_reaches_the_worker_copy_and_dropped_keys_stop_opening() {
        let rng = SeededRandom::new(7);
        let ring = KeyRing::parse(&KeyRing::generate_spec("k1", &rng)).unwrap();
        let flows = Sealer::new(ring.clone());
        let worker = flows.clone();
        let (old_kid, old_body) = flows.seal(&rng, b"m1", b"before").unwrap();

        let rotated = ring.rotated(&rng);
        flows.ring().replace(rotated.clone());
        let (new_kid, new_body) = flows.seal(&rng, b"m2", b"after").unwrap();
        assert_eq!((old_kid.as_str(), new_kid.as_str()), ("k1", "k2"));
        assert_eq!(worker.open(&old_kid, b"m1", &old_body).unwrap(), b"before");
        assert_eq!(worker.open(&new_kid, b"m2", &new_body).unwrap(), b"after");
        assert!(worker.open(&new_kid, b"m1", &old_body).is_err());

        // Only once k1 leaves the ring do its bodies stop opening.
        let spec = rotated.expose_spec();
        let only_new = secrecy::ExposeSecret::expose_secret(&spec)
            .split(',')
            .next()
            .unwrap()
            .to_owned();
        worker.ring().replace(KeyRing::parse(&only_new).unwrap());
        assert!(flows.open(&old_kid, b"m1", &old_body).is_err());
        assert_eq!(flows.open(&new_kid, b"m2", &new_body).unwrap(), b"after");
    }
}
