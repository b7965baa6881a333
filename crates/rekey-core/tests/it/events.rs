//! The audit trail (SPEC §1, §10): every change to a user appends one event in the same
//! transaction — who, what, when, from where —, the user's sequence is its event count, the
//! details a flow returns match both, a wrong code appends nothing, and no secret is ever in it.

use rekey_core::domain::Transition;
use rekey_core::domain::{Event, UserState};
use rekey_core::flows::{SetPassword, Verification};
use secrecy::SecretString;
use serde_json::json;

use crate::support::{principal, wrong_for, Fixture, NEW_PASSWORD, START_PASSWORD};

fn kinds(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[tokio::test]
async fn each_change_appends_one_event_and_bumps_the_sequence() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "trail@acme.test").await;
    let admin_actor = format!("token:{}", principal(&f.admin1).token_id);
    assert_eq!(user.sequence, 1);
    let added = f.user_events(&user).await;
    assert_eq!(kinds(&added), ["user.added"]);
    assert_eq!(added[0].payload, json!({"state": "active"}));

    // A code, returned: who asked, from where, and what kind — never the code.
    let returned = f.return_code(&user).await;
    let events = f.user_events(&user).await;
    let issued = events.last().unwrap();
    assert_eq!(issued.kind, "user.password.code.added");
    assert_eq!(issued.sequence, 2);
    assert_eq!(issued.actor, admin_actor);
    assert_eq!(issued.ip.as_deref(), Some("192.0.2.10"));
    assert_eq!(issued.at, f.now());
    assert_eq!(issued.tenant_id, f.t1.id);
    assert_eq!(issued.aggregate_id, user.id.as_str());
    let code_id = f.pending_code(&user).await.unwrap().id;
    assert_eq!(
        issued.payload,
        json!({"medium": "return_code", "kind": "reset", "code_id": code_id})
    );

    // A sent link names its channel.
    let sent = f.send_link(&f.admin1, &user.id).await.unwrap();
    assert_eq!(sent.details.sequence, 3);
    let code = f.sent_code(&user).await;
    assert_eq!(
        f.user_events(&user).await.last().unwrap().payload["medium"],
        "email"
    );

    // A wrong code: no event, no sequence.
    let _ = f
        .set_with_code(&user.id, &wrong_for(&code), NEW_PASSWORD)
        .await;
    assert_eq!(f.user_events(&user).await.len(), 3);
    assert_eq!(f.user(&user).await.sequence, 3);

    // The change by code: anonymous, with the client address.
    let caller = Fixture::anonymous_from("198.51.100.23");
    let details = f
        .set_with_code_as(&caller, &user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(details.sequence, 4);
    let changed = f.user_events(&user).await.pop().unwrap();
    assert_eq!(changed.kind, "user.password.changed");
    assert_eq!(changed.sequence, 4);
    assert_eq!(changed.actor, "anonymous");
    assert_eq!(changed.ip.as_deref(), Some("198.51.100.23"));
    assert_eq!(changed.at, details.change_date);
    assert_eq!(
        changed.payload,
        json!({"via": "code", "change_required": false})
    );

    // An admin set, then a state change by the setup API.
    f.tick();
    f.rekey
        .set_password(
            &f.admin1,
            SetPassword {
                user_id: user.id.clone(),
                new_password: SecretString::from(START_PASSWORD.to_owned()),
                change_required: true,
                verification: Verification::Admin,
            },
        )
        .await
        .unwrap();
    f.tick();
    let locked = f
        .rekey
        .transition_user(&f.admin1, &user.id, Transition::Lock)
        .await
        .unwrap();
    assert_eq!(locked.sequence, 6);

    let events = f.user_events(&user).await;
    assert_eq!(
        kinds(&events),
        [
            "user.added",
            "user.password.code.added",
            "user.password.code.added",
            "user.password.changed",
            "user.password.changed",
            "user.locked",
        ]
    );
    assert_eq!(
        events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );
    assert_eq!(
        events[4].payload,
        json!({"via": "password", "change_required": true})
    );
    assert_eq!(events[4].actor, admin_actor);
    assert_eq!(events[5].payload, json!({"from": "active", "to": "locked"}));
    let stored = f.user(&user).await;
    assert_eq!(stored.sequence, 6);
    assert_eq!(stored.state, UserState::Locked);
    assert_eq!(stored.change_date, events[5].at);

    // No secret anywhere in the trail.
    let trail = serde_json::to_string(
        &f.events()
            .await
            .iter()
            .map(|e| (&e.kind, &e.actor, &e.payload))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    for secret in [
        returned.as_str(),
        code.as_str(),
        NEW_PASSWORD,
        START_PASSWORD,
    ] {
        assert!(!trail.contains(secret), "{secret:?} leaked into the trail");
    }
}

#[tokio::test]
async fn refusals_append_nothing() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "quiet@acme.test").await;
    f.set_state(&user, UserState::Inactive).await;
    let before = f.events().await.len();
    let _ = f.send_link(&f.admin1, &user.id).await.unwrap_err();
    let _ = f.send_link(&f.admin2, &user.id).await.unwrap_err();
    let _ = f
        .set_with_code(&user.id, "ABCDEFGH", NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(f.events().await.len(), before);
}

#[tokio::test]
async fn tenants_have_their_own_trail() {
    let f = Fixture::new().await;
    let added = f.events().await;
    assert_eq!(kinds(&added), ["tenant.added", "tenant.added"]);
    assert_eq!(added[0].aggregate_id, f.t1.id.as_str());
    assert_eq!(added[1].aggregate_id, f.t2.id.as_str());
    assert_eq!(
        added[0].payload,
        json!({"name": "Acme", "cname": "acme.test"})
    );
}
