//! Rekey's domain: tenants, users, reset codes, password and code policies, and the flows that
//! every wire face calls. No web framework, gRPC or database code lives here; those are
//! adapters behind the ports in [`ports`].
//!
//! Where to start reading: [`Rekey`] (in [`flows`]) is the service every face calls, with a
//! [`Caller`]; every failure is an [`Error`] of one [`ErrorKind`].
//!
//! - [`domain`]: records and parsed values (tenants, users, tokens, codes, outbox, events).
//! - [`policy`]: settings and their defaults, the password policy, link templates.
//! - [`crypto`]: key rings, the code MAC, outbox sealing, password hashing.
//! - [`ports`]: clock, randomness and the store, as traits.
//! - [`flows`]: one file per use case.

pub mod crypto;
pub mod domain;
pub mod error;
pub mod flows;
pub mod policy;
pub mod ports;

pub use error::{Error, ErrorKind};
pub use flows::{Caller, Rekey};
