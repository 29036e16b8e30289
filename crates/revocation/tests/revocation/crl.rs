//! CRLs: served by `RevocationServer::handle`, parsed and verified by openssl, regenerated
//! on revocation and on schedule with a growing cRLNumber, across restarts too.

use time::Duration;

use super::*;

fn crl_text(der: &[u8], file: &Path) -> String {
    std::fs::write(file, der).unwrap();
    let (ok, text) = openssl(&["crl", "-inform", "DER", "-in", s(file), "-text", "-noout"]);
    assert!(ok, "openssl crl: {text}");
    text
}

fn crl_number(text: &str) -> u128 {
    let mut lines = text.lines();
    lines.find(|l| l.contains("X509v3 CRL Number"));
    let value = lines.next().expect("a CRL number").trim();
    match value.strip_prefix("0x") {
        Some(hex) => u128::from_str_radix(hex, 16).unwrap(),
        None => value.parse().unwrap(),
    }
}

/// `openssl verify -crl_check` of `leaf` with the CRL (PEM) and the chain.
fn verify_leaf(f: &Fixture, crl_der: &[u8], leaf: &str) -> (bool, String) {
    let crl_pem = f.path("crl.pem");
    std::fs::write(
        &crl_pem,
        der::pem::encode_string("X509 CRL", der::pem::LineEnding::LF, crl_der).unwrap(),
    )
    .unwrap();
    openssl(&[
        "verify",
        "-crl_check",
        "-CAfile",
        s(f.root_pem()),
        "-untrusted",
        s(&f.path("issuer.pem")),
        "-CRLfile",
        s(&crl_pem),
        s(&f.path(&format!("{leaf}.pem"))),
    ])
}

async fn fetch_crl(f: &Fixture) -> StatusResponse {
    let response = f.get("/crl/default.crl").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header_value("content-type"), Some("application/pkix-crl"));
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crl_lists_revocations_and_verifies_with_openssl() {
    // (case, CA key, IDP base URL, whether a relying party accepts the CRL for our leaves)
    for (case, key_type, idp, usable) in [
        ("p256_without_idp", KeyType::P256, None, true),
        (
            "rsa2048_with_the_certificates_idp",
            KeyType::Rsa2048,
            Some("http://127.0.0.1:8080"),
            true,
        ),
        (
            "p256_with_another_idp",
            KeyType::P256,
            Some("http://elsewhere.example"),
            false,
        ),
    ] {
        let settings = RevocationSettings {
            crl_idp_base_url: idp.map(str::to_owned),
            ..RevocationSettings::default()
        };
        let f = Fixture::new(key_type, settings);
        let compromised = f.issue("compromised").await;
        let unspecified = f.issue("unspecified").await;
        f.issue("good").await;

        let empty = fetch_crl(&f).await;
        let text = crl_text(&empty.body, &f.path("empty.der"));
        assert!(text.contains("No Revoked Certificates"), "case {case}: {text}");
        let cache_control = empty.header_value("cache-control").unwrap();
        assert!(
            cache_control.starts_with("public, max-age=8639"),
            "case {case}: {cache_control}"
        );
        let first_number = crl_number(&text);

        f.revoke(&compromised, RevocationReason::KeyCompromise).await;
        f.revoke(&unspecified, RevocationReason::Unspecified).await;
        let crl = fetch_crl(&f).await;
        let text = crl_text(&crl.body, &f.path("crl.der"));
        assert!(crl_number(&text) > first_number, "case {case}: cRLNumber grows");
        assert!(
            text.contains(&format!("Serial Number: {compromised}")),
            "case {case}: {text}"
        );
        assert!(
            text.contains(&format!("Serial Number: {unspecified}")),
            "case {case}: {text}"
        );
        assert!(text.contains("Key Compromise"), "case {case}");
        assert_eq!(
            text.matches("CRL Reason Code").count(),
            1,
            "case {case}: unspecified has no reason code"
        );
        assert_eq!(
            text.contains("Issuing Distribution Point"),
            idp.is_some(),
            "case {case}"
        );
        assert!(text.contains("Authority Key Identifier"), "case {case}");

        // The signature, against the issuer (with the root to chain it).
        let chain = f.path("chain.pem");
        write_pem(&chain, &[f.t.ca.issuer.certificate_der(), f.t.ca.issuer.root_der()]);
        let (ok, out) = openssl(&[
            "crl",
            "-inform",
            "DER",
            "-in",
            s(&f.path("crl.der")),
            "-CAfile",
            s(&chain),
            "-noout",
            "-verify",
        ]);
        assert!(ok && out.contains("verify OK"), "case {case}: {out}");

        // A relying party with -crl_check: the good leaf verifies, the revoked one does not.
        let (good_ok, good_out) = verify_leaf(&f, &crl.body, "good");
        let (revoked_ok, revoked_out) = verify_leaf(&f, &crl.body, "compromised");
        assert_eq!(good_ok, usable, "case {case}: {good_out}");
        assert!(!revoked_ok, "case {case}: {revoked_out}");
        if usable {
            assert!(
                revoked_out.contains("certificate revoked"),
                "case {case}: {revoked_out}"
            );
        }
    }
}

#[tokio::test]
async fn crl_regenerates_on_schedule_and_revocation_with_a_growing_number() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let issuer = name("default");
    let generations = || f.service.stats().crl_generations;
    let number = |der: &[u8], file: &str| crl_number(&crl_text(der, &f.path(file)));

    assert!(f.service.refresh_due(f.clock.now()), "no CRL yet");
    let first = f.service.crl_der(&issuer).await.unwrap().unwrap();
    assert_eq!(f.service.crl_der(&issuer).await.unwrap().unwrap(), first, "cached");
    assert_eq!(generations(), 1);
    let n1 = number(&first, "1.der");

    // Fresh until half of the 24 hours has passed.
    f.clock.advance(Duration::hours(11));
    assert!(!f.service.refresh_due(f.clock.now()));
    f.clock.advance(Duration::hours(1) + Duration::seconds(1));
    assert!(f.service.refresh_due(f.clock.now()));
    f.service.refresh(f.clock.now()).await.unwrap();
    assert_eq!(generations(), 2);
    let second = f.service.crl_der(&issuer).await.unwrap().unwrap();
    let n2 = number(&second, "2.der");
    assert!(n2 > n1);

    // A revocation signal makes it stale at once.
    f.revocations.send_modify(|g| *g += 1);
    assert!(f.service.refresh_due(f.clock.now()));
    let third = f.service.crl_der(&issuer).await.unwrap().unwrap();
    assert_eq!(generations(), 3);
    let n3 = number(&third, "3.der");
    assert!(n3 > n2);

    // The clock going back does not make the number go back.
    f.clock.advance(-Duration::hours(6));
    f.revocations.send_modify(|g| *g += 1);
    let fourth = f.service.crl_der(&issuer).await.unwrap().unwrap();
    assert_eq!(number(&fourth, "4.der"), n3 + 1);

    // Unknown issuers have no CRL.
    assert!(f.service.crl_der(&name("other")).await.unwrap().is_none());
}

#[tokio::test]
async fn expired_certificates_leave_the_crl_one_validity_after_expiry() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let key = generate_key(KeyType::P256).unwrap();
    let mut request = IssueRequest::new(
        Protocol::Acme,
        name("default"),
        ParsedCsr::from_der(&csr(&key, None, &["short.example.com"])).unwrap(),
        RequesterId::new("acme-account:test").unwrap(),
    );
    request.not_after = Some(OffsetDateTime::now_utc() + Duration::hours(1));
    let short = f.t.authority.issue(request).await.unwrap().record.serial;
    f.revoke(&short, RevocationReason::CessationOfOperation).await;
    let listed = |der: &[u8], file: &str| crl_text(der, &f.path(file)).contains(&format!("Serial Number: {short}"));
    let issuer = name("default");

    for (case, advance, want) in [
        ("before_expiry", Duration::ZERO, true),
        ("expired_13h_ago", Duration::hours(14), true),
        ("expired_25h_ago", Duration::hours(12), false),
    ] {
        f.clock.advance(advance);
        f.service.refresh(f.clock.now()).await.unwrap();
        let crl = f.service.crl_der(&issuer).await.unwrap().unwrap();
        assert_eq!(listed(&crl, &format!("{case}.der")), want, "case {case}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_regeneration_at_a_time_readers_get_the_last_crl() {
    let f = Fixture::new(KeyType::Rsa2048, RevocationSettings::default());
    let issuer = name("default");
    let old = f.service.crl_der(&issuer).await.unwrap().unwrap();
    f.revocations.send_modify(|g| *g += 1);
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let service = Arc::clone(&f.service);
            let issuer = issuer.clone();
            tokio::spawn(async move { service.crl_der(&issuer).await.unwrap().unwrap() })
        })
        .collect();
    let mut seen = Vec::new();
    for reader in readers {
        seen.push(reader.await.unwrap());
    }
    assert_eq!(
        f.service.stats().crl_generations,
        2,
        "one regeneration for eight readers"
    );
    let new = f.service.crl_der(&issuer).await.unwrap().unwrap();
    assert_ne!(new, old);
    assert!(seen.iter().all(|crl| *crl == old || *crl == new));
}

#[tokio::test]
async fn restart_keeps_the_signer_and_the_number_grows() {
    let f = Fixture::new(KeyType::P256, RevocationSettings::default());
    let issuer = name("default");
    let before = f.service.crl_der(&issuer).await.unwrap().unwrap();
    let signer = f.service.ocsp_signer_certificate(&issuer).unwrap();

    f.clock.advance(Duration::seconds(1));
    let (_sender, receiver) = watch::channel(0u64);
    let restarted = RevocationService::new(
        RevocationDeps {
            issuers: vec![Arc::clone(&f.t.ca.issuer)],
            store: Arc::new(f.t.store.clone()),
            clock: Arc::clone(&f.clock) as Arc<dyn Clock>,
            ocsp_signer_dir: f.signer_dir.clone(),
            revocations: receiver,
        },
        RevocationSettings::default(),
    )
    .unwrap();
    assert_eq!(
        restarted.ocsp_signer_certificate(&issuer).unwrap(),
        signer,
        "loaded, not recreated"
    );
    let after = restarted.crl_der(&issuer).await.unwrap().unwrap();
    assert!(
        crl_number(&crl_text(&after, &f.path("after.der"))) > crl_number(&crl_text(&before, &f.path("before.der")))
    );
}
