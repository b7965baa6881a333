//! Production PostgreSQL: TLS as the URL's `sslmode` asks (rustls; the test server has SSL on)
//! and the pool bounded by `database.max_connections`. PostgreSQL only: SQLite has neither.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rekey_core::ports::store::{Store, UserChange};
use rekey_store::{ConnectError, DatabaseOptions};
use rekey_testkit::TestDb;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

use crate::harness::{event, seed, t, tid, uid, Db, Fixture};

const PASSWORD: &str = "secret-pw-4711";

/// The test database's URL with these query parameters added (and, when `host` is given, that
/// host instead of the URL's).
fn with_params(url: &str, host: Option<&str>, params: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(url).unwrap();
    if let Some(host) = host {
        url.set_host(Some(host)).unwrap();
    }
    for (key, value) in params {
        url.query_pairs_mut().append_pair(key, value);
    }
    url.to_string()
}

/// The test URL with a password in it: the server here trusts local connections, so the
/// password is never checked, but every error text is searched for it.
fn with_password(url: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_password(Some(PASSWORD)).unwrap();
    url.to_string()
}

/// A store on `url` shaped by `options`, with a raw view of the same database (the test
/// database's own URL: no TLS parameters, no application name).
async fn fixture(db: &TestDb, url: &str, options: DatabaseOptions) -> Fixture {
    let store = rekey_store::connect_with(url, &options)
        .await
        .unwrap_or_else(|e| panic!("connect: {}", error_text(&e)));
    let raw = PgPoolOptions::new()
        .max_connections(2)
        .connect(db.url())
        .await
        .unwrap();
    Fixture {
        store,
        db: Db::Pg(raw),
        url: url.to_owned(),
    }
}

/// The error and its causes, as the binary prints them.
fn error_text(err: &ConnectError) -> String {
    let mut text = format!("{err}");
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn assert_no_url(err: &ConnectError, url: &str) {
    let text = format!("{} {err:?}", error_text(err));
    assert!(!text.contains(PASSWORD), "{text}");
    assert!(!text.contains(url), "{text}");
}

/// The store's sessions on this database (named `rekey` in `pg_stat_activity`): how many, and
/// how many of them are encrypted.
async fn store_sessions(fx: &Fixture) -> (i64, i64) {
    let Db::Pg(pool) = &fx.db else { unreachable!() };
    sqlx::query_as(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE s.ssl) \
         FROM pg_stat_activity a JOIN pg_stat_ssl s ON s.pid = a.pid \
         WHERE a.datname = current_database() AND a.application_name = 'rekey'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Whether a session opened with `url` (as sqlx reads it) is encrypted, asked of the session
/// itself.
async fn session_is_encrypted(url: &str) -> bool {
    let mut conn = PgConnection::connect(url).await.unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    ssl
}

async fn close(fx: Fixture) {
    if let Db::Pg(pool) = &fx.db {
        pool.close().await;
    }
}

#[tokio::test]
async fn sslmode_require_encrypts_every_session() {
    let db = TestDb::postgres();
    let url = with_params(db.url(), None, &[("sslmode", "require")]);
    assert!(session_is_encrypted(&url).await);
    let fx = fixture(&db, &url, DatabaseOptions::default()).await;
    seed(&fx).await;
    let change = UserChange::new(tid("t1"), uid("u1"), t(1), event("user.touched"));
    fx.store.change_user(&change).await.unwrap();
    assert_eq!(
        fx.store
            .user(&tid("t1"), &uid("u1"))
            .await
            .unwrap()
            .unwrap()
            .sequence,
        2
    );
    let (sessions, encrypted) = store_sessions(&fx).await;
    assert!(sessions >= 1, "the store holds no session");
    assert_eq!(encrypted, sessions, "every store session is encrypted");
    close(fx).await;

    // The check can tell: with `sslmode=disable` the sessions are plain (another database,
    // so that no session of the store above is counted).
    let db = TestDb::postgres();
    let plain = with_params(db.url(), None, &[("sslmode", "disable")]);
    assert!(!session_is_encrypted(&plain).await);
    let fx = fixture(&db, &plain, DatabaseOptions::default()).await;
    fx.store.ping().await.unwrap();
    let (sessions, encrypted) = store_sessions(&fx).await;
    assert!(sessions >= 1);
    assert_eq!(encrypted, 0);
    close(fx).await;
}

#[tokio::test]
async fn verify_full_without_the_servers_root_fails_clearly() {
    let db = TestDb::postgres();
    let base = with_password(db.url());

    // No sslrootcert: only the built-in public roots, which do not vouch for this server.
    let url = with_params(&base, None, &[("sslmode", "verify-full")]);
    let err = rekey_store::connect(&url).await.err().unwrap();
    assert!(matches!(err, ConnectError::Tls(_)), "{}", error_text(&err));
    let text = error_text(&err);
    assert!(
        text.contains("sslmode") && text.contains("certificate"),
        "{text}"
    );
    assert_no_url(&err, &url);

    // A root that did not issue the server's certificate.
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("other-ca.pem");
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(&wrong, other.cert.pem()).unwrap();
    let wrong = wrong.to_str().unwrap();
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = with_params(&base, None, &[("sslmode", mode), ("sslrootcert", wrong)]);
        let err = rekey_store::connect(&url).await.err().unwrap();
        assert!(
            matches!(err, ConnectError::Tls(_)),
            "{mode}: {}",
            error_text(&err)
        );
        assert!(error_text(&err).contains("UnknownIssuer"), "{mode}");
        assert_no_url(&err, &url);
    }

    // An sslmode libpq does not know is refused before any connection, naming the value only.
    let url = with_params(&base, None, &[("sslmode", "sometimes")]);
    let err = rekey_store::connect(&url).await.err().unwrap();
    assert!(
        error_text(&err).contains("sometimes"),
        "{}",
        error_text(&err)
    );
    assert_no_url(&err, &url);

    // A root certificate file that is not there is named as such, before any connection.
    let url = with_params(
        &base,
        None,
        &[
            ("sslmode", "verify-full"),
            ("sslrootcert", "/nonexistent/root.pem"),
        ],
    );
    let err = rekey_store::connect(&url).await.err().unwrap();
    assert!(
        matches!(err, ConnectError::RootCert { .. }),
        "{}",
        error_text(&err)
    );
    let text = error_text(&err);
    assert!(text.contains("/nonexistent/root.pem"), "{text}");
    assert_no_url(&err, &url);
}

/// With the server's own certificate as the root: `verify-full` connects when the URL names
/// the host the certificate is for, and refuses another name for the same server. Here the
/// server's certificate is Debian's snakeoil one, made for `localhost` (DNS only), so
/// `127.0.0.1` is "another name".
#[tokio::test]
async fn verify_full_with_the_servers_certificate() {
    let db = TestDb::postgres();
    let probe = PgPoolOptions::new()
        .max_connections(1)
        .connect(db.url())
        .await
        .unwrap();
    let cert_file: String = sqlx::query_scalar("SHOW ssl_cert_file")
        .fetch_one(&probe)
        .await
        .unwrap();
    probe.close().await;
    let readable = std::path::Path::new(&cert_file).is_absolute()
        && std::fs::read(&cert_file)
            .is_ok_and(|pem| String::from_utf8_lossy(&pem).contains("-----BEGIN CERTIFICATE-----"));
    let host = url::Url::parse(db.url())
        .unwrap()
        .host_str()
        .unwrap()
        .to_owned();
    if !readable || !["127.0.0.1", "localhost", "[::1]"].contains(&host.as_str()) {
        eprintln!(
            "skipping: the server's certificate ({cert_file}) is not readable here, or the \
             server ({host}) is not local"
        );
        return;
    }
    let cert_names_localhost = std::process::Command::new("openssl")
        .args([
            "x509",
            "-noout",
            "-checkhost",
            "localhost",
            "-in",
            &cert_file,
        ])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).contains("does match"))
        .unwrap_or(true);
    assert!(
        cert_names_localhost,
        "the server's certificate is not for localhost"
    );

    let by_name = with_params(
        db.url(),
        Some("localhost"),
        &[("sslmode", "verify-full"), ("sslrootcert", &cert_file)],
    );
    assert!(session_is_encrypted(&by_name).await);
    let fx = fixture(&db, &by_name, DatabaseOptions::default()).await;
    seed(&fx).await;
    let (sessions, encrypted) = store_sessions(&fx).await;
    assert!(sessions >= 1);
    assert_eq!(encrypted, sessions);
    close(fx).await;

    let by_address = with_params(
        &with_password(db.url()),
        Some("127.0.0.1"),
        &[("sslmode", "verify-full"), ("sslrootcert", &cert_file)],
    );
    let err = rekey_store::connect(&by_address).await.err().unwrap();
    assert!(matches!(err, ConnectError::Tls(_)), "{}", error_text(&err));
    assert!(
        error_text(&err).contains("not valid for name"),
        "{}",
        error_text(&err)
    );
    assert_no_url(&err, &by_address);

    // `verify-ca` (and `require` with a root, which is `verify-ca`) connects by the name too.
    for mode in ["verify-ca", "require"] {
        let url = with_params(
            db.url(),
            Some("localhost"),
            &[("sslmode", mode), ("sslrootcert", &cert_file)],
        );
        let store = rekey_store::connect(&url).await.unwrap();
        store.ping().await.unwrap();
    }
    // By the address, `verify-ca` should connect too (libpq's does: it checks no name), but
    // sqlx 0.8.6 checks the name anyway with rustls >= 0.23.24: its `NoHostnameTlsVerifier`
    // misses rustls's `NotValidForNameContext` (sqlx issue #3793, fixed by sqlx PR #3861
    // after 0.8.6). Stricter, never weaker; documented at `rekey_store::connect`. When this
    // assertion fails after an sqlx upgrade, verify-ca works as libpq documents it: turn the
    // assertion around and drop the note there.
    for mode in ["verify-ca", "require"] {
        let url = with_params(
            &with_password(db.url()),
            Some("127.0.0.1"),
            &[("sslmode", mode), ("sslrootcert", &cert_file)],
        );
        let err = rekey_store::connect(&url).await.err().unwrap();
        assert!(
            error_text(&err).contains("not valid for name"),
            "{mode}: {}",
            error_text(&err)
        );
        assert_no_url(&err, &url);
    }
}

/// With `max_connections` = N, the store never holds more than N sessions, and does reach N
/// under load: writers blocked behind a table lock each hold a connection, the rest wait for
/// one.
#[tokio::test]
async fn max_connections_bounds_the_pool() {
    const N: u32 = 3;
    let db = TestDb::postgres();
    let fx = fixture(&db, db.url(), DatabaseOptions { max_connections: N }).await;
    seed(&fx).await;
    let lock = fx.hold_write_lock().await;
    let writers: Vec<_> = (0..12_i64)
        .map(|i| {
            let store: Arc<dyn Store> = fx.store.clone();
            tokio::spawn(async move {
                let change =
                    UserChange::new(tid("t1"), uid("u1"), t(10 + i), event("user.touched"));
                // Some may time out waiting for the lock or a connection; only the count matters.
                let _ = store.change_user(&change).await;
            })
        })
        .collect();
    let started = Instant::now();
    let mut most = 0;
    while started.elapsed() < Duration::from_millis(1500) {
        let (sessions, _) = store_sessions(&fx).await;
        assert!(
            sessions <= i64::from(N),
            "{sessions} sessions open, limit {N}"
        );
        most = most.max(sessions);
        if most == i64::from(N) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    drop(lock);
    for writer in writers {
        writer.await.unwrap();
    }
    let (sessions, _) = store_sessions(&fx).await;
    assert!(
        sessions <= i64::from(N),
        "{sessions} sessions open, limit {N}"
    );
    assert_eq!(most, i64::from(N), "the pool never reached {N} connections");
    close(fx).await;
}

#[tokio::test]
async fn a_pool_of_no_connections_is_refused() {
    let err = rekey_store::connect_with(
        "postgres://u:secret-pw@127.0.0.1:1/x",
        &DatabaseOptions { max_connections: 0 },
    )
    .await
    .err()
    .unwrap();
    assert!(matches!(err, ConnectError::InvalidSetting(_)), "{err:?}");
    assert_eq!(DatabaseOptions::default().max_connections, 16);
}
