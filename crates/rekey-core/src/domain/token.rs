//! API tokens and the principal a token speaks for. Only a token's SHA-256 is ever stored.

use chrono::{DateTime, Duration, Utc};
use sha2::{Digest, Sha256};

use crate::domain::ids::{TenantId, TokenId, UserId};
use crate::error::Error;

/// Who a token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Instance-wide (= ZITADEL IAM_OWNER).
    System,
    /// Admin of one tenant (= ORG_OWNER, = F5 tenant admin).
    TenantAdmin(TenantId),
    /// A user acting on themself.
    User {
        tenant_id: TenantId,
        user_id: UserId,
    },
}

impl Role {
    pub fn name(&self) -> &'static str {
        match self {
            Role::System => "system",
            Role::TenantAdmin(_) => "tenant_admin",
            Role::User { .. } => "user",
        }
    }
}

/// An API token as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: TokenId,
    pub hash: [u8; 32],
    pub role: Role,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// From then on the token authenticates as unknown, like a revoked one. `None`: never.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the token last authenticated a request, recorded at most once a minute
    /// ([`LAST_USE_PRECISION`]).
    pub last_used_at: Option<DateTime<Utc>>,
}

/// How stale a token's recorded last use may be: a use is written only when the recorded one
/// is older than this, so a busy token costs one write a minute, not one per request.
pub const LAST_USE_PRECISION: Duration = Duration::seconds(60);

/// Whether a token authenticates at `now`: neither revoked nor expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenStatus {
    Active,
    Revoked,
    Expired,
}

impl TokenStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenStatus::Active => "active",
            TokenStatus::Revoked => "revoked",
            TokenStatus::Expired => "expired",
        }
    }
}

impl ApiToken {
    /// Revoked wins over expired (it is the operator's deliberate act).
    pub fn status(&self, now: DateTime<Utc>) -> TokenStatus {
        if self.revoked_at.is_some() {
            TokenStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            TokenStatus::Expired
        } else {
            TokenStatus::Active
        }
    }

    /// Whether the recorded last use is missing or more than [`LAST_USE_PRECISION`] before
    /// `now` (the store's conditional write uses the same bound).
    pub fn last_use_is_stale(&self, now: DateTime<Utc>) -> bool {
        self.last_used_at
            .is_none_or(|at| at < now - LAST_USE_PRECISION)
    }
}

/// The longest lifetime a token can be given: a hundred years (beyond that, omit the expiry).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::days(36_500);

/// A token's lifetime as an operator writes it: one or more `<number><unit>` parts, the units
/// `w`, `d`, `h`, `m` and `s` (`90d`, `12h`, `30m`, `1h30m`). Positive, at most
/// [`MAX_TOKEN_LIFETIME`].
pub fn parse_lifetime(text: &str) -> Result<Duration, Error> {
    let bad = || {
        Error::invalid(
            "REKEY-TkLif",
            "Invalid token lifetime: use a number and a unit (w, d, h, m, s), e.g. 90d, 12h, 30m",
        )
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(bad());
    }
    let max_secs = MAX_TOKEN_LIFETIME.num_seconds();
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            'w' => 7 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(bad()),
        };
        if digits.is_empty() || digits.len() > 12 {
            return Err(bad());
        }
        let n: i64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .filter(|&t| t <= max_secs)
            .ok_or_else(|| {
                Error::invalid(
                    "REKEY-TkLif",
                    "Token lifetime too long: at most 36500d (omit it for no expiry)",
                )
            })?;
    }
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::seconds(total))
}

/// The caller of a request, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: TokenId,
    pub role: Role,
}

impl Principal {
    /// How the principal appears in the audit trail.
    pub fn actor(&self) -> String {
        format!("token:{}", self.token_id)
    }
}

/// SHA-256 of an API token, the only form in which tokens are stored.
pub fn token_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_are_numbers_with_units() {
        for (text, secs) in [
            ("90d", 90 * 86_400),
            ("12h", 12 * 3_600),
            ("30m", 1_800),
            ("45s", 45),
            ("2w", 14 * 86_400),
            ("1h30m", 5_400),
            (" 1d ", 86_400),
            ("36500d", 36_500 * 86_400),
        ] {
            assert_eq!(
                parse_lifetime(text).unwrap(),
                Duration::seconds(secs),
                "{text}"
            );
        }
        for bad in [
            "",
            "90",
            "d",
            "0d",
            "0h0m",
            "-1d",
            "1.5h",
            "1y",
            "1 d",
            "1D",
            "36501d",
            "999999999999999d",
            "1h30",
        ] {
            assert!(parse_lifetime(bad).is_err(), "{bad:?}");
        }
    }

    fn token() -> ApiToken {
        let at = DateTime::<Utc>::UNIX_EPOCH;
        ApiToken {
            id: TokenId::from_trusted("k1".to_owned()),
            hash: [0; 32],
            role: Role::System,
            created_at: at,
            revoked_at: None,
            expires_at: None,
            last_used_at: None,
        }
    }

    #[test]
    fn status_and_last_use() {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let mut tk = token();
        assert_eq!(tk.status(t0), TokenStatus::Active);
        assert!(tk.last_use_is_stale(t0));
        tk.expires_at = Some(t0 + Duration::hours(1));
        assert_eq!(tk.status(t0 + Duration::minutes(59)), TokenStatus::Active);
        assert_eq!(tk.status(t0 + Duration::hours(1)), TokenStatus::Expired);
        tk.revoked_at = Some(t0);
        assert_eq!(tk.status(t0 + Duration::hours(2)), TokenStatus::Revoked);
        tk.last_used_at = Some(t0);
        assert!(!tk.last_use_is_stale(t0 + Duration::seconds(60)));
        assert!(tk.last_use_is_stale(t0 + Duration::seconds(60) + Duration::milliseconds(1)));
    }
}
