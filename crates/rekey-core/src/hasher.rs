//! argon2id hashing off the async runtime. At most `threads` hashes run at once (one core stays
//! free for serving) and at most `queue` more wait; beyond that a request fails fast with
//! RESOURCE_EXHAUSTED instead of piling up hundreds of 19 MiB allocations.

use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use crate::clock::Random;
use crate::error::Error;

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
    pub fn argon2(&self) -> Result<Argon2<'static>, Error> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|err| {
                tracing::error!(%err, "invalid argon2 parameters");
                Error::internal()
            })?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

/// Accepts an imported password hash if it is an argon2 PHC string Rekey can verify.
pub fn check_phc(phc: &str) -> Result<String, Error> {
    match PasswordHash::new(phc) {
        Ok(parsed) if parsed.algorithm.as_str().starts_with("argon2") => Ok(phc.to_owned()),
        _ => Err(Error::invalid(
            "REKEY-PwHsh",
            "hashedPassword must be an argon2 PHC string ($argon2id$v=19$…)",
        )),
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
        let mut salt = [0u8; 16];
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

    /// Checks a password against a stored PHC string (its own parameters apply).
    pub async fn verify(&self, password: SecretString, phc: String) -> Result<bool, Error> {
        self.run(move |argon2| {
            let Ok(parsed) = PasswordHash::new(&phc) else {
                tracing::error!("stored password hash is not a PHC string");
                return false;
            };
            argon2
                .verify_password(password.expose_secret().as_bytes(), &parsed)
                .is_ok()
        })
        .await
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
