//! A write whose caller goes away (client disconnect, request deadline) must run to completion
//! or roll back: it may never leave a pooled connection inside an open transaction, where
//! SQLite's single writer would refuse every later write and PostgreSQL would keep a
//! connection "idle in transaction" holding row locks.

use std::future::Future;
use std::pin::pin;
use std::task::Context;
use std::time::Duration;

use futures::task::noop_waker_ref;
use rekey_core::ports::store::{RateLimitHit, UserChange};

use crate::harness::{event, new_code, seed, t, tid, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;cancelled_writes_never_poison_the_writer);

/// Polls `fut` `polls` times, letting the database's own threads run a little in between,
/// then drops it: a caller that goes away at an arbitrary point of the write.
fn poll_then_drop<F: Future>(fut: F, polls: usize) {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(noop_waker_ref());
    for _ in 0..polls {
        if fut.as_mut().poll(&mut cx).is_ready() {
            return;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

async fn cancelled_writes_never_poison_the_writer(fx: Fixture) {
    seed(&fx).await;
    let rounds = 120usize;
    for round in 0..rounds {
        let mut change = UserChange::new(tid("t1"), uid("u1"), t(10), event("probe"));
        change.new_code = Some(new_code(&format!("c{round}"), t(10)));
        change.void_pending_codes = true;
        poll_then_drop(fx.store.change_user(&change), 1 + round % 8);
        // A deadline that runs out somewhere inside the write, as `Connect-Timeout-Ms: 1` does.
        let budget = Duration::from_micros(50 * (1 + round as u64 % 40));
        let change2 = change.clone();
        let hit = RateLimitHit {
            key: format!("cancel:{round}"),
            limit: 100,
            window_secs: 60,
            at: t(10),
        };
        let _ = tokio::time::timeout(budget, fx.store.hit_rate_limit(&hit)).await;
        let _ = tokio::time::timeout(budget, fx.store.change_user(&change2)).await;
        // A task aborted from outside at a spread of instants (busy-wait, finer than the timer).
        let store = fx.store.clone();
        let task = tokio::spawn(async move { store.change_user(&change).await });
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_micros(15 * round as u64) {
            std::hint::spin_loop();
        }
        task.abort();
        let _ = task.await;
        let probe = RateLimitHit {
            key: "after-cancel".to_owned(),
            limit: 1_000,
            window_secs: 60,
            at: t(10),
        };
        let outcome = tokio::time::timeout(Duration::from_secs(3), fx.store.hit_rate_limit(&probe))
            .await
            .unwrap_or_else(|_| panic!("round {round}: a write hung after a cancelled one"));
        outcome.unwrap_or_else(|e| panic!("round {round}: write failed after a cancel: {e:?}"));
    }
    // Many callers at once, each giving up after a different short time: cancellations land
    // while waiting for the writer, while beginning, inside, and while committing.
    let mut callers = Vec::new();
    for caller in 0..16u64 {
        let store = fx.store.clone();
        callers.push(tokio::spawn(async move {
            for i in 0..60u64 {
                let hit = RateLimitHit {
                    key: format!("busy:{caller}:{i}"),
                    limit: 100,
                    window_secs: 60,
                    at: t(10),
                };
                let budget = Duration::from_micros(100 * ((caller * 7 + i * 13) % 30));
                let _ = tokio::time::timeout(budget, store.hit_rate_limit(&hit)).await;
            }
        }));
    }
    for caller in callers {
        caller.await.unwrap();
    }
    let probe = RateLimitHit {
        key: "after-cancel".to_owned(),
        limit: 1_000,
        window_secs: 60,
        at: t(10),
    };
    tokio::time::timeout(Duration::from_secs(3), fx.store.hit_rate_limit(&probe))
        .await
        .expect("a write hung after concurrent cancelled ones")
        .expect("write failed after concurrent cancelled ones");
    assert_eq!(
        fx.scalar("SELECT count FROM rate_limits WHERE key = 'after-cancel'")
            .await,
        rounds as i64 + 1
    );
}

/// `ping` (behind `/readyz`) goes through the write path: a database whose write lock cannot
/// be had is not ready, and says so within the store's wait bound instead of hanging.
#[tokio::test]
async fn sqlite_ping_fails_while_the_write_lock_is_held_elsewhere() {
    use rekey_core::ports::store::StoreError;
    use sqlx::Connection;

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("rekey.db").display());
    let store = rekey_store::connect(&url).await.unwrap();
    store.ping().await.unwrap();

    let mut other = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let err = tokio::time::timeout(Duration::from_secs(6), store.ping())
        .await
        .expect("ping is bounded")
        .unwrap_err();
    assert!(matches!(err, StoreError::Unavailable), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );

    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
    store.ping().await.unwrap();
}
