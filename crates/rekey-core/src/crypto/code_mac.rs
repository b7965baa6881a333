//! The MAC a reset code is stored as:
//! `HMAC-SHA256(key, len‖tenant ‖ len‖user ‖ len‖code)` with the key's id, compared in
//! constant time. The code itself is never stored.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::crypto::keys::{KeyRing, LiveRing};
use crate::domain::ids::{TenantId, UserId};
use crate::domain::reset_code::normalize;
use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies codes with a rotating key ring. Clones share the ring: a rotation
/// put in through [`Self::ring`] reaches every clone.
#[derive(Debug, Clone)]
pub struct CodeMac {
    keys: LiveRing,
}

impl CodeMac {
    pub fn new(keys: KeyRing) -> Self {
        Self {
            keys: LiveRing::new(keys),
        }
    }

    /// The ring, for a reload to replace.
    pub fn ring(&self) -> &LiveRing {
        &self.keys
    }

    fn mac(key: &[u8; 32], tenant: &TenantId, user: &UserId, code: &str) -> Option<HmacSha256> {
        // HMAC accepts keys of any length, so this never fails in practice.
        let mut mac = HmacSha256::new_from_slice(key).ok()?;
        for part in [tenant.as_str(), user.as_str(), code] {
            let len = u64::try_from(part.len()).unwrap_or(u64::MAX);
            mac.update(&len.to_be_bytes());
            mac.update(part.as_bytes());
        }
        Some(mac)
    }

    /// The MAC of a freshly generated code under the current key: `(key_id, mac)`.
    pub fn sign(
        &self,
        tenant: &TenantId,
        user: &UserId,
        code: &SecretString,
    ) -> Result<(String, Vec<u8>), Error> {
        let ring = self.keys.snapshot();
        let (id, key) = ring.current();
        let normalized = normalize(code.expose_secret());
        let tag = Self::mac(key, tenant, user, &normalized)
            .ok_or_else(Error::internal)?
            .finalize()
            .into_bytes()
            .to_vec();
        Ok((id.to_owned(), tag))
    }

    /// Constant-time check of a submitted code against a stored MAC. An unknown key id (a key
    /// removed from the ring) never matches.
    pub fn verify(
        &self,
        key_id: &str,
        stored: &[u8],
        tenant: &TenantId,
        user: &UserId,
        input: &SecretString,
    ) -> bool {
        let ring = self.keys.snapshot();
        let Some(key) = ring.get(key_id) else {
            return false;
        };
        let normalized = normalize(input.expose_secret());
        Self::mac(key, tenant, user, &normalized)
            .is_some_and(|mac| mac.verify_slice(stored).is_ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::random::SeededRandom;

    fn ids() -> (TenantId, UserId) {
        (
            TenantId::parse("100").unwrap(),
            UserId::parse("200").unwrap(),
        )
    }

    #[test]
    fn verify_is_case_insensitive_and_bound_to_user_and_tenant() {
        let rng = SeededRandom::new(11);
        let ring = KeyRing::parse(&KeyRing::generate_spec("k1", &rng)).unwrap();
        let mac = CodeMac::new(ring);
        let (t, u) = ids();
        let code = SecretString::from("ABCD2345".to_owned());
        let (kid, tag) = mac.sign(&t, &u, &code).unwrap();
        assert!(mac.verify(
            &kid,
            &tag,
            &t,
            &u,
            &SecretString::from("abcd2345".to_owned())
        ));
        assert!(!mac.verify(
            &kid,
            &tag,
            &t,
            &u,
            &SecretString::from("ABCD2346".to_owned())
        ));
        let other_user = UserId::parse("2000").unwrap();
        assert!(!mac.verify(&kid, &tag, &t, &other_user, &code));
        // length prefixes: tenant "10" + user "0200" must not collide with "100" + "200"
        let t2 = TenantId::parse("10").unwrap();
        let u2 = UserId::parse("0200").unwrap();
        assert!(!mac.verify(&kid, &tag, &t2, &u2, &code));
    }

    #[test]
    fn rotation_old_keys_verify_new_key_signs_removed_keys_fail() {
        let rng = SeededRandom::new(12);
        let old = KeyRing::generate_spec("old", &rng);
        let new = KeyRing::generate_spec("new", &rng);
        let (t, u) = ids();
        let code = SecretString::from("QWERTY23".to_owned());
        let (kid, tag) = CodeMac::new(KeyRing::parse(&old).unwrap())
            .sign(&t, &u, &code)
            .unwrap();
        assert_eq!(kid, "old");

        let rotated = CodeMac::new(KeyRing::parse(&format!("{new},{old}")).unwrap());
        assert!(rotated.verify(&kid, &tag, &t, &u, &code));
        assert_eq!(rotated.sign(&t, &u, &code).unwrap().0, "new");

        let retired = CodeMac::new(KeyRing::parse(&new).unwrap());
        assert!(!retired.verify(&kid, &tag, &t, &u, &code));
    }

    #[test]
    fn a_rotation_reaches_every_clone_and_old_codes_keep_verifying() {
        let rng = SeededRandom::new(13);
        let ring = KeyRing::parse(&KeyRing::generate_spec("k1", &rng)).unwrap();
        let mac = CodeMac::new(ring.clone());
        let worker_copy = mac.clone();
        let (t, u) = ids();
        let code = SecretString::from("ZXCVBN23".to_owned());
        let (kid, tag) = mac.sign(&t, &u, &code).unwrap();

        mac.ring().replace(ring.rotated(&rng));
        let (new_kid, new_tag) = worker_copy.sign(&t, &u, &code).unwrap();
        assert_eq!((kid.as_str(), new_kid.as_str()), ("k1", "k2"));
        assert_ne!(tag, new_tag);
        for m in [&mac, &worker_copy] {
            assert!(
                m.verify(&kid, &tag, &t, &u, &code),
                "signed before rotation"
            );
            assert!(m.verify(&new_kid, &new_tag, &t, &u, &code));
            assert!(
                !m.verify(&new_kid, &tag, &t, &u, &code),
                "tag bound to its key"
            );
        }
    }
}
