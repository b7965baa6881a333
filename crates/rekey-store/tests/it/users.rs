use rekey_core::domain::{EmailAddress, User, UserState};
use rekey_core::ports::store::{EventFilter, StoreError, TextMatch, UserFilter, UserSearch};

use crate::harness::{event, every_user, seed, t, tenant, tid, uid, user, Fixture};

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    insert_and_get,
    user_of_another_tenant_is_invisible,
    users_by_email_case_insensitive,
    duplicate_email_same_tenant_conflicts,
    same_email_other_tenant_ok,
    duplicate_user_id_conflicts,
    user_of_unknown_tenant_is_not_found,
    list_users_and_tenants_stay_within_their_tenant,
    user_with_tenant_reads_both_within_the_tenant,
);

async fn user_with_tenant_reads_both_within_the_tenant(fx: Fixture) {
    seed(&fx).await;
    let (found, its_tenant) = fx
        .store
        .user_with_tenant(&tid("t1"), &uid("u2"))
        .await
        .unwrap()
        .expect("u2 is in t1");
    assert_eq!(
        found,
        fx.store
            .user(&tid("t1"), &uid("u2"))
            .await
            .unwrap()
            .unwrap()
    );
    assert_eq!(
        its_tenant,
        fx.store.tenant(&tid("t1")).await.unwrap().unwrap()
    );
    assert_eq!(its_tenant.cname.as_str(), "one.example");
    // Another tenant's user, an unknown user, an unknown tenant: nothing.
    for (tenant, id) in [("t2", "u2"), ("t1", "u3"), ("t1", "nobody"), ("t9", "u1")] {
        assert_eq!(
            fx.store
                .user_with_tenant(&tid(tenant), &uid(id))
                .await
                .unwrap(),
            None,
            "{tenant}/{id}"
        );
    }
}

async fn list_users_and_tenants_stay_within_their_tenant(fx: Fixture) {
    seed(&fx).await;
    let ids = |page: rekey_core::ports::store::UserPage| -> Vec<String> {
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
    expected.email = EmailAddress::parse("Nobody@Example.COM").unwrap();
    expected.phone = None;
    expected.password_hash = None;
    expected.state = UserState::Initial;
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
    assert_eq!(got.email.as_str(), "Nobody@Example.COM", "kept as given");

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
    let ids = |users: Vec<User>| {
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
        .insert_tenant(&tenant("t3", "three.example"), &event("tenant.added"))
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

// --- search_users ------------------------------------------------------------------------

rekey_testkit::both_dbs!(
    run = crate::harness::run;
    search_pages_and_counts,
    search_orders_by_creation_date_then_id,
    search_text_modes_agree_with_text_match,
    search_text_needles_are_literal,
    search_by_state_and_the_deleted_rule,
    search_in_ids_and_in_emails,
    search_stays_within_its_tenants,
    search_with_no_match_is_empty,
    search_pages_a_large_tenant_in_sql,
);

/// t1 and t2 (as [`seed`]) without users.
async fn two_tenants(fx: &Fixture) {
    for (id, cname) in [("t1", "one.example"), ("t2", "two.example")] {
        fx.store
            .insert_tenant(&tenant(id, cname), &event("tenant.added"))
            .await
            .unwrap();
    }
}

/// Inserts a user of `tenant` created at `t(secs)`; returns it.
async fn add(fx: &Fixture, tenant: &str, id: &str, username: &str, email: &str, secs: i64) -> User {
    let mut u = user(tenant, id, "ada@example.com");
    // Taken as stored, unchecked: the search must treat any stored text literally, including
    // what the parser refuses (`back\slash@…`).
    u.email = EmailAddress::from_trusted(email.to_owned());
    u.username = username.to_owned();
    u.creation_date = t(secs);
    u.change_date = t(secs);
    fx.store
        .insert_user(&u, &event("user.added"))
        .await
        .unwrap();
    u
}

async fn search(fx: &Fixture, search: &UserSearch) -> (u64, Vec<String>) {
    let page = fx.store.search_users(search).await.unwrap();
    let ids = page.users.into_iter().map(|u| u.id.to_string()).collect();
    (page.total, ids)
}

fn in_t1(filters: Vec<UserFilter>) -> UserSearch {
    UserSearch {
        filters,
        ..every_user(Some("t1"))
    }
}

fn page(offset: u64, limit: u32, asc: bool) -> UserSearch {
    UserSearch {
        offset,
        limit,
        asc,
        ..every_user(Some("t1"))
    }
}

async fn search_pages_and_counts(fx: Fixture) {
    two_tenants(&fx).await;
    for i in 1..=5 {
        let id = format!("u{i}");
        add(&fx, "t1", &id, &id, &format!("{id}@example.com"), i).await;
    }
    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        search(&fx, &page(0, 2, true)).await,
        (5, ids(&["u1", "u2"]))
    );
    assert_eq!(
        search(&fx, &page(2, 2, true)).await,
        (5, ids(&["u3", "u4"]))
    );
    assert_eq!(search(&fx, &page(4, 2, true)).await, (5, ids(&["u5"])));
    assert_eq!(
        search(&fx, &page(0, 2, false)).await,
        (5, ids(&["u5", "u4"]))
    );
    assert_eq!(
        search(&fx, &page(3, 10, false)).await,
        (5, ids(&["u2", "u1"]))
    );
    // Past the end, however far: the count still, no users, no error.
    assert_eq!(search(&fx, &page(5, 2, true)).await, (5, vec![]));
    assert_eq!(
        search(&fx, &page(u64::from(u32::MAX) + 1, 2, true)).await,
        (5, vec![])
    );
    assert_eq!(
        search(&fx, &page(u64::MAX, u32::MAX, false)).await,
        (5, vec![])
    );
    // A limit of 0 only counts.
    assert_eq!(search(&fx, &page(0, 0, true)).await, (5, vec![]));
}

async fn search_orders_by_creation_date_then_id(fx: Fixture) {
    two_tenants(&fx).await;
    // Inserted out of order; "u10" < "u2" < "u9" in code-point order, and "U1" before all.
    for (id, secs) in [
        ("u9", 7),
        ("u2", 7),
        ("u10", 7),
        ("U1", 7),
        ("u0", 8),
        ("u5", 6),
    ] {
        add(&fx, "t1", id, id, &format!("{id}@example.com"), secs).await;
    }
    let asc = ["u5", "U1", "u10", "u2", "u9", "u0"];
    let (total, got) = search(&fx, &page(0, 100, true)).await;
    assert_eq!((total, got), (6, asc.map(String::from).to_vec()));
    let (_, got) = search(&fx, &page(0, 100, false)).await;
    let mut desc = asc.map(String::from).to_vec();
    desc.reverse();
    assert_eq!(got, desc);
    // Pages split inside a run of equal dates without losing or repeating anyone.
    let mut paged = Vec::new();
    for offset in (0..6).step_by(2) {
        paged.extend(search(&fx, &page(offset, 2, false)).await.1);
    }
    assert_eq!(paged, desc);
}

/// Usernames and emails that tempt a store to get case, Unicode or LIKE wrong.
const TRICKY: &[(&str, &str)] = &[
    ("Ada", "Ada.Lovelace@Example.com"),
    ("ada", "ada@example.org"),
    ("100%_sure", "100%_sure@example.com"),
    ("100x-sure", "100x-sure@example.com"),
    ("back\\slash", "back\\slash@example.com"),
    ("under_score", "under_score@example.com"),
    ("underXscore", "underxscore@example.com"),
    ("ÄRGER-Straße", "aerger@example.de"),
    ("ärger-strasse", "aerger2@example.de"),
    ("İstanbul", "ist@example.tr"),
    ("", "empty@example.com"),
];

const NEEDLES: &[&str] = &[
    "",
    "a",
    "A",
    "ada",
    "Ada",
    "ADA",
    "%",
    "_",
    "\\",
    "%_",
    "100%",
    "100_",
    "_score",
    "x",
    "\\s",
    "ä",
    "Ä",
    "ärger",
    "STRASSE",
    "straße",
    "i̇",
    "İ",
    "com",
    ".COM",
    "@example.com",
    "Ada.Lovelace@Example.com",
    "nothing",
    "a\0",
];

const MODES: [TextMatch; 8] = [
    TextMatch::Equals,
    TextMatch::EqualsIgnoreCase,
    TextMatch::StartsWith,
    TextMatch::StartsWithIgnoreCase,
    TextMatch::Contains,
    TextMatch::ContainsIgnoreCase,
    TextMatch::EndsWith,
    TextMatch::EndsWithIgnoreCase,
];

async fn search_text_modes_agree_with_text_match(fx: Fixture) {
    two_tenants(&fx).await;
    let mut users = Vec::new();
    for (i, (username, email)) in TRICKY.iter().enumerate() {
        let secs = i64::try_from(i).unwrap();
        users.push(add(&fx, "t1", &format!("u{i}"), username, email, secs).await);
    }
    for how in MODES {
        for needle in NEEDLES {
            for by_email in [false, true] {
                let filter = if by_email {
                    UserFilter::Email((*needle).to_owned(), how)
                } else {
                    UserFilter::UserName((*needle).to_owned(), how)
                };
                let expected: Vec<String> = users
                    .iter()
                    .filter(|u| {
                        let value = if by_email {
                            u.email.as_str()
                        } else {
                            &u.username
                        };
                        how.matches(value, needle)
                    })
                    .map(|u| u.id.to_string())
                    .collect();
                let (total, got) = search(&fx, &in_t1(vec![filter])).await;
                assert_eq!(got, expected, "{how:?} {needle:?} by email: {by_email}");
                assert_eq!(total, u64::try_from(expected.len()).unwrap());
            }
        }
    }
}

async fn search_text_needles_are_literal(fx: Fixture) {
    two_tenants(&fx).await;
    for (i, (username, email)) in TRICKY.iter().enumerate() {
        let secs = i64::try_from(i).unwrap();
        add(&fx, "t1", &format!("u{i}"), username, email, secs).await;
    }
    let names = |needle: &str, how: TextMatch| {
        let fx = &fx;
        let needle = needle.to_owned();
        async move {
            let search = in_t1(vec![UserFilter::UserName(needle, how)]);
            let page = fx.store.search_users(&search).await.unwrap();
            page.users
                .into_iter()
                .map(|u| u.username)
                .collect::<Vec<_>>()
        }
    };
    // LIKE's wildcards and escape character are plain characters here.
    assert_eq!(names("%", TextMatch::Contains).await, ["100%_sure"]);
    assert_eq!(names("100%_", TextMatch::StartsWith).await, ["100%_sure"]);
    assert_eq!(
        names("_", TextMatch::Contains).await,
        ["100%_sure", "under_score"]
    );
    assert_eq!(
        names("R_S", TextMatch::ContainsIgnoreCase).await,
        ["under_score"]
    );
    assert_eq!(names("\\", TextMatch::Contains).await, ["back\\slash"]);
    assert_eq!(
        names("K\\S", TextMatch::ContainsIgnoreCase).await,
        ["back\\slash"]
    );
    // Case-sensitive means it on SQLite too (whose LIKE ignores ASCII case).
    assert_eq!(names("ad", TextMatch::StartsWith).await, ["ada"]);
    assert_eq!(names("Ad", TextMatch::StartsWith).await, ["Ada"]);
    assert_eq!(
        names("AD", TextMatch::StartsWithIgnoreCase).await,
        ["Ada", "ada"]
    );
    // Non-ASCII folds alike on both databases (SQLite's LOWER() would not fold "Ä").
    assert_eq!(
        names("ärger", TextMatch::StartsWithIgnoreCase).await,
        ["ÄRGER-Straße", "ärger-strasse"]
    );
    assert_eq!(
        names("ärger", TextMatch::StartsWith).await,
        ["ärger-strasse"]
    );
}

async fn search_by_state_and_the_deleted_rule(fx: Fixture) {
    two_tenants(&fx).await;
    let states = [
        ("u1", UserState::Active),
        ("u2", UserState::Initial),
        ("u3", UserState::Locked),
        ("u4", UserState::Deleted),
        ("u5", UserState::Inactive),
    ];
    for (i, (id, state)) in (1..).zip(states) {
        let mut u = user("t1", id, &format!("{id}@example.com"));
        u.state = state;
        u.creation_date = t(i);
        fx.store
            .insert_user(&u, &event("user.added"))
            .await
            .unwrap();
    }
    let without_deleted = |filters| UserSearch {
        include_deleted: false,
        ..in_t1(filters)
    };
    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    assert_eq!(
        search(&fx, &without_deleted(vec![])).await,
        (4, ids(&["u1", "u2", "u3", "u5"]))
    );
    assert_eq!(search(&fx, &in_t1(vec![])).await.0, 5);
    assert_eq!(
        search(
            &fx,
            &without_deleted(vec![UserFilter::State(UserState::Locked)])
        )
        .await,
        (1, ids(&["u3"]))
    );
    assert_eq!(
        search(&fx, &in_t1(vec![UserFilter::State(UserState::Deleted)])).await,
        (1, ids(&["u4"]))
    );
    assert_eq!(
        search(
            &fx,
            &without_deleted(vec![UserFilter::State(UserState::Deleted)])
        )
        .await,
        (0, vec![])
    );
    // Conditions combine with AND.
    let both = vec![
        UserFilter::State(UserState::Active),
        UserFilter::State(UserState::Locked),
    ];
    assert_eq!(search(&fx, &in_t1(both)).await, (0, vec![]));
}

async fn search_in_ids_and_in_emails(fx: Fixture) {
    seed(&fx).await;
    add(&fx, "t1", "u4", "dora", "Dora.X@Example.com", 4).await;
    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let in_ids = |list: &[&str]| UserFilter::InIds(ids(list));
    let in_emails = |list: &[&str]| UserFilter::InEmails(ids(list));

    assert_eq!(
        search(&fx, &in_t1(vec![in_ids(&["u4", "u2", "nope", "u3"])])).await,
        (2, ids(&["u2", "u4"])),
        "u3 is in t2"
    );
    assert_eq!(search(&fx, &in_t1(vec![in_ids(&[])])).await, (0, vec![]));
    assert_eq!(
        search(&fx, &in_t1(vec![in_ids(&["u1\0"])])).await,
        (0, vec![])
    );
    // A long list is one parameter, whatever the database's cap on parameters.
    let many: Vec<String> = (0..70_000)
        .map(|i| format!("x{i}"))
        .chain(ids(&["u1"]))
        .collect();
    assert_eq!(
        search(&fx, &in_t1(vec![UserFilter::InIds(many)])).await,
        (1, ids(&["u1"]))
    );

    assert_eq!(
        search(
            &fx,
            &in_t1(vec![in_emails(&["DORA.x@example.COM", "BOB@example.com"])])
        )
        .await,
        (2, ids(&["u2", "u4"]))
    );
    assert_eq!(search(&fx, &in_t1(vec![in_emails(&[])])).await, (0, vec![]));
    assert_eq!(
        search(&fx, &in_t1(vec![in_emails(&["dora.x@example.com "])])).await,
        (0, vec![])
    );
    // Across tenants: the same address in both.
    let everywhere = UserSearch {
        filters: vec![in_emails(&["ADA@example.com"])],
        ..every_user(None)
    };
    assert_eq!(search(&fx, &everywhere).await, (2, ids(&["u1", "u3"])));
}

async fn search_stays_within_its_tenants(fx: Fixture) {
    two_tenants(&fx).await;
    add(&fx, "t1", "a1", "shared", "shared@example.com", 1).await;
    add(&fx, "t2", "b1", "shared", "shared@example.com", 2).await;
    add(&fx, "t1", "a2", "only-one", "one@example.com", 3).await;
    add(&fx, "t2", "b2", "only-two", "two@example.com", 4).await;
    let ids = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let named = |name: &str| UserFilter::UserName(name.to_owned(), TextMatch::Equals);

    assert_eq!(
        search(&fx, &every_user(Some("t1"))).await,
        (2, ids(&["a1", "a2"]))
    );
    assert_eq!(
        search(&fx, &every_user(Some("t2"))).await,
        (2, ids(&["b1", "b2"]))
    );
    assert_eq!(
        search(&fx, &in_t1(vec![named("shared")])).await,
        (1, ids(&["a1"]))
    );
    assert_eq!(
        search(&fx, &in_t1(vec![named("only-two")])).await,
        (0, vec![])
    );
    assert_eq!(
        search(&fx, &in_t1(vec![UserFilter::InIds(ids(&["b1", "b2"]))])).await,
        (0, vec![])
    );
    // A tenant condition narrows, it never widens: t1's scope with t2 asked for is empty.
    let t2 = UserFilter::Tenant(tid("t2"));
    assert_eq!(search(&fx, &in_t1(vec![t2.clone()])).await, (0, vec![]));

    // The instance: everyone, in one order across tenants.
    assert_eq!(
        search(&fx, &every_user(None)).await,
        (4, ids(&["a1", "b1", "a2", "b2"]))
    );
    let instance = |filters| UserSearch {
        filters,
        ..every_user(None)
    };
    assert_eq!(
        search(&fx, &instance(vec![named("shared")])).await,
        (2, ids(&["a1", "b1"]))
    );
    assert_eq!(
        search(&fx, &instance(vec![t2.clone()])).await,
        (2, ids(&["b1", "b2"]))
    );
    assert_eq!(
        search(&fx, &instance(vec![t2, UserFilter::Tenant(tid("t1"))])).await,
        (0, vec![])
    );
    let paged = UserSearch {
        offset: 1,
        limit: 2,
        asc: false,
        ..every_user(None)
    };
    assert_eq!(search(&fx, &paged).await, (4, ids(&["a2", "b1"])));
}

async fn search_with_no_match_is_empty(fx: Fixture) {
    assert_eq!(search(&fx, &every_user(None)).await, (0, vec![]));
    seed(&fx).await;
    assert_eq!(search(&fx, &every_user(Some("nope"))).await, (0, vec![]));
    let nobody = UserFilter::UserName("nobody".to_owned(), TextMatch::ContainsIgnoreCase);
    assert_eq!(search(&fx, &in_t1(vec![nobody])).await, (0, vec![]));
}

/// 3000 users in one tenant: the count covers them all, the page holds the 10 asked for, in
/// order, from both ends and from the middle.
async fn search_pages_a_large_tenant_in_sql(fx: Fixture) {
    two_tenants(&fx).await;
    add(&fx, "t2", "other", "other", "other@example.com", 5000).await;
    // One statement instead of 3000 store calls; creation dates 1 s apart, i = 1..=3000.
    fx.execute(
        "WITH RECURSIVE n (i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000) \
         INSERT INTO users (tenant_id, id, username, username_lower, email, email_lower, \
             email_verified, phone, phone_verified, first_name, last_name, display_name, \
             preferred_language, state, password_hash, password_change_required, sequence, \
             creation_date, change_date) \
         SELECT 't1', 'bulk' || i, 'Bulk' || i, 'bulk' || i, 'bulk' || i || '@example.com', \
             'bulk' || i || '@example.com', TRUE, NULL, FALSE, 'B', 'U', 'B U', 'en', \
             'active', NULL, FALSE, 1, CAST(i AS BIGINT) * 1000000, \
             CAST(i AS BIGINT) * 1000000 FROM n",
    )
    .await;
    let ids = |range: std::ops::RangeInclusive<i32>| -> Vec<String> {
        range.map(|i| format!("bulk{i}")).collect()
    };
    let (total, got) = search(&fx, &page(0, 10, true)).await;
    assert_eq!((total, got), (3000, ids(1..=10)));
    let (total, got) = search(&fx, &page(0, 10, false)).await;
    assert_eq!(
        (total, got),
        (3000, ids(2991..=3000).into_iter().rev().collect())
    );
    let (total, got) = search(&fx, &page(1500, 10, true)).await;
    assert_eq!((total, got), (3000, ids(1501..=1510)));
    let filtered = UserSearch {
        limit: 10,
        ..in_t1(vec![UserFilter::UserName(
            "bulk29".to_owned(),
            TextMatch::StartsWithIgnoreCase,
        )])
    };
    // bulk29 and bulk290..=bulk299 and bulk2900..=bulk2999.
    assert_eq!(search(&fx, &filtered).await.0, 111);
}
