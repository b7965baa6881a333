//! Records and parsed values: what the flows work on and the store keeps. Holding one of the
//! parsed values ([`EmailAddress`], [`PhoneNumber`], [`Cname`], the ids) means it is valid.

/// Declares a fieldless enum whose variants are stored as fixed strings, with `as_str`,
/// `Display` and `FromStr` generated from one `Variant => "text"` list so the stored form of
/// each variant is written once. `$what` names the type in the parse error
/// (`unknown $what "…"`).
macro_rules! text_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident ($what:literal) {
            $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The stored (and wire) form.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!(concat!("unknown ", $what, " {:?}"), other)),
                }
            }
        }
    };
}

pub mod cname;
pub mod email_address;
pub mod event;
pub mod ids;
pub mod outbox;
pub mod phone_number;
pub mod reset_code;
pub mod tenant;
pub mod token;
pub mod user;
pub mod webhook_event;

pub use cname::{cname_from_name, Cname, MAX_CNAME_LEN};
pub use email_address::{EmailAddress, MAX_EMAIL_LEN};
pub use event::{Details, Event, NewEvent};
pub use ids::{new_id, CodeId, MessageId, NewId, TenantId, TokenId, UserId, MAX_ID_LEN};
pub use outbox::{Channel, MessageKind, MessagePayload, OutboxMessage, OutboxState};
pub use phone_number::PhoneNumber;
pub use reset_code::{CodeKind, CodePolicy, ResetCodeRecord};
pub use tenant::{CodeAlphabet, OrgRef, Tenant, TenantSettings};
pub use token::{
    parse_lifetime, token_hash, ApiToken, Principal, Role, TokenStatus, LAST_USE_PRECISION,
    MAX_TOKEN_LIFETIME,
};
pub use user::{erased_email, Transition, User, UserQuery, UserState, MAX_LIST_LIMIT};
pub use webhook_event::{EventPrincipal, EventType, WebhookEvent};

#[cfg(test)]
mod tests {
    use super::*;

    /// The serde form (payloads, settings) and the stored form must be the same text.
    fn same_forms<T>(values: &[T])
    where
        T: Copy + serde::Serialize + std::str::FromStr + PartialEq + std::fmt::Debug,
        T: std::fmt::Display,
    {
        for v in values {
            let text = v.to_string();
            assert_eq!(serde_json::to_value(v).unwrap(), serde_json::json!(text));
            assert_eq!(text.parse::<T>().ok(), Some(*v));
        }
    }

    #[test]
    fn stored_and_serde_forms_agree() {
        same_forms(&[Channel::Email, Channel::Sms, Channel::Webhook]);
        same_forms(&[
            MessageKind::PasswordReset,
            MessageKind::PasswordInit,
            MessageKind::PasswordChanged,
            MessageKind::Event,
        ]);
        same_forms(&[OutboxState::Pending, OutboxState::Sent, OutboxState::Failed]);
        same_forms(&[CodeKind::Reset, CodeKind::Init]);
        same_forms(&[
            UserState::Initial,
            UserState::Active,
            UserState::Inactive,
            UserState::Locked,
            UserState::Deleted,
        ]);
    }

    #[test]
    fn unknown_text_keeps_its_error() {
        assert_eq!(
            "paused".parse::<UserState>(),
            Err("unknown user state \"paused\"".to_owned())
        );
        assert_eq!(
            "fax".parse::<Channel>(),
            Err("unknown channel \"fax\"".to_owned())
        );
        assert_eq!(
            "x".parse::<MessageKind>(),
            Err("unknown message kind \"x\"".to_owned())
        );
    }
}
