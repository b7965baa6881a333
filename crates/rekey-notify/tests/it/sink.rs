//! The real SMTP server the delivery tests talk to lives in `rekey-testkit` (shared with the
//! binary's black-box tests).

pub use rekey_testkit::smtp::*;
