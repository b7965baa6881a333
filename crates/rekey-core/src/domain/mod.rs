//! Records and parsed values: what the flows work on and the store keeps. Holding one of the
//! parsed values ([`EmailAddress`], [`PhoneNumber`], [`Cname`], the ids) means it is valid.

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

pub use cname::{cname_from_name, Cname, MAX_CNAME_LEN};
pub use email_address::{EmailAddress, MAX_EMAIL_LEN};
pub use event::{Details, Event, NewEvent};
pub use ids::{new_id, TenantId, UserId, MAX_ID_LEN};
pub use outbox::{Channel, MessageKind, MessagePayload, OutboxMessage, OutboxState};
pub use phone_number::PhoneNumber;
pub use reset_code::{CodeKind, CodePolicy, ResetCodeRecord};
pub use tenant::{CodeAlphabet, OrgRef, Tenant, TenantSettings};
pub use token::{token_hash, ApiToken, Principal, Role};
pub use user::{Transition, User, UserQuery, UserState, MAX_LIST_LIMIT};
