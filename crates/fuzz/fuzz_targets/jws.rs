//! ACME request bodies: flattened JWS parsing, header rules, JWK parsing and verification.
#![no_main]

use certgate_acme::jws::{AccountKey, ParsedJws, Signer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = ParsedJws::parse(data) {
        if let Signer::Jwk(key) = &parsed.header().signer {
            let key = key.clone();
            let _ = key.thumbprint();
            let _ = parsed.verify(&key);
        }
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = AccountKey::from_jwk(&value);
    }
});
