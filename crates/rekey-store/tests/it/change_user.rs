use rekey_core::domain::{OutboxState, Role, UserState};
use rekey_core::ports::store::{EventFilter, PasswordChange, RateLimitHit, StoreError, UserChange};

use crate::harness::{cid, event, message, new_code, seed, t, tid, token, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    bumps_sequence_and_appends_events,
    sets_password_and_state,
    require_state_conflict_writes_nothing,
    deleted_unknown_or_foreign_user_is_not_found,
    revokes_only_that_users_user_tokens,
    outbox_rows_written_with_the_change,
    outbox_row_of_another_tenant_is_refused,
    failed_change_writes_nothing,
);

async fn user_events(fx: &Fixture, tenant: &str, user: &str) -> Vec<(u64, String)> {
    fx.store
        .events(&EventFilter {
            tenant_id: Some(tid(tenant)),
            aggregate_id: Some(user.to_owned()),
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.sequence, e.kind))
        .collect()
}

async fn bumps_sequence_and_appends_events(fx: Fixture) {
    seed(&fx).await;
    let first = UserChange::new(tid("t1"), uid("u1"), t(100), event("user.first"));
    let details = fx.store.change_user(&first).await.unwrap();
    assert_eq!(details.sequence, 2);
    assert_eq!(details.change_date, t(100));
    assert_eq!(details.resource_owner, tid("t1"));
    assert_eq!(details.creation_date, None);

    let second = UserChange::new(tid("t1"), uid("u1"), t(200), event("user.second"));
    assert_eq!(fx.store.change_user(&second).await.unwrap().sequence, 3);

    let stored = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.sequence, 3);
    assert_eq!(stored.change_date, t(200));
    assert_eq!(stored.creation_date, t(1));
    assert_eq!(
        user_events(&fx, "t1", "u1").await,
        vec![
            (1, "user.added".to_owned()),
            (2, "user.first".to_owned()),
            (3, "user.second".to_owned()),
        ]
    );
    // Other users, in this tenant and the other, are untouched.
    assert_eq!(user_events(&fx, "t1", "u2").await.len(), 1);
    assert_eq!(user_events(&fx, "t2", "u3").await.len(), 1);
    let u3 = fx
        .store
        .user(&tid("t2"), &uid("u3"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((u3.sequence, u3.change_date), (1, t(1)));

    let recent = fx
        .store
        .events(&EventFilter {
            since: Some(t(150)),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].kind, "user.second");
    let limited = fx
        .store
        .events(&EventFilter {
            limit: 2,
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(limited.len(), 2);
}

async fn sets_password_and_state(fx: Fixture) {
    seed(&fx).await;
    let mut onboard = crate::harness::user("t1", "u9", "new@example.com");
    onboard.state = UserState::Initial;
    onboard.password_hash = None;
    fx.store
        .insert_user(&onboard, &event("user.added"))
        .await
        .unwrap();

    let mut change = UserChange::new(tid("t1"), uid("u9"), t(50), event("user.password.set"));
    change.require_state = vec![UserState::Initial, UserState::Active];
    change.set_password = Some(PasswordChange {
        hash: "$argon2id$new".to_owned(),
        change_required: true,
    });
    change.set_state = Some(UserState::Active);
    fx.store.change_user(&change).await.unwrap();
    let stored = fx
        .store
        .user(&tid("t1"), &uid("u9"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(stored.password_change_required);
    assert_eq!(stored.state, UserState::Active);

    // Without set_password/set_state those fields stay as they are.
    let plain = UserChange::new(tid("t1"), uid("u9"), t(60), event("user.touched"));
    fx.store.change_user(&plain).await.unwrap();
    let stored = fx
        .store
        .user(&tid("t1"), &uid("u9"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash.as_deref(), Some("$argon2id$new"));
    assert!(stored.password_change_required);
    assert_eq!(stored.state, UserState::Active);
    assert_eq!(stored.sequence, 3);
}

async fn require_state_conflict_writes_nothing(fx: Fixture) {
    seed(&fx).await;
    let mut lock = UserChange::new(tid("t1"), uid("u1"), t(10), event("user.locked"));
    lock.set_state = Some(UserState::Locked);
    fx.store.change_user(&lock).await.unwrap();

    let before = fx.snapshot().await;
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(20), event("user.code.added"));
    change.require_state = vec![UserState::Initial, UserState::Active];
    change.new_code = Some(new_code("c1", t(20)));
    change.outbox = vec![message("t1", "u1", "m1", OutboxState::Pending)];
    let err = fx.store.change_user(&change).await.unwrap_err();
    assert!(
        matches!(err, StoreError::StateConflict(UserState::Locked)),
        "{err:?}"
    );
    assert_eq!(fx.snapshot().await, before);

    // A state in the list passes.
    change.require_state = vec![UserState::Locked];
    fx.store.change_user(&change).await.unwrap();
}

async fn deleted_unknown_or_foreign_user_is_not_found(fx: Fixture) {
    seed(&fx).await;
    let mut delete = UserChange::new(tid("t1"), uid("u2"), t(10), event("user.removed"));
    delete.set_state = Some(UserState::Deleted);
    fx.store.change_user(&delete).await.unwrap();

    let before = fx.snapshot().await;
    for (tenant, user) in [("t1", "u2"), ("t1", "nope"), ("t2", "u1"), ("t9", "u1")] {
        let change = UserChange::new(tid(tenant), uid(user), t(20), event("user.touched"));
        let err = fx.store.change_user(&change).await.unwrap_err();
        assert!(
            matches!(err, StoreError::NotFound),
            "{tenant}/{user}: {err:?}"
        );
    }
    assert_eq!(fx.snapshot().await, before);

    // Naming `deleted` explicitly is allowed (e.g. an operator restoring a user).
    let mut restore = UserChange::new(tid("t1"), uid("u2"), t(30), event("user.restored"));
    restore.require_state = vec![UserState::Deleted];
    restore.set_state = Some(UserState::Active);
    fx.store.change_user(&restore).await.unwrap();
}

async fn revokes_only_that_users_user_tokens(fx: Fixture) {
    seed(&fx).await;
    let user_role = |t: &str, u: &str| Role::User {
        tenant_id: tid(t),
        user_id: uid(u),
    };
    let tokens = [
        token("tk-u1a", 1, user_role("t1", "u1")),
        token("tk-u1b", 2, user_role("t1", "u1")),
        token("tk-u2", 3, user_role("t1", "u2")),
        token("tk-u3", 4, user_role("t2", "u3")),
        token("tk-admin1", 5, Role::TenantAdmin(tid("t1"))),
        token("tk-system", 6, Role::System),
    ];
    for tk in &tokens {
        fx.store.insert_token(tk).await.unwrap();
    }

    let mut change = UserChange::new(tid("t1"), uid("u1"), t(100), event("user.password.changed"));
    change.revoke_user_tokens = true;
    fx.store.change_user(&change).await.unwrap();

    for tk in &tokens {
        let found = fx.store.token_by_hash(&tk.hash).await.unwrap();
        if tk.id.as_str().starts_with("tk-u1") {
            assert_eq!(found, None, "{} revoked", tk.id);
        } else {
            assert_eq!(found.as_ref(), Some(tk), "{} still valid", tk.id);
        }
    }
    assert_eq!(fx.store.count_tokens().await.unwrap(), 6);
    assert_eq!(
        fx.scalar("SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NOT NULL")
            .await,
        2
    );
    assert_eq!(
        fx.scalar("SELECT MIN(revoked_at) FROM api_tokens").await,
        t(100).timestamp_micros(),
        "revoked at the change's time, from the caller's clock"
    );
}

async fn outbox_rows_written_with_the_change(fx: Fixture) {
    seed(&fx).await;
    let mut parked = message("t1", "u1", "m2", OutboxState::Failed);
    parked.channel = rekey_core::domain::Channel::Sms;
    parked.recipient = None;
    parked.last_error = Some("no phone".to_owned());
    parked.created_at = t(11);
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(10), event("user.code.added"));
    change.new_code = Some(new_code("c1", t(10)));
    change.outbox = vec![
        message("t1", "u1", "m1", OutboxState::Pending),
        parked.clone(),
    ];
    fx.store.change_user(&change).await.unwrap();
    let mut other = UserChange::new(tid("t2"), uid("u3"), t(12), event("user.code.added"));
    let mut later = message("t2", "u3", "m1", OutboxState::Pending);
    later.created_at = t(12);
    other.outbox = vec![later];
    fx.store.change_user(&other).await.unwrap();

    let all = fx.store.outbox_messages(None, 0).await.unwrap();
    let keys: Vec<(String, String)> = all
        .iter()
        .map(|m| (m.tenant_id.to_string(), m.id.to_string()))
        .collect();
    assert_eq!(
        keys,
        [("t1", "m1"), ("t1", "m2"), ("t2", "m1")].map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    assert_eq!(all[0], message("t1", "u1", "m1", OutboxState::Pending));
    assert_eq!(all[1], parked);

    let failed = fx
        .store
        .outbox_messages(Some(OutboxState::Failed), 10)
        .await
        .unwrap();
    assert_eq!(failed, vec![parked]);
    let pending = fx
        .store
        .outbox_messages(Some(OutboxState::Pending), 10)
        .await
        .unwrap();
    assert_eq!(pending.len(), 2);
    assert_eq!(fx.store.outbox_messages(None, 1).await.unwrap().len(), 1);
    assert!(fx
        .store
        .outbox_messages(Some(OutboxState::Sent), 10)
        .await
        .unwrap()
        .is_empty());

    // The idempotency key is unique (per tenant): a second row with it fails the whole change.
    let before = fx.snapshot().await;
    let mut dup = UserChange::new(tid("t1"), uid("u2"), t(20), event("user.code.added"));
    let mut again = message("t1", "u2", "m9", OutboxState::Pending);
    again.idempotency_key = "idem-m1".to_owned();
    dup.outbox = vec![again];
    let err = fx.store.change_user(&dup).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict("idempotency key")),
        "{err:?}"
    );
    assert_eq!(fx.snapshot().await, before);
}

async fn outbox_row_of_another_tenant_is_refused(fx: Fixture) {
    seed(&fx).await;
    let before = fx.snapshot().await;
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(10), event("user.code.added"));
    change.outbox = vec![message("t2", "u3", "m1", OutboxState::Pending)];
    let err = fx.store.change_user(&change).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(_)), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
}

async fn failed_change_writes_nothing(fx: Fixture) {
    seed(&fx).await;
    crate::harness::issue_code(&fx, "t1", "u1", "c1", t(5)).await;
    fx.store
        .insert_token(&token(
            "tk",
            9,
            Role::User {
                tenant_id: tid("t1"),
                user_id: uid("u1"),
            },
        ))
        .await
        .unwrap();

    let before = fx.snapshot().await;
    // Everything a change can do, but the code to consume does not exist.
    let mut change = UserChange::new(tid("t1"), uid("u1"), t(100), event("user.password.changed"));
    change.require_state = vec![UserState::Active];
    change.rate_limit = Some(RateLimitHit {
        key: "code-tries:198.51.100.1".to_owned(),
        limit: 30,
        window_secs: 60,
        at: t(100),
    });
    change.consume_code = Some(cid("c-unknown"));
    change.void_pending_codes = true;
    change.new_code = Some(new_code("c2", t(100)));
    change.set_password = Some(PasswordChange {
        hash: "$argon2id$x".to_owned(),
        change_required: false,
    });
    change.set_state = Some(UserState::Inactive);
    change.revoke_user_tokens = true;
    change.outbox = vec![message("t1", "u1", "m1", OutboxState::Pending)];
    let err = fx.store.change_user(&change).await.unwrap_err();
    assert!(matches!(err, StoreError::CodeGone), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
    let user = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((user.sequence, user.state), (2, UserState::Active));
    assert_eq!(fx.pending_id("t1", "u1").await, "c1");
    assert!(fx.store.token_by_hash(&[9; 32]).await.unwrap().is_some());

    // The same change with the real code goes through, all of it.
    change.consume_code = Some(cid("c1"));
    let details = fx.store.change_user(&change).await.unwrap();
    assert_eq!(details.sequence, 3);
    let user = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.state, UserState::Inactive);
    assert_eq!(user.password_hash.as_deref(), Some("$argon2id$x"));
    assert!(fx.store.token_by_hash(&[9; 32]).await.unwrap().is_none());
    assert_eq!(fx.count("outbox").await, 1);
    assert_eq!(fx.count("rate_limits").await, 1);
    let pending = fx.pending("t1", "u1").await;
    assert_eq!(pending.id, "c2");
}
