use chrono::Duration;
use rekey_core::domain::{Role, TokenId};
use rekey_core::ports::store::{EventFilter, StoreError};

use crate::harness::{event, seed, t, tid, token, uid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    tokens_round_trip,
    duplicate_token_conflicts,
    revoked_token_is_not_found,
    expiry_and_last_use_round_trip,
    tokens_listed_all_or_by_tenant_oldest_first,
    revoking_writes_the_token_and_its_event_once,
    last_use_is_written_only_when_stale,
    token_with_user_finds_the_user_in_the_tokens_tenant,
);

/// The token and, in the same read, the user it names: in the token's tenant (a system
/// token's: the user's own), with that tenant; a revoked token is not found at all.
async fn token_with_user_finds_the_user_in_the_tokens_tenant(fx: Fixture) {
    seed(&fx).await;
    let system = token("sys", 1, Role::System);
    let admin1 = token("adm1", 2, Role::TenantAdmin(tid("t1")));
    let self_u2 = token(
        "me",
        3,
        Role::User {
            tenant_id: tid("t1"),
            user_id: uid("u2"),
        },
    );
    for tk in [&system, &admin1, &self_u2] {
        fx.store.insert_token(tk).await.unwrap();
    }
    let found = |hash: u8, user: &'static str| {
        let store = fx.store.clone();
        async move {
            store
                .token_with_user(&[hash; 32], &uid(user))
                .await
                .unwrap()
                .map(|(tk, target)| {
                    (
                        tk.id.to_string(),
                        target.map(|(u, t)| (u.id.to_string(), t.id.to_string())),
                    )
                })
        }
    };
    let some = |tk: &str, user: &str, tenant: &str| {
        Some((tk.to_owned(), Some((user.to_owned(), tenant.to_owned()))))
    };
    // System: any tenant's user, through the user index.
    assert_eq!(found(1, "u3").await, some("sys", "u3", "t2"));
    assert_eq!(found(1, "u1").await, some("sys", "u1", "t1"));
    // Tenant admin of t1: t1's users only; t2's user is not there.
    assert_eq!(found(2, "u2").await, some("adm1", "u2", "t1"));
    assert_eq!(found(2, "u3").await, Some(("adm1".to_owned(), None)));
    // A user's token reads in its tenant (whether it may act is the flow's rule).
    assert_eq!(found(3, "u1").await, some("me", "u1", "t1"));
    assert_eq!(found(3, "u3").await, Some(("me".to_owned(), None)));
    // Unknown user, unknown token.
    assert_eq!(found(1, "nobody").await, Some(("sys".to_owned(), None)));
    assert_eq!(found(9, "u1").await, None);
    // The whole user and tenant records come back as their own reads give them.
    let (_, target) = fx
        .store
        .token_with_user(&[2; 32], &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    let (user, tenant) = target.unwrap();
    assert_eq!(
        user,
        fx.store
            .user(&tid("t1"), &uid("u1"))
            .await
            .unwrap()
            .unwrap()
    );
    assert_eq!(tenant, fx.store.tenant(&tid("t1")).await.unwrap().unwrap());
    // Revoked: not found.
    fx.store
        .revoke_token(&admin1.id, t(5), &event("token.revoked"))
        .await
        .unwrap();
    assert_eq!(found(2, "u2").await, None);
}

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

fn kid(id: &str) -> TokenId {
    TokenId::parse(id).unwrap()
}

async fn expiry_and_last_use_round_trip(fx: Fixture) {
    let mut tk = token("a", 1, Role::System);
    tk.expires_at = Some(t(3600));
    tk.last_used_at = Some(t(7));
    fx.store.insert_token(&tk).await.unwrap();
    // Expired or not, the store returns it: the flow decides by its clock.
    assert_eq!(
        fx.store.token_by_hash(&tk.hash).await.unwrap(),
        Some(tk.clone())
    );
    assert_eq!(fx.store.token(&kid("a")).await.unwrap(), Some(tk));
    assert_eq!(fx.store.token(&kid("zz")).await.unwrap(), None);
}

async fn tokens_listed_all_or_by_tenant_oldest_first(fx: Fixture) {
    seed(&fx).await;
    let mut tokens = vec![
        token(
            "d-user",
            4,
            Role::User {
                tenant_id: tid("t1"),
                user_id: uid("u2"),
            },
        ),
        token("b-admin1", 2, Role::TenantAdmin(tid("t1"))),
        token("c-admin2", 3, Role::TenantAdmin(tid("t2"))),
        token("a-system", 1, Role::System),
    ];
    for (i, tk) in tokens.iter_mut().enumerate() {
        tk.created_at = t(10 - i64::try_from(i).unwrap());
    }
    tokens[1].revoked_at = Some(t(20));
    for tk in &tokens {
        fx.store.insert_token(tk).await.unwrap();
    }
    let ids = |list: Vec<rekey_core::domain::ApiToken>| {
        list.into_iter()
            .map(|t| t.id.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        ids(fx.store.tokens(None).await.unwrap()),
        ["a-system", "c-admin2", "b-admin1", "d-user"],
        "every token, revoked ones too, oldest first"
    );
    assert_eq!(
        ids(fx.store.tokens(Some(&tid("t1"))).await.unwrap()),
        ["b-admin1", "d-user"]
    );
    assert_eq!(
        ids(fx.store.tokens(Some(&tid("t2"))).await.unwrap()),
        ["c-admin2"]
    );
    assert!(fx
        .store
        .tokens(Some(&tid("nope")))
        .await
        .unwrap()
        .is_empty());
}

async fn revoking_writes_the_token_and_its_event_once(fx: Fixture) {
    seed(&fx).await;
    let admin = token("tk-admin", 1, Role::TenantAdmin(tid("t2")));
    let system = token("tk-system", 2, Role::System);
    fx.store.insert_token(&admin).await.unwrap();
    fx.store.insert_token(&system).await.unwrap();

    let before = fx.snapshot().await;
    assert!(!fx
        .store
        .revoke_token(&kid("unknown"), t(50), &event("token.revoked"))
        .await
        .unwrap());
    assert_eq!(fx.snapshot().await, before, "an unknown id writes nothing");

    assert!(fx
        .store
        .revoke_token(&kid("tk-admin"), t(50), &event("token.revoked"))
        .await
        .unwrap());
    assert_eq!(fx.store.token_by_hash(&admin.hash).await.unwrap(), None);
    assert_eq!(
        fx.store
            .token(&kid("tk-admin"))
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(t(50))
    );
    let after_first = fx.snapshot().await;
    assert!(
        !fx.store
            .revoke_token(&kid("tk-admin"), t(60), &event("token.revoked"))
            .await
            .unwrap(),
        "revoked once"
    );
    assert_eq!(fx.snapshot().await, after_first);
    assert_eq!(
        fx.store
            .token(&kid("tk-admin"))
            .await
            .unwrap()
            .unwrap()
            .revoked_at,
        Some(t(50))
    );

    assert!(fx
        .store
        .revoke_token(&kid("tk-system"), t(70), &event("token.revoked"))
        .await
        .unwrap());
    let events = fx
        .store
        .events(&EventFilter {
            since: Some(t(40)),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| {
            (
                e.tenant_id.as_str(),
                e.aggregate_id.as_str(),
                e.sequence,
                e.kind.as_str(),
                e.at,
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("t2", "tk-admin", 1, "token.revoked", t(50)),
            // A system token belongs to no tenant: an instance event.
            ("", "tk-system", 1, "token.revoked", t(70)),
        ]
    );
}

async fn last_use_is_written_only_when_stale(fx: Fixture) {
    let tk = token("a", 1, Role::System);
    fx.store.insert_token(&tk).await.unwrap();
    let minute = Duration::seconds(60);
    let used = |at| {
        let store = fx.store.clone();
        async move {
            store
                .record_token_use(&[1; 32], at, at - minute)
                .await
                .unwrap()
        }
    };
    let last = || async {
        fx.store
            .token(&kid("a"))
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };
    assert!(used(t(100)).await, "never used: written");
    assert_eq!(last().await, Some(t(100)));
    assert!(!used(t(130)).await, "30 s later: not written");
    assert!(!used(t(160)).await, "exactly a minute later: not written");
    assert_eq!(last().await, Some(t(100)));
    assert!(used(t(161)).await);
    assert_eq!(last().await, Some(t(161)));
    assert!(
        !fx.store
            .record_token_use(&[9; 32], t(500), t(440))
            .await
            .unwrap(),
        "unknown hash"
    );
}
