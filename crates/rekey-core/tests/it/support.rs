//! `Fixture`: the testkit's [`StoreProbe`] (a `Rekey` wired as `rekey::app::build` wires it,
//! with a clock the test moves and cheap argon2, and the probes that make users and read the
//! rows behind the flows) over a private in-memory SQLite store and a seeded random source; two
//! tenants (so isolation leaks show), their admins and a system principal, and helpers to make
//! tokens and call the flows.

use std::ops::Deref;
use std::sync::Arc;

use rekey_core::domain::{Channel, Details, EmailAddress, Principal, Role, Tenant, User, UserId};
use rekey_core::flows::{Caller, Delivery, ResetIssued};
use rekey_core::policy::Config;
use rekey_core::ports::store::Store;
use rekey_core::ports::{Random, SeededRandom};
use rekey_core::{Error, ErrorKind};
use rekey_store::SqliteStore;
use rekey_testkit::probe::StoreProbe;
use secrecy::{ExposeSecret, SecretString};

pub use rekey_testkit::probe::{NEW_PASSWORD, START_PASSWORD};

/// An id no fixture user has (ZITADEL's example id from seed 004).
pub const UNKNOWN_ID: &str = "69629023906488334";

/// The service and its rows ([`StoreProbe`]: `rekey`, `deps`, `clock`, users, rows, snapshot),
/// the two tenants and the callers.
pub struct Fixture {
    pub probe: StoreProbe,
    pub t1: Tenant,
    pub t2: Tenant,
    /// Authenticated callers: instance-wide, and one tenant admin per tenant.
    pub system: Caller,
    pub admin1: Caller,
    pub admin2: Caller,
}

impl Deref for Fixture {
    type Target = StoreProbe;

    fn deref(&self) -> &StoreProbe {
        &self.probe
    }
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
        let rng: Arc<dyn Random> = Arc::new(SeededRandom::new(0x5eed));
        let probe = StoreProbe::new(store, rng, config);
        let (t1, t2) = probe.add_tenants().await;
        let mut fixture = Self {
            probe,
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
                request_id: None,
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
            request_id: None,
        }
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
