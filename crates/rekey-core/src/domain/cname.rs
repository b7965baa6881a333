//! A tenant's cname: the name the unauthenticated reset form (and F5) names a tenant by.

use std::fmt;

use crate::error::Error;

pub const MAX_CNAME_LEN: usize = 1024;

/// A tenant's cname: 1..1024 characters, not all digits (so it never clashes with an id), no
/// whitespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cname(String);

/// The checks a cname *to look up* gets (SPEC §4: F5 `no_auth` validates only presence and
/// length). Deliberately looser than [`Cname::parse`]: an all-digit or spaced cname names no
/// tenant, and the unauthenticated flow must answer it exactly as any other unknown tenant
/// rather than with a 400 that a tenant's cname could never earn.
pub fn check_lookup(raw: &str) -> Result<(), Error> {
    if raw.is_empty() {
        return Err(Error::invalid("REKEY-CnReq", "cname is required"));
    }
    if raw.chars().count() > MAX_CNAME_LEN {
        return Err(Error::invalid(
            "REKEY-CnLen",
            "cname is too long: at most 1024 characters",
        ));
    }
    Ok(())
}

impl Cname {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        check_lookup(raw)?;
        if raw.chars().all(|c| c.is_ascii_digit()) {
            return Err(Error::invalid("REKEY-CnDig", "cname may not be all digits"));
        }
        if raw.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(Error::invalid(
                "REKEY-CnSpc",
                "cname may not contain whitespace",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    /// A cname read back from where only [`Self::parse`]d ones are written (the store), kept
    /// as it is: not checked again.
    pub fn from_trusted(raw: String) -> Self {
        Self(raw)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Cname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A cname from an organization name: lower case, runs of other characters become `-`.
pub fn cname_from_name(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() || c == '.' {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_matches('-').to_owned();
    if slug.is_empty() || slug.chars().all(|c| c.is_ascii_digit()) {
        format!("org-{slug}").trim_end_matches('-').to_owned()
    } else {
        slug
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cname_rules() {
        assert!(Cname::parse("example-corp").is_ok());
        assert_eq!(Cname::parse("12345").unwrap_err().id, "REKEY-CnDig");
        assert!(Cname::parse("").is_err());
        assert!(Cname::parse("a b").is_err());
    }

    #[test]
    fn cnames_from_names() {
        assert_eq!(cname_from_name("Example Corp"), "example-corp");
        assert_eq!(cname_from_name("  ACME, Inc.  "), "acme-inc.");
        assert_eq!(cname_from_name("2024"), "org-2024");
        assert_eq!(cname_from_name("!!!"), "org");
    }
}
