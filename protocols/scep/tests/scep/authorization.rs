//! Issue 14's authorization findings: renewal only of this endpoint's own certificates with
//! the same names, one-time challenges bound to a whole subject, CertPoll and GetCert only for
//! the requester. Every refusal is a signed CertRep FAILURE and leaves the inventory as it was.

use certgate_authority::IssueRequest;
use certgate_core::{ParsedCsr, Protocol, RequesterId, RevocationReason, Serial};
use certgate_scep::message::{MessageType, PkiStatus};
use certgate_scep::testclient::{self, CertRepView, ScepClient};
use certgate_scep::{FailInfo, approval_fingerprint, create_one_time_challenge};
use certgate_store::approvals::{ApprovalKey, ApprovalState};
use certgate_store::{ApprovalStore, CertificateStore, ScepChallengeStore};
use certgate_test_support::name;
use certgate_test_support::rcgen::DnType;
use der::Decode;
use time::{Duration, OffsetDateTime};
use x509_cert::Certificate;

use crate::harness::{EST_ENDPOINT, Harness, STATIC_CHALLENGE, options};

fn serial_of(der: &[u8]) -> Serial {
    let cert = Certificate::from_der(der).unwrap();
    Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()).unwrap()
}

async fn inventory_count(h: &Harness) -> u64 {
    h.ta.store.journal_status().await.unwrap().certificates
}

/// A certificate for the client's key with subject CN=`cn` and DNS `sans`, issued by the
/// authority directly through `protocol`/`endpoint`, valid until `not_after` if given.
async fn issue_direct(
    h: &Harness,
    protocol: Protocol,
    endpoint: &str,
    client: &ScepClient,
    cn: &str,
    sans: &[&str],
    not_after: Option<OffsetDateTime>,
) -> Vec<u8> {
    let csr = testclient::csr(client.key(), cn, sans, None).unwrap();
    let mut request = IssueRequest::new(
        protocol,
        name(endpoint),
        ParsedCsr::from_der(&csr).unwrap(),
        RequesterId::new("test:direct").unwrap(),
    );
    request.not_after = not_after;
    h.ta.authority.issue(request).await.unwrap().record.der
}

/// Sends a PKIMessage of `message_type` signed by `client`'s certificate with a CSR on its key.
async fn send(
    h: &Harness,
    endpoint: &str,
    client: &ScepClient,
    message_type: MessageType,
    cn: &str,
    sans: &[&str],
    challenge: Option<&str>,
) -> CertRepView {
    let csr = testclient::csr(client.key(), cn, sans, challenge).unwrap();
    let message = client.pki_message(&h.ra_der(), &csr, &options(message_type)).unwrap();
    h.exchange(endpoint, client, &message, false).await.1
}

/// Finding A: a certificate renews itself only through the protocol and endpoint that issued
/// it (or one the endpoint lists explicitly), unrevoked and unexpired, with the same subject
/// and names. Anything else needs the challenge (and approval) a first enrollment needs.
#[tokio::test]
async fn renewal_needs_this_endpoints_certificate_and_the_same_names() {
    let h = Harness::new().await;
    // The reported attack: an EST certificate for CN=device-1 (no SAN) signs a RenewalReq for
    // payroll.corp.example.
    let device = ScepClient::new("device-1").unwrap();
    let est_cert = issue_direct(&h, Protocol::Est, EST_ENDPOINT, &device, "device-1", &[], None).await;
    let est_signer = device.with_certificate(est_cert.clone()).unwrap();
    let ours = issue_direct(
        &h,
        Protocol::Scep,
        "default",
        &device,
        "device-1",
        &["a.example.com"],
        None,
    )
    .await;
    let ours_signer = device.with_certificate(ours.clone()).unwrap();
    let legacy = issue_direct(&h, Protocol::Scep, "legacy", &device, "device-1", &[], None).await;
    let legacy_signer = device.with_certificate(legacy).unwrap();
    let revoked = issue_direct(&h, Protocol::Scep, "default", &device, "device-1", &[], None).await;
    h.ta.authority
        .revoke(&serial_of(&revoked), RevocationReason::KeyCompromise, "test")
        .await
        .unwrap();
    let revoked_signer = device.with_certificate(revoked).unwrap();
    let soon = OffsetDateTime::now_utc() + Duration::seconds(2);
    let expiring = issue_direct(&h, Protocol::Scep, "default", &device, "device-1", &[], Some(soon)).await;
    let expired_signer = device.with_certificate(expiring).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;

    let payroll = ["payroll.corp.example"];
    type Case<'a> = (&'static str, &'a ScepClient, MessageType, &'a [&'a str], &'static str);
    let cases: [Case<'_>; 8] = [
        (
            "bad_est_certificate_new_san",
            &est_signer,
            MessageType::RenewalReq,
            &payroll,
            "another endpoint",
        ),
        (
            "bad_est_certificate_same_names",
            &est_signer,
            MessageType::RenewalReq,
            &[],
            "another endpoint",
        ),
        (
            "bad_est_certificate_pkcsreq",
            &est_signer,
            MessageType::PkcsReq,
            &[],
            "another endpoint",
        ),
        (
            "bad_other_scep_endpoint",
            &legacy_signer,
            MessageType::RenewalReq,
            &[],
            "another endpoint",
        ),
        ("bad_revoked", &revoked_signer, MessageType::RenewalReq, &[], "revoked"),
        ("bad_expired", &expired_signer, MessageType::RenewalReq, &[], "expired"),
        (
            "bad_added_san",
            &ours_signer,
            MessageType::RenewalReq,
            &["a.example.com", "payroll.corp.example"],
            "subjectAltNames",
        ),
        (
            "bad_removed_san",
            &ours_signer,
            MessageType::PkcsReq,
            &[],
            "subjectAltNames",
        ),
    ];
    for (case, signer, message_type, sans, word) in cases {
        let before = inventory_count(&h).await;
        let view = send(&h, "default", signer, message_type, "device-1", sans, None).await;
        assert_eq!(view.status, PkiStatus::Failure, "case {case}");
        assert_eq!(view.fail_info, Some(FailInfo::BadRequest), "case {case}");
        let text = view.fail_info_text.unwrap_or_default();
        assert!(text.contains(word), "case {case}: {word:?} not in {text:?}");
        assert_eq!(inventory_count(&h).await, before, "case {case}: nothing issued");
    }

    // The same names through the endpoint that issued the certificate: renewed, no challenge.
    let view = send(
        &h,
        "default",
        &ours_signer,
        MessageType::RenewalReq,
        "device-1",
        &["a.example.com"],
        None,
    )
    .await;
    assert_eq!(view.status, PkiStatus::Success, "{:?}", view.fail_info_text);
    let record = h.ta.store.certificate(&serial_of(&view.certificates[0])).await.unwrap();
    assert_eq!(record.replaces, Some(serial_of(&ours)));

    // A refused renewal that carries a valid challenge is a first enrollment: issued as new
    // (no `replaces`), and queued where approval is required.
    let view = send(
        &h,
        "default",
        &est_signer,
        MessageType::RenewalReq,
        "device-1",
        &payroll,
        Some(STATIC_CHALLENGE),
    )
    .await;
    assert_eq!(view.status, PkiStatus::Success, "{:?}", view.fail_info_text);
    let record = h.ta.store.certificate(&serial_of(&view.certificates[0])).await.unwrap();
    assert_eq!(record.replaces, None);
    assert_eq!(record.requester.as_str(), "scep-device:default/static");
    let before = inventory_count(&h).await;
    let view = send(
        &h,
        "approve",
        &est_signer,
        MessageType::RenewalReq,
        "device-1",
        &payroll,
        Some(STATIC_CHALLENGE),
    )
    .await;
    assert_eq!(view.status, PkiStatus::Pending, "{:?}", view.fail_info_text);
    assert_eq!(inventory_count(&h).await, before, "queued, not issued");

    // An endpoint that lists est:factory renews its certificates, with the same names only.
    let before = inventory_count(&h).await;
    let view = send(
        &h,
        "fromest",
        &est_signer,
        MessageType::RenewalReq,
        "device-1",
        &payroll,
        None,
    )
    .await;
    assert_eq!(view.fail_info, Some(FailInfo::BadRequest), "{:?}", view.fail_info_text);
    assert_eq!(inventory_count(&h).await, before);
    let view = send(
        &h,
        "fromest",
        &est_signer,
        MessageType::RenewalReq,
        "device-1",
        &[],
        None,
    )
    .await;
    assert_eq!(view.status, PkiStatus::Success, "{:?}", view.fail_info_text);
    let record = h.ta.store.certificate(&serial_of(&view.certificates[0])).await.unwrap();
    assert_eq!(record.replaces, Some(serial_of(&est_cert)));
}

/// Finding B: a one-time challenge bound to a subject admits exactly that whole subject (a
/// bare common name: that one CN and nothing else), and no subjectAltName but the CN itself.
/// A refused request leaves the challenge unused.
#[tokio::test]
async fn bound_one_time_challenges_compare_the_whole_subject() {
    let h = Harness::new().await;
    let create = |subject: &'static str| {
        let store = h.ta.store.clone();
        async move {
            create_one_time_challenge(
                &store,
                &name("default"),
                Some(subject.to_owned()),
                Duration::hours(1),
                None,
                OffsetDateTime::now_utc(),
            )
            .await
            .unwrap()
            .0
            .to_string()
        }
    };
    let cn = create("dev-bound").await;
    // Spelling does not matter: the binding is parsed and compared attribute by attribute.
    let dn = create("cn=dev-2,o=Acme").await;
    let host = create("host.example.com").await;
    type Case<'a> = (&'static str, &'a str, Vec<(DnType, &'static str)>, &'a [&'a str], bool);
    let cases: Vec<Case<'_>> = vec![
        (
            "bad_cn_with_another_attribute",
            &cn,
            vec![(DnType::CommonName, "dev-bound"), (DnType::OrganizationName, "Evil")],
            &[],
            false,
        ),
        (
            "bad_cn_first_of_two",
            &cn,
            vec![(DnType::OrganizationName, "Evil"), (DnType::CommonName, "dev-bound")],
            &[],
            false,
        ),
        (
            "bad_cn_with_a_san",
            &cn,
            vec![(DnType::CommonName, "dev-bound")],
            &["payroll.corp.example"],
            false,
        ),
        (
            "bad_dn_missing_attribute",
            &dn,
            vec![(DnType::CommonName, "dev-2")],
            &[],
            false,
        ),
        (
            "bad_dn_other_order",
            &dn,
            vec![(DnType::CommonName, "dev-2"), (DnType::OrganizationName, "Acme")],
            &[],
            false,
        ),
        (
            "bad_host_with_other_san",
            &host,
            vec![(DnType::CommonName, "host.example.com")],
            &["host.example.com", "payroll.corp.example"],
            false,
        ),
        ("good_cn_alone", &cn, vec![(DnType::CommonName, "dev-bound")], &[], true),
        (
            "good_dn",
            &dn,
            vec![(DnType::OrganizationName, "Acme"), (DnType::CommonName, "dev-2")],
            &[],
            true,
        ),
        (
            "good_host_with_its_own_name",
            &host,
            vec![(DnType::CommonName, "host.example.com")],
            &["host.example.com"],
            true,
        ),
    ];
    for (case, challenge, subject, sans, ok) in cases {
        let before = inventory_count(&h).await;
        let client = ScepClient::new("bound").unwrap();
        let csr = testclient::csr_with_subject(client.key(), &subject, sans, Some(challenge)).unwrap();
        let message = client
            .pki_message(&h.ra_der(), &csr, &options(MessageType::PkcsReq))
            .unwrap();
        let (_, view) = h.exchange("default", &client, &message, false).await;
        if ok {
            assert_eq!(
                view.status,
                PkiStatus::Success,
                "case {case}: {:?}",
                view.fail_info_text
            );
            assert_eq!(inventory_count(&h).await, before + 1, "case {case}");
        } else {
            assert_eq!(view.fail_info, Some(FailInfo::BadRequest), "case {case}");
            assert_eq!(inventory_count(&h).await, before, "case {case}: nothing issued");
        }
    }
    // Each good case found its challenge unused after the refusals before it; now all are used.
    assert!(
        h.ta.store
            .scep_challenges(Some(&name("default")), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Finding C: a CertPoll finds a queued request only when signed with the requester's key and
/// naming its CA and subject; GetCert answers only the certificate's holder. Anyone else gets
/// badCertId, as for a request or certificate that does not exist, and nothing is issued.
#[tokio::test]
async fn cert_poll_and_get_cert_answer_only_the_requester() {
    let h = Harness::new().await;
    let owner = ScepClient::new("dev-owner").unwrap();
    let stranger = ScepClient::new("dev-owner").unwrap();
    let csr = testclient::csr(owner.key(), "dev-owner", &[], Some(STATIC_CHALLENGE)).unwrap();
    let enroll = options(MessageType::PkcsReq);
    let request = owner.pki_message(&h.ra_der(), &csr, &enroll).unwrap();
    assert_eq!(
        h.exchange("approve", &owner, &request, false).await.1.status,
        PkiStatus::Pending
    );
    let key = ApprovalKey::new(
        Protocol::Scep,
        name("approve"),
        approval_fingerprint(&enroll.transaction_id, &owner.certificate).unwrap(),
    )
    .unwrap();
    h.ta.store
        .approve(&key, "operator", OffsetDateTime::now_utc())
        .await
        .unwrap();

    let issuer = h.ta.ca.issuer.certificate_der();
    let good_content = testclient::issuer_and_subject(issuer, &csr).unwrap();
    let other_subject = testclient::csr(owner.key(), "dev-other", &[], None).unwrap();
    let wrong_subject = testclient::issuer_and_subject(issuer, &other_subject).unwrap();
    let wrong_issuer = testclient::issuer_and_subject(h.ta.ca.issuer.root_der(), &csr).unwrap();
    let mut poll = options(MessageType::CertPoll);
    poll.transaction_id = enroll.transaction_id.clone();
    let cases = [
        ("bad_stranger_signs", &stranger, &good_content),
        ("bad_other_subject", &owner, &wrong_subject),
        ("bad_other_issuer", &owner, &wrong_issuer),
    ];
    let before = inventory_count(&h).await;
    for (case, client, content) in cases {
        let message = client.pki_message(&h.ra_der(), content, &poll).unwrap();
        let (_, view) = h.exchange("approve", client, &message, false).await;
        assert_eq!(view.fail_info, Some(FailInfo::BadCertId), "case {case}");
        assert_eq!(
            view.fail_info_text.as_deref(),
            Some("no request with this transactionID is known"),
            "case {case}: as for an unknown request"
        );
        assert_eq!(inventory_count(&h).await, before, "case {case}: nothing issued");
        assert_eq!(
            h.ta.store.approval(&key).await.unwrap().state,
            ApprovalState::Approved,
            "case {case}"
        );
    }
    // The same PKCSReq re-sent by a stranger is not a poll of the owner's request either.
    let resent = stranger.pki_message(&h.ra_der(), &csr, &enroll).unwrap();
    assert_ne!(
        h.exchange("approve", &stranger, &resent, false).await.1.status,
        PkiStatus::Success
    );
    assert_eq!(inventory_count(&h).await, before);

    let message = owner.pki_message(&h.ra_der(), &good_content, &poll).unwrap();
    let (_, issued) = h.exchange("approve", &owner, &message, false).await;
    assert_eq!(issued.status, PkiStatus::Success, "{:?}", issued.fail_info_text);
    let leaf = issued.certificates[0].clone();

    // GetCert: the holder of the certificate's key only.
    let content = testclient::issuer_and_serial(&leaf).unwrap();
    let get = options(MessageType::GetCert);
    let message = stranger.pki_message(&h.ra_der(), &content, &get).unwrap();
    let (_, view) = h.exchange("approve", &stranger, &message, false).await;
    assert_eq!(view.fail_info, Some(FailInfo::BadCertId));
    assert_eq!(
        view.fail_info_text.as_deref(),
        Some("no certificate with this issuer and serial")
    );
    let message = owner.pki_message(&h.ra_der(), &content, &get).unwrap();
    let (_, view) = h.exchange("approve", &owner, &message, false).await;
    assert_eq!(view.certificates, vec![leaf]);
}
