//! An email address, parsed once: holding one means it is valid.

use std::fmt;

use crate::error::Error;

pub const MAX_EMAIL_LEN: usize = 1024;

/// An email address matching the seed pages' rule
/// `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$`, at most 1024 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bad = || Error::invalid("REKEY-Email", "Email is invalid");
        if raw.is_empty() {
            return Err(Error::invalid("REKEY-EmReq", "Email is required"));
        }
        if raw.chars().count() > MAX_EMAIL_LEN {
            return Err(Error::invalid(
                "REKEY-EmLen",
                "Email is too long: at most 1024 characters",
            ));
        }
        let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
        let local_ok = !local.is_empty()
            && local
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._%+-".contains(c));
        let (host, tld) = domain.rsplit_once('.').ok_or_else(bad)?;
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        let tld_ok = tld.len() >= 2 && tld.chars().all(|c| c.is_ascii_alphabetic());
        if local_ok && host_ok && tld_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(bad())
        }
    }

    /// An address read back from where only [`Self::parse`]d addresses are written (the
    /// store), kept byte for byte: not checked again, and never re-cased (the user's own case
    /// is what is shown and sent; comparisons ignore case).
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_follows_the_seed_pattern() {
        for ok in ["hello@example.com", "a.b+c%d_e-f@sub.example.co", "X@Y.ORG"] {
            assert!(EmailAddress::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "plain",
            "a@b",
            "a@b.c",
            "a@@b.com",
            "a b@c.com",
            "a@b.c0m",
            "@b.com",
            "a@.com",
            "ü@b.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad}");
        }
        // Valid addresses are kept as given: no trimming, no lower-casing.
        assert_eq!(
            EmailAddress::parse("Ada@Example.COM").unwrap().as_str(),
            "Ada@Example.COM"
        );
        let long = format!("{}@example.com", "a".repeat(1020));
        assert_eq!(EmailAddress::parse(&long).unwrap_err().id, "REKEY-EmLen");
    }
}
