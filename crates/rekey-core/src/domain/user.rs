//! A human user, its states, and how the setup API asks for a page of users.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::email_address::EmailAddress;
use crate::domain::ids::{TenantId, UserId};
use crate::domain::phone_number::PhoneNumber;
// The search's vocabulary is the store's (it evaluates searches).
use crate::ports::store::UserFilter;

text_enum! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum UserState ("user state") {
        /// Onboarded, no password yet.
        Initial => "initial",
        Active => "active",
        Inactive => "inactive",
        Locked => "locked",
        Deleted => "deleted",
    }
}

/// A human user.
#[derive(Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub tenant_id: TenantId,
    pub username: String,
    /// As given; compared case-insensitively (the store keeps a lower-cased copy).
    pub email: EmailAddress,
    pub email_verified: bool,
    pub phone: Option<PhoneNumber>,
    pub phone_verified: bool,
    pub first_name: String,
    pub last_name: String,
    pub display_name: String,
    pub preferred_language: String,
    pub state: UserState,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    pub password_change_required: bool,
    pub sequence: u64,
    pub creation_date: DateTime<Utc>,
    pub change_date: DateTime<Utc>,
}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("tenant_id", &self.tenant_id)
            .field("state", &self.state)
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

/// The email a deleted user is left with once their personal data is erased (SPEC §12): unique
/// per user, so the tenant's unique email index holds and the address can be given to a new
/// user; and no address at all (no `@`), so [`EmailAddress::parse`] refuses it and no real
/// address can ever collide with it.
pub fn erased_email(user: &UserId) -> EmailAddress {
    EmailAddress::from_trusted(format!("erased:{user}"))
}

/// Most users one list call returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

#[derive(Debug, Clone, Default)]
pub struct UserQuery {
    pub offset: u64,
    /// 0 means the maximum ([`MAX_LIST_LIMIT`]).
    pub limit: u32,
    /// Oldest first when true; newest first by default (as ZITADEL).
    pub asc: bool,
    pub filters: Vec<UserFilter>,
}

/// A state change of the setup API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Deactivate,
    Reactivate,
    Lock,
    Unlock,
    Delete,
}

#[cfg(test)]
mod tests {
    // `TextMatch` is part of a user search's vocabulary; it is defined beside the store port
    // that evaluates searches, and tested here so the port's file holds only the port.
    use crate::ports::store::TextMatch;

    use super::*;

    #[test]
    fn text_matching() {
        assert!(TextMatch::EqualsIgnoreCase.matches("Ada@Example.com", "ada@example.COM"));
        assert!(!TextMatch::Equals.matches("Ada", "ada"));
        assert!(TextMatch::StartsWith.matches("minnie-mouse", "minnie"));
        assert!(TextMatch::ContainsIgnoreCase.matches("Minnie-Mouse", "MOUSE"));
        assert!(TextMatch::EndsWith.matches("a@b.com", ".com"));
    }

    #[test]
    fn an_erased_email_is_unique_and_no_address() {
        let a = erased_email(&UserId::from_trusted("123".to_owned()));
        let b = erased_email(&UserId::from_trusted("124".to_owned()));
        assert_ne!(a.as_str().to_lowercase(), b.as_str().to_lowercase());
        assert!(EmailAddress::parse(a.as_str()).is_err());
    }
}
