//! The parsed input types of `rekey_core::domain`: `EmailAddress`, `PhoneNumber`, `Cname`.
//!
//! Invariants: each accepts exactly what an independent reading of its rule accepts; whatever
//! parses keeps its input unchanged and parses again to itself; refusals carry the documented
//! error ids.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rekey_core::domain::{Cname, EmailAddress, PhoneNumber, MAX_CNAME_LEN, MAX_EMAIL_LEN};
use rekey_core::ErrorKind;

/// `^[a-zA-Z0-9._%+-]+@[a-zA-Z0-9.-]+\.[a-zA-Z]{2,}$`, at most 1024 characters, written
/// differently from the product: the local part's set excludes `@`, so there is exactly one.
fn email_rule(raw: &str) -> bool {
    let local_char = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let host_char = |b: u8| b.is_ascii_alphanumeric() || b == b'.' || b == b'-';
    let bytes = raw.as_bytes();
    if raw.chars().count() > MAX_EMAIL_LEN || bytes.iter().filter(|&&b| b == b'@').count() != 1 {
        return false;
    }
    let at = bytes.iter().position(|&b| b == b'@').unwrap_or(0);
    let (local, domain) = (&bytes[..at], &bytes[at + 1..]);
    // The TLD is the run of letters at the end; the dot before it ends the host.
    let tld = domain
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    let Some(dot) = domain.len().checked_sub(tld + 1) else {
        return false;
    };
    let host = &domain[..dot];
    !local.is_empty()
        && local.iter().all(|&b| local_char(b))
        && domain[dot] == b'.'
        && tld >= 2
        && !host.is_empty()
        && host.iter().all(|&b| host_char(b))
}

fn phone_rule(raw: &str) -> bool {
    let b = raw.as_bytes();
    (9..=16).contains(&b.len())
        && b[0] == b'+'
        && (b'1'..=b'9').contains(&b[1])
        && b[2..].iter().all(u8::is_ascii_digit)
}

fn cname_rule(raw: &str) -> bool {
    let n = raw.chars().count();
    (1..=MAX_CNAME_LEN).contains(&n)
        && !raw.bytes().all(|b| b.is_ascii_digit())
        && !raw.chars().any(|c| c.is_whitespace() || c.is_control())
}

fuzz_target!(|raw: &str| {
    match EmailAddress::parse(raw) {
        Ok(email) => {
            assert!(email_rule(raw), "accepted {raw:?}");
            assert_eq!(email.as_str(), raw);
            assert_eq!(email.to_string(), raw);
            assert_eq!(EmailAddress::parse(email.as_str()).ok(), Some(email));
        }
        Err(err) => {
            assert!(!email_rule(raw), "refused {raw:?}");
            assert_eq!(err.kind, ErrorKind::InvalidArgument);
            assert!(["REKEY-Email", "REKEY-EmReq", "REKEY-EmLen"].contains(&err.id));
        }
    }
    match PhoneNumber::parse(raw) {
        Ok(phone) => {
            assert!(phone_rule(raw), "accepted {raw:?}");
            assert_eq!(phone.as_str(), raw);
            assert_eq!(PhoneNumber::parse(phone.as_str()).ok(), Some(phone));
        }
        Err(err) => {
            assert!(!phone_rule(raw), "refused {raw:?}");
            assert_eq!(err.id, "REKEY-Phone");
        }
    }
    match Cname::parse(raw) {
        Ok(cname) => {
            assert!(cname_rule(raw), "accepted {raw:?}");
            assert_eq!(cname.as_str(), raw);
            assert_eq!(Cname::parse(cname.as_str()).ok(), Some(cname));
        }
        Err(err) => {
            assert!(!cname_rule(raw), "refused {raw:?}");
            assert!(["REKEY-CnReq", "REKEY-CnLen", "REKEY-CnDig", "REKEY-CnSpc"].contains(&err.id));
        }
    }
});
