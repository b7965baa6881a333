//! Rate limits (SPEC §10): reset messages per user, unauthenticated requests per client IP and
//! per cname+email, code submissions per client IP. Each refuses with RESOURCE_EXHAUSTED and the
//! seconds left in its fixed window, writes nothing, and lets the next window through.

use chrono::{Duration, Timelike};
use rekey_core::domain::EmailAddress;
use rekey_core::domain::{Channel, MessageKind, TenantSettings};
use rekey_core::flows::{Caller, Delivery};
use rekey_core::{Error, ErrorKind};

use crate::support::{assert_err, Fixture, NEW_PASSWORD, UNKNOWN_ID};

/// Asserts a rate-limit refusal and returns its retry-after.
#[track_caller]
fn assert_limited<T: std::fmt::Debug>(result: Result<T, Error>) -> u64 {
    let err = assert_err(result, ErrorKind::ResourceExhausted, "REKEY-Rate1");
    err.retry_after
        .expect("a rate-limit refusal says when to retry")
}

/// Seconds from `f`'s clock to the end of the fixed window of `window` seconds.
fn to_window_end(f: &Fixture, window: u32) -> u64 {
    let now = f.now();
    let into = (now.minute() * 60 + now.second()) % window;
    u64::from(window - into)
}

#[tokio::test]
async fn five_messages_per_user_per_hour() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "bombed@acme.test").await;
    let neighbour = f.add_user(&f.t1, "neighbour@acme.test").await;

    // return_code sends nothing and does not count, before, between and after.
    f.return_code(&user).await;
    for _ in 0..5 {
        f.send_link(&f.admin1, &user.id).await.unwrap();
        f.return_code(&user).await;
    }
    assert_eq!(f.messages(&user, MessageKind::PasswordReset).await.len(), 5);

    // The sixth message within the hour, on any face and channel: refused, nothing written.
    let before = f.snapshot().await;
    let retry = assert_limited(f.send_link(&f.admin1, &user.id).await);
    assert_eq!(retry, to_window_end(&f, 3600));
    f.tick();
    assert_limited(
        f.rekey
            .request_password_reset(
                &f.system,
                &user.id,
                Delivery::Send {
                    channel: Channel::Sms,
                    url_template: None,
                },
            )
            .await,
    );
    assert_limited(
        f.rekey
            .send_reset_notification(&f.admin1, None, &user.id, Channel::Email)
            .await,
    );
    assert_limited(
        f.rekey
            .admin_reset_by_email(&f.admin1, &EmailAddress::parse("bombed@acme.test").unwrap())
            .await,
    );
    assert_eq!(f.snapshot().await, before, "a refusal writes nothing");

    // return_code still works, and other users have their own counter.
    f.return_code(&user).await;
    f.send_link(&f.admin1, &neighbour.id).await.unwrap();

    // One second before the window ends: still refused; at its end: a fresh window.
    let retry = to_window_end(&f, 3600);
    f.advance(Duration::seconds(i64::try_from(retry).unwrap() - 1));
    assert_eq!(assert_limited(f.send_link(&f.admin1, &user.id).await), 1);
    f.advance(Duration::seconds(1));
    f.send_link(&f.admin1, &user.id).await.unwrap();
    assert_eq!(f.messages(&user, MessageKind::PasswordReset).await.len(), 6);
}

#[tokio::test]
async fn a_tenant_may_lower_the_message_limit() {
    let f = Fixture::new().await;
    f.tick();
    f.rekey
        .set_tenant_settings(
            "test",
            &f.t1.id,
            TenantSettings {
                limits_messages_per_user_per_hour: Some(2),
                ..TenantSettings::default()
            },
        )
        .await
        .unwrap();
    let strict = f.add_user(&f.t1, "strict@acme.test").await;
    let relaxed = f.add_user(&f.t2, "relaxed@globex.test").await;
    for _ in 0..2 {
        f.send_link(&f.admin1, &strict.id).await.unwrap();
    }
    assert_limited(f.send_link(&f.admin1, &strict.id).await);
    for _ in 0..3 {
        f.send_link(&f.admin2, &relaxed.id).await.unwrap();
    }
}

#[tokio::test]
async fn thirty_code_submissions_per_ip_per_minute() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "tries@acme.test").await;
    let code = f.return_code(&user).await;
    let unknown = rekey_core::domain::UserId::parse(UNKNOWN_ID).unwrap();
    let ip = Fixture::anonymous_from("198.51.100.7");

    // Counted whatever the id names.
    for _ in 0..30 {
        assert_err(
            f.set_with_code_as(&ip, &unknown, "ABCDEFGH", NEW_PASSWORD)
                .await,
            ErrorKind::FailedPrecondition,
            "COMMAND-2M9fs",
        );
    }
    let before = f.snapshot().await;
    let retry = assert_limited(f.set_with_code_as(&ip, &user.id, &code, NEW_PASSWORD).await);
    assert_eq!(retry, to_window_end(&f, 60));
    assert_eq!(f.snapshot().await, before, "not even an attempt is counted");
    assert_eq!(f.attempts(&user).await, 0);

    // An IPv6 client is counted by its /64: its neighbours share its counter.
    let v6 = |ip: &str| Caller {
        principal: None,
        ip: Some(ip.to_owned()),
        request_id: None,
    };
    for _ in 0..30 {
        let _ = f
            .set_with_code_as(&v6("2001:db8:1:2::1"), &unknown, "ABCDEFGH", NEW_PASSWORD)
            .await;
    }
    assert_limited(
        f.set_with_code_as(&v6("2001:db8:1:2:ffff::9"), &user.id, &code, NEW_PASSWORD)
            .await,
    );
    // Another address is not limited (a wrong code: the right one is kept for later).
    assert_err(
        f.set_with_code_as(&v6("2001:db8:1:3::1"), &user.id, "ABCDEFGH", NEW_PASSWORD)
            .await,
        ErrorKind::InvalidArgument,
        "CODE-woT0xc",
    );

    f.advance(Duration::seconds(
        i64::try_from(to_window_end(&f, 60)).unwrap(),
    ));
    f.set_with_code_as(&ip, &user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn twenty_unauthenticated_requests_per_ip_per_minute() {
    let f = Fixture::new().await;
    // Different addresses each time, so the per cname+email limit stays out of the way.
    for n in 0..20 {
        f.no_auth("203.0.113.5", "acme.test", &format!("nobody{n}@acme.test"))
            .await
            .unwrap();
    }
    let retry = assert_limited(
        f.no_auth("203.0.113.5", "acme.test", "next@acme.test")
            .await,
    );
    assert_eq!(retry, to_window_end(&f, 60));
    f.no_auth("203.0.113.6", "acme.test", "next@acme.test")
        .await
        .unwrap();

    f.advance(Duration::seconds(i64::try_from(retry).unwrap()));
    f.no_auth("203.0.113.5", "acme.test", "later@acme.test")
        .await
        .unwrap();
}

#[tokio::test]
async fn five_unauthenticated_requests_per_cname_and_email_per_hour() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "known@acme.test").await;

    // Keyed by the input, case-insensitively, from any address; known or not alike.
    for (n, (cname, email)) in [
        ("acme.test", "known@acme.test"),
        ("acme.test", "Known@Acme.Test"),
        ("acme.test", "KNOWN@acme.test"),
        ("acme.test", "known@acme.test"),
        ("acme.test", "known@ACME.TEST"),
    ]
    .into_iter()
    .enumerate()
    {
        f.no_auth(&format!("192.0.2.{n}"), cname, email)
            .await
            .unwrap();
    }
    for n in 0..5 {
        f.no_auth(
            &format!("192.0.2.{}", 100 + n),
            "acme.test",
            "ghost@acme.test",
        )
        .await
        .unwrap();
    }
    // The cname counts case-insensitively too (the tenant lookup itself is exact).
    let retry = assert_limited(
        f.no_auth("192.0.2.50", "ACME.Test", "known@acme.test")
            .await,
    );
    assert_eq!(retry, to_window_end(&f, 3600));
    assert_eq!(
        assert_limited(
            f.no_auth("192.0.2.51", "acme.test", "ghost@acme.test")
                .await
        ),
        retry,
        "an unknown address is limited exactly like a known one"
    );
    // The same email in another tenant is another key.
    f.no_auth("192.0.2.52", "globex.test", "known@acme.test")
        .await
        .unwrap();
    assert_eq!(
        f.messages(&user, MessageKind::PasswordReset).await.len(),
        5,
        "five were sent; the refused sixth was not"
    );

    f.advance(Duration::seconds(i64::try_from(retry).unwrap()));
    f.no_auth("192.0.2.50", "acme.test", "known@acme.test")
        .await
        .unwrap();
}
