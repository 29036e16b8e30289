//! What `Debug` of a request may show.

use certgate_est::EstRequest;

use crate::harness::*;

#[test]
fn request_debug_shows_no_credentials_and_no_body() {
    let tls = tls13();
    let authorization = basic(USER, PASSWORD);
    let body = b"MIIBsecretcsrbodyMIIB".as_slice();
    let cases = [
        ("with_basic", authorization.as_deref(), "Some(\"<redacted>\")"),
        ("without_basic", None, "authorization: None"),
    ];
    for (case, authorization, shows) in cases {
        let request = EstRequest {
            method: "POST",
            path: "/.well-known/est/simpleenroll",
            query: None,
            content_type: Some("application/pkcs10"),
            authorization,
            body,
            body_too_large: false,
            peer: "127.0.0.1".parse().unwrap(),
            tls: Some(&tls),
        };
        let debug = format!("{request:?}");
        let encoded = authorization.map(|a| a.trim_start_matches("Basic ").to_owned());
        for secret in [Some(PASSWORD.to_owned()), encoded, Some("secretcsrbody".to_owned())]
            .into_iter()
            .flatten()
        {
            assert!(!debug.contains(&secret), "case {case}: {secret:?} in {debug}");
        }
        assert!(debug.contains(shows), "case {case}: {debug}");
        assert!(
            debug.contains(&format!("body_len: {}", body.len())),
            "case {case}: {debug}"
        );
        assert!(debug.contains("/.well-known/est/simpleenroll"), "case {case}: {debug}");
    }
}
