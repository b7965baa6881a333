use std::sync::Arc;

use chrono::Duration;
use rekey_core::domain::{Channel, CodeKind, MessageKind};
use rekey_core::ports::store::{AttemptReservation, PasswordChange, Store, StoreError, UserChange};

use crate::harness::{cid, event, issue_code, new_code, seed, t, tid, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    issued_code_is_pending,
    consume_succeeds_once,
    concurrent_consumes_exactly_one_wins,
    concurrent_new_codes_all_land_and_one_stays_pending,
    a_code_issued_during_a_password_change_is_voided_unless_it_came_after,
    new_code_voids_previous,
    pending_code_is_per_user_and_tenant,
    concurrent_reservations_stop_at_the_cap,
    reservation_outcomes_and_refund,
    the_last_reservation_inserts_its_outbox_rows_with_it,
);

fn consume(tenant: &str, user: &str, code: &str, secs: i64) -> UserChange {
    let mut change = UserChange::new(
        tid(tenant),
        uid(user),
        t(secs),
        event("user.password.changed"),
    );
    change.consume_code = Some(cid(code));
    change.void_pending_codes = true;
    change
}

async fn issued_code_is_pending(fx: Fixture) {
    seed(&fx).await;
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(10), event("user.code.added"));
    let mut code = new_code("c1", t(10));
    code.kind = CodeKind::Init;
    code.mac = (0..32).collect();
    change.new_code = Some(code.clone());
    fx.store.change_user(&change).await.unwrap();

    let pending = fx.pending("t1", "u1").await;
    assert_eq!(pending.id, "c1");
    assert_eq!(pending.tenant_id, tid("t1"));
    assert_eq!(pending.user_id, uid("u1"));
    assert_eq!(pending.key_id, "k1");
    assert_eq!(pending.mac, code.mac);
    assert_eq!(pending.kind, CodeKind::Init);
    assert_eq!(pending.created_at, t(10));
    assert_eq!(pending.expires_at, t(10) + Duration::hours(1));
    assert_eq!(pending.attempts, 0);
    assert_eq!(pending.used_at, None);
}

async fn consume_succeeds_once(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(10)).await;
    let details = fx
        .store
        .change_user(&consume("t1", "u1", "c1", 20))
        .await
        .unwrap();
    assert_eq!(details.sequence, 3);
    assert_eq!(
        fx.store.pending_code(&tid("t1"), &uid("u1")).await.unwrap(),
        None
    );
    assert_eq!(
        fx.text("SELECT outcome FROM reset_codes WHERE id = 'c1'")
            .await
            .as_deref(),
        Some("used")
    );
    assert_eq!(
        fx.scalar("SELECT used_at FROM reset_codes WHERE id = 'c1'")
            .await,
        t(20).timestamp_micros()
    );

    let before = fx.snapshot().await;
    let err = fx
        .store
        .change_user(&consume("t1", "u1", "c1", 30))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::CodeGone), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
    // Nor can it be consumed under another user or tenant.
    issue_code(&fx, "t1", "u2", "c2", t(40)).await;
    let err = fx
        .store
        .change_user(&consume("t1", "u1", "c2", 50))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::CodeGone), "{err:?}");
}

async fn concurrent_consumes_exactly_one_wins(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(10)).await;
    let store: Arc<dyn Store> = fx.store.clone();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.change_user(&consume("t1", "u1", "c1", 20 + i)).await })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(StoreError::CodeGone) => {}
            Err(other) => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(won, 1);
    let user = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.sequence, 3, "one event for the one winner");
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM events WHERE aggregate_id = 'u1'")
            .await,
        3
    );
}

async fn new_code_voids_previous(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(10)).await;
    issue_code(&fx, "t1", "u1", "c2", t(20)).await;
    let pending = fx.pending("t1", "u1").await;
    assert_eq!(pending.id, "c2");
    assert_eq!(
        fx.text("SELECT outcome FROM reset_codes WHERE id = 'c1'")
            .await
            .as_deref(),
        Some("voided")
    );
    assert_eq!(
        fx.store
            .reserve_code_attempt(&tid("t1"), &uid("u1"), &cid("c1"), 5, &[])
            .await
            .unwrap(),
        AttemptReservation::Gone
    );
    let err = fx
        .store
        .change_user(&consume("t1", "u1", "c1", 30))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::CodeGone), "{err:?}");

    // A new code replaces the pending one even when the change does not ask to void.
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(40), event("user.code.added"));
    change.new_code = Some(new_code("c3", t(40)));
    fx.store.change_user(&change).await.unwrap();
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM reset_codes WHERE used_at IS NULL")
            .await,
        1
    );
    assert_eq!(fx.pending_id("t1", "u1").await, "c3");
    // Voiding without a new code leaves none.
    let mut void = UserChange::new(tid("t1"), uid("u1"), t(50), event("user.codes.voided"));
    void.void_pending_codes = true;
    fx.store.change_user(&void).await.unwrap();
    assert_eq!(
        fx.store.pending_code(&tid("t1"), &uid("u1")).await.unwrap(),
        None
    );
}

async fn pending_code_is_per_user_and_tenant(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(10)).await;
    issue_code(&fx, "t2", "u3", "c1", t(10)).await;
    assert_eq!(
        fx.store.pending_code(&tid("t1"), &uid("u2")).await.unwrap(),
        None
    );
    assert_eq!(
        fx.store.pending_code(&tid("t2"), &uid("u1")).await.unwrap(),
        None
    );
    // Consuming t1's c1 leaves t2's c1 (same code id, other tenant) pending.
    fx.store
        .change_user(&consume("t1", "u1", "c1", 20))
        .await
        .unwrap();
    let other = fx.pending("t2", "u3").await;
    assert_eq!((other.id.as_str(), other.used_at), ("c1", None));
    // Issuing for u2 does not void u1's or u3's codes.
    issue_code(&fx, "t1", "u2", "c9", t(30)).await;
    assert!(fx
        .store
        .pending_code(&tid("t2"), &uid("u3"))
        .await
        .unwrap()
        .is_some());
}

async fn concurrent_reservations_stop_at_the_cap(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(10)).await;
    let before_seq = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap()
        .sequence;
    let events_before = fx.count("events").await;
    let store: Arc<dyn Store> = fx.store.clone();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .reserve_code_attempt(&tid("t1"), &uid("u1"), &cid("c1"), 5, &[])
                    .await
            })
        })
        .collect();
    let mut reserved = Vec::new();
    let mut exhausted = 0;
    for task in tasks {
        match task.await.unwrap().unwrap() {
            AttemptReservation::Reserved { attempts } => reserved.push(attempts),
            AttemptReservation::Exhausted => exhausted += 1,
            AttemptReservation::Gone => panic!("code is pending"),
        }
    }
    reserved.sort_unstable();
    assert_eq!(reserved, vec![1, 2, 3, 4, 5]);
    assert_eq!(exhausted, 15);
    let code = fx.pending("t1", "u1").await;
    assert_eq!(code.attempts, 5);
    // Counting attempts is not a user change: no event, no sequence.
    let user = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.sequence, before_seq);
    assert_eq!(fx.count("events").await, events_before);
}

async fn reservation_outcomes_and_refund(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(10)).await;
    let (t1, u1) = (tid("t1"), uid("u1"));
    let reserve = |cap| {
        let store = fx.store.clone();
        let (t1, u1) = (t1.clone(), u1.clone());
        async move {
            store
                .reserve_code_attempt(&t1, &u1, &cid("c1"), cap, &[])
                .await
                .unwrap()
        }
    };
    assert_eq!(
        reserve(3).await,
        AttemptReservation::Reserved { attempts: 1 }
    );
    assert_eq!(
        reserve(3).await,
        AttemptReservation::Reserved { attempts: 2 }
    );
    fx.store
        .refund_code_attempt(&t1, &u1, &cid("c1"))
        .await
        .unwrap();
    assert_eq!(
        fx.store
            .pending_code(&t1, &u1)
            .await
            .unwrap()
            .unwrap()
            .attempts,
        1
    );
    assert_eq!(
        reserve(3).await,
        AttemptReservation::Reserved { attempts: 2 }
    );
    assert_eq!(
        reserve(3).await,
        AttemptReservation::Reserved { attempts: 3 }
    );
    assert_eq!(reserve(3).await, AttemptReservation::Exhausted);
    // A refund below the cap revives one attempt, never more.
    fx.store
        .refund_code_attempt(&t1, &u1, &cid("c1"))
        .await
        .unwrap();
    assert_eq!(
        reserve(3).await,
        AttemptReservation::Reserved { attempts: 3 }
    );
    assert_eq!(reserve(3).await, AttemptReservation::Exhausted);

    // Unknown ids, other users and other tenants: gone.
    for (tenant, user, code) in [("t1", "u1", "nope"), ("t1", "u2", "c1"), ("t2", "u1", "c1")] {
        assert_eq!(
            fx.store
                .reserve_code_attempt(&tid(tenant), &uid(user), &cid(code), 3, &[])
                .await
                .unwrap(),
            AttemptReservation::Gone
        );
    }

    // Refund never goes below zero, and does nothing to a code that is no longer pending.
    issue_code(&fx, "t1", "u2", "c2", t(20)).await;
    fx.store
        .refund_code_attempt(&t1, &uid("u2"), &cid("c2"))
        .await
        .unwrap();
    assert_eq!(
        fx.store
            .pending_code(&t1, &uid("u2"))
            .await
            .unwrap()
            .unwrap()
            .attempts,
        0
    );
    fx.store
        .change_user(&consume("t1", "u1", "c1", 30))
        .await
        .unwrap();
    fx.store
        .refund_code_attempt(&t1, &u1, &cid("c1"))
        .await
        .unwrap();
    assert_eq!(
        fx.scalar("SELECT attempts FROM reset_codes WHERE id = 'c1'")
            .await,
        3
    );
    assert_eq!(reserve(3).await, AttemptReservation::Gone);
}

/// `on_last` (the flow's `user.code.locked` webhook rows) goes in with the attempt that reaches
/// the cap, in its transaction, and never with an earlier, later or refused one.
async fn the_last_reservation_inserts_its_outbox_rows_with_it(fx: Fixture) {
    seed(&fx).await;
    issue_code(&fx, "t1", "u1", "c1", t(10)).await;
    let rows = |n: u32| {
        ["https://a.example/hook", "https://b.example/hook"]
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let mut m = rekey_testkit::fixtures::message(&format!("ev{n}-{i}"))
                    .channel(Channel::Webhook, url)
                    .sealed("o1", vec![1, 2, 3])
                    .at(t(20))
                    .build();
                m.kind = MessageKind::Event;
                m
            })
            .collect::<Vec<_>>()
    };
    let webhook_rows = || fx.scalar("SELECT COUNT(*) FROM outbox WHERE channel = 'webhook'");
    for n in 1..=2 {
        let reserved = fx
            .store
            .reserve_code_attempt(&tid("t1"), &uid("u1"), &cid("c1"), 3, &rows(n))
            .await
            .unwrap();
        assert_eq!(reserved, AttemptReservation::Reserved { attempts: n });
        assert_eq!(webhook_rows().await, 0, "not the last attempt");
    }
    let reserved = fx
        .store
        .reserve_code_attempt(&tid("t1"), &uid("u1"), &cid("c1"), 3, &rows(3))
        .await
        .unwrap();
    assert_eq!(reserved, AttemptReservation::Reserved { attempts: 3 });
    assert_eq!(webhook_rows().await, 2, "the last attempt queues them");
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM outbox WHERE kind = 'event' AND state = 'pending'")
            .await,
        2
    );
    let refused = fx
        .store
        .reserve_code_attempt(&tid("t1"), &uid("u1"), &cid("c1"), 3, &rows(4))
        .await
        .unwrap();
    assert_eq!(refused, AttemptReservation::Exhausted);
    assert_eq!(webhook_rows().await, 2, "a refused attempt queues nothing");

    // A row that cannot be inserted rolls the attempt back with it.
    issue_code(&fx, "t1", "u1", "c2", t(30)).await;
    let mut bad = rows(3); // the ids of the rows already queued
    bad.truncate(1);
    let err = fx
        .store
        .reserve_code_attempt(&tid("t1"), &uid("u1"), &cid("c2"), 1, &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(fx.pending("t1", "u1").await.attempts, 0);
}

/// Many new codes for one user at once (a user pressing "forgot password" on several
/// devices): every request succeeds, each voids the one before it, one code stays pending.
async fn concurrent_new_codes_all_land_and_one_stays_pending(fx: Fixture) {
    seed(&fx).await;
    let store: Arc<dyn Store> = fx.store.clone();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut change =
                    UserChange::new(tid("t1"), uid("u1"), t(10 + i), event("user.code.added"));
                change.void_pending_codes = true;
                change.new_code = Some(new_code(&format!("c{i}"), t(10 + i)));
                store.change_user(&change).await
            })
        })
        .collect();
    let mut sequences = Vec::new();
    for task in tasks {
        let details = task.await.unwrap().expect("every new code lands");
        sequences.push(details.sequence);
    }
    sequences.sort_unstable();
    assert_eq!(
        sequences,
        (2..18).collect::<Vec<u64>>(),
        "one sequence each"
    );
    assert_eq!(fx.count("reset_codes").await, 16);
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM reset_codes WHERE used_at IS NULL")
            .await,
        1
    );
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM events WHERE aggregate_id = 'u1'")
            .await,
        17
    );
}

/// A password change voids the codes pending when it commits: a code issued concurrently
/// stays pending only if it was issued after the change (a higher sequence), never because
/// the change overlooked it.
async fn a_code_issued_during_a_password_change_is_voided_unless_it_came_after(fx: Fixture) {
    seed(&fx).await;
    let store: Arc<dyn Store> = fx.store.clone();
    for round in 0..24_i64 {
        let code = format!("r{round}");
        let issue = {
            let store = store.clone();
            let code = code.clone();
            tokio::spawn(async move {
                let mut change =
                    UserChange::new(tid("t1"), uid("u1"), t(100 + round), event("code"));
                change.void_pending_codes = true;
                change.new_code = Some(new_code(&code, t(100 + round)));
                store.change_user(&change).await
            })
        };
        let set = {
            let store = store.clone();
            tokio::spawn(async move {
                let mut change =
                    UserChange::new(tid("t1"), uid("u1"), t(100 + round), event("password"));
                change.void_pending_codes = true;
                change.set_password = Some(PasswordChange {
                    hash: "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2g".to_owned(),
                    change_required: false,
                });
                store.change_user(&change).await
            })
        };
        let issued = issue.await.unwrap().unwrap().sequence;
        let set = set.await.unwrap().unwrap().sequence;
        let pending = fx
            .store
            .pending_code(&tid("t1"), &uid("u1"))
            .await
            .unwrap()
            .map(|c| c.id);
        if issued > set {
            assert_eq!(
                pending,
                Some(cid(&code)),
                "round {round}: issued after the change"
            );
        } else {
            assert_eq!(
                pending, None,
                "round {round}: the change voids the earlier code"
            );
        }
    }
}
