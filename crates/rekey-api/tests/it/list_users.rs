//! v2 ListUsers (SPEC §11) over REST: who sees whom, the deleted rule, filters and paging, as
//! the store now evaluates them in SQL.

use rekey_core::domain::UserState;
use rekey_testkit::DbKind;
use serde_json::{json, Value};

use crate::helpers::{both_dbs, spawn_app, Auth, Resp, TestApp};

both_dbs!(list_users_scopes_filters_and_pages);

const LIST: &str = "/v2/users";

async fn list(app: &TestApp, token: &str, body: Value) -> (String, Vec<String>) {
    let resp: Resp = app.post(LIST, Auth::Bearer(token), &body).await;
    assert!(resp.status.is_success(), "{resp:#?}");
    // uint64 is a JSON string; zero is left out, as proto3 JSON leaves out defaults.
    let total = resp.json["details"]["totalResult"]
        .as_str()
        .unwrap_or("0")
        .to_owned();
    let ids = resp.json["result"]
        .as_array()
        .map(|users| {
            users
                .iter()
                .map(|u| u["userId"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default();
    (total, ids)
}

async fn list_users_scopes_filters_and_pages(db: DbKind) {
    let app = spawn_app(db).await;
    // Created in this order, a clock tick apart.
    let ada = app.add_user(&app.t1, "Ada@acme.test").await;
    let bob = app.add_user(&app.t1, "bob@acme.test").await;
    let gone = app.add_user(&app.t1, "gone@acme.test").await;
    let dora = app.add_user(&app.t2, "dora@other.test").await;
    app.set_state(&gone, UserState::Deleted).await;
    let id = |u: &rekey_core::domain::User| u.id.to_string();
    let asc = json!({"query": {"asc": true}});

    // A tenant admin: its tenant, deleted users left out; newest first by default.
    assert_eq!(
        list(&app, &app.admin1, json!({})).await,
        ("2".into(), vec![id(&bob), id(&ada)])
    );
    assert_eq!(
        list(&app, &app.admin2, json!({})).await,
        ("1".into(), vec![id(&dora)])
    );
    let deleted = json!({"queries": [{"stateQuery": {"state": "USER_STATE_DELETED"}}]});
    assert_eq!(
        list(&app, &app.admin1, deleted.clone()).await,
        ("1".into(), vec![id(&gone)])
    );
    let other_org =
        json!({"queries": [{"organizationIdQuery": {"organizationId": app.t2.id.to_string()}}]});
    assert_eq!(
        list(&app, &app.admin1, other_org.clone()).await,
        ("0".into(), vec![])
    );

    // The system principal: every tenant, or the ones asked for.
    assert_eq!(
        list(&app, &app.system, asc.clone()).await,
        ("3".into(), vec![id(&ada), id(&bob), id(&dora)])
    );
    assert_eq!(
        list(&app, &app.system, other_org).await,
        ("1".into(), vec![id(&dora)])
    );

    // Filters and paging.
    let by_email = json!({"queries": [{"emailQuery": {
        "emailAddress": "ADA@", "method": "TEXT_QUERY_METHOD_STARTS_WITH_IGNORE_CASE"}}]});
    assert_eq!(
        list(&app, &app.admin1, by_email).await,
        ("1".into(), vec![id(&ada)])
    );
    let case_sensitive = json!({"queries": [{"emailQuery": {
        "emailAddress": "ada@", "method": "TEXT_QUERY_METHOD_STARTS_WITH"}}]});
    assert_eq!(
        list(&app, &app.admin1, case_sensitive).await,
        ("0".into(), vec![])
    );
    let second = json!({"query": {"asc": true, "offset": "1", "limit": 1}});
    assert_eq!(
        list(&app, &app.system, second).await,
        ("3".into(), vec![id(&bob)])
    );
    let far = json!({"query": {"offset": "18446744073709551615", "limit": 1}});
    assert_eq!(list(&app, &app.system, far).await, ("3".into(), vec![]));

    // A user: only themself, whatever the filters ask for.
    let token = app.user_token(&ada).await;
    assert_eq!(
        list(&app, &token, json!({})).await,
        ("1".into(), vec![id(&ada)])
    );
    let others = json!({"queries": [{"inUserIdsQuery": {"userIds": [id(&bob), id(&dora)]}}]});
    assert_eq!(list(&app, &token, others).await, ("0".into(), vec![]));
    assert_eq!(list(&app, &token, deleted).await, ("0".into(), vec![]));
}
