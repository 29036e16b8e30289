//! Integration tests: every challenge and CAA against real sockets on 127.0.0.1 — a small
//! HTTP/1.1 responder (optionally behind rustls), rustls tls-alpn-01 responders with rcgen
//! certificates, and an in-process hickory authoritative DNS server.

mod address_policy;
mod dns;
mod http;
mod tls_alpn;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use certgate_core::{DnsName, Identifier};
use certgate_validation::{
    Attempt, ChallengeKind, ValidationConfig, ValidationError, ValidationErrorKind, ValidationRecord, Validator,
};
use rcgen::{CertificateParams, KeyPair};
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::task::JoinHandle;

const TIMEOUT: Duration = Duration::from_secs(2);

/// The key authorization the fake clients publish for a token.
fn key_authorization(token: &str) -> String {
    format!("{token}.thumbprint-of-{token}")
}

fn dns(name: &str) -> Identifier {
    Identifier::Dns(DnsName::new(name).unwrap())
}

fn config(http_port: u16, tls_alpn_port: u16, nameserver: SocketAddr) -> ValidationConfig {
    ValidationConfig {
        http_port,
        tls_alpn_port,
        dns_nameservers: vec![nameserver],
        timeout: TIMEOUT,
        ..ValidationConfig::default()
    }
}

/// A nameserver address for tests that never query DNS: nothing listens there.
fn unused_nameserver() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9))
}

async fn run(
    validator: &Validator,
    identifier: &Identifier,
    kind: ChallengeKind,
    token: &str,
) -> Result<ValidationRecord, ValidationError> {
    let key_authorization = key_authorization(token);
    let attempt = Attempt {
        identifier,
        kind,
        token,
        key_authorization: &key_authorization,
    };
    validator.validate(&attempt).await
}

/// What a case expects: success, or an error kind plus fragments its detail must contain.
#[derive(Debug)]
enum Want {
    Pass,
    Fail(ValidationErrorKind, Vec<String>),
}

fn fail(kind: ValidationErrorKind, fragments: &[&str]) -> Want {
    Want::Fail(kind, fragments.iter().map(|s| (*s).to_owned()).collect())
}

fn check(case: &str, got: &Result<ValidationRecord, ValidationError>, want: &Want) {
    match (got, want) {
        (Ok(_), Want::Pass) => {}
        (Err(err), Want::Fail(kind, fragments)) => {
            assert_eq!(err.kind, *kind, "case {case}: {}", err.detail);
            for fragment in fragments {
                assert!(
                    err.detail.contains(fragment.as_str()),
                    "case {case}: {:?} lacks {fragment:?}",
                    err.detail
                );
            }
            assert_eq!(err.to_string(), err.detail, "case {case}: Display is the detail");
        }
        (got, want) => panic!("case {case}: got {got:?}, want {want:?}"),
    }
}

/// Aborts a server task when the test ends.
struct Task(JoinHandle<()>);

impl Drop for Task {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn server_config(cert: CertificateDer<'static>, key: PrivateKeyDer<'static>, alpn: &[&[u8]]) -> Arc<ServerConfig> {
    server_config_versions(cert, key, alpn, rustls::ALL_VERSIONS)
}

fn server_config_versions(
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    alpn: &[&[u8]],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<ServerConfig> {
    // `with_single_cert` would parse the certificate with webpki, which refuses the critical
    // acmeIdentifier extension; a resolver serving the pair as is avoids that.
    let provider = Arc::new(default_provider());
    let signing_key = provider.key_provider.load_private_key(key).unwrap();
    let certified = CertifiedKey::new(vec![cert], signing_key);
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SingleCertAndKey::from(certified)));
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// A self-signed certificate (and its key) from rcgen.
fn self_signed(params: CertificateParams) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    (cert.der().clone(), key)
}

/// Serves every http-01 case by the token in the path.
#[test]
fn validator_is_shareable() {
    fn shareable<T: Send + Sync + Clone + 'static>() {}
    fn send<T: Send>(_: &T) {}
    shareable::<Validator>();
    // Built outside a runtime (the ACME crate may build it at start-up).
    let validator = Validator::new(config(80, 443, unused_nameserver())).unwrap();
    let identifier = dns("example.test");
    let attempt = Attempt {
        identifier: &identifier,
        kind: ChallengeKind::Http01,
        token: "t",
        key_authorization: "t.k",
    };
    // The futures can move across threads of a multi-threaded runtime.
    send(&validator.validate(&attempt));
    send(&validator.check_caa(&DnsName::new("example.test").unwrap(), false, "a", ChallengeKind::Dns01));
}

#[test]
fn system_dns_configuration() {
    // Empty nameservers read /etc/resolv.conf, which every supported host has.
    let validator = Validator::new(ValidationConfig::default()).unwrap();
    assert_eq!(validator.config().http_port, 80);
    assert_eq!(validator.config().max_body, 16 * 1024);
    let zero = ValidationConfig {
        timeout: Duration::ZERO,
        ..ValidationConfig::default()
    };
    assert_eq!(Validator::new(zero).unwrap_err().kind, ValidationErrorKind::Malformed);
}

#[tokio::test]
async fn rejected_inputs() {
    let validator = Validator::new(config(80, 443, unused_nameserver())).unwrap();
    let cases: Vec<(&str, Identifier, ChallengeKind, &str, Want)> = vec![
        (
            "bad_wildcard_http",
            dns("*.example.test"),
            ChallengeKind::Http01,
            "tok",
            fail(ValidationErrorKind::RejectedIdentifier, &["wildcard", "dns-01"]),
        ),
        (
            "bad_ip_dns01",
            Identifier::Ip(IpAddr::from([127, 0, 0, 1])),
            ChallengeKind::Dns01,
            "tok",
            fail(ValidationErrorKind::RejectedIdentifier, &["127.0.0.1"]),
        ),
        (
            "bad_email",
            Identifier::email("a@example.test").unwrap(),
            ChallengeKind::Http01,
            "tok",
            fail(ValidationErrorKind::RejectedIdentifier, &["email"]),
        ),
        (
            "bad_token",
            dns("example.test"),
            ChallengeKind::Http01,
            "../../etc/passwd",
            fail(ValidationErrorKind::Malformed, &["token"]),
        ),
    ];
    for (case, identifier, kind, token, want) in &cases {
        let got = run(&validator, identifier, *kind, token).await;
        check(case, &got, want);
    }
    assert_eq!(
        ChallengeKind::from_str("tls-alpn-01").unwrap(),
        ChallengeKind::TlsAlpn01
    );
    assert_eq!(ChallengeKind::Dns01.name(), "dns-01");
}
