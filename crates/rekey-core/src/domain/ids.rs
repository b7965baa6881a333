//! Identifiers. On the wire an id is any string of 1..200 characters; one that names nothing is
//! "not found", never a format error. New ids are decimal strings of a time-ordered 63-bit number.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ports::{clock::Clock, random::Random};

pub const MAX_ID_LEN: usize = 200;

macro_rules! opaque_id {
    ($name:ident, $what:literal, $err:literal) => {
        #[doc = concat!("The id of a ", $what, ": 1..200 characters, otherwise opaque.")]
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: impl Into<String>) -> Result<Self, Error> {
                let raw = raw.into();
                let len = raw.chars().count();
                if len == 0 || len > MAX_ID_LEN {
                    return Err(Error::invalid(
                        $err,
                        concat!("Invalid ", $what, " id: must be 1 to 200 characters"),
                    ));
                }
                Ok(Self(raw))
            }

            /// Builds an id from a value that already passed [`Self::parse`] (e.g. read back
            /// from the store).
            pub fn from_trusted(raw: String) -> Self {
                Self(raw)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl NewId for $name {
            fn generate(clock: &dyn Clock, rng: &dyn Random) -> Self {
                Self(new_id(clock, rng))
            }
        }

        /// An id equals the string it was made from.
        impl PartialEq<str> for $name {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl PartialEq<&str> for $name {
            fn eq(&self, other: &&str) -> bool {
                self.0 == *other
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

opaque_id!(TenantId, "tenant", "REKEY-IdTn1");
opaque_id!(UserId, "user", "REKEY-IdUs1");
opaque_id!(CodeId, "code", "REKEY-IdCo1");
opaque_id!(TokenId, "token", "REKEY-IdTk1");
opaque_id!(MessageId, "message", "REKEY-IdMs1");

/// An id type whose new values are made by [`new_id`] (every id type above).
pub trait NewId: Sized {
    /// A new id, time-ordered as [`new_id`] makes it.
    fn generate(clock: &dyn Clock, rng: &dyn Random) -> Self;
}

/// A new time-ordered id: milliseconds since the Unix epoch in the high bits, 22 random bits
/// below, masked to 63 bits so it fits a signed 64-bit column and prints like ZITADEL's ids.
pub fn new_id(clock: &dyn Clock, rng: &dyn Random) -> String {
    let millis = u64::try_from(clock.now().timestamp_millis()).unwrap_or(0);
    let mut bytes = [0u8; 4];
    rng.fill(&mut bytes);
    let random = u64::from(u32::from_le_bytes(bytes)) & 0x3F_FFFF;
    (((millis << 22) | random) & 0x7FFF_FFFF_FFFF_FFFF).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::{clock::ManualClock, random::SeededRandom};
    use chrono::{Duration, TimeZone, Utc};

    #[test]
    fn ids_are_time_ordered_decimal_strings() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let rng = SeededRandom::new(7);
        let a = new_id(&clock, &rng);
        clock.advance(Duration::milliseconds(1));
        let b = new_id(&clock, &rng);
        assert!(a.chars().all(|c| c.is_ascii_digit()));
        assert!(a.parse::<u64>().unwrap() < b.parse::<u64>().unwrap());
        assert!(a.parse::<u64>().unwrap() <= i64::MAX as u64);
    }

    #[test]
    fn id_length_bounds() {
        assert!(UserId::parse("").is_err());
        assert!(UserId::parse("x".repeat(201)).is_err());
        assert!(UserId::parse("x".repeat(200)).is_ok());
        assert!(UserId::parse("anything goes/ü").is_ok());
    }

    #[test]
    fn every_id_type_is_made_and_checked_alike() {
        let clock = ManualClock::new(Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap());
        let rng = SeededRandom::new(8);
        let code = CodeId::generate(&clock, &rng);
        assert!(code.as_str().chars().all(|c| c.is_ascii_digit()));
        assert_eq!(CodeId::parse(code.as_str()).unwrap(), code);
        assert_eq!(MessageId::parse("m1").unwrap(), "m1");
        assert_eq!(TokenId::from_trusted("tk".to_owned()).to_string(), "tk");
        for bad in [String::new(), "x".repeat(201)] {
            assert_eq!(CodeId::parse(bad.clone()).unwrap_err().id, "REKEY-IdCo1");
            assert_eq!(TokenId::parse(bad.clone()).unwrap_err().id, "REKEY-IdTk1");
            assert_eq!(MessageId::parse(bad).unwrap_err().id, "REKEY-IdMs1");
        }
        // Serialized as the bare string (event payloads, CLI JSON).
        assert_eq!(serde_json::to_string(&code).unwrap(), format!("\"{code}\""));
    }
}
