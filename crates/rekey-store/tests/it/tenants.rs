use rekey_core::domain::TenantSettings;
use rekey_core::ports::store::{EventFilter, StoreError};

use crate::harness::{event, seed, t, tenant, tid, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    ping_after_connect,
    insert_get_and_by_cname,
    duplicate_cname_conflicts,
    duplicate_tenant_id_conflicts,
    settings_update_appends_event,
    concurrent_settings_updates_number_events_in_order,
);

async fn ping_after_connect(fx: Fixture) {
    fx.store.ping().await.unwrap();
}

async fn insert_get_and_by_cname(fx: Fixture) {
    seed(&fx).await;
    let one = fx.store.tenant(&tid("t1")).await.unwrap().unwrap();
    assert_eq!(one, tenant("t1", "one.example"));
    let two = fx
        .store
        .tenant_by_cname("two.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(two, tenant("t2", "two.example"));
    assert_eq!(fx.store.tenant(&tid("t3")).await.unwrap(), None);
    assert_eq!(
        fx.store.tenant_by_cname("three.example").await.unwrap(),
        None
    );

    let events = fx
        .store
        .events(&EventFilter {
            aggregate_id: Some("t2".to_owned()),
            ..EventFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].tenant_id, tid("t2"));
    assert_eq!(events[0].sequence, 1);
    assert_eq!(events[0].kind, "tenant.added");
    assert_eq!(events[0].at, t(0));
    assert_eq!(events[0].ip.as_deref(), Some("192.0.2.7"));
    assert_eq!(
        events[0].payload,
        serde_json::json!({ "note": "tenant.added" })
    );
}

async fn duplicate_cname_conflicts(fx: Fixture) {
    seed(&fx).await;
    let before = fx.snapshot().await;
    let err = fx
        .store
        .insert_tenant(&tenant("t9", "one.example"), &event("tenant.added"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("cname")), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
    assert_eq!(fx.store.tenant(&tid("t9")).await.unwrap(), None);
}

async fn duplicate_tenant_id_conflicts(fx: Fixture) {
    seed(&fx).await;
    let before = fx.snapshot().await;
    let err = fx
        .store
        .insert_tenant(&tenant("t1", "other.example"), &event("tenant.added"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict("tenant id")), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
}

async fn settings_update_appends_event(fx: Fixture) {
    seed(&fx).await;
    let settings = TenantSettings {
        code_length: Some(6),
        password_min_length: Some(14),
        link_template: Some("https://x.example/r?c={{.Code}}".to_owned()),
        ..TenantSettings::default()
    };
    for (i, at) in [t(100), t(200)].into_iter().enumerate() {
        fx.store
            .update_tenant_settings(&tid("t1"), &settings, at, &event("tenant.settings.changed"))
            .await
            .unwrap();
        let events = fx
            .store
            .events(&EventFilter {
                tenant_id: Some(tid("t1")),
                aggregate_id: Some("t1".to_owned()),
                ..EventFilter::default()
            })
            .await
            .unwrap();
        let sequences: Vec<u64> = events.iter().map(|e| e.sequence).collect();
        assert_eq!(sequences, (1..=i as u64 + 2).collect::<Vec<_>>());
    }
    let stored = fx.store.tenant(&tid("t1")).await.unwrap().unwrap();
    assert_eq!(stored.settings, settings);
    assert_eq!(stored.change_date, t(200));
    assert_eq!(stored.creation_date, t(0));
    // The other tenant is untouched.
    assert_eq!(
        fx.store.tenant(&tid("t2")).await.unwrap().unwrap(),
        tenant("t2", "two.example")
    );

    let before = fx.snapshot().await;
    let err = fx
        .store
        .update_tenant_settings(&tid("nope"), &settings, t(300), &event("x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(fx.snapshot().await, before);
}

async fn concurrent_settings_updates_number_events_in_order(fx: Fixture) {
    seed(&fx).await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = fx.store.clone();
            tokio::spawn(async move {
                let settings = TenantSettings {
                    code_length: Some(6 + i),
                    ..TenantSettings::default()
                };
                store
                    .update_tenant_settings(
                        &tid("t1"),
                        &settings,
                        t(100 + i64::from(i)),
                        &event("tenant.settings.changed"),
                    )
                    .await
                    .unwrap();
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let mut sequences: Vec<u64> = fx
        .store
        .events(&EventFilter {
            aggregate_id: Some("t1".to_owned()),
            ..EventFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    sequences.sort_unstable();
    assert_eq!(sequences, (1..=11).collect::<Vec<u64>>());
}
