//! Keyset paging of the admin listings (the audit trail and the outbox) and the audited
//! requeue: each page starts just past the key of the previous page's last row, so a walk
//! sees every row once, in order, even with ties in time and rows added while it walks.

use rekey_core::domain::{Event, OutboxMessage, OutboxState};
use rekey_core::ports::store::{EventFilter, EventKey, OutboxKey, OutboxQuery, UserChange};

use crate::harness::{event, message, mid, seed, t, tid, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    events_page_by_key_through_ties_and_inserts,
    outbox_pages_by_key_within_state_and_tenant,
    requeue_appends_its_event_to_the_tenant,
);

async fn touch(fx: &Fixture, tenant: &str, user: &str, at: i64) {
    fx.store
        .change_user(&UserChange::new(
            tid(tenant),
            uid(user),
            t(at),
            event("user.touched"),
        ))
        .await
        .unwrap();
}

fn key(e: &Event) -> (String, String, u64) {
    (e.tenant_id.to_string(), e.aggregate_id.clone(), e.sequence)
}

/// Every page of `filter` (its `limit` rows each), the rows joined; after page `touch_after`
/// an event is added.
async fn walk_events(
    fx: &Fixture,
    mut filter: EventFilter,
    touch_after: Option<usize>,
) -> Vec<Event> {
    let mut seen = Vec::new();
    for page in 1.. {
        let rows = fx.store.events(&filter).await.unwrap();
        let Some(last) = rows.last() else { break };
        filter.after = Some(EventKey::of(last));
        let full = rows.len() == filter.limit as usize;
        seen.extend(rows);
        if touch_after == Some(page) {
            touch(fx, "t1", "u2", 10).await;
        }
        if !full {
            break;
        }
    }
    seen
}

async fn events_page_by_key_through_ties_and_inserts(fx: Fixture) {
    seed(&fx).await; // five events at t(0): two tenants, three users
    for at in [1, 1, 2, 2, 2, 3] {
        touch(&fx, "t1", "u1", at).await;
        touch(&fx, "t2", "u3", at).await;
    }
    let filter = EventFilter {
        limit: 2,
        ..EventFilter::default()
    };
    // Rows added mid-walk carry a later time: they come at the end, once.
    let seen = walk_events(&fx, filter.clone(), Some(2)).await;
    let all = fx.store.events(&EventFilter::default()).await.unwrap();
    assert_eq!(all.len(), 5 + 12 + 1);
    assert_eq!(
        seen.iter().map(key).collect::<Vec<_>>(),
        all.iter().map(key).collect::<Vec<_>>()
    );
    // The order is the key's: time, tenant, aggregate, sequence.
    let keys: Vec<_> = all.iter().map(|e| (e.at, key(e))).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);

    // With filters: one tenant, one aggregate, since.
    let t1_only = walk_events(
        &fx,
        EventFilter {
            tenant_id: Some(tid("t1")),
            limit: 3,
            ..EventFilter::default()
        },
        None,
    )
    .await;
    let expected: Vec<_> = all
        .iter()
        .filter(|e| e.tenant_id == tid("t1"))
        .map(key)
        .collect();
    assert_eq!(t1_only.iter().map(key).collect::<Vec<_>>(), expected);
    let u3_since = walk_events(
        &fx,
        EventFilter {
            aggregate_id: Some("u3".to_owned()),
            since: Some(t(2)),
            limit: 1,
            ..EventFilter::default()
        },
        None,
    )
    .await;
    assert_eq!(
        u3_since.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [4, 5, 6, 7]
    );
}

fn msg(tenant: &str, user: &str, id: &str, created: i64, state: OutboxState) -> OutboxMessage {
    let mut m = message(tenant, user, id, state);
    m.created_at = t(created);
    m.next_attempt_at = t(created);
    m
}

async fn outbox_pages_by_key_within_state_and_tenant(fx: Fixture) {
    seed(&fx).await;
    let failed = OutboxState::Failed;
    let pending = OutboxState::Pending;
    for (tenant, user, id, at, state) in [
        ("t2", "u3", "m-b", 5, failed),
        ("t1", "u1", "m-c", 5, failed),
        ("t1", "u1", "m-a", 5, pending),
        ("t1", "u2", "m-d", 7, failed),
        ("t2", "u3", "m-e", 7, pending),
        ("t1", "u1", "m-f", 9, failed),
    ] {
        let mut change = UserChange::new(tid(tenant), uid(user), t(at), event("user.code.added"));
        change.outbox = vec![msg(tenant, user, id, at, state)];
        fx.store.change_user(&change).await.unwrap();
    }
    let fx = &fx;
    let walk = |query| walk_outbox(fx, query);
    // Oldest first; ties in time by tenant, then id.
    let all = walk(OutboxQuery {
        limit: 2,
        ..OutboxQuery::default()
    })
    .await;
    assert_eq!(all, ["m-a", "m-c", "m-b", "m-d", "m-e", "m-f"]);
    let failed_only = walk(OutboxQuery {
        state: Some(failed),
        limit: 1,
        ..OutboxQuery::default()
    })
    .await;
    assert_eq!(failed_only, ["m-c", "m-b", "m-d", "m-f"]);
    let t1_failed = walk(OutboxQuery {
        state: Some(failed),
        tenant_id: Some(tid("t1")),
        limit: 2,
        ..OutboxQuery::default()
    })
    .await;
    assert_eq!(t1_failed, ["m-c", "m-d", "m-f"]);
    let t2 = walk(OutboxQuery {
        tenant_id: Some(tid("t2")),
        limit: 0,
        ..OutboxQuery::default()
    })
    .await;
    assert_eq!(t2, ["m-b", "m-e"]);
}

async fn walk_outbox(fx: &Fixture, mut query: OutboxQuery) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let rows = fx.store.outbox_page(&query).await.unwrap();
        let full = rows.len() == query.limit as usize;
        query.after = rows.last().map(OutboxKey::of);
        seen.extend(rows.into_iter().map(|m| m.id.to_string()));
        if !full {
            break seen;
        }
    }
}

async fn requeue_appends_its_event_to_the_tenant(fx: Fixture) {
    seed(&fx).await;
    let mut change = UserChange::new(tid("t2"), uid("u3"), t(5), event("user.code.added"));
    change.outbox = vec![
        msg("t2", "u3", "m-failed", 5, OutboxState::Failed),
        msg("t2", "u3", "m-pending", 5, OutboxState::Pending),
    ];
    fx.store.change_user(&change).await.unwrap();
    let before = fx.snapshot().await;
    for id in ["m-pending", "unknown"] {
        assert_eq!(
            fx.store
                .requeue_outbox(&mid(id), t(50), &event("outbox.message.retried"))
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        fx.snapshot().await,
        before,
        "nothing requeued, nothing recorded"
    );

    let tenant = fx
        .store
        .requeue_outbox(&mid("m-failed"), t(50), &event("outbox.message.retried"))
        .await
        .unwrap();
    assert_eq!(tenant, Some(tid("t2")));
    let m = fx
        .store
        .outbox_message(&mid("m-failed"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (m.state, m.attempts, m.next_attempt_at),
        (OutboxState::Pending, 0, t(50))
    );
    let events = fx
        .store
        .events(&EventFilter {
            tenant_id: Some(tid("t2")),
            aggregate_id: Some("t2".to_owned()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let kinds: Vec<(&str, u64)> = events
        .iter()
        .map(|e| (e.kind.as_str(), e.sequence))
        .collect();
    assert_eq!(kinds, [("tenant.added", 1), ("outbox.message.retried", 2)]);
    assert_eq!(events[1].at, t(50));
}
