//! Revocation integration tests: real CAs, certificates issued by the real authority into a
//! real sled store, and every CRL and OCSP response checked by the openssl CLI.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failure should stop the test loudly

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use certgate_authority::IssueRequest;
use certgate_core::{Clock, ManualClock, ParsedCsr, Protocol, RequesterId, RevocationReason, Serial};
use certgate_revocation::{
    RevocationDeps, RevocationServer, RevocationService, RevocationSettings, StatusRequest, StatusResponse,
};
use certgate_signer::{KeyType, generate_key};
use certgate_test_support::{TestAuthority, csr, name, test_endpoint, write_pem};
use tempfile::TempDir;
use time::OffsetDateTime;
use tokio::sync::watch;

/// A CA with an authority over a real store, a revocation service over the same store, and a
/// work directory with the PEM files openssl needs.
struct Fixture {
    t: TestAuthority,
    clock: Arc<ManualClock>,
    revocations: watch::Sender<u64>,
    service: Arc<RevocationService>,
    server: RevocationServer,
    signer_dir: PathBuf,
    work: TempDir,
}

impl Fixture {
    fn new(key_type: KeyType, settings: RevocationSettings) -> Self {
        let t = TestAuthority::new(key_type, vec![test_endpoint()]);
        let work = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let (revocations, receiver) = watch::channel(0u64);
        let signer_dir = work.path().join("ocsp");
        let service = Arc::new(
            RevocationService::new(
                RevocationDeps {
                    issuers: vec![Arc::clone(&t.ca.issuer)],
                    store: Arc::new(t.store.clone()),
                    clock: Arc::clone(&clock) as Arc<dyn Clock>,
                    ocsp_signer_dir: signer_dir.clone(),
                    revocations: receiver,
                },
                settings,
            )
            .unwrap(),
        );
        let server = RevocationServer::new(Arc::clone(&service));
        write_pem(&work.path().join("issuer.pem"), &[t.ca.issuer.certificate_der()]);
        Self {
            t,
            clock,
            revocations,
            service,
            server,
            signer_dir,
            work,
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.work.path().join(file)
    }

    fn root_pem(&self) -> &Path {
        &self.t.ca.root_pem
    }

    /// Issues a leaf and writes it as `{label}.pem`; returns its serial.
    async fn issue(&self, label: &str) -> Serial {
        let key = generate_key(KeyType::P256).unwrap();
        let dns = format!("{label}.example.com");
        let request = IssueRequest::new(
            Protocol::Acme,
            name("default"),
            ParsedCsr::from_der(&csr(&key, Some(&dns), &[&dns])).unwrap(),
            RequesterId::new("acme-account:test").unwrap(),
        );
        let issued = self.t.authority.issue(request).await.unwrap();
        write_pem(&self.path(&format!("{label}.pem")), &[&issued.chain[0]]);
        issued.record.serial
    }

    /// Revokes through the authority, then tells the service, as the daemon will.
    async fn revoke(&self, serial: &Serial, reason: RevocationReason) {
        self.t.authority.revoke(serial, reason, "test").await.unwrap();
        self.revocations.send_modify(|g| *g += 1);
    }

    async fn get(&self, path: &str) -> StatusResponse {
        self.server
            .handle(&StatusRequest {
                method: "GET",
                path,
                content_type: None,
                body: &[],
                body_too_large: false,
            })
            .await
    }

    async fn post(&self, path: &str, body: &[u8]) -> StatusResponse {
        self.server
            .handle(&StatusRequest {
                method: "POST",
                path,
                content_type: Some("application/ocsp-request"),
                body,
                body_too_large: false,
            })
            .await
    }
}

/// Runs openssl with `args`; returns (success, stdout + stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    let output = Command::new("openssl").args(args).output().expect("openssl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

mod crl;
mod http;
mod ocsp;
