//! argon2id hashing off the async runtime. At most `threads` hashes run at once (one core stays
//! free for serving) and at most `queue` more wait; beyond that a request fails fast with
//! RESOURCE_EXHAUSTED instead of piling up hundreds of 19 MiB allocations.
//!
//! Every hash Rekey computes, its own or one a tenant admin imported, stays within
//! [`HashBounds::ACCEPTED`]: a stored PHC string names its own cost, so without a cap one
//! tenant's import could allocate terabytes or hold the shared pool for minutes.

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

use crate::clock::Random;
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
const OWN_SALT_BYTES: usize = 16;
const OWN_OUTPUT_BYTES: usize = 32;

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
    fn matches(&self, password: &[u8]) -> Result<bool, Error> {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashParams {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for HashParams {
    fn default() -> Self {
        Self {
            memory_kib: 19_456,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl HashParams {
    /// Refuses a configuration whose own hashes would be refused at verify time, which would
    /// lock every user out after their next password change.
    pub fn check(&self) -> Result<Params, Error> {
        let bounds = HashBounds::ACCEPTED;
        let refuse = |why: String| {
            Error::invalid(
                "REKEY-Ar2Pm",
                format!(
                    "argon2 parameters {why}: need 1 ≤ t ≤ {}, 1 ≤ p ≤ {}, 8·p ≤ m ≤ {} KiB",
                    bounds.max_iterations, bounds.max_parallelism, bounds.max_memory_kib
                ),
            )
        };
        if !bounds.allows_cost(self.memory_kib, self.iterations, self.parallelism) {
            return Err(refuse("are out of bounds".to_owned()));
        }
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OWN_OUTPUT_BYTES),
        )
        .map_err(|err| refuse(format!("are invalid ({err})")))
    }

    pub fn argon2(&self) -> Result<Argon2<'static>, Error> {
        Ok(Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            self.check()?,
        ))
    }
}

/// The default pool width: all cores but one, at least one.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get().saturating_sub(1).max(1))
        .unwrap_or(1)
}

#[derive(Clone)]
pub struct PasswordHasher {
    argon2: Argon2<'static>,
    /// Admission: `threads + queue` permits, taken without waiting.
    admission: Arc<Semaphore>,
    /// Work: `threads` permits; holders run on the blocking pool.
    workers: Arc<Semaphore>,
    threads: usize,
    rng: Arc<dyn Random>,
}

impl std::fmt::Debug for PasswordHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordHasher")
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl PasswordHasher {
    pub fn new(
        params: HashParams,
        threads: usize,
        queue: usize,
        rng: Arc<dyn Random>,
    ) -> Result<Self, Error> {
        let threads = threads.max(1);
        Ok(Self {
            argon2: params.argon2()?,
            admission: Arc::new(Semaphore::new(threads + queue)),
            workers: Arc::new(Semaphore::new(threads)),
            threads,
            rng,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _admitted = self
            .admission
            .clone()
            .try_acquire_owned()
            .map_err(|_| Error::hash_pool_busy())?;
        let worker = self
            .workers
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| Error::internal())?;
        let argon2 = self.argon2.clone();
        tokio::task::spawn_blocking(move || {
            let _worker = worker;
            job(&argon2)
        })
        .await
        .map_err(|err| {
            tracing::error!(%err, "hash task failed");
            Error::internal()
        })
    }

    /// Hashes a password into a PHC string.
    pub async fn hash(&self, password: SecretString) -> Result<String, Error> {
        let mut salt = [0u8; OWN_SALT_BYTES];
        self.rng.fill(&mut salt);
        self.run(move |argon2| {
            let salt = SaltString::encode_b64(&salt).map_err(|_| Error::internal())?;
            argon2
                .hash_password(password.expose_secret().as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|err| {
                    tracing::error!(%err, "argon2 hash failed");
                    Error::internal()
                })
        })
        .await?
    }

    /// Checks a password against a stored PHC string (its own parameters apply). A hash out of
    /// [`HashBounds::ACCEPTED`] never matches and is refused before it takes a pool permit.
    pub async fn verify(&self, password: SecretString, phc: String) -> Result<bool, Error> {
        let stored = match BoundedHash::parse(&phc) {
            Ok(stored) => stored,
            Err(refusal) => {
                tracing::warn!(%refusal, "stored password hash not computed; treated as not matching");
                return Ok(false);
            }
        };
        self.run(move |_| stored.matches(password.expose_secret().as_bytes()))
            .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SeededRandom;

    fn cheap() -> HashParams {
        HashParams {
            memory_kib: 256,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn hashes_and_verifies_argon2id() {
        let hasher = PasswordHasher::new(cheap(), 1, 4, Arc::new(SeededRandom::new(1))).unwrap();
        let phc = hasher
            .hash(SecretString::from("correct horse".to_owned()))
            .await
            .unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{phc}");
        assert!(hasher
            .verify(SecretString::from("correct horse".to_owned()), phc.clone())
            .await
            .unwrap());
        assert!(!hasher
            .verify(SecretString::from("wrong horse".to_owned()), phc)
            .await
            .unwrap());
    }

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

    #[tokio::test]
    async fn verifies_hashes_of_any_size_within_bounds() {
        let hasher = PasswordHasher::new(cheap(), 1, 4, Arc::new(SeededRandom::new(3))).unwrap();
        for (salt, output) in [(8, 16), (64, 64), (12, 20)] {
            let params = Params::new(64, 1, 2, Some(output)).unwrap();
            let mut hash = vec![0u8; output];
            Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
                .hash_password_into(b"imported", &vec![5u8; salt], &mut hash)
                .unwrap();
            let phc = format!(
                "$argon2id$v=19$m=64,t=1,p=2${}${}",
                b64(&vec![5u8; salt]),
                b64(&hash)
            );
            let verify = |pw: &str| hasher.verify(SecretString::from(pw.to_owned()), phc.clone());
            assert!(verify("imported").await.unwrap(), "{phc}");
            assert!(!verify("imported!").await.unwrap(), "{phc}");
        }
    }

    #[tokio::test]
    async fn out_of_bounds_hash_is_not_computed_and_takes_no_permit() {
        // One thread, no queue, and its only permit held: any computed hash would be refused
        // as busy, so an answer of "no match" proves the hash was never queued.
        let hasher = PasswordHasher::new(cheap(), 1, 0, Arc::new(SeededRandom::new(4))).unwrap();
        let good = hasher
            .hash(SecretString::from("pw".to_owned()))
            .await
            .unwrap();
        let held = hasher.admission.clone().try_acquire_owned().unwrap();
        let busy = hasher
            .verify(SecretString::from("pw".to_owned()), good.clone())
            .await
            .unwrap_err();
        assert_eq!(busy.kind, crate::ErrorKind::ResourceExhausted);

        let huge = good.replace("$m=256,", "$m=4294967295,");
        for stored in [
            huge,
            good.replace("$m=256,", "$m=262145,"),
            good.replace("$argon2id$", "$argon2i$"),
            "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
        ] {
            let verdict = tokio::time::timeout(
                std::time::Duration::from_secs(1),
                hasher.verify(SecretString::from("pw".to_owned()), stored),
            )
            .await
            .expect("answered at once");
            assert!(!verdict.unwrap());
        }
        assert_eq!(hasher.admission.available_permits(), 0);
        drop(held);
        assert!(hasher
            .verify(SecretString::from("pw".to_owned()), good)
            .await
            .unwrap());
    }

    #[test]
    fn own_parameters_must_be_within_bounds() {
        for ok in [
            HashParams::default(),
            cheap(),
            HashParams {
                memory_kib: 262_144,
                iterations: 16,
                parallelism: 8,
            },
            HashParams {
                memory_kib: 64,
                iterations: 1,
                parallelism: 8,
            },
        ] {
            assert!(ok.check().is_ok(), "{ok:?}");
        }
        for bad in [
            HashParams {
                memory_kib: 262_145,
                ..HashParams::default()
            },
            HashParams {
                iterations: 17,
                ..HashParams::default()
            },
            HashParams {
                parallelism: 9,
                ..HashParams::default()
            },
            HashParams {
                iterations: 0,
                ..HashParams::default()
            },
            HashParams {
                memory_kib: 63,
                iterations: 1,
                parallelism: 8,
            },
        ] {
            let err = bad.check().unwrap_err();
            assert_eq!(err.id, "REKEY-Ar2Pm", "{bad:?}");
            assert!(err.message().contains("262144"), "{}", err.message());
            assert!(PasswordHasher::new(bad, 1, 1, Arc::new(SeededRandom::new(5))).is_err());
        }
    }

    #[tokio::test]
    async fn own_hashes_pass_the_bounds() {
        let hasher = PasswordHasher::new(cheap(), 1, 4, Arc::new(SeededRandom::new(6))).unwrap();
        let phc = hasher
            .hash(SecretString::from("pw".to_owned()))
            .await
            .unwrap();
        assert!(BoundedHash::parse(&phc).is_ok(), "{phc}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn full_queue_fails_fast_instead_of_waiting() {
        let slow = HashParams {
            memory_kib: 8_192,
            iterations: 8,
            parallelism: 1,
        };
        let hasher = PasswordHasher::new(slow, 1, 1, Arc::new(SeededRandom::new(2))).unwrap();
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let h = hasher.clone();
            tasks.push(tokio::spawn(async move {
                h.hash(SecretString::from("pw".to_owned())).await
            }));
        }
        let mut busy = 0;
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => {
                    assert_eq!(e.kind, crate::ErrorKind::ResourceExhausted);
                    busy += 1;
                }
            }
        }
        // one running + one queued are admitted; the rest are refused at once
        assert!(ok >= 2, "ok={ok}");
        assert!(busy >= 1, "busy={busy}");
    }
}
