//! Issue 14's authorization findings on the EST side: simplereenroll renews only this
//! endpoint's own certificates with the same names (RFC 7030 4.2.2), and a client certificate
//! certgate revoked authenticates nothing. Every refusal is a status with a text body and
//! leaves the inventory as it was.

use certgate_authority::IssueRequest;
use certgate_core::{ParsedCsr, Protocol, RequesterId, RevocationReason, Serial};
use certgate_est::{EstResponse, TlsFacts};
use certgate_store::CertificateStore;
use certgate_test_support::name;
use der::Decode;
use rcgen::KeyPair;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;

use crate::harness::*;

const REQUESTER: &str = "est-user:default/bob";

fn serial_of(der: &[u8]) -> Serial {
    let cert = Certificate::from_der(der).unwrap();
    Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()).unwrap()
}

async fn inventory_count(h: &Harness) -> u64 {
    h.ta.store.journal_status().await.unwrap().certificates
}

/// A certificate for `key` with subject CN=`cn` and DNS `sans`, issued by the authority
/// directly through `protocol`/`endpoint`, valid until `not_after` if given.
async fn issue_direct(
    h: &Harness,
    (protocol, endpoint): (Protocol, &str),
    key: &KeyPair,
    cn: &str,
    sans: &[&str],
    not_after: Option<OffsetDateTime>,
) -> Vec<u8> {
    let mut request = IssueRequest::new(
        protocol,
        name(endpoint),
        ParsedCsr::from_der(&csr_der(key, cn, sans, None)).unwrap(),
        RequesterId::new(REQUESTER).unwrap(),
    );
    request.not_after = not_after;
    h.ta.authority.issue(request).await.unwrap().record.der
}

/// POSTs a CSR for a fresh key to `path` over TLS with `chain` and optional Basic credentials.
async fn post(h: &Harness, path: &str, chain: &[&[u8]], cn: &str, sans: &[&str], basic_auth: bool) -> EstResponse {
    let tls: TlsFacts = with_chain(chain.iter().map(|c| c.to_vec()).collect());
    let body = csr_b64(&KeyPair::generate().unwrap(), cn, sans, None);
    let call = Call {
        authorization: if basic_auth { basic(USER, PASSWORD) } else { None },
        ..Call::post(path, &body, &tls)
    };
    h.call(call).await
}

fn text(response: &EstResponse) -> String {
    String::from_utf8_lossy(&response.body).into_owned()
}

/// Finding A: simplereenroll renews a certificate only through the EST endpoint that issued it
/// (or one listed in `renewal_from_endpoints`), unrevoked and unexpired, with the same subject
/// and subjectAltNames. Anything else needs the endpoint's own authentication and approval,
/// and without it is refused with 403.
#[tokio::test]
async fn reenroll_needs_this_endpoints_certificate_and_the_same_names() {
    let h = Harness::new().await;
    let key = KeyPair::generate().unwrap();
    let scep = (Protocol::Scep, SCEP_ENDPOINT);
    let default = (Protocol::Est, "default");
    let names = ["a.example.com", "b.example.com"];
    let scep_cert = issue_direct(&h, scep, &key, "device-1", &[], None).await;
    let ours = issue_direct(&h, default, &key, "device-1", &names, None).await;
    let other = issue_direct(&h, (Protocol::Est, "strict"), &key, "device-1", &[], None).await;
    let revoked = issue_direct(&h, default, &key, "device-1", &[], None).await;
    h.ta.authority
        .revoke(&serial_of(&revoked), RevocationReason::KeyCompromise, "test")
        .await
        .unwrap();
    let soon = OffsetDateTime::now_utc() + Duration::seconds(2);
    let expired = issue_direct(&h, default, &key, "device-1", &[], Some(soon)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;

    let path = "/.well-known/est/simplereenroll";
    let payroll = ["payroll.corp.example"];
    type Case<'a> = (&'static str, &'a [u8], &'static str, &'a [&'a str], &'static str);
    let cases: [Case<'_>; 8] = [
        (
            "bad_scep_certificate_new_san",
            &scep_cert,
            "device-1",
            &payroll,
            "another endpoint",
        ),
        (
            "bad_scep_certificate_same_names",
            &scep_cert,
            "device-1",
            &[],
            "another endpoint",
        ),
        ("bad_other_est_endpoint", &other, "device-1", &[], "another endpoint"),
        ("bad_revoked", &revoked, "device-1", &[], "revoked"),
        ("bad_expired", &expired, "device-1", &[], "expired"),
        (
            "bad_added_san",
            &ours,
            "device-1",
            &["a.example.com", "b.example.com", "payroll.corp.example"],
            "subjectAltNames",
        ),
        (
            "bad_removed_san",
            &ours,
            "device-1",
            &["a.example.com"],
            "subjectAltNames",
        ),
        ("bad_changed_subject", &ours, "device-2", &names, "subject"),
    ];
    for (case, cert, cn, sans, word) in cases {
        let before = inventory_count(&h).await;
        let response = post(&h, path, &[cert], cn, sans, false).await;
        assert_eq!(response.status, 403, "case {case}: {}", text(&response));
        assert_eq!(
            response.header_value("content-type"),
            Some("text/plain; charset=utf-8"),
            "case {case}"
        );
        assert!(
            text(&response).contains(word),
            "case {case}: {word:?} not in {}",
            text(&response)
        );
        assert_eq!(inventory_count(&h).await, before, "case {case}: nothing issued");
    }

    // The same names in another order, through the endpoint that issued it: renewed.
    let response = post(
        &h,
        path,
        &[&ours],
        "device-1",
        &["b.example.com", "a.example.com"],
        false,
    )
    .await;
    assert_eq!(response.status, 200, "{}", text(&response));
    let record =
        h.ta.store
            .certificate(&serial_of(&certs_of(&response.body)[0]))
            .await
            .unwrap();
    assert_eq!(record.replaces, Some(serial_of(&ours)));
    assert_eq!(record.requester.as_str(), REQUESTER, "the requester carries over");

    // A refused re-enrollment with the endpoint's own authentication is a first enrollment:
    // issued as new, and queued where approval is required.
    let response = post(&h, path, &[&scep_cert], "device-1", &payroll, true).await;
    assert_eq!(response.status, 200, "{}", text(&response));
    let record =
        h.ta.store
            .certificate(&serial_of(&certs_of(&response.body)[0]))
            .await
            .unwrap();
    assert_eq!(record.replaces, None);
    assert_eq!(record.requester.as_str(), "est-user:default/alice");
    let before = inventory_count(&h).await;
    let approve = "/.well-known/est/approve/simplereenroll";
    let response = post(&h, approve, &[&scep_cert], "device-1", &payroll, true).await;
    assert_eq!(response.status, 202, "{}", text(&response));
    assert_eq!(inventory_count(&h).await, before, "queued, not issued");

    // An endpoint that lists the SCEP endpoint renews its certificates, same names only.
    let from_scep = "/.well-known/est/fromscep/simplereenroll";
    let response = post(&h, from_scep, &[&scep_cert], "device-1", &payroll, false).await;
    assert_eq!(response.status, 403, "{}", text(&response));
    assert_eq!(inventory_count(&h).await, before);
    let response = post(&h, from_scep, &[&scep_cert], "device-1", &[], false).await;
    assert_eq!(response.status, 200, "{}", text(&response));
    let record =
        h.ta.store
            .certificate(&serial_of(&certs_of(&response.body)[0]))
            .await
            .unwrap();
    assert_eq!(record.replaces, Some(serial_of(&scep_cert)));
}

/// Finding D: on an endpoint whose anchors include certgate's own CA, a client certificate
/// certgate revoked (or that expired) authenticates nothing, not even next to a valid
/// password; certificates certgate never issued are the anchors' business alone.
#[tokio::test]
async fn client_certificates_certgate_revoked_are_refused() {
    let h = Harness::new().await;
    let key = KeyPair::generate().unwrap();
    let default = (Protocol::Est, "default");
    let issuer = h.ta.ca.issuer.certificate_der().to_vec();
    let live = issue_direct(&h, default, &key, "device-7", &[], None).await;
    let revoked = issue_direct(&h, default, &key, "device-8", &[], None).await;
    h.ta.authority
        .revoke(&serial_of(&revoked), RevocationReason::KeyCompromise, "test")
        .await
        .unwrap();
    let soon = OffsetDateTime::now_utc() + Duration::seconds(2);
    let expired = issue_direct(&h, default, &key, "device-9", &[], Some(soon)).await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;

    let path = "/.well-known/est/own/simpleenroll";
    let maker = h.maker.device_der.clone();
    type Case<'a> = (&'static str, Vec<&'a [u8]>, bool, &'a [u16]);
    let cases: [Case<'_>; 6] = [
        ("good_live_certificate", vec![&live, &issuer], false, &[200]),
        ("good_maker_certificate", vec![&maker], false, &[200]),
        ("bad_revoked", vec![&revoked, &issuer], false, &[403]),
        ("bad_revoked_with_password", vec![&revoked, &issuer], true, &[403]),
        // webpki refuses it from the second after notAfter (401); within that second the
        // inventory, which keeps notAfter exactly, does (403).
        ("bad_expired", vec![&expired, &issuer], false, &[401, 403]),
        ("good_password_without_certificate", vec![], true, &[200]),
    ];
    for (case, chain, basic_auth, statuses) in cases {
        let before = inventory_count(&h).await;
        let response = post(&h, path, &chain, "device-new", &[], basic_auth).await;
        assert!(
            statuses.contains(&response.status),
            "case {case}: {} {}",
            response.status,
            text(&response)
        );
        if response.status == 200 {
            assert_eq!(inventory_count(&h).await, before + 1, "case {case}");
        } else {
            assert!(!response.body.is_empty(), "case {case}: a text body");
            assert_eq!(inventory_count(&h).await, before, "case {case}: nothing issued");
        }
        if response.status == 403 {
            let text = text(&response);
            assert!(
                text.contains("revoked") || text.contains("expired"),
                "case {case}: {text}"
            );
        }
    }
}
