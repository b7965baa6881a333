//! The argon2id hashes Rekey agrees to compute. Every hash, its own or one a tenant admin
//! imported, stays within [`HashBounds::ACCEPTED`]: a stored PHC string names its own cost, so
//! without a cap one tenant's import could allocate terabytes or hold the shared pool for
//! minutes.

use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use subtle::ConstantTimeEq;

use crate::error::Error;

/// The argon2id costs and sizes Rekey agrees to compute (SPEC §11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashBounds {
    pub max_memory_kib: u32,
    pub max_iterations: u32,
    pub max_parallelism: u32,
    pub min_salt_bytes: usize,
    pub max_salt_bytes: usize,
    pub min_output_bytes: usize,
    pub max_output_bytes: usize,
}

impl HashBounds {
    /// Sized so that one verify costs at most 256 MiB and a few seconds of one pool thread.
    pub const ACCEPTED: HashBounds = HashBounds {
        max_memory_kib: 262_144,
        max_iterations: 16,
        max_parallelism: 8,
        min_salt_bytes: 8,
        max_salt_bytes: 64,
        min_output_bytes: 16,
        max_output_bytes: 64,
    };

    /// Whether computing a hash at this cost stays within the bounds.
    pub fn allows_cost(&self, memory_kib: u32, iterations: u32, parallelism: u32) -> bool {
        memory_kib <= self.max_memory_kib
            && iterations <= self.max_iterations
            && parallelism <= self.max_parallelism
    }

    /// The bounds in words, for refusals and the docs.
    pub fn describe(&self) -> String {
        format!(
            "an argon2id v=19 PHC string with m ≤ {} KiB, t ≤ {}, p ≤ {}, a salt of {}–{} bytes \
             and a hash of {}–{} bytes",
            self.max_memory_kib,
            self.max_iterations,
            self.max_parallelism,
            self.min_salt_bytes,
            self.max_salt_bytes,
            self.min_output_bytes,
            self.max_output_bytes,
        )
    }
}

/// Why a PHC string is not one Rekey computes. Says nothing about the string's content, so
/// it can be logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HashRefusal {
    #[error("not an argon2 PHC string")]
    NotPhc,
    #[error("algorithm is not argon2id")]
    Algorithm,
    #[error("version is not v=19")]
    Version,
    #[error("parameters are not m=…,t=…,p=…")]
    Params,
    #[error("cost is out of bounds")]
    Cost,
    #[error("salt length is out of bounds")]
    Salt,
    #[error("hash length is out of bounds")]
    Output,
}

/// No valid string comes near this; checked first so a huge value costs nothing to refuse.
const MAX_PHC_LEN: usize = 256;

/// Salt and output of the hashes Rekey makes itself.
pub(crate) const OWN_SALT_BYTES: usize = 16;
pub(crate) const OWN_OUTPUT_BYTES: usize = 32;

// Rekey's own hashes must always pass its own bounds.
const _: () = assert!(
    OWN_SALT_BYTES >= HashBounds::ACCEPTED.min_salt_bytes
        && OWN_SALT_BYTES <= HashBounds::ACCEPTED.max_salt_bytes
        && OWN_OUTPUT_BYTES >= HashBounds::ACCEPTED.min_output_bytes
        && OWN_OUTPUT_BYTES <= HashBounds::ACCEPTED.max_output_bytes
);

/// A PHC string that passed [`HashBounds::ACCEPTED`], decoded and ready to verify against.
pub struct BoundedHash {
    params: Params,
    salt: Vec<u8>,
    hash: Vec<u8>,
}

impl std::fmt::Debug for BoundedHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedHash")
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// A PHC decimal: digits only, no sign and no leading zero, so one value has one spelling.
fn phc_decimal(raw: &str) -> Option<u32> {
    let canonical = !raw.is_empty()
        && raw.bytes().all(|b| b.is_ascii_digit())
        && (raw == "0" || !raw.starts_with('0'));
    if canonical {
        raw.parse().ok()
    } else {
        None
    }
}

impl BoundedHash {
    pub fn parse(phc: &str) -> Result<Self, HashRefusal> {
        let bounds = HashBounds::ACCEPTED;
        if phc.len() > MAX_PHC_LEN {
            return Err(HashRefusal::NotPhc);
        }
        let fields: Vec<&str> = phc.split('$').collect();
        match fields.as_slice() {
            ["", algorithm, ..] if *algorithm != "argon2id" => Err(HashRefusal::Algorithm),
            ["", _, version, ..] if *version != "v=19" => Err(HashRefusal::Version),
            ["", _, _, params, salt, hash] => {
                let (m, t, p) = match params.split(',').collect::<Vec<_>>().as_slice() {
                    [m, t, p] => (
                        m.strip_prefix("m=").and_then(phc_decimal),
                        t.strip_prefix("t=").and_then(phc_decimal),
                        p.strip_prefix("p=").and_then(phc_decimal),
                    ),
                    _ => return Err(HashRefusal::Params),
                };
                let (Some(m), Some(t), Some(p)) = (m, t, p) else {
                    return Err(HashRefusal::Params);
                };
                if !bounds.allows_cost(m, t, p) {
                    return Err(HashRefusal::Cost);
                }
                let salt = STANDARD_NO_PAD
                    .decode(salt)
                    .map_err(|_| HashRefusal::NotPhc)?;
                if !(bounds.min_salt_bytes..=bounds.max_salt_bytes).contains(&salt.len()) {
                    return Err(HashRefusal::Salt);
                }
                let hash = STANDARD_NO_PAD
                    .decode(hash)
                    .map_err(|_| HashRefusal::NotPhc)?;
                if !(bounds.min_output_bytes..=bounds.max_output_bytes).contains(&hash.len()) {
                    return Err(HashRefusal::Output);
                }
                // argon2's own minimums (t ≥ 1, p ≥ 1, m ≥ 8·p).
                let params =
                    Params::new(m, t, p, Some(hash.len())).map_err(|_| HashRefusal::Cost)?;
                Ok(Self { params, salt, hash })
            }
            _ => Err(HashRefusal::NotPhc),
        }
    }

    /// Accepts an imported `hashedPassword`, or refuses it naming the bounds (never the hash).
    pub fn check_import(phc: &str) -> Result<(), Error> {
        Self::parse(phc).map(drop).map_err(|_| {
            Error::invalid(
                "REKEY-PwHsh",
                format!("hashedPassword must be {}", HashBounds::ACCEPTED.describe()),
            )
        })
    }

    /// Computes the password under this hash's own parameters; blocking, so pool threads only.
    pub(crate) fn matches(&self, password: &[u8]) -> Result<bool, Error> {
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone());
        let mut computed = vec![0u8; self.hash.len()];
        argon2
            .hash_password_into(password, &self.salt, &mut computed)
            .map_err(|err| {
                tracing::error!(%err, "argon2 verify failed");
                Error::internal()
            })?;
        Ok(bool::from(computed.ct_eq(&self.hash)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(bytes: &[u8]) -> String {
        STANDARD_NO_PAD.encode(bytes)
    }

    /// A PHC string with the given header, parameters and sizes (content is irrelevant here).
    fn phc(head: &str, params: &str, salt_bytes: usize, hash_bytes: usize) -> String {
        format!(
            "{head}${params}${}${}",
            b64(&vec![7u8; salt_bytes]),
            b64(&vec![9u8; hash_bytes])
        )
    }

    fn argon2id(params: &str, salt_bytes: usize, hash_bytes: usize) -> String {
        phc("$argon2id$v=19", params, salt_bytes, hash_bytes)
    }

    fn refusal(phc: &str) -> Option<HashRefusal> {
        BoundedHash::parse(phc).err()
    }

    #[test]
    fn each_bound_is_accepted_at_its_edge_and_refused_one_past() {
        let cases = [
            (
                "m=262144,t=1,p=1",
                16,
                32,
                "m=262145,t=1,p=1",
                16,
                32,
                HashRefusal::Cost,
            ),
            (
                "m=256,t=16,p=1",
                16,
                32,
                "m=256,t=17,p=1",
                16,
                32,
                HashRefusal::Cost,
            ),
            (
                "m=256,t=1,p=8",
                16,
                32,
                "m=256,t=1,p=9",
                16,
                32,
                HashRefusal::Cost,
            ),
            (
                "m=256,t=1,p=1",
                8,
                32,
                "m=256,t=1,p=1",
                7,
                32,
                HashRefusal::Salt,
            ),
            (
                "m=256,t=1,p=1",
                64,
                32,
                "m=256,t=1,p=1",
                65,
                32,
                HashRefusal::Salt,
            ),
            (
                "m=256,t=1,p=1",
                16,
                16,
                "m=256,t=1,p=1",
                16,
                15,
                HashRefusal::Output,
            ),
            (
                "m=256,t=1,p=1",
                16,
                64,
                "m=256,t=1,p=1",
                16,
                65,
                HashRefusal::Output,
            ),
        ];
        for (ok, ok_salt, ok_hash, bad, bad_salt, bad_hash, why) in cases {
            let accepted = argon2id(ok, ok_salt, ok_hash);
            assert_eq!(refusal(&accepted), None, "{accepted}");
            assert!(BoundedHash::check_import(&accepted).is_ok());
            let refused = argon2id(bad, bad_salt, bad_hash);
            assert_eq!(refusal(&refused), Some(why), "{refused}");
        }
    }

    #[test]
    fn other_algorithms_versions_and_garbage_are_refused() {
        let cases = [
            (
                phc("$argon2i$v=19", "m=256,t=1,p=1", 16, 32),
                HashRefusal::Algorithm,
            ),
            (
                phc("$argon2d$v=19", "m=256,t=1,p=1", 16, 32),
                HashRefusal::Algorithm,
            ),
            (
                phc("$argon2id$v=16", "m=256,t=1,p=1", 16, 32),
                HashRefusal::Version,
            ),
            (
                format!(
                    "$argon2id$m=256,t=1,p=1${}${}",
                    b64(&[1; 16]),
                    b64(&[2; 32])
                ),
                HashRefusal::Version,
            ),
            (
                "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
                HashRefusal::Algorithm,
            ),
            (
                "{SSHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=".to_owned(),
                HashRefusal::NotPhc,
            ),
            (String::new(), HashRefusal::NotPhc),
            ("not a hash".to_owned(), HashRefusal::NotPhc),
            ("$argon2id$v=19".to_owned(), HashRefusal::NotPhc),
            (argon2id("m=256,t=1,p=1", 16, 32) + "$", HashRefusal::NotPhc),
            (
                argon2id("m=256,t=1,p=1", 16, 32) + "==",
                HashRefusal::NotPhc,
            ),
            (argon2id("t=1,m=256,p=1", 16, 32), HashRefusal::Params),
            (argon2id("m=256,t=1", 16, 32), HashRefusal::Params),
            (
                argon2id("m=256,t=1,p=1,keyid=AAAA", 16, 32),
                HashRefusal::Params,
            ),
            (argon2id("m=+256,t=1,p=1", 16, 32), HashRefusal::Params),
            (argon2id("m=0256,t=1,p=1", 16, 32), HashRefusal::Params),
            (
                argon2id("m=99999999999,t=1,p=1", 16, 32),
                HashRefusal::Params,
            ),
            (argon2id("m=4294967295,t=1,p=1", 16, 32), HashRefusal::Cost),
            (argon2id("m=256,t=0,p=1", 16, 32), HashRefusal::Cost),
            (argon2id("m=256,t=1,p=0", 16, 32), HashRefusal::Cost),
            (argon2id("m=63,t=1,p=8", 16, 32), HashRefusal::Cost),
            (
                "$argon2id$v=19$m=256,t=1,p=1$!!!!$AAAA".to_owned(),
                HashRefusal::NotPhc,
            ),
            ("$".repeat(MAX_PHC_LEN + 1), HashRefusal::NotPhc),
        ];
        for (phc, why) in cases {
            assert_eq!(refusal(&phc), Some(why), "{phc}");
        }
    }

    #[test]
    fn import_refusal_names_the_bounds_and_not_the_hash() {
        let phc = argon2id("m=262145,t=1,p=1", 16, 32);
        let err = BoundedHash::check_import(&phc).unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::InvalidArgument);
        assert_eq!(err.id, "REKEY-PwHsh");
        let message = err.message();
        for bound in ["argon2id", "v=19", "262144", "16", "8", "64"] {
            assert!(message.contains(bound), "{message}");
        }
        assert!(!message.contains(&b64(&[9u8; 32])), "{message}");
        assert!(!format!(
            "{:?}",
            BoundedHash::parse(&argon2id("m=256,t=1,p=1", 16, 32))
        )
        .contains(&b64(&[9u8; 32])));
    }
}
