//! `spawn_app`: the real router on 127.0.0.1:0 over a fresh SQLite or PostgreSQL database,
//! with the testkit's [`StoreProbe`] behind it (a clock the test moves, cheap argon2, users made
//! through the flows and the rows behind them), two tenants (so isolation leaks show), and
//! helpers to make tokens and call the API.

use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use rekey_api::{AppState, ServeSettings};
use rekey_core::domain::{Role, Tenant, User};
use rekey_core::policy::Config;
use rekey_core::ports::{OsRandom, Random};
use rekey_testkit::probe::StoreProbe;
use rekey_testkit::{DbKind, TestDb};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::Value;

pub use rekey_testkit::both_dbs;
pub use rekey_testkit::probe::{NEW_PASSWORD, START_PASSWORD};

/// The server, an HTTP client for it, and what lies behind it ([`StoreProbe`]: `rekey`,
/// `deps`, `clock`, users, rows, snapshot).
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub probe: StoreProbe,
    /// Two tenants in every fixture.
    pub t1: Tenant,
    pub t2: Tenant,
    /// Token secrets: instance-wide, and one tenant admin per tenant.
    pub system: String,
    pub admin1: String,
    pub admin2: String,
    server: tokio::task::JoinHandle<()>,
    _proxy: Option<rekey_testkit::proxy::Proxy>,
    // Last: dropped after everything that uses the database.
    _db: TestDb,
}

impl Deref for TestApp {
    type Target = StoreProbe;

    fn deref(&self) -> &StoreProbe {
        &self.probe
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app(kind: DbKind) -> TestApp {
    spawn_app_with(kind, Config::default()).await
}

pub async fn spawn_app_with(kind: DbKind, config: Config) -> TestApp {
    let db = TestDb::new(kind);
    let url = db.url().to_owned();
    spawn_app_on(db, &url, config, None).await
}

/// An app whose PostgreSQL traffic passes a proxy that delays every chunk by `delay`.
pub async fn spawn_app_behind_slow_network(delay: std::time::Duration) -> TestApp {
    let db = TestDb::new(DbKind::Postgres);
    let mut url = url::Url::parse(db.url()).unwrap();
    let target = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let target = tokio::net::lookup_host(target)
        .await
        .unwrap()
        .next()
        .unwrap();
    let proxy = rekey_testkit::proxy::Proxy::start(target, delay).await;
    url.set_host(Some("127.0.0.1")).unwrap();
    url.set_port(Some(proxy.addr().port())).unwrap();
    spawn_app_on(db, url.as_str(), Config::default(), Some(proxy)).await
}

async fn spawn_app_on(
    db: TestDb,
    url: &str,
    config: Config,
    proxy: Option<rekey_testkit::proxy::Proxy>,
) -> TestApp {
    let kind = if url.starts_with("sqlite") {
        DbKind::Sqlite
    } else {
        DbKind::Postgres
    };
    let store = rekey_store::connect(url)
        .await
        .unwrap_or_else(|e| panic!("opening the {} store: {e}", kind.name()));
    let rng: Arc<dyn Random> = Arc::new(OsRandom);
    let probe = StoreProbe::new(store, rng, config);
    let state = AppState {
        rekey: probe.rekey.clone(),
        settings: Arc::new(ServeSettings::default()),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = rekey_api::router(state);
    let server = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await
        .unwrap();
    });

    let (t1, t2) = probe.add_tenants().await;
    let token = async |role: Role| {
        probe.tick();
        let issued = probe.rekey.create_token(role).await.unwrap();
        issued.secret.expose_secret().to_owned()
    };
    let system = token(Role::System).await;
    let admin1 = token(Role::TenantAdmin(t1.id.clone())).await;
    let admin2 = token(Role::TenantAdmin(t2.id.clone())).await;
    TestApp {
        base: format!("http://{addr}"),
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        probe,
        t1,
        t2,
        system,
        admin1,
        admin2,
        server,
        _proxy: proxy,
        _db: db,
    }
}

/// A decoded HTTP answer.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Resp {
    /// Asserts 200 and returns the body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, StatusCode::OK, "expected 200, got {self:#?}");
        &self.json
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    /// F5's scheme, also accepted on ZITADEL routes.
    ApiToken(&'a str),
}

/// Asserts a ZITADEL REST error: status, gRPC code, detail id and type, and the
/// `"<text> (<id>)"` message (with the expected text when given).
#[track_caller]
pub fn assert_error(resp: &Resp, status: u16, code: i64, id: &str, text: Option<&str>) {
    assert_eq!(resp.status.as_u16(), status, "status of {resp:#?}");
    let body = &resp.json;
    assert_eq!(body["code"], code, "code of {resp:#?}");
    let detail = &body["details"][0];
    assert_eq!(detail["id"], id, "details[0].id of {resp:#?}");
    assert_eq!(
        detail["@type"], "type.googleapis.com/zitadel.v1.ErrorDetail",
        "details[0][@type] of {resp:#?}"
    );
    let detail_text = detail["message"].as_str().expect("details[0].message");
    if let Some(text) = text {
        assert_eq!(detail_text, text, "details[0].message of {resp:#?}");
    }
    assert_eq!(
        body["message"],
        format!("{detail_text} ({id})"),
        "message of {resp:#?}"
    );
    assert_eq!(body["details"].as_array().map(Vec::len), Some(1));
}

impl TestApp {
    /// A `user`-role token for `user`.
    pub async fn user_token(&self, user: &User) -> String {
        self.tick();
        let issued = self
            .rekey
            .create_token(Role::User {
                tenant_id: user.tenant_id.clone(),
                user_id: user.id.clone(),
            })
            .await
            .unwrap();
        issued.secret.expose_secret().to_owned()
    }

    // ------------------------------------------------------------------ HTTP

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// POSTs a JSON body.
    pub async fn post(&self, path: &str, auth: Auth<'_>, body: &Value) -> Resp {
        self.post_raw(path, auth, &[], serde_json::to_vec(body).unwrap())
            .await
    }

    /// POSTs raw bytes with extra headers.
    pub async fn post_raw(
        &self,
        path: &str,
        auth: Auth<'_>,
        headers: &[(&str, &str)],
        body: impl Into<reqwest::Body>,
    ) -> Resp {
        self.tick();
        let mut request = self
            .client
            .post(self.url(path))
            .header("content-type", "application/json")
            .body(body);
        request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.header("authorization", format!("Bearer {token}")),
            Auth::ApiToken(token) => request.header("authorization", format!("APIToken {token}")),
        };
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        read(request.send().await.expect("request sent")).await
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.tick();
        read(self.client.get(self.url(path)).send().await.unwrap()).await
    }

    // ------------------------------------------------------------------ operations

    /// v2 PasswordReset.
    pub async fn password_reset(&self, user_id: &str, auth: Auth<'_>, body: &Value) -> Resp {
        self.post(&format!("/v2/users/{user_id}/password_reset"), auth, body)
            .await
    }

    /// v2 PasswordReset with `returnCode` by the tenant admin of `user`: the code.
    pub async fn return_code(&self, user: &User) -> String {
        let admin = self.admin_of(user);
        let resp = self
            .password_reset(
                user.id.as_str(),
                Auth::Bearer(admin),
                &serde_json::json!({"returnCode": {}}),
            )
            .await;
        resp.ok()["verificationCode"]
            .as_str()
            .expect("verificationCode")
            .to_owned()
    }

    /// v2 SetPassword with a verification code, unauthenticated.
    pub async fn set_with_code(&self, user_id: &str, code: &str, password: &str) -> Resp {
        self.post(
            &format!("/v2/users/{user_id}/password"),
            Auth::None,
            &serde_json::json!({
                "newPassword": {"password": password},
                "verificationCode": code,
            }),
        )
        .await
    }

    /// The tenant admin token of the user's tenant.
    pub fn admin_of(&self, user: &User) -> &str {
        if user.tenant_id == self.t1.id {
            &self.admin1
        } else {
            assert_eq!(user.tenant_id, self.t2.id);
            &self.admin2
        }
    }
}

async fn read(response: reqwest::Response) -> Resp {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("response body");
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    };
    Resp {
        status,
        headers,
        text,
        json,
    }
}
