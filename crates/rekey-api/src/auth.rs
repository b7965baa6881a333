//! Credentials and client address from request headers.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use http::HeaderMap;
use ipnet::IpNet;
use rekey_core::flows::Caller;
use rekey_core::ids::TenantId;
use rekey_core::model::Principal;
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
/// address in `X-Forwarded-For` that is not itself a trusted proxy.
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
    let forwarded = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|s| s.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    Some(
        forwarded
            .into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
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
}
