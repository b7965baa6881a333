//! rekey-store
