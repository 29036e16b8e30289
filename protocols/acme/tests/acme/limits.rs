//! What the endpoint refuses before a client can exhaust it: the default rate limits, and the
//! bounded validation queue.

use std::time::Duration;

use certgate_acme::RateLimits;
use serde_json::json;

use super::harness::{BASE, Harness, TestKey, nxdomain_dns, silent_dns};

/// The limits in force when the configuration sets none.
#[test]
fn limits_are_on_by_default() {
    let limits = RateLimits::default();
    let on = [
        ("new_accounts_per_ip", limits.new_accounts_per_ip),
        ("new_orders_per_account", limits.new_orders_per_account),
        (
            "pending_authorizations_per_account",
            limits.pending_authorizations_per_account,
        ),
        ("failed_validations_per_account", limits.failed_validations_per_account),
        (
            "failed_validations_per_identifier",
            limits.failed_validations_per_identifier,
        ),
    ];
    for (name, limit) in on {
        assert!(limit.is_some_and(|l| l > 0), "{name} is on by default");
    }
    assert_eq!(limits.window, time::Duration::hours(1));
}

#[tokio::test]
async fn the_default_new_accounts_limit_applies_without_configuration() {
    let h = Harness::new();
    let limit = RateLimits::default().new_accounts_per_ip.unwrap();
    for _ in 0..limit {
        h.new_account().await;
    }
    let resp = h
        .post(
            &TestKey::es256(),
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true})),
        )
        .await;
    assert_eq!((resp.problem().as_str(), resp.status), ("rateLimited", 429));
    assert_eq!(
        resp.header("retry-after"),
        Some("3600"),
        "the rest of the hour (the test clock stands still)"
    );
}

/// Failed validations count per account and identifier: after the default allowance for one
/// name, its challenges are refused while other names still validate.
#[tokio::test]
async fn failed_validations_per_identifier_by_default() {
    let dns = nxdomain_dns().await;
    let h = Harness::with(
        |c| {
            c.danger_always_valid = false;
            c.validation.dns_nameservers = vec![dns];
        },
        |_| {},
    );
    let account = h.new_account().await;
    let allowed = RateLimits::default().failed_validations_per_identifier.unwrap();
    for _ in 0..allowed {
        let (_, order) = h.new_order(&account, &["fails.test"]).await;
        let (challenge, authz) = h.challenge_of(&account, &order, 0, "dns-01").await;
        let resp = h.as_account(&account, &challenge, Some(&json!({}))).await;
        assert_eq!(resp.status, 200, "{:?}", resp.json());
        assert_eq!(h.settled_authorization(&account, &authz).await["status"], "invalid");
    }
    let (_, order) = h.new_order(&account, &["fails.test"]).await;
    let (challenge, authz) = h.challenge_of(&account, &order, 0, "dns-01").await;
    let resp = h.as_account(&account, &challenge, Some(&json!({}))).await;
    assert_eq!((resp.problem().as_str(), resp.status), ("rateLimited", 429));
    assert!(resp.header("retry-after").is_some());
    assert_eq!(h.as_account(&account, &authz, None).await.json()["status"], "pending");
    // Another name of the same account is not held back by it.
    let (_, order) = h.new_order(&account, &["other.test"]).await;
    let (challenge, _) = h.challenge_of(&account, &order, 0, "dns-01").await;
    assert_eq!(h.as_account(&account, &challenge, Some(&json!({}))).await.status, 200);
}

/// One worker, no queue: while a validation hangs, the next challenge is refused with
/// `rateLimited` and `Retry-After`, and stays pending for a later retry.
#[tokio::test]
async fn a_full_validation_queue_refuses_challenges_and_leaves_them_pending() {
    let (_silent, dns) = silent_dns();
    let h = Harness::with(
        |c| {
            c.danger_always_valid = false;
            c.validation_workers = 1;
            c.validation_queue = 0;
            c.validation.dns_nameservers = vec![dns];
            c.validation.timeout = Duration::from_secs(30);
        },
        |_| {},
    );
    let account = h.new_account().await;
    let (_, first) = h.new_order(&account, &["a.test"]).await;
    let (_, second) = h.new_order(&account, &["b.test"]).await;
    let (busy, _) = h.challenge_of(&account, &first, 0, "dns-01").await;
    let resp = h.as_account(&account, &busy, Some(&json!({}))).await;
    assert_eq!(resp.json()["status"], "processing");

    let (refused, authz) = h.challenge_of(&account, &second, 0, "dns-01").await;
    let resp = h.as_account(&account, &refused, Some(&json!({}))).await;
    assert_eq!((resp.problem().as_str(), resp.status), ("rateLimited", 429));
    assert_eq!(resp.header("retry-after"), Some("30"), "a worker is free by then");
    let authz = h.as_account(&account, &authz, None).await.json();
    assert_eq!(authz["status"], "pending");
    assert!(
        authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "pending"),
        "{authz}"
    );
}

/// While the authority sheds new issuance (the daemon's store monitor paused it), newOrder is
/// refused with rateLimited and Retry-After before anything is written, and an order admitted
/// before the pause still finalizes.
#[tokio::test]
async fn a_paused_authority_sheds_new_orders_but_finishes_admitted_ones() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (_, admitted) = h.new_order(&account, &["admitted.test"]).await;
    h.authorize(&account, &admitted, "http-01").await;

    h.ta.authority.admission().pause(Duration::from_secs(5));
    let resp = h
        .as_account(
            &account,
            &format!("{BASE}/new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "shed.test"}]})),
        )
        .await;
    assert_eq!((resp.problem().as_str(), resp.status), ("rateLimited", 429));
    assert_eq!(resp.header("retry-after"), Some("5"));
    assert!(resp.header("replay-nonce").is_some());
    let account_id = account.kid.rsplit('/').next().unwrap();
    let orders = certgate_store::AcmeStore::orders_of_account(&h.ta.store, account_id, None, 10)
        .await
        .unwrap();
    assert_eq!(orders.ids.len(), 1, "the shed order was not stored: {:?}", orders.ids);

    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = certgate_test_support::csr(&key, None, &["admitted.test"]);
    let resp = h.finalize(&account, &admitted, &csr).await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    assert_eq!(h.certificate_count().await, 1);

    h.ta.authority.admission().resume();
    h.new_order(&account, &["after.test"]).await;
}
