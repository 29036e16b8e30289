//! SCEP EnvelopedData parsing and every BER fallback of the PKIMessage code, reached directly
//! (no signature needed): `parse_envelope` and, one by one, the DER-then-BER ContentInfo,
//! SignedData and EnvelopedData decoders, the eContent octets, the rewrite of a constructed
//! encryptedContent (go.mozilla.org/pkcs7's form) and both chunk joiners. A PKIMessage input
//! (the seeds are recorded ones) has its eContent, the EnvelopedData, fed in as well.
#![no_main]

use std::sync::LazyLock;

use certgate_scep::{fuzz_envelope, parse_pki_message};
use libfuzzer_sys::fuzz_target;

/// Any parseable certificate works as "the RA" for parsing: the recipient choice falls back
/// to the only key-transport recipient. This one is the signer of a recorded real request.
static RA: LazyLock<Vec<u8>> = LazyLock::new(|| {
    parse_pki_message(include_bytes!(
        "../../../testdata/scep/micromdm-scepclient-2.1-pkcsreq.der"
    ))
    .ok()
    .and_then(|m| m.signer_certificate)
    .unwrap_or_default()
});

fuzz_target!(|data: &[u8]| {
    fuzz_envelope(data, &RA);
    if let Ok(message) = parse_pki_message(data) {
        fuzz_envelope(&message.content, &RA);
    }
});
