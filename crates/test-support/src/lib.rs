//! Test helpers for certgate: temporary CAs, stores and authorities, CSR builders for every
//! key type, and independent verifiers (openssl, pkilint). Only ever a dev-dependency.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test loudly

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use certgate_authority::{Authority, AuthorityConfig, EndpointPolicy, KeyPolicy, NamePolicy, Profile};
use certgate_core::{Clock, Name, Protocol, SystemClock};
use certgate_signer::{CaInitOptions, Issuer, KeyType, init_ca};
use certgate_store::SledStore;
use tempfile::TempDir;
use time::OffsetDateTime;

pub mod binary;

pub use rcgen;

/// The names used by the default test endpoint.
pub const TEST_ENDPOINT: &str = "default";

/// Parses a name or panics.
pub fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

/// A CA created in a temporary directory.
pub struct TestCa {
    /// Keeps the files alive.
    pub dir: TempDir,
    /// The loaded issuer.
    pub issuer: Arc<Issuer>,
    /// Root certificate PEM path.
    pub root_pem: PathBuf,
    /// Issuing (intermediate) certificate PEM path.
    pub issuer_pem: PathBuf,
}

impl TestCa {
    /// Creates a root and intermediate of `key_type`.
    pub fn new(key_type: KeyType) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let options = CaInitOptions {
            key_type,
            ..CaInitOptions::default()
        };
        let files = init_ca(&dir.path().join("ca"), &options, OffsetDateTime::now_utc()).unwrap();
        let issuer = Arc::new(Issuer::load(name("default"), &files, None).unwrap());
        Self {
            root_pem: files.root.clone(),
            issuer_pem: files.cert.clone(),
            dir,
            issuer,
        }
    }
}

/// An authority over a real sled store in a temporary directory.
pub struct TestAuthority {
    /// The CA.
    pub ca: TestCa,
    /// The store directory (kept alive).
    pub store_dir: TempDir,
    /// The store.
    pub store: SledStore,
    /// The authority.
    pub authority: Arc<Authority>,
}

/// The permissive test endpoint: ACME `default`, all built-in profiles, default policies.
pub fn test_endpoint() -> EndpointPolicy {
    EndpointPolicy {
        protocol: Protocol::Acme,
        name: name(TEST_ENDPOINT),
        issuer: name("default"),
        profiles: vec![name("tls-server"), name("tls-client"), name("device")],
        keys: KeyPolicy::default(),
        names: NamePolicy::default(),
        owner_labels: BTreeMap::from([("team".to_owned(), "platform".to_owned())]),
    }
}

impl TestAuthority {
    /// An authority with a CA of `key_type` and the given endpoints.
    pub fn new(key_type: KeyType, endpoints: Vec<EndpointPolicy>) -> Self {
        Self::with_clock(key_type, endpoints, Arc::new(SystemClock))
    }

    /// The same with an injected clock.
    pub fn with_clock(key_type: KeyType, endpoints: Vec<EndpointPolicy>, clock: Arc<dyn Clock>) -> Self {
        let ca = TestCa::new(key_type);
        let store_dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(store_dir.path()).unwrap();
        let authority = Self::authority_over_with_clock(&ca, store.clone(), endpoints, clock);
        Self {
            ca,
            store_dir,
            store,
            authority,
        }
    }

    /// Another authority over an existing CA and store (e.g. after reopening the store).
    pub fn authority_over(ca: &TestCa, store: SledStore, endpoints: Vec<EndpointPolicy>) -> Arc<Authority> {
        Self::authority_over_with_clock(ca, store, endpoints, Arc::new(SystemClock))
    }

    /// The same with an injected clock.
    pub fn authority_over_with_clock(
        ca: &TestCa,
        store: SledStore,
        endpoints: Vec<EndpointPolicy>,
        clock: Arc<dyn Clock>,
    ) -> Arc<Authority> {
        let config = AuthorityConfig {
            issuers: vec![Arc::clone(&ca.issuer)],
            profiles: Profile::builtin(),
            endpoints,
            public_base_url: Some("http://127.0.0.1:8080".into()),
        };
        Arc::new(Authority::new(config, Arc::new(store), clock).unwrap())
    }
}

/// A DER CSR for `sans` (DNS names or IP addresses) with subject CN=`cn` if given.
pub fn csr(key: &rcgen::KeyPair, cn: Option<&str>, sans: &[&str]) -> Vec<u8> {
    let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    }
    params.serialize_request(key).unwrap().der().to_vec()
}

/// Writes DER certificates as PEM into `path`.
pub fn write_pem(path: &Path, ders: &[&[u8]]) {
    std::fs::write(path, certgate_signer::certificates_to_pem(ders.iter().copied())).unwrap();
}

/// Runs `openssl verify -CAfile root -untrusted intermediates leaf` (optionally with
/// `-purpose`), returning its output on failure.
pub fn openssl_verify(
    root_pem: &Path,
    intermediates_pem: &Path,
    leaf_pem: &Path,
    purpose: Option<&str>,
) -> Result<(), String> {
    let mut command = Command::new("openssl");
    command
        .arg("verify")
        .arg("-CAfile")
        .arg(root_pem)
        .arg("-untrusted")
        .arg(intermediates_pem);
    if let Some(purpose) = purpose {
        command.arg("-purpose").arg(purpose);
    }
    let output = command
        .arg(leaf_pem)
        .output()
        .map_err(|e| format!("cannot run openssl: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The workspace root (two levels above this crate).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .unwrap()
        .to_owned()
}

/// The pkilint version the waivers below were written against.
pub const PKILINT_VERSION: &str = "0.13.3";

/// Finds a pkilint executable: `$CERTGATE_PKILINT_BIN`, then the workspace's `.venv/bin`
/// (created with pip on first use if missing, so `cargo test` works on a fresh machine
/// that has python3 and PyPI), then `PATH`.
pub fn pkilint_executable(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("CERTGATE_PKILINT_BIN") {
        return PathBuf::from(dir).join(name);
    }
    let venv = workspace_root().join(".venv");
    let executable = venv.join("bin").join(name);
    if !executable.exists() {
        provision_pkilint(&venv);
    }
    if executable.exists() {
        executable
    } else {
        PathBuf::from(name)
    }
}

fn provision_pkilint(venv: &Path) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Another test process may be installing too: take a lock directory, wait for it.
        let lock = workspace_root().join("target").join("pkilint-install.lock");
        let _ = std::fs::create_dir_all(lock.parent().unwrap());
        let started = std::time::Instant::now();
        while std::fs::create_dir(&lock).is_err() {
            if started.elapsed() > std::time::Duration::from_secs(300) {
                let _ = std::fs::remove_dir(&lock);
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        if !venv.join("bin/lint_pkix_cert").exists() {
            let pip = venv.join("bin/pip");
            let created = pip.exists()
                || Command::new("python3")
                    .arg("-m")
                    .arg("venv")
                    .arg(venv)
                    .status()
                    .is_ok_and(|s| s.success());
            if created {
                let _ = Command::new(&pip)
                    .args(["install", "--quiet", &format!("pkilint=={PKILINT_VERSION}")])
                    .status();
            }
        }
        let _ = std::fs::remove_dir(&lock);
    });
}

/// One pkilint finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintFinding {
    /// Severity (ERROR, WARNING, …).
    pub severity: String,
    /// The finding code, e.g. `cabf.internal_domain_name`.
    pub code: String,
    /// Where in the certificate.
    pub node_path: String,
    /// pkilint's message, if any.
    pub message: Option<String>,
}

/// Lints a DER certificate with pkilint at WARNING and above and returns the findings:
/// `lint_cabf_serverauth_cert -t DV-FINAL-CERTIFICATE` for TLS server certificates,
/// `lint_pkix_cert` otherwise. Panics if pkilint cannot run: the check is part of the
/// acceptance, not optional.
pub fn pkilint(der: &[u8], server_auth: bool) -> Vec<LintFinding> {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), der).unwrap();
    let mut command = if server_auth {
        let mut c = Command::new(pkilint_executable("lint_cabf_serverauth_cert"));
        c.args(["lint", "-t", "DV-FINAL-CERTIFICATE"]);
        c
    } else {
        let mut c = Command::new(pkilint_executable("lint_pkix_cert"));
        c.arg("lint");
        c
    };
    let output = command
        .args(["-s", "WARNING", "-f", "JSON"])
        .arg(file.path())
        .output()
        .unwrap_or_else(|e| panic!("pkilint is required (./test installs it in .venv): {e}"));
    let text = String::from_utf8_lossy(&output.stdout);
    let json: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!(
            "pkilint printed no JSON ({e}): {text}{}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let mut findings = Vec::new();
    for result in json["results"].as_array().into_iter().flatten() {
        for finding in result["finding_descriptions"].as_array().into_iter().flatten() {
            findings.push(LintFinding {
                severity: finding["severity"].as_str().unwrap_or_default().to_owned(),
                code: finding["code"].as_str().unwrap_or_default().to_owned(),
                node_path: result["node_path"].as_str().unwrap_or_default().to_owned(),
                message: finding["message"].as_str().map(str::to_owned),
            });
        }
    }
    findings
}

/// pkilint findings that a private CA must have, each with its reason. Anything else fails
/// the lint tests.
pub const PKILINT_WAIVERS: &[(&str, &str)] = &[
    (
        "cabf.internal_domain_name",
        "a private CA serves CRL/OCSP/CA URLs on internal hosts and issues for internal names",
    ),
    (
        "cabf.internal_ip_address",
        "a private CA issues for private and loopback IP addresses",
    ),
    (
        "cabf.serverauth.subscriber.certificate_policies_extension_absent",
        "a private CA must not assert the CA/B Forum's reserved policy OIDs",
    ),
    (
        "cabf.serverauth.subscriber.subject_key_identifier_extension_present",
        "SKI is kept in leaves for chain building by device fleets (the issue requires it; RFC 5280 recommends it)",
    ),
    (
        "cabf.serverauth.dv.common_name_attribute_present",
        "the CN is kept when it is one of the SANs, for legacy clients that still read it",
    ),
];

/// Waivers that apply only to Ed25519 keys or CAs, which the CA/B Forum does not allow but an
/// internal endpoint may choose.
pub const PKILINT_ED25519_WAIVERS: &[(&str, &str)] = &[
    (
        "cabf.serverauth.prohibited_subject_public_key_algorithm_encoding",
        "Ed25519 leaf keys are outside the CA/B Forum's list; allowed on internal endpoints that opt in",
    ),
    (
        "cabf.serverauth.prohibited_signature_algorithm_encoding",
        "Ed25519 CA signatures are outside the CA/B Forum's list; allowed for internal CAs that choose them",
    ),
];

/// The findings not covered by a waiver.
pub fn unwaived(findings: Vec<LintFinding>, ed25519_involved: bool) -> Vec<LintFinding> {
    findings
        .into_iter()
        .filter(|f| {
            let waived = |list: &[(&str, &str)]| list.iter().any(|(code, _)| *code == f.code);
            !(waived(PKILINT_WAIVERS) || (ed25519_involved && waived(PKILINT_ED25519_WAIVERS)))
        })
        .collect()
}
