//! Reset codes: drawn uniformly from a CSPRNG over the policy's alphabet, and stored only as a
//! keyed MAC ([`crate::crypto::code_mac`]), never as the code.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::domain::ids::{CodeId, TenantId, UserId};
use crate::domain::tenant::CodeAlphabet;
use crate::ports::random::Random;

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum CodeKind ("code kind") {
        /// A reset of an existing password.
        Reset => "reset",
        /// Onboarding: the first password of an `initial` user (longer expiry).
        Init => "init",
    }
}

/// A reset code as stored: only its keyed MAC, never the code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetCodeRecord {
    pub id: CodeId,
    pub tenant_id: TenantId,
    pub user_id: UserId,
    pub key_id: String,
    pub mac: Vec<u8>,
    pub kind: CodeKind,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub attempts: u32,
    pub used_at: Option<DateTime<Utc>>,
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::random::SeededRandom;
    use secrecy::ExposeSecret;

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
}
