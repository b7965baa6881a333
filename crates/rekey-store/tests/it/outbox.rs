//! The delivery side of the outbox: claiming with a lease, marking sent (body erased),
//! rescheduling, parking as failed, and the admin retry by id.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Duration;
use rekey_core::domain::{Channel, OutboxMessage, OutboxState};
use rekey_core::ports::store::{Store, UserChange};

use crate::harness::{event, message, mid, seed, t, tid, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    claim_takes_due_pending_messages_oldest_first_and_leases_them,
    claim_respects_limit_and_channels,
    lease_runs_out_and_the_message_comes_back,
    concurrent_claimers_never_share_a_message,
    claimers_on_two_stores_never_share_a_message,
    sent_erases_the_body_once,
    reschedule_and_park_only_touch_pending_messages,
    retry_by_id_brings_a_failed_message_back,
    lookup_by_id,
    failed_bodies_are_erased_once_their_code_expired,
    the_request_id_round_trips,
    stats_count_the_backlog_and_the_pools,
);

/// Queues `messages` (all of one user) the way a flow does: inside a user change.
async fn queue(fx: &Fixture, messages: Vec<OutboxMessage>) {
    let first = &messages[0];
    let mut change = UserChange::new(
        first.tenant_id.clone(),
        first.user_id.clone(),
        first.created_at,
        event("user.code.added"),
    );
    change.outbox = messages;
    fx.store.change_user(&change).await.unwrap();
}

fn msg(tenant: &str, user: &str, id: &str, created: i64) -> OutboxMessage {
    let mut m = message(tenant, user, id, OutboxState::Pending);
    m.created_at = t(created);
    m.next_attempt_at = t(created);
    m
}

fn ids(messages: &[OutboxMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.id.as_str()).collect()
}

async fn claim_takes_due_pending_messages_oldest_first_and_leases_them(fx: Fixture) {
    seed(&fx).await;
    let mut later = msg("t1", "u1", "m-late", 30);
    later.next_attempt_at = t(100); // not yet due
    let mut failed = msg("t1", "u1", "m-failed", 5);
    failed.state = OutboxState::Failed;
    queue(
        &fx,
        vec![
            msg("t1", "u1", "m-b", 20),
            later,
            failed,
            msg("t1", "u1", "m-a", 10),
        ],
    )
    .await;
    queue(&fx, vec![msg("t2", "u3", "m-c", 15)]).await;

    let claimed = fx
        .store
        .claim_outbox(t(50), t(110), &[Channel::Email, Channel::Sms], 10)
        .await
        .unwrap();
    assert_eq!(
        ids(&claimed),
        ["m-a", "m-c", "m-b"],
        "due pending, oldest first"
    );
    for m in &claimed {
        assert_eq!(m.attempts, 1);
        assert_eq!(m.next_attempt_at, t(110), "leased");
        assert_eq!(m.state, OutboxState::Pending);
        assert_eq!(
            m.body,
            vec![1, 2, 3, 0, 255],
            "body handed out to the worker"
        );
    }
    assert_eq!(claimed[1].tenant_id, tid("t2"));
    // The lease is in the rows, not only in the answer.
    assert_eq!(
        fx.scalar("SELECT next_attempt_at FROM outbox WHERE id = 'm-a'")
            .await,
        t(110).timestamp_micros()
    );
    assert_eq!(
        fx.scalar("SELECT attempts FROM outbox WHERE id = 'm-late'")
            .await,
        0,
        "a message that is not due is untouched"
    );
    // While leased, nothing is claimed again.
    assert!(fx
        .store
        .claim_outbox(t(60), t(120), &[Channel::Email], 10)
        .await
        .unwrap()
        .is_empty());
    // `m-late` falls due at t(100).
    let claimed = fx
        .store
        .claim_outbox(t(100), t(160), &[Channel::Email], 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["m-late"]);
}

async fn claim_respects_limit_and_channels(fx: Fixture) {
    seed(&fx).await;
    let mut sms = msg("t1", "u1", "m-sms", 1);
    sms.channel = Channel::Sms;
    sms.recipient = Some("+41790000000".to_owned());
    queue(
        &fx,
        vec![
            sms,
            msg("t1", "u1", "m-1", 2),
            msg("t1", "u1", "m-2", 3),
            msg("t1", "u1", "m-3", 4),
        ],
    )
    .await;

    assert!(fx
        .store
        .claim_outbox(t(10), t(70), &[], 10)
        .await
        .unwrap()
        .is_empty());
    let first = fx
        .store
        .claim_outbox(t(10), t(70), &[Channel::Email], 2)
        .await
        .unwrap();
    assert_eq!(ids(&first), ["m-1", "m-2"]);
    let second = fx
        .store
        .claim_outbox(t(10), t(70), &[Channel::Email], 2)
        .await
        .unwrap();
    assert_eq!(ids(&second), ["m-3"]);
    // The SMS message was never claimed by an email-only worker: no attempt was used up.
    assert_eq!(
        fx.scalar("SELECT attempts FROM outbox WHERE id = 'm-sms'")
            .await,
        0
    );
    let sms = fx
        .store
        .claim_outbox(t(10), t(70), &[Channel::Sms], 5)
        .await
        .unwrap();
    assert_eq!(ids(&sms), ["m-sms"]);
    assert_eq!(sms[0].channel, Channel::Sms);
}

async fn lease_runs_out_and_the_message_comes_back(fx: Fixture) {
    seed(&fx).await;
    queue(&fx, vec![msg("t1", "u1", "m1", 10)]).await;
    let email = [Channel::Email];
    let first = fx
        .store
        .claim_outbox(t(10), t(70), &email, 1)
        .await
        .unwrap();
    assert_eq!(first[0].attempts, 1);
    // The worker died: nobody marks the message. Before the lease ends it stays away ...
    assert!(fx
        .store
        .claim_outbox(t(69), t(129), &email, 1)
        .await
        .unwrap()
        .is_empty());
    // ... and after, the next claim gets it, with the attempt counted.
    let again = fx
        .store
        .claim_outbox(t(70), t(130), &email, 1)
        .await
        .unwrap();
    assert_eq!(ids(&again), ["m1"]);
    assert_eq!(again[0].attempts, 2);
    assert_eq!(again[0].next_attempt_at, t(130));
}

const MANY: usize = 120;

async fn queue_many(fx: &Fixture) {
    seed(fx).await;
    let mut batch = Vec::new();
    for i in 0..MANY {
        let (tenant, user) = if i % 3 == 0 {
            ("t2", "u3")
        } else {
            ("t1", "u1")
        };
        batch.push((tenant, msg(tenant, user, &format!("m{i:03}"), 10)));
    }
    for tenant in ["t1", "t2"] {
        let rows = batch
            .iter()
            .filter(|(t, _)| *t == tenant)
            .map(|(_, m)| m.clone())
            .collect();
        queue(fx, rows).await;
    }
}

/// Claims in small batches until nothing is due; returns every (tenant, id) claimed.
async fn drain(store: Arc<dyn Store>) -> Vec<(String, String)> {
    let mut got = Vec::new();
    loop {
        let batch = store
            .claim_outbox(t(20), t(20) + Duration::hours(1), &[Channel::Email], 7)
            .await
            .unwrap();
        if batch.is_empty() {
            return got;
        }
        got.extend(
            batch
                .into_iter()
                .map(|m| (m.tenant_id.as_str().to_owned(), m.id.to_string())),
        );
        tokio::task::yield_now().await;
    }
}

async fn assert_each_claimed_once(claims: Vec<Vec<(String, String)>>, fx: &Fixture) {
    let total: usize = claims.iter().map(Vec::len).sum();
    let distinct: HashSet<_> = claims.iter().flatten().cloned().collect();
    assert_eq!(distinct.len(), MANY, "every message claimed");
    assert_eq!(total, MANY, "no message claimed twice");
    assert!(
        claims.iter().filter(|c| !c.is_empty()).count() > 1,
        "the claimers took turns (else the test shows nothing)"
    );
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM outbox WHERE attempts = 1")
            .await,
        MANY as i64
    );
}

async fn concurrent_claimers_never_share_a_message(fx: Fixture) {
    queue_many(&fx).await;
    let tasks: Vec<_> = (0..4)
        .map(|_| tokio::spawn(drain(fx.store.clone())))
        .collect();
    let mut claims = Vec::new();
    for task in tasks {
        claims.push(task.await.unwrap());
    }
    assert_each_claimed_once(claims, &fx).await;
}

/// Two stores on one database, as two replicas (PostgreSQL) or the server and the CLI
/// (SQLite) would have.
async fn claimers_on_two_stores_never_share_a_message(fx: Fixture) {
    queue_many(&fx).await;
    let other = rekey_store::connect(&fx.url).await.unwrap();
    let tasks: Vec<_> = [fx.store.clone(), other.clone(), fx.store.clone(), other]
        .into_iter()
        .map(|store| tokio::spawn(drain(store)))
        .collect();
    let mut claims = Vec::new();
    for task in tasks {
        claims.push(task.await.unwrap());
    }
    assert_each_claimed_once(claims, &fx).await;
}

async fn sent_erases_the_body_once(fx: Fixture) {
    seed(&fx).await;
    queue(
        &fx,
        vec![msg("t1", "u1", "m1", 10), msg("t1", "u1", "m2", 10)],
    )
    .await;
    fx.store
        .claim_outbox(t(10), t(70), &[Channel::Email], 10)
        .await
        .unwrap();
    fx.store
        .reschedule_outbox(&tid("t1"), &mid("m1"), t(12), "smtp: 451 try later")
        .await
        .unwrap();
    assert!(fx
        .store
        .mark_outbox_sent(&tid("t1"), &mid("m1"), t(15))
        .await
        .unwrap());
    let sent = fx.store.outbox_message(&mid("m1")).await.unwrap().unwrap();
    assert_eq!(sent.state, OutboxState::Sent);
    assert_eq!(sent.sent_at, Some(t(15)));
    assert!(sent.body.is_empty());
    assert_eq!(sent.last_error, None);
    assert_eq!(sent.attempts, 1);
    assert_eq!(
        fx.scalar("SELECT CAST(LENGTH(body) AS BIGINT) FROM outbox WHERE id = 'm1'")
            .await,
        0,
        "the raw row holds no body"
    );
    // Only once; another tenant's id or an unknown id changes nothing.
    assert!(!fx
        .store
        .mark_outbox_sent(&tid("t1"), &mid("m1"), t(16))
        .await
        .unwrap());
    assert!(!fx
        .store
        .mark_outbox_sent(&tid("t2"), &mid("m2"), t(16))
        .await
        .unwrap());
    assert!(!fx
        .store
        .mark_outbox_sent(&tid("t1"), &mid("nope"), t(16))
        .await
        .unwrap());
    assert_eq!(
        fx.store
            .outbox_message(&mid("m1"))
            .await
            .unwrap()
            .unwrap()
            .sent_at,
        Some(t(15))
    );
    let other = fx.store.outbox_message(&mid("m2")).await.unwrap().unwrap();
    assert_eq!(other.state, OutboxState::Pending);
    assert_eq!(other.body, vec![1, 2, 3, 0, 255]);
}

async fn reschedule_and_park_only_touch_pending_messages(fx: Fixture) {
    seed(&fx).await;
    queue(
        &fx,
        vec![msg("t1", "u1", "m1", 10), msg("t1", "u1", "m2", 10)],
    )
    .await;
    let email = [Channel::Email];
    fx.store
        .claim_outbox(t(10), t(70), &email, 10)
        .await
        .unwrap();

    assert!(fx
        .store
        .reschedule_outbox(&tid("t1"), &mid("m1"), t(30), "smtp: connection refused")
        .await
        .unwrap());
    let m1 = fx.store.outbox_message(&mid("m1")).await.unwrap().unwrap();
    assert_eq!(m1.state, OutboxState::Pending);
    assert_eq!(m1.next_attempt_at, t(30), "the backoff replaces the lease");
    assert_eq!(m1.last_error.as_deref(), Some("smtp: connection refused"));
    assert_eq!(m1.attempts, 1);
    assert!(fx
        .store
        .claim_outbox(t(29), t(90), &email, 10)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        ids(&fx
            .store
            .claim_outbox(t(30), t(90), &email, 10)
            .await
            .unwrap()),
        ["m1"]
    );

    assert!(fx
        .store
        .park_outbox_failed(&tid("t1"), &mid("m2"), "smtp: 550 no such user")
        .await
        .unwrap());
    let m2 = fx.store.outbox_message(&mid("m2")).await.unwrap().unwrap();
    assert_eq!(m2.state, OutboxState::Failed);
    assert_eq!(m2.last_error.as_deref(), Some("smtp: 550 no such user"));
    assert_eq!(m2.body, vec![1, 2, 3, 0, 255], "kept for an admin retry");
    // A failed (or sent) message is neither rescheduled nor parked again, nor claimed.
    assert!(!fx
        .store
        .reschedule_outbox(&tid("t1"), &mid("m2"), t(40), "x")
        .await
        .unwrap());
    assert!(!fx
        .store
        .park_outbox_failed(&tid("t1"), &mid("m2"), "y")
        .await
        .unwrap());
    assert!(!fx
        .store
        .park_outbox_failed(&tid("t2"), &mid("m1"), "other tenant")
        .await
        .unwrap());
    fx.store
        .mark_outbox_sent(&tid("t1"), &mid("m1"), t(31))
        .await
        .unwrap();
    assert!(!fx
        .store
        .reschedule_outbox(&tid("t1"), &mid("m1"), t(40), "x")
        .await
        .unwrap());
    assert!(!fx
        .store
        .park_outbox_failed(&tid("t1"), &mid("m1"), "x")
        .await
        .unwrap());
    assert_eq!(
        fx.text("SELECT last_error FROM outbox WHERE id = 'm2'")
            .await
            .as_deref(),
        Some("smtp: 550 no such user")
    );
    assert!(fx
        .store
        .claim_outbox(t(999), t(1999), &email, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn retry_by_id_brings_a_failed_message_back(fx: Fixture) {
    seed(&fx).await;
    let mut parked = msg("t2", "u3", "m-parked", 5);
    parked.state = OutboxState::Failed;
    parked.attempts = 8;
    parked.last_error = Some("smtp: 550 mailbox unavailable".to_owned());
    queue(&fx, vec![parked]).await;
    queue(&fx, vec![msg("t1", "u1", "m-pending", 10)]).await;
    let before = fx.snapshot().await;

    // Only failed messages can be retried.
    assert!(!fx
        .store
        .retry_outbox(&mid("m-pending"), t(50))
        .await
        .unwrap());
    assert!(!fx.store.retry_outbox(&mid("unknown"), t(50)).await.unwrap());
    assert_eq!(fx.snapshot().await, before);

    assert!(fx
        .store
        .retry_outbox(&mid("m-parked"), t(50))
        .await
        .unwrap());
    let m = fx
        .store
        .outbox_message(&mid("m-parked"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.state, OutboxState::Pending);
    assert_eq!(m.attempts, 0);
    assert_eq!(m.next_attempt_at, t(50));
    assert_eq!(m.last_error, None);
    assert_eq!(m.tenant_id, tid("t2"));
    assert_eq!(m.body, vec![1, 2, 3, 0, 255]);
    assert!(
        !fx.store
            .retry_outbox(&mid("m-parked"), t(51))
            .await
            .unwrap(),
        "already pending"
    );

    let claimed = fx
        .store
        .claim_outbox(t(50), t(110), &[Channel::Email], 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["m-parked", "m-pending"]);
    assert_eq!(claimed[0].attempts, 1);
    // A sent message has no body left to send: no retry.
    fx.store
        .mark_outbox_sent(&tid("t2"), &mid("m-parked"), t(60))
        .await
        .unwrap();
    assert!(!fx
        .store
        .retry_outbox(&mid("m-parked"), t(61))
        .await
        .unwrap());
}

async fn lookup_by_id(fx: Fixture) {
    seed(&fx).await;
    let queued = msg("t2", "u3", "m7", 10);
    queue(&fx, vec![queued.clone()]).await;
    assert_eq!(
        fx.store.outbox_message(&mid("m7")).await.unwrap(),
        Some(queued)
    );
    assert_eq!(fx.store.outbox_message(&mid("m8")).await.unwrap(), None);
    assert_eq!(
        fx.store
            .outbox_message(&mid("m7"))
            .await
            .unwrap()
            .unwrap()
            .user_id,
        uid("u3")
    );
}

async fn failed_bodies_are_erased_once_their_code_expired(fx: Fixture) {
    seed(&fx).await;
    let with_code = |id: &str, expires: i64| {
        let mut m = msg("t1", "u1", id, 0);
        m.body_expires_at = Some(t(expires));
        m
    };
    // Parked ones with a code expiring at 100 s and 200 s, one pending with a code expiring
    // at 100 s, and a parked notice without a code.
    queue(
        &fx,
        vec![
            with_code("f100", 100),
            with_code("f200", 200),
            with_code("p100", 100),
            msg("t1", "u1", "notice", 0),
        ],
    )
    .await;
    for id in ["f100", "f200", "notice"] {
        let claimed = fx.store.outbox_message(&mid(id)).await.unwrap().unwrap();
        assert!(!claimed.body.is_empty());
        assert!(fx
            .store
            .park_outbox_failed(&tid("t1"), &mid(id), "gave up")
            .await
            .unwrap());
    }
    let stored = fx
        .store
        .outbox_message(&mid("f200"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.body_expires_at, Some(t(200)));

    assert_eq!(
        fx.store.erase_expired_failed_bodies(t(99)).await.unwrap(),
        0
    );
    assert_eq!(
        fx.store.erase_expired_failed_bodies(t(100)).await.unwrap(),
        1
    );
    let body = |id: &'static str| {
        let store = fx.store.clone();
        async move { store.outbox_message(&mid(id)).await.unwrap().unwrap() }
    };
    let erased = body("f100").await;
    assert!(erased.body.is_empty());
    assert_eq!(erased.body_expires_at, None);
    assert_eq!(erased.state, OutboxState::Failed);
    assert!(!body("f200").await.body.is_empty());
    // Pending messages are the worker's to send, whatever their expiry.
    assert!(!body("p100").await.body.is_empty());
    // Nothing to erase twice; a notice without a code keeps its body.
    assert_eq!(
        fx.store.erase_expired_failed_bodies(t(150)).await.unwrap(),
        0
    );
    assert_eq!(
        fx.store
            .erase_expired_failed_bodies(t(10_000))
            .await
            .unwrap(),
        1
    );
    assert!(!body("notice").await.body.is_empty());
}

/// The id of the request that queued a message comes back wherever the message is read: by
/// id, in the admin list and in the worker's claim; a message queued outside a request has
/// none.
async fn the_request_id_round_trips(fx: Fixture) {
    seed(&fx).await;
    let mut tagged = msg("t1", "u1", "m-req", 10);
    tagged.request_id = Some("5f2c0a9e41b7d3c8".to_owned());
    let untagged = msg("t1", "u1", "m-cli", 11);
    queue(&fx, vec![tagged.clone(), untagged.clone()]).await;
    assert_eq!(
        fx.store.outbox_message(&mid("m-req")).await.unwrap(),
        Some(tagged.clone())
    );
    assert_eq!(
        fx.store
            .outbox_message(&mid("m-cli"))
            .await
            .unwrap()
            .unwrap()
            .request_id,
        None
    );
    let listed = fx.store.outbox_messages(None, 10).await.unwrap();
    let tags: Vec<_> = listed.iter().map(|m| m.request_id.as_deref()).collect();
    assert_eq!(tags, [Some("5f2c0a9e41b7d3c8"), None]);
    let claimed = fx
        .store
        .claim_outbox(t(50), t(110), &[Channel::Email], 10)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["m-req", "m-cli"]);
    assert_eq!(claimed[0].request_id.as_deref(), Some("5f2c0a9e41b7d3c8"));
    assert_eq!(claimed[1].request_id, None);
}

async fn stats_count_the_backlog_and_the_pools(fx: Fixture) {
    seed(&fx).await;
    assert_eq!(fx.store.outbox_stats().await.unwrap(), Default::default());
    let mut failed = msg("t1", "u1", "m-failed", 5);
    failed.state = OutboxState::Failed;
    queue(
        &fx,
        vec![
            msg("t1", "u1", "m-b", 20),
            failed,
            msg("t1", "u1", "m-a", 10),
        ],
    )
    .await;
    queue(&fx, vec![msg("t2", "u3", "m-c", 15)]).await;
    let stats = fx.store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (3, 1));
    assert_eq!(stats.oldest_pending, Some(t(10)));

    // Sent messages are not backlog; the oldest pending moves on.
    let claimed = fx
        .store
        .claim_outbox(t(50), t(110), &[Channel::Email], 1)
        .await
        .unwrap();
    assert_eq!(ids(&claimed), ["m-a"]);
    assert!(fx
        .store
        .mark_outbox_sent(&tid("t1"), &mid("m-a"), t(51))
        .await
        .unwrap());
    let stats = fx.store.outbox_stats().await.unwrap();
    assert_eq!((stats.pending, stats.failed), (2, 1));
    assert_eq!(stats.oldest_pending, Some(t(15)));

    let pools = fx.store.pool_stats();
    assert!(pools.max >= 1, "{pools:?}");
    assert!(pools.idle + pools.in_use <= pools.max, "{pools:?}");
}
