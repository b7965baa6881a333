//! `spawn_app`: the real router on 127.0.0.1:0 over a fresh SQLite or PostgreSQL database,
//! with a clock the test moves, cheap argon2, two tenants (so isolation leaks show) and helpers
//! to make users and tokens, call the API, and look at the rows behind it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rekey_api::{AppState, ServeSettings};
use rekey_core::crypto::CodeMac;
use rekey_core::crypto::KeyRing;
use rekey_core::crypto::Sealer;
use rekey_core::crypto::{HashParams, PasswordHasher};
use rekey_core::domain::MessagePayload;
use rekey_core::domain::{Cname, EmailAddress, PhoneNumber};
use rekey_core::domain::{CodeId, MessageId, TenantId, UserId};
use rekey_core::domain::{
    Event, MessageKind, OutboxMessage, OutboxState, ResetCodeRecord, Role, Tenant, User, UserState,
};
use rekey_core::flows::{Deps, NewUser, Rekey};
use rekey_core::policy::Config;
use rekey_core::ports::store::{EventFilter, Store};
use rekey_core::ports::{ManualClock, OsRandom, Random};
use rekey_testkit::{DbKind, TestDb};
use reqwest::header::HeaderMap;
use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

pub use rekey_testkit::both_dbs;

/// The password every fixture user with a password starts with.
pub const START_PASSWORD: &str = "correct horse battery staple";
/// A password that passes the default policy, for the happy paths.
pub const NEW_PASSWORD: &str = "a much better passphrase";

/// Where the clock starts: mid-hour, so a test's small ticks never cross an hourly window.
fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 5, 21, 10, 0).unwrap() + Duration::milliseconds(155)
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub rekey: Arc<Rekey>,
    /// The parts the flows run on: the tests read rows, open sealed bodies and check hashes
    /// through these, never through the service.
    pub deps: Deps,
    pub clock: Arc<ManualClock>,
    /// Two tenants in every fixture.
    pub t1: Tenant,
    pub t2: Tenant,
    /// Token secrets: instance-wide, and one tenant admin per tenant.
    pub system: String,
    pub admin1: String,
    pub admin2: String,
    users: Mutex<Vec<(TenantId, UserId)>>,
    server: tokio::task::JoinHandle<()>,
    _proxy: Option<rekey_testkit::proxy::Proxy>,
    // Last: dropped after everything that uses the database.
    _db: TestDb,
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
    let clock = Arc::new(ManualClock::new(start_time()));
    let rng: Arc<dyn Random> = Arc::new(OsRandom);
    let codes = KeyRing::parse(&KeyRing::generate_spec("c1", rng.as_ref())).unwrap();
    let outbox = KeyRing::parse(&KeyRing::generate_spec("o1", rng.as_ref())).unwrap();
    let cheap = HashParams {
        memory_kib: 256,
        iterations: 1,
        parallelism: 1,
    };
    let hasher = PasswordHasher::new(cheap, 2, 64, rng.clone()).unwrap();
    let deps = Deps {
        store,
        clock: clock.clone(),
        rng,
        codes: CodeMac::new(codes),
        sealer: Sealer::new(outbox),
        hasher,
    };
    let rekey = Arc::new(Rekey::new(deps.clone(), config));
    let state = AppState {
        rekey: rekey.clone(),
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

    let t1 = rekey
        .add_tenant("test", "Acme", Cname::parse("acme.test").unwrap())
        .await
        .unwrap();
    clock.advance(Duration::milliseconds(1));
    let t2 = rekey
        .add_tenant("test", "Globex", Cname::parse("globex.test").unwrap())
        .await
        .unwrap();
    let token = |role: Role| {
        let rekey = rekey.clone();
        let clock = clock.clone();
        async move {
            clock.advance(Duration::milliseconds(1));
            let issued = rekey.create_token(role).await.unwrap();
            issued.secret.expose_secret().to_owned()
        }
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
        rekey,
        deps,
        clock,
        t1,
        t2,
        system,
        admin1,
        admin2,
        users: Mutex::new(Vec::new()),
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

/// What "nothing was written" is checked against: the whole event log and outbox, and every
/// fixture user's row and pending code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub events: usize,
    pub outbox: Vec<(MessageId, OutboxState)>,
    pub users: Vec<UserRow>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: String,
    pub sequence: u64,
    pub state: UserState,
    pub password_hash: Option<String>,
    pub change_required: bool,
    pub change_date: DateTime<Utc>,
    /// (id, attempts, expires_at) of the pending code.
    pub pending_code: Option<(CodeId, u32, DateTime<Utc>)>,
}

impl Snapshot {
    /// The same snapshot with attempt counters zeroed (a wrong code may change only those).
    pub fn without_attempts(mut self) -> Self {
        for user in &mut self.users {
            if let Some(code) = &mut user.pending_code {
                code.1 = 0;
            }
        }
        self
    }
}

impl TestApp {
    /// The store behind the service, to look at rows directly.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.deps.store
    }

    /// Moves the clock on by a millisecond, so ids drawn in different steps never share one
    /// (ids are the clock's milliseconds plus 22 random bits).
    pub fn tick(&self) {
        self.clock.advance(Duration::milliseconds(1));
    }

    pub fn now(&self) -> DateTime<Utc> {
        use rekey_core::ports::Clock;
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    // ------------------------------------------------------------------ fixtures

    /// An active user with [`START_PASSWORD`].
    pub async fn add_user(&self, tenant: &Tenant, email: &str) -> User {
        self.add_user_with(tenant, email, None, Some(START_PASSWORD))
            .await
    }

    /// A user in state `initial` (no password yet).
    pub async fn add_initial_user(&self, tenant: &Tenant, email: &str) -> User {
        self.add_user_with(tenant, email, None, None).await
    }

    pub async fn add_user_with(
        &self,
        tenant: &Tenant,
        email: &str,
        phone: Option<&str>,
        password: Option<&str>,
    ) -> User {
        self.tick();
        let user = self
            .rekey
            .add_user(
                "test",
                &tenant.id,
                NewUser {
                    email: EmailAddress::parse(email).unwrap(),
                    username: None,
                    phone: phone.map(|p| PhoneNumber::parse(p).unwrap()),
                    first_name: "Test".to_owned(),
                    last_name: "User".to_owned(),
                    display_name: None,
                    preferred_language: None,
                    password: password.map(|p| SecretString::from(p.to_owned())),
                },
            )
            .await
            .unwrap();
        self.users
            .lock()
            .unwrap()
            .push((user.tenant_id.clone(), user.id.clone()));
        user
    }

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

    pub async fn set_state(&self, user: &User, state: UserState) {
        self.tick();
        let current = self.user(user).await;
        self.rekey
            .set_user_state("test", &current, state)
            .await
            .unwrap();
    }

    // ------------------------------------------------------------------ rows

    /// The user's row as stored now.
    pub async fn user(&self, user: &User) -> User {
        self.store()
            .user(&user.tenant_id, &user.id)
            .await
            .unwrap()
            .expect("user row")
    }

    pub async fn pending_code(&self, user: &User) -> Option<ResetCodeRecord> {
        self.store()
            .pending_code(&user.tenant_id, &user.id)
            .await
            .unwrap()
    }

    /// Attempts counted on the user's pending code.
    pub async fn attempts(&self, user: &User) -> u32 {
        self.pending_code(user)
            .await
            .expect("pending code")
            .attempts
    }

    pub async fn events(&self) -> Vec<Event> {
        self.store().events(&EventFilter::default()).await.unwrap()
    }

    pub async fn user_events(&self, user: &User) -> Vec<Event> {
        self.store()
            .events(&EventFilter {
                tenant_id: Some(user.tenant_id.clone()),
                aggregate_id: Some(user.id.to_string()),
                ..EventFilter::default()
            })
            .await
            .unwrap()
    }

    /// Every outbox row, oldest first.
    pub async fn outbox(&self) -> Vec<OutboxMessage> {
        self.store().outbox_messages(None, 0).await.unwrap()
    }

    /// The user's outbox rows of one kind, oldest first.
    pub async fn messages(&self, user: &User, kind: MessageKind) -> Vec<OutboxMessage> {
        self.outbox()
            .await
            .into_iter()
            .filter(|m| m.user_id == user.id && m.kind == kind)
            .collect()
    }

    /// Opens a sealed outbox body.
    pub fn open(&self, message: &OutboxMessage) -> MessagePayload {
        MessagePayload::open(&self.deps.sealer, message).expect("sealed body opens")
    }

    /// The code inside the newest `password_reset`/`password_init` message of `user`.
    pub async fn sent_code(&self, user: &User) -> String {
        let message = self
            .outbox()
            .await
            .into_iter()
            .rfind(|m| {
                m.user_id == user.id
                    && matches!(
                        m.kind,
                        MessageKind::PasswordReset | MessageKind::PasswordInit
                    )
            })
            .expect("a reset message");
        self.open(&message).code.expect("code in the payload")
    }

    pub async fn snapshot(&self) -> Snapshot {
        let ids = self.users.lock().unwrap().clone();
        let mut users = Vec::new();
        for (tenant, id) in ids {
            let user = self
                .store()
                .user(&tenant, &id)
                .await
                .unwrap()
                .expect("fixture user");
            let pending = self
                .store()
                .pending_code(&tenant, &id)
                .await
                .unwrap()
                .map(|c| (c.id, c.attempts, c.expires_at));
            users.push(UserRow {
                id: user.id.to_string(),
                sequence: user.sequence,
                state: user.state,
                password_hash: user.password_hash,
                change_required: user.password_change_required,
                change_date: user.change_date,
                pending_code: pending,
            });
        }
        Snapshot {
            events: self.events().await.len(),
            outbox: self
                .outbox()
                .await
                .into_iter()
                .map(|m| (m.id, m.state))
                .collect(),
            users,
        }
    }

    /// Whether `password` is the user's stored password.
    pub async fn has_password(&self, user: &User, password: &str) -> bool {
        let Some(hash) = self.user(user).await.password_hash else {
            return false;
        };
        self.deps
            .hasher
            .verify(SecretString::from(password.to_owned()), hash)
            .await
            .unwrap()
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
