//! tls-alpn-01 against rustls responders with rcgen certificates.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use certgate_core::Identifier;
use certgate_validation::{ChallengeKind, ValidationErrorKind, Validator};
use rcgen::{CertificateParams, CustomExtension, SanType};
use rustls::ServerConfig;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::{
    Task, Want, check, config, dns, fail, key_authorization, run, self_signed, server_config, server_config_versions,
    unused_nameserver,
};

struct TlsAlpnServer {
    port: u16,
    /// The SNI of each handshake.
    snis: Arc<Mutex<Vec<Option<String>>>>,
    _task: Task,
}

async fn tls_alpn_server(config: Arc<ServerConfig>) -> TlsAlpnServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let snis = Arc::new(Mutex::new(Vec::new()));
    let seen = snis.clone();
    let acceptor = TlsAcceptor::from(config);
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, seen) = (acceptor.clone(), seen.clone());
            tokio::spawn(async move {
                let start = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream);
                let Ok(start) = start.await else { return };
                seen.lock()
                    .unwrap()
                    .push(start.client_hello().server_name().map(str::to_owned));
                let Ok(mut stream) = start.into_stream(acceptor.config().clone()).await else {
                    return;
                };
                let _ = stream.shutdown().await;
            });
        }
    });
    TlsAlpnServer {
        port,
        snis,
        _task: Task(task),
    }
}

/// An RFC 8737 certificate: one SAN and the critical acmeIdentifier extension.
fn acme_cert(san: SanType, key_authorization: &str) -> (CertificateDer<'static>, PrivateKeyDer<'static>) {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![san];
    let digest = digest::digest(&digest::SHA256, key_authorization.as_bytes());
    params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest.as_ref())];
    self_signed(params)
}

fn localhost_san() -> SanType {
    SanType::DnsName("localhost".try_into().unwrap())
}

#[tokio::test]
async fn tls_alpn01() {
    let ka = key_authorization("alpn");
    let acme_alpn: &[&[u8]] = &[b"acme-tls/1"];
    let no_extension = {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![localhost_san()];
        self_signed(params)
    };
    let two_sans = {
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![localhost_san(), SanType::DnsName("other.test".try_into().unwrap())];
        let digest = digest::digest(&digest::SHA256, ka.as_bytes());
        params.custom_extensions = vec![CustomExtension::new_acme_identifier(digest.as_ref())];
        self_signed(params)
    };
    let ((c1, k1), (c2, k2), (c3, k3), (c4, k4)) = (
        acme_cert(localhost_san(), &ka),
        acme_cert(localhost_san(), "someone else's key authorization"),
        acme_cert(SanType::DnsName("other.test".try_into().unwrap()), &ka),
        acme_cert(localhost_san(), &ka),
    );
    let (c5, k5) = acme_cert(localhost_san(), &ka);
    let (c6, k6) = acme_cert(localhost_san(), &ka);
    // The server does not hold the certificate's key: the handshake signature must fail.
    let (c7, _) = acme_cert(localhost_san(), &ka);
    let (_, other_key) = acme_cert(localhost_san(), &ka);
    let (c8, _) = acme_cert(localhost_san(), &ka);
    let (_, other_key_tls12) = acme_cert(localhost_san(), &ka);
    let cases: Vec<(&str, Arc<ServerConfig>, Want)> = vec![
        ("good", server_config(c1, k1, acme_alpn), Want::Pass),
        (
            "good_tls12",
            server_config_versions(c6, k6, acme_alpn, &[&rustls::version::TLS12]),
            Want::Pass,
        ),
        (
            "bad_key_not_held",
            server_config(c7, other_key, acme_alpn),
            fail(
                ValidationErrorKind::Tls,
                &["TLS handshake offering ALPN acme-tls/1 failed"],
            ),
        ),
        (
            "bad_key_not_held_tls12",
            server_config_versions(c8, other_key_tls12, acme_alpn, &[&rustls::version::TLS12]),
            fail(
                ValidationErrorKind::Tls,
                &["TLS handshake offering ALPN acme-tls/1 failed"],
            ),
        ),
        (
            "bad_wrong_digest",
            server_config(c2, k2, acme_alpn),
            fail(
                ValidationErrorKind::IncorrectResponse,
                &["acmeIdentifier", "SHA-256 of the key authorization"],
            ),
        ),
        (
            "bad_wrong_san",
            server_config(c3, k3, acme_alpn),
            fail(
                ValidationErrorKind::IncorrectResponse,
                &["names another DNS name instead of localhost"],
            ),
        ),
        (
            "bad_two_sans",
            server_config(two_sans.0, two_sans.1, acme_alpn),
            fail(ValidationErrorKind::IncorrectResponse, &["2 subjectAltName entries"]),
        ),
        (
            "bad_no_extension",
            server_config(no_extension.0, no_extension.1, acme_alpn),
            fail(ValidationErrorKind::IncorrectResponse, &["no acmeIdentifier extension"]),
        ),
        (
            "bad_server_offers_other_alpn",
            server_config(c4, k4, &[b"http/1.1"]),
            fail(
                ValidationErrorKind::Tls,
                &["TLS handshake offering ALPN acme-tls/1 failed"],
            ),
        ),
        (
            "bad_server_without_alpn",
            server_config(c5, k5, &[]),
            fail(ValidationErrorKind::Tls, &["did not negotiate ALPN acme-tls/1"]),
        ),
    ];
    for (case, server, want) in cases {
        let server = tls_alpn_server(server).await;
        let validator = Validator::new(config(80, server.port, unused_nameserver())).unwrap();
        let got = run(&validator, &dns("localhost"), ChallengeKind::TlsAlpn01, "alpn").await;
        check(case, &got, &want);
        if case == "good" {
            let record = got.unwrap();
            assert_eq!(record.port, Some(server.port));
            assert_eq!(record.url, None);
            assert_eq!(record.address_used, Some(IpAddr::from([127, 0, 0, 1])));
            assert_eq!(server.snis.lock().unwrap().as_slice(), [Some("localhost".to_owned())]);
        }
    }
}

#[tokio::test]
async fn tls_alpn01_ip_identifier() {
    let ka = key_authorization("alpn");
    let ip = IpAddr::from([127, 0, 0, 1]);
    let (cert, key) = acme_cert(SanType::IpAddress(ip), &ka);
    let server = tls_alpn_server(server_config(cert, key, &[b"acme-tls/1"])).await;
    let validator = Validator::new(config(80, server.port, unused_nameserver())).unwrap();
    run(&validator, &Identifier::Ip(ip), ChallengeKind::TlsAlpn01, "alpn")
        .await
        .unwrap();
    // RFC 8738 6: the SNI is the reverse-DNS name of the address.
    assert_eq!(
        server.snis.lock().unwrap().as_slice(),
        [Some("1.0.0.127.in-addr.arpa".to_owned())]
    );

    // A certificate for a DNS name does not prove an IP address.
    let (cert, key) = acme_cert(localhost_san(), &ka);
    let server = tls_alpn_server(server_config(cert, key, &[b"acme-tls/1"])).await;
    let validator = Validator::new(config(80, server.port, unused_nameserver())).unwrap();
    let got = run(&validator, &Identifier::Ip(ip), ChallengeKind::TlsAlpn01, "alpn").await;
    check(
        "bad_dns_san_for_ip",
        &got,
        &fail(
            ValidationErrorKind::IncorrectResponse,
            &["another DNS name instead of 127.0.0.1"],
        ),
    );
}
