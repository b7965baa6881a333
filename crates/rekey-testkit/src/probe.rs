//! [`StoreProbe`]: the core wired as `rekey::app::build` wires it, but over a store the test
//! chose, a [`ManualClock`] the test moves and cheap argon2; and the probes both flow and
//! black-box tests use on it — move the clock, make users through the flows, and read the rows
//! behind them (user rows, pending codes, events, outbox messages and their sealed bodies).
//!
//! The core's flow tests (`Fixture`) and the API's black-box tests (`TestApp`) each hold one and
//! dereference to it, so `f.add_user(..)`, `app.snapshot()` and `f.rekey` are one
//! implementation.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, TimeZone, Utc};
use rekey_core::crypto::{CodeMac, HashParams, KeyRing, PasswordHasher, Sealer};
use rekey_core::domain::{
    Cname, CodeId, EmailAddress, Event, MessageId, MessageKind, MessagePayload, OutboxMessage,
    OutboxState, PhoneNumber, ResetCodeRecord, Tenant, TenantId, User, UserId, UserState,
};
use rekey_core::flows::{Deps, NewUser, Rekey};
use rekey_core::policy::Config;
use rekey_core::ports::store::{EventFilter, Store};
use rekey_core::ports::{Clock, ManualClock, Random};
use secrecy::SecretString;

/// The password every fixture user with a password starts with.
pub const START_PASSWORD: &str = "correct horse battery staple";
/// A password that passes the default policy, for the happy paths.
pub const NEW_PASSWORD: &str = "a much better passphrase";

/// Where the clock starts: mid-hour and on a whole minute plus a little, so a test's
/// millisecond ticks never cross an hourly or minutely rate window by accident.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 5, 21, 10, 0).unwrap() + Duration::milliseconds(155)
}

pub struct StoreProbe {
    pub rekey: Arc<Rekey>,
    /// The parts the flows run on: the probes read rows, open sealed bodies and check hashes
    /// through these, never through the service.
    pub deps: Deps,
    pub clock: Arc<ManualClock>,
    /// Every user made by [`StoreProbe::add_user_with`], for [`StoreProbe::snapshot`].
    users: Mutex<Vec<(TenantId, UserId)>>,
}

impl StoreProbe {
    /// The service over `store`, with the clock at [`start_time`], fresh code and outbox keys
    /// drawn from `rng`, and cheap argon2 (the flows' rules, not the hash's cost, are under
    /// test).
    pub fn new(store: Arc<dyn Store>, rng: Arc<dyn Random>, config: Config) -> Self {
        let clock = Arc::new(ManualClock::new(start_time()));
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
        Self {
            rekey: Arc::new(Rekey::new(deps.clone(), config)),
            deps,
            clock,
            users: Mutex::new(Vec::new()),
        }
    }

    /// The two tenants of every fixture (so isolation leaks show): Acme (`acme.test`), then
    /// Globex (`globex.test`) a millisecond later.
    pub async fn add_tenants(&self) -> (Tenant, Tenant) {
        let t1 = self
            .rekey
            .add_tenant("test", "Acme", Cname::parse("acme.test").unwrap())
            .await
            .unwrap();
        self.tick();
        let t2 = self
            .rekey
            .add_tenant("test", "Globex", Cname::parse("globex.test").unwrap())
            .await
            .unwrap();
        (t1, t2)
    }

    /// The store behind the service, to look at rows directly.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.deps.store
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

    /// A user added through the flows, remembered for [`StoreProbe::snapshot`].
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

    /// Moves the user to `state` through the flows.
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
        self.user_row(&user.tenant_id, &user.id).await
    }

    pub async fn pending_code(&self, user: &User) -> Option<ResetCodeRecord> {
        self.pending_code_of(&user.tenant_id, &user.id).await
    }

    async fn user_row(&self, tenant: &TenantId, id: &UserId) -> User {
        self.store()
            .user(tenant, id)
            .await
            .unwrap()
            .expect("user row")
    }

    async fn pending_code_of(&self, tenant: &TenantId, id: &UserId) -> Option<ResetCodeRecord> {
        self.store().pending_code(tenant, id).await.unwrap()
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

    /// The user's events, oldest first.
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

    /// What "nothing was written" is checked against: the whole event log and outbox, and the
    /// row and pending code of every user made by [`StoreProbe::add_user_with`], in the order
    /// they were made.
    pub async fn snapshot(&self) -> Snapshot {
        let ids = self.users.lock().unwrap().clone();
        let mut users = Vec::new();
        for (tenant, id) in ids {
            let user = self.user_row(&tenant, &id).await;
            let pending = self
                .pending_code_of(&tenant, &id)
                .await
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
}

/// What [`StoreProbe::snapshot`] saw: how many events, every outbox message's id and state,
/// and every fixture user's row.
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

    /// The same snapshot without the row of `user` (made after the snapshot it is compared
    /// with).
    pub fn without_user(mut self, user: &User) -> Self {
        let id = user.id.to_string();
        self.users.retain(|row| row.id != id);
        self
    }
}
