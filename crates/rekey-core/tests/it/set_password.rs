//! Setting a password (SPEC §3.2, §7, §10): with a code — single use, attempts, the cap of five,
//! expiry, the order of checks, state rules — and the password policy; with the current
//! password; and by an admin.

use chrono::Duration;
use rekey_core::domain::UserId;
use rekey_core::domain::{MessageKind, OutboxState, TenantSettings, UserState};
use rekey_core::error::ErrorHint;
use rekey_core::flows::{SetPassword, Verification};
use rekey_core::policy::password::PasswordRule;
use rekey_core::ErrorKind;
use secrecy::SecretString;

use crate::support::{assert_err, wrong_for, Fixture, NEW_PASSWORD, START_PASSWORD, UNKNOWN_ID};

fn secret(s: &str) -> SecretString {
    SecretString::from(s.to_owned())
}

#[tokio::test]
async fn a_code_sets_the_password_once() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "once@acme.test").await;
    let code = f.return_code(&user).await;
    let before = f.user(&user).await;

    let details = f
        .set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(details.sequence, before.sequence + 1);
    assert_eq!(details.resource_owner, f.t1.id);
    assert!(f.has_password(&user, NEW_PASSWORD).await);
    assert!(!f.has_password(&user, START_PASSWORD).await);
    let after = f.user(&user).await;
    assert_eq!(
        after.state,
        UserState::Active,
        "an active user stays active"
    );
    assert_eq!(after.sequence, details.sequence);
    assert!(
        f.pending_code(&user).await.is_none(),
        "the code is consumed"
    );

    // Single use: the second submission finds no code, and changes nothing.
    let err = assert_err(
        f.set_with_code(&user.id, &code, "yet another passphrase")
            .await,
        ErrorKind::FailedPrecondition,
        "COMMAND-2M9fs",
    );
    assert_eq!(err.text, "Code not found");
    assert!(f.has_password(&user, NEW_PASSWORD).await);
    assert_eq!(f.user(&user).await.sequence, details.sequence);
}

#[tokio::test]
async fn codes_are_compared_case_insensitively() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "case@acme.test").await;
    let code = f.return_code(&user).await;
    f.set_with_code(&user.id, &code.to_lowercase(), NEW_PASSWORD)
        .await
        .unwrap();
    assert!(f.has_password(&user, NEW_PASSWORD).await);
}

#[tokio::test]
async fn a_wrong_code_counts_an_attempt_and_changes_nothing_else() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "wrong@acme.test").await;
    let code = f.return_code(&user).await;
    let wrong = wrong_for(&code);

    // Any 1..20-character input that does not match, whatever its alphabet.
    for (n, attempt) in [wrong.as_str(), "0O1IL0O1", "abc", "12345678901234567890"]
        .into_iter()
        .enumerate()
    {
        let before = f.snapshot().await;
        let err = assert_err(
            f.set_with_code(&user.id, attempt, NEW_PASSWORD).await,
            ErrorKind::InvalidArgument,
            "CODE-woT0xc",
        );
        assert_eq!(err.message(), "Code is invalid (CODE-woT0xc)");
        assert_eq!(err.hint, None, "not used up yet");
        assert_eq!(f.attempts(&user).await, u32::try_from(n + 1).unwrap());
        // Only the attempt counter moved: no event, no sequence, no password.
        assert_eq!(
            f.snapshot().await.without_attempts(),
            before.without_attempts()
        );
    }
    assert!(f.has_password(&user, START_PASSWORD).await);

    // Empty or over 20 characters: a format error that counts nothing.
    for bad in ["", "123456789012345678901"] {
        assert_err(
            f.set_with_code(&user.id, bad, NEW_PASSWORD).await,
            ErrorKind::InvalidArgument,
            "REKEY-CoLen",
        );
    }
    assert_eq!(f.attempts(&user).await, 4);
}

#[tokio::test]
async fn four_wrong_tries_leave_the_code_usable() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "four@acme.test").await;
    let code = f.return_code(&user).await;
    for _ in 0..4 {
        assert_err(
            f.set_with_code(&user.id, &wrong_for(&code), NEW_PASSWORD)
                .await,
            ErrorKind::InvalidArgument,
            "CODE-woT0xc",
        );
    }
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
    assert!(f.has_password(&user, NEW_PASSWORD).await);
}

#[tokio::test]
async fn the_fifth_wrong_try_kills_the_code() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "five@acme.test").await;
    let code = f.return_code(&user).await;
    for _ in 0..5 {
        assert_err(
            f.set_with_code(&user.id, &wrong_for(&code), NEW_PASSWORD)
                .await,
            ErrorKind::InvalidArgument,
            "CODE-woT0xc",
        );
    }
    assert_eq!(f.attempts(&user).await, 5);
    let wrong_answer = f
        .set_with_code(&user.id, &wrong_for(&code), NEW_PASSWORD)
        .await
        .unwrap_err();

    // The right code now gets the very same answer as a wrong one (the hint is for the
    // hosted page only), and the count stays at the cap.
    let before = f.snapshot().await;
    let err = assert_err(
        f.set_with_code(&user.id, &code, NEW_PASSWORD).await,
        ErrorKind::InvalidArgument,
        "CODE-woT0xc",
    );
    assert_eq!(err.message(), wrong_answer.message());
    assert_eq!(err.hint, Some(ErrorHint::CodeUsedUp));
    assert_eq!(f.snapshot().await, before);
    assert!(f.has_password(&user, START_PASSWORD).await);

    // A new code starts afresh.
    let code = f.return_code(&user).await;
    assert_eq!(f.attempts(&user).await, 0);
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_reset_code_lives_one_hour() {
    let f = Fixture::new().await;
    let early = f.add_user(&f.t1, "early@acme.test").await;
    let late = f.add_user(&f.t1, "late@acme.test").await;
    let early_code = f.return_code(&early).await;
    let late_code = f.return_code(&late).await;
    let expires = f.pending_code(&late).await.unwrap().expires_at;

    // The last millisecond before expiry: still good.
    let early_expires = f.pending_code(&early).await.unwrap().expires_at;
    f.advance(early_expires - f.now() - Duration::milliseconds(1));
    f.submit_code(&Fixture::anonymous(), &early.id, &early_code, NEW_PASSWORD)
        .await
        .unwrap();

    // At the expiry instant the code is dead: the right code and a wrong one alike, and
    // neither counts an attempt nor writes anything.
    f.advance(expires - f.now());
    let before = f.snapshot().await;
    for attempt in [late_code.clone(), wrong_for(&late_code)] {
        let err = assert_err(
            f.submit_code(&Fixture::anonymous(), &late.id, &attempt, NEW_PASSWORD)
                .await,
            ErrorKind::FailedPrecondition,
            "CODE-QvUQ4P",
        );
        assert_eq!(err.text, "Code is expired");
    }
    assert_eq!(f.snapshot().await, before);
    assert!(f.has_password(&late, START_PASSWORD).await);
}

#[tokio::test]
async fn an_onboarding_code_lives_seventy_two_hours() {
    let f = Fixture::new().await;
    let early = f.add_initial_user(&f.t1, "early@acme.test").await;
    let late = f.add_initial_user(&f.t1, "late@acme.test").await;
    let early_code = f.return_code(&early).await;
    let late_code = f.return_code(&late).await;
    let expires = f.pending_code(&late).await.unwrap().expires_at;
    assert_eq!(expires, f.now() + Duration::hours(72));

    let early_expires = f.pending_code(&early).await.unwrap().expires_at;
    f.advance(early_expires - f.now() - Duration::milliseconds(1));
    f.submit_code(&Fixture::anonymous(), &early.id, &early_code, NEW_PASSWORD)
        .await
        .unwrap();
    assert_eq!(f.user(&early).await.state, UserState::Active);

    f.advance(expires - f.now());
    assert_err(
        f.submit_code(&Fixture::anonymous(), &late.id, &late_code, NEW_PASSWORD)
            .await,
        ErrorKind::FailedPrecondition,
        "CODE-QvUQ4P",
    );
    assert_eq!(f.user(&late).await.state, UserState::Initial);
}

#[tokio::test]
async fn no_code_unknown_and_deleted_users_get_the_same_answer() {
    let f = Fixture::new().await;
    let without = f.add_user(&f.t1, "without@acme.test").await;
    let gone = f.add_user(&f.t2, "gone@globex.test").await;
    let code = f.return_code(&gone).await;
    f.set_state(&gone, UserState::Deleted).await;

    let no_code = f
        .set_with_code(&without.id, &code, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(
        (no_code.kind, no_code.id),
        (ErrorKind::FailedPrecondition, "COMMAND-2M9fs")
    );
    let unknown = f
        .set_with_code(&UserId::parse(UNKNOWN_ID).unwrap(), &code, NEW_PASSWORD)
        .await
        .unwrap_err();
    let deleted = f
        .set_with_code(&gone.id, &code, NEW_PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(unknown, no_code, "an unknown id is not told apart");
    assert_eq!(deleted, no_code, "nor is a deleted user");
}

#[tokio::test]
async fn inactive_and_locked_users_cannot_use_a_pending_code() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "state@acme.test").await;
    let code = f.return_code(&user).await;
    for (state, id) in [
        (UserState::Locked, "REKEY-UsLck"),
        (UserState::Inactive, "REKEY-UsIna"),
    ] {
        // A plain state change keeps the code pending: the flow itself must refuse it,
        // before counting an attempt.
        f.set_state(&user, state).await;
        let before = f.snapshot().await;
        assert!(
            before.users[0].pending_code.is_some(),
            "the code is still pending"
        );
        assert_err(
            f.set_with_code(&user.id, &code, NEW_PASSWORD).await,
            ErrorKind::FailedPrecondition,
            id,
        );
        assert_eq!(f.snapshot().await, before);
    }
    f.set_state(&user, UserState::Active).await;
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn policy_refusals_name_the_rule_and_give_the_attempt_back() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "policy@acme.test").await;
    let code = f.return_code(&user).await;
    for _ in 0..4 {
        assert_err(
            f.set_with_code(&user.id, &wrong_for(&code), NEW_PASSWORD)
                .await,
            ErrorKind::InvalidArgument,
            "CODE-woT0xc",
        );
    }
    let long = "x".repeat(129);
    for (password, id, text) in [
        (
            "short",
            "REKEY-PwLen",
            "Password is too short: at least 12 characters",
        ),
        (
            long.as_str(),
            "REKEY-PwMax",
            "Password is too long: at most 128 characters",
        ),
        (
            "PASSWORD1234",
            "REKEY-PwCom",
            "Password is too common: it appears in a list of frequently used passwords",
        ),
    ] {
        let before = f.snapshot().await;
        let err = assert_err(
            f.set_with_code(&user.id, &code, password).await,
            ErrorKind::InvalidArgument,
            id,
        );
        assert_eq!(err.text, text);
        assert_eq!(f.snapshot().await, before, "no attempt used up");
    }
    // The fifth attempt is still there for the holder of the code.
    f.set_with_code(&user.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_tenant_policy_names_the_first_broken_rule_and_lists_them_all() {
    let f = Fixture::new().await;
    // Added first: the fixture's start password would not pass the new rules.
    let user = f.add_user(&f.t1, "rules@acme.test").await;
    let other = f.add_user(&f.t2, "rules@globex.test").await;
    f.tick();
    f.rekey
        .set_tenant_settings(
            "test",
            &f.t1.id,
            TenantSettings {
                password_min_length: Some(8),
                password_require_upper: Some(true),
                password_require_digit: Some(true),
                password_require_symbol: Some(true),
                ..TenantSettings::default()
            },
        )
        .await
        .unwrap();

    let code = f.return_code(&user).await;
    let err = assert_err(
        f.set_with_code(&user.id, &code, "lowercase only").await,
        ErrorKind::InvalidArgument,
        "COMMAND-VoaRk",
    );
    assert_eq!(err.text, "Password must contain an upper-case letter");
    let Some(ErrorHint::PasswordRules { policy, broken }) = err.hint else {
        panic!("the rules travel as a hint: {err:?}");
    };
    assert_eq!(policy.min_length, 8);
    assert_eq!(broken, vec![PasswordRule::Upper, PasswordRule::Digit]);
    assert_err(
        f.set_with_code(&user.id, &code, "Upper but no digit").await,
        ErrorKind::InvalidArgument,
        "COMMAND-VoaRl",
    );
    assert_err(
        f.set_with_code(&user.id, &code, "Upper9NoSymbol").await,
        ErrorKind::InvalidArgument,
        "COMMAND-VoaRm",
    );
    f.set_with_code(&user.id, &code, "Sh0rt!er").await.unwrap();

    // The other tenant keeps the instance default: 12 characters, no classes.
    let code = f.return_code(&other).await;
    assert_err(
        f.set_with_code(&other.id, &code, "Sh0rt!er").await,
        ErrorKind::InvalidArgument,
        "REKEY-PwLen",
    );
    f.set_with_code(&other.id, &code, NEW_PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_code_change_revokes_nothing_but_the_users_tokens_and_queues_a_notice() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "notice@acme.test").await;
    let code = f.return_code(&user).await;
    f.tick();
    f.rekey
        .set_password_with_code(
            &Fixture::anonymous(),
            &user.id,
            secret(&code),
            secret(NEW_PASSWORD),
            true,
        )
        .await
        .unwrap();
    assert!(f.user(&user).await.password_change_required);

    let notices = f.messages(&user, MessageKind::PasswordChanged).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].state, OutboxState::Pending);
    assert_eq!(notices[0].recipient.as_deref(), Some("notice@acme.test"));
    let payload = f.open(&notices[0]);
    assert!(payload.code.is_none() && payload.link.is_none());
}

#[tokio::test]
async fn the_current_password_path() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "current@acme.test").await;
    let (_, me) = f.user_token(&user).await;
    let cmd = |current: &str, new: &str| SetPassword {
        user_id: user.id.clone(),
        new_password: secret(new),
        change_required: false,
        verification: Verification::CurrentPassword(secret(current)),
    };

    let err = assert_err(
        f.rekey
            .set_password(&me, cmd("not my password at all", NEW_PASSWORD))
            .await,
        ErrorKind::InvalidArgument,
        "COMMAND-3M0fs",
    );
    assert_eq!(err.text, "Password is invalid");
    assert_err(
        f.rekey
            .set_password(&me, cmd(START_PASSWORD, START_PASSWORD))
            .await,
        ErrorKind::FailedPrecondition,
        "COMMAND-3M0fsd",
    );
    assert_err(
        f.rekey
            .set_password(&me, cmd(START_PASSWORD, "short"))
            .await,
        ErrorKind::InvalidArgument,
        "REKEY-PwLen",
    );
    assert!(f.has_password(&user, START_PASSWORD).await);

    // An admin of the user's tenant may use it too.
    f.rekey
        .set_password(&f.admin1, cmd(START_PASSWORD, NEW_PASSWORD))
        .await
        .unwrap();
    assert!(f.has_password(&user, NEW_PASSWORD).await);
}

#[tokio::test]
async fn an_admin_set_voids_pending_codes_and_accepts_the_same_password() {
    let f = Fixture::new().await;
    let user = f.add_user(&f.t1, "admin@acme.test").await;
    let code = f.return_code(&user).await;
    f.tick();
    f.rekey
        .set_password(
            &f.admin1,
            SetPassword {
                user_id: user.id.clone(),
                new_password: secret(START_PASSWORD),
                change_required: true,
                verification: Verification::Admin,
            },
        )
        .await
        .unwrap();
    assert!(
        f.has_password(&user, START_PASSWORD).await,
        "no history rule"
    );
    assert!(f.user(&user).await.password_change_required);
    assert!(f.pending_code(&user).await.is_none(), "other codes voided");
    assert_err(
        f.set_with_code(&user.id, &code, NEW_PASSWORD).await,
        ErrorKind::FailedPrecondition,
        "COMMAND-2M9fs",
    );
}
