//! argon2id hashing off the async runtime. At most `threads` hashes run at once (one core stays
//! free for serving) and at most `queue` more wait; beyond that a request fails fast with
//! RESOURCE_EXHAUSTED instead of piling up hundreds of 19 MiB allocations.
//!
//! Every hash Rekey computes stays within [`HashBounds::ACCEPTED`] (see
//! [`crate::crypto::hash_bounds`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use argon2::password_hash::{PasswordHasher as _, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::crypto::hash_bounds::{BoundedHash, HashBounds, OWN_OUTPUT_BYTES, OWN_SALT_BYTES};
use crate::error::Error;
use crate::ports::random::Random;

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
    queue: usize,
    /// Hashes refused because the pool and its queue were full.
    refused: Arc<AtomicU64>,
    rng: Arc<dyn Random>,
}

/// How busy the hash pool is, read without locking (for `/metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HashPoolStats {
    /// Hashes running now (at most `threads`).
    pub busy: u64,
    /// Admitted hashes waiting for a thread (at most `queue`).
    pub queued: u64,
    /// Hashes refused with RESOURCE_EXHAUSTED since start.
    pub refused: u64,
    pub threads: u64,
    pub queue: u64,
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
            queue,
            refused: Arc::new(AtomicU64::new(0)),
            rng,
        })
    }

    pub fn threads(&self) -> usize {
        self.threads
    }

    /// A snapshot of the pool's use; the two semaphores are read one after the other, so under
    /// load `busy + queued` may be off by one for an instant.
    pub fn stats(&self) -> HashPoolStats {
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        let admitted =
            (self.threads + self.queue).saturating_sub(self.admission.available_permits());
        let busy = self
            .threads
            .saturating_sub(self.workers.available_permits());
        HashPoolStats {
            busy: count(busy),
            queued: count(admitted.saturating_sub(busy)),
            refused: self.refused.load(Ordering::Relaxed),
            threads: count(self.threads),
            queue: count(self.queue),
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce(&Argon2<'static>) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let _admitted = self.admission.clone().try_acquire_owned().map_err(|_| {
            self.refused.fetch_add(1, Ordering::Relaxed);
            Error::hash_pool_busy()
        })?;
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
    use crate::ports::random::SeededRandom;
    use base64::engine::general_purpose::STANDARD_NO_PAD;
    use base64::Engine as _;

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
        let stats = hasher.stats();
        assert_eq!(stats.refused, busy);
        assert_eq!((stats.busy, stats.queued), (0, 0));
    }

    #[test]
    fn stats_tell_running_from_queued() {
        let hasher = PasswordHasher::new(cheap(), 1, 2, Arc::new(SeededRandom::new(7))).unwrap();
        assert_eq!(
            hasher.stats(),
            HashPoolStats {
                threads: 1,
                queue: 2,
                ..HashPoolStats::default()
            }
        );
        // What `run` holds for a running hash, then for one waiting for the thread.
        let _running = (
            hasher.admission.clone().try_acquire_owned().unwrap(),
            hasher.workers.clone().try_acquire_owned().unwrap(),
        );
        let _waiting = hasher.admission.clone().try_acquire_owned().unwrap();
        let stats = hasher.stats();
        assert_eq!((stats.busy, stats.queued, stats.refused), (1, 1, 0));
    }
}
