//! Request decoding as the REST and Connect faces do it: `rekey_api::json::decode` (REST and
//! Connect JSON) and `faces::connect::Codec` (Connect JSON and `application/proto`), into the
//! request messages Rekey serves; for the v2beta messages also the v2beta → v2 re-encoding the
//! gRPC face runs (`faces::grpc::recode`).
//!
//! The first byte picks the message, the second the codec; the rest is the body.
//!
//! Invariants: a decoded message survives a round trip through its codec (and through the
//! other codec when it has a protojson form); JSON decode errors are one of the three documented
//! ids and never echo the input (their text is a fixed sentence plus line and column); a v2beta
//! message that decodes always becomes a v2 message and back unchanged.
#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use prost::Message;
use rekey_api::faces::connect::Codec;
use rekey_api::faces::grpc::recode;
use rekey_api::json;
use rekey_core::{Error, ErrorKind};
use rekey_proto::zitadel::management::v1 as mgmt;
use rekey_proto::zitadel::org::v2 as org_v2;
use rekey_proto::zitadel::user::v2 as user_v2;
use rekey_proto::zitadel::user::v2beta as user_v2beta;
use serde::de::DeserializeOwned;
use serde::Serialize;

trait Request: Message + DeserializeOwned + Serialize + Default + PartialEq + Debug + Clone {}
impl<T: Message + DeserializeOwned + Serialize + Default + PartialEq + Debug + Clone> Request
    for T
{
}

/// The texts `json::describe` can produce, with the line and column digits removed.
fn known_json_error(err: &Error) -> bool {
    let text: String = err.text.chars().filter(|c| !c.is_ascii_digit()).collect();
    match err.id {
        "REKEY-Oneof" => text == "Request sets more than one member of a oneof; set only one",
        "REKEY-Json1" => text == "Request body is not valid JSON (line , column )",
        "REKEY-Json2" => [
            "a field has the wrong type",
            "an enum field has an unknown value",
            "a required field is missing",
            "a field has an invalid value",
            "a field could not be read",
        ]
        .iter()
        .any(|problem| {
            text == format!("Request body does not match the message: {problem} (line , column )")
        }),
        _ => false,
    }
}

/// Decodes `body` as `T` in `codec` and checks the round trips; returns the message if any.
fn check<T: Request>(codec: Codec, body: &[u8]) -> Option<T> {
    match codec {
        Codec::Json => {
            let decoded = json::decode::<T>(body);
            assert_eq!(decoded, Codec::Json.decode::<T>(body));
            match decoded {
                Ok(message) => {
                    let encoded = json::encode(&message).unwrap_or_else(|err| {
                        panic!("a decoded message does not encode: {err:?} {message:?}")
                    });
                    let again: T = json::decode(&encoded).unwrap_or_else(|err| {
                        panic!("protojson does not read its own output: {err:?}")
                    });
                    assert_eq!(again, message, "protojson round trip");
                    let binary = T::decode(message.encode_to_vec().as_slice());
                    assert_eq!(binary.ok().as_ref(), Some(&message), "binary round trip");
                    Some(message)
                }
                Err(err) => {
                    assert_eq!(err.kind, ErrorKind::InvalidArgument);
                    assert!(known_json_error(&err), "unexpected decode error: {err:?}");
                    None
                }
            }
        }
        Codec::Proto => match Codec::Proto.decode::<T>(body) {
            Ok(message) => {
                let binary = T::decode(message.encode_to_vec().as_slice());
                assert_eq!(binary.ok().as_ref(), Some(&message), "binary round trip");
                // Enum values unknown to the proto have no protojson name; the rest must
                // survive protojson.
                if let Ok(encoded) = json::encode(&message) {
                    let again: Result<T, _> = json::decode(&encoded);
                    assert_eq!(again.as_ref(), Ok(&message), "binary → protojson → binary");
                }
                Some(message)
            }
            Err(err) => {
                assert_eq!(err.id, "REKEY-Proto");
                None
            }
        },
    }
}

/// A v2beta message decoded from `body` re-encodes as its v2 twin and back unchanged.
fn check_beta<B: Request, V: Request>(codec: Codec, body: &[u8]) {
    if let Some(beta) = check::<B>(codec, body) {
        let v2: V = recode(&beta).unwrap_or_else(|status| panic!("v2beta → v2: {status:?}"));
        let back: B = recode(&v2).unwrap_or_else(|status| panic!("v2 → v2beta: {status:?}"));
        assert_eq!(back, beta, "v2beta → v2 → v2beta");
    }
}

fuzz_target!(|data: &[u8]| {
    let [which, codec, body @ ..] = data else {
        return;
    };
    let codec = if codec & 1 == 0 {
        Codec::Json
    } else {
        Codec::Proto
    };
    match which % 14 {
        0 => drop(check::<user_v2::PasswordResetRequest>(codec, body)),
        1 => drop(check::<user_v2::SetPasswordRequest>(codec, body)),
        2 => drop(check::<user_v2::AddHumanUserRequest>(codec, body)),
        3 => drop(check::<user_v2::ListUsersRequest>(codec, body)),
        4 => drop(check::<user_v2::GetUserByIdRequest>(codec, body)),
        5 => drop(check::<mgmt::SetHumanPasswordRequest>(codec, body)),
        6 => drop(check::<mgmt::SetHumanInitialPasswordRequest>(codec, body)),
        7 => drop(check::<mgmt::SendHumanResetPasswordNotificationRequest>(
            codec, body,
        )),
        8 => drop(check::<org_v2::AddOrganizationRequest>(codec, body)),
        9 => check_beta::<user_v2beta::PasswordResetRequest, user_v2::PasswordResetRequest>(
            codec, body,
        ),
        10 => {
            check_beta::<user_v2beta::SetPasswordRequest, user_v2::SetPasswordRequest>(codec, body)
        }
        11 => check_beta::<user_v2beta::AddHumanUserRequest, user_v2::AddHumanUserRequest>(
            codec, body,
        ),
        12 => check_beta::<user_v2beta::ListUsersRequest, user_v2::ListUsersRequest>(codec, body),
        _ => check_beta::<user_v2beta::DeleteUserRequest, user_v2::DeleteUserRequest>(codec, body),
    }
});
