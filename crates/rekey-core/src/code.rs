//! Reset codes: drawn uniformly from a CSPRNG over the policy's alphabet, stored only as
//! `HMAC-SHA256(key, len‖tenant ‖ len‖user ‖ len‖code)` with the key's id, compared in
//! constant time.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::clock::Random;
use crate::error::Error;
use crate::ids::{TenantId, UserId};
use crate::keys::KeyRing;
use crate::model::CodeAlphabet;

/// No 0/O/1/I/L: easy to read and type.
pub const REKEY_ALPHABET: &[u8] = b"ABCDEFGHJKMNPQRSTUVWXYZ23456789";
/// ZITADEL's generator.
pub const ZITADEL_ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
/// Longest code input accepted on the wire (SPEC §3.2).
pub const MAX_CODE_INPUT: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodePolicy {
    pub alphabet: CodeAlphabet,
    pub length: u32,
}

impl CodePolicy {
    pub fn alphabet_bytes(&self) -> &'static [u8] {
        match self.alphabet {
            CodeAlphabet::Rekey => REKEY_ALPHABET,
            CodeAlphabet::Zitadel => ZITADEL_ALPHABET,
        }
    }

    /// Draws a code. Rejection sampling keeps every character uniform over the alphabet.
    pub fn generate(&self, rng: &dyn Random) -> SecretString {
        let alphabet = self.alphabet_bytes();
        let n = alphabet.len();
        let limit = 256 - (256 % n);
        let wanted = usize::try_from(self.length.clamp(4, MAX_CODE_INPUT as u32)).unwrap_or(8);
        let mut code = String::with_capacity(wanted);
        let mut buf = [0u8; 32];
        while code.len() < wanted {
            rng.fill(&mut buf);
            for &b in &buf {
                if usize::from(b) < limit && code.len() < wanted {
                    code.push(char::from(alphabet[usize::from(b) % n]));
                }
            }
        }
        SecretString::from(code)
    }
}

/// Codes are compared case-insensitively: input is upper-cased (and trimmed) before hashing.
pub fn normalize(input: &str) -> String {
    input.trim().to_uppercase()
}

type HmacSha256 = Hmac<Sha256>;

/// Signs and verifies codes with a rotating key ring.
#[derive(Debug, Clone)]
pub struct CodeMac {
    keys: KeyRing,
}

impl CodeMac {
    pub fn new(keys: KeyRing) -> Self {
        Self { keys }
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
        let (id, key) = self.keys.current();
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
        let Some(key) = self.keys.get(key_id) else {
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
    use crate::clock::SeededRandom;

    fn ids() -> (TenantId, UserId) {
        (
            TenantId::parse("100").unwrap(),
            UserId::parse("200").unwrap(),
        )
    }

    #[test]
    fn default_codes_use_the_rekey_alphabet() {
        let rng = SeededRandom::new(9);
        let policy = CodePolicy {
            alphabet: CodeAlphabet::Rekey,
            length: 8,
        };
        for _ in 0..200 {
            let code = policy.generate(&rng);
            let code = code.expose_secret();
            assert_eq!(code.len(), 8);
            assert!(code.bytes().all(|b| REKEY_ALPHABET.contains(&b)), "{code}");
        }
    }

    #[test]
    fn generation_is_uniform_enough() {
        let rng = SeededRandom::new(10);
        let policy = CodePolicy {
            alphabet: CodeAlphabet::Zitadel,
            length: 20,
        };
        let mut counts = [0u32; 36];
        for _ in 0..3_600 {
            for b in policy.generate(&rng).expose_secret().bytes() {
                let i = ZITADEL_ALPHABET.iter().position(|&a| a == b).unwrap();
                counts[i] += 1;
            }
        }
        // 72,000 draws over 36 symbols: 2,000 expected each; a biased `b % n` without
        // rejection would skew the first 4 symbols by ~10%.
        for c in counts {
            assert!((1_800..2_200).contains(&c), "{counts:?}");
        }
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
}
