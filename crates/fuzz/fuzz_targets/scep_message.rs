//! SCEP input from the network: the PKIMessage (SignedData, its attributes, the enclosed
//! EnvelopedData as parsed before decryption), the GET `message=` parameter in all its
//! client-specific spellings, POST bodies, and request paths.
#![no_main]

use std::sync::LazyLock;

use certgate_scep::{decode_message_param, decode_post_body, parse_envelope, parse_path, parse_pki_message};
use libfuzzer_sys::fuzz_target;

/// Any parseable certificate works as "the RA" for parsing: the recipient choice falls back
/// to the only key-transport recipient. This one is the signer of a recorded real request.
static RA: LazyLock<Vec<u8>> = LazyLock::new(|| {
    parse_pki_message(include_bytes!("../../../testdata/scep/micromdm-scepclient-2.1-pkcsreq.der"))
        .ok()
        .and_then(|m| m.signer_certificate)
        .unwrap_or_default()
});

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = parse_pki_message(data) {
        let _ = message.verify(true);
        let _ = message.signing_time();
        let _ = parse_envelope(&message.content, &RA);
    }
    let _ = parse_envelope(data, &RA);
    let _ = decode_post_body(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(der) = decode_message_param(text) {
            let _ = parse_pki_message(&der);
        }
        let _ = parse_path(text);
    }
});
