//! SCEP (RFC 8894) against the built daemon over real HTTP: micromdm's scepclient (Debian
//! package `scep`) for enrollment with a static and a one-time challenge and for renewal, and
//! the crate's Rust client (cms) for the cipher, digest and message matrix. Every issued
//! certificate is checked with `openssl verify` and pkilint. Challenge webhooks over https
//! (a throwaway CA in `webhook_ca_file`) and http, with signature checks at the receiver.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use certgate_scep::crypto::{ContentCipher, DigestAlg};
use certgate_scep::testclient::{self, RequestOptions, ScepClient};
use certgate_scep::{FailInfo, MessageType, PkiStatus};
use certgate_test_support::{openssl_verify, pkilint, unwaived};
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::Daemon;

const STATIC_CHALLENGE: &str = "static-secret-3f9a";

/// SCEP endpoints: `default` (static and one-time challenges; SHA-1 request signatures
/// accepted, as by default: micromdm's scepclient 2.1 signs with SHA-1) and `approve` (manual
/// approval).
fn scep_config(challenge_file: &Path) -> String {
    format!(
        "[[issuers]]\nname = \"default\"\ncreate_if_missing = true\n\
         [[endpoints]]\nprotocol = \"scep\"\nname = \"default\"\nprofiles = [\"device\"]\n\
         [endpoints.scep]\nchallenge_file = \"{file}\"\none_time_challenges = true\n\
         [[endpoints]]\nprotocol = \"scep\"\nname = \"approve\"\nprofiles = [\"device\"]\n\
         [endpoints.scep]\nchallenge_file = \"{file}\"\nrequire_approval = true\n",
        file = challenge_file.display()
    )
}

struct Scep {
    daemon: Daemon,
    work: tempfile::TempDir,
}

impl Scep {
    fn start() -> Self {
        let work = tempfile::tempdir().unwrap();
        let file = work.path().join("challenge.txt");
        std::fs::write(&file, format!("{STATIC_CHALLENGE}\n")).unwrap();
        let daemon = Daemon::start(&scep_config(&file));
        Self { daemon, work }
    }

    fn url(&self, endpoint: &str) -> String {
        format!("{}/scep/{endpoint}", self.daemon.http)
    }

    fn ra_pem(&self, endpoint: &str) -> PathBuf {
        self.daemon.dir.path().join(format!("data/scep/{endpoint}/ra/ra.pem"))
    }

    fn ra_der(&self, endpoint: &str) -> Vec<u8> {
        openssl(&[
            "x509",
            "-in",
            self.ra_pem(endpoint).to_str().unwrap(),
            "-outform",
            "DER",
        ])
    }

    /// The RA certificate's SHA-256 fingerprint, lower-case hex: what scepclient's
    /// `-ca-fingerprint` selects the recipient by (it otherwise encrypts to every certificate
    /// GetCACert returns, and fails on the EC issuing CA).
    fn ra_fingerprint(&self, endpoint: &str) -> String {
        let out = String::from_utf8(openssl(&[
            "x509",
            "-in",
            self.ra_pem(endpoint).to_str().unwrap(),
            "-noout",
            "-fingerprint",
            "-sha256",
        ]))
        .unwrap();
        out.trim().split('=').nth(1).unwrap().replace(':', "").to_lowercase()
    }

    /// Runs scepclient in `dir` (a fresh one per enrollment: it reuses a csr.pem it finds).
    fn scepclient(&self, dir: &Path, challenge: Option<&str>, cn: &str) -> (bool, String) {
        std::fs::create_dir_all(dir).unwrap();
        let mut command = Command::new("scepclient");
        command
            .current_dir(dir)
            .args(["-server-url", &self.url("default")])
            .args(["-ca-fingerprint", &self.ra_fingerprint("default")])
            .args(["-private-key", "key.pem", "-certificate", "cert.pem"])
            .args(["-cn", cn, "-organization", "certgate-tests", "-keySize", "2048"]);
        if let Some(challenge) = challenge {
            command.args(["-challenge", challenge]);
        }
        let output = command.output().expect("scepclient is installed (Debian package scep)");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success() && text.contains("pkiStatus=SUCCESS"), text)
    }

    /// openssl verify (client purpose) and pkilint on an issued certificate (PEM file).
    fn check_issued(&self, pem: &Path) {
        let issuing = self.daemon.root.with_file_name("issuer.pem");
        openssl_verify(&self.daemon.root, &issuing, pem, Some("sslclient"))
            .unwrap_or_else(|e| panic!("openssl verify {}: {e}", pem.display()));
        let der = openssl(&["x509", "-in", pem.to_str().unwrap(), "-outform", "DER"]);
        let findings = unwaived(pkilint(&der, false), false);
        assert!(findings.is_empty(), "pkilint {}: {findings:#?}", pem.display());
    }

    fn check_issued_der(&self, der: &[u8], name: &str) {
        let pem = self.work.path().join(format!("{name}.pem"));
        certgate_test_support::write_pem(&pem, &[der]);
        self.check_issued(&pem);
    }

    /// curl against the plain-HTTP listener: (status, content type, body).
    fn curl(&self, args: &[&str]) -> (u16, String, Vec<u8>) {
        let body = tempfile::NamedTempFile::new().unwrap();
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "20", "-o"])
            .arg(body.path())
            .args(["-w", "%{http_code} %{content_type}"])
            .args(args)
            .output()
            .expect("curl is installed");
        let meta = String::from_utf8_lossy(&output.stdout).into_owned();
        let (status, content_type) = meta.split_once(' ').unwrap_or((&meta, ""));
        (
            status.parse().unwrap_or(0),
            content_type.to_owned(),
            std::fs::read(body.path()).unwrap(),
        )
    }

    /// Sends a PKIMessage with POST or GET and opens the CertRep with the client's key.
    fn exchange(&self, endpoint: &str, client: &ScepClient, message: &[u8], via_get: bool) -> testclient::CertRepView {
        let (status, content_type, body) = if via_get {
            let url = format!(
                "{}?operation=PKIOperation&message={}",
                self.url(endpoint),
                testclient::get_message_param(message)
            );
            self.curl(&[&url])
        } else {
            let file = self.work.path().join("message.der");
            std::fs::write(&file, message).unwrap();
            let data = format!("@{}", file.display());
            let url = format!("{}?operation=PKIOperation", self.url(endpoint));
            self.curl(&[
                "-H",
                "Content-Type: application/x-pki-message",
                "--data-binary",
                &data,
                &url,
            ])
        };
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        assert_eq!(content_type, "application/x-pki-message");
        client.open_cert_rep(&body, &self.ra_der(endpoint)).unwrap()
    }
}

fn openssl(args: &[&str]) -> Vec<u8> {
    let output = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl is installed");
    assert!(
        output.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn serial_of(pem: &Path) -> String {
    let out = String::from_utf8(openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-serial"])).unwrap();
    out.trim().trim_start_matches("serial=").to_owned()
}

#[test]
fn scepclient_enrolls_with_the_static_challenge_and_renews_without_one() {
    let scep = Scep::start();
    let dir = scep.work.path().join("device-1");
    let (ok, out) = scep.scepclient(&dir, Some(STATIC_CHALLENGE), "device-1");
    assert!(ok, "scepclient enrollment: {out}");
    let first = dir.join("cert.pem");
    scep.check_issued(&first);
    let first_serial = serial_of(&first);
    let (ok, shown, err) = scep.daemon.cli(&["cert", "show", &first_serial]);
    assert!(ok && shown.contains("scep-device:default/static"), "{shown}{err}");

    // Same directory, no challenge: scepclient sends RenewalReq signed with the old
    // certificate, which authenticates it.
    let renewed_copy = dir.join("first.pem");
    std::fs::copy(&first, &renewed_copy).unwrap();
    let (ok, out) = scep.scepclient(&dir, None, "device-1");
    assert!(ok, "scepclient renewal: {out}");
    let second = dir.join("cert.pem");
    scep.check_issued(&second);
    let second_serial = serial_of(&second);
    assert_ne!(first_serial, second_serial, "a new certificate");
    let (ok, shown, err) = scep.daemon.cli(&["cert", "show", &second_serial]);
    assert!(ok, "{err}");
    assert!(
        shown.to_lowercase().contains(&first_serial.to_lowercase()),
        "the renewal records the certificate it replaces: {shown}"
    );

    // The renewal superseded the first certificate in the inventory; revoking the second
    // through the CLI puts it in the CRL that SCEP devices and relying parties fetch.
    let (ok, out, err) = scep
        .daemon
        .cli(&["cert", "list", "--protocol", "scep", "--status", "superseded"]);
    assert!(ok && out.contains(&first_serial), "{out}{err}");
    let (ok, out, err) = scep
        .daemon
        .cli(&["cert", "revoke", &second_serial, "--reason", "keyCompromise"]);
    assert!(ok, "{out}{err}");
    let crl = scep.work.path().join("default.crl");
    let (ok, out) = super::curl(&[
        "-o",
        crl.to_str().unwrap(),
        &format!("{}/crl/default.crl", scep.daemon.http),
    ]);
    assert!(ok, "{out}");
    let text = String::from_utf8(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-noout",
        "-text",
        "-in",
        crl.to_str().unwrap(),
    ]))
    .unwrap();
    let at = text
        .find(&format!("Serial Number: {second_serial}"))
        .unwrap_or_else(|| panic!("{second_serial} in the CRL: {text}"));
    assert!(
        text[at..].lines().take(5).any(|l| l.contains("Key Compromise")),
        "{text}"
    );

    // A wrong static challenge is refused (a FAILURE CertRep, which scepclient reports).
    let (ok, out) = scep.scepclient(&scep.work.path().join("intruder"), Some("guess"), "intruder");
    assert!(!ok && out.contains("badRequest"), "wrong challenge: {out}");
}

#[test]
fn scepclient_one_time_challenge_works_once() {
    let scep = Scep::start();
    let (ok, out, err) = scep.daemon.cli(&[
        "scep",
        "challenge",
        "create",
        "--endpoint",
        "default",
        "--ttl",
        "10m",
        "--json",
    ]);
    assert!(ok, "{out}{err}");
    let created: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let challenge = created["challenge"].as_str().unwrap().to_owned();
    let (ok, listed, _) = scep.daemon.cli(&["scep", "challenge", "list"]);
    assert!(ok && listed.contains(created["id"].as_str().unwrap()), "{listed}");
    assert!(!listed.contains(&challenge), "listings never show the challenge");

    let first_dir = scep.work.path().join("one-time-1");
    let (ok, out) = scep.scepclient(&first_dir, Some(&challenge), "one-time-1");
    assert!(ok, "first use: {out}");
    scep.check_issued(&first_dir.join("cert.pem"));
    let (ok, out) = scep.scepclient(&scep.work.path().join("one-time-2"), Some(&challenge), "one-time-2");
    assert!(!ok && out.contains("badRequest"), "second use is refused: {out}");
}

#[test]
fn rust_client_covers_ciphers_digests_get_post_and_discovery() {
    let scep = Scep::start();
    // GetCACaps: honest, LF-separated.
    let (status, content_type, caps) = scep.curl(&[&format!("{}?operation=GetCACaps", scep.url("default"))]);
    assert_eq!((status, content_type.as_str()), (200, "text/plain"));
    let caps = String::from_utf8(caps).unwrap();
    for want in [
        "POSTPKIOperation",
        "SHA-256",
        "SHA-512",
        "AES",
        "DES3",
        "Renewal",
        "SCEPStandard",
        "SHA-1",
    ] {
        assert!(caps.lines().any(|l| l == want), "caps have {want}: {caps}");
    }
    assert!(!caps.contains("GetNextCACert"), "no rollover CA configured: {caps}");
    // GetCACert: the RA and the CA chain as a degenerate PKCS#7, read by openssl.
    let (status, content_type, body) = scep.curl(&[&format!("{}?operation=GetCACert", scep.url("default"))]);
    assert_eq!((status, content_type.as_str()), (200, "application/x-x509-ca-ra-cert"));
    assert_eq!(
        testclient::ra_certificate(&content_type, &body).unwrap(),
        scep.ra_der("default")
    );
    let p7 = scep.work.path().join("getcacert.p7");
    std::fs::write(&p7, &body).unwrap();
    let printed = String::from_utf8(openssl(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        p7.to_str().unwrap(),
        "-print_certs",
        "-noout",
    ]))
    .unwrap();
    assert!(
        printed.contains("certgate SCEP RA default") && printed.contains("certgate Issuing CA"),
        "{printed}"
    );
    // Cisco's /cgi-bin path maps to the default endpoint.
    let (status, _, _) = scep.curl(&[&format!(
        "{}/cgi-bin/pkiclient.exe?operation=GetCACaps",
        scep.daemon.http
    )]);
    assert_eq!(status, 200);

    let cases: Vec<(&str, ContentCipher, DigestAlg, bool)> = vec![
        ("aes128_sha256_get", ContentCipher::Aes128, DigestAlg::Sha256, true),
        ("aes256_sha512_post", ContentCipher::Aes256, DigestAlg::Sha512, false),
        ("des3_sha1_post", ContentCipher::Des3, DigestAlg::Sha1, false),
        ("des3_sha256_get", ContentCipher::Des3, DigestAlg::Sha256, true),
    ];
    for (case, cipher, digest, via_get) in cases {
        let client = ScepClient::new(case).unwrap();
        let csr = testclient::csr(client.key(), case, &[], Some(STATIC_CHALLENGE)).unwrap();
        let mut options = RequestOptions::new(MessageType::PkcsReq);
        options.cipher = cipher;
        options.digest = digest;
        let message = client.pki_message(&scep.ra_der("default"), &csr, &options).unwrap();
        let view = scep.exchange("default", &client, &message, via_get);
        assert_eq!(view.status, PkiStatus::Success, "{case}: {:?}", view.fail_info_text);
        assert_eq!(view.transaction_id, options.transaction_id, "{case}");
        scep.check_issued_der(&view.certificates[0], case);
    }

    // A wrong challenge: a signed FAILURE with badRequest, never an HTTP error.
    let client = ScepClient::new("wrong-challenge").unwrap();
    let csr = testclient::csr(client.key(), "wrong-challenge", &[], Some("nope")).unwrap();
    let message = client
        .pki_message(
            &scep.ra_der("default"),
            &csr,
            &RequestOptions::new(MessageType::PkcsReq),
        )
        .unwrap();
    let view = scep.exchange("default", &client, &message, false);
    assert_eq!(
        (view.status, view.fail_info),
        (PkiStatus::Failure, Some(FailInfo::BadRequest))
    );

    // GetCRL answers with the issuer's current CRL (the one /crl/default.crl serves), which
    // openssl verifies against the issuer; an empty POST is a clear 400.
    let issuer_and_serial = testclient::issuer_and_serial(&view_certificate(&scep)).unwrap();
    let mut options = RequestOptions::new(MessageType::GetCrl);
    options.digest = DigestAlg::Sha256;
    let message = client
        .pki_message(&scep.ra_der("default"), &issuer_and_serial, &options)
        .unwrap();
    let crl = scep.exchange("default", &client, &message, false);
    assert_eq!(crl.status, PkiStatus::Success, "{:?}", crl.fail_info_text);
    assert_eq!(crl.crls.len(), 1, "one CRL in the certs-only reply");
    let crl_file = scep.work.path().join("getcrl.der");
    std::fs::write(&crl_file, &crl.crls[0]).unwrap();
    let issuer_pem = scep.work.path().join("getcrl-issuer.pem");
    std::fs::write(
        &issuer_pem,
        openssl(&[
            "x509",
            "-in",
            scep.daemon.root.with_file_name("issuer.pem").to_str().unwrap(),
        ]),
    )
    .unwrap();
    let output = Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-noout",
            "-in",
            crl_file.to_str().unwrap(),
            "-CAfile",
        ])
        .arg(&issuer_pem)
        .output()
        .unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stderr).contains("verify OK"),
        "{output:?}"
    );
    let (status, _, body) = scep.curl(&[
        "-X",
        "POST",
        "--data-binary",
        "",
        &format!("{}?operation=PKIOperation", scep.url("default")),
    ]);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&body));
    assert!(!body.is_empty(), "a reason");
}

/// A certificate the daemon issued (for GetCRL's IssuerAndSerialNumber).
fn view_certificate(scep: &Scep) -> Vec<u8> {
    let client = ScepClient::new("for-getcrl").unwrap();
    let csr = testclient::csr(client.key(), "for-getcrl", &[], Some(STATIC_CHALLENGE)).unwrap();
    let message = client
        .pki_message(
            &scep.ra_der("default"),
            &csr,
            &RequestOptions::new(MessageType::PkcsReq),
        )
        .unwrap();
    let view = scep.exchange("default", &client, &message, false);
    assert_eq!(view.status, PkiStatus::Success);
    view.certificates[0].clone()
}

#[test]
fn rust_client_pending_then_cert_poll_after_cli_approval() {
    let scep = Scep::start();
    let client = ScepClient::new("waiting-device").unwrap();
    let csr = testclient::csr(client.key(), "waiting-device", &[], Some(STATIC_CHALLENGE)).unwrap();
    let options = RequestOptions::new(MessageType::PkcsReq);
    let ra = scep.ra_der("approve");
    let message = client.pki_message(&ra, &csr, &options).unwrap();
    assert_eq!(
        scep.exchange("approve", &client, &message, false).status,
        PkiStatus::Pending
    );

    let issuer = openssl(&[
        "x509",
        "-in",
        scep.daemon.root.with_file_name("issuer.pem").to_str().unwrap(),
        "-outform",
        "DER",
    ]);
    let poll_content = testclient::issuer_and_subject(&issuer, &csr).unwrap();
    let mut poll_options = RequestOptions::new(MessageType::CertPoll);
    poll_options.transaction_id = options.transaction_id.clone();
    let poll = || client.pki_message(&ra, &poll_content, &poll_options).unwrap();
    assert_eq!(
        scep.exchange("approve", &client, &poll(), true).status,
        PkiStatus::Pending
    );

    let (ok, listed, err) = scep.daemon.cli(&["approvals", "list"]);
    assert!(ok, "{err}");
    let id = listed
        .lines()
        .find(|l| l.contains("waiting-device"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the SCEP request is in the shared queue: {listed}"))
        .to_owned();
    assert!(id.starts_with("scep:approve:"), "{id}");
    let (ok, out, err) = scep.daemon.cli(&["approvals", "approve", &id]);
    assert!(ok, "{out}{err}");

    let issued = scep.exchange("approve", &client, &poll(), false);
    assert_eq!(issued.status, PkiStatus::Success, "{:?}", issued.fail_info_text);
    scep.check_issued_der(&issued.certificates[0], "approved");

    // GetCert by issuer and serial returns it.
    let issuer_and_serial = testclient::issuer_and_serial(&issued.certificates[0]).unwrap();
    let get = client
        .pki_message(&ra, &issuer_and_serial, &RequestOptions::new(MessageType::GetCert))
        .unwrap();
    let fetched = scep.exchange("approve", &client, &get, false);
    assert_eq!(fetched.status, PkiStatus::Success, "{:?}", fetched.fail_info_text);
    assert!(fetched.certificates.contains(&issued.certificates[0]));
}

/// A daemon whose `default` SCEP endpoint announces a rollover CA (`next_ca_issuer`).
fn rollover_config(challenge_file: &Path) -> String {
    format!(
        "[[issuers]]\nname = \"default\"\ncreate_if_missing = true\n\
         [[issuers]]\nname = \"next\"\ncreate_if_missing = true\ncommon_name = \"certgate-next\"\n\
         [[endpoints]]\nprotocol = \"scep\"\nname = \"default\"\nprofiles = [\"device\"]\n\
         [endpoints.scep]\nchallenge_file = \"{}\"\nnext_ca_issuer = \"next\"\n",
        challenge_file.display()
    )
}

#[test]
fn rust_client_ec_csr_renewal_refusals_and_get_next_ca_cert() {
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("challenge.txt");
    std::fs::write(&file, format!("{STATIC_CHALLENGE}\n")).unwrap();
    let scep = Scep {
        daemon: Daemon::start(&rollover_config(&file)),
        work,
    };
    let ra = scep.ra_der("default");

    // GetNextCACert is advertised and answered only because a rollover CA is configured.
    let (_, _, caps) = scep.curl(&[&format!("{}?operation=GetCACaps", scep.url("default"))]);
    assert!(String::from_utf8_lossy(&caps).lines().any(|l| l == "GetNextCACert"));
    let (status, content_type, body) = scep.curl(&[&format!("{}?operation=GetNextCACert", scep.url("default"))]);
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-x509-next-ca-cert")
    );
    // A SignedData by the current RA whose content is a certs-only PKCS#7 of the next CA:
    // openssl checks the RA's signature, then reads the inner certificates.
    let p7 = scep.work.path().join("next.p7");
    std::fs::write(&p7, &body).unwrap();
    let inner = scep.work.path().join("next-inner.p7");
    openssl(&[
        "cms",
        "-verify",
        "-inform",
        "DER",
        "-in",
        p7.to_str().unwrap(),
        "-noverify",
        "-binary",
        "-certfile",
        scep.ra_pem("default").to_str().unwrap(),
        "-out",
        inner.to_str().unwrap(),
    ]);
    let printed = String::from_utf8(openssl(&[
        "pkcs7",
        "-inform",
        "DER",
        "-in",
        inner.to_str().unwrap(),
        "-print_certs",
        "-noout",
    ]))
    .unwrap();
    assert!(
        printed.contains("certgate-next Issuing CA"),
        "the next CA is announced: {printed}"
    );

    // An EC key in the CSR (the PKIMessage itself is signed with the client's RSA key).
    let client = ScepClient::new("ec-device").unwrap();
    let ec_key = rcgen::KeyPair::generate().unwrap();
    let csr = testclient::csr(&ec_key, "ec-device", &[], Some(STATIC_CHALLENGE)).unwrap();
    let message = client
        .pki_message(&ra, &csr, &RequestOptions::new(MessageType::PkcsReq))
        .unwrap();
    let view = scep.exchange("default", &client, &message, false);
    assert_eq!(view.status, PkiStatus::Success, "{:?}", view.fail_info_text);
    scep.check_issued_der(&view.certificates[0], "ec-device");
    let text = String::from_utf8(openssl(&[
        "x509",
        "-in",
        scep.work.path().join("ec-device.pem").to_str().unwrap(),
        "-noout",
        "-text",
    ]))
    .unwrap();
    assert!(text.contains("id-ecPublicKey"), "{text}");

    // Renewal signed by a foreign (self-signed) certificate: FAILURE, nothing issued.
    let foreign = ScepClient::new("renewing").unwrap();
    let csr = testclient::csr(foreign.key(), "renewing", &[], None).unwrap();
    let message = foreign
        .pki_message(&ra, &csr, &RequestOptions::new(MessageType::RenewalReq))
        .unwrap();
    let view = scep.exchange("default", &foreign, &message, false);
    assert_eq!(view.status, PkiStatus::Failure, "foreign signer");

    // Enroll, revoke through the CLI, then renew signed by the revoked certificate: FAILURE.
    let csr = testclient::csr(foreign.key(), "renewing", &[], Some(STATIC_CHALLENGE)).unwrap();
    let message = foreign
        .pki_message(&ra, &csr, &RequestOptions::new(MessageType::PkcsReq))
        .unwrap();
    let enrolled = scep.exchange("default", &foreign, &message, false);
    assert_eq!(enrolled.status, PkiStatus::Success, "{:?}", enrolled.fail_info_text);
    let issued = enrolled.certificates[0].clone();
    scep.check_issued_der(&issued, "renewing");
    let renewing = foreign.with_certificate(issued.clone()).unwrap();
    let serial = serial_of(&scep.work.path().join("renewing.pem"));
    let (ok, out, err) = scep
        .daemon
        .cli(&["cert", "revoke", &serial, "--reason", "keyCompromise"]);
    assert!(ok, "{out}{err}");
    let csr = testclient::csr(renewing.key(), "renewing", &[], None).unwrap();
    let message = renewing
        .pki_message(&ra, &csr, &RequestOptions::new(MessageType::RenewalReq))
        .unwrap();
    let view = scep.exchange("default", &renewing, &message, false);
    assert_eq!(
        view.status,
        PkiStatus::Failure,
        "revoked signer: {:?}",
        view.fail_info_text
    );
}

/// The challenge the webhook receivers allow.
const HOOK_OK: &str = "webhook-allows-this-9c1e";
/// The webhooks' signing secret (`webhook_secret_file`).
const HOOK_SECRET: &str = "scep-webhook-secret-0123456789abcdef";

/// One request a webhook receiver got.
#[derive(Debug, Clone)]
struct HookRequest {
    event: String,
    signature: String,
    signature_ok: bool,
    body: serde_json::Value,
}

type HookLog = Arc<Mutex<Vec<HookRequest>>>;

/// A SCEP challenge webhook receiver on 127.0.0.1, plain HTTP or TLS, in its own runtime. It
/// checks `X-Certgate-Signature` with its own HMAC code and allows exactly [`HOOK_OK`], and
/// only when the signature verifies.
struct HookReceiver {
    port: u16,
    log: HookLog,
    _runtime: tokio::runtime::Runtime,
}

impl HookReceiver {
    fn start(tls: Option<rustls::ServerConfig>) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let log = HookLog::default();
        let acceptor = tls.map(|config| tokio_rustls::TlsAcceptor::from(Arc::new(config)));
        let shared = Arc::clone(&log);
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (log, acceptor) = (Arc::clone(&shared), acceptor.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| judge(Arc::clone(&log), request));
                    let http = hyper::server::conn::http1::Builder::new();
                    match acceptor {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = http.serve_connection(TokioIo::new(stream), service).await;
                            }
                        }
                        None => {
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self {
            port,
            log,
            _runtime: runtime,
        }
    }

    fn requests(&self) -> Vec<HookRequest> {
        self.log.lock().unwrap().clone()
    }
}

async fn judge(log: HookLog, request: hyper::Request<Incoming>) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let (event, signature) = (header("x-certgate-event"), header("x-certgate-signature"));
    let body = request.into_body().collect().await.unwrap().to_bytes();
    let signature_ok = signature_verifies(&signature, &body);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let allow = signature_ok && body["challenge"] == HOOK_OK;
    log.lock().unwrap().push(HookRequest {
        event,
        signature,
        signature_ok,
        body,
    });
    Ok(hyper::Response::builder()
        .status(if allow { 200 } else { 403 })
        .body(Full::new(Bytes::new()))
        .unwrap())
}

/// `t=<unix>,v1=<hex>`: HMAC-SHA256 keyed with [`HOOK_SECRET`] over `<t>.<body>`, with `t`
/// within five minutes of now (as a receiver would check it).
fn signature_verifies(signature: &str, body: &[u8]) -> bool {
    let Some((t, v1)) = signature.strip_prefix("t=").and_then(|rest| rest.split_once(",v1=")) else {
        return false;
    };
    let Ok(timestamp) = t.parse::<i64>() else {
        return false;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, HOOK_SECRET.as_bytes());
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(body);
    let tag: String = aws_lc_rs::hmac::sign(&key, &message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (now - timestamp).abs() < 300 && tag == v1
}

/// A throwaway CA's certificate (DER) and a TLS server configuration whose certificate it
/// issued for `localhost` and 127.0.0.1.
fn hook_tls(ca_name: &str) -> (Vec<u8>, rustls::ServerConfig) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, ca_name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
    let ca_key = KeyPair::generate().unwrap();
    let ca = params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (ca.der().to_vec(), config)
}

/// Three SCEP endpoints asking webhooks only (no static or one-time challenge, no renewal):
/// `hook` over https to a receiver whose certificate chains to `webhook_ca_file`, `plainhook`
/// over http, and `untrusted` over https to a receiver whose certificate does not.
fn webhook_config(secret: &Path, ca: &Path, https_port: u16, http_port: u16, untrusted_port: u16) -> String {
    let endpoint = |name: &str, url: String| {
        format!(
            "[[endpoints]]\nprotocol = \"scep\"\nname = \"{name}\"\nprofiles = [\"device\"]\n\
             [endpoints.scep]\none_time_challenges = false\nrenewal = false\nwebhook_url = \"{url}\"\n\
             webhook_secret_file = \"{secret}\"\nwebhook_ca_file = \"{ca}\"\nwebhook_timeout_seconds = 5\n",
            secret = secret.display(),
            ca = ca.display()
        )
    };
    format!(
        "[[issuers]]\nname = \"default\"\ncreate_if_missing = true\n{}{}{}",
        endpoint("hook", format!("https://localhost:{https_port}/scep/check")),
        endpoint("plainhook", format!("http://127.0.0.1:{http_port}/scep/check")),
        endpoint("untrusted", format!("https://127.0.0.1:{untrusted_port}/scep/check")),
    )
}

#[test]
fn challenge_webhooks_over_https_and_http_are_signed_and_an_untrusted_receiver_refuses() {
    let work = tempfile::tempdir().unwrap();
    let (ca_der, trusted_tls) = hook_tls("webhook test CA");
    let (_, untrusted_tls) = hook_tls("some other CA");
    let ca_file = work.path().join("webhook-ca.pem");
    certgate_test_support::write_pem(&ca_file, &[&ca_der]);
    let secret_file = work.path().join("webhook-secret.txt");
    std::fs::write(&secret_file, format!("{HOOK_SECRET}\n")).unwrap();
    let https = HookReceiver::start(Some(trusted_tls));
    let http = HookReceiver::start(None);
    let untrusted = HookReceiver::start(Some(untrusted_tls));
    let scep = Scep {
        daemon: Daemon::start(&webhook_config(
            &secret_file,
            &ca_file,
            https.port,
            http.port,
            untrusted.port,
        )),
        work,
    };

    let enroll = |endpoint: &str, challenge: &str, cn: &str| {
        let client = ScepClient::new(cn).unwrap();
        let csr = testclient::csr(client.key(), cn, &[], Some(challenge)).unwrap();
        let options = RequestOptions::new(MessageType::PkcsReq);
        let message = client.pki_message(&scep.ra_der(endpoint), &csr, &options).unwrap();
        (
            scep.exchange(endpoint, &client, &message, false),
            options.transaction_id,
        )
    };
    for (endpoint, receiver) in [("hook", &https), ("plainhook", &http)] {
        // The receiver allows its challenge: issued, and the request it saw was signed.
        let (view, transaction_id) = enroll(endpoint, HOOK_OK, &format!("{endpoint}-good"));
        assert_eq!(view.status, PkiStatus::Success, "{endpoint}: {:?}", view.fail_info_text);
        scep.check_issued_der(&view.certificates[0], endpoint);
        let seen = receiver.requests();
        assert_eq!(seen.len(), 1, "{endpoint}: {seen:?}");
        let request = &seen[0];
        assert!(request.signature_ok, "{endpoint}: signature {:?}", request.signature);
        assert_eq!(request.event, "scep_challenge");
        assert_eq!(request.body["endpoint"], endpoint);
        assert_eq!(request.body["transaction_id"], transaction_id.as_str());
        assert_eq!(request.body["subject"], format!("CN={endpoint}-good"));
        // Any other challenge: refused (badRequest), nothing issued.
        let (view, _) = enroll(endpoint, "not-the-challenge", &format!("{endpoint}-bad"));
        assert_eq!(view.status, PkiStatus::Failure, "{endpoint}");
        assert_eq!(view.fail_info, Some(FailInfo::BadRequest), "{endpoint}");
        assert!(view.certificates.is_empty(), "{endpoint}");
        assert_eq!(receiver.requests().len(), 2, "{endpoint}");
    }

    // A receiver whose certificate does not chain to webhook_ca_file never sees the request
    // (the handshake fails), and the enrollment is refused even with the right challenge.
    let (view, _) = enroll("untrusted", HOOK_OK, "untrusted-good");
    assert_eq!(view.status, PkiStatus::Failure, "{:?}", view.fail_info_text);
    assert!(view.certificates.is_empty());
    assert!(untrusted.requests().is_empty(), "{:?}", untrusted.requests());
    // Only the two allowed enrollments were issued, each credited to the webhook.
    let (ok, listed, err) = scep
        .daemon
        .cli(&["cert", "list", "--format", "json", "--protocol", "scep"]);
    assert!(ok, "{listed}{err}");
    let items: Vec<serde_json::Value> = serde_json::from_str(&listed).unwrap();
    let mut issued: Vec<(String, String)> = items
        .iter()
        .map(|i| (i["endpoint"].to_string(), i["requester"].to_string()))
        .collect();
    issued.sort();
    assert_eq!(
        issued,
        [
            ("\"hook\"".to_owned(), "\"scep-device:hook/webhook\"".to_owned()),
            (
                "\"plainhook\"".to_owned(),
                "\"scep-device:plainhook/webhook\"".to_owned()
            ),
        ],
        "{listed}"
    );
}
