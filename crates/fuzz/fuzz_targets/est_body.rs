//! EST request bodies and headers: base64 / PEM / DER body decoding, the PKCS#10 request in it
//! (and what the server then reads of it: csrattrs enforcement, the approval fingerprint,
//! channel binding on its challengePassword), and the `Authorization: Basic` header.
#![no_main]

use std::sync::LazyLock;

use certgate_core::KeyKind;
use certgate_est::config::CsrAttrsConfig;
use certgate_est::tls::{TlsFacts, TlsVersion};
use certgate_est::{approval_fingerprint, check_channel_binding, codec, csrattrs, decode_csr_body, password};
use libfuzzer_sys::fuzz_target;

static ATTRS: LazyLock<CsrAttrsConfig> = LazyLock::new(|| CsrAttrsConfig {
    challenge_password: true,
    key: Some(KeyKind::EcP256),
    extensions: vec![const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME],
    enforce: true,
});

static TLS: LazyLock<TlsFacts> = LazyLock::new(|| TlsFacts {
    version: Some(TlsVersion::Tls12),
    client_chain: Vec::new(),
    exporter: Some([7u8; 32]),
    tls_unique: Some(vec![9u8; 12]),
});

fuzz_target!(|data: &[u8]| {
    let decoded = codec::decode_body(data);
    match decode_csr_body(data) {
        Ok(csr) => {
            assert!(decoded.is_ok(), "a CSR parsed from a body that does not decode");
            let _ = csrattrs::missing(&ATTRS, &csr);
            let _ = approval_fingerprint(&csr);
            let _ = check_channel_binding(&TLS, csr.challenge_password());
            let _ = (csr.subject_text(), csr.sans(), csr.requested_extensions());
        }
        Err(_) => {
            if let Ok(der) = decoded {
                let _ = certgate_core::ParsedCsr::from_der(&der);
            }
        }
    }
    if let Ok(header) = std::str::from_utf8(data) {
        if let Some(credentials) = password::parse_basic(header) {
            assert!(password::valid_username(&credentials.username));
            assert!(credentials.password().len() <= password::MAX_PASSWORD_LEN);
        }
    }
});
