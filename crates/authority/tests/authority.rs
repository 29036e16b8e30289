//! Authority integration tests: real CAs, a real sled store, independent verifiers.

use std::collections::HashSet;
use std::sync::Arc;

use certgate_authority::{
    AuthorityError, EndpointPolicy, EndpointRef, IssueRequest, NamePolicy, RenewalCheck, RenewalRefusal, Standing,
};
use certgate_core::{
    CsrError, DnsName, Identifier, KeyKind, ManualClock, ParsedCsr, Protocol, RequesterId, RevocationReason,
};
use certgate_signer::{KeyType, generate_key};
use certgate_store::{CertificateFilter, CertificateRecord, CertificateStore, SledStore};
use certgate_test_support::rcgen::{CertificateParams, DistinguishedName, DnType};
use certgate_test_support::{
    TestAuthority, csr, name, openssl_verify, pkilint, test_endpoint, unwaived, workspace_root, write_pem,
};
use time::{Duration, OffsetDateTime};

fn request(csr_der: &[u8]) -> IssueRequest {
    IssueRequest::new(
        Protocol::Acme,
        name("default"),
        ParsedCsr::from_der(csr_der).expect("test CSR parses"),
        RequesterId::new("acme-account:test").unwrap(),
    )
}

fn golden(file: &str) -> Vec<u8> {
    std::fs::read(workspace_root().join("testdata/csr").join(file)).unwrap()
}

/// Issues with every CA key type x every CSR key type, checks each leaf with openssl and
/// pkilint (CA/B Forum server profile), and a client and a device leaf per CA with the
/// PKIX linter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_ca_key_type_and_csr_key_type_verifies_and_lints() {
    let leaf_keys: Vec<(KeyType, certgate_test_support::rcgen::KeyPair)> =
        KeyType::ALL.iter().map(|k| (*k, generate_key(*k).unwrap())).collect();
    let mut lint_jobs = Vec::new();
    for ca_type in KeyType::ALL {
        let t = TestAuthority::new(ca_type, vec![test_endpoint()]);
        let work = tempfile::tempdir().unwrap();
        let intermediates = work.path().join("intermediates.pem");
        write_pem(&intermediates, &[t.ca.issuer.certificate_der()]);
        for (csr_key, key) in &leaf_keys {
            for profile in ["tls-server", "tls-client", "device"] {
                // Every pair under tls-server; the other profiles once per CA with two key types.
                if profile != "tls-server" && !matches!(csr_key, KeyType::P256 | KeyType::Rsa2048) {
                    continue;
                }
                let case = format!("ca={ca_type} csr={csr_key} profile={profile}");
                let der = csr(
                    key,
                    Some("dev1.example.com"),
                    &["dev1.example.com", "www.example.com", "192.0.2.10"],
                );
                let mut req = request(&der);
                req.profile = Some(name(profile));
                let issued = t.authority.issue(req).await.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(issued.chain.len(), 2, "{case}: leaf and intermediate");
                let leaf = work.path().join(format!("{ca_type}-{csr_key}-{profile}.pem"));
                write_pem(&leaf, &[&issued.chain[0]]);
                let purpose = if profile == "tls-server" {
                    "sslserver"
                } else {
                    "sslclient"
                };
                openssl_verify(&t.ca.root_pem, &intermediates, &leaf, Some(purpose))
                    .unwrap_or_else(|e| panic!("{case}: openssl verify: {e}"));
                let ed25519 = ca_type == KeyType::Ed25519 || *csr_key == KeyType::Ed25519;
                lint_jobs.push((case, issued.record.der.clone(), profile == "tls-server", ed25519));
            }
        }
    }
    // pkilint is a Python process per certificate: run two at a time.
    let jobs = Arc::new(std::sync::Mutex::new(lint_jobs));
    let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let (jobs, failures) = (Arc::clone(&jobs), Arc::clone(&failures));
            std::thread::spawn(move || {
                while let Some((case, der, server, ed25519)) = jobs.lock().unwrap().pop() {
                    let left = unwaived(pkilint(&der, server), ed25519);
                    if !left.is_empty() {
                        failures.lock().unwrap().push(format!("{case}: {left:?}"));
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "pkilint findings without a waiver:\n{}",
        failures.join("\n")
    );
}

fn strict_endpoint() -> EndpointPolicy {
    EndpointPolicy {
        names: NamePolicy {
            allowed_dns_suffixes: vec!["example.com".into()],
            allow_wildcards: false,
            max_names: 100,
            ..NamePolicy::default()
        },
        ..test_endpoint()
    }
}

/// Every bad CSR is refused with its typed error, and nothing reaches the store.
#[tokio::test]
async fn bad_csrs_are_refused_and_nothing_is_stored() {
    let t = TestAuthority::new(KeyType::P256, vec![strict_endpoint()]);
    type Check = fn(&AuthorityError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("bad_signature", golden("bad_signature_p256.der"), |e| {
            matches!(e, AuthorityError::Csr(CsrError::BadSignature))
        }),
        ("rsa_1024", golden("bad_rsa1024.der"), |e| {
            matches!(
                e,
                AuthorityError::KeyNotAllowed {
                    key: KeyKind::Rsa(1024),
                    ..
                }
            )
        }),
        ("secp256k1_curve", golden("bad_secp256k1.der"), |e| {
            matches!(e, AuthorityError::Csr(CsrError::UnsupportedCurve(_)))
        }),
        ("brainpool_curve", golden("bad_brainpool.der"), |e| {
            matches!(e, AuthorityError::Csr(CsrError::UnsupportedCurve(_)))
        }),
        ("name_outside_policy", golden("bad_outside_policy_p256.der"), |e| {
            matches!(e, AuthorityError::NameNotAllowed { .. })
        }),
        ("wildcard_not_allowed", golden("bad_wildcard_p256.der"), |e| {
            matches!(e, AuthorityError::WildcardNotAllowed(_))
        }),
        ("too_many_sans", golden("bad_too_many_sans_p256.der"), |e| {
            matches!(e, AuthorityError::TooManyNames { max: 100, .. })
        }),
        ("sha1_signature", golden("bad_sha1_rsa2048.der"), |e| {
            matches!(e, AuthorityError::WeakSignatureAlgorithm)
        }),
        ("garbage_bytes", golden("bad_garbage.der"), |e| {
            matches!(e, AuthorityError::Csr(CsrError::Malformed(_)))
        }),
        ("truncated_der", golden("bad_truncated.der"), |e| {
            matches!(e, AuthorityError::Csr(CsrError::Malformed(_)))
        }),
        ("empty", Vec::new(), |e| {
            matches!(e, AuthorityError::Csr(CsrError::Malformed(_)))
        }),
        (
            "no_names",
            csr(&generate_key(KeyType::P256).unwrap(), Some("not a hostname"), &[]),
            |e| matches!(e, AuthorityError::NoNames(_)),
        ),
    ];
    for (case, der, check) in cases {
        // The same path a protocol takes: parse, then ask the authority.
        let result = match ParsedCsr::from_der(&der) {
            Err(e) => Err(AuthorityError::from(e)),
            Ok(parsed) => {
                let mut req = request(&der);
                req.csr = parsed;
                t.authority.issue(req).await.map(|_| ())
            }
        };
        let err = result.expect_err(case);
        assert!(check(&err), "case {case}: unexpected error {err:?}");
    }
    let status = t.store.journal_status().await.unwrap();
    assert_eq!(
        (status.certificates, status.reserved, status.abandoned),
        (0, 0, 0),
        "nothing stored"
    );
}

#[tokio::test]
async fn good_golden_csrs_are_issued() {
    let t = TestAuthority::new(KeyType::P256, vec![strict_endpoint()]);
    let cases = [
        ("p256", "good_p256.der", 3),
        ("p384", "good_p384.der", 3),
        ("rsa2048", "good_rsa2048.der", 3),
        ("rsa3072", "good_rsa3072.der", 3),
        ("rsa4096", "good_rsa4096.der", 3),
        ("ed25519", "good_ed25519.der", 3),
        ("cn_only_becomes_san", "good_cn_only_p256.der", 1),
        ("unknown_extensions_ignored", "good_extra_extensions_p256.der", 3),
    ];
    for (case, file, names) in cases {
        let issued = t
            .authority
            .issue(request(&golden(file)))
            .await
            .unwrap_or_else(|e| panic!("case {case}: {e}"));
        assert_eq!(issued.record.identifiers.len(), names, "case {case}");
    }
}

#[tokio::test]
async fn issuance_records_provenance_and_policy_validity() {
    let t = TestAuthority::new(KeyType::P256, vec![test_endpoint()]);
    let key = generate_key(KeyType::P256).unwrap();
    let der = csr(&key, Some("Dev One"), &["a.example.com"]);
    let before = OffsetDateTime::now_utc();
    let mut req = request(&der);
    req.owner_labels.insert("service".into(), "web".into());
    let issued = t.authority.issue(req).await.unwrap();
    let record = &issued.record;
    assert_eq!(record.protocol, Protocol::Acme);
    assert_eq!(record.endpoint, name("default"));
    assert_eq!(record.requester.as_str(), "acme-account:test");
    assert_eq!(record.profile, name("tls-server"));
    assert_eq!(
        record.owner_labels.get("team").map(String::as_str),
        Some("platform"),
        "endpoint label"
    );
    assert_eq!(
        record.owner_labels.get("service").map(String::as_str),
        Some("web"),
        "requester label"
    );
    assert_eq!(
        record.subject, "",
        "a CN that is not a SAN is dropped from TLS server certificates"
    );
    assert_eq!(
        record.identifiers,
        vec![Identifier::Dns(DnsName::new("a.example.com").unwrap())]
    );
    assert!(
        record.not_before <= before - Duration::seconds(59),
        "backdated one minute"
    );
    let days = (record.not_after - record.not_before).whole_days();
    assert_eq!(days, 90, "default validity");
    assert_eq!(
        t.store.certificate(&record.serial).await.unwrap(),
        *record,
        "durable in the store"
    );
    assert!(issued.chain_pem().starts_with("-----BEGIN CERTIFICATE-----"));

    // Explicit validity beyond the profile's maximum is refused; within it, honoured.
    let mut req = request(&der);
    req.not_after = Some(OffsetDateTime::now_utc() + Duration::days(400));
    assert!(matches!(
        t.authority.issue(req).await,
        Err(AuthorityError::BadValidity(_))
    ));
    let mut req = request(&der);
    let want = (OffsetDateTime::now_utc() + Duration::days(10))
        .replace_nanosecond(0)
        .unwrap();
    req.not_after = Some(want);
    assert_eq!(t.authority.issue(req).await.unwrap().record.not_after, want);

    // Unknown endpoint and profile.
    let mut req = request(&der);
    req.endpoint = name("nope");
    assert!(matches!(
        t.authority.issue(req).await,
        Err(AuthorityError::UnknownEndpoint { .. })
    ));
    let mut req = request(&der);
    req.profile = Some(name("nope"));
    assert!(matches!(
        t.authority.issue(req).await,
        Err(AuthorityError::UnknownProfile(_))
    ));
    let mut req = request(&der);
    req.protocol = Protocol::Est;
    assert!(matches!(
        t.authority.issue(req).await,
        Err(AuthorityError::UnknownEndpoint { .. })
    ));
}

#[tokio::test]
async fn device_profile_keeps_subject_and_caps_at_issuer_expiry() {
    let t = TestAuthority::new(KeyType::P256, vec![test_endpoint()]);
    let der = csr(&generate_key(KeyType::Rsa2048).unwrap(), Some("router-7"), &[]);
    let mut req = request(&der);
    req.profile = Some(name("device"));
    let issued = t.authority.issue(req).await.unwrap();
    assert_eq!(issued.record.subject, "CN=router-7");
    assert!(issued.record.identifiers.is_empty());
    assert!(issued.record.not_after <= t.ca.issuer.not_after());
}

#[tokio::test]
async fn revocation_is_recorded_once() {
    let t = TestAuthority::new(KeyType::P256, vec![test_endpoint()]);
    let issued = t
        .authority
        .issue(request(&csr(
            &generate_key(KeyType::P256).unwrap(),
            None,
            &["a.example.com"],
        )))
        .await
        .unwrap();
    let serial = issued.record.serial.clone();
    let revoked = t
        .authority
        .revoke(&serial, RevocationReason::KeyCompromise, "operator")
        .await
        .unwrap();
    assert_eq!(
        revoked.revocation.as_ref().map(|r| r.reason),
        Some(RevocationReason::KeyCompromise)
    );
    assert!(matches!(
        t.authority
            .revoke(&serial, RevocationReason::Superseded, "operator")
            .await,
        Err(AuthorityError::AlreadyRevoked)
    ));
    let unknown = certgate_core::Serial::from_random([9; 16]);
    assert!(matches!(
        t.authority
            .revoke(&unknown, RevocationReason::Unspecified, "operator")
            .await,
        Err(AuthorityError::NotFound)
    ));
    let stored = t.store.certificate(&serial).await.unwrap();
    assert_eq!(
        stored.revocation.map(|r| r.reason),
        Some(RevocationReason::KeyCompromise)
    );
}

/// 10,000 issuances from 8 concurrent tasks: 10,000 distinct serials, all there after reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_concurrent_issuances_survive_reopen() {
    const TASKS: usize = 8;
    const PER_TASK: usize = 1250;
    let TestAuthority {
        ca,
        store_dir,
        store,
        authority,
    } = TestAuthority::new(KeyType::P256, vec![test_endpoint()]);
    let der = csr(&generate_key(KeyType::P256).unwrap(), None, &["load.example.com"]);
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let authority = Arc::clone(&authority);
        let der = der.clone();
        tasks.push(tokio::spawn(async move {
            let mut serials = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                serials.push(authority.issue(request(&der)).await.unwrap().record.serial);
            }
            serials
        }));
    }
    let mut serials = HashSet::new();
    for task in tasks {
        serials.extend(task.await.unwrap());
    }
    assert_eq!(serials.len(), TASKS * PER_TASK, "distinct serials");
    drop(authority);
    drop(store);
    drop(ca);

    let reopened = SledStore::open(store_dir.path()).unwrap();
    let status = reopened.journal_status().await.unwrap();
    assert_eq!(status.certificates as usize, TASKS * PER_TASK);
    assert_eq!((status.reserved, status.abandoned), (0, 0));
    for serial in &serials {
        reopened.certificate(serial).await.unwrap();
    }
    let listed = certgate_store::list_all(&reopened, CertificateFilter::All)
        .await
        .unwrap()
        .len();
    assert_eq!(listed, TASKS * PER_TASK, "the expiry index lists each exactly once");
}

/// Dropping `issue()` while it signs (a client that went away) leaves no serial reserved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_issuance_releases_its_serial() {
    // An RSA-4096 issuer signs in spawn_blocking for several milliseconds: room to cancel.
    let t = TestAuthority::new(KeyType::Rsa4096, vec![test_endpoint()]);
    let der = csr(&generate_key(KeyType::P256).unwrap(), None, &["a.example.com"]);
    for micros in (0..20_000).step_by(250) {
        let attempt = tokio::time::timeout(
            std::time::Duration::from_micros(micros),
            t.authority.issue(request(&der)),
        );
        let _ = attempt.await;
        if t.store.journal_status().await.unwrap().abandoned >= 3 {
            break;
        }
    }
    // The guard abandons in a spawned task: give it a moment.
    let mut status = t.store.journal_status().await.unwrap();
    for _ in 0..100 {
        if status.reserved == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        status = t.store.journal_status().await.unwrap();
    }
    assert_eq!(status.reserved, 0, "no reservation left behind: {status:?}");
    assert!(
        status.abandoned >= 1,
        "some attempts were cancelled mid-signing: {status:?}"
    );
}

#[tokio::test]
async fn validity_edges() {
    let t = TestAuthority::new(KeyType::P256, vec![test_endpoint()]);
    let der = csr(&generate_key(KeyType::P256).unwrap(), None, &["a.example.com"]);
    let now = OffsetDateTime::now_utc();

    // The profile maximum holds for the certificate as issued, backdate included.
    let mut req = request(&der);
    req.not_after = Some(now + Duration::days(398));
    assert!(
        matches!(t.authority.issue(req).await, Err(AuthorityError::BadValidity(_))),
        "398 days + backdate"
    );
    let mut req = request(&der);
    req.not_after = Some(now + Duration::days(398) - Duration::minutes(2));
    let issued = t.authority.issue(req).await.unwrap().record;
    assert!(issued.not_after - issued.not_before <= Duration::days(398));

    // A start after the issuer's expiry is refused, never issued backwards.
    let dir = tempfile::tempdir().unwrap();
    let options = certgate_signer::CaInitOptions {
        intermediate_validity: Duration::days(10),
        ..Default::default()
    };
    let files = certgate_signer::init_ca(dir.path(), &options, now).unwrap();
    let issuer = std::sync::Arc::new(certgate_signer::Issuer::load(name("default"), &files, None).unwrap());
    let ca = certgate_test_support::TestCa {
        dir,
        issuer,
        root_pem: files.root.clone(),
        issuer_pem: files.cert.clone(),
    };
    let store_dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(store_dir.path()).unwrap();
    let authority = TestAuthority::authority_over(&ca, store.clone(), vec![test_endpoint()]);
    let mut req = request(&der);
    req.not_before = Some(now + Duration::days(30));
    assert!(
        matches!(authority.issue(req).await, Err(AuthorityError::BadValidity(_))),
        "starts after the issuer ends"
    );
    let issued = authority.issue(request(&der)).await.unwrap().record;
    assert!(
        issued.not_before < issued.not_after && issued.not_after <= ca.issuer.not_after(),
        "capped at the issuer"
    );
    assert_eq!(
        store.journal_status().await.unwrap().certificates,
        1,
        "refusals wrote nothing"
    );
}

/// A renewal that does not name its predecessor is linked to the newest live certificate of
/// the same requester, endpoint and name set; other requesters, other name sets and
/// certificates that already have a successor are never guessed.
#[tokio::test]
async fn same_requester_and_names_link_as_successor() {
    let t = TestAuthority::new(KeyType::P256, vec![test_endpoint()]);
    let key = generate_key(KeyType::P256).unwrap();
    let issue = |sans: &'static [&'static str], requester: &'static str| {
        let der = csr(&key, None, sans);
        let mut req = request(&der);
        req.requester = RequesterId::new(requester).unwrap();
        let authority = Arc::clone(&t.authority);
        async move { authority.issue(req).await.unwrap().record }
    };
    let first = issue(&["a.example.com", "b.example.com"], "acme-account:one").await;
    assert_eq!(first.replaces, None, "nothing to renew");
    let cases = [
        (
            "other_requester",
            &["a.example.com", "b.example.com"][..],
            "acme-account:two",
            None,
        ),
        ("other_names", &["a.example.com"][..], "acme-account:one", None),
        (
            "same_names_other_order",
            &["b.example.com", "a.example.com"][..],
            "acme-account:one",
            Some(first.serial.clone()),
        ),
    ];
    for (case, sans, requester, want) in cases {
        let der = csr(&key, None, sans);
        let mut req = request(&der);
        req.requester = RequesterId::new(requester).unwrap();
        let record = t.authority.issue(req).await.unwrap().record;
        assert_eq!(record.replaces, want, "case {case}");
    }
    // `first` has a successor now: the next renewal links to that successor, not to `first`.
    let newest = t.store.successor(&first.serial).await.unwrap().unwrap();
    let again = issue(&["a.example.com", "b.example.com"], "acme-account:one").await;
    assert_eq!(again.replaces, Some(newest.serial.clone()));

    // A long lineage: each renewal still links to the one before, however many came first
    // (the index is read newest first; more than a page of 256 once hid the newest).
    let mut previous = again.serial.clone();
    for _ in 0..300 {
        let next = issue(&["a.example.com", "b.example.com"], "acme-account:one").await;
        assert_eq!(next.replaces.as_ref(), Some(&previous));
        previous = next.serial;
    }

    // Revocations bump the generation CRLs and OCSP caches watch.
    let mut updates = t.authority.revocation_updates();
    let before = *updates.borrow_and_update();
    t.authority
        .revoke(&again.serial, RevocationReason::Superseded, "test")
        .await
        .unwrap();
    assert!(updates.has_changed().unwrap());
    assert_eq!(*updates.borrow(), before + 1);
}

/// Certificates without names (devices) are never linked by guess: one requester shared by a
/// fleet (a SCEP challenge, an EST bootstrap user) would chain one device's certificate to
/// another device's, and the older one would then count as superseded.
#[tokio::test]
async fn nameless_certificates_are_not_linked() {
    let t = TestAuthority::new(KeyType::P256, vec![test_endpoint()]);
    for device in ["device-1", "device-2", "device-3"] {
        let key = generate_key(KeyType::P256).unwrap();
        let der = csr(&key, Some(device), &[]);
        let mut req = request(&der);
        req.profile = Some(name("device"));
        let record = t.authority.issue(req).await.unwrap().record;
        assert!(record.identifiers.is_empty(), "{device}: {:?}", record.identifiers);
        assert_eq!(record.replaces, None, "{device}");
    }
}

/// A CSR with subject `subject` (attribute, value) in order and DNS `sans`.
fn csr_with_subject(key: &certgate_test_support::rcgen::KeyPair, subject: &[(DnType, &str)], sans: &[&str]) -> Vec<u8> {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = DistinguishedName::new();
    for (kind, value) in subject {
        params.distinguished_name.push(kind.clone(), *value);
    }
    params.serialize_request(key).unwrap().der().to_vec()
}

/// The renewal rule every protocol's renewal goes through: same protocol and endpoint (or one
/// explicitly accepted), in the inventory, unrevoked, unexpired, and the same subject and
/// subjectAltNames as certified (SAN order aside). Nothing is written either way.
#[tokio::test]
async fn renewal_rule() {
    let endpoint = |protocol, endpoint_name: &str| EndpointPolicy {
        protocol,
        name: name(endpoint_name),
        profiles: vec![name("device"), name("tls-server")],
        ..test_endpoint()
    };
    let endpoints = vec![
        endpoint(Protocol::Scep, "default"),
        endpoint(Protocol::Scep, "other"),
        endpoint(Protocol::Est, "factory"),
    ];
    let t = TestAuthority::new(KeyType::P256, endpoints.clone());
    let key = generate_key(KeyType::P256).unwrap();
    let device = [(DnType::CommonName, "device-1")];
    let names = ["a.example.com", "b.example.com"];
    let issue = |protocol, endpoint_name: &'static str, profile: &'static str, der: Vec<u8>| {
        let authority = Arc::clone(&t.authority);
        async move {
            let mut req = IssueRequest::new(
                protocol,
                name(endpoint_name),
                ParsedCsr::from_der(&der).unwrap(),
                RequesterId::new("scep-device:test").unwrap(),
            );
            req.profile = Some(name(profile));
            authority.issue(req).await.unwrap().record
        }
    };
    let ours = issue(
        Protocol::Scep,
        "default",
        "device",
        csr_with_subject(&key, &device, &names),
    )
    .await;
    let est = issue(
        Protocol::Est,
        "factory",
        "device",
        csr_with_subject(&key, &device, &names),
    )
    .await;
    let other = issue(
        Protocol::Scep,
        "other",
        "device",
        csr_with_subject(&key, &device, &names),
    )
    .await;
    let revoked = issue(
        Protocol::Scep,
        "default",
        "device",
        csr_with_subject(&key, &device, &names),
    )
    .await;
    t.authority
        .revoke(&revoked.serial, RevocationReason::KeyCompromise, "test")
        .await
        .unwrap();
    // CN only, no SAN: a TLS server certificate certifies the CN as its SAN.
    let host = [(DnType::CommonName, "host.example.com")];
    let server = issue(
        Protocol::Scep,
        "default",
        "tls-server",
        csr_with_subject(&key, &host, &[]),
    )
    .await;
    let stranger = {
        let params = CertificateParams::new(vec!["a.example.com".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    };
    // The same store and CA seen at a time when every certificate above has expired.
    let later = TestAuthority::authority_over_with_clock(
        &t.ca,
        t.store.clone(),
        endpoints,
        Arc::new(ManualClock::new(ours.not_after + Duration::seconds(1))),
    );

    let new_key = generate_key(KeyType::P256).unwrap();
    let renew = |subject: &[(DnType, &str)], sans: &[&str]| csr_with_subject(&new_key, subject, sans);
    let from_factory = ["est:factory".parse::<EndpointRef>().unwrap()];
    type Case<'a> = (
        &'static str,
        &'a CertificateRecord,
        Vec<u8>,
        Option<&'static str>,
        &'a [EndpointRef],
        bool,
        Result<(), RenewalRefusal>,
    );
    let cases: Vec<Case<'_>> = vec![
        (
            "good_same_protocol_and_endpoint",
            &ours,
            renew(&device, &names),
            None,
            &[],
            false,
            Ok(()),
        ),
        (
            "good_reordered_sans",
            &ours,
            renew(&device, &["b.example.com", "a.example.com"]),
            None,
            &[],
            false,
            Ok(()),
        ),
        (
            "good_tls_server_cn_as_san",
            &server,
            renew(&host, &[]),
            Some("tls-server"),
            &[],
            false,
            Ok(()),
        ),
        (
            "good_other_protocol_explicitly_accepted",
            &est,
            renew(&device, &names),
            None,
            &from_factory,
            false,
            Ok(()),
        ),
        (
            "bad_other_protocol",
            &est,
            renew(&device, &names),
            None,
            &[],
            false,
            Err(RenewalRefusal::OtherEndpoint),
        ),
        (
            "bad_other_endpoint",
            &other,
            renew(&device, &names),
            None,
            &from_factory,
            false,
            Err(RenewalRefusal::OtherEndpoint),
        ),
        (
            "bad_revoked",
            &revoked,
            renew(&device, &names),
            None,
            &[],
            false,
            Err(RenewalRefusal::Revoked),
        ),
        (
            "bad_expired",
            &ours,
            renew(&device, &names),
            None,
            &[],
            true,
            Err(RenewalRefusal::OutsideValidity),
        ),
        (
            "bad_changed_subject",
            &ours,
            renew(&[(DnType::CommonName, "device-2")], &names),
            None,
            &[],
            false,
            Err(RenewalRefusal::SubjectChanged),
        ),
        (
            "bad_added_subject_attribute",
            &ours,
            renew(
                &[(DnType::CommonName, "device-1"), (DnType::OrganizationName, "Payroll")],
                &names,
            ),
            None,
            &[],
            false,
            Err(RenewalRefusal::SubjectChanged),
        ),
        (
            "bad_added_san",
            &ours,
            renew(&device, &["a.example.com", "b.example.com", "payroll.corp.example"]),
            None,
            &[],
            false,
            Err(RenewalRefusal::NamesChanged),
        ),
        (
            "bad_removed_san",
            &ours,
            renew(&device, &["a.example.com"]),
            None,
            &[],
            false,
            Err(RenewalRefusal::NamesChanged),
        ),
        (
            "bad_changed_san",
            &ours,
            renew(&device, &["a.example.com", "c.example.com"]),
            None,
            &[],
            false,
            Err(RenewalRefusal::NamesChanged),
        ),
    ];
    let before = t.store.journal_status().await.unwrap();
    for (case, old, csr_der, profile, also_from, expired, want) in cases {
        let authority = if expired { &later } else { &t.authority };
        let csr = ParsedCsr::from_der(&csr_der).unwrap();
        let profile = profile.map(name);
        let got = authority
            .check_renewal(&RenewalCheck {
                protocol: Protocol::Scep,
                endpoint: &name("default"),
                presented: &old.der,
                csr: &csr,
                profile: profile.as_ref(),
                also_from,
            })
            .await;
        match (got, want) {
            (Ok(renewal), Ok(())) => assert_eq!(renewal.replaces(), &old.serial, "case {case}"),
            (Err(AuthorityError::RenewalRefused(got)), Err(want)) => assert_eq!(got, want, "case {case}"),
            (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
        }
    }
    // A certificate certgate never issued, and one it issued presented with other bytes.
    let mut tampered = ours.der.clone();
    if let Some(last) = tampered.last_mut() {
        *last ^= 1;
    }
    for (case, presented) in [("bad_not_issued_here", &stranger), ("bad_tampered", &tampered)] {
        let csr = ParsedCsr::from_der(&renew(&device, &names)).unwrap();
        let got = t
            .authority
            .check_renewal(&RenewalCheck {
                protocol: Protocol::Scep,
                endpoint: &name("default"),
                presented,
                csr: &csr,
                profile: None,
                also_from: &[],
            })
            .await;
        assert!(
            matches!(got, Err(AuthorityError::RenewalRefused(RenewalRefusal::NotIssuedHere))),
            "case {case}: {got:?}"
        );
    }
    assert_eq!(
        t.store.journal_status().await.unwrap(),
        before,
        "a check writes nothing"
    );

    // The inventory standing a protocol asks of a presented certificate.
    let standing = |der: &[u8]| {
        let der = der.to_vec();
        let authority = Arc::clone(&t.authority);
        async move { authority.standing(&der).await.unwrap() }
    };
    assert!(matches!(standing(&ours.der).await, Standing::Good(_)));
    assert!(matches!(standing(&revoked.der).await, Standing::Revoked(_)));
    assert_eq!(standing(&stranger).await, Standing::Unknown);
    assert!(matches!(
        later.standing(&ours.der).await.unwrap(),
        Standing::OutsideValidity(_)
    ));
}

/// Issue 14 finding 5: every name that ends up in a certificate, each subject attribute and each
/// subjectAltName, passes the endpoint's name policy; a refusal is typed and writes nothing.
mod names_policy {
    use certgate_authority::{AuthorityError, EndpointPolicy, IssueRequest, NamePolicy, SubjectAttributeType};
    use certgate_core::{ErrorKind, IpNet, ParsedCsr, Protocol, RequesterId};
    use certgate_signer::{KeyType, generate_key};
    use certgate_store::CertificateStore;
    use certgate_test_support::rcgen::{
        CertificateParams, DistinguishedName, DnType, KeyPair, SanType, string::Ia5String,
    };
    use certgate_test_support::{TestAuthority, name, test_endpoint};

    /// A CSR with `subject` in order and `sans`. A custom type with a known OID adds a second
    /// attribute of that type (rcgen keeps one value per type it knows).
    fn csr(key: &KeyPair, subject: &[(DnType, &str)], sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params.subject_alt_names = sans;
        params.serialize_request(key).unwrap().der().to_vec()
    }

    fn email(s: &str) -> SanType {
        SanType::Rfc822Name(Ia5String::try_from(s).unwrap())
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(Ia5String::try_from(s).unwrap())
    }

    fn dns(s: &str) -> SanType {
        SanType::DnsName(Ia5String::try_from(s).unwrap())
    }

    fn ip(s: &str) -> SanType {
        SanType::IpAddress(s.parse().unwrap())
    }

    /// An endpoint of `protocol` named after its policy, offering device and tls-client.
    fn endpoint(protocol: Protocol, endpoint: &str, names: NamePolicy) -> EndpointPolicy {
        EndpointPolicy {
            protocol,
            name: name(endpoint),
            profiles: vec![name("device"), name("tls-client"), name("tls-server")],
            names,
            ..test_endpoint()
        }
    }

    type Check = fn(&AuthorityError) -> bool;

    fn subject_refused(e: &AuthorityError) -> bool {
        matches!(e, AuthorityError::SubjectNotAllowed { .. })
    }

    fn name_refused(e: &AuthorityError) -> bool {
        matches!(e, AuthorityError::NameNotAllowed { .. })
    }

    struct Case<'a> {
        name: &'a str,
        protocol: Protocol,
        endpoint: &'a str,
        profile: &'a str,
        subject: Vec<(DnType, &'a str)>,
        sans: Vec<SanType>,
        /// `None`: issued; `Some(check)`: refused with an error `check` accepts.
        refused: Option<Check>,
    }

    fn case<'a>(name: &'a str, endpoint: &'a str, subject: Vec<(DnType, &'a str)>, sans: Vec<SanType>) -> Case<'a> {
        Case {
            name,
            protocol: Protocol::Scep,
            endpoint,
            profile: "device",
            subject,
            sans,
            refused: None,
        }
    }

    fn refused(mut case: Case<'_>, check: Check) -> Case<'_> {
        case.refused = Some(check);
        case
    }

    #[tokio::test]
    async fn every_name_passes_the_endpoint_policy() {
        let t = TestAuthority::new(
            KeyType::P256,
            vec![
                endpoint(Protocol::Scep, "default", NamePolicy::default()),
                endpoint(
                    Protocol::Scep,
                    "mail",
                    NamePolicy {
                        allow_email: true,
                        allowed_email_domains: vec!["example.com".into()],
                        ..NamePolicy::default()
                    },
                ),
                endpoint(
                    Protocol::Scep,
                    "spiffe",
                    NamePolicy {
                        allow_uri: true,
                        allowed_dns_suffixes: vec!["example.org".into()],
                        ..NamePolicy::default()
                    },
                ),
                endpoint(
                    Protocol::Scep,
                    "lan",
                    NamePolicy {
                        allow_ip: Some(true),
                        allowed_ip_ranges: vec![IpNet::parse("10.0.0.0/8").unwrap()],
                        ..NamePolicy::default()
                    },
                ),
                endpoint(
                    Protocol::Scep,
                    "cn-only",
                    NamePolicy {
                        subject_attributes: Some(vec![SubjectAttributeType::CommonName]),
                        ..NamePolicy::default()
                    },
                ),
                endpoint(
                    Protocol::Est,
                    "corp",
                    NamePolicy {
                        allowed_dns_suffixes: vec!["corp.example".into()],
                        ..NamePolicy::default()
                    },
                ),
                endpoint(Protocol::Acme, "default", NamePolicy::default()),
            ],
        );
        let key = generate_key(KeyType::P256).unwrap();
        let second_cn = DnType::CustomDnType(vec![2, 5, 4, 3]);
        let long_cn = "d".repeat(65);
        let cn = |value| vec![(DnType::CommonName, value)];
        let cases: Vec<Case<'_>> = vec![
            case("good_single_cn", "default", cn("device-1"), vec![]),
            case(
                "good_scepclient_subject",
                "default",
                vec![
                    (DnType::CommonName, "device-1"),
                    (DnType::OrganizationName, "certgate-tests"),
                    (DnType::OrganizationalUnitName, "MDM"),
                    (DnType::CountryName, "US"),
                ],
                vec![],
            ),
            refused(
                case(
                    "bad_two_cns",
                    "default",
                    vec![(DnType::CommonName, "device-1"), (second_cn.clone(), "device-2")],
                    vec![],
                ),
                subject_refused,
            ),
            refused(
                case("bad_cn_too_long", "default", cn(&long_cn), vec![]),
                subject_refused,
            ),
            refused(
                case(
                    "bad_o_when_not_allowed",
                    "cn-only",
                    vec![(DnType::CommonName, "device-1"), (DnType::OrganizationName, "Acme")],
                    vec![],
                ),
                subject_refused,
            ),
            case("good_cn_only_when_only_cn_allowed", "cn-only", cn("device-1"), vec![]),
            refused(
                case(
                    "bad_email_san_by_default",
                    "default",
                    cn("d"),
                    vec![email("jane@example.com")],
                ),
                name_refused,
            ),
            case(
                "good_email_san_when_allowed_and_in_domain",
                "mail",
                cn("Jane"),
                vec![email("jane@example.com")],
            ),
            refused(
                case(
                    "bad_email_san_outside_domain",
                    "mail",
                    cn("Jane"),
                    vec![email("jane@example.net")],
                ),
                name_refused,
            ),
            refused(
                case("bad_email_cn_by_default", "default", cn("jane@example.com"), vec![]),
                name_refused,
            ),
            refused(
                case(
                    "bad_uri_san_by_default",
                    "default",
                    cn("d"),
                    vec![uri("spiffe://example.org/ns/a")],
                ),
                name_refused,
            ),
            case(
                "good_uri_san_when_allowed_and_under_suffix",
                "spiffe",
                vec![],
                vec![uri("spiffe://example.org/ns/web")],
            ),
            refused(
                case(
                    "bad_uri_san_host_outside_suffix",
                    "spiffe",
                    vec![],
                    vec![uri("spiffe://example.net/ns/web")],
                ),
                name_refused,
            ),
            refused(
                case(
                    "bad_ip_san_by_default_on_scep",
                    "default",
                    cn("d"),
                    vec![ip("10.1.2.3")],
                ),
                name_refused,
            ),
            case("good_ip_san_when_allowed", "lan", cn("d"), vec![ip("10.1.2.3")]),
            refused(
                case("bad_ip_san_outside_range", "lan", cn("d"), vec![ip("192.168.1.1")]),
                name_refused,
            ),
            refused(
                case("bad_ip_cn_by_default_on_scep", "default", cn("10.1.2.3"), vec![]),
                name_refused,
            ),
            Case {
                protocol: Protocol::Est,
                ..refused(
                    case("bad_cn_dns_name_outside_suffix", "corp", cn("bank.example.net"), vec![]),
                    name_refused,
                )
            },
            Case {
                protocol: Protocol::Est,
                ..case(
                    "good_cn_dns_name_under_suffix",
                    "corp",
                    cn("printer.corp.example"),
                    vec![],
                )
            },
            Case {
                protocol: Protocol::Est,
                profile: "tls-client",
                ..case("good_tls_client_cn_not_a_dns_name", "corp", cn("Jane Doe"), vec![])
            },
            Case {
                protocol: Protocol::Est,
                ..refused(
                    case(
                        "bad_dns_san_outside_suffix",
                        "corp",
                        cn("d"),
                        vec![dns("device.example.net")],
                    ),
                    name_refused,
                )
            },
            Case {
                protocol: Protocol::Acme,
                profile: "tls-server",
                ..case(
                    "good_acme_ip_identifier_by_default",
                    "default",
                    vec![],
                    vec![ip("192.0.2.10")],
                )
            },
        ];
        for c in cases {
            let before = t.store.journal_status().await.unwrap();
            let der = csr(&key, &c.subject, c.sans.clone());
            let mut request = IssueRequest::new(
                c.protocol,
                name(c.endpoint),
                ParsedCsr::from_der(&der).unwrap(),
                RequesterId::new("test:names-policy").unwrap(),
            );
            request.profile = Some(name(c.profile));
            let checked = t.authority.check(&request);
            let issued = t.authority.issue(request).await;
            let after = t.store.journal_status().await.unwrap();
            match (c.refused, issued) {
                (None, Ok(issued)) => {
                    assert!(checked.is_ok(), "case {}: check agrees", c.name);
                    assert_eq!(after.certificates, before.certificates + 1, "case {}", c.name);
                    let stored = t.store.certificate(&issued.record.serial).await.unwrap();
                    assert_eq!(stored.identifiers.len(), c.sans.len(), "case {}", c.name);
                }
                (Some(check), Err(e)) => {
                    assert!(check(&e), "case {}: unexpected error {e:?}", c.name);
                    assert_eq!(e.kind(), ErrorKind::RejectedIdentifier, "case {}", c.name);
                    let checked = checked.expect_err(c.name);
                    assert_eq!(checked.to_string(), e.to_string(), "case {}: check agrees", c.name);
                    assert_eq!(after, before, "case {}: nothing stored", c.name);
                }
                (want, got) => panic!("case {}: want refusal {}, got {got:?}", c.name, want.is_some()),
            }
        }
        // What the refusals say, for the protocols' problem documents.
        let der = csr(&key, &[(DnType::CommonName, "a"), (second_cn, "b")], vec![]);
        let mut request = IssueRequest::new(
            Protocol::Scep,
            name("default"),
            ParsedCsr::from_der(&der).unwrap(),
            RequesterId::new("test:names-policy").unwrap(),
        );
        request.profile = Some(name("device"));
        let e = t.authority.issue(request).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "subject attribute CN is not allowed: a subject may hold only one common name"
        );
    }
}
