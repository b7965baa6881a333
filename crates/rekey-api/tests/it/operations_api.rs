//! The operations API (SPEC §11) over HTTP: who sees what on each route, paging through the
//! outbox and the audit trail, the retry that re-issues an expired code, tenant settings by
//! the CLI's names, and the F5-style errors for bad input.

use std::collections::HashSet;

use chrono::Duration;
use rekey_core::domain::{MessageId, MessageKind, OutboxState, User};
use rekey_testkit::DbKind;
use secrecy::SecretString;
use serde_json::{json, Value};

use crate::helpers::{both_dbs, spawn_app, Auth, Resp, TestApp};

both_dbs!(
    every_route_answers_each_kind_of_token_as_spec_2_says,
    paging_walks_every_row_once_while_rows_are_added,
    retry_reissues_an_expired_message_and_requeues_a_good_one_audited,
    settings_patch_validates_unsets_and_is_audited,
    bad_query_parameters_are_invalid_argument,
);

/// Sends a request with an optional JSON body; the answer decoded.
async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    auth: Auth<'_>,
    body: Option<&Value>,
) -> Resp {
    app.tick();
    let mut request = app.client.request(method, app.url(path));
    request = match auth {
        Auth::None => request,
        Auth::Bearer(token) => request.header("authorization", format!("Bearer {token}")),
        Auth::ApiToken(token) => request.header("authorization", format!("APIToken {token}")),
    };
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.expect("request sent");
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Resp {
        status,
        headers,
        text,
        json,
    }
}

async fn get(app: &TestApp, path: &str, auth: Auth<'_>) -> Resp {
    call(app, reqwest::Method::GET, path, auth, None).await
}

/// Asserts an operations-API error: status, gRPC code, no details.
#[track_caller]
fn assert_ops_error(resp: &Resp, status: u16, code: i64) {
    assert_eq!(resp.status.as_u16(), status, "{resp:#?}");
    assert_eq!(resp.json["code"], code, "{resp:#?}");
    assert!(resp.json["message"].is_string(), "{resp:#?}");
    assert_eq!(resp.json["details"], json!([]), "{resp:#?}");
}

async fn actor_of(app: &TestApp, token: &str) -> String {
    app.rekey
        .authenticate(&SecretString::from(token.to_owned()))
        .await
        .unwrap()
        .actor()
}

/// A reset email for `user` queued by its tenant admin and parked as failed (as the worker
/// parks it after its last attempt).
async fn parked_reset(app: &TestApp, user: &User) -> MessageId {
    app.password_reset(
        user.id.as_str(),
        Auth::Bearer(app.admin_of(user)),
        &json!({"sendLink": {}}),
    )
    .await
    .ok();
    let message = app
        .messages(user, MessageKind::PasswordReset)
        .await
        .pop()
        .expect("a queued message");
    assert!(app
        .store()
        .park_outbox_failed(&message.tenant_id, &message.id, "gave up after 8 attempts")
        .await
        .unwrap());
    message.id
}

fn ids(list: &Value, member: &str, field: &str) -> Vec<String> {
    list[member]
        .as_array()
        .unwrap_or_else(|| panic!("{member} in {list}"))
        .iter()
        .map(|m| m[field].as_str().unwrap().to_owned())
        .collect()
}

async fn every_route_answers_each_kind_of_token_as_spec_2_says(db: DbKind) {
    let app = spawn_app(db).await;
    let ada = app.add_user(&app.t1, "ada@acme.test").await;
    let gus = app.add_user(&app.t2, "gus@globex.test").await;
    let ada_token = app.user_token(&ada).await;
    let ada_msg = parked_reset(&app, &ada).await;
    let gus_msg = parked_reset(&app, &gus).await;
    let (t1, t2) = (app.t1.id.as_str(), app.t2.id.as_str());
    let settings_t1 = format!("/rekey/v1/tenants/{t1}/settings");
    let retry_ada = format!("/rekey/v1/outbox/{ada_msg}/retry");

    // No token, an unknown one, or a user's: 401, 401, 403 on every route, nothing changed.
    let before = app.snapshot().await;
    let routes: Vec<(reqwest::Method, String, Option<Value>)> = vec![
        (reqwest::Method::GET, "/rekey/v1/outbox".into(), None),
        (reqwest::Method::POST, retry_ada.clone(), None),
        (reqwest::Method::GET, "/rekey/v1/events".into(), None),
        (reqwest::Method::GET, settings_t1.clone(), None),
        (
            reqwest::Method::PATCH,
            settings_t1.clone(),
            Some(json!({"code.length": 10})),
        ),
    ];
    for (method, path, body) in &routes {
        for (auth, status, code) in [
            (Auth::None, 401, 16),
            (Auth::Bearer("not-a-token"), 401, 16),
            (Auth::Bearer(&ada_token), 403, 7),
            (Auth::ApiToken(&ada_token), 403, 7),
        ] {
            let resp = call(&app, method.clone(), path, auth, body.as_ref()).await;
            assert_ops_error(&resp, status, code);
        }
    }
    assert_eq!(app.snapshot().await, before, "refused calls change nothing");

    // The outbox: system sees both tenants, each admin only its own.
    let all = get(&app, "/rekey/v1/outbox", Auth::Bearer(&app.system)).await;
    let all = ids(all.ok(), "messages", "id");
    assert!(all.contains(&ada_msg.to_string()) && all.contains(&gus_msg.to_string()));
    for (token, mine, theirs, tenant) in [
        (&app.admin1, &ada_msg, &gus_msg, t1),
        (&app.admin2, &gus_msg, &ada_msg, t2),
    ] {
        let resp = get(&app, "/rekey/v1/outbox", Auth::ApiToken(token)).await;
        let body = resp.ok();
        assert_eq!(ids(body, "messages", "id"), [mine.to_string()]);
        assert!(ids(body, "messages", "tenant_id")
            .iter()
            .all(|t| t == tenant));
        // No body, no code, no link in a listed message.
        let listed = &body["messages"][0];
        for secret in ["body", "code", "link", "key_id", "idempotency_key"] {
            assert!(listed.get(secret).is_none(), "{secret} in {listed}");
        }
        assert_eq!(listed["state"], "failed");
        assert_eq!(listed["kind"], "password_reset");
        let _ = theirs;
    }

    // Retry: another tenant's message is exactly a missing one.
    let before = app.snapshot().await;
    let theirs = call(
        &app,
        reqwest::Method::POST,
        &retry_ada,
        Auth::Bearer(&app.admin2),
        None,
    )
    .await;
    assert_ops_error(&theirs, 404, 5);
    let missing = call(
        &app,
        reqwest::Method::POST,
        "/rekey/v1/outbox/no-such-message/retry",
        Auth::Bearer(&app.admin2),
        None,
    )
    .await;
    assert_eq!(theirs.json, missing.json);
    assert_eq!(app.snapshot().await, before);
    let own = call(
        &app,
        reqwest::Method::POST,
        &retry_ada,
        Auth::Bearer(&app.admin1),
        None,
    )
    .await;
    assert_eq!(own.ok()["retried"], ada_msg.as_str());
    let gus_retry = format!("/rekey/v1/outbox/{gus_msg}/retry");
    let by_system = call(
        &app,
        reqwest::Method::POST,
        &gus_retry,
        Auth::Bearer(&app.system),
        None,
    )
    .await;
    assert_eq!(by_system.ok()["retried"], gus_msg.as_str());

    // Events: system any tenant; an admin its own, another tenant named → 403 whether or not
    // it exists.
    let resp = get(
        &app,
        &format!("/rekey/v1/events?tenant={t2}"),
        Auth::Bearer(&app.system),
    )
    .await;
    assert!(ids(resp.ok(), "events", "tenant_id")
        .iter()
        .all(|t| t == t2));
    let resp = get(
        &app,
        "/rekey/v1/events?tenant=no-such-tenant",
        Auth::Bearer(&app.system),
    )
    .await;
    assert_eq!(resp.ok()["events"], json!([]));
    let resp = get(&app, "/rekey/v1/events", Auth::Bearer(&app.admin1)).await;
    let tenants = ids(resp.ok(), "events", "tenant_id");
    assert!(!tenants.is_empty() && tenants.iter().all(|t| t == t1));
    let resp = get(
        &app,
        &format!("/rekey/v1/events?tenant={t1}"),
        Auth::Bearer(&app.admin1),
    )
    .await;
    assert!(!ids(resp.ok(), "events", "tenant_id").is_empty());
    for other in [t2, "no-such-tenant"] {
        let resp = get(
            &app,
            &format!("/rekey/v1/events?tenant={other}"),
            Auth::Bearer(&app.admin1),
        )
        .await;
        assert_ops_error(&resp, 403, 7);
    }
    // A user of another tenant: nothing, as a user that does not exist.
    let resp = get(
        &app,
        &format!("/rekey/v1/events?user={}", gus.id),
        Auth::Bearer(&app.admin1),
    )
    .await;
    assert_eq!(resp.ok()["events"], json!([]));

    // Settings: by id or cname; another tenant's → 404 like a missing one.
    for path in [
        settings_t1.clone(),
        format!("/rekey/v1/tenants/{}/settings", app.t1.cname.as_str()),
    ] {
        for token in [&app.admin1, &app.system] {
            let resp = get(&app, &path, Auth::Bearer(token)).await;
            assert!(resp.ok()["code.length"].is_null());
        }
        let resp = get(&app, &path, Auth::Bearer(&app.admin2)).await;
        assert_ops_error(&resp, 404, 5);
    }
    let missing = get(
        &app,
        "/rekey/v1/tenants/no-such-tenant/settings",
        Auth::Bearer(&app.admin2),
    )
    .await;
    let theirs = get(&app, &settings_t1, Auth::Bearer(&app.admin2)).await;
    assert_eq!(missing.json, theirs.json);
    let before = app.snapshot().await;
    let resp = call(
        &app,
        reqwest::Method::PATCH,
        &settings_t1,
        Auth::Bearer(&app.admin2),
        Some(&json!({"code.length": 10})),
    )
    .await;
    assert_ops_error(&resp, 404, 5);
    assert_eq!(app.snapshot().await, before);
    let resp = call(
        &app,
        reqwest::Method::PATCH,
        &settings_t1,
        Auth::ApiToken(&app.admin1),
        Some(&json!({"code.length": 10})),
    )
    .await;
    assert_eq!(resp.ok()["code.length"], 10);

    // Under the prefix, an unknown route or method answers in the same shape.
    let resp = get(&app, "/rekey/v1/nothing-here", Auth::Bearer(&app.system)).await;
    assert_ops_error(&resp, 404, 5);
    let resp = call(
        &app,
        reqwest::Method::DELETE,
        "/rekey/v1/outbox",
        Auth::Bearer(&app.system),
        None,
    )
    .await;
    assert_ops_error(&resp, 405, 12);
}

/// Follows `next_cursor` from `first` to the end; every row's `key` values, in order.
async fn walk(
    app: &TestApp,
    first: &str,
    member: &str,
    key: &dyn Fn(&Value) -> String,
    mid: &dyn Fn(usize) -> bool,
    token: &str,
) -> (Vec<String>, usize) {
    let mut seen = Vec::new();
    let mut pages = 0;
    let mut path = first.to_owned();
    loop {
        let resp = get(app, &path, Auth::Bearer(token)).await;
        let body = resp.ok().clone();
        pages += 1;
        let rows = body[member].as_array().unwrap().clone();
        seen.extend(rows.iter().map(key));
        if mid(pages) {
            // Rows written while paging land after the last page: still seen once.
            let n = seen.len();
            let user = app.add_user(&app.t1, &format!("late{n}@acme.test")).await;
            app.password_reset(
                user.id.as_str(),
                Auth::Bearer(&app.admin1),
                &json!({"sendLink": {}}),
            )
            .await
            .ok();
        }
        match body["next_cursor"].as_str() {
            Some(cursor) => {
                assert!(!rows.is_empty());
                let sep = if first.contains('?') { '&' } else { '?' };
                path = format!("{first}{sep}cursor={cursor}");
            }
            None => break,
        }
        assert!(pages < 100, "paging does not end");
    }
    (seen, pages)
}

async fn paging_walks_every_row_once_while_rows_are_added(db: DbKind) {
    let app = spawn_app(db).await;
    for n in 0..6 {
        let user = app.add_user(&app.t1, &format!("u{n}@acme.test")).await;
        app.password_reset(
            user.id.as_str(),
            Auth::Bearer(&app.admin1),
            &json!({"sendLink": {}}),
        )
        .await
        .ok();
        let other = app.add_user(&app.t2, &format!("u{n}@globex.test")).await;
        app.password_reset(
            other.id.as_str(),
            Auth::Bearer(&app.admin2),
            &json!({"sendLink": {}}),
        )
        .await
        .ok();
    }

    // The outbox, two at a time, a message written after the first page.
    let (seen, pages) = walk(
        &app,
        "/rekey/v1/outbox?limit=2",
        "messages",
        &|m| m["id"].as_str().unwrap().to_owned(),
        &|page| page == 1,
        &app.system,
    )
    .await;
    let all: Vec<String> = app
        .outbox()
        .await
        .iter()
        .map(|m| m.id.to_string())
        .collect();
    assert_eq!(all.len(), 13);
    assert!(pages >= 7, "{pages} pages");
    assert_eq!(
        seen.len(),
        seen.iter().collect::<HashSet<_>>().len(),
        "a row repeated"
    );
    assert_eq!(
        seen.iter().collect::<HashSet<_>>(),
        all.iter().collect::<HashSet<_>>(),
        "a row skipped"
    );

    // The audit trail, three at a time with events added mid-way, as system and as a tenant
    // admin (only its own tenant's).
    let key = |e: &Value| {
        format!(
            "{}/{}/{}",
            e["tenant_id"].as_str().unwrap(),
            e["aggregate_id"].as_str().unwrap(),
            e["sequence"]
        )
    };
    let (seen, pages) = walk(
        &app,
        "/rekey/v1/events?limit=3",
        "events",
        &key,
        &|page| page == 2,
        &app.system,
    )
    .await;
    let all: Vec<String> = app
        .events()
        .await
        .iter()
        .map(|e| format!("{}/{}/{}", e.tenant_id, e.aggregate_id, e.sequence))
        .collect();
    assert!(pages > 3);
    assert_eq!(
        seen.len(),
        seen.iter().collect::<HashSet<_>>().len(),
        "a row repeated"
    );
    assert_eq!(seen, all, "every event once, in the trail's order");

    let first = format!("/rekey/v1/events?limit=4&tenant={}", app.t1.id);
    let (seen, _) = walk(&app, &first, "events", &key, &|_| false, &app.admin1).await;
    let own: Vec<&String> = all
        .iter()
        .filter(|k| k.starts_with(&format!("{}/", app.t1.id)))
        .collect();
    assert_eq!(seen.iter().collect::<Vec<_>>(), own);

    // The default page is 100; `since` cuts the trail.
    let since = app
        .now()
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    app.tick();
    let late = app.add_user(&app.t1, "after@acme.test").await;
    let resp = get(
        &app,
        &format!("/rekey/v1/events?since={}", since.replace('+', "%2B")),
        Auth::Bearer(&app.system),
    )
    .await;
    let aggregates = ids(resp.ok(), "events", "aggregate_id");
    assert!(!aggregates.is_empty());
    assert!(
        aggregates.iter().all(|a| *a == late.id.to_string()),
        "{aggregates:?}"
    );
    assert!(resp.json.get("next_cursor").is_none());
}

async fn retry_reissues_an_expired_message_and_requeues_a_good_one_audited(db: DbKind) {
    let app = spawn_app(db).await;
    let ada = app.add_user(&app.t1, "ada@acme.test").await;
    let admin1 = actor_of(&app, &app.admin1).await;

    // Still good: requeued as it is, with an audit event on the tenant.
    let good = parked_reset(&app, &ada).await;
    let resp = call(
        &app,
        reqwest::Method::POST,
        &format!("/rekey/v1/outbox/{good}/retry"),
        Auth::Bearer(&app.admin1),
        None,
    )
    .await;
    assert_eq!(
        resp.ok(),
        &json!({"id": good.as_str(), "outcome": "requeued", "retried": good.as_str()})
    );
    let row = app.store().outbox_message(&good).await.unwrap().unwrap();
    assert_eq!(row.state, OutboxState::Pending);
    let event = app.events().await.pop().unwrap();
    assert_eq!(event.kind, "outbox.message.retried");
    assert_eq!(event.aggregate_id, app.t1.id.as_str());
    assert_eq!(event.actor, admin1);
    assert_eq!(event.ip.as_deref(), Some("127.0.0.1"));
    assert_eq!(event.payload["message_id"], good.as_str());

    // Expired: a fresh code in a new message; the old one stays failed.
    let old = parked_reset(&app, &ada).await;
    let old_code = app
        .open(&app.store().outbox_message(&old).await.unwrap().unwrap())
        .code
        .unwrap();
    app.advance(Duration::minutes(61));
    app.store()
        .erase_expired_failed_bodies(app.now())
        .await
        .unwrap();
    let resp = call(
        &app,
        reqwest::Method::POST,
        &format!("/rekey/v1/outbox/{old}/retry"),
        Auth::Bearer(&app.admin1),
        None,
    )
    .await;
    let body = resp.ok();
    assert_eq!(body["outcome"], "reissued");
    assert_eq!(body["retried"], old.as_str());
    let new_id = MessageId::parse(body["id"].as_str().unwrap()).unwrap();
    assert_ne!(new_id, old);
    assert_eq!(
        app.store()
            .outbox_message(&old)
            .await
            .unwrap()
            .unwrap()
            .state,
        OutboxState::Failed
    );
    let new = app.store().outbox_message(&new_id).await.unwrap().unwrap();
    assert_eq!(new.state, OutboxState::Pending);
    let new_code = app.open(&new).code.unwrap();
    assert_ne!(new_code, old_code);
    let event = app.user_events(&ada).await.pop().unwrap();
    assert_eq!(event.kind, "user.password.code.added");
    assert_eq!(event.actor, admin1);
    assert_eq!(event.ip.as_deref(), Some("127.0.0.1"));
    // Only the fresh code works.
    let resp = app
        .set_with_code(ada.id.as_str(), &new_code, crate::helpers::NEW_PASSWORD)
        .await;
    assert_eq!(resp.status, 200, "{resp:?}");

    // A message that is not failed (any more) is not found.
    let resp = call(
        &app,
        reqwest::Method::POST,
        &format!("/rekey/v1/outbox/{new_id}/retry"),
        Auth::Bearer(&app.system),
        None,
    )
    .await;
    assert_ops_error(&resp, 404, 5);
}

async fn settings_patch_validates_unsets_and_is_audited(db: DbKind) {
    let app = spawn_app(db).await;
    let path = format!("/rekey/v1/tenants/{}/settings", app.t1.id);
    let patch = async |body: Value| {
        call(
            &app,
            reqwest::Method::PATCH,
            &path,
            Auth::Bearer(&app.admin1),
            Some(&body),
        )
        .await
    };

    let resp = get(&app, &path, Auth::Bearer(&app.admin1)).await;
    let names: Vec<&str> = rekey_core::policy::TENANT_SETTINGS
        .iter()
        .map(|s| s.name)
        .collect();
    let body = resp.ok().as_object().unwrap().clone();
    assert_eq!(
        body.keys().map(String::as_str).collect::<HashSet<_>>(),
        names.iter().copied().collect()
    );
    assert!(
        body.values().all(Value::is_null),
        "a new tenant sets nothing"
    );

    let resp = patch(json!({
        "code.length": 10,
        "code.alphabet": "zitadel",
        "password.require_upper": true,
        "ui.login_url": "https://login.acme.test/",
    }))
    .await;
    let body = resp.ok();
    assert_eq!(body["code.length"], 10);
    assert_eq!(body["code.alphabet"], "zitadel");
    assert_eq!(body["password.require_upper"], true);
    assert_eq!(body["ui.login_url"], "https://login.acme.test/");
    assert!(body["language"].is_null());
    assert_eq!(get(&app, &path, Auth::Bearer(&app.system)).await.ok(), body);
    let tenant = app.rekey.tenant(&app.t1.id).await.unwrap().unwrap();
    assert_eq!(tenant.settings.code_length, Some(10));
    let event = app.events().await.pop().unwrap();
    assert_eq!(event.kind, "tenant.settings.changed");
    assert_eq!(event.aggregate_id, app.t1.id.as_str());
    assert_eq!(event.actor, actor_of(&app, &app.admin1).await);
    assert_eq!(event.ip.as_deref(), Some("127.0.0.1"));

    // null unsets; the other keys stay.
    let resp = patch(json!({"code.length": null})).await;
    assert!(resp.ok()["code.length"].is_null());
    assert_eq!(resp.json["code.alphabet"], "zitadel");

    // Anything invalid: 400 code 3, and nothing changed, even beside a valid key.
    let before = app.snapshot().await;
    for bad in [
        json!({"nope": 1}),
        json!({"code.length": "ten"}),
        json!({"code.length": -1}),
        json!({"code.length": 8.5}),
        json!({"code.length": 8, "code.alphabet": "digits"}),
        json!({"password.require_upper": "maybe"}),
        json!({"ui.login_url": "ftp://login.acme.test"}),
        json!({"code.expiry_secs": 1}),
        json!({"code.length": [8]}),
        json!(["code.length"]),
        json!("code.length=8"),
    ] {
        let resp = patch(bad).await;
        assert_ops_error(&resp, 400, 3);
    }
    let resp = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        Auth::Bearer(&app.admin1),
        None,
    )
    .await;
    assert_ops_error(&resp, 400, 3);
    assert_eq!(
        app.snapshot().await,
        before,
        "refused changes change nothing"
    );
    assert_eq!(
        app.rekey
            .tenant(&app.t1.id)
            .await
            .unwrap()
            .unwrap()
            .settings
            .code_alphabet,
        Some(rekey_core::domain::CodeAlphabet::Zitadel)
    );
}

async fn bad_query_parameters_are_invalid_argument(db: DbKind) {
    let app = spawn_app(db).await;
    for query in [
        "/rekey/v1/outbox?limit=0",
        "/rekey/v1/outbox?limit=1001",
        "/rekey/v1/outbox?limit=ten",
        "/rekey/v1/outbox?state=lost",
        "/rekey/v1/outbox?cursor=nonsense",
        "/rekey/v1/outbox?tenant=x",
        "/rekey/v1/events?limit=-1",
        "/rekey/v1/events?since=yesterday",
        "/rekey/v1/events?cursor=WyJlIl0",
        "/rekey/v1/events?tenant_id=x",
        "/rekey/v1/events?limit=1&limit=2",
    ] {
        let resp = get(&app, query, Auth::Bearer(&app.system)).await;
        assert_ops_error(&resp, 400, 3);
    }
    // A cursor of the other listing is refused too.
    for _ in 0..2 {
        app.add_user(
            &app.t1,
            &format!("u{}@acme.test", app.now().timestamp_micros()),
        )
        .await;
    }
    let resp = get(&app, "/rekey/v1/events?limit=1", Auth::Bearer(&app.system)).await;
    let cursor = resp.ok()["next_cursor"].as_str().unwrap().to_owned();
    let resp = get(
        &app,
        &format!("/rekey/v1/outbox?cursor={cursor}"),
        Auth::Bearer(&app.system),
    )
    .await;
    assert_ops_error(&resp, 400, 3);
    let resp = get(
        &app,
        "/rekey/v1/events?limit=1000",
        Auth::Bearer(&app.system),
    )
    .await;
    assert!(resp.ok()["events"].is_array());
}
