//! Retention (SPEC §12): the worker's housekeeping deletes sent and failed outbox messages and
//! audit events older than their window, in bounded batches, oldest first; never a pending
//! message, never anything newer.

use rekey_core::domain::{OutboxMessage, OutboxState};
use rekey_core::ports::store::{EventFilter, UserChange};

use crate::harness::{event, message, seed, t, tid, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    old_sent_and_failed_messages_go_in_batches_pending_ones_stay,
    old_events_go_in_batches_and_sequences_go_on,
);

fn msg(user: &str, id: &str, state: OutboxState, created: i64) -> OutboxMessage {
    let tenant = if user == "u3" { "t2" } else { "t1" };
    let mut m = message(tenant, user, id, state);
    m.created_at = t(created);
    m.next_attempt_at = t(created);
    m
}

async fn queue(fx: &Fixture, messages: Vec<OutboxMessage>) {
    let first = &messages[0];
    let mut change = UserChange::new(
        first.tenant_id.clone(),
        first.user_id.clone(),
        t(5),
        event("user.code.added"),
    );
    change.outbox = messages;
    fx.store.change_user(&change).await.unwrap();
}

async fn remaining(fx: &Fixture) -> Vec<String> {
    let mut ids: Vec<String> = fx
        .store
        .outbox_messages(None, 0)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id.to_string())
        .collect();
    ids.sort();
    ids
}

async fn old_sent_and_failed_messages_go_in_batches_pending_ones_stay(fx: Fixture) {
    seed(&fx).await;
    queue(
        &fx,
        vec![
            msg("u1", "old-sent-1", OutboxState::Sent, 10),
            msg("u1", "old-failed", OutboxState::Failed, 20),
            msg("u1", "old-pending", OutboxState::Pending, 5),
            msg("u1", "new-sent", OutboxState::Sent, 100),
            msg("u1", "edge-sent", OutboxState::Sent, 50),
        ],
    )
    .await;
    queue(&fx, vec![msg("u3", "old-sent-2", OutboxState::Sent, 30)]).await;

    // Older than t(50): three finished messages (two tenants), in batches of two, oldest first.
    assert_eq!(
        fx.store
            .delete_finished_outbox_before(t(50), 2)
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        remaining(&fx).await,
        ["edge-sent", "new-sent", "old-pending", "old-sent-2"]
    );
    assert_eq!(
        fx.store
            .delete_finished_outbox_before(t(50), 2)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        fx.store
            .delete_finished_outbox_before(t(50), 2)
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        remaining(&fx).await,
        ["edge-sent", "new-sent", "old-pending"],
        "a message exactly at the cutoff, a newer one and a pending one stay"
    );
    // However old, a pending message is never deleted.
    assert_eq!(
        fx.store
            .delete_finished_outbox_before(t(10_000), 100)
            .await
            .unwrap(),
        2
    );
    assert_eq!(remaining(&fx).await, ["old-pending"]);
}

async fn old_events_go_in_batches_and_sequences_go_on(fx: Fixture) {
    seed(&fx).await; // 2 tenant events at t(0), 3 user events at t(1)
    for at in [200, 300] {
        let change = UserChange::new(tid("t1"), uid("u1"), t(at), event("user.changed"));
        fx.store.change_user(&change).await.unwrap();
    }
    assert_eq!(fx.count("events").await, 7);
    assert_eq!(fx.store.delete_events_before(t(200), 2).await.unwrap(), 2);
    assert_eq!(fx.count("events").await, 5);
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM events WHERE kind = 'tenant.added'")
            .await,
        0,
        "the oldest first"
    );
    assert_eq!(fx.store.delete_events_before(t(200), 2).await.unwrap(), 2);
    assert_eq!(fx.store.delete_events_before(t(200), 2).await.unwrap(), 1);
    assert_eq!(fx.store.delete_events_before(t(200), 2).await.unwrap(), 0);
    let left: Vec<_> = fx
        .store
        .events(&EventFilter::default())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.aggregate_id, e.sequence, e.at))
        .collect();
    assert_eq!(
        left,
        [("u1".to_owned(), 2, t(200)), ("u1".to_owned(), 3, t(300))],
        "the event at the cutoff and newer ones stay"
    );
    // The user's sequence lives on its row: the next event follows on, with no gap or clash.
    let change = UserChange::new(tid("t1"), uid("u1"), t(400), event("user.changed"));
    assert_eq!(fx.store.change_user(&change).await.unwrap().sequence, 4);
}
