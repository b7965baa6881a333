//! CSRF protection for the pages' forms: a double-submit token (cookie + hidden field, equal,
//! compared in constant time) plus the browser's own signals. `Referrer-Policy: no-referrer`
//! makes browsers send `Origin: null` on form posts, so `null` (and no `Origin` at all) must
//! pass; any other origin must be the public URL's.

use base64::Engine;
use http::HeaderMap;
use rekey_core::ports::{OsRandom, Random};
use subtle::ConstantTimeEq;

pub const COOKIE: &str = "rekey_csrf";
/// 32 random bytes, base64url without padding.
const TOKEN_LEN: usize = 43;

/// The page's public origin (`scheme://host[:port]`) and whether cookies must be `Secure`.
#[derive(Debug, Clone)]
pub struct Origin {
    pub origin: Option<String>,
    pub secure: bool,
}

impl Origin {
    pub fn of_public_url(public_url: &str) -> Self {
        match url::Url::parse(public_url) {
            Ok(url) => Origin {
                origin: Some(url.origin().ascii_serialization()).filter(|o| o != "null"),
                secure: url.scheme() == "https",
            },
            Err(_) => Origin {
                origin: None,
                secure: false,
            },
        }
    }
}

fn well_formed(token: &str) -> bool {
    token.len() == TOKEN_LEN
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The token of the request's `rekey_csrf` cookie, when well formed.
pub fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|t| well_formed(t))
}

/// The browser's token, or a fresh one (kept across tabs: a second form does not break the
/// first).
pub fn token_for(headers: &HeaderMap) -> String {
    cookie_token(headers).unwrap_or_else(|| {
        let mut bytes = [0u8; 32];
        OsRandom.fill(&mut bytes);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    })
}

/// The `Set-Cookie` value carrying `token`.
pub fn set_cookie(token: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/ui; HttpOnly; SameSite=Strict{secure}")
}

/// Whether a form post may proceed: not cross-site by `Sec-Fetch-Site`, an `Origin` that is
/// absent, `null` or ours, and a field token equal to the cookie's.
pub fn check(headers: &HeaderMap, field: Option<&str>, origin: &Origin) -> bool {
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if fetch_site.eq_ignore_ascii_case("cross-site") {
        return false;
    }
    if let Some(value) = headers.get(http::header::ORIGIN) {
        let value = value.to_str().unwrap_or("").trim();
        let ours = origin
            .origin
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(value));
        if value != "null" && !ours {
            return false;
        }
    }
    let (Some(cookie), Some(field)) = (cookie_token(headers), field) else {
        return false;
    };
    well_formed(field) && bool::from(cookie.as_bytes().ct_eq(field.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn double_submit_and_origin() {
        let ours = Origin::of_public_url("https://rekey.example.com:443/base");
        assert_eq!(ours.origin.as_deref(), Some("https://rekey.example.com"));
        assert!(ours.secure);
        let token = "A".repeat(43);
        let cookie = format!("other=1; {COOKIE}={token}");
        let ok = |extra: &[(&'static str, &str)]| {
            let mut pairs = vec![("cookie", cookie.as_str())];
            pairs.extend_from_slice(extra);
            check(&headers(&pairs), Some(&token), &ours)
        };
        assert!(ok(&[]));
        assert!(ok(&[("origin", "null")]));
        assert!(ok(&[("origin", "https://rekey.example.com")]));
        assert!(ok(&[("sec-fetch-site", "same-origin")]));
        assert!(!ok(&[("origin", "https://evil.example")]));
        assert!(!ok(&[("sec-fetch-site", "cross-site")]));
        assert!(!check(&headers(&[]), Some(&token), &ours));
        assert!(!check(&headers(&[("cookie", &cookie)]), None, &ours));
        let other = "B".repeat(43);
        assert!(!check(
            &headers(&[("cookie", &cookie)]),
            Some(&other),
            &ours
        ));
    }

    #[test]
    fn fresh_tokens_are_random_and_reused_from_the_cookie() {
        let a = token_for(&HeaderMap::new());
        let b = token_for(&HeaderMap::new());
        assert_ne!(a, b);
        assert!(well_formed(&a));
        let h = headers(&[("cookie", &format!("{COOKIE}={a}"))]);
        assert_eq!(token_for(&h), a);
    }
}
