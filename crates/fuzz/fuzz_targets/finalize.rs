//! The ACME finalize path on untrusted CSR bytes: PKCS#10 parsing and proof of possession, the
//! CSR-names-equal-identifiers check against an order, and the CSR-key-is-not-the-account-key
//! comparison (SPKI to JWK key).
#![no_main]

use std::sync::LazyLock;

use certgate_acme::flow::{check_csr_names, parse_identifiers};
use certgate_acme::jws::AccountKey;
use certgate_core::{Name, ParsedCsr};
use certgate_store::acme::{OrderRecord, OrderStatus};
use libfuzzer_sys::fuzz_target;
use time::OffsetDateTime;

static ORDER: LazyLock<OrderRecord> = LazyLock::new(|| {
    let identifiers = parse_identifiers(Some(&serde_json::json!([
        {"type": "dns", "value": "dev1.example.com"},
        {"type": "dns", "value": "www.example.com"},
        {"type": "ip", "value": "192.0.2.10"},
    ])))
    .expect("fixed identifiers parse");
    OrderRecord {
        id: "fuzz".into(),
        endpoint: Name::new("default").expect("valid name"),
        account_id: "fuzz".into(),
        status: OrderStatus::Ready,
        expires: OffsetDateTime::UNIX_EPOCH,
        identifiers: identifiers.into_iter().map(|i| i.requested).collect(),
        not_before: None,
        not_after: None,
        profile: None,
        replaces: None,
        replaces_id: None,
        authorizations: Vec::new(),
        error: None,
        certificate: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        processing_since: None,
        version: 1,
    }
});

fuzz_target!(|data: &[u8]| {
    if let Ok(csr) = ParsedCsr::from_der(data) {
        let _ = check_csr_names(&csr, &ORDER);
        if let Some(key) = AccountKey::from_spki_der(csr.spki_der()) {
            let _ = key.thumbprint();
        }
    }
    let _ = AccountKey::from_spki_der(data);
});
