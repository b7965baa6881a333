//! rekey-api
