//! What the flows need from outside, as traits: time, randomness and storage. Adapters live
//! elsewhere (`rekey-store`) or here when they are tiny (the system clock, the OS RNG).

pub mod clock;
pub mod random;
pub mod store;

pub use clock::{Clock, ManualClock, SystemClock};
pub use random::{OsRandom, Random, SeededRandom};
pub use store::{Store, StoreError};
