//! SMS over real HTTP: an axum receiver standing in for the webhook endpoint and for Twilio.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine;
use rekey_core::domain::Channel;
use rekey_core::ports::ManualClock;
use rekey_notify::signature;
use rekey_notify::sms::{http_client, TwilioSms, WebhookSms};
use rekey_notify::Transport;
use secrecy::SecretString;

use crate::{at, Fixture, CODE, LINK};

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
}

#[derive(Clone)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    reply: Arc<Mutex<(StatusCode, serde_json::Value)>>,
}

/// Starts an HTTP server on a loopback port answering every POST with the configured reply.
async fn receiver(status: StatusCode, reply: serde_json::Value) -> (String, Receiver) {
    let state = Receiver {
        seen: Arc::default(),
        reply: Arc::new(Mutex::new((status, reply))),
    };
    async fn record(
        State(state): State<Receiver>,
        uri: axum::http::Uri,
        headers: HeaderMap,
        body: axum::body::Bytes,
    ) -> (StatusCode, Json<serde_json::Value>) {
        state.seen.lock().unwrap().push(Seen {
            path: uri.path().to_owned(),
            headers,
            body: body.to_vec(),
        });
        let (status, reply) = state.reply.lock().unwrap().clone();
        (status, Json(reply))
    }
    let app = Router::new()
        .route("/hooks/sms", post(record))
        .route("/2010-04-01/Accounts/{sid}/Messages.json", post(record))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, state)
}

impl Receiver {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn webhook_gets_zitadel_shaped_json_with_a_valid_signature() {
    let (base, receiver) = receiver(StatusCode::OK, serde_json::json!({})).await;
    let clock = Arc::new(ManualClock::new(at()));
    let webhook = WebhookSms::new(
        http_client(std::time::Duration::from_secs(5)).unwrap(),
        format!("{base}/hooks/sms"),
        Some(SecretString::from("hook-secret")),
        clock,
    );
    let fixture = Fixture::new("s1", Channel::Sms, "+41790000001");
    webhook.send(fixture.outgoing()).await.unwrap();

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/hooks/sms");
    assert_eq!(request.headers["content-type"], "application/json");
    let header = request.headers[signature::HEADER].to_str().unwrap();
    assert!(
        header.starts_with(&format!("t={},v1=", at().timestamp())),
        "{header}"
    );
    assert!(signature::verify(
        b"hook-secret",
        header,
        &request.body,
        at().timestamp(),
        300
    ));
    assert!(!signature::verify(
        b"other",
        header,
        &request.body,
        at().timestamp(),
        300
    ));

    let json: serde_json::Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(
        json["contextInfo"],
        serde_json::json!({
            "recipientPhoneNumber": "+41790000001",
            "eventType": "user.human.password.code.added",
            "provider": { "id": "rekey", "description": "Rekey webhook" },
        })
    );
    assert_eq!(
        json["args"],
        serde_json::json!({
            "code": CODE, "userID": "u1", "displayName": "Ada Lovelace", "orgID": "t1",
        })
    );
    assert_eq!(json["templateData"]["text"], fixture.rendered.sms);
    assert!(json["templateData"]["text"]
        .as_str()
        .unwrap()
        .contains(CODE));
    assert_eq!(json["templateData"]["url"], LINK);
    assert_eq!(json["templateData"]["subject"], "Reset password");
}

#[tokio::test]
async fn webhook_errors_retry_on_5xx_and_park_on_4xx() {
    let (base, receiver) = receiver(StatusCode::SERVICE_UNAVAILABLE, serde_json::json!({})).await;
    let webhook = WebhookSms::new(
        http_client(std::time::Duration::from_secs(5)).unwrap(),
        format!("{base}/hooks/sms"),
        None,
        Arc::new(ManualClock::new(at())),
    );
    let fixture = Fixture::new("s1", Channel::Sms, "+41790000001");
    let err = webhook.send(fixture.outgoing()).await.unwrap_err();
    assert!(!err.permanent);
    assert_eq!(err.reason, "sms webhook: HTTP 503");
    assert!(
        !receiver.seen()[0].headers.contains_key(signature::HEADER),
        "unsigned without a secret"
    );
    *receiver.reply.lock().unwrap() = (StatusCode::UNPROCESSABLE_ENTITY, serde_json::json!({}));
    let err = webhook.send(fixture.outgoing()).await.unwrap_err();
    assert!(err.permanent);

    let nobody = WebhookSms::new(
        http_client(std::time::Duration::from_secs(5)).unwrap(),
        format!("http://127.0.0.1:{}/hooks/sms", rekey_testkit::free_port()),
        None,
        Arc::new(ManualClock::new(at())),
    );
    let err = nobody.send(fixture.outgoing()).await.unwrap_err();
    assert_eq!(
        err,
        rekey_notify::SendError::transient("sms webhook: cannot connect")
    );
}

#[tokio::test]
async fn twilio_gets_the_form_with_basic_auth() {
    let (base, receiver) = receiver(
        StatusCode::CREATED,
        serde_json::json!({ "sid": "SM123", "status": "queued" }),
    )
    .await;
    let twilio = TwilioSms::new(
        http_client(std::time::Duration::from_secs(5)).unwrap(),
        Some(&base),
        "AC0123".to_owned(),
        SecretString::from("twilio-token"),
        "+15005550006".to_owned(),
    );
    let fixture = Fixture::new("s1", Channel::Sms, "+41790000001");
    twilio.send(fixture.outgoing()).await.unwrap();

    let seen = receiver.seen();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.path, "/2010-04-01/Accounts/AC0123/Messages.json");
    assert_eq!(
        request.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    let auth = request.headers["authorization"].to_str().unwrap();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(auth.strip_prefix("Basic ").unwrap())
        .unwrap();
    assert_eq!(decoded, b"AC0123:twilio-token");
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&request.body)
        .into_owned()
        .collect();
    assert_eq!(
        form,
        [
            ("To".to_owned(), "+41790000001".to_owned()),
            ("From".to_owned(), "+15005550006".to_owned()),
            ("Body".to_owned(), fixture.rendered.sms.clone()),
        ]
    );
    assert!(form[2].1.contains(CODE));
}

#[tokio::test]
async fn twilio_errors_keep_the_error_code_but_not_the_number() {
    let (base, _receiver) = receiver(
        StatusCode::BAD_REQUEST,
        serde_json::json!({
            "code": 21211,
            "message": "The 'To' number +41790000001 is not a valid phone number.",
            "status": 400,
        }),
    )
    .await;
    let twilio = TwilioSms::new(
        http_client(std::time::Duration::from_secs(5)).unwrap(),
        Some(&base),
        "AC0123".to_owned(),
        SecretString::from("twilio-token"),
        "+15005550006".to_owned(),
    );
    let fixture = Fixture::new("s1", Channel::Sms, "+41790000001");
    let err = twilio.send(fixture.outgoing()).await.unwrap_err();
    assert_eq!(
        err,
        rekey_notify::SendError::permanent("twilio: HTTP 400 (error 21211)")
    );
}
