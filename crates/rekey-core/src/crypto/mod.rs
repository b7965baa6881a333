//! Key rings, the code MAC, outbox sealing and password hashing.

pub mod code_mac;
pub mod hash_bounds;
pub mod key_file;
pub mod keys;
pub mod password_hasher;
pub mod sealer;

pub use code_mac::CodeMac;
pub use hash_bounds::{BoundedHash, HashBounds, HashRefusal};
pub use key_file::{KeyFile, KeyInfo};
pub use keys::{KeyRing, KeyRingError, LiveRing};
pub use password_hasher::{default_threads, HashParams, HashPoolStats, PasswordHasher};
pub use sealer::Sealer;
