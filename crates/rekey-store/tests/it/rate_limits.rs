use rekey_core::domain::OutboxState;
use rekey_core::ports::store::{RateLimitHit, StoreError, UserChange};

use crate::harness::{event, message, new_code, seed, t, tid, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    counts_up_to_the_limit,
    window_rolls_over,
    late_hit_counts_toward_the_newer_window,
    keys_are_independent,
    rate_limited_change_rolls_back_everything,
    ended_windows_are_deleted,
    a_full_counter_refuses_without_a_write,
);

fn hit(key: &str, limit: u32, secs: i64) -> RateLimitHit {
    RateLimitHit {
        key: key.to_owned(),
        limit,
        window_secs: 3600,
        at: t(secs),
    }
}

async fn counter(fx: &Fixture, key: &str) -> i64 {
    fx.scalar(&format!(
        "SELECT count FROM rate_limits WHERE key = '{key}'"
    ))
    .await
}

async fn counts_up_to_the_limit(fx: Fixture) {
    for secs in [0, 10, 20] {
        fx.store
            .hit_rate_limit(&hit("ip:1", 3, secs))
            .await
            .unwrap();
    }
    assert_eq!(counter(&fx, "ip:1").await, 3);
    let err = fx
        .store
        .hit_rate_limit(&hit("ip:1", 3, 600))
        .await
        .unwrap_err();
    // t(0) is on an hour boundary: at t(600) the window has 3000 s left.
    assert!(
        matches!(
            err,
            StoreError::RateLimited {
                retry_after_secs: 3000
            }
        ),
        "{err:?}"
    );
    // A refused hit is not counted.
    assert_eq!(counter(&fx, "ip:1").await, 3);
    assert!(fx.store.hit_rate_limit(&hit("ip:1", 3, 601)).await.is_err());
}

async fn window_rolls_over(fx: Fixture) {
    for secs in [0, 1] {
        fx.store.hit_rate_limit(&hit("k", 2, secs)).await.unwrap();
    }
    assert!(fx.store.hit_rate_limit(&hit("k", 2, 3599)).await.is_err());
    // The next window starts afresh.
    fx.store.hit_rate_limit(&hit("k", 2, 3600)).await.unwrap();
    assert_eq!(counter(&fx, "k").await, 1);
    assert_eq!(
        fx.scalar("SELECT window_start FROM rate_limits WHERE key = 'k'")
            .await,
        t(3600).timestamp()
    );
    fx.store.hit_rate_limit(&hit("k", 2, 7000)).await.unwrap();
    assert!(fx.store.hit_rate_limit(&hit("k", 2, 7100)).await.is_err());
}

async fn late_hit_counts_toward_the_newer_window(fx: Fixture) {
    // A replica with a lagging clock must not reset the counter of the current window.
    fx.store.hit_rate_limit(&hit("k", 2, 3600)).await.unwrap();
    fx.store.hit_rate_limit(&hit("k", 2, 3599)).await.unwrap();
    assert_eq!(counter(&fx, "k").await, 2);
    assert_eq!(
        fx.scalar("SELECT window_start FROM rate_limits WHERE key = 'k'")
            .await,
        t(3600).timestamp()
    );
    assert!(fx.store.hit_rate_limit(&hit("k", 2, 3601)).await.is_err());
}

async fn keys_are_independent(fx: Fixture) {
    fx.store.hit_rate_limit(&hit("a", 1, 0)).await.unwrap();
    fx.store.hit_rate_limit(&hit("b", 1, 0)).await.unwrap();
    assert!(fx.store.hit_rate_limit(&hit("a", 1, 1)).await.is_err());
    assert_eq!(counter(&fx, "b").await, 1);
}

async fn rate_limited_change_rolls_back_everything(fx: Fixture) {
    seed(&fx).await;
    let request = |secs: i64, code: &str| {
        let mut change = UserChange::new(tid("t1"), uid("u1"), t(secs), event("user.code.added"));
        change.rate_limit = Some(RateLimitHit {
            key: "messages:t1:u1".to_owned(),
            limit: 1,
            window_secs: 3600,
            at: t(secs),
        });
        change.void_pending_codes = true;
        change.new_code = Some(new_code(code, t(secs)));
        change.outbox = vec![message("t1", "u1", code, OutboxState::Pending)];
        change
    };
    assert_eq!(
        fx.store
            .change_user(&request(10, "c1"))
            .await
            .unwrap()
            .sequence,
        2
    );

    let before = fx.snapshot().await;
    let err = fx.store.change_user(&request(20, "c2")).await.unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::RateLimited {
                retry_after_secs: 3580
            }
        ),
        "{err:?}"
    );
    assert_eq!(fx.snapshot().await, before);
    assert_eq!(counter(&fx, "messages:t1:u1").await, 1);
    let user = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.sequence, 2);
    assert_eq!(fx.pending_id("t1", "u1").await, "c1");

    // The next window allows it again.
    assert_eq!(
        fx.store
            .change_user(&request(3600, "c3"))
            .await
            .unwrap()
            .sequence,
        3
    );
}

async fn ended_windows_are_deleted(fx: Fixture) {
    let minute = |key: &str, secs: i64| RateLimitHit {
        key: key.to_owned(),
        limit: 10,
        window_secs: 60,
        at: t(secs),
    };
    fx.store.hit_rate_limit(&minute("m", 5)).await.unwrap();
    fx.store.hit_rate_limit(&hit("h", 10, 5)).await.unwrap();
    // The minute window [0, 60) is still running at 59 s.
    assert_eq!(fx.store.purge_rate_limits(t(59)).await.unwrap(), 0);
    assert_eq!(fx.count("rate_limits").await, 2);
    // At 60 s it has ended; the hour window has not.
    assert_eq!(fx.store.purge_rate_limits(t(60)).await.unwrap(), 1);
    assert_eq!(counter(&fx, "h").await, 1);
    assert_eq!(fx.count("rate_limits").await, 1);
    // A counter that rolled into a new window lives until that window ends.
    fx.store.hit_rate_limit(&hit("h", 10, 3700)).await.unwrap();
    assert_eq!(fx.store.purge_rate_limits(t(3600)).await.unwrap(), 0);
    assert_eq!(fx.store.purge_rate_limits(t(7200)).await.unwrap(), 1);
    assert_eq!(fx.count("rate_limits").await, 0);
}

/// A flood that is being refused must not queue for the write lock on every refusal: with the
/// database's write lock held elsewhere, a hit on a full counter is still refused at once.
async fn a_full_counter_refuses_without_a_write(fx: Fixture) {
    for secs in [0, 1] {
        fx.store
            .hit_rate_limit(&hit("flood", 2, secs))
            .await
            .unwrap();
    }
    let _lock = fx.hold_write_lock().await;
    let started = std::time::Instant::now();
    let err = fx
        .store
        .hit_rate_limit(&hit("flood", 2, 2))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::RateLimited { .. }), "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(3), event("x"));
    change.rate_limit = Some(hit("flood", 2, 3));
    let err = fx.store.change_user(&change).await.unwrap_err();
    assert!(matches!(err, StoreError::RateLimited { .. }), "{err:?}");
}
