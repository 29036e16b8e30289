//! Integration tests: every challenge and CAA against real sockets on 127.0.0.1 — a small
//! HTTP/1.1 responder (optionally behind rustls), rustls tls-alpn-01 responders with rcgen
//! certificates, and an in-process hickory authoritative DNS server.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::digest;
use certgate_core::{DnsName, Identifier};
use certgate_validation::{
    Attempt, CaaConfig, ChallengeKind, ValidationConfig, ValidationError, ValidationErrorKind, ValidationRecord,
    Validator, dns01_digest,
};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::caa::KeyValue;
use hickory_server::proto::rr::rdata::{CAA, CNAME, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use rcgen::{CertificateParams, CustomExtension, KeyPair, SanType};
use rustls::ServerConfig;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

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

// ---------------------------------------------------------------------------------------------
// HTTP responder

struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn ok(body: impl Into<Vec<u8>>) -> Self {
        Self {
            status: 200,
            headers: vec![],
            body: body.into(),
        }
    }

    fn redirect(status: u16, location: impl Into<String>) -> Self {
        Self {
            status,
            headers: vec![("Location", location.into())],
            body: b"moved".to_vec(),
        }
    }
}

type Handler = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

struct HttpServer {
    port: u16,
    /// Request heads received, in order.
    requests: Arc<Mutex<Vec<String>>>,
    _task: Task,
}

/// An HTTP/1.1 responder answering each connection once, then closing it.
async fn http_server(tls: Option<TlsAcceptor>, handler: Handler) -> HttpServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let seen = requests.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let (handler, seen, tls) = (handler.clone(), seen.clone(), tls.clone());
            tokio::spawn(async move {
                match tls {
                    Some(acceptor) => {
                        if let Ok(stream) = acceptor.accept(stream).await {
                            answer(stream, &*handler, &seen).await;
                        }
                    }
                    None => answer(stream, &*handler, &seen).await,
                }
            });
        }
    });
    HttpServer {
        port,
        requests,
        _task: Task(task),
    }
}

async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    handler: &(dyn Fn(&str) -> Reply + Send + Sync),
    seen: &Mutex<Vec<String>>,
) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split(' ').nth(1).unwrap_or("/").to_owned();
    seen.lock().unwrap().push(head);
    let reply = handler(&path);
    let mut out = format!(
        "HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reply.body.len()
    );
    for (name, value) in &reply.headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    bytes.extend_from_slice(&reply.body);
    let _ = stream.write_all(&bytes).await;
    let _ = stream.shutdown().await;
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
fn http_handler(tls_port: u16) -> Handler {
    Arc::new(move |path: &str| {
        let Some(token) = path.strip_prefix("/.well-known/acme-challenge/") else {
            // /hop/<total>/<n>: redirect chains; /moved/<token>: a redirect's target.
            if let Some(rest) = path.strip_prefix("/hop/") {
                let mut parts = rest.split('/').map(|p| p.parse::<usize>().unwrap());
                let (total, n) = (parts.next().unwrap(), parts.next().unwrap());
                return if n < total {
                    Reply::redirect(302, format!("/hop/{total}/{}", n + 1))
                } else {
                    Reply::ok(key_authorization(&format!("chain{total}")))
                };
            }
            if let Some(token) = path.strip_prefix("/moved/") {
                return Reply::ok(key_authorization(token));
            }
            return Reply {
                status: 404,
                headers: vec![],
                body: b"no such path".to_vec(),
            };
        };
        let ka = key_authorization(token);
        match token {
            "wrong" => Reply::ok("wrong.thumbprint"),
            "missing" => Reply {
                status: 404,
                headers: vec![],
                body: b"<html>not found\n</html>".to_vec(),
            },
            "big" => Reply::ok(vec![b'a'; 20_000]),
            "newline" => Reply::ok(format!("{ka}\r\n")),
            "redirect" => Reply::redirect(302, "/moved/redirect"),
            "chain10" => Reply::redirect(301, "/hop/10/1"),
            "chain11" => Reply::redirect(307, "/hop/11/1"),
            "ftp" => Reply::redirect(302, "ftp://localhost/file"),
            "badport" => Reply::redirect(302, "http://localhost:1/x"),
            "nolocation" => Reply {
                status: 302,
                headers: vec![],
                body: vec![],
            },
            // The https server itself (tls_port 0) serves the key authorization.
            "https" if tls_port != 0 => Reply::redirect(
                308,
                format!("https://localhost:{tls_port}/.well-known/acme-challenge/https"),
            ),
            _ => Reply::ok(ka),
        }
    })
}

#[tokio::test]
async fn http01() {
    let (cert, key) = self_signed(CertificateParams::new(vec!["localhost".to_owned()]).unwrap());
    let acceptor = TlsAcceptor::from(server_config(cert, key, &[b"http/1.1"]));
    let https = http_server(Some(acceptor), http_handler(0)).await;
    let http = http_server(None, http_handler(https.port)).await;
    let validator = Validator::new(config(http.port, https.port, unused_nameserver())).unwrap();
    let localhost = dns("localhost");
    let url = |token: &str| format!("http://localhost:{}/.well-known/acme-challenge/{token}", http.port);
    let redirect_fail = |frag: &str| fail(ValidationErrorKind::Connection, &["redirect from", frag]);

    let cases: Vec<(&str, &str, Want)> = vec![
        ("good", "good", Want::Pass),
        ("good_trailing_newline", "newline", Want::Pass),
        (
            "bad_wrong_body",
            "wrong",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &[&url("wrong"), "127.0.0.1", "got \"wrong.thumbprint\""],
            ),
        ),
        (
            "bad_404",
            "missing",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &["404 Not Found", "\"<html>not found\\n</html>\""],
            ),
        ),
        (
            "bad_body_over_cap",
            "big",
            fail(ValidationErrorKind::IncorrectResponse, &["longer than 16384 bytes"]),
        ),
        ("good_redirect_other_path", "redirect", Want::Pass),
        ("good_10_redirects", "chain10", Want::Pass),
        (
            "bad_11_redirects",
            "chain11",
            fail(ValidationErrorKind::Connection, &["too many redirects", "at most 10"]),
        ),
        (
            "bad_redirect_ftp",
            "ftp",
            redirect_fail("scheme \"ftp\" is not followed"),
        ),
        ("bad_redirect_port", "badport", redirect_fail("port 1 is not followed")),
        (
            "bad_redirect_no_location",
            "nolocation",
            fail(ValidationErrorKind::Malformed, &["without a Location header"]),
        ),
        ("good_redirect_to_https", "https", Want::Pass),
    ];
    for (case, token, want) in &cases {
        let got = run(&validator, &localhost, ChallengeKind::Http01, token).await;
        check(case, &got, want);
    }

    // What the record says and what the server saw.
    let record = run(&validator, &localhost, ChallengeKind::Http01, "good")
        .await
        .unwrap();
    assert_eq!(record.url.as_deref(), Some(url("good").as_str()));
    assert_eq!(record.hostname, "localhost");
    assert_eq!(record.port, Some(http.port));
    assert_eq!(record.address_used, Some(IpAddr::from([127, 0, 0, 1])));
    assert!(record.addresses_resolved.contains(&IpAddr::from([127, 0, 0, 1])));
    let head = http.requests.lock().unwrap().last().unwrap().to_ascii_lowercase();
    assert!(
        head.starts_with("get /.well-known/acme-challenge/good http/1.1\r\n"),
        "{head}"
    );
    assert!(head.contains("user-agent: certgate-validation\r\n"), "{head}");
    assert!(head.contains(&format!("host: localhost:{}\r\n", http.port)), "{head}");

    // After redirects, the record describes the last request.
    let record = run(&validator, &localhost, ChallengeKind::Http01, "https")
        .await
        .unwrap();
    let https_url = format!("https://localhost:{}/.well-known/acme-challenge/https", https.port);
    assert_eq!(record.url.as_deref(), Some(https_url.as_str()));
    assert_eq!(
        https.requests.lock().unwrap().len(),
        2,
        "the https server was asked once per validation"
    );
}

#[tokio::test]
async fn http01_ip_identifier() {
    let http = http_server(None, http_handler(0)).await;
    let validator = Validator::new(config(http.port, 443, unused_nameserver())).unwrap();
    let ip = Identifier::Ip(IpAddr::from([127, 0, 0, 1]));
    let record = run(&validator, &ip, ChallengeKind::Http01, "good").await.unwrap();
    let url = format!("http://127.0.0.1:{}/.well-known/acme-challenge/good", http.port);
    assert_eq!(record.url.as_deref(), Some(url.as_str()));
    assert_eq!(record.addresses_resolved, vec![IpAddr::from([127, 0, 0, 1])]);
    let head = http.requests.lock().unwrap().last().unwrap().to_ascii_lowercase();
    assert!(head.contains(&format!("host: 127.0.0.1:{}\r\n", http.port)), "{head}");
}

#[tokio::test]
async fn http01_connection_failures() {
    // A port nothing listens on: bind, note the port, close.
    let closed_port = {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let validator = Validator::new(config(closed_port, 443, unused_nameserver())).unwrap();
    let got = run(&validator, &dns("localhost"), ChallengeKind::Http01, "good").await;
    let expected = format!(
        "connecting to 127.0.0.1:{closed_port} for http://localhost:{closed_port}/.well-known/acme-challenge/good: \
         connection refused"
    );
    check(
        "bad_refused",
        &got,
        &fail(ValidationErrorKind::Connection, &[&expected]),
    );
    let record = got.unwrap_err().record.unwrap();
    assert_eq!(record.address_used, None);
    assert!(record.addresses_resolved.contains(&IpAddr::from([127, 0, 0, 1])));

    let got = run(&validator, &dns("no-such-host.invalid"), ChallengeKind::Http01, "good").await;
    check(
        "bad_unresolvable",
        &got,
        &fail(ValidationErrorKind::Dns, &["resolving no-such-host.invalid"]),
    );
}

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

// ---------------------------------------------------------------------------------------------
// tls-alpn-01 responder

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
                &["DNS name \"other.test\", not localhost"],
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
        &fail(ValidationErrorKind::IncorrectResponse, &["not 127.0.0.1"]),
    );
}

// ---------------------------------------------------------------------------------------------
// In-process authoritative DNS for the zone `test.`

struct DnsServer {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    _server: Server<Catalog>,
}

fn name(text: &str) -> Name {
    Name::from_str(text).unwrap()
}

fn record(owner: &str, data: RData) -> Record {
    Record::from_rdata(name(owner), 60, data)
}

fn txt(owner: &str, value: &str) -> Record {
    record(owner, RData::TXT(TXT::new(vec![value.to_owned()])))
}

fn issue(owner: &str, ca: Option<&str>, params: &[(&str, &str)]) -> Record {
    let params = params.iter().map(|(k, v)| KeyValue::new(*k, *v)).collect();
    record(owner, RData::CAA(CAA::new_issue(false, ca.map(name), params)))
}

fn issuewild(owner: &str, ca: Option<&str>) -> Record {
    record(owner, RData::CAA(CAA::new_issuewild(false, ca.map(name), vec![])))
}

async fn dns_server(records: Vec<Record>) -> DnsServer {
    let origin = name("test.");
    let mut zone =
        InMemoryZoneHandler::<TokioRuntimeProvider>::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
    let soa = SOA::new(name("ns.test."), name("hostmaster.test."), 1, 3600, 600, 86400, 60);
    zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
    for record in records {
        zone.upsert_mut(record, 1);
    }
    let zone = Arc::new(zone);
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::from(origin), vec![zone.clone() as Arc<dyn ZoneHandler>]);
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let mut server = Server::new(catalog);
    server.register_socket(socket);
    // TCP on the same port, for truncated answers; best effort (the port may be taken for TCP).
    if let Ok(listener) = TcpListener::bind(addr).await {
        server.register_listener(listener, TIMEOUT, 4096);
    }
    DnsServer {
        addr,
        zone,
        _server: server,
    }
}

#[tokio::test]
async fn dns01() {
    let server = dns_server(vec![
        txt("_acme-challenge.pass.test.", &dns01_digest(&key_authorization("pass"))),
        txt("_acme-challenge.pass.test.", "an unrelated value"),
        txt("_acme-challenge.wrong.test.", "value-1"),
        txt("_acme-challenge.wrong.test.", "value-2"),
        txt("_acme-challenge.wrong.test.", "value-3"),
        txt("_acme-challenge.wrong.test.", "value-4"),
        record(
            "_acme-challenge.cname.test.",
            RData::CNAME(CNAME(name("delegated.validation.test."))),
        ),
        txt("delegated.validation.test.", &dns01_digest(&key_authorization("cname"))),
        txt("_acme-challenge.wild.test.", &dns01_digest(&key_authorization("wild"))),
        txt("exists.test.", "a TXT record that is not a challenge"),
    ])
    .await;
    let validator = Validator::new(config(80, 443, server.addr)).unwrap();
    let cases: Vec<(&str, &str, &str, Want)> = vec![
        ("good", "pass.test", "pass", Want::Pass),
        (
            "bad_wrong_values",
            "wrong.test",
            "wrong",
            fail(
                ValidationErrorKind::IncorrectResponse,
                &["_acme-challenge.wrong.test", "\"value-", "and 1 more"],
            ),
        ),
        (
            "bad_missing",
            "missing.test",
            "missing",
            fail(
                ValidationErrorKind::Dns,
                &["no TXT record at _acme-challenge.missing.test"],
            ),
        ),
        ("good_cname", "cname.test", "cname", Want::Pass),
        ("good_wildcard_uses_base_name", "*.wild.test", "wild", Want::Pass),
        (
            "bad_wildcard_other_key",
            "*.wild.test",
            "other",
            fail(ValidationErrorKind::IncorrectResponse, &["_acme-challenge.wild.test"]),
        ),
    ];
    for (case, identifier, token, want) in &cases {
        let got = run(&validator, &dns(identifier), ChallengeKind::Dns01, token).await;
        check(case, &got, want);
    }
    let record = run(&validator, &dns("pass.test"), ChallengeKind::Dns01, "pass")
        .await
        .unwrap();
    assert_eq!(record.hostname, "pass.test");

    // No cache: each retry sees the zone as it is now.
    let later = dns("later.test");
    let owner = "_acme-challenge.later.test.";
    let got = run(&validator, &later, ChallengeKind::Dns01, "later").await;
    check(
        "later_missing",
        &got,
        &fail(ValidationErrorKind::Dns, &["no TXT record"]),
    );
    server.zone.upsert(txt(owner, "stale"), 2).await;
    let got = run(&validator, &later, ChallengeKind::Dns01, "later").await;
    check(
        "later_wrong",
        &got,
        &fail(ValidationErrorKind::IncorrectResponse, &["\"stale\""]),
    );
    server
        .zone
        .upsert(txt(owner, &dns01_digest(&key_authorization("later"))), 3)
        .await;
    let got = run(&validator, &later, ChallengeKind::Dns01, "later").await;
    check("later_present", &got, &Want::Pass);
}

#[tokio::test]
async fn dns01_server_down() {
    // Nothing answers: a Dns error within the timeout, not a hang.
    let validator = Validator::new(ValidationConfig {
        timeout: Duration::from_millis(500),
        ..config(80, 443, unused_nameserver())
    })
    .unwrap();
    let got = run(&validator, &dns("pass.test"), ChallengeKind::Dns01, "pass").await;
    check(
        "bad_no_server",
        &got,
        &fail(ValidationErrorKind::Dns, &["_acme-challenge.pass.test"]),
    );
}

// ---------------------------------------------------------------------------------------------
// CAA

#[tokio::test]
async fn caa() {
    let account = "https://ca.test/acme/acct/1";
    let mut unknown_critical = CAA::new_issue(true, None, vec![]);
    unknown_critical.tag = "tbs".to_owned();
    unknown_critical.value = b"future".to_vec();
    let server = dns_server(vec![
        issue("good.test.", Some("certgate.test"), &[]),
        issue("other.test.", Some("other.example"), &[]),
        issue("wild.test.", Some("certgate.test"), &[]),
        issuewild("wild.test.", None),
        issue("wildok.test.", None, &[]),
        issuewild("wildok.test.", Some("certgate.test")),
        issue("acct.test.", Some("certgate.test"), &[("accounturi", account)]),
        issue(
            "methods.test.",
            Some("certgate.test"),
            &[("validationmethods", "dns-01,tls-alpn-01")],
        ),
        issue("critical.test.", Some("certgate.test"), &[]),
        record("critical.test.", RData::CAA(unknown_critical)),
        issue("parent.test.", Some("other.example"), &[]),
        issue("child.parent.test.", Some("certgate.test"), &[]),
        txt("www.nocaa.test.", "some other record"),
    ])
    .await;
    let validator = Validator::new(ValidationConfig {
        caa: Some(CaaConfig {
            identities: vec!["certgate.test".to_owned()],
        }),
        ..config(80, 443, server.addr)
    })
    .unwrap();
    let http = ChallengeKind::Http01;
    let dns01 = ChallengeKind::Dns01;
    let refused = |fragments: &[&str]| fail(ValidationErrorKind::Caa, fragments);
    let cases: Vec<(&str, &str, bool, &str, ChallengeKind, Want)> = vec![
        ("good_no_caa", "www.nocaa.test", false, account, http, Want::Pass),
        (
            "good_no_caa_wildcard",
            "*.nocaa.test",
            false,
            account,
            dns01,
            Want::Pass,
        ),
        ("good_issue", "good.test", false, account, http, Want::Pass),
        ("good_issue_climbed", "a.b.good.test", false, account, http, Want::Pass),
        (
            "bad_other_ca",
            "other.test",
            false,
            account,
            http,
            refused(&["at other.test", "\"other.example\""]),
        ),
        (
            "good_issuewild_not_for_plain",
            "www.wild.test",
            false,
            account,
            http,
            Want::Pass,
        ),
        (
            "bad_issuewild_for_wildcard",
            "*.wild.test",
            false,
            account,
            dns01,
            refused(&["issuewild"]),
        ),
        (
            "bad_issuewild_flag",
            "wild.test",
            true,
            account,
            dns01,
            refused(&["issuewild"]),
        ),
        (
            "good_issuewild_allows_wildcard",
            "*.wildok.test",
            false,
            account,
            dns01,
            Want::Pass,
        ),
        (
            "bad_issue_none_for_plain",
            "wildok.test",
            false,
            account,
            dns01,
            refused(&["no issue record"]),
        ),
        ("good_accounturi", "acct.test", false, account, http, Want::Pass),
        (
            "bad_accounturi",
            "acct.test",
            false,
            "https://ca.test/acme/acct/2",
            http,
            refused(&["accounturi names another account"]),
        ),
        (
            "good_validationmethods",
            "methods.test",
            false,
            account,
            dns01,
            Want::Pass,
        ),
        (
            "bad_validationmethods",
            "methods.test",
            false,
            account,
            http,
            refused(&["validationmethods does not include http-01"]),
        ),
        (
            "bad_unknown_critical",
            "critical.test",
            false,
            account,
            http,
            refused(&["128 tbs \"future\""]),
        ),
        (
            "bad_parent_found_by_climbing",
            "x.y.parent.test",
            false,
            account,
            http,
            refused(&["at parent.test"]),
        ),
        (
            "good_child_overrides_parent",
            "www.child.parent.test",
            false,
            account,
            http,
            Want::Pass,
        ),
    ];
    for (case, target, wildcard, account_uri, method, want) in &cases {
        let got = validator
            .check_caa(&DnsName::new(target).unwrap(), *wildcard, account_uri, *method)
            .await
            .map(|()| dummy_record());
        check(case, &got, want);
    }

    // Without a CaaConfig nothing is looked up.
    let off = Validator::new(config(80, 443, unused_nameserver())).unwrap();
    let name = DnsName::new("other.test").unwrap();
    off.check_caa(&name, false, account, http).await.unwrap();
}

fn dummy_record() -> ValidationRecord {
    ValidationRecord {
        url: None,
        hostname: String::new(),
        port: None,
        addresses_resolved: vec![],
        address_used: None,
    }
}
