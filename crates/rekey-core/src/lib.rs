//! Rekey's domain: tenants, users, reset codes, password and code policies, and the flows that
//! every wire face calls. No web framework, gRPC or database code lives here; those are
//! adapters behind the ports in [`store`] and [`clock`].

pub mod clock;
pub mod code;
pub mod crypto;
pub mod error;
pub mod flows;
pub mod hasher;
pub mod ids;
pub mod keys;
pub mod model;
pub mod outbox;
pub mod password;
pub mod retry;
pub mod setup;
pub mod store;
pub mod url_template;
pub mod validate;

pub use error::{Error, ErrorKind};
