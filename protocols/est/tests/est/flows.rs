//! End-to-end EST exchanges, in process.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certgate_core::{Protocol, RevocationReason, Serial};
use certgate_est::{EstServer, TlsFacts, TlsVersion};
use certgate_store::ApprovalStore;
use certgate_store::CertificateStore;
use certgate_store::approvals::{ApprovalFilter, ApprovalKey, ApprovalState};
use certgate_test_support::{name, openssl_verify, write_pem};
use der::Decode;
use rcgen::KeyPair;
use x509_cert::Certificate;

use crate::harness::*;

const CERTS_ONLY: &str = "application/pkcs7-mime; smime-type=certs-only";

fn text(body: &[u8]) -> String {
    String::from_utf8_lossy(body).into_owned()
}

/// Issues through `/.well-known/est/simpleenroll` and returns the leaf DER.
async fn enroll(h: &Harness, path: &str, key: &KeyPair, cn: &str, sans: &[&str]) -> Vec<u8> {
    let tls = tls13();
    let body = csr_b64(key, cn, sans, None);
    let response = h.call(Call::post(path, &body, &tls)).await;
    assert_eq!(response.status, 200, "{}", text(&response.body));
    let certs = certs_of(&response.body);
    assert_eq!(certs.len(), 1);
    certs.into_iter().next().unwrap()
}

fn verify_chain(h: &Harness, leaf: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let leaf_pem = dir.path().join("leaf.pem");
    write_pem(&leaf_pem, &[leaf]);
    openssl_verify(&h.ta.ca.root_pem, &h.ta.ca.issuer_pem, &leaf_pem, Some("sslclient")).unwrap();
}

#[tokio::test]
async fn cacerts_answers_the_chain_byte_exact() {
    let h = Harness::new().await;
    for path in [
        "/.well-known/est/cacerts",
        "/.well-known/est/default/cacerts",
        "/.well-known/est/cert/cacerts",
    ] {
        let response = h.call(Call::get(path)).await;
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(response.header_value("content-type"), Some(CERTS_ONLY), "{path}");
        assert!(
            !response.body.contains(&b'\n') && !response.body.contains(&b'\r'),
            "{path}: one line by default"
        );
        let certs = certs_of(&response.body);
        assert!(
            certs.contains(&h.ta.ca.issuer.certificate_der().to_vec()),
            "{path}: issuer"
        );
        assert!(certs.contains(&h.ta.ca.issuer.root_der().to_vec()), "{path}: root");
    }
    // An endpoint set to wrap64: CRLF every 64 columns.
    let response = h.call(Call::get("/.well-known/est/keygen/cacerts")).await;
    let body = text(&response.body);
    assert!(body.ends_with("\r\n") && body.trim_end().split("\r\n").all(|l| l.len() <= 64));
    assert_eq!(certs_of(&response.body).len(), 2);
}

#[tokio::test]
async fn enroll_with_basic_issues_a_verifiable_certificate() {
    let h = Harness::new().await;
    let key = KeyPair::generate().unwrap();
    let leaf = enroll(
        &h,
        "/.well-known/est/simpleenroll",
        &key,
        "device-1",
        &["device-1.example.com"],
    )
    .await;
    verify_chain(&h, &leaf);
    let cert = Certificate::from_der(&leaf).unwrap();
    let serial = Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()).unwrap();
    let record = h.ta.store.certificate(&serial).await.unwrap();
    assert_eq!(record.protocol, Protocol::Est);
    assert_eq!(record.endpoint, name("default"));
    assert_eq!(record.requester.as_str(), "est-user:default/alice");
}

#[tokio::test]
async fn error_catalogue() {
    let h = Harness::new().await;
    let key = KeyPair::generate().unwrap();
    let good = csr_b64(&key, "device-1", &["d1.example.com"], None);
    let mut bad_signature = csr_der(&key, "device-1", &["d1.example.com"], None);
    let last = bad_signature.len() - 1;
    bad_signature[last] ^= 1;
    let outside_policy = csr_b64(&key, "x", &["x.example.net"], None);
    let tls = tls13();
    let enroll = "/.well-known/est/simpleenroll";
    struct Case<'a> {
        name: &'a str,
        call: Call<'a>,
        status: u16,
        says: &'a str,
    }
    let cases = [
        Case {
            name: "bad_unknown_label",
            call: Call::post("/.well-known/est/nope/simpleenroll", &good, &tls),
            status: 404,
            says: "no EST endpoint",
        },
        Case {
            name: "bad_unknown_operation",
            call: Call::post("/.well-known/est/enroll", &good, &tls),
            status: 404,
            says: "no such",
        },
        Case {
            name: "bad_outside_est",
            call: Call::get("/acme/default/directory"),
            status: 404,
            says: "no such",
        },
        Case {
            name: "bad_get_enroll",
            call: Call {
                method: "GET",
                ..Call::post(enroll, &good, &tls)
            },
            status: 405,
            says: "POST",
        },
        Case {
            name: "bad_post_cacerts",
            call: Call {
                method: "POST",
                ..Call::get("/.well-known/est/cacerts")
            },
            status: 405,
            says: "GET",
        },
        Case {
            name: "bad_fullcmc",
            call: Call::post("/.well-known/est/fullcmc", &good, &tls),
            status: 501,
            says: "fullcmc",
        },
        Case {
            name: "bad_too_large",
            call: Call {
                body_too_large: true,
                body: b"",
                ..Call::post(enroll, &good, &tls)
            },
            status: 413,
            says: "too large",
        },
        Case {
            name: "bad_content_type",
            call: Call {
                content_type: Some("application/json"),
                ..Call::post(enroll, &good, &tls)
            },
            status: 415,
            says: "content type",
        },
        Case {
            name: "bad_empty_body",
            call: Call::post(enroll, b"", &tls),
            status: 400,
            says: "empty",
        },
        Case {
            name: "bad_garbage_body",
            call: Call::post(enroll, b"this is not a CSR!", &tls),
            status: 400,
            says: "base64",
        },
        Case {
            name: "bad_truncated_der",
            call: Call::post(enroll, &bad_signature[..40], &tls),
            status: 400,
            says: "CSR",
        },
        Case {
            name: "bad_signature",
            call: Call::post(enroll, &bad_signature, &tls),
            status: 400,
            says: "signature",
        },
        Case {
            name: "bad_no_tls",
            call: Call {
                tls: None,
                ..Call::post(enroll, &good, &tls)
            },
            status: 403,
            says: "TLS",
        },
        Case {
            name: "bad_no_credentials",
            call: Call {
                authorization: None,
                ..Call::post(enroll, &good, &tls)
            },
            status: 401,
            says: "authentication",
        },
        Case {
            name: "bad_wrong_password",
            call: Call {
                authorization: basic(USER, "wrong"),
                ..Call::post(enroll, &good, &tls)
            },
            status: 401,
            says: "authentication",
        },
        Case {
            name: "bad_unknown_user",
            call: Call {
                authorization: basic("mallory", PASSWORD),
                ..Call::post(enroll, &good, &tls)
            },
            status: 401,
            says: "authentication",
        },
        Case {
            name: "bad_bearer",
            call: Call {
                authorization: Some("Bearer x".into()),
                ..Call::post(enroll, &good, &tls)
            },
            status: 401,
            says: "authentication",
        },
        Case {
            name: "bad_name_policy",
            call: Call::post("/.well-known/est/strict/simpleenroll", &outside_policy, &tls),
            status: 403,
            says: "not allowed",
        },
        Case {
            name: "bad_keygen_disabled",
            call: Call::post("/.well-known/est/serverkeygen", &good, &tls),
            status: 404,
            says: "not enabled",
        },
    ];
    let before = h.ta.store.journal_status().await.unwrap();
    for case in cases {
        let response = h.call(case.call).await;
        let body = text(&response.body);
        assert_eq!(response.status, case.status, "case {}: {body}", case.name);
        assert!(body.contains(case.says), "case {}: {body}", case.name);
        assert!(
            response.header_value("content-type").unwrap().starts_with("text/plain"),
            "case {}",
            case.name
        );
        if response.status == 401 {
            assert_eq!(
                response.header_value("www-authenticate"),
                Some("Basic realm=\"certgate EST default\""),
                "case {}",
                case.name
            );
        }
    }
    let after = h.ta.store.journal_status().await.unwrap();
    assert_eq!(before, after, "no refusal stored anything");
}

#[tokio::test]
async fn request_bodies_in_every_encoding() {
    let h = Harness::new().await;
    let tls = tls13();
    let key = KeyPair::generate().unwrap();
    let der = csr_der(&key, "device-2", &["d2.example.com"], None);
    let b64 = STANDARD.encode(&der);
    let lf76: String = b64
        .as_bytes()
        .chunks(76)
        .map(|c| format!("{}\n", std::str::from_utf8(c).unwrap()))
        .collect();
    let pem = format!("-----BEGIN CERTIFICATE REQUEST-----\n{lf76}-----END CERTIFICATE REQUEST-----\n");
    let cases: [(&str, Vec<u8>, Option<&str>); 6] = [
        ("good_der", der.clone(), Some("application/pkcs10")),
        (
            "good_base64_one_line",
            b64.clone().into_bytes(),
            Some("application/pkcs10"),
        ),
        ("good_base64_lf_76", lf76.clone().into_bytes(), None),
        ("good_pem", pem.into_bytes(), Some("application/x-pkcs10")),
        (
            "good_curl_default_type",
            b64.clone().into_bytes(),
            Some("application/x-www-form-urlencoded"),
        ),
        (
            "good_base64_crlf_64",
            csr_b64(&key, "device-2", &["d2.example.com"], None),
            Some("application/pkcs10; charset=us-ascii"),
        ),
    ];
    for (case, body, content_type) in cases {
        let call = Call {
            content_type,
            ..Call::post("/.well-known/est/simpleenroll", &body, &tls)
        };
        let response = h.call(call).await;
        assert_eq!(response.status, 200, "case {case}: {}", text(&response.body));
        assert_eq!(response.header_value("content-type"), Some(CERTS_ONLY), "case {case}");
    }
}

#[tokio::test]
async fn client_certificate_authentication() {
    let h = Harness::new().await;
    let key = KeyPair::generate().unwrap();
    let body = csr_b64(&key, "device-0001", &["d3.example.com"], None);
    let maker = with_chain(vec![h.maker.device_der.clone()]);
    let stranger = with_chain(vec![h.stranger.device_der.clone()]);
    let anchor_itself = with_chain(vec![h.maker.ca_der.clone()]);
    let none = tls13();
    let cases: [(&str, &str, &TlsFacts, bool, u16); 11] = [
        ("good_cert", "cert", &maker, false, 200),
        ("bad_cert_other_maker", "cert", &stranger, false, 401),
        ("bad_cert_missing", "cert", &none, false, 401),
        ("bad_cert_anchor_as_leaf", "cert", &anchor_itself, false, 401),
        ("bad_cert_basic_is_not_enough", "cert", &none, true, 401),
        ("good_both", "both", &maker, true, 200),
        ("bad_both_without_password", "both", &maker, false, 401),
        ("bad_both_without_cert", "both", &none, true, 401),
        ("good_either_cert", "either", &maker, false, 200),
        ("good_either_basic", "either", &none, true, 200),
        ("bad_either_neither", "either", &stranger, false, 401),
    ];
    for (case, endpoint, tls, with_password, status) in cases {
        let path = format!("/.well-known/est/{endpoint}/simpleenroll");
        let call = Call {
            authorization: if with_password { basic(USER, PASSWORD) } else { None },
            ..Call::post(&path, &body, tls)
        };
        let response = h.call(call).await;
        assert_eq!(response.status, status, "case {case}: {}", text(&response.body));
        if status == 200 {
            let leaf = certs_of(&response.body).remove(0);
            let cert = Certificate::from_der(&leaf).unwrap();
            let serial = Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()).unwrap();
            let record = h.ta.store.certificate(&serial).await.unwrap();
            let want = if with_password { "est-user:" } else { "est-cert:" };
            assert!(
                record.requester.as_str().starts_with(want),
                "case {case}: {}",
                record.requester
            );
        }
    }
}

#[tokio::test]
async fn simplereenroll_renews_only_our_certificate_with_the_same_names() {
    let h = Harness::new().await;
    let old_key = KeyPair::generate().unwrap();
    let old = enroll(
        &h,
        "/.well-known/est/simpleenroll",
        &old_key,
        "device-9",
        &["d9.example.com"],
    )
    .await;
    let old_serial = {
        let cert = Certificate::from_der(&old).unwrap();
        Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()).unwrap()
    };
    let new_key = KeyPair::generate().unwrap();
    let same = csr_b64(&new_key, "device-9", &["d9.example.com"], None);
    let other_cn = csr_b64(&new_key, "device-10", &["d9.example.com"], None);
    let other_san = csr_b64(&new_key, "device-9", &["d10.example.com"], None);
    let ours = with_chain(vec![old.clone()]);
    let foreign = with_chain(vec![h.maker.device_der.clone()]);
    let none = tls13();
    let path = "/.well-known/est/simplereenroll";
    let cases: [(&str, &[u8], &TlsFacts, &str, u16); 6] = [
        (
            "bad_no_certificate",
            &same,
            &none,
            "/.well-known/est/simplereenroll",
            401,
        ),
        ("bad_foreign_certificate", &same, &foreign, path, 403),
        (
            "bad_other_endpoint",
            &same,
            &ours,
            "/.well-known/est/either/simplereenroll",
            403,
        ),
        ("bad_subject_changed", &other_cn, &ours, path, 403),
        ("bad_san_changed", &other_san, &ours, path, 403),
        ("good_rekey", &same, &ours, path, 200),
    ];
    for (case, body, tls, path, status) in cases {
        let call = Call {
            authorization: None,
            ..Call::post(path, body, tls)
        };
        let response = h.call(call).await;
        assert_eq!(response.status, status, "case {case}: {}", text(&response.body));
        if status == 200 {
            let leaf = certs_of(&response.body).remove(0);
            verify_chain(&h, &leaf);
            let cert = Certificate::from_der(&leaf).unwrap();
            let serial = Serial::from_der_integer(cert.tbs_certificate().serial_number().as_bytes()).unwrap();
            let record = h.ta.store.certificate(&serial).await.unwrap();
            assert_eq!(
                record.replaces.as_ref(),
                Some(&old_serial),
                "the successor names its predecessor"
            );
            assert_eq!(
                record.requester.as_str(),
                "est-user:default/alice",
                "the requester carries over"
            );
        }
    }
    // Once revoked, the old certificate renews nothing.
    h.ta.authority
        .revoke(&old_serial, RevocationReason::KeyCompromise, "test")
        .await
        .unwrap();
    let response = h
        .call(Call {
            authorization: None,
            ..Call::post(path, &same, &ours)
        })
        .await;
    assert_eq!(response.status, 403, "{}", text(&response.body));
    assert!(text(&response.body).contains("revoked"));
}

#[tokio::test]
async fn csrattrs_announce_and_enforce() {
    let h = Harness::new().await;
    let response = h.call(Call::get("/.well-known/est/csrattrs")).await;
    assert_eq!(response.status, 204, "nothing to announce");
    let response = h.call(Call::get("/.well-known/est/attrs/csrattrs")).await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header_value("content-type"), Some("application/csrattrs"));
    let compact: Vec<u8> = response
        .body
        .iter()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    let der = STANDARD.decode(compact).unwrap();
    let items = Vec::<der::Any>::from_der(&der).unwrap();
    assert_eq!(
        items.len(),
        4,
        "challengePassword, ecPublicKey, ecdsa-with-SHA256, extensionRequest"
    );
    // Channel binding implies challengePassword.
    let response = h.call(Call::get("/.well-known/est/bound/csrattrs")).await;
    assert_eq!(response.status, 200);

    let tls = tls13();
    let p256 = KeyPair::generate().unwrap();
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap();
    let path = "/.well-known/est/attrs/simpleenroll";
    let cases = [
        (
            "good_everything",
            csr_b64(&p256, "d", &["d.example.com"], Some("pw")),
            200,
            "",
        ),
        (
            "bad_no_challenge_password",
            csr_b64(&p256, "d", &["d.example.com"], None),
            400,
            "challengePassword",
        ),
        (
            "bad_key_type",
            csr_b64(&p384, "d", &["d.example.com"], Some("pw")),
            400,
            "P-256",
        ),
        (
            "bad_no_extension_request",
            csr_b64(&p256, "d", &[], Some("pw")),
            400,
            "2.5.29.17",
        ),
    ];
    for (case, body, status, says) in cases {
        let response = h.call(Call::post(path, &body, &tls)).await;
        let body = text(&response.body);
        assert_eq!(response.status, status, "case {case}: {body}");
        assert!(body.contains(says), "case {case}: {body}");
    }
}

#[tokio::test]
async fn channel_binding_with_tls_exporter_and_tls_unique() {
    let h = Harness::new().await;
    let key = KeyPair::generate().unwrap();
    let exporter_b64 = STANDARD.encode(EXPORTER);
    let unique = vec![0x42u8; 12];
    let tls12 = TlsFacts {
        version: Some(TlsVersion::Tls12),
        exporter: None,
        tls_unique: Some(unique.clone()),
        ..tls13()
    };
    let tls13 = tls13();
    let path = "/.well-known/est/bound/simpleenroll";
    let cases: [(&str, Option<String>, &TlsFacts, u16); 5] = [
        ("good_exporter", Some(exporter_b64.clone()), &tls13, 200),
        ("good_tls_unique_on_tls12", Some(STANDARD.encode(&unique)), &tls12, 200),
        (
            "bad_exporter_of_another_connection",
            Some(STANDARD.encode([1u8; 32])),
            &tls13,
            403,
        ),
        (
            "bad_exporter_on_tls12_without_it",
            Some(exporter_b64.clone()),
            &tls12,
            403,
        ),
        ("bad_missing", None, &tls13, 403),
    ];
    for (case, challenge, tls, status) in cases {
        let body = csr_b64(&key, "bound", &["b.example.com"], challenge.as_deref());
        let response = h.call(Call::post(path, &body, tls)).await;
        assert_eq!(response.status, status, "case {case}: {}", text(&response.body));
    }
}

#[tokio::test]
async fn serverkeygen_returns_a_key_and_its_certificate() {
    let h = Harness::new().await;
    let tls = tls13();
    let client_key = KeyPair::generate().unwrap();
    let body = csr_b64(&client_key, "kg-device", &["kg.example.com"], None);
    let response = h
        .call(Call::post("/.well-known/est/keygen/serverkeygen", &body, &tls))
        .await;
    assert_eq!(response.status, 200, "{}", text(&response.body));
    assert_eq!(
        response.header_value("content-type"),
        Some("multipart/mixed; boundary=certgate-est_boundary")
    );
    let body = text(&response.body);
    assert!(body.ends_with("--certgate-est_boundary--\r\n"));
    let parts: Vec<&str> = body.split("--certgate-est_boundary").skip(1).take(2).collect();
    assert_eq!(parts.len(), 2);
    let content = |part: &str| {
        let (headers, content) = part.split_once("\r\n\r\n").unwrap();
        let compact: String = content.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        (headers.to_owned(), STANDARD.decode(compact).unwrap())
    };
    let (key_headers, pkcs8) = content(parts[0]);
    assert!(key_headers.contains("Content-Type: application/pkcs8"), "{key_headers}");
    let (cert_headers, certs) = content(parts[1]);
    assert!(
        cert_headers.contains(&format!("Content-Type: {CERTS_ONLY}")),
        "{cert_headers}"
    );
    let key = KeyPair::try_from(pkcs8.as_slice()).unwrap();
    let leaf = certs_of(STANDARD.encode(&certs).as_bytes()).remove(0);
    let cert = Certificate::from_der(&leaf).unwrap();
    let spki = der::Encode::to_der(cert.tbs_certificate().subject_public_key_info()).unwrap();
    assert_eq!(
        spki,
        rcgen::PublicKeyData::subject_public_key_info(&key),
        "the certificate certifies the returned key"
    );
    assert_ne!(spki, rcgen::PublicKeyData::subject_public_key_info(&client_key));
    assert!(cert.tbs_certificate().subject().to_string().contains("kg-device"));
    verify_chain(&h, &leaf);
}

#[tokio::test]
async fn approval_queue_holds_then_issues_once() {
    let h = Harness::new().await;
    let tls = tls13();
    let key = KeyPair::generate().unwrap();
    let body = csr_b64(&key, "pending-device", &["p.example.com"], None);
    let path = "/.well-known/est/approve/simpleenroll";

    for attempt in 0..2 {
        let response = h.call(Call::post(path, &body, &tls)).await;
        assert_eq!(response.status, 202, "attempt {attempt}: {}", text(&response.body));
        assert_eq!(response.header_value("retry-after"), Some("30"));
    }
    let pending = h.ta.store.approvals(&ApprovalFilter::pending(), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let record = &pending[0];
    assert_eq!(record.subject, "CN=pending-device");
    assert_eq!(record.requester.as_str(), "est-user:approve/alice");

    // Another user with the same key is refused.
    EstServer::add_user(
        &h.ta.store,
        &name("approve"),
        "bob",
        b"bobpassword",
        time::OffsetDateTime::now_utc(),
    )
    .await
    .unwrap();
    let response = h
        .call(Call {
            authorization: basic("bob", "bobpassword"),
            ..Call::post(path, &body, &tls)
        })
        .await;
    assert_eq!(response.status, 403, "{}", text(&response.body));

    h.ta.store
        .approve(&record.key, "operator", time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let first = h.call(Call::post(path, &body, &tls)).await;
    assert_eq!(first.status, 200, "{}", text(&first.body));
    let leaf = certs_of(&first.body).remove(0);
    verify_chain(&h, &leaf);
    let stored = h.ta.store.approval(&record.key).await.unwrap();
    assert_eq!(stored.state, ApprovalState::Issued);
    // A repeated request gets the same certificate, not a second one.
    let again = h.call(Call::post(path, &body, &tls)).await;
    assert_eq!(again.status, 200);
    assert_eq!(certs_of(&again.body).remove(0), leaf);

    // A denied request is refused on retry.
    let other_key = KeyPair::generate().unwrap();
    let other = csr_b64(&other_key, "rogue-device", &["r.example.com"], None);
    assert_eq!(h.call(Call::post(path, &other, &tls)).await.status, 202);
    let fingerprint = {
        let csr = certgate_est::decode_csr_body(&other).unwrap();
        certgate_est::approval_fingerprint(&csr)
    };
    let key = ApprovalKey::new(Protocol::Est, name("approve"), fingerprint).unwrap();
    h.ta.store
        .deny(
            &key,
            "operator",
            Some("unknown device"),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
    let response = h.call(Call::post(path, &other, &tls)).await;
    assert_eq!(response.status, 403);
    assert!(text(&response.body).contains("denied"));
}
