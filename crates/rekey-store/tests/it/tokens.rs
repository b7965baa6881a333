use rekey_core::domain::Role;
use rekey_core::ports::store::StoreError;

use crate::harness::{seed, t, tid, token, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    tokens_round_trip,
    duplicate_token_conflicts,
    revoked_token_is_not_found
);

async fn tokens_round_trip(fx: Fixture) {
    seed(&fx).await;
    assert_eq!(fx.store.count_tokens().await.unwrap(), 0);
    let tokens = [
        token("a", 1, Role::System),
        token("b", 2, Role::TenantAdmin(tid("t2"))),
        token(
            "c",
            3,
            Role::User {
                tenant_id: tid("t1"),
                user_id: uid("u2"),
            },
        ),
    ];
    for tk in &tokens {
        fx.store.insert_token(tk).await.unwrap();
    }
    for tk in &tokens {
        assert_eq!(
            fx.store.token_by_hash(&tk.hash).await.unwrap().as_ref(),
            Some(tk)
        );
    }
    assert_eq!(fx.store.token_by_hash(&[7; 32]).await.unwrap(), None);
    assert_eq!(fx.store.count_tokens().await.unwrap(), 3);
}

async fn duplicate_token_conflicts(fx: Fixture) {
    fx.store
        .insert_token(&token("a", 1, Role::System))
        .await
        .unwrap();
    let before = fx.snapshot().await;
    let err = fx
        .store
        .insert_token(&token("b", 1, Role::System))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("token")), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
}

async fn revoked_token_is_not_found(fx: Fixture) {
    let mut tk = token("a", 1, Role::System);
    tk.revoked_at = Some(t(5));
    fx.store.insert_token(&tk).await.unwrap();
    assert_eq!(fx.store.token_by_hash(&tk.hash).await.unwrap(), None);
    // Still counted: "no token at all" means none was ever created.
    assert_eq!(fx.store.count_tokens().await.unwrap(), 1);
}
