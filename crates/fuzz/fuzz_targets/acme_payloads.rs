//! ACME JSON payloads after the JWS: newOrder identifiers and times, external account
//! bindings, ARI certificate identifiers and keyChange inner JWS.
#![no_main]

use certgate_acme::ari::CertId;
use certgate_acme::eab::ParsedEab;
use certgate_acme::flow::{parse_identifiers, parse_time};
use certgate_acme::jws::{AccountKey, ParsedJws};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CertId::parse(text);
    }
    let _ = ParsedJws::parse_key_change_inner(data);
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let _ = parse_identifiers(value.get("identifiers"));
    let _ = parse_time(value.get("notAfter"), "notAfter");
    if let (Some(eab), Some(jwk)) = (value.get("externalAccountBinding"), value.get("jwk"))
        && let Ok(key) = AccountKey::from_jwk(jwk)
    {
        if let Ok(parsed) = ParsedEab::parse(eab, &key, "https://ca.test/acme/default/new-account") {
            let _ = parsed.verify(b"fuzzing mac key");
        }
    }
});
