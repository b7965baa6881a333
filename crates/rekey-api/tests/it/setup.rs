//! v2 AddHumanUser's tenant-isolation rules (SPEC §11): imported hashes only within the bounds
//! Rekey will compute, and a caller-chosen `userId` only from a `system` principal, because ids
//! are global and a tenant admin's choice would reveal whether another tenant holds one.

use rekey_core::domain::NewEvent;
use rekey_core::domain::UserId;
use rekey_core::ports::store::{PasswordChange, UserChange, UserSearch};
use rekey_testkit::DbKind;
use serde_json::{json, Value};

use crate::helpers::{assert_error, both_dbs, spawn_app, Auth, Resp, TestApp, START_PASSWORD};

both_dbs!(
    out_of_bounds_hashes_are_refused_and_nothing_written,
    bounded_hash_imports_and_verifies,
    stored_out_of_bounds_hash_never_matches,
    tenant_admin_cannot_choose_user_id,
    system_may_choose_user_id,
);

const ADD: &str = "/v2/users/human";

fn add_body(email: &str) -> Value {
    json!({
        "profile": {"givenName": "Imported", "familyName": "User"},
        "email": {"email": email},
    })
}

fn with_hash(email: &str, hash: &str) -> Value {
    let mut body = add_body(email);
    body["hashedPassword"] = json!({"hash": hash});
    body
}

/// The users of both fixture tenants, by id, as the store holds them.
async fn all_user_ids(app: &TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for tenant in [&app.t1, &app.t2] {
        let every_user = UserSearch {
            tenant: Some(tenant.id.clone()),
            filters: Vec::new(),
            include_deleted: true,
            asc: true,
            offset: 0,
            limit: u32::MAX,
        };
        let page = app.store().search_users(&every_user).await.unwrap();
        for user in page.users {
            ids.push(user.id.to_string());
        }
    }
    ids.sort();
    ids
}

/// A hash of [`START_PASSWORD`] with the fixture's cheap parameters (`m=256,t=1,p=1`).
async fn good_hash(app: &TestApp) -> String {
    let hash = app
        .deps
        .hasher
        .hash(secrecy::SecretString::from(START_PASSWORD.to_owned()))
        .await
        .unwrap();
    assert!(hash.starts_with("$argon2id$v=19$m=256,t=1,p=1$"), "{hash}");
    hash
}

#[track_caller]
fn assert_hash_refused(resp: &Resp, hash: &str) {
    assert_error(resp, 400, 3, "REKEY-PwHsh", None);
    for part in hash.rsplit('$').take(2).filter(|p| p.len() >= 8) {
        assert!(
            !resp.text.contains(part),
            "the refusal must not echo the hash: {}",
            resp.text
        );
    }
    let message = resp.json["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("262144") && message.contains("argon2id"),
        "the refusal names the bounds: {message}"
    );
}

async fn out_of_bounds_hashes_are_refused_and_nothing_written(db: DbKind) {
    let app = spawn_app(db).await;
    app.add_user(&app.t1, "existing@acme.test").await;
    let good = good_hash(&app).await;
    let (_, tail) = good.split_once("$m=256,t=1,p=1$").unwrap();
    let refused = [
        // 4 TiB: the allocation that used to abort the process at the first SetPassword.
        format!("$argon2id$v=19$m=4294967295,t=1,p=1${tail}"),
        format!("$argon2id$v=19$m=262145,t=1,p=1${tail}"),
        format!("$argon2id$v=19$m=256,t=4294967295,p=1${tail}"),
        format!("$argon2id$v=19$m=256,t=17,p=1${tail}"),
        format!("$argon2id$v=19$m=256,t=1,p=9${tail}"),
        format!("$argon2i$v=19$m=256,t=1,p=1${tail}"),
        format!("$argon2d$v=19$m=256,t=1,p=1${tail}"),
        format!("$argon2id$v=16$m=256,t=1,p=1${tail}"),
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW".to_owned(),
        "not a hash".to_owned(),
    ];
    let before = app.snapshot().await;
    let users_before = all_user_ids(&app).await;
    for hash in &refused {
        for token in [&app.system, &app.admin1] {
            let mut body = with_hash("imported@acme.test", hash);
            body["organization"] = json!({"orgId": app.t1.id.to_string()});
            let resp = app.post(ADD, Auth::Bearer(token), &body).await;
            assert_hash_refused(&resp, hash);
        }
    }
    assert_eq!(app.snapshot().await, before, "nothing written");
    assert_eq!(all_user_ids(&app).await, users_before, "no user row added");
}

async fn bounded_hash_imports_and_verifies(db: DbKind) {
    let app = spawn_app(db).await;
    let hash = good_hash(&app).await;
    let resp = app
        .post(
            ADD,
            Auth::Bearer(&app.admin1),
            &with_hash("imported@acme.test", &hash),
        )
        .await;
    assert!(resp.status.is_success(), "{resp:#?}");
    let user_id = resp.json["userId"].as_str().unwrap().to_owned();
    let token = {
        let user = app
            .rekey
            .user_by_id(&UserId::parse(user_id.clone()).unwrap())
            .await
            .unwrap();
        app.user_token(&user).await
    };
    let resp = app
        .post(
            &format!("/v2/users/{user_id}/password"),
            Auth::Bearer(&token),
            &json!({"newPassword": {"password": "a much better passphrase"}, "currentPassword": START_PASSWORD}),
        )
        .await;
    resp.ok();
}

/// A row written before the bounds existed: verifying it must neither allocate its memory cost
/// nor wait for the hash pool; it simply does not match.
async fn stored_out_of_bounds_hash_never_matches(db: DbKind) {
    let app = spawn_app(db).await;
    let user = app.add_user(&app.t1, "legacy@acme.test").await;
    let good = good_hash(&app).await;
    let huge = good.replace("$m=256,", "$m=4294967295,");
    let mut change = UserChange::new(
        user.tenant_id.clone(),
        user.id.clone(),
        app.now(),
        NewEvent {
            kind: "user.password.changed",
            actor: "test".to_owned(),
            ip: None,
            payload: json!({}),
        },
    );
    change.set_password = Some(PasswordChange {
        hash: huge,
        change_required: false,
    });
    app.store().change_user(&change).await.unwrap();
    let token = app.user_token(&user).await;
    let snapshot = app.snapshot().await;
    let started = std::time::Instant::now();
    let resp = app
        .post(
            &format!("/v2/users/{}/password", user.id),
            Auth::Bearer(&token),
            &json!({"newPassword": {"password": "a much better passphrase"}, "currentPassword": START_PASSWORD}),
        )
        .await;
    assert_error(&resp, 400, 3, "COMMAND-3M0fs", Some("Password is invalid"));
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!(app.snapshot().await, snapshot, "nothing written");
}

async fn tenant_admin_cannot_choose_user_id(db: DbKind) {
    let app = spawn_app(db).await;
    let elsewhere = app.add_user(&app.t2, "taken@globex.test").await;
    let before = app.snapshot().await;
    let users_before = all_user_ids(&app).await;

    let mut bodies = Vec::new();
    for id in [elsewhere.id.as_str(), "a-fresh-id-nobody-has"] {
        let mut body = add_body("chosen@acme.test");
        body["userId"] = json!(id);
        let resp = app.post(ADD, Auth::Bearer(&app.admin1), &body).await;
        assert_error(&resp, 400, 3, "REKEY-UsrId", None);
        // The own tenant named explicitly changes nothing.
        body["organization"] = json!({"orgId": app.t1.id.to_string()});
        let named = app.post(ADD, Auth::Bearer(&app.admin1), &body).await;
        assert_eq!(named.status, resp.status);
        assert_eq!(named.text, resp.text);
        bodies.push(resp.text);
    }
    assert_eq!(
        bodies[0], bodies[1],
        "an existing and a fresh id look alike"
    );
    assert_eq!(app.snapshot().await, before, "nothing written");
    assert_eq!(all_user_ids(&app).await, users_before, "no user row added");

    // Without a userId the same admin may add the user.
    let resp = app
        .post(
            ADD,
            Auth::Bearer(&app.admin1),
            &add_body("chosen@acme.test"),
        )
        .await;
    assert!(resp.status.is_success(), "{resp:#?}");
    assert_ne!(resp.json["userId"], json!(elsewhere.id.as_str()));
}

async fn system_may_choose_user_id(db: DbKind) {
    let app = spawn_app(db).await;
    let mut body = add_body("chosen@acme.test");
    body["userId"] = json!("imported-42");
    body["organization"] = json!({"orgId": app.t1.id.to_string()});
    let resp = app.post(ADD, Auth::Bearer(&app.system), &body).await;
    assert!(resp.status.is_success(), "{resp:#?}");
    assert_eq!(resp.json["userId"], "imported-42");
    let user = app
        .rekey
        .user_by_id(&UserId::parse("imported-42").unwrap())
        .await
        .unwrap();
    assert_eq!(user.tenant_id, app.t1.id);
}
