//! Randomness is a parameter of every flow that draws ids, codes, salts or nonces, so tests can
//! replay a seeded stream.

use std::sync::Mutex;

/// Source of cryptographically secure random bytes.
pub trait Random: Send + Sync + 'static {
    fn fill(&self, buf: &mut [u8]);
}

/// The operating system's CSPRNG.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        rand::rngs::OsRng.fill_bytes(buf);
    }
}

/// A deterministic byte stream for tests (a seeded ChaCha generator).
#[derive(Debug)]
pub struct SeededRandom(Mutex<rand::rngs::StdRng>);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        use rand::SeedableRng;
        Self(Mutex::new(rand::rngs::StdRng::seed_from_u64(seed)))
    }
}

impl Random for SeededRandom {
    fn fill(&self, buf: &mut [u8]) {
        use rand::RngCore;
        match self.0.lock() {
            Ok(mut rng) => rng.fill_bytes(buf),
            Err(poisoned) => poisoned.into_inner().fill_bytes(buf),
        }
    }
}
