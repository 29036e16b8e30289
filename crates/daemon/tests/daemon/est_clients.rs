//! EST (RFC 7030) against the built daemon with real clients: curl and openssl for the
//! operations, a Rust rustls client for tls-exporter channel binding (curl cannot compute it).
//! Every issued certificate is checked with `openssl verify` and pkilint.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use certgate_test_support::{openssl_verify, pkilint, unwaived};

use super::Daemon;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The EST endpoints these tests use (one daemon each, all endpoints configured).
fn est_config(bootstrap_anchor: &Path) -> String {
    format!(
        "[[issuers]]\nname = \"default\"\ncreate_if_missing = true\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"default\"\nprofiles = [\"device\"]\n\
         owner_labels = {{ owner = \"iot\" }}\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"labs\"\nprofiles = [\"device\"]\n\
         [endpoints.est]\nserver_keygen = \"p256\"\nbase64 = \"wrap76\"\n\
         [endpoints.est.csr_attrs]\nkey = \"p256\"\nextensions = [\"2.5.29.17\"]\nenforce = true\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"approve\"\nprofiles = [\"device\"]\n\
         [endpoints.est]\nrequire_approval = true\napproval_retry_after_seconds = 1\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"factory\"\nprofiles = [\"device\"]\n\
         [endpoints.est]\nauth = \"certificate\"\ntrust_anchors = [\"{}\"]\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"bound\"\nprofiles = [\"device\"]\n\
         [endpoints.est]\nchannel_binding = true\n\
         [retention]\nsweep_interval_seconds = 1\naudit_entries_in_store = 3\n",
        bootstrap_anchor.display()
    )
}

/// A daemon with the EST endpoints above, a bootstrap (device maker's) CA in `factory`, and
/// user `alice` on every Basic endpoint.
struct Est {
    daemon: Daemon,
    work: tempfile::TempDir,
    /// The daemon's issuing CA certificate (PEM), for openssl verify.
    issuing: PathBuf,
}

impl Est {
    fn start() -> Self {
        let work = tempfile::tempdir().unwrap();
        make_bootstrap_ca(work.path());
        let daemon = Daemon::start(&est_config(&work.path().join("bootstrap-ca.pem")));
        let issuing = daemon.root.with_file_name("issuer.pem");
        let est = Self { daemon, work, issuing };
        for endpoint in ["default", "labs", "approve", "bound"] {
            let (ok, out, err) =
                est.cli_stdin(&["est", "user", "add", "--endpoint", endpoint, "alice"], "wonderland\n");
            assert!(ok, "est user add: {out}{err}");
        }
        est
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.path().join(name)
    }

    fn url(&self, label: Option<&str>, op: &str) -> String {
        match label {
            Some(label) => format!("{}/.well-known/est/{label}/{op}", self.daemon.https),
            None => format!("{}/.well-known/est/{op}", self.daemon.https),
        }
    }

    /// A CLI command with `input` on its standard input.
    fn cli_stdin(&self, args: &[&str], input: &str) -> (bool, String, String) {
        let mut child = Command::new(super::certgate())
            .args(args)
            .args(["--data-dir", "data"])
            .current_dir(self.daemon.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    /// curl with the daemon's root trusted; returns (HTTP status, headers, body).
    fn curl(&self, args: &[&str]) -> Response {
        let headers = tempfile::NamedTempFile::new().unwrap();
        let body = tempfile::NamedTempFile::new().unwrap();
        let output = Command::new("curl")
            .args(["-sS", "--max-time", "20", "--cacert"])
            .arg(&self.daemon.root)
            .arg("-D")
            .arg(headers.path())
            .arg("-o")
            .arg(body.path())
            .args(["-w", "%{http_code}"])
            .args(args)
            .output()
            .expect("curl is installed");
        let status = String::from_utf8_lossy(&output.stdout).trim().parse().unwrap_or(0);
        Response {
            status,
            headers: std::fs::read_to_string(headers.path()).unwrap_or_default(),
            body: std::fs::read(body.path()).unwrap_or_default(),
            curl_error: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    /// POSTs a CSR file (DER) base64-encoded, as EST clients send it.
    fn post_csr(&self, url: &str, csr_der: &Path, extra: &[&str]) -> Response {
        let body = self.path(&format!("{}.b64", csr_der.file_name().unwrap().to_str().unwrap()));
        std::fs::write(&body, wrap(&B64.encode(std::fs::read(csr_der).unwrap()), 64)).unwrap();
        let data = format!("@{}", body.display());
        let mut args = vec!["-H", "Content-Type: application/pkcs10", "--data-binary", &data];
        args.extend_from_slice(extra);
        args.push(url);
        self.curl(&args)
    }

    /// The certificates of a base64 certs-only body, through `openssl pkcs7 -print_certs`,
    /// written as PEM to `name`; returns the file.
    fn certs_of(&self, body: &[u8], name: &str) -> PathBuf {
        let der = self.path(&format!("{name}.p7"));
        std::fs::write(&der, B64.decode(strip_whitespace(body)).expect("base64 body")).unwrap();
        let pem = self.path(&format!("{name}.pem"));
        openssl(&[
            "pkcs7",
            "-inform",
            "DER",
            "-in",
            der.to_str().unwrap(),
            "-print_certs",
            "-out",
            pem.to_str().unwrap(),
        ]);
        pem
    }

    /// openssl verify (client purpose) and pkilint on an issued certificate.
    fn check_issued(&self, leaf_pem: &Path) {
        openssl_verify(&self.daemon.root, &self.issuing, leaf_pem, Some("sslclient"))
            .unwrap_or_else(|e| panic!("openssl verify {}: {e}", leaf_pem.display()));
        let der = openssl(&["x509", "-in", leaf_pem.to_str().unwrap(), "-outform", "DER"]);
        let findings = unwaived(pkilint(&der, false), false);
        assert!(findings.is_empty(), "pkilint {}: {findings:#?}", leaf_pem.display());
    }

    /// Enrolls `csr` at `label` as alice and returns the certificate's PEM file.
    fn enroll(&self, label: Option<&str>, csr: &Path, name: &str) -> PathBuf {
        let answer = self.post_csr(&self.url(label, "simpleenroll"), csr, &["-u", "alice:wonderland"]);
        assert_eq!(answer.status, 200, "simpleenroll: {answer:?}");
        let pem = self.certs_of(&answer.body, name);
        self.check_issued(&pem);
        pem
    }
}

#[derive(Debug)]
struct Response {
    status: u16,
    headers: String,
    body: Vec<u8>,
    curl_error: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<String> {
        self.headers.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
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

fn strip_whitespace(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect()
}

fn wrap(text: &str, width: usize) -> String {
    text.as_bytes()
        .chunks(width)
        .map(|c| format!("{}\n", String::from_utf8_lossy(c)))
        .collect()
}

/// Makes a key and a DER CSR with openssl: `key` is an `openssl req -newkey` spec
/// (`ec:<params>` or `rsa:2048`), `extra` more `req` arguments. Returns (key, csr).
fn openssl_csr(dir: &Path, name: &str, key: &str, subject: &str, extra: &[&str]) -> (PathBuf, PathBuf) {
    let key_path = dir.join(format!("{name}.key"));
    let csr_path = dir.join(format!("{name}.csr"));
    // openssl drops a config file's attributes when -subj is given: empty means "from -config".
    let mut args = vec!["req", "-new", "-nodes", "-outform", "DER"];
    if !subject.is_empty() {
        args.extend(["-subj", subject]);
    }
    let newkey;
    if key == "p256" {
        args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]);
    } else {
        newkey = key.to_owned();
        args.extend(["-newkey", &newkey]);
    }
    args.extend([
        "-keyout",
        key_path.to_str().unwrap(),
        "-out",
        csr_path.to_str().unwrap(),
    ]);
    args.extend_from_slice(extra);
    openssl(&args);
    (key_path, csr_path)
}

/// A device maker's CA and one factory device certificate it issued (clientAuth), in `dir`:
/// bootstrap-ca.pem, factory-device.pem/.key. Also a second, untrusted maker's device
/// certificate (rogue-device.pem/.key).
fn make_bootstrap_ca(dir: &Path) {
    let d = |f: &str| dir.join(f).to_str().unwrap().to_owned();
    for (ca, device) in [("bootstrap-ca", "factory-device"), ("rogue-ca", "rogue-device")] {
        openssl(&[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &d(&format!("{ca}.key")),
            "-out",
            &d(&format!("{ca}.pem")),
            "-days",
            "30",
            "-subj",
            &format!("/O=Acme Devices/CN={ca}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        openssl(&[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-keyout",
            &d(&format!("{device}.key")),
            "-out",
            &d(&format!("{device}.csr")),
            "-subj",
            &format!("/serialNumber=SN-{device}/CN={device}"),
        ]);
        std::fs::write(
            dir.join("device.ext"),
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            &d(&format!("{device}.csr")),
            "-CA",
            &d(&format!("{ca}.pem")),
            "-CAkey",
            &d(&format!("{ca}.key")),
            "-CAcreateserial",
            "-days",
            "30",
            "-extfile",
            &d("device.ext"),
            "-out",
            &d(&format!("{device}.pem")),
        ]);
    }
}

fn serial_of(pem: &Path) -> String {
    let out = String::from_utf8(openssl(&["x509", "-in", pem.to_str().unwrap(), "-noout", "-serial"])).unwrap();
    out.trim().trim_start_matches("serial=").to_owned()
}

#[test]
fn est_cacerts_is_read_by_openssl_pkcs7() {
    let est = Est::start();
    let answer = est.curl(&[&est.url(None, "cacerts")]);
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.header("content-type").as_deref(),
        Some("application/pkcs7-mime; smime-type=certs-only"),
        "byte-exact content type"
    );
    let text = answer.text();
    assert!(
        !text.contains(['\r', '\n']),
        "one line on the defaults (clients that cannot skip breaks): {text}"
    );
    let pem = est.certs_of(&answer.body, "cacerts");
    let printed = std::fs::read_to_string(&pem).unwrap();
    assert!(printed.contains("subject=CN = certgate Issuing CA"), "{printed}");
    assert!(printed.contains("certgate Root CA"), "{printed}");
    // The labelled endpoint answers too, with its configured 76-column layout.
    let labelled = est.curl(&[&est.url(Some("labs"), "cacerts")]);
    assert_eq!(labelled.status, 200);
    assert!(
        labelled.text().lines().any(|l| l.trim_end().len() > 64),
        "76-column lines"
    );
    // Unknown labels are 404 with a reason.
    let unknown = est.curl(&[&est.url(Some("nosuch"), "cacerts")]);
    assert_eq!(unknown.status, 404, "{unknown:?}");
    assert!(!unknown.body.is_empty());
}

#[test]
fn est_simpleenroll_with_basic_auth_for_ec_and_rsa() {
    let est = Est::start();
    let dir = est.work.path();
    let (_, ec_csr) = openssl_csr(dir, "ec-device", "p256", "/CN=ec-device", &[]);
    let (_, rsa_csr) = openssl_csr(dir, "rsa-device", "rsa:2048", "/CN=rsa-device", &[]);
    let ec = est.enroll(None, &ec_csr, "ec-device-cert");
    let rsa = est.enroll(None, &rsa_csr, "rsa-device-cert");
    let text = String::from_utf8(openssl(&["x509", "-in", rsa.to_str().unwrap(), "-noout", "-text"])).unwrap();
    assert!(
        text.contains("rsaEncryption") && (text.contains("CN=rsa-device") || text.contains("CN = rsa-device")),
        "{text}"
    );
    assert_ne!(serial_of(&ec), serial_of(&rsa));

    // The requester is recorded: the EST user.
    let (ok, out, err) = est.daemon.cli(&["cert", "show", &serial_of(&ec)]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("est-user:default/alice"), "requester recorded: {out}");

    // Wrong password and no credentials: 401 with a Basic challenge, nothing issued.
    let (_, csr) = openssl_csr(dir, "intruder", "p256", "/CN=intruder", &[]);
    for (case, extra) in [
        ("wrong_password", vec!["-u", "alice:guess"]),
        ("no_credentials", vec![]),
    ] {
        let answer = est.post_csr(&est.url(None, "simpleenroll"), &csr, &extra);
        assert_eq!(answer.status, 401, "{case}: {answer:?}");
        assert!(
            answer
                .header("www-authenticate")
                .is_some_and(|v| v.starts_with("Basic realm=")),
            "{case}: {answer:?}"
        );
    }
    let (ok, out, _) = est.daemon.cli(&["cert", "list", "--name", "intruder"]);
    assert!(
        ok && !out.contains("intruder"),
        "nothing issued for refused requests: {out}"
    );
}

#[test]
fn est_simplereenroll_with_the_issued_certificate_as_client_certificate() {
    let est = Est::start();
    let dir = est.work.path();
    let (key, csr) = openssl_csr(dir, "renewing", "p256", "/CN=renewing-device", &[]);
    let first = est.enroll(None, &csr, "renewing-cert");

    // Same subject, new key, authenticated by the certificate being renewed (no Basic).
    let (_, new_csr) = openssl_csr(dir, "renewing-2", "p256", "/CN=renewing-device", &[]);
    let client = ["--cert", first.to_str().unwrap(), "--key", key.to_str().unwrap()];
    let answer = est.post_csr(&est.url(None, "simplereenroll"), &new_csr, &client);
    assert_eq!(answer.status, 200, "simplereenroll: {answer:?}");
    let second = est.certs_of(&answer.body, "renewed-cert");
    est.check_issued(&second);
    assert_ne!(serial_of(&first), serial_of(&second));
    let (ok, out, err) = est.daemon.cli(&["cert", "show", &serial_of(&second)]);
    assert!(ok, "{out}{err}");
    assert!(
        out.to_lowercase().contains(&serial_of(&first).to_lowercase()),
        "the successor records the certificate it replaces: {out}"
    );

    // A different subject is refused, and so is re-enrollment without a client certificate.
    let (_, other_csr) = openssl_csr(dir, "other-subject", "p256", "/CN=someone-else", &[]);
    let refused = est.post_csr(&est.url(None, "simplereenroll"), &other_csr, &client);
    assert_eq!(refused.status, 403, "{refused:?}");
    let anonymous = est.post_csr(&est.url(None, "simplereenroll"), &new_csr, &["-u", "alice:wonderland"]);
    assert!(matches!(anonymous.status, 401 | 403), "{anonymous:?}");
}

#[test]
fn est_labelled_endpoint_csrattrs_enforcement_and_serverkeygen() {
    let est = Est::start();
    let dir = est.work.path();

    // csrattrs: none configured on the default endpoint (204); the labelled one announces
    // the key type and the subjectAltName extension request.
    assert_eq!(est.curl(&[&est.url(None, "csrattrs")]).status, 204);
    let attrs = est.curl(&[&est.url(Some("labs"), "csrattrs")]);
    assert_eq!(attrs.status, 200, "{attrs:?}");
    assert_eq!(attrs.header("content-type").as_deref(), Some("application/csrattrs"));
    let der = est.path("csrattrs.der");
    std::fs::write(&der, B64.decode(strip_whitespace(&attrs.body)).unwrap()).unwrap();
    let parsed = String::from_utf8(openssl(&["asn1parse", "-inform", "DER", "-in", der.to_str().unwrap()])).unwrap();
    for want in [
        "id-ecPublicKey",
        "prime256v1",
        "ecdsa-with-SHA256",
        "Extension Request",
        "X509v3 Subject Alternative Name",
    ] {
        assert!(parsed.contains(want), "csrattrs announces {want}: {parsed}");
    }

    // Enforcement: a CSR without the SAN extension is refused with a reason naming it.
    let (_, bare) = openssl_csr(dir, "bare", "p256", "/CN=bare", &[]);
    let refused = est.post_csr(
        &est.url(Some("labs"), "simpleenroll"),
        &bare,
        &["-u", "alice:wonderland"],
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    assert!(
        refused.text().contains("2.5.29.17"),
        "the reason names the missing extension: {}",
        refused.text()
    );
    // An RSA key where P-256 is required is refused as well.
    let (_, rsa) = openssl_csr(
        dir,
        "labs-rsa",
        "rsa:2048",
        "/CN=labs-rsa",
        &["-addext", "subjectAltName=DNS:labs-rsa.example.com"],
    );
    let refused = est.post_csr(
        &est.url(Some("labs"), "simpleenroll"),
        &rsa,
        &["-u", "alice:wonderland"],
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    // With everything asked for, the labelled endpoint issues.
    let (_, good) = openssl_csr(
        dir,
        "labs-good",
        "p256",
        "/CN=labs-good",
        &["-addext", "subjectAltName=DNS:labs-good.example.com"],
    );
    est.enroll(Some("labs"), &good, "labs-good-cert");

    // serverkeygen: multipart/mixed with the PKCS#8 key and the certificate for it.
    let (_, keygen_csr) = openssl_csr(
        dir,
        "keygen",
        "p256",
        "/CN=keygen-device",
        &["-addext", "subjectAltName=DNS:keygen.example.com"],
    );
    let answer = est.post_csr(
        &est.url(Some("labs"), "serverkeygen"),
        &keygen_csr,
        &["-u", "alice:wonderland"],
    );
    assert_eq!(answer.status, 200, "serverkeygen: {answer:?}");
    let content_type = answer.header("content-type").unwrap();
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .unwrap_or_else(|| panic!("multipart boundary in {content_type}"))
        .trim_matches('"')
        .to_owned();
    assert!(content_type.starts_with("multipart/mixed"), "{content_type}");
    let body = answer.text();
    let mut key_b64 = None;
    let mut cert_b64 = None;
    for part in body.split(&format!("--{boundary}")) {
        let Some((head, content)) = part.split_once("\r\n\r\n") else {
            continue;
        };
        let head = head.to_lowercase();
        if head.contains("application/pkcs8") {
            key_b64 = Some(content.to_owned());
        } else if head.contains("application/pkcs7-mime") {
            cert_b64 = Some(content.to_owned());
        }
    }
    let key_der = est.path("keygen.p8");
    std::fs::write(
        &key_der,
        B64.decode(strip_whitespace(key_b64.expect("a pkcs8 part").as_bytes()))
            .unwrap(),
    )
    .unwrap();
    let cert = est.certs_of(cert_b64.expect("a certs-only part").as_bytes(), "keygen-cert");
    est.check_issued(&cert);
    let key_public = openssl(&["pkey", "-inform", "DER", "-in", key_der.to_str().unwrap(), "-pubout"]);
    let cert_public = openssl(&["x509", "-in", cert.to_str().unwrap(), "-noout", "-pubkey"]);
    assert_eq!(key_public, cert_public, "the certificate certifies the generated key");
    // The default endpoint does not offer serverkeygen.
    let off = est.post_csr(&est.url(None, "serverkeygen"), &keygen_csr, &["-u", "alice:wonderland"]);
    assert!(matches!(off.status, 403 | 404 | 501), "{off:?}");
    // fullcmc is not offered anywhere: 501 with a reason.
    let cmc = est.curl(&["-X", "POST", "--data-binary", "x", &est.url(None, "fullcmc")]);
    assert_eq!(cmc.status, 501, "{cmc:?}");
}

#[test]
fn est_manual_approval_answers_202_then_the_certificate() {
    let est = Est::start();
    let dir = est.work.path();
    let (_, csr) = openssl_csr(dir, "waiting", "p256", "/CN=waiting-device", &[]);
    let url = est.url(Some("approve"), "simpleenroll");
    let auth = ["-u", "alice:wonderland"];

    let first = est.post_csr(&url, &csr, &auth);
    assert_eq!(first.status, 202, "{first:?}");
    assert_eq!(first.header("retry-after").as_deref(), Some("1"));
    assert_eq!(est.post_csr(&url, &csr, &auth).status, 202, "still waiting");

    let (ok, listed, err) = est.daemon.cli(&["approvals", "list"]);
    assert!(ok, "{listed}{err}");
    let id = listed
        .lines()
        .find(|l| l.contains("waiting-device"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the request is listed: {listed}"))
        .to_owned();
    assert!(id.starts_with("est:approve:"), "{id}");
    let (ok, out, err) = est.daemon.cli(&["approvals", "approve", &id]);
    assert!(ok, "{out}{err}");

    let issued = est.post_csr(&url, &csr, &auth);
    assert_eq!(issued.status, 200, "after approval: {issued:?}");
    let cert = est.certs_of(&issued.body, "approved-cert");
    est.check_issued(&cert);
    let (ok, listed, _) = est.daemon.cli(&["approvals", "list"]);
    assert!(ok && !listed.contains(&id), "no longer pending: {listed}");

    // A denied request is refused on its next poll.
    let (_, other) = openssl_csr(dir, "unwanted", "p256", "/CN=unwanted-device", &[]);
    assert_eq!(est.post_csr(&url, &other, &auth).status, 202);
    let (_, listed, _) = est.daemon.cli(&["approvals", "list"]);
    let id = listed
        .lines()
        .find(|l| l.contains("unwanted-device"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let (ok, out, err) = est
        .daemon
        .cli(&["approvals", "deny", &id, "--reason", "unknown device"]);
    assert!(ok, "{out}{err}");
    assert_eq!(est.post_csr(&url, &other, &auth).status, 403);
}

#[test]
fn est_first_enrollment_authenticated_by_a_bootstrap_ca_client_certificate() {
    let est = Est::start();
    let dir = est.work.path();
    let (_, csr) = openssl_csr(
        dir,
        "factory-new",
        "p256",
        "/serialNumber=SN-factory-device/CN=factory-device",
        &[],
    );
    let url = est.url(Some("factory"), "simpleenroll");
    let factory = [
        "--cert",
        &*est.path("factory-device.pem").to_string_lossy(),
        "--key",
        &*est.path("factory-device.key").to_string_lossy(),
    ]
    .map(str::to_owned);
    let factory: Vec<&str> = factory.iter().map(String::as_str).collect();
    let answer = est.post_csr(&url, &csr, &factory);
    assert_eq!(answer.status, 200, "factory identity enrolls: {answer:?}");
    est.check_issued(&est.certs_of(&answer.body, "factory-operational"));

    // Without a client certificate, or with Basic only: 401.
    let answer = est.post_csr(&url, &csr, &["-u", "alice:wonderland"]);
    assert_eq!(answer.status, 401, "{answer:?}");
    // A certificate certgate issued (trusted by the listener, not an anchor of this
    // endpoint) does not authenticate here.
    let (key, own_csr) = openssl_csr(dir, "own", "p256", "/CN=own-device", &[]);
    let own = est.enroll(None, &own_csr, "own-cert");
    let answer = est.post_csr(
        &url,
        &csr,
        &["--cert", own.to_str().unwrap(), "--key", key.to_str().unwrap()],
    );
    assert_eq!(answer.status, 401, "{answer:?}");
    // Another maker's device certificate fails the TLS handshake or is refused.
    let answer = est.post_csr(
        &url,
        &csr,
        &[
            "--cert",
            &est.path("rogue-device.pem").to_string_lossy(),
            "--key",
            &est.path("rogue-device.key").to_string_lossy(),
        ],
    );
    assert!(answer.status == 0 || answer.status == 401, "{answer:?}");
}

/// The Rust client of the channel-binding test: TLS with rustls, the RFC 9266 exporter read
/// from the connection, the CSR's challengePassword set to its base64 (by openssl), and the
/// request sent over that same connection.
fn bound_enroll(
    est: &Est,
    version: &'static rustls::SupportedProtocolVersion,
    name: &str,
    tamper: bool,
) -> (u16, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        let root_pem = std::fs::read(&est.daemon.root).unwrap();
        for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(&root_pem) {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_protocol_versions(&[version])
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let address = est.daemon.https.trim_start_matches("https://").to_owned();
        let tcp = tokio::net::TcpStream::connect(&address).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        let server_name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(server_name, tcp).await.unwrap();
        let mut exporter = tls
            .get_ref()
            .1
            .export_keying_material([0u8; 32], b"EXPORTER-Channel-Binding", None)
            .unwrap();
        if tamper {
            exporter[0] ^= 1;
        }
        let config_file = est.path(&format!("{name}.cnf"));
        std::fs::write(
            &config_file,
            format!(
                "[req]\nprompt = no\ndistinguished_name = dn\nattributes = attrs\n[dn]\nCN = {name}\n[attrs]\nchallengePassword = {}\n",
                B64.encode(exporter)
            ),
        )
        .unwrap();
        let (_, csr) = openssl_csr(est.work.path(), name, "p256", "", &["-config", config_file.to_str().unwrap()]);
        let body = B64.encode(std::fs::read(&csr).unwrap());
        let request = format!(
            "POST /.well-known/est/bound/simpleenroll HTTP/1.1\r\nHost: localhost\r\nAuthorization: Basic {}\r\n\
             Content-Type: application/pkcs10\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            B64.encode("alice:wonderland"),
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        tls.flush().await.unwrap();
        let mut answer = Vec::new();
        // The server may close without close_notify after `Connection: close`.
        let _ = tls.read_to_end(&mut answer).await;
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.as_bytes().to_vec()).unwrap_or_default();
        (status, body)
    })
}

#[test]
fn est_tls_exporter_channel_binding_with_a_rust_client() {
    let est = Est::start();
    for (case, version) in [("tls13", &rustls::version::TLS13), ("tls12", &rustls::version::TLS12)] {
        let (status, body) = bound_enroll(&est, version, &format!("bound-{case}"), false);
        assert_eq!(status, 200, "{case}: {}", String::from_utf8_lossy(&body));
        let cert = est.certs_of(&body, &format!("bound-{case}-cert"));
        est.check_issued(&cert);
        // The value of another connection (here: one bit off) is refused.
        let (status, body) = bound_enroll(&est, version, &format!("unbound-{case}"), true);
        assert_eq!(status, 403, "{case} tampered: {}", String::from_utf8_lossy(&body));
    }
    // curl cannot bind: a CSR without the exporter value is refused.
    let (_, csr) = openssl_csr(est.work.path(), "curl-bound", "p256", "/CN=curl-bound", &[]);
    let answer = est.post_csr(
        &est.url(Some("bound"), "simpleenroll"),
        &csr,
        &["-u", "alice:wonderland"],
    );
    assert_eq!(answer.status, 403, "{answer:?}");
    let _ = answer.curl_error;
}

#[test]
fn est_bodies_in_every_encoding_and_clear_errors() {
    let est = Est::start();
    let dir = est.work.path();
    let url = est.url(None, "simpleenroll");
    let auth = "alice:wonderland";
    // PEM, raw DER, one-line base64: all accepted.
    let (_, csr) = openssl_csr(dir, "encodings", "p256", "/CN=encodings", &[]);
    let der = std::fs::read(&csr).unwrap();
    let pem = est.path("encodings.pem.req");
    openssl(&[
        "req",
        "-inform",
        "DER",
        "-in",
        csr.to_str().unwrap(),
        "-out",
        pem.to_str().unwrap(),
    ]);
    let one_line = est.path("encodings.b64line");
    std::fs::write(&one_line, B64.encode(&der)).unwrap();
    for (case, file) in [
        ("pem", pem.clone()),
        ("der", csr.clone()),
        ("one_line_base64", one_line),
    ] {
        let data = format!("@{}", file.display());
        let answer = est.curl(&[
            "-u",
            auth,
            "-H",
            "Content-Type: application/pkcs10",
            "--data-binary",
            &data,
            &url,
        ]);
        assert_eq!(answer.status, 200, "{case}: {answer:?}");
        est.check_issued(&est.certs_of(&answer.body, &format!("enc-{case}")));
    }
    // Garbage: 400 with a text reason; a JSON content type: 415; a huge body: 413.
    let cases: Vec<(&str, Vec<String>, u16)> = vec![
        (
            "garbage",
            vec![
                "-H".into(),
                "Content-Type: application/pkcs10".into(),
                "--data-binary".into(),
                "not a csr".into(),
            ],
            400,
        ),
        (
            "json",
            vec![
                "-H".into(),
                "Content-Type: application/json".into(),
                "--data-binary".into(),
                "{}".into(),
            ],
            415,
        ),
    ];
    for (case, args, want) in cases {
        let mut all: Vec<&str> = vec!["-u", auth];
        all.extend(args.iter().map(String::as_str));
        all.push(&url);
        let answer = est.curl(&all);
        assert_eq!(answer.status, want, "{case}: {answer:?}");
        assert!(
            answer
                .header("content-type")
                .is_some_and(|t| t.starts_with("text/plain")),
            "{case}"
        );
        assert!(!answer.body.is_empty(), "{case}: a reason");
    }
    let huge = est.path("huge.b64");
    let mut file = std::fs::File::create(&huge).unwrap();
    file.write_all(&vec![b'A'; 512 * 1024]).unwrap();
    drop(file);
    let answer = est.curl(&[
        "-u",
        auth,
        "-H",
        "Content-Type: application/pkcs10",
        "--data-binary",
        &format!("@{}", huge.display()),
        &url,
    ]);
    assert_eq!(answer.status, 413, "{answer:?}");
    // EST over plain HTTP is refused.
    let answer = est.curl(&[
        "-u",
        auth,
        "--data-binary",
        "x",
        &format!("{}/.well-known/est/simpleenroll", est.daemon.http),
    ]);
    assert_eq!(answer.status, 403, "{answer:?}");
}

/// openssl ocsp against the daemon's responder for one serial: the certificate status line
/// and the whole output (openssl checks the nonce and the signature chain itself).
fn ocsp_status(est: &Est, serial: &str) -> (String, String) {
    let output = Command::new("openssl")
        .args(["ocsp", "-issuer"])
        .arg(&est.issuing)
        .arg("-CAfile")
        .arg(&est.daemon.root)
        .arg("-verify_other")
        .arg(&est.issuing)
        .args([
            "-url",
            &format!("{}/ocsp/default", est.daemon.http),
            "-serial",
            &format!("0x{serial}"),
        ])
        .output()
        .expect("openssl is installed");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "openssl ocsp: {all}");
    assert!(all.contains("Response verify OK"), "signature chain verifies: {all}");
    assert!(
        !all.to_lowercase().contains("nonce"),
        "the nonce is echoed (no warning): {all}"
    );
    let status = all
        .lines()
        .find_map(|l| l.strip_prefix(&format!("0x{serial}: ")))
        .unwrap_or_else(|| panic!("no status line for {serial}: {all}"))
        .trim()
        .to_owned();
    (status, all)
}

/// Issue 6 end to end on EST certificates: revocation through the HTTPS admin API (bearer
/// token) and through the CLI lands in the next CRL (`openssl crl`) and in OCSP answers
/// (`openssl ocsp`: revoked with reason, good, unknown; nonce and signature checked); the
/// inventory lists provenance, filters by expiry window and owner, and its CSV export reads
/// back equal to the JSON export; the audit log verifies and `certgate audit verify` names an
/// altered, a removed and a reordered entry; /metrics counts the issuances; and
/// `certgate verify-deployment` finds the daemon serving its current certificate.
#[test]
fn est_certificates_through_revocation_inventory_audit_and_metrics() {
    let est = Est::start();
    let dir = est.work.path();
    let mut serials = Vec::new();
    for name in ["life-a", "life-b", "life-c"] {
        let (_, csr) = openssl_csr(dir, name, "p256", &format!("/CN={name}"), &[]);
        serials.push(serial_of(&est.enroll(None, &csr, &format!("{name}-cert"))));
    }
    let [a, b, c] = [&serials[0], &serials[1], &serials[2]];

    // Admin tokens: one with the admin role, one read-only.
    let token = |role: &str| {
        let (ok, out, err) = est
            .daemon
            .cli(&["admin", "token", "create", "--name", role, "--role", role]);
        assert!(ok && out.trim().starts_with("cgt_"), "{out}{err}");
        out.trim().to_owned()
    };
    let (admin, reader) = (token("admin"), token("read-only"));
    let api = |path: &str| format!("{}/admin/v1/{path}", est.daemon.https);
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    let revoke_body = r#"{"reason": "keyCompromise"}"#;
    let reader_header = bearer(&reader);
    let cases: [(&str, Vec<&str>, u16); 3] = [
        ("no_token", vec!["-X", "POST", "--data", revoke_body], 401),
        (
            "read_only_token",
            vec!["-X", "POST", "-H", &reader_header, "--data", revoke_body],
            403,
        ),
        (
            "bad_token",
            vec![
                "-X",
                "POST",
                "-H",
                "Authorization: Bearer cgt_0000000000000000_x",
                "--data",
                revoke_body,
            ],
            401,
        ),
    ];
    let revoke_a = api(&format!("certificates/{a}/revoke"));
    for (case, mut args, want) in cases {
        args.push(&revoke_a);
        assert_eq!(est.curl(&args).status, want, "case {case}");
    }
    let revoked = est.curl(&["-X", "POST", "-H", &bearer(&admin), "--data", revoke_body, &revoke_a]);
    assert_eq!(revoked.status, 200, "admin API revocation: {}", revoked.text());
    let (ok, out, err) = est
        .daemon
        .cli(&["cert", "revoke", b, "--reason", "cessationOfOperation"]);
    assert!(ok, "CLI revocation: {out}{err}");

    // The next CRL lists both, with their reasons, and verifies against the issuer.
    let crl = est.path("default.crl");
    let (ok, out) = super::curl(&[
        "-o",
        crl.to_str().unwrap(),
        &format!("{}/crl/default.crl", est.daemon.http),
    ]);
    assert!(ok, "{out}");
    let text = String::from_utf8(openssl(&[
        "crl",
        "-inform",
        "DER",
        "-in",
        crl.to_str().unwrap(),
        "-text",
        "-noout",
        "-CAfile",
        est.issuing.to_str().unwrap(),
    ]))
    .unwrap();
    let entry = |serial: &str| {
        let at = text
            .find(&format!("Serial Number: {serial}"))
            .unwrap_or_else(|| panic!("{serial} in the CRL: {text}"));
        text[at..].lines().take(5).collect::<Vec<_>>().join("\n")
    };
    assert!(entry(a).contains("Key Compromise"), "{}", entry(a));
    assert!(entry(b).contains("Cessation Of Operation"), "{}", entry(b));
    assert!(!text.contains(c.as_str()), "good certificate not listed");

    // OCSP: revoked (with reason), good, unknown.
    let (status, all) = ocsp_status(&est, a);
    assert_eq!(status, "revoked", "{all}");
    assert!(all.contains("Reason: keyCompromise"), "{all}");
    assert_eq!(ocsp_status(&est, c).0, "good");
    assert_eq!(ocsp_status(&est, "0123456789ABCDEF0123456789ABCDEF").0, "unknown");

    // Inventory: provenance, filters, CSV round trip, over the admin API too.
    let list = |args: &[&str]| {
        let mut all = vec!["cert", "list", "--format", "json"];
        all.extend_from_slice(args);
        let (ok, out, err) = est.daemon.cli(&all);
        assert!(ok, "{out}{err}");
        let items: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
        items
            .into_iter()
            .map(|i| (i["serial"].as_str().unwrap().to_owned(), i))
            .collect::<Vec<_>>()
    };
    let est_items = list(&["--protocol", "est"]);
    assert_eq!(est_items.len(), 3, "{est_items:?}");
    for (serial, item) in &est_items {
        assert_eq!(item["requester"], "est-user:default/alice", "{serial}");
        assert_eq!(item["endpoint"], "default");
        assert_eq!(item["owner_labels"]["owner"], "iot");
    }
    let statuses: Vec<(String, String)> = est_items
        .iter()
        .map(|(s, i)| (s.clone(), i["status"].as_str().unwrap().to_owned()))
        .collect();
    assert!(statuses.contains(&(a.clone(), "revoked".into())) && statuses.contains(&(c.clone(), "valid".into())));
    type FilterCase<'a> = (&'a str, Vec<&'a str>, usize);
    let filter_cases: [FilterCase; 5] = [
        ("owner_iot", vec!["--owner", "iot"], 3),
        ("owner_certgate_is_the_listener", vec!["--owner", "certgate"], 1),
        ("expiring_within_a_day", vec!["--expiring-within", "1"], 0),
        (
            "expiring_within_a_year",
            vec!["--expiring-within", "400", "--protocol", "est"],
            3,
        ),
        ("revoked_only", vec!["--status", "revoked"], 2),
    ];
    for (case, args, want) in filter_cases {
        assert_eq!(list(&args).len(), want, "case {case}");
    }
    let (ok, csv, err) = est.daemon.cli(&["cert", "export", "--format", "csv"]);
    assert!(ok, "{err}");
    let (ok, json, err) = est.daemon.cli(&["cert", "export", "--format", "json"]);
    assert!(ok, "{err}");
    let from_csv = certgate::inventory::from_csv(&csv).expect("the CSV export parses");
    let from_json: Vec<certgate::inventory::InventoryItem> = serde_json::from_str(&json).unwrap();
    assert_eq!(from_csv, from_json, "CSV round trip");
    assert_eq!(from_csv.len(), 4, "three EST certificates and the listener's");
    let listed = est.curl(&["-H", &bearer(&reader), &api("certificates?protocol=est&owner=iot")]);
    assert_eq!(listed.status, 200, "{}", listed.text());
    let page: serde_json::Value = serde_json::from_slice(&listed.body).unwrap();
    assert_eq!(page["items"].as_array().map(Vec::len), Some(3), "{page}");
    let exported = est.curl(&["-H", &bearer(&reader), &api("certificates/export?format=csv")]);
    assert_eq!(certgate::inventory::from_csv(&exported.text()).unwrap(), from_json);

    // Metrics.
    let (ok, metrics) = super::curl(&[&format!("{}/metrics", est.daemon.http)]);
    assert!(ok, "{metrics}");
    for line in [
        "certgate_issuance_total{endpoint=\"default\",protocol=\"est\",result=\"issued\"} 3",
        "certgate_revocation_total{reason=\"keyCompromise\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // Deployment verification: the daemon's own listener serves its current certificate.
    let address = est.daemon.https.trim_start_matches("https://").to_owned();
    let (ok, out, err) = est.daemon.cli(&["verify-deployment", "--target", &address]);
    assert!(ok && out.contains(&address) && out.contains("current"), "{out}{err}");

    // Audit log: all but the newest 3 entries move to segment files (the sweeper runs every
    // second here); export and verify still cover the whole log from seq 1.
    let archive = est.daemon.dir.path().join("data/audit");
    let segments = || -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&archive)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        files.sort();
        files
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while segments().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let first_segment = segments().into_iter().next().expect("an audit segment within 20 s");
    assert!(
        first_segment.to_string_lossy().contains("audit-00000000000000000001-"),
        "{first_segment:?}"
    );
    let (ok, out, err) = est.daemon.cli(&["audit", "verify"]);
    assert!(ok && out.contains("chain intact"), "{out}{err}");
    let (ok, export, err) = est.daemon.cli(&["audit", "export"]);
    assert!(ok, "{err}");
    assert!(export.starts_with("{\"seq\":1,"), "{export}");
    let segment_text = std::fs::read_to_string(&first_segment).unwrap();
    assert!(export.starts_with(&segment_text), "segments hold the exported lines");
    // An archived entry edited on disk breaks the chain the daemon reports.
    std::fs::write(
        &first_segment,
        segment_text.replacen("\"actor\":\"", "\"actor\":\"x", 1),
    )
    .unwrap();
    let (ok, out, err) = est.daemon.cli(&["audit", "verify"]);
    assert!(!ok && err.contains("broken") && err.contains("entry 1 "), "{out}{err}");
    std::fs::write(&first_segment, &segment_text).unwrap();
    let lines: Vec<&str> = export.lines().collect();
    assert!(
        lines.len() >= 8,
        "issuances, revocations, tokens and the config are audited: {export}"
    );
    for kind in ["\"issuance\"", "\"revocation\"", "\"admin\"", "\"config\""] {
        assert!(export.contains(kind), "{kind} audited");
    }
    let mut altered = lines.clone();
    let changed = lines[2].replacen("\"seq\":3,\"at\":\"", "\"seq\":3,\"at\":\"1", 1);
    altered[2] = &changed;
    let mut removed = lines.clone();
    removed.remove(3);
    let mut reordered = lines.clone();
    reordered.swap(2, 3);
    let tamper_cases = [
        ("intact", lines.clone(), None),
        ("altered", altered, Some("3")),
        ("removed", removed, Some("4")),
        ("reordered", reordered, Some("4")),
    ];
    for (case, lines, broken_at) in tamper_cases {
        let file = est.path(&format!("audit-{case}.jsonl"));
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let (ok, out, err) = est.daemon.cli(&["audit", "verify", "--file", file.to_str().unwrap()]);
        match broken_at {
            None => assert!(ok, "case {case}: {out}{err}"),
            Some(seq) => assert!(
                !ok && err.contains("broken") && err.contains(seq),
                "case {case}: {out}{err}"
            ),
        }
    }
}
