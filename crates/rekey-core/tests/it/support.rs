//! `Fixture`: a [`Rekey`] wired as `rekey::app::build` wires it, but over a private in-memory
//! SQLite store, a [`ManualClock`] the test moves, a seeded random source and cheap argon2;
//! two tenants (so isolation leaks show), their admins and a system principal, and helpers to
//! make users and tokens, call the flows and read the rows behind them.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use rekey_core::crypto::CodeMac;
use rekey_core::crypto::KeyRing;
use rekey_core::crypto::Sealer;
use rekey_core::crypto::{HashParams, PasswordHasher};
use rekey_core::domain::MessagePayload;
use rekey_core::domain::{
    Channel, Details, Event, MessageKind, OutboxMessage, Principal, ResetCodeRecord, Role, Tenant,
    User, UserState,
};
use rekey_core::domain::{Cname, EmailAddress, PhoneNumber};
use rekey_core::domain::{CodeId, MessageId, UserId};
use rekey_core::flows::{Caller, Delivery, Deps, NewUser, Rekey, ResetIssued};
use rekey_core::policy::Config;
use rekey_core::ports::store::{EventFilter, Store};
use rekey_core::ports::{Clock, ManualClock, Random, SeededRandom};
use rekey_core::{Error, ErrorKind};
use rekey_store::SqliteStore;
use secrecy::{ExposeSecret, SecretString};

/// The password every fixture user with a password starts with.
pub const START_PASSWORD: &str = "correct horse battery staple";
/// A password that passes the default policy, for the happy paths.
pub const NEW_PASSWORD: &str = "a much better passphrase";
/// An id no fixture user has (ZITADEL's example id from seed 004).
pub const UNKNOWN_ID: &str = "69629023906488334";

/// Where the clock starts: mid-hour and on a whole minute plus a little, so a test's
/// millisecond ticks never cross an hourly or minutely rate window by accident.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 5, 21, 10, 0).unwrap() + Duration::milliseconds(155)
}

pub struct Fixture {
    pub rekey: Rekey,
    /// The parts the flows run on, kept to look at the rows, open sealed bodies and check hashes.
    pub deps: Deps,
    pub clock: Arc<ManualClock>,
    pub t1: Tenant,
    pub t2: Tenant,
    /// Authenticated callers: instance-wide, and one tenant admin per tenant.
    pub system: Caller,
    pub admin1: Caller,
    pub admin2: Caller,
}

impl Fixture {
    pub async fn new() -> Self {
        Self::with_config(Config::default()).await
    }

    pub async fn with_config(config: Config) -> Self {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open_in_memory()
                .await
                .expect("in-memory SQLite store"),
        );
        let clock = Arc::new(ManualClock::new(start_time()));
        let rng: Arc<dyn Random> = Arc::new(SeededRandom::new(0x5eed));
        let codes = KeyRing::parse(&KeyRing::generate_spec("c1", rng.as_ref())).unwrap();
        let outbox = KeyRing::parse(&KeyRing::generate_spec("o1", rng.as_ref())).unwrap();
        // Cheap argon2: the flows' rules, not the hash's cost, are under test.
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
        let rekey = Rekey::new(deps.clone(), config);
        let t1 = rekey
            .add_tenant("test", "Acme", Cname::parse("acme.test").unwrap())
            .await
            .unwrap();
        clock.advance(Duration::milliseconds(1));
        let t2 = rekey
            .add_tenant("test", "Globex", Cname::parse("globex.test").unwrap())
            .await
            .unwrap();
        let mut fixture = Self {
            rekey,
            deps,
            clock,
            t1,
            t2,
            system: Caller::default(),
            admin1: Caller::default(),
            admin2: Caller::default(),
        };
        fixture.system = fixture.token(Role::System).await.1;
        fixture.admin1 = fixture
            .token(Role::TenantAdmin(fixture.t1.id.clone()))
            .await
            .1;
        fixture.admin2 = fixture
            .token(Role::TenantAdmin(fixture.t2.id.clone()))
            .await
            .1;
        fixture
    }

    // ------------------------------------------------------------------ time

    /// Moves the clock on by a millisecond, so ids drawn in different steps never share one
    /// (ids are the clock's milliseconds plus random bits).
    pub fn tick(&self) {
        self.clock.advance(Duration::milliseconds(1));
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    // ------------------------------------------------------------------ principals

    /// A new token for `role`: its secret, and the caller it authenticates as.
    pub async fn token(&self, role: Role) -> (SecretString, Caller) {
        self.tick();
        let issued = self.rekey.create_token(role).await.unwrap();
        let principal = self.rekey.authenticate(&issued.secret).await.unwrap();
        (
            issued.secret,
            Caller {
                principal: Some(principal),
                ip: Some("192.0.2.10".to_owned()),
            },
        )
    }

    /// A `user`-role token for `user`.
    pub async fn user_token(&self, user: &User) -> (SecretString, Caller) {
        self.token(Role::User {
            tenant_id: user.tenant_id.clone(),
            user_id: user.id.clone(),
        })
        .await
    }

    /// The tenant admin of the user's tenant.
    pub fn admin_of(&self, user: &User) -> &Caller {
        if user.tenant_id == self.t1.id {
            &self.admin1
        } else {
            assert_eq!(user.tenant_id, self.t2.id);
            &self.admin2
        }
    }

    /// No credential, no client address (no per-IP limit applies).
    pub fn anonymous() -> Caller {
        Caller::default()
    }

    /// No credential, from `ip`.
    pub fn anonymous_from(ip: &str) -> Caller {
        Caller {
            principal: None,
            ip: Some(ip.to_owned()),
        }
    }

    // ------------------------------------------------------------------ users

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
        self.rekey
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
            .unwrap()
    }

    pub async fn set_state(&self, user: &User, state: UserState) {
        self.tick();
        let current = self.user(user).await;
        self.rekey
            .set_user_state("test", &current, state)
            .await
            .unwrap();
    }

    // ------------------------------------------------------------------ flows

    /// v2 PasswordReset with `return_code` by the tenant admin of `user`: the code.
    pub async fn return_code(&self, user: &User) -> String {
        self.tick();
        let issued = self
            .rekey
            .request_password_reset(self.admin_of(user), &user.id, Delivery::ReturnCode)
            .await
            .unwrap();
        issued
            .code
            .expect("return_code returns the code")
            .expose_secret()
            .to_owned()
    }

    /// v2 PasswordReset by email with the tenant's link, as `caller`.
    pub async fn send_link(&self, caller: &Caller, user_id: &UserId) -> Result<ResetIssued, Error> {
        self.tick();
        self.rekey
            .request_password_reset(
                caller,
                user_id,
                Delivery::Send {
                    channel: Channel::Email,
                    url_template: None,
                },
            )
            .await
    }

    /// v2 SetPassword with a verification code, unauthenticated and without a client address.
    pub async fn set_with_code(
        &self,
        user_id: &UserId,
        code: &str,
        password: &str,
    ) -> Result<Details, Error> {
        self.set_with_code_as(&Self::anonymous(), user_id, code, password)
            .await
    }

    pub async fn set_with_code_as(
        &self,
        caller: &Caller,
        user_id: &UserId,
        code: &str,
        password: &str,
    ) -> Result<Details, Error> {
        self.tick();
        self.submit_code(caller, user_id, code, password).await
    }

    /// [`Fixture::set_with_code_as`] at exactly the clock's current instant (no tick), for
    /// tests that stand on the edge of an expiry.
    pub async fn submit_code(
        &self,
        caller: &Caller,
        user_id: &UserId,
        code: &str,
        password: &str,
    ) -> Result<Details, Error> {
        self.rekey
            .set_password_with_code(
                caller,
                user_id,
                SecretString::from(code.to_owned()),
                SecretString::from(password.to_owned()),
                false,
            )
            .await
    }

    /// F5 no_auth `send_password_email`, anonymous from `ip`.
    pub async fn no_auth(&self, ip: &str, cname: &str, email: &str) -> Result<(), Error> {
        self.tick();
        self.rekey
            .request_reset_unauthenticated(
                &Self::anonymous_from(ip),
                cname,
                &EmailAddress::parse(email).unwrap(),
            )
            .await
    }

    // ------------------------------------------------------------------ rows

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.deps.store
    }

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

    /// The whole event log, oldest first.
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

    /// The code inside the newest reset or onboarding message of `user`.
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

    /// What "nothing was written" is checked against: the event log, the outbox, and the
    /// given users' rows and pending codes.
    pub async fn snapshot(&self, users: &[&User]) -> Snapshot {
        let mut rows = Vec::new();
        for user in users {
            let row = self.user(user).await;
            let code = self
                .pending_code(user)
                .await
                .map(|c| (c.id, c.attempts, c.expires_at));
            rows.push((
                row.sequence,
                row.state,
                row.password_hash,
                row.change_date,
                code,
            ));
        }
        Snapshot {
            events: self.events().await.len(),
            outbox: self.outbox().await.into_iter().map(|m| m.id).collect(),
            users: rows,
        }
    }
}

/// Sequence, state, hash, change date and (id, attempts, expiry) of the pending code.
type UserRow = (
    u64,
    UserState,
    Option<String>,
    DateTime<Utc>,
    Option<(CodeId, u32, DateTime<Utc>)>,
);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub events: usize,
    pub outbox: Vec<MessageId>,
    pub users: Vec<UserRow>,
}

/// A code of the same length that is surely not `code`.
pub fn wrong_for(code: &str) -> String {
    let first = if code.starts_with('A') { "B" } else { "A" };
    format!("{first}{}", &code[1..])
}

/// Asserts an error's kind and stable id, and returns it for more checks.
#[track_caller]
pub fn assert_err<T: std::fmt::Debug>(
    result: Result<T, Error>,
    kind: ErrorKind,
    id: &str,
) -> Error {
    let err = result.expect_err("expected an error");
    assert_eq!((err.kind, err.id), (kind, id), "{err:?}");
    err
}

/// The principal behind an authenticated caller (its actor in the audit trail is
/// `token:<token id>`).
pub fn principal(caller: &Caller) -> &Principal {
    caller.principal.as_ref().expect("an authenticated caller")
}
