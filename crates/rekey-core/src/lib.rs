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

// Old paths, kept while the other crates move to the new ones (issue 9).
#[doc(hidden)]
pub mod clock {
    pub use crate::ports::clock::*;
    pub use crate::ports::random::*;
}
#[doc(hidden)]
pub mod code {
    pub use crate::crypto::code_mac::*;
    pub use crate::domain::reset_code::{
        normalize, CodePolicy, MAX_CODE_INPUT, REKEY_ALPHABET, ZITADEL_ALPHABET,
    };
}
#[doc(hidden)]
pub mod hasher {
    pub use crate::crypto::hash_bounds::*;
    pub use crate::crypto::password_hasher::*;
}
#[doc(hidden)]
pub mod ids {
    pub use crate::domain::ids::*;
}
#[doc(hidden)]
pub mod keys {
    pub use crate::crypto::keys::*;
}
#[doc(hidden)]
pub mod model {
    pub use crate::domain::event::*;
    pub use crate::domain::outbox::{Channel, MessageKind, OutboxMessage, OutboxState};
    pub use crate::domain::reset_code::{CodeKind, ResetCodeRecord};
    pub use crate::domain::tenant::{CodeAlphabet, Tenant, TenantSettings};
    pub use crate::domain::token::{ApiToken, Principal, Role};
    pub use crate::domain::user::{User, UserState};
}
#[doc(hidden)]
pub mod outbox {
    pub use crate::domain::outbox::MessagePayload;
}
#[doc(hidden)]
pub mod password {
    pub use crate::policy::password::*;
}
#[doc(hidden)]
pub mod retry {
    pub use crate::flows::Retried;
}
#[doc(hidden)]
pub mod setup {
    pub use crate::domain::cname::cname_from_name;
    pub use crate::domain::tenant::OrgRef;
    pub use crate::domain::user::{Transition, UserQuery, MAX_LIST_LIMIT};
    pub use crate::flows::NewAdmin;
    pub use crate::ports::store::{TextMatch, UserFilter, UserPage};
}
#[doc(hidden)]
pub mod store {
    pub use crate::ports::store::*;
}
#[doc(hidden)]
pub mod url_template {
    pub use crate::policy::url_template::*;
}
#[doc(hidden)]
pub mod validate {
    pub use crate::domain::cname::{Cname, MAX_CNAME_LEN};
    pub use crate::domain::email_address::{EmailAddress, MAX_EMAIL_LEN};
    pub use crate::domain::phone_number::PhoneNumber;
}
