//! Test helpers: verification the way a server does it, from the JWK alone.

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents, UnparsedPublicKey,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// base64url-decodes test data.
pub(crate) fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s).expect("test data is base64url")
}

/// base64url-decodes and parses JSON.
pub(crate) fn unb64_json(s: &str) -> Value {
    serde_json::from_slice(&unb64(s)).expect("test data is JSON")
}

/// Verifies `sig` over `msg` with nothing but the key's JWK.
pub(crate) fn verify_with_jwk(jwk: &Value, msg: &[u8], sig: &[u8]) -> bool {
    let member = |name: &str| unb64(jwk[name].as_str().expect("member present"));
    match jwk["kty"].as_str() {
        Some("EC") => {
            let mut point = vec![4];
            point.extend(member("x"));
            point.extend(member("y"));
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                .verify(msg, sig)
                .is_ok()
        }
        Some("RSA") => RsaPublicKeyComponents {
            n: member("n"),
            e: member("e"),
        }
        .verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
        .is_ok(),
        Some("OKP") => UnparsedPublicKey::new(&ED25519, member("x")).verify(msg, sig).is_ok(),
        _ => false,
    }
}
