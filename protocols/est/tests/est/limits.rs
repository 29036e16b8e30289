//! Work a request can make the server do before it is refused: the server-wide limit on
//! Argon2 password checks, the per-address limits on them, and serverkeygen's policy check
//! before its key generation.
//!
//! The tests that race requests run them with `tokio::join!` on the test's single-threaded
//! runtime: the first request is polled until it waits on its blocking task (the password
//! check or the key generation), holding its permit, and only then is the next request polled.

use std::sync::Arc;

use certgate_core::{KeyKind, SystemClock};
use certgate_est::{AuthLimitConfig, ClientAuth, EstEndpointConfig, EstRequest, EstServer, EstStores, TlsFacts};
use certgate_store::CertificateStore;
use certgate_test_support::name;
use rcgen::KeyPair;

use crate::harness::*;

fn server(h: &Harness, config: EstEndpointConfig) -> EstServer {
    let stores = EstStores {
        users: Arc::new(h.ta.store.clone()),
        approvals: Arc::new(h.ta.store.clone()),
    };
    EstServer::new(vec![config], stores, Arc::clone(&h.ta.authority), Arc::new(SystemClock)).unwrap()
}

fn enroll<'a>(path: &'a str, authorization: Option<&'a str>, body: &'a [u8], tls: &'a TlsFacts) -> EstRequest<'a> {
    EstRequest {
        method: "POST",
        path,
        query: None,
        content_type: Some("application/pkcs10"),
        authorization,
        body,
        body_too_large: false,
        peer: "127.0.0.1".parse().unwrap(),
        tls: Some(tls),
    }
}

fn csr(cn: &str, san: &str) -> Vec<u8> {
    csr_b64(&KeyPair::generate().unwrap(), cn, &[san], None)
}

#[tokio::test]
async fn password_checks_beyond_the_server_limit_answer_503() {
    let h = Harness::new().await;
    let server = server(&h, EstEndpointConfig::new(name("default"))).with_password_check_limit(1);
    let tls = tls13();
    let path = "/.well-known/est/simpleenroll";
    let good = basic(USER, PASSWORD);
    let unknown = basic("mallory", PASSWORD);
    let wrong = basic(USER, "wrong password");
    let bodies: Vec<Vec<u8>> = (0..4)
        .map(|i| csr(&format!("busy-{i}"), &format!("busy{i}.example.com")))
        .collect();
    // The first request's check holds the one permit; each case arrives meanwhile.
    let cases = [
        ("bad_known_user", good.as_deref(), &bodies[1]),
        ("bad_unknown_user", unknown.as_deref(), &bodies[2]),
        ("bad_wrong_password", wrong.as_deref(), &bodies[3]),
    ];
    let before = h.ta.store.journal_status().await.unwrap().certificates;
    let holder = enroll(path, good.as_deref(), &bodies[0], &tls);
    let requests: Vec<EstRequest<'_>> = cases
        .iter()
        .map(|(_, authorization, body)| enroll(path, *authorization, body, &tls))
        .collect();
    let (held, a, b, c) = tokio::join!(
        server.handle(&holder),
        server.handle(&requests[0]),
        server.handle(&requests[1]),
        server.handle(&requests[2]),
    );
    assert_eq!(held.status, 200, "{}", String::from_utf8_lossy(&held.body));
    for ((case, _, _), response) in cases.iter().zip([a, b, c]) {
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, 503, "case {case}: {text}");
        assert_eq!(response.header_value("retry-after"), Some("5"), "case {case}");
        assert!(text.contains("busy"), "case {case}: {text}");
    }
    let after = h.ta.store.journal_status().await.unwrap().certificates;
    assert_eq!(after - before, 1, "only the holder's certificate was stored");

    // The permit is back once the check returned.
    let again = server.handle(&requests[0]).await;
    assert_eq!(again.status, 200, "{}", String::from_utf8_lossy(&again.body));
}

#[test]
fn the_default_password_check_limit_is_at_least_two() {
    assert!(certgate_est::default_password_check_limit() >= certgate_est::MIN_PASSWORD_CHECKS);
    assert_eq!(certgate_est::MIN_PASSWORD_CHECKS, 2);
}

#[tokio::test]
async fn serverkeygen_refuses_by_policy_before_generating_a_key() {
    let h = Harness::new().await;
    // "strict" allows only names under example.com. Client certificates, so authentication
    // does not wait on a blocking thread; one slot, held by the good request's key generation.
    let mut config = EstEndpointConfig::new(name("strict"));
    config.auth = ClientAuth::Certificate;
    config.trust_anchors = vec![h.maker.ca_der.clone()];
    config.server_keygen = Some(KeyKind::EcP256);
    config.max_in_flight = 1;
    let server = server(&h, config);
    let tls = with_chain(vec![h.maker.device_der.clone()]);
    let path = "/.well-known/est/strict/serverkeygen";
    let good = csr("kg-good", "kg.example.com");
    let cases = [
        (
            "bad_name_outside_policy",
            csr("kg-refused", "kg.example.net"),
            403,
            "not allowed",
        ),
        (
            "bad_second_name_outside_policy",
            csr("kg-refused-2", "other.test"),
            403,
            "not allowed",
        ),
    ];
    let before = h.ta.store.journal_status().await.unwrap().certificates;
    let holder = enroll(path, None, &good, &tls);
    let requests: Vec<EstRequest<'_>> = cases
        .iter()
        .map(|(_, body, _, _)| enroll(path, None, body, &tls))
        .collect();
    let (generated, a, b) = tokio::join!(
        server.handle(&holder),
        server.handle(&requests[0]),
        server.handle(&requests[1]),
    );
    let text = String::from_utf8_lossy(&generated.body);
    assert_eq!(generated.status, 200, "{text}");
    assert_eq!(generated.header_value("cache-control"), Some("no-store"));
    assert!(text.contains("application/pkcs8"));
    // Refused for their names while the only slot (and so the key generator) was busy: the
    // policy was decided before a slot was taken or a key generated, else they would be 503.
    for ((case, _, status, says), response) in cases.iter().zip([a, b]) {
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, *status, "case {case}: {text}");
        assert!(text.contains(says), "case {case}: {text}");
        assert_eq!(response.header_value("cache-control"), None, "case {case}");
    }
    let after = h.ta.store.journal_status().await.unwrap().certificates;
    assert_eq!(after - before, 1, "only the good request was stored");
}

/// `request` as sent from `peer`.
fn from<'a>(peer: &str, request: EstRequest<'a>) -> EstRequest<'a> {
    EstRequest {
        peer: peer.parse().unwrap(),
        ..request
    }
}

/// A budget of three failed password checks per address, one more per minute.
fn strict_auth_limit() -> EstEndpointConfig {
    let mut config = EstEndpointConfig::new(name("default"));
    config.auth_limit = AuthLimitConfig {
        failures_per_minute: 1,
        failure_burst: 3,
        ..AuthLimitConfig::default()
    };
    config
}

#[tokio::test]
async fn an_address_over_its_failure_budget_gets_429_before_any_password_check() {
    let h = Harness::new().await;
    let server = server(&h, strict_auth_limit());
    let tls = tls13();
    let path = "/.well-known/est/simpleenroll";
    let good = basic(USER, PASSWORD);
    let wrong = basic(USER, "wrong password");
    let unknown = basic("mallory", PASSWORD);
    let body = csr("limited", "limited.example.com");
    // Wrong passwords and unknown users alike spend the attacker's budget.
    let spending = [
        ("bad_wrong_password", wrong.as_deref()),
        ("bad_unknown_user", unknown.as_deref()),
        ("bad_wrong_password_again", wrong.as_deref()),
    ];
    for (case, authorization) in spending {
        let response = server
            .handle(&from("192.0.2.66", enroll(path, authorization, &body, &tls)))
            .await;
        assert_eq!(
            response.status,
            401,
            "case {case}: {}",
            String::from_utf8_lossy(&response.body)
        );
    }
    // Then the address is refused before any check: even the right password gets 429, which
    // it could not if Argon2 had run for it.
    let cases = [
        ("bad_wrong_password", "192.0.2.66", wrong.as_deref(), 429),
        ("bad_unknown_user", "192.0.2.66", unknown.as_deref(), 429),
        ("bad_even_the_right_password", "192.0.2.66", good.as_deref(), 429),
        ("bad_same_address_in_ipv6", "::ffff:192.0.2.66", good.as_deref(), 429),
        ("good_other_address_wrong_password", "192.0.2.67", wrong.as_deref(), 401),
        ("good_fresh_address", "192.0.2.68", good.as_deref(), 200),
        ("good_fresh_ipv6_address", "2001:db8::68", good.as_deref(), 200),
    ];
    for (i, (case, peer, authorization, status)) in cases.into_iter().enumerate() {
        let body = csr(&format!("limited-{i}"), &format!("limited{i}.example.com"));
        let response = server
            .handle(&from(peer, enroll(path, authorization, &body, &tls)))
            .await;
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, status, "case {case}: {text}");
        if status == 429 {
            assert_eq!(response.header_value("retry-after"), Some("60"), "case {case}");
            assert!(text.contains("too many password checks"), "case {case}: {text}");
            assert_eq!(response.header_value("www-authenticate"), None, "case {case}");
        }
    }
}

#[tokio::test]
async fn an_address_over_its_failure_budget_takes_no_password_check_permit() {
    let h = Harness::new().await;
    // One server-wide permit, held by a device's check while the refused address asks: a
    // refusal before the permit is 429, one after it would be 503.
    let server = server(&h, strict_auth_limit()).with_password_check_limit(1);
    let tls = tls13();
    let path = "/.well-known/est/simpleenroll";
    let good = basic(USER, PASSWORD);
    let wrong = basic(USER, "wrong password");
    let body = csr("permit", "permit.example.com");
    for _ in 0..3 {
        let response = server
            .handle(&from("192.0.2.66", enroll(path, wrong.as_deref(), &body, &tls)))
            .await;
        assert_eq!(response.status, 401, "{}", String::from_utf8_lossy(&response.body));
    }
    let device = from("192.0.2.1", enroll(path, good.as_deref(), &body, &tls));
    let refused = from("192.0.2.66", enroll(path, wrong.as_deref(), &body, &tls));
    let (device, refused) = tokio::join!(server.handle(&device), server.handle(&refused));
    assert_eq!(device.status, 200, "{}", String::from_utf8_lossy(&device.body));
    assert_eq!(refused.status, 429, "{}", String::from_utf8_lossy(&refused.body));
    assert_eq!(refused.header_value("retry-after"), Some("60"));
}

#[tokio::test]
async fn concurrent_checks_of_one_address_beyond_its_limit_get_429() {
    let h = Harness::new().await;
    let mut config = EstEndpointConfig::new(name("default"));
    config.auth_limit.concurrent_per_client = 1;
    let server = server(&h, config);
    let tls = tls13();
    let path = "/.well-known/est/simpleenroll";
    let good = basic(USER, PASSWORD);
    let bodies: Vec<Vec<u8>> = (0..3)
        .map(|i| csr(&format!("nat-{i}"), &format!("nat{i}.example.com")))
        .collect();
    // The first check is running on its blocking thread when the next two arrive.
    let requests = [("192.0.2.1", 0), ("192.0.2.1", 1), ("192.0.2.2", 2)]
        .map(|(peer, i)| from(peer, enroll(path, good.as_deref(), &bodies[i], &tls)));
    let (first, same, other) = tokio::join!(
        server.handle(&requests[0]),
        server.handle(&requests[1]),
        server.handle(&requests[2]),
    );
    assert_eq!(first.status, 200, "{}", String::from_utf8_lossy(&first.body));
    assert_eq!(same.status, 429, "{}", String::from_utf8_lossy(&same.body));
    assert_eq!(same.header_value("retry-after"), Some("1"));
    assert_eq!(other.status, 200, "{}", String::from_utf8_lossy(&other.body));
    // The place is free again once the check returned, and a success spent no budget.
    let again = server.handle(&requests[1]).await;
    assert_eq!(again.status, 200, "{}", String::from_utf8_lossy(&again.body));
}

/// While the authority sheds new issuance, every enrollment operation answers 503 with the
/// authority's `Retry-After` before the password is checked, and nothing is stored.
#[tokio::test]
async fn a_paused_authority_sheds_enrollments_with_503() {
    let h = Harness::new().await;
    let mut config = EstEndpointConfig::new(name("default"));
    config.server_keygen = Some(KeyKind::EcP256);
    let server = server(&h, config);
    let tls = tls13();
    let good = basic(USER, PASSWORD);
    let body = csr("shed", "shed.example.com");
    let before = h.ta.store.journal_status().await.unwrap().certificates;
    h.ta.authority.admission().pause(std::time::Duration::from_secs(9));
    for operation in ["simpleenroll", "simplereenroll", "serverkeygen"] {
        let path = format!("/.well-known/est/{operation}");
        let response = server.handle(&enroll(&path, good.as_deref(), &body, &tls)).await;
        let text = String::from_utf8_lossy(&response.body);
        assert_eq!(response.status, 503, "{operation}: {text}");
        assert_eq!(response.header_value("retry-after"), Some("9"), "{operation}");
    }
    assert_eq!(h.ta.store.journal_status().await.unwrap().certificates, before);
    h.ta.authority.admission().resume();
    let path = "/.well-known/est/simpleenroll";
    let response = server.handle(&enroll(path, good.as_deref(), &body, &tls)).await;
    assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
}
