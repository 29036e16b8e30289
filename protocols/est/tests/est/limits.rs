//! Work a request can make the server do before it is refused: the server-wide limit on
//! Argon2 password checks, and serverkeygen's policy check before its key generation.
//!
//! Both tests run their requests with `tokio::join!` on the test's single-threaded runtime:
//! the first request is polled until it waits on its blocking task (the password check or
//! the key generation), holding its permit, and only then is the next request polled.

use std::sync::Arc;

use certgate_core::{KeyKind, SystemClock};
use certgate_est::{ClientAuth, EstEndpointConfig, EstRequest, EstServer, EstStores, TlsFacts};
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
