//! PKCS#10 parsing and proof-of-possession check: every protocol hands client bytes here.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = certgate_core::ParsedCsr::from_der(data) {
        // Everything a caller reads must be safe to read.
        let _ = (csr.key(), csr.common_name(), csr.sans(), csr.subject_text(), csr.challenge_password());
        let _ = (csr.unsupported_sans(), csr.requested_extensions(), csr.spki_der().len());
    }
});
