//! SCEP flows end to end through `ScepServer::handle`.

use certgate_authority::{KeyTransport, RaDigest};
use certgate_core::{Protocol, RevocationReason, Serial};
use certgate_scep::crypto::{ContentCipher, DigestAlg};
use certgate_scep::message::{MessageType, PkiStatus, certificates_of};
use certgate_scep::testclient::{self, ScepClient, SigningTime};
use certgate_scep::{FailInfo, approval_fingerprint, create_one_time_challenge};
use certgate_store::approvals::ApprovalKey;
use certgate_store::{ApprovalStore, CertificateStore};
use certgate_test_support::{name, openssl_verify, write_pem};
use der::Decode;
use x509_cert::Certificate;

use crate::harness::{DENIED_SUFFIX, HOOK_OK, Harness, STATIC_CHALLENGE, options};

fn serial_of(der: &[u8]) -> Serial {
    let cert = Certificate::from_der(der).unwrap();
    Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()).unwrap()
}

/// openssl verifies the leaf against the test CA.
fn verify_with_openssl(h: &Harness, leaf: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let leaf_pem = dir.path().join("leaf.pem");
    write_pem(&leaf_pem, &[leaf]);
    openssl_verify(&h.ta.ca.root_pem, &h.ta.ca.issuer_pem, &leaf_pem, None).unwrap();
}

#[tokio::test]
async fn caps_cacert_and_next_ca() {
    let h = Harness::new().await;
    let cases: [(&str, &str, &str, u16, Option<&str>); 6] = [
        (
            "caps_default",
            "/scep/default",
            "operation=GetCACaps",
            200,
            Some("text/plain"),
        ),
        (
            "caps_cgi_bin",
            "/cgi-bin/pkiclient.exe",
            "operation=GetCACaps",
            200,
            Some("text/plain"),
        ),
        (
            "cacert_cisco",
            "/scep/default/pkiclient.exe",
            "operation=GetCACert&message=router1",
            200,
            Some("application/x-x509-ca-ra-cert"),
        ),
        ("next_ca_absent", "/scep/default", "operation=GetNextCACert", 404, None),
        (
            "next_ca_rollover",
            "/scep/rollover",
            "operation=GetNextCACert",
            200,
            Some("application/x-x509-next-ca-cert"),
        ),
        ("unknown_operation", "/scep/default", "operation=Dance", 400, None),
    ];
    for (case, path, query, status, content_type) in cases {
        let response = h.get(path, query).await;
        assert_eq!(response.status, status, "case {case}");
        if let Some(content_type) = content_type {
            assert_eq!(response.header_value("content-type"), Some(content_type), "case {case}");
        }
    }
    let caps = |endpoint: &str| {
        let h = &h;
        let endpoint = endpoint.to_owned();
        async move { String::from_utf8(h.get(&format!("/scep/{endpoint}"), "operation=GetCACaps").await.body).unwrap() }
    };
    assert_eq!(
        caps("default").await,
        "POSTPKIOperation\nRenewal\nSHA-256\nSHA-512\nAES\nDES3\nSCEPStandard\n"
    );
    assert!(caps("legacy").await.contains("SHA-1\n"));
    assert!(caps("rollover").await.contains("GetNextCACert\n"));
    assert!(!caps("norenew").await.contains("Renewal"));

    // GetCACert: the RA first, then the issuing CA; the legacy endpoint adds the root.
    let body = h.get("/scep/default", "operation=GetCACert").await.body;
    let ra = testclient::ra_certificate("application/x-x509-ca-ra-cert", &body).unwrap();
    assert_eq!(ra, h.ra_der());
    let certs = certificates_of(&body).unwrap();
    assert_eq!(certs.len(), 2);
    assert!(certs.contains(&h.ta.ca.issuer.certificate_der().to_vec()));
    let legacy = certificates_of(&h.get("/scep/legacy", "operation=GetCACert").await.body).unwrap();
    assert_eq!(legacy.len(), 3);
    assert!(legacy.contains(&h.ta.ca.issuer.root_der().to_vec()));
    // The degenerate PKCS#7 keeps the RA first on the wire (some clients take the first).
    let printed = std::process::Command::new("openssl")
        .args(["pkcs7", "-inform", "DER", "-print_certs", "-noout"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(&body)?;
            child.wait_with_output()
        })
        .unwrap();
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(
        text.trim_start().starts_with("subject=CN=certgate SCEP RA") || text.contains("SCEP RA"),
        "{text}"
    );
    assert!(
        text.find("SCEP RA").unwrap() < text.find("Issuing CA").unwrap(),
        "{text}"
    );

    // GetNextCACert: signed by the RA, holding the next CA's certificates.
    let next = h.get("/scep/rollover", "operation=GetNextCACert").await.body;
    let parsed = certgate_scep::parse_pki_message(&next);
    // It carries no SCEP attributes, so it is not a PKIMessage: check it as plain CMS.
    assert!(parsed.is_err());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("next.der"), &next).unwrap();
    write_pem(&dir.path().join("ra.pem"), &[&h.ra_der()]);
    let status = std::process::Command::new("openssl")
        .args(["cms", "-verify", "-inform", "DER", "-noverify", "-binary", "-in"])
        .arg(dir.path().join("next.der"))
        .arg("-out")
        .arg(dir.path().join("content.der"))
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let content = std::fs::read(dir.path().join("content.der")).unwrap();
    assert_eq!(
        certificates_of(&content).unwrap(),
        vec![h.ta.ca.issuer.root_der().to_vec()]
    );
}

#[tokio::test]
async fn enrollment_matrix() {
    let h = Harness::new().await;
    struct Case {
        name: &'static str,
        endpoint: &'static str,
        cipher: ContentCipher,
        transport: KeyTransport,
        digest: DigestAlg,
        via_get: bool,
        challenge: &'static str,
        ec_csr: bool,
        corrupt: bool,
        want: Result<(), FailInfo>,
    }
    let base = Case {
        name: "",
        endpoint: "default",
        cipher: ContentCipher::Aes256,
        transport: KeyTransport::Pkcs1v15,
        digest: DigestAlg::Sha256,
        via_get: false,
        challenge: STATIC_CHALLENGE,
        ec_csr: false,
        corrupt: false,
        want: Ok(()),
    };
    let cases = [
        Case {
            name: "good_aes256_sha256_post",
            ..base
        },
        Case {
            name: "good_aes128_sha512_get",
            cipher: ContentCipher::Aes128,
            digest: DigestAlg::Sha512,
            via_get: true,
            ..base
        },
        Case {
            name: "good_aes192_oaep_sha256",
            cipher: ContentCipher::Aes192,
            transport: KeyTransport::Oaep(RaDigest::Sha256),
            ..base
        },
        Case {
            name: "good_des3_sha256",
            cipher: ContentCipher::Des3,
            ..base
        },
        Case {
            name: "good_des_request_default_endpoint",
            cipher: ContentCipher::Des,
            ..base
        },
        Case {
            name: "good_des_reply_legacy",
            endpoint: "legacy",
            cipher: ContentCipher::Des,
            ..base
        },
        Case {
            name: "good_oaep_sha1_default_params",
            transport: KeyTransport::Oaep(RaDigest::Sha1),
            ..base
        },
        Case {
            name: "good_sha1_allowed",
            endpoint: "legacy",
            digest: DigestAlg::Sha1,
            cipher: ContentCipher::Des3,
            ..base
        },
        Case {
            name: "bad_sha1_refused",
            digest: DigestAlg::Sha1,
            want: Err(FailInfo::BadAlg),
            ..base
        },
        Case {
            name: "good_ec_key_in_csr",
            ec_csr: true,
            ..base
        },
        Case {
            name: "bad_wrong_challenge",
            challenge: "not-the-challenge",
            want: Err(FailInfo::BadRequest),
            ..base
        },
        Case {
            name: "bad_no_challenge",
            challenge: "",
            want: Err(FailInfo::BadRequest),
            ..base
        },
        Case {
            name: "bad_corrupted_key_transport",
            corrupt: true,
            want: Err(FailInfo::BadMessageCheck),
            ..base
        },
        Case {
            name: "bad_corrupted_oaep_key_transport",
            corrupt: true,
            transport: KeyTransport::Oaep(RaDigest::Sha256),
            want: Err(FailInfo::BadMessageCheck),
            ..base
        },
        Case {
            name: "good_webhook",
            endpoint: "hook",
            challenge: HOOK_OK,
            ..base
        },
        Case {
            name: "bad_webhook_refuses",
            endpoint: "hook",
            challenge: STATIC_CHALLENGE,
            want: Err(FailInfo::BadRequest),
            ..base
        },
    ];
    for case in cases {
        let client = ScepClient::new("device-1").unwrap();
        let ec_key = certgate_test_support::rcgen::KeyPair::generate().unwrap();
        let challenge = (!case.challenge.is_empty()).then_some(case.challenge);
        let csr = if case.ec_csr {
            testclient::csr(&ec_key, "ec-device", &[], challenge).unwrap()
        } else {
            testclient::csr(client.key(), &format!("dev-{}", case.name), &[], challenge).unwrap()
        };
        let mut opts = options(MessageType::PkcsReq);
        opts.cipher = case.cipher;
        opts.transport = case.transport;
        opts.digest = case.digest;
        opts.corrupt_key_transport = case.corrupt;
        let message = client.pki_message(&h.ra_der(), &csr, &opts).unwrap();
        let (_, view) = h.exchange(case.endpoint, &client, &message, case.via_get).await;
        // The RA never signs with SHA-1.
        assert_ne!(view.digest, DigestAlg::Sha1, "case {}", case.name);
        match case.want {
            Ok(()) => {
                assert_eq!(
                    view.status,
                    PkiStatus::Success,
                    "case {}: {:?}",
                    case.name,
                    view.fail_info_text
                );
                let leaf = view
                    .certificates
                    .iter()
                    .find(|c| **c != h.ta.ca.issuer.certificate_der())
                    .unwrap();
                verify_with_openssl(&h, leaf);
                if case.endpoint == "legacy" {
                    assert_eq!(view.certificates.len(), 2, "case {}: CA included", case.name);
                } else {
                    assert_eq!(view.certificates.len(), 1, "case {}: leaf only", case.name);
                }
                let record = h.ta.store.certificate(&serial_of(leaf)).await.unwrap();
                assert_eq!(record.protocol, Protocol::Scep, "case {}", case.name);
                let kind = if case.endpoint == "hook" { "webhook" } else { "static" };
                assert_eq!(
                    record.requester.as_str(),
                    format!("scep-device:{}/{kind}", case.endpoint),
                    "case {}",
                    case.name
                );
            }
            Err(info) => {
                assert_eq!(view.status, PkiStatus::Failure, "case {}", case.name);
                assert_eq!(
                    view.fail_info,
                    Some(info),
                    "case {}: {:?}",
                    case.name,
                    view.fail_info_text
                );
                assert!(view.fail_info_text.is_some(), "case {}", case.name);
            }
        }
    }
}

#[tokio::test]
async fn certrep_verifies_and_decrypts_with_openssl() {
    let h = Harness::new().await;
    let client = ScepClient::new("openssl-device").unwrap();
    let csr = testclient::csr(client.key(), "openssl-device", &[], Some(STATIC_CHALLENGE)).unwrap();
    let mut opts = options(MessageType::PkcsReq);
    opts.cipher = ContentCipher::Des3;
    let message = client.pki_message(&h.ra_der(), &csr, &opts).unwrap();
    let (body, view) = h.exchange("default", &client, &message, false).await;
    assert_eq!(view.status, PkiStatus::Success);
    let dir = tempfile::tempdir().unwrap();
    let path = |f: &str| dir.path().join(f);
    std::fs::write(path("rep.der"), &body).unwrap();
    std::fs::write(path("client.key"), client.key().serialize_pem()).unwrap();
    write_pem(&path("client.pem"), &[&client.certificate]);
    let run = |args: &[&std::ffi::OsStr]| {
        let out = std::process::Command::new("openssl").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    write_pem(&path("ra.pem"), &[&h.ra_der()]);
    openssl_verify(&h.ta.ca.root_pem, &h.ta.ca.issuer_pem, &path("ra.pem"), None).unwrap();
    // cms -verify takes no untrusted intermediates file: trust root and issuing CA together.
    write_pem(
        &path("cas.pem"),
        &[h.ta.ca.issuer.root_der(), h.ta.ca.issuer.certificate_der()],
    );
    // The CertRep's signature chains from the RA to the test root.
    run(&[
        &os("cms"),
        &os("-verify"),
        &os("-inform"),
        &os("DER"),
        &os("-binary"),
        &os("-purpose"),
        &os("any"),
        &os("-in"),
        path("rep.der").as_os_str(),
        &os("-CAfile"),
        path("cas.pem").as_os_str(),
        &os("-out"),
        path("env.der").as_os_str(),
    ]);
    // Its content decrypts with the client's key to a certs-only PKCS#7 of the leaf.
    run(&[
        &os("cms"),
        &os("-decrypt"),
        &os("-inform"),
        &os("DER"),
        &os("-binary"),
        &os("-in"),
        path("env.der").as_os_str(),
        &os("-recip"),
        path("client.pem").as_os_str(),
        &os("-inkey"),
        path("client.key").as_os_str(),
        &os("-out"),
        path("certs.der").as_os_str(),
    ]);
    let certs = certificates_of(&std::fs::read(path("certs.der")).unwrap()).unwrap();
    assert_eq!(certs, view.certificates);
    let printed = run(&[
        &os("asn1parse"),
        &os("-inform"),
        &os("DER"),
        &os("-in"),
        path("rep.der").as_os_str(),
    ]);
    let text = String::from_utf8_lossy(&printed.stdout);
    assert!(text.contains(":rsaEncryption"), "SignerInfo uses rsaEncryption");
}

#[tokio::test]
async fn one_time_challenges() {
    let h = Harness::new().await;
    let now = time::OffsetDateTime::now_utc();
    let (challenge, record) = create_one_time_challenge(
        &h.ta.store,
        &name("default"),
        None,
        time::Duration::hours(1),
        Some("op".into()),
        now,
    )
    .await
    .unwrap();
    assert_ne!(record.id, *challenge, "the store keeps a hash only");
    let (bound, _) = create_one_time_challenge(
        &h.ta.store,
        &name("default"),
        Some("CN=dev-bound".into()),
        time::Duration::hours(1),
        None,
        now,
    )
    .await
    .unwrap();
    let cases: [(&str, &str, &str, Result<(), FailInfo>); 4] = [
        ("good_first_use", "dev-otp", &challenge, Ok(())),
        ("bad_reused", "dev-otp", &challenge, Err(FailInfo::BadRequest)),
        (
            "bad_bound_to_other_subject",
            "dev-other",
            &bound,
            Err(FailInfo::BadRequest),
        ),
        ("good_bound_subject", "dev-bound", &bound, Ok(())),
    ];
    for (case, cn, challenge, want) in cases {
        let client = ScepClient::new(cn).unwrap();
        let view = h
            .enroll("default", &client, cn, Some(challenge), &options(MessageType::PkcsReq))
            .await;
        match want {
            Ok(()) => {
                assert_eq!(
                    view.status,
                    PkiStatus::Success,
                    "case {case}: {:?}",
                    view.fail_info_text
                );
                let record = h.ta.store.certificate(&serial_of(&view.certificates[0])).await.unwrap();
                assert_eq!(record.requester.as_str(), "scep-device:default/one-time", "case {case}");
            }
            Err(info) => assert_eq!(view.fail_info, Some(info), "case {case}"),
        }
    }
}

#[tokio::test]
async fn pending_then_cert_poll_after_approval() {
    let h = Harness::new().await;
    let client = ScepClient::new("dev-approve").unwrap();
    let csr = testclient::csr(client.key(), "dev-approve", &[], Some(STATIC_CHALLENGE)).unwrap();
    let opts = options(MessageType::PkcsReq);
    let first = client.pki_message(&h.ra_der(), &csr, &opts).unwrap();
    let (_, view) = h.exchange("approve", &client, &first, false).await;
    assert_eq!(view.status, PkiStatus::Pending);
    // Re-sending the same PKCSReq is a poll: still pending, nothing new queued.
    let again = client.pki_message(&h.ra_der(), &csr, &opts).unwrap();
    assert_eq!(
        h.exchange("approve", &client, &again, true).await.1.status,
        PkiStatus::Pending
    );

    let mut poll_opts = options(MessageType::CertPoll);
    poll_opts.transaction_id = opts.transaction_id.clone();
    let poll_content = testclient::issuer_and_subject(h.ta.ca.issuer.certificate_der(), &csr).unwrap();
    let poll = |h: &Harness| client.pki_message(&h.ra_der(), &poll_content, &poll_opts).unwrap();
    assert_eq!(
        h.exchange("approve", &client, &poll(&h), false).await.1.status,
        PkiStatus::Pending
    );

    let key = ApprovalKey::new(
        Protocol::Scep,
        name("approve"),
        approval_fingerprint(&opts.transaction_id, &client.certificate).unwrap(),
    )
    .unwrap();
    h.ta.store
        .approve(&key, "operator", time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let (_, issued) = h.exchange("approve", &client, &poll(&h), false).await;
    assert_eq!(issued.status, PkiStatus::Success, "{:?}", issued.fail_info_text);
    verify_with_openssl(&h, &issued.certificates[0]);
    // A repeated poll answers the same certificate.
    let (_, repeat) = h.exchange("approve", &client, &poll(&h), false).await;
    assert_eq!(repeat.certificates, issued.certificates);

    // A poll for an unknown transaction: badCertId.
    let mut unknown = options(MessageType::CertPoll);
    unknown.transaction_id = "never-sent".into();
    let message = client.pki_message(&h.ra_der(), &poll_content, &unknown).unwrap();
    assert_eq!(
        h.exchange("approve", &client, &message, false).await.1.fail_info,
        Some(FailInfo::BadCertId)
    );
}

#[tokio::test]
async fn renewal_by_signer_certificate() {
    let h = Harness::new().await;
    let client = ScepClient::new("dev-renew").unwrap();
    let first = h
        .enroll(
            "default",
            &client,
            "dev-renew",
            Some(STATIC_CHALLENGE),
            &options(MessageType::PkcsReq),
        )
        .await;
    assert_eq!(first.status, PkiStatus::Success);
    let old = first.certificates[0].clone();
    let renewer = client.with_certificate(old.clone()).unwrap();

    // RenewalReq and PKCSReq signed by the issued certificate, no challenge.
    for (case, message_type) in [
        ("renewal_req", MessageType::RenewalReq),
        ("pkcsreq_signed_by_old", MessageType::PkcsReq),
    ] {
        let view = h
            .enroll("default", &renewer, "dev-renew", None, &options(message_type))
            .await;
        assert_eq!(
            view.status,
            PkiStatus::Success,
            "case {case}: {:?}",
            view.fail_info_text
        );
        let record = h.ta.store.certificate(&serial_of(&view.certificates[0])).await.unwrap();
        assert_eq!(record.replaces, Some(serial_of(&old)), "case {case}");
        assert_eq!(
            record.requester.as_str(),
            format!("scep-device:default/{}", serial_of(&old).to_hex()),
            "case {case}"
        );
    }

    let foreign = ScepClient::new("dev-renew").unwrap();
    let other_subject = h
        .enroll(
            "default",
            &renewer,
            "someone-else",
            None,
            &options(MessageType::RenewalReq),
        )
        .await;
    let cases = [
        (
            "bad_foreign_signer",
            h.enroll(
                "default",
                &foreign,
                "dev-renew",
                None,
                &options(MessageType::RenewalReq),
            )
            .await,
        ),
        ("bad_other_subject", other_subject),
        (
            "bad_renewal_disabled",
            h.enroll(
                "norenew",
                &renewer,
                "dev-renew",
                None,
                &options(MessageType::RenewalReq),
            )
            .await,
        ),
    ];
    for (case, view) in cases {
        assert_eq!(view.status, PkiStatus::Failure, "case {case}");
        assert_eq!(view.fail_info, Some(FailInfo::BadRequest), "case {case}");
    }

    h.ta.authority
        .revoke(&serial_of(&old), RevocationReason::KeyCompromise, "test")
        .await
        .unwrap();
    let revoked = h
        .enroll(
            "default",
            &renewer,
            "dev-renew",
            None,
            &options(MessageType::RenewalReq),
        )
        .await;
    assert_eq!(revoked.fail_info, Some(FailInfo::BadRequest));
    assert!(revoked.fail_info_text.unwrap().contains("revoked"));
    // A PKCSReq signed by the revoked certificate still enrolls with the challenge, as new.
    let fresh = h
        .enroll(
            "default",
            &renewer,
            "dev-renew",
            Some(STATIC_CHALLENGE),
            &options(MessageType::PkcsReq),
        )
        .await;
    assert_eq!(fresh.status, PkiStatus::Success);
    let record =
        h.ta.store
            .certificate(&serial_of(&fresh.certificates[0]))
            .await
            .unwrap();
    assert_eq!(record.replaces, None);
}

#[tokio::test]
async fn get_cert_and_get_crl() {
    let h = Harness::new().await;
    let client = ScepClient::new("dev-get").unwrap();
    let issued = h
        .enroll(
            "default",
            &client,
            "dev-get",
            Some(STATIC_CHALLENGE),
            &options(MessageType::PkcsReq),
        )
        .await;
    let leaf = issued.certificates[0].clone();
    let stranger = ScepClient::new("stranger").unwrap();
    type Case = (&'static str, MessageType, Vec<u8>, Result<(), FailInfo>);
    let cases: [Case; 3] = [
        (
            "good_get_cert",
            MessageType::GetCert,
            testclient::issuer_and_serial(&leaf).unwrap(),
            Ok(()),
        ),
        (
            "bad_unknown_serial",
            MessageType::GetCert,
            testclient::issuer_and_serial(&stranger.certificate).unwrap(),
            Err(FailInfo::BadCertId),
        ),
        (
            "crl_not_yet",
            MessageType::GetCrl,
            testclient::issuer_and_serial(&leaf).unwrap(),
            Err(FailInfo::BadRequest),
        ),
    ];
    for (case, message_type, content, want) in cases {
        let message = client
            .pki_message(&h.ra_der(), &content, &options(message_type))
            .unwrap();
        let (_, view) = h.exchange("default", &client, &message, false).await;
        match want {
            Ok(()) => assert_eq!(view.certificates, vec![leaf.clone()], "case {case}"),
            Err(info) => {
                assert_eq!(view.fail_info, Some(info), "case {case}");
                if message_type == MessageType::GetCrl {
                    assert_eq!(view.fail_info_text.as_deref(), Some("CRL not available yet"));
                }
            }
        }
    }
}

#[tokio::test]
async fn http_level_errors() {
    let h = Harness::new().await;
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        &'static [u8],
        u16,
    );
    let cases: [Case; 8] = [
        (
            "empty_post",
            "POST",
            "/scep/default",
            Some("operation=PKIOperation"),
            b"",
            400,
        ),
        (
            "garbage_post",
            "POST",
            "/scep/default",
            Some("operation=PKIOperation"),
            b"\x30\x03\x02\x01\x01",
            400,
        ),
        ("not_base64_post", "POST", "/scep/default", None, b"hello world!", 400),
        (
            "get_without_message",
            "GET",
            "/scep/default",
            Some("operation=PKIOperation"),
            b"",
            400,
        ),
        (
            "get_garbage_message",
            "GET",
            "/scep/default",
            Some("operation=PKIOperation&message=AAAA"),
            b"",
            400,
        ),
        (
            "unknown_endpoint",
            "GET",
            "/scep/nowhere",
            Some("operation=GetCACaps"),
            b"",
            404,
        ),
        (
            "bad_method",
            "PUT",
            "/scep/default",
            Some("operation=GetCACaps"),
            b"",
            405,
        ),
        ("no_operation", "GET", "/scep/default", None, b"", 400),
    ];
    for (case, method, path, query, body, status) in cases {
        let response = h
            .server
            .handle(&certgate_scep::ScepRequest {
                method,
                path,
                query,
                body,
                body_too_large: false,
                peer: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            })
            .await;
        assert_eq!(
            response.status,
            status,
            "case {case}: {}",
            String::from_utf8_lossy(&response.body)
        );
        assert!(response.status < 500, "case {case}");
    }
    let _ = Serial::from_random([1; 16]);
    let _: &dyn ApprovalStore = &h.ta.store;
}

#[tokio::test]
async fn signing_time_is_checked() {
    let h = Harness::new().await;
    let now = time::OffsetDateTime::now_utc();
    let hours = time::Duration::hours;
    struct Case {
        name: &'static str,
        endpoint: &'static str,
        message_type: MessageType,
        signing_time: SigningTime,
        corrupt: bool,
        /// Ok: the request is served (SUCCESS); Err: FAILURE badTime with these words.
        want: Result<(), &'static [&'static str]>,
    }
    let base = Case {
        name: "",
        endpoint: "default",
        message_type: MessageType::PkcsReq,
        signing_time: SigningTime::Now,
        corrupt: false,
        want: Ok(()),
    };
    let cases = [
        Case {
            name: "good_now",
            ..base
        },
        Case {
            name: "good_absent",
            signing_time: SigningTime::Absent,
            ..base
        },
        Case {
            name: "good_23h_behind",
            signing_time: SigningTime::At(now - hours(23)),
            ..base
        },
        Case {
            name: "good_23h_ahead",
            signing_time: SigningTime::At(now + hours(23)),
            ..base
        },
        Case {
            name: "good_generalized_time_now",
            signing_time: SigningTime::Generalized(now),
            ..base
        },
        Case {
            name: "bad_25h_behind",
            signing_time: SigningTime::At(now - hours(25)),
            want: Err(&["signingTime is 1d ", "behind", "at most 1d is allowed"]),
            ..base
        },
        Case {
            name: "bad_25h_ahead",
            signing_time: SigningTime::At(now + hours(25)),
            want: Err(&["signingTime is 1d ", "ahead of"]),
            ..base
        },
        Case {
            name: "bad_generalized_time_far_ahead",
            signing_time: SigningTime::At(time::macros::datetime!(2051-01-01 0:00 UTC)),
            want: Err(&["ahead of"]),
            ..base
        },
        Case {
            name: "bad_cert_poll",
            message_type: MessageType::CertPoll,
            signing_time: SigningTime::At(now - hours(48)),
            want: Err(&["is 2d", "behind"]),
            ..base
        },
        Case {
            // Checked before the envelope is opened: badTime, not badMessageCheck.
            name: "bad_time_checked_before_decryption",
            signing_time: SigningTime::At(now - hours(25)),
            corrupt: true,
            want: Err(&["behind"]),
            ..base
        },
        Case {
            name: "good_skew_check_disabled",
            endpoint: "nortc",
            signing_time: SigningTime::At(now - hours(24 * 3650)),
            ..base
        },
    ];
    for case in cases {
        let cn = format!("dev-{}", case.name.replace('_', "-"));
        let client = ScepClient::new(&cn).unwrap();
        let csr = testclient::csr(client.key(), &cn, &[], Some(STATIC_CHALLENGE)).unwrap();
        let content = match case.message_type {
            MessageType::CertPoll => testclient::issuer_and_subject(h.ta.ca.issuer.certificate_der(), &csr).unwrap(),
            _ => csr,
        };
        let mut opts = options(case.message_type);
        opts.signing_time = case.signing_time;
        opts.corrupt_key_transport = case.corrupt;
        let message = client.pki_message(&h.ra_der(), &content, &opts).unwrap();
        let (_, view) = h.exchange(case.endpoint, &client, &message, false).await;
        match case.want {
            Ok(()) => assert_eq!(
                view.status,
                PkiStatus::Success,
                "case {}: {:?}",
                case.name,
                view.fail_info_text
            ),
            Err(words) => {
                assert_eq!(view.status, PkiStatus::Failure, "case {}", case.name);
                assert_eq!(
                    view.fail_info,
                    Some(FailInfo::BadTime),
                    "case {}: {:?}",
                    case.name,
                    view.fail_info_text
                );
                let text = view.fail_info_text.unwrap_or_default();
                for word in words {
                    assert!(text.contains(word), "case {}: {word:?} not in {text:?}", case.name);
                }
            }
        }
    }
}

#[tokio::test]
async fn authentication_comes_before_policy() {
    let h = Harness::new().await;
    let denied = format!("host.{DENIED_SUFFIX}");
    struct Case<'a> {
        name: &'static str,
        sans: &'a [&'a str],
        /// A P-256 key, which the `strict` policy refuses, instead of the client's RSA key.
        p256: bool,
        challenge: Option<&'static str>,
        /// Ok: SUCCESS; Err: FAILURE badRequest whose text has this word.
        want: Result<(), &'static str>,
    }
    let cases = [
        Case {
            name: "bad_denied_name_wrong_challenge",
            sans: &[&denied],
            p256: false,
            challenge: Some("not-the-challenge"),
            want: Err("challenge"),
        },
        Case {
            name: "bad_denied_name_no_challenge",
            sans: &[&denied],
            p256: false,
            challenge: None,
            want: Err("challenge"),
        },
        Case {
            name: "bad_refused_key_wrong_challenge",
            sans: &["ok.example"],
            p256: true,
            challenge: Some("not-the-challenge"),
            want: Err("challenge"),
        },
        Case {
            name: "bad_denied_name_good_challenge",
            sans: &[&denied],
            p256: false,
            challenge: Some(STATIC_CHALLENGE),
            want: Err("not allowed"),
        },
        Case {
            name: "bad_refused_key_good_challenge",
            sans: &["ok.example"],
            p256: true,
            challenge: Some(STATIC_CHALLENGE),
            want: Err("not allowed"),
        },
        Case {
            name: "good_allowed_name_good_challenge",
            sans: &["ok.example"],
            p256: false,
            challenge: Some(STATIC_CHALLENGE),
            want: Ok(()),
        },
    ];
    for case in cases {
        let client = ScepClient::new("dev-strict").unwrap();
        let p256 = certgate_test_support::rcgen::KeyPair::generate().unwrap();
        let key = if case.p256 { &p256 } else { client.key() };
        let csr = testclient::csr(key, "dev-strict", case.sans, case.challenge).unwrap();
        let message = client
            .pki_message(&h.ra_der(), &csr, &options(MessageType::PkcsReq))
            .unwrap();
        let (_, view) = h.exchange("strict", &client, &message, false).await;
        match case.want {
            Ok(()) => assert_eq!(
                view.status,
                PkiStatus::Success,
                "case {}: {:?}",
                case.name,
                view.fail_info_text
            ),
            Err(word) => {
                assert_eq!(view.fail_info, Some(FailInfo::BadRequest), "case {}", case.name);
                let text = view.fail_info_text.unwrap_or_default();
                assert!(text.contains(word), "case {}: {word:?} not in {text:?}", case.name);
                if word == "challenge" {
                    assert!(
                        !text.contains("not allowed"),
                        "case {}: policy leaked: {text:?}",
                        case.name
                    );
                }
            }
        }
    }

    // Documented: a one-time challenge is used up by a request the policy then refuses (the
    // challenge store cannot check a challenge without consuming it).
    let (challenge, _) = create_one_time_challenge(
        &h.ta.store,
        &name("strict"),
        None,
        time::Duration::hours(1),
        None,
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let client = ScepClient::new("dev-strict").unwrap();
    let mut answers = Vec::new();
    for san in [denied.as_str(), "ok.example"] {
        let csr = testclient::csr(client.key(), "dev-strict", &[san], Some(&challenge)).unwrap();
        let message = client
            .pki_message(&h.ra_der(), &csr, &options(MessageType::PkcsReq))
            .unwrap();
        answers.push(h.exchange("strict", &client, &message, false).await.1);
    }
    assert!(
        answers[0]
            .fail_info_text
            .as_deref()
            .unwrap_or_default()
            .contains("not allowed")
    );
    assert!(
        answers[1]
            .fail_info_text
            .as_deref()
            .unwrap_or_default()
            .contains("challenge")
    );
}
