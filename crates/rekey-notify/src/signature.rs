//! `X-Rekey-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "t.body")>` — the signature
//! of the SMS webhook and the event webhook (SPEC §12). Binding the time stops a receiver from
//! accepting a replayed body after its tolerance window.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header carrying the signature.
pub const HEADER: &str = "X-Rekey-Signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], unix_secs: i64, body: &[u8]) -> HmacSha256 {
    // HMAC takes keys of every length (longer ones are hashed first), so this cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(unix_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The header value for `body` sent at `unix_secs`.
pub fn sign(secret: &[u8], unix_secs: i64, body: &[u8]) -> String {
    let tag = mac(secret, unix_secs, body).finalize().into_bytes();
    format!("t={unix_secs},v1={}", hex::encode(tag))
}

/// Checks a header value as a receiver would: well-formed, signed with `secret` over `body`
/// (constant-time), and made within `tolerance_secs` of `now_secs`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => t = value.parse::<i64>().ok(),
            Some(("v1", value)) => v1 = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    if (now_secs - t).abs() > tolerance_secs {
        return false;
    }
    mac(secret, t, body).verify_slice(&v1).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_known_answer() {
        let header = sign(b"secret", 1_700_000_000, b"{\"a\":1}");
        let (t, v1) = header.split_once(',').unwrap_or_default();
        assert_eq!(t, "t=1700000000");
        let v1 = v1.strip_prefix("v1=").unwrap_or_default();
        assert_eq!(v1.len(), 64);
        assert!(v1
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_uppercase()));
        // HMAC-SHA256("secret", "1700000000.{\"a\":1}"), computed independently with
        // `printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret`.
        assert_eq!(
            v1,
            "49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
    }

    #[test]
    fn verify_accepts_only_the_same_body_secret_and_a_fresh_time() {
        let body = b"{\"x\":\"y\"}";
        let header = sign(b"k", 1000, body);
        assert!(verify(b"k", &header, body, 1000, 300));
        assert!(verify(b"k", &header, body, 1299, 300));
        assert!(!verify(b"k", &header, body, 1301, 300), "too old");
        assert!(!verify(b"other", &header, body, 1000, 300));
        assert!(!verify(b"k", &header, b"{\"x\":\"z\"}", 1000, 300));
        let moved = header.replace("t=1000", "t=1001");
        assert!(!verify(b"k", &moved, body, 1000, 300), "time is signed");
        assert!(!verify(b"k", "v1=00", body, 1000, 300));
        assert!(!verify(b"k", "garbage", body, 1000, 300));
    }
}
