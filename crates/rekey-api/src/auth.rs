//! Credentials and client address from request headers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::HeaderMap;
use ipnet::IpNet;
use rekey_core::domain::Principal;
use rekey_core::domain::TenantId;
use rekey_core::flows::Caller;
use rekey_core::Error;
use secrecy::SecretString;

use crate::AppState;

/// The token of `Authorization: Bearer <t>` (ZITADEL) or `Authorization: APIToken <t>` (F5).
/// `None` when absent or of another scheme.
pub fn bearer(headers: &HeaderMap) -> Option<SecretString> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("apitoken");
    (known && !token.is_empty()).then(|| SecretString::from(token.to_owned()))
}

/// Authenticates the request; missing or unknown token → UNAUTHENTICATED.
pub async fn principal(state: &AppState, headers: &HeaderMap) -> Result<Principal, Error> {
    let token = bearer(headers).ok_or_else(Error::unauthenticated)?;
    state.rekey.authenticate(&token).await
}

/// The `x-zitadel-orgid` header: absent or empty → `None`.
pub fn org_header(headers: &HeaderMap) -> Result<Option<TenantId>, Error> {
    match headers.get("x-zitadel-orgid") {
        None => Ok(None),
        Some(value) => {
            let value = value
                .to_str()
                .map_err(|_| Error::invalid("REKEY-OrgHd", "x-zitadel-orgid is not valid text"))?
                .trim();
            if value.is_empty() {
                Ok(None)
            } else {
                TenantId::parse(value).map(Some)
            }
        }
    }
}

/// The client's address: the peer, or — when the peer is a trusted proxy — the right-most
/// address in `X-Forwarded-For` that is not itself a trusted proxy. The walk goes from the
/// right (the hops our proxies appended) and stops at the first hop it cannot read: everything
/// left of it is the client's own say, so then the peer is all that is known.
pub fn client_ip(
    trusted: &[IpNet],
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
) -> Option<IpAddr> {
    let peer = peer?.0.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let values: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .map(|v| v.to_str().unwrap_or(""))
        .collect();
    for hop in values.iter().rev().flat_map(|v| v.rsplit(',')) {
        match parse_hop(hop) {
            Some(ip) if is_trusted(&ip) => continue,
            Some(ip) => return Some(ip),
            None => return Some(peer),
        }
    }
    Some(peer)
}

/// One `X-Forwarded-For` hop: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]` or
/// `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(socket) = hop.parse::<SocketAddr>() {
        return Some(socket.ip());
    }
    hop.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .and_then(|h| h.parse::<IpAddr>().ok())
}

/// A caller without a principal (yet), with its address.
pub fn anonymous(
    state: &AppState,
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
) -> Caller {
    Caller {
        principal: None,
        ip: client_ip(&state.settings.trusted_proxies, peer, headers).map(|ip| ip.to_string()),
        request_id: crate::request_id::of(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn accepts_bearer_and_apitoken_schemes() {
        let mut h = HeaderMap::new();
        h.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&h).unwrap().expose_secret(), "abc");
        h.insert("authorization", "APIToken xyz".parse().unwrap());
        assert_eq!(bearer(&h).unwrap().expose_secret(), "xyz");
        h.insert("authorization", "Basic xyz".parse().unwrap());
        assert!(bearer(&h).is_none());
        h.insert("authorization", "Bearer ".parse().unwrap());
        assert!(bearer(&h).is_none());
    }

    #[test]
    fn forwarded_for_only_from_trusted_proxies() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.2.3.4, 10.0.0.7".parse().unwrap());
        let proxy = ConnectInfo("10.0.0.1:5000".parse::<SocketAddr>().unwrap());
        let direct = ConnectInfo("8.8.8.8:5000".parse::<SocketAddr>().unwrap());
        assert_eq!(
            client_ip(&trusted, Some(&proxy), &h),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(
            client_ip(&trusted, Some(&direct), &h),
            Some("8.8.8.8".parse().unwrap())
        );
    }

    #[test]
    fn forwarded_hops_with_ports_and_brackets() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = ConnectInfo("10.0.0.1:5000".parse::<SocketAddr>().unwrap());
        let ip = |xff: &[&str]| {
            let mut h = HeaderMap::new();
            for v in xff {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            client_ip(&trusted, Some(&proxy), &h).unwrap().to_string()
        };
        assert_eq!(ip(&["1.2.3.4:5678, 10.0.0.7"]), "1.2.3.4");
        assert_eq!(ip(&["[2001:db8::1]:443"]), "2001:db8::1");
        assert_eq!(ip(&["[2001:db8::2]"]), "2001:db8::2");
        assert_eq!(ip(&["2001:db8::3, 10.0.0.9:80"]), "2001:db8::3");
        // Several header lines: the last one is the nearest proxy's.
        assert_eq!(ip(&["6.6.6.6", "7.7.7.7, 10.1.1.1"]), "7.7.7.7");
        assert_eq!(ip(&["6.6.6.6", "10.1.1.1"]), "6.6.6.6");
    }

    #[test]
    fn an_unreadable_hop_ends_the_walk_at_the_peer() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy = ConnectInfo("10.0.0.1:5000".parse::<SocketAddr>().unwrap());
        let mut h = HeaderMap::new();
        // Left of the unreadable hop is whatever the client chose to send.
        h.insert(
            "x-forwarded-for",
            "9.9.9.9, unknown, 10.0.0.7".parse().unwrap(),
        );
        assert_eq!(
            client_ip(&trusted, Some(&proxy), &h),
            Some("10.0.0.1".parse().unwrap())
        );
        h.insert("x-forwarded-for", "9.9.9.9, 1.2.3.4:99999".parse().unwrap());
        assert_eq!(
            client_ip(&trusted, Some(&proxy), &h),
            Some("10.0.0.1".parse().unwrap())
        );
    }
}
