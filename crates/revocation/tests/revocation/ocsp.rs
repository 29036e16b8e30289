//! OCSP: requests made by `openssl ocsp`, answered through `RevocationServer::handle` (POST and
//! GET), responses verified by `openssl ocsp` against the root: statuses, reasons, nonces,
//! the delegated signer's chain, caching and signer rotation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use time::Duration;

use super::*;

/// One OCSP request made by openssl and what the verified response must say.
struct Case<'a> {
    name: &'a str,
    /// openssl ocsp options before the serials.
    options: Vec<&'a str>,
    serials: Vec<&'a Serial>,
    /// GET (URL-encoded or raw base64) or, if none, POST.
    get: Option<bool>,
    statuses: Vec<&'a str>,
    /// The printed revocation reasons, in order.
    reasons: Vec<&'a str>,
}

/// `openssl ocsp -issuer issuer.pem {options} -serial 0x.. ... -reqout {file}`; returns the
/// request file and its DER. Options come first: `-sha256` applies to the serials after it.
fn make_request(f: &Fixture, file: &str, options: &[&str], serials: &[&Serial]) -> (PathBuf, Vec<u8>) {
    let issuer = f.path("issuer.pem");
    let out = f.path(file);
    let serial_args: Vec<String> = serials.iter().map(|s| format!("0x{s}")).collect();
    let mut args = vec!["ocsp", "-issuer", s(&issuer)];
    args.extend_from_slice(options);
    for serial in &serial_args {
        args.extend(["-serial", serial.as_str()]);
    }
    args.extend(["-reqout", s(&out)]);
    let (ok, text) = openssl(&args);
    assert!(ok, "openssl ocsp request: {text}");
    let der = std::fs::read(&out).unwrap();
    (out, der)
}

/// Verifies a response with `openssl ocsp -respin -reqin -CAfile root -verify_other issuer`
/// (signature, delegated signer chain and authorisation, nonce) and returns its text.
fn verify(f: &Fixture, request: &Path, response: &[u8], extra: &[&str]) -> String {
    let resp = request.with_extension("resp.der");
    std::fs::write(&resp, response).unwrap();
    let issuer = f.path("issuer.pem");
    let mut args = vec![
        "ocsp",
        "-respin",
        s(&resp),
        "-reqin",
        s(request),
        "-CAfile",
        s(f.root_pem()),
        "-verify_other",
        s(&issuer),
        "-resp_text",
    ];
    args.extend_from_slice(extra);
    let (ok, text) = openssl(&args);
    assert!(ok && text.contains("Response verify OK"), "openssl ocsp verify: {text}");
    assert!(!text.contains("Nonce Verify error"), "{text}");
    assert!(!text.contains("WARNING"), "{text}");
    text
}

/// The `Cert Status:` values of a `-resp_text` print, in order.
fn statuses(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Cert Status: "))
        .map(str::to_owned)
        .collect()
}

/// Prints an unverified response (for error statuses).
fn response_text(f: &Fixture, response: &[u8]) -> String {
    let resp = f.path("unverified.der");
    std::fs::write(&resp, response).unwrap();
    openssl(&["ocsp", "-respin", s(&resp), "-resp_text", "-noverify"]).1
}

fn get_path(der: &[u8], url_encoded: bool) -> String {
    let b64 = STANDARD.encode(der);
    let b64 = if url_encoded {
        b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
    } else {
        b64
    };
    format!("/ocsp/default/{b64}")
}

async fn answer(f: &Fixture, der: &[u8], get: Option<bool>) -> StatusResponse {
    let response = match get {
        Some(url_encoded) => f.get(&get_path(der, url_encoded)).await,
        None => f.post("/ocsp/default", der).await,
    };
    assert_eq!(response.status, 200);
    assert_eq!(response.header_value("content-type"), Some("application/ocsp-response"));
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_statuses_verify_with_openssl() {
    for key_type in [KeyType::P256, KeyType::Rsa2048, KeyType::Ed25519] {
        let f = Fixture::new(key_type, RevocationSettings::default());
        let good = f.issue("good").await;
        let compromised = f.issue("compromised").await;
        let unspecified = f.issue("unspecified").await;
        let never_issued = Serial::parse_hex("7E57000000000000000000000000AB").unwrap();
        f.revoke(&compromised, RevocationReason::KeyCompromise).await;
        f.revoke(&unspecified, RevocationReason::Unspecified).await;
        let good_pem = f.path("good.pem");

        let cases = [
            Case {
                name: "sha1_nonce_post_good",
                options: vec![],
                serials: vec![&good],
                get: None,
                statuses: vec!["good"],
                reasons: vec![],
            },
            Case {
                name: "sha256_get_revoked_with_reason",
                options: vec!["-sha256", "-no_nonce"],
                serials: vec![&compromised],
                get: Some(true),
                statuses: vec!["revoked"],
                reasons: vec!["keyCompromise (0x1)"],
            },
            Case {
                name: "sha1_post_revoked_unspecified_has_no_reason",
                options: vec!["-no_nonce"],
                serials: vec![&unspecified],
                get: None,
                statuses: vec!["revoked"],
                reasons: vec![],
            },
            Case {
                name: "never_issued_is_unknown",
                options: vec!["-no_nonce"],
                serials: vec![&never_issued],
                get: Some(false),
                statuses: vec!["unknown"],
                reasons: vec![],
            },
            Case {
                name: "four_in_one_sha256_nonce_get",
                options: vec!["-sha256"],
                serials: vec![&good, &compromised, &unspecified, &never_issued],
                get: Some(false),
                statuses: vec!["good", "revoked", "revoked", "unknown"],
                reasons: vec!["keyCompromise (0x1)"],
            },
            Case {
                name: "by_certificate_file",
                options: vec!["-cert", s(&good_pem)],
                serials: vec![],
                get: None,
                statuses: vec!["good"],
                reasons: vec![],
            },
        ];
        for c in cases {
            let case = format!("{key_type} {}", c.name);
            let (request, der) = make_request(&f, &format!("{}.req.der", c.name), &c.options, &c.serials);
            let response = answer(&f, &der, c.get).await;
            let text = verify(&f, &request, &response.body, &[]);
            assert_eq!(statuses(&text), c.statuses, "case {case}: {text}");
            let got_reasons: Vec<&str> = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("Revocation Reason: "))
                .collect();
            assert_eq!(got_reasons, c.reasons, "case {case}");
            let nonce = !c.options.contains(&"-no_nonce");
            assert_eq!(text.contains("OCSP Nonce"), nonce, "case {case}: nonce echoed iff sent");
            assert!(
                text.contains("OCSP Responder"),
                "case {case}: delegated signer certificate included"
            );
            assert!(text.contains("Responder Id: "), "case {case}");
        }
    }
}

#[tokio::test]
async fn sixteen_requests_answered_seventeen_refused() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let good = f.issue("good").await;
    let sixteen: Vec<&Serial> = std::iter::repeat_n(&good, 16).collect();
    let (request, der) = make_request(&f, "sixteen.der", &[], &sixteen);
    let response = answer(&f, &der, None).await;
    let text = verify(&f, &request, &response.body, &[]);
    assert_eq!(statuses(&text), vec!["good"; 16]);

    let seventeen: Vec<&Serial> = std::iter::repeat_n(&good, 17).collect();
    let (_, der) = make_request(&f, "seventeen.der", &[], &seventeen);
    let response = answer(&f, &der, None).await;
    assert_eq!(response.body, [0x30, 0x03, 0x0a, 0x01, 0x01], "malformedRequest");
}

#[tokio::test]
async fn malformed_unauthorized_and_foreign_requests() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let good = f.issue("good").await;
    let other = certgate_test_support::TestCa::new(KeyType::P256);
    let other_issuer = f.path("other-issuer.pem");
    write_pem(&other_issuer, &[other.issuer.certificate_der()]);
    let foreign = Serial::parse_hex("01").unwrap();

    // Not DER, bad base64: malformedRequest, HTTP 200.
    for (case, response) in [
        ("garbage_post", f.post("/ocsp/default", b"hello").await),
        ("empty_post", f.post("/ocsp/default", b"").await),
        ("bad_base64_get", f.get("/ocsp/default/M!!!").await),
    ] {
        assert_eq!(response.status, 200, "case {case}");
        let text = response_text(&f, &response.body);
        assert!(text.contains("malformedrequest (1)"), "case {case}: {text}");
    }
    assert_eq!(
        f.get("/ocsp/default/M!!!").await.header_value("cache-control"),
        Some("no-store")
    );

    // Only another CA's CertIDs: unauthorized. An unsupported hash is no match either.
    let mut args = vec!["ocsp", "-issuer", s(&other_issuer), "-serial", "0x01"];
    let foreign_req = f.path("foreign.der");
    args.extend(["-reqout", s(&foreign_req)]);
    assert!(openssl(&args).0);
    let (_, sha384) = make_request(&f, "sha384.der", &["-sha384"], &[&good]);
    for (case, der) in [("other_ca", std::fs::read(&foreign_req).unwrap()), ("sha384", sha384)] {
        let response = answer(&f, &der, None).await;
        let text = response_text(&f, &response.body);
        assert!(text.contains("unauthorized (6)"), "case {case}: {text}");
    }

    // Ours and another CA's in one request: ours answered, the other one unknown.
    let mixed_req = f.path("mixed.der");
    let good_serial = format!("0x{good}");
    let foreign_serial = format!("0x{foreign}");
    let issuer = f.path("issuer.pem");
    let (ok, text) = openssl(&[
        "ocsp",
        "-issuer",
        s(&other_issuer),
        "-serial",
        &foreign_serial,
        "-issuer",
        s(&issuer),
        "-serial",
        &good_serial,
        "-reqout",
        s(&mixed_req),
    ]);
    assert!(ok, "{text}");
    let response = answer(&f, &std::fs::read(&mixed_req).unwrap(), None).await;
    let text = response_text(&f, &response.body);
    assert_eq!(statuses(&text), vec!["unknown", "good"], "{text}");
}

#[tokio::test]
async fn cached_response_is_reused_until_a_revocation_or_its_expiry() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let serial = f.issue("leaf").await;
    let (plain_req, plain) = make_request(&f, "plain.der", &["-no_nonce"], &[&serial]);
    let (_, with_nonce) = make_request(&f, "nonce.der", &[], &[&serial]);
    let signatures = || f.service.stats().ocsp_signatures;

    let first = answer(&f, &plain, None).await;
    let second = answer(&f, &plain, None).await;
    let by_get = answer(&f, &plain, Some(true)).await;
    assert_eq!(first.body, second.body, "served from the cache");
    assert_eq!(first.body, by_get.body, "GET and POST share the cache");
    assert_eq!(signatures(), 1);
    assert_eq!(f.service.stats().ocsp_cache_hits, 2);
    // Cached until a tenth of the hour remains: 54 minutes, the clock standing still.
    assert_eq!(
        by_get.header_value("cache-control"),
        Some("public, max-age=3240, no-transform")
    );
    assert_eq!(
        first.header_value("cache-control"),
        None,
        "POST answers carry no caching headers"
    );
    assert_eq!(statuses(&verify(&f, &plain_req, &first.body, &[])), vec!["good"]);

    let nonce_get = answer(&f, &with_nonce, Some(false)).await;
    let nonce_post = answer(&f, &with_nonce, None).await;
    assert_ne!(nonce_get.body, nonce_post.body, "nonce requests are signed each time");
    assert_eq!(nonce_get.header_value("cache-control"), Some("no-store"));
    assert_eq!(signatures(), 3);

    // A revocation empties the cache.
    f.revoke(&serial, RevocationReason::Superseded).await;
    let after = answer(&f, &plain, None).await;
    assert_ne!(after.body, first.body);
    let text = verify(&f, &plain_req, &after.body, &[]);
    assert_eq!(statuses(&text), vec!["revoked"]);
    assert!(text.contains("Revocation Reason: superseded (0x4)"), "{text}");
    assert_eq!(signatures(), 4);

    // Expiry: re-signed once only a tenth of the validity is left.
    f.clock.advance(Duration::minutes(53));
    assert_eq!(answer(&f, &plain, None).await.body, after.body, "still cached");
    f.clock.advance(Duration::minutes(2));
    assert_ne!(answer(&f, &plain, None).await.body, after.body, "re-signed");
    assert_eq!(signatures(), 5);
}

#[tokio::test]
async fn signer_rotates_past_two_thirds_of_its_lifetime() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let serial = f.issue("leaf").await;
    let issuer = name("default");
    let initial = f.service.ocsp_signer_certificate(&issuer).unwrap();
    f.service.refresh(f.clock.now()).await.unwrap();
    assert!(!f.service.refresh_due(f.clock.now()));

    f.clock.advance(Duration::days(19));
    let (request, der) = make_request(&f, "req.der", &["-no_nonce"], &[&serial]);
    let response = answer(&f, &der, None).await;
    assert_eq!(
        f.service.ocsp_signer_certificate(&issuer).unwrap(),
        initial,
        "19 of 30 days: kept"
    );

    f.clock.advance(Duration::days(2));
    let response_after = answer(&f, &der, None).await;
    let rotated = f.service.ocsp_signer_certificate(&issuer).unwrap();
    assert_ne!(rotated, initial, "21 of 30 days: rotated on use");
    assert_eq!(f.service.stats().signer_rotations, 1);
    assert!(
        contains(&response_after.body, &rotated),
        "the response carries the new signer"
    );
    assert!(contains(&response.body, &initial));
    let on_disk = std::fs::read(f.signer_dir.join("default/ocsp-signer.crt")).unwrap();
    assert_eq!(
        certgate_signer::certificates_from_pem(&on_disk).unwrap(),
        vec![rotated.clone()]
    );
    // Verified at the clock's time, which is three weeks ahead of the real one.
    let at = f.clock.now().unix_timestamp().to_string();
    let text = verify(
        &f,
        &request,
        &response_after.body,
        &["-attime", &at, "-validity_period", "4000000"],
    );
    assert_eq!(statuses(&text), vec!["good"]);

    // The timer rotates too, without a request.
    f.clock.advance(Duration::days(21));
    assert!(f.service.refresh_due(f.clock.now()));
    f.service.refresh(f.clock.now()).await.unwrap();
    assert_eq!(f.service.stats().signer_rotations, 2);
    assert_ne!(f.service.ocsp_signer_certificate(&issuer).unwrap(), rotated);
    assert!(!f.service.refresh_due(f.clock.now()));
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
