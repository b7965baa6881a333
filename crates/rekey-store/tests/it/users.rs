use rekey_core::store::{EventFilter, StoreError};

use crate::harness::{event, every_user, seed, t, tid, uid, user, Fixture};

conformance!(
    insert_and_get,
    user_of_another_tenant_is_invisible,
    users_by_email_case_insensitive,
    duplicate_email_same_tenant_conflicts,
    same_email_other_tenant_ok,
    duplicate_user_id_conflicts,
    user_of_unknown_tenant_is_not_found,
    list_users_and_tenants_stay_within_their_tenant,
);

async fn list_users_and_tenants_stay_within_their_tenant(fx: Fixture) {
    seed(&fx).await;
    let ids = |page: rekey_core::store::UserPage| -> Vec<String> {
        page.users.into_iter().map(|u| u.id.to_string()).collect()
    };
    let t1 = ids(fx
        .store
        .search_users(&every_user(Some("t1")))
        .await
        .unwrap());
    let t2 = ids(fx
        .store
        .search_users(&every_user(Some("t2")))
        .await
        .unwrap());
    assert!(!t1.is_empty() && !t2.is_empty());
    assert!(t1.iter().all(|id| !t2.contains(id)), "{t1:?} / {t2:?}");
    for id in &t1 {
        assert_eq!(
            fx.store.user_tenant(&uid(id)).await.unwrap(),
            Some(tid("t1"))
        );
    }
    assert!(fx
        .store
        .search_users(&every_user(Some("nope")))
        .await
        .unwrap()
        .users
        .is_empty());
    let tenants: Vec<String> = fx
        .store
        .tenants()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id.to_string())
        .collect();
    assert!(tenants.contains(&"t1".to_owned()) && tenants.contains(&"t2".to_owned()));
}

async fn insert_and_get(fx: Fixture) {
    seed(&fx).await;
    let mut expected = user("t1", "u1", "ada@example.com");
    let got = fx
        .store
        .user(&tid("t1"), &uid("u1"))
        .await
        .unwrap()
        .unwrap();
    // User's Debug hides most fields; compare field by field through equality.
    assert!(got == expected, "{got:?}");

    // Every field round-trips, including the optional ones being absent.
    expected.id = uid("u9");
    expected.email = "Nobody@Example.COM".to_owned();
    expected.phone = None;
    expected.password_hash = None;
    expected.state = rekey_core::model::UserState::Initial;
    expected.password_change_required = true;
    expected.email_verified = false;
    expected.phone_verified = true;
    expected.preferred_language = "de".to_owned();
    fx.store
        .insert_user(&expected, &event("user.added"))
        .await
        .unwrap();
    let got = fx
        .store
        .user(&tid("t1"), &uid("u9"))
        .await
        .unwrap()
        .unwrap();
    assert!(got == expected, "{got:?}");
    assert_eq!(got.email, "Nobody@Example.COM", "kept as given");

    assert_eq!(
        fx.store.user_tenant(&uid("u9")).await.unwrap(),
        Some(tid("t1"))
    );
    assert_eq!(
        fx.store.user_tenant(&uid("u3")).await.unwrap(),
        Some(tid("t2"))
    );
    assert_eq!(fx.store.user_tenant(&uid("nope")).await.unwrap(), None);

    let events = fx
        .store
        .events(&EventFilter {
            tenant_id: Some(tid("t1")),
            aggregate_id: Some("u9".to_owned()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(
        (events[0].sequence, events[0].kind.as_str()),
        (1, "user.added")
    );
    assert_eq!(events[0].at, t(1));
}

async fn user_of_another_tenant_is_invisible(fx: Fixture) {
    seed(&fx).await;
    assert!(fx
        .store
        .user(&tid("t2"), &uid("u1"))
        .await
        .unwrap()
        .is_none());
    assert!(fx
        .store
        .user(&tid("t1"), &uid("u3"))
        .await
        .unwrap()
        .is_none());
    assert!(fx
        .store
        .user(&tid("t3"), &uid("u1"))
        .await
        .unwrap()
        .is_none());
}

async fn users_by_email_case_insensitive(fx: Fixture) {
    seed(&fx).await;
    let ids = |users: Vec<rekey_core::model::User>| {
        users
            .into_iter()
            .map(|u| (u.tenant_id.to_string(), u.id.to_string()))
            .collect::<Vec<_>>()
    };
    let pair = |t: &str, u: &str| (t.to_owned(), u.to_owned());

    let in_t1 = fx
        .store
        .users_by_email(Some(&tid("t1")), "ADA@Example.com")
        .await
        .unwrap();
    assert_eq!(ids(in_t1), vec![pair("t1", "u1")]);
    let in_t2 = fx
        .store
        .users_by_email(Some(&tid("t2")), "ada@EXAMPLE.COM")
        .await
        .unwrap();
    assert_eq!(ids(in_t2), vec![pair("t2", "u3")]);
    let everywhere = fx
        .store
        .users_by_email(None, "Ada@example.com")
        .await
        .unwrap();
    assert_eq!(ids(everywhere), vec![pair("t1", "u1"), pair("t2", "u3")]);
    let bob = fx
        .store
        .users_by_email(None, "BOB@example.com")
        .await
        .unwrap();
    assert_eq!(ids(bob), vec![pair("t1", "u2")]);
    assert!(fx
        .store
        .users_by_email(Some(&tid("t2")), "bob@example.com")
        .await
        .unwrap()
        .is_empty());
    assert!(fx
        .store
        .users_by_email(Some(&tid("t3")), "ada@example.com")
        .await
        .unwrap()
        .is_empty());
    assert!(fx
        .store
        .users_by_email(None, "nobody@example.com")
        .await
        .unwrap()
        .is_empty());
}

async fn duplicate_email_same_tenant_conflicts(fx: Fixture) {
    seed(&fx).await;
    let before = fx.snapshot().await;
    let err = fx
        .store
        .insert_user(&user("t1", "u9", "ADA@example.COM"), &event("user.added"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("email")), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
    assert_eq!(fx.store.user_tenant(&uid("u9")).await.unwrap(), None);
}

async fn same_email_other_tenant_ok(fx: Fixture) {
    seed(&fx).await;
    fx.store
        .insert_tenant(
            &crate::harness::tenant("t3", "three.example"),
            &event("tenant.added"),
        )
        .await
        .unwrap();
    fx.store
        .insert_user(&user("t3", "u9", "Bob@Example.com"), &event("user.added"))
        .await
        .unwrap();
    let bobs = fx
        .store
        .users_by_email(None, "bob@example.com")
        .await
        .unwrap();
    assert_eq!(bobs.len(), 2);
}

async fn duplicate_user_id_conflicts(fx: Fixture) {
    seed(&fx).await;
    let before = fx.snapshot().await;
    // The same id in another tenant: ids are unique instance-wide.
    let err = fx
        .store
        .insert_user(&user("t2", "u1", "new@example.com"), &event("user.added"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user id")), "{err:?}");
    let err = fx
        .store
        .insert_user(&user("t1", "u1", "new@example.com"), &event("user.added"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("user id")), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
}

async fn user_of_unknown_tenant_is_not_found(fx: Fixture) {
    seed(&fx).await;
    let before = fx.snapshot().await;
    let err = fx
        .store
        .insert_user(&user("t9", "u9", "x@example.com"), &event("user.added"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
}
