//! OCSP requests: the DER OCSPRequest parser (POST bodies) and the GET path decoder
//! (percent-encoding, base64 spanning path segments, an optional issuer segment), then the
//! parser again on whatever a path decodes to.
#![no_main]

use certgate_revocation::{MAX_REQUEST_LEN, MAX_REQUESTS, decode_get_path, parse_ocsp_request};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    check_request(data);
    if let Ok(text) = std::str::from_utf8(data) {
        for path in [
            text.to_owned(),
            format!("/ocsp/{text}"),
            format!("/ocsp/default/{text}"),
        ] {
            if let Ok(get) = decode_get_path(&path) {
                assert!(!get.der.is_empty() && get.der.len() <= MAX_REQUEST_LEN);
                check_request(&get.der);
            }
        }
    }
});

fn check_request(der: &[u8]) {
    if let Ok(request) = parse_ocsp_request(der) {
        assert!((1..=MAX_REQUESTS).contains(&request.cert_ids.len()));
        assert!(request.nonce.as_ref().is_none_or(|n| !n.is_empty()));
        assert_eq!(
            request.cacheable(),
            request.cert_ids.len() == 1 && request.nonce.is_none()
        );
        for id in &request.cert_ids {
            if let Some(serial) = &id.serial {
                assert!(serial.as_bytes().len() <= 21);
            }
        }
    }
}
