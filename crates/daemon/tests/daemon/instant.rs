//! instant-acme, a Rust ACME client, drives the built daemon over real HTTPS (trusting only the
//! daemon's root): dns-01 against an in-process authoritative DNS server (hickory) for names
//! under `certgate.test.`, wildcards, an IP identifier (127.0.0.1, http-01 answered by the
//! test), EAB, keyChange, account deactivation, the orders list, ARI with `replaces`,
//! notAfter, profiles, and revocation signed by the certificate's own key.
//!
//! The test names resolve to 127.0.0.1 in the zone the test serves, and certgate asks that
//! server (`dns_nameservers`); nothing touches the system resolver. What instant-acme 0.8
//! cannot express (the orders list, newOrder with notAfter, revokeCert signed by the
//! certificate's key) is sent as a hand-signed ES256 JWS through the same HTTP client.

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use certgate_test_support::{csr, openssl_verify, pkilint, unwaived, write_pem};
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use hyper::body::Bytes;
use hyper::http::{Method, Request, header};
use hyper_util::rt::TokioIo;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, BodyWrapper, BytesResponse, CertificateIdentifier, ChallengeType,
    ExternalAccountKey, HttpClient, Identifier, Key, NewAccount, NewOrder, Order, OrderStatus, Problem, RetryPolicy,
    RevocationReason, RevocationRequest,
};
use rustls::RootCertStore;
use rustls::crypto::aws_lc_rs::default_provider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_rustls::TlsConnector;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::Daemon;

const ZONE: &str = "certgate.test.";

/// Polls orders briefly and often; validation and issuance on loopback take well under a second.
fn polling() -> RetryPolicy {
    RetryPolicy::new()
        .initial_delay(Duration::from_millis(100))
        .backoff(1.5)
        .timeout(Duration::from_secs(20))
}

/// One ACME endpoint "default" validating http-01 on `http01_port` and dns-01 (and CAA) against
/// the test's DNS server; `endpoint_extra` goes into `[[endpoints]]`, `acme_extra` into
/// `[endpoints.acme]`.
fn config(http01_port: u16, dns: SocketAddr, endpoint_extra: &str, acme_extra: &str) -> String {
    format!(
        "[[issuers]]\nname = \"default\"\ncreate_if_missing = true\n\
         [[endpoints]]\nprotocol = \"acme\"\nname = \"default\"\n{endpoint_extra}\
         [endpoints.acme]\nhttp01_port = {http01_port}\ndns_nameservers = [\"{dns}\"]\nfinalize_wait_ms = 10000\n{acme_extra}"
    )
}

fn directory_url(daemon: &Daemon) -> String {
    format!("{}/acme/default/directory", daemon.https)
}

fn dns(name: &str) -> Identifier {
    Identifier::Dns(name.to_owned())
}

// ---------------------------------------------------------------------------------------------
// HTTPS client for instant-acme: trusts only the daemon's root, one connection per request.

#[derive(Clone)]
struct Https {
    tls: TlsConnector,
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> instant_acme::Error {
    instant_acme::Error::Other(Box::new(e))
}

impl Https {
    fn trusting(root_pem: &Path) -> Self {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(root_pem).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        Self {
            tls: TlsConnector::from(Arc::new(config)),
        }
    }

    async fn send(self, request: Request<BodyWrapper<Bytes>>) -> Result<BytesResponse, instant_acme::Error> {
        let (mut parts, body) = request.into_parts();
        let authority = parts.uri.authority().ok_or("no authority in the URL")?.clone();
        let port = authority.port_u16().unwrap_or(443);
        let tcp = TcpStream::connect((authority.host(), port)).await.map_err(other)?;
        tcp.set_nodelay(true).map_err(other)?;
        let server_name = ServerName::try_from(authority.host().to_owned()).map_err(other)?;
        let tls = self.tls.connect(server_name, tcp).await.map_err(other)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(other)?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let origin_form = parts.uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
        parts.uri = origin_form.parse()?;
        parts
            .headers
            .insert(header::HOST, authority.as_str().parse().map_err(other)?);
        let response = sender
            .send_request(Request::from_parts(parts, body))
            .await
            .map_err(other)?;
        Ok(BytesResponse::from(response))
    }
}

impl HttpClient for Https {
    fn request(
        &self,
        request: Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        Box::pin(self.clone().send(request))
    }
}

fn builder(daemon: &Daemon) -> instant_acme::AccountBuilder {
    Account::builder_with_http(Box::new(Https::trusting(&daemon.root)))
}

fn agreeing() -> NewAccount<'static> {
    NewAccount {
        contact: &[],
        terms_of_service_agreed: true,
        only_return_existing: false,
    }
}

/// The problem document a refused request returned.
fn refused<T>(result: Result<T, instant_acme::Error>, what: &str) -> Problem {
    match result {
        Err(instant_acme::Error::Api(problem)) => problem,
        Err(e) => panic!("{what}: failed without a problem document: {e}"),
        Ok(_) => panic!("{what}: accepted, but should have been refused"),
    }
}

fn assert_problem(problem: &Problem, kind: &str, what: &str) {
    assert_eq!(
        problem.r#type.as_deref(),
        Some(format!("urn:ietf:params:acme:error:{kind}").as_str()),
        "{what}: {problem:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-signed requests, for what instant-acme cannot express.

/// An ES256 key signing ACME requests by hand.
struct JwsKey {
    key: EcdsaKeyPair,
    jwk: Value,
}

impl JwsKey {
    fn from_pkcs8(der: &[u8]) -> Self {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).unwrap();
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = key.public_key().as_ref().to_vec();
        assert_eq!(point.len(), 65, "a P-256 public key");
        let jwk = json!({
            "crv": "P-256",
            "kty": "EC",
            "x": B64URL.encode(&point[1..33]),
            "y": B64URL.encode(&point[33..]),
        });
        Self { key, jwk }
    }

    fn of_account(credentials: &AccountCredentials) -> Self {
        Self::from_pkcs8(credentials.private_key().secret_pkcs8_der())
    }

    /// A flattened JWS signed with `kid` when given, else with this key as `jwk`; `None` as
    /// payload makes a POST-as-GET.
    fn sign(&self, kid: Option<&str>, nonce: &str, url: &str, payload: Option<&Value>) -> Vec<u8> {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match kid {
            Some(kid) => protected["kid"] = json!(kid),
            None => protected["jwk"] = self.jwk.clone(),
        }
        let protected = B64URL.encode(protected.to_string());
        let payload = payload.map(|p| B64URL.encode(p.to_string())).unwrap_or_default();
        let signature = self
            .key
            .sign(&SystemRandom::new(), format!("{protected}.{payload}").as_bytes())
            .unwrap();
        serde_json::to_vec(&json!({
            "protected": protected,
            "payload": payload,
            "signature": B64URL.encode(signature.as_ref()),
        }))
        .unwrap()
    }
}

/// A raw ACME conversation over the same HTTPS client.
struct Raw {
    http: Https,
    directory: Value,
}

/// A raw answer: status, headers, JSON body (`Null` when empty).
struct RawResponse {
    status: u16,
    headers: hyper::http::HeaderMap,
    body: Value,
}

impl Raw {
    async fn new(daemon: &Daemon) -> Self {
        let http = Https::trusting(&daemon.root);
        let request = Request::get(directory_url(daemon))
            .body(BodyWrapper::default())
            .unwrap();
        let response = Self::read(http.clone().send(request).await.unwrap()).await;
        assert_eq!(response.status, 200, "directory: {}", response.body);
        Self {
            http,
            directory: response.body,
        }
    }

    async fn read(response: BytesResponse) -> RawResponse {
        let BytesResponse { parts, mut body } = response;
        let bytes = body.into_bytes().await.unwrap();
        RawResponse {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body: if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
            },
        }
    }

    fn url(&self, resource: &str) -> String {
        self.directory[resource].as_str().unwrap().to_owned()
    }

    async fn nonce(&self) -> String {
        let request = Request::builder()
            .method(Method::HEAD)
            .uri(self.url("newNonce"))
            .body(BodyWrapper::default())
            .unwrap();
        let response = self.http.clone().send(request).await.unwrap();
        response.parts.headers["replay-nonce"].to_str().unwrap().to_owned()
    }

    async fn post(&self, key: &JwsKey, kid: Option<&str>, url: &str, payload: Option<&Value>) -> RawResponse {
        let body = key.sign(kid, &self.nonce().await, url, payload);
        let request = Request::post(url)
            .header(header::CONTENT_TYPE, "application/jose+json")
            .body(BodyWrapper::from(body))
            .unwrap();
        Self::read(self.http.clone().send(request).await.unwrap()).await
    }
}

// ---------------------------------------------------------------------------------------------
// The test's own DNS zone and http-01 responder.

/// An authoritative server for `certgate.test.` on an ephemeral loopback port (UDP, and TCP
/// on the same port when free).
struct Dns {
    addr: SocketAddr,
    zone: Arc<InMemoryZoneHandler<TokioRuntimeProvider>>,
    _server: Server<Catalog>,
}

fn owner(text: &str) -> Name {
    Name::from_str(text).unwrap()
}

impl Dns {
    /// Serves the zone with A records 127.0.0.1 for `hosts`.
    async fn start(hosts: &[&str]) -> Self {
        let origin = owner(ZONE);
        let mut zone =
            InMemoryZoneHandler::<TokioRuntimeProvider>::empty(origin.clone(), ZoneType::Primary, AxfrPolicy::Deny);
        let soa = SOA::new(
            owner("ns.certgate.test."),
            owner("hostmaster.certgate.test."),
            1,
            3600,
            600,
            86400,
            60,
        );
        zone.upsert_mut(Record::from_rdata(origin.clone(), 60, RData::SOA(soa)), 1);
        for host in hosts {
            let a = RData::A(A::from(Ipv4Addr::LOCALHOST));
            zone.upsert_mut(Record::from_rdata(owner(&format!("{host}.")), 60, a), 1);
        }
        let zone = Arc::new(zone);
        let mut catalog = Catalog::new();
        catalog.upsert(LowerName::from(origin), vec![zone.clone() as Arc<dyn ZoneHandler>]);
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let mut server = Server::new(catalog);
        server.register_socket(socket);
        if let Ok(listener) = TcpListener::bind(addr).await {
            server.register_listener(listener, Duration::from_secs(5), 4096);
        }
        Self {
            addr,
            zone,
            _server: server,
        }
    }

    /// Adds a TXT value at `_acme-challenge.<name>` (values for one name accumulate).
    async fn add_challenge(&self, name: &str, value: &str) {
        let record = Record::from_rdata(
            owner(&format!("_acme-challenge.{name}.")),
            60,
            RData::TXT(TXT::new(vec![value.to_owned()])),
        );
        self.zone.upsert(record, 2).await;
    }
}

/// Answers `GET /.well-known/acme-challenge/<token>` on a loopback port with the key
/// authorizations the test registered.
struct Http01 {
    port: u16,
    answers: Arc<Mutex<HashMap<String, String>>>,
}

impl Http01 {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let answers: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = Arc::clone(&answers);
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let served = Arc::clone(&served);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                        match stream.read(&mut buffer).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buffer[..n]),
                        }
                    }
                    let text = String::from_utf8_lossy(&head);
                    let answer = text
                        .split_whitespace()
                        .nth(1)
                        .and_then(|path| path.strip_prefix("/.well-known/acme-challenge/"))
                        .and_then(|token| served.lock().unwrap().get(token).cloned());
                    let response = match answer {
                        Some(body) => format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = stream.write_all(response.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { port, answers }
    }

    fn serve(&self, token: &str, key_authorization: &str) {
        self.answers
            .lock()
            .unwrap()
            .insert(token.to_owned(), key_authorization.to_owned());
    }
}

/// The test's DNS server and http-01 responder, and a daemon validating against them.
struct Setup {
    daemon: Daemon,
    dns: Dns,
    http01: Http01,
}

impl Setup {
    async fn start(hosts: &[&str], endpoint_extra: &str, acme_extra: &str) -> Self {
        let dns = Dns::start(hosts).await;
        let http01 = Http01::start().await;
        let daemon = Daemon::start(&config(http01.port, dns.addr, endpoint_extra, acme_extra));
        Self { daemon, dns, http01 }
    }

    async fn account(&self) -> (Account, AccountCredentials) {
        builder(&self.daemon)
            .create(&agreeing(), directory_url(&self.daemon), None)
            .await
            .unwrap()
    }

    /// Answers every pending authorization of `order` (dns-01 for names, http-01 for
    /// addresses) and waits until the order is ready.
    async fn authorize(&self, order: &mut Order) {
        let mut authorizations = order.authorizations();
        while let Some(authorization) = authorizations.next().await {
            let mut authorization = authorization.unwrap();
            if authorization.status == AuthorizationStatus::Valid {
                continue;
            }
            let identifier = authorization.identifier().identifier.clone();
            let offered: Vec<ChallengeType> = authorization.challenges.iter().map(|c| c.r#type.clone()).collect();
            if authorization.wildcard {
                assert_eq!(offered, [ChallengeType::Dns01], "a wildcard validates only with dns-01");
            }
            let kind = match identifier {
                Identifier::Ip(_) => ChallengeType::Http01,
                _ => ChallengeType::Dns01,
            };
            let mut challenge = authorization
                .challenge(kind.clone())
                .unwrap_or_else(|| panic!("{identifier:?} offers no {kind:?}: {offered:?}"));
            let key_authorization = challenge.key_authorization();
            match &identifier {
                Identifier::Dns(name) => self.dns.add_challenge(name, &key_authorization.dns_value()).await,
                _ => self.http01.serve(&challenge.token, key_authorization.as_str()),
            }
            challenge.set_ready().await.unwrap();
        }
        let status = order.poll_ready(&polling()).await.unwrap();
        assert_eq!(status, OrderStatus::Ready, "{:?}", order.state());
    }

    /// Finalizes a ready order with a fresh P-256 key for `names`; returns the key and the
    /// chain (leaf first, DER).
    async fn finalize(&self, order: &mut Order, names: &[&str]) -> (rcgen::KeyPair, Vec<Vec<u8>>) {
        let key = rcgen::KeyPair::generate().unwrap();
        order.finalize_csr(&csr(&key, None, names)).await.unwrap();
        let pem = order.poll_certificate(&polling()).await.unwrap();
        let chain: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|c| c.unwrap().to_vec())
            .collect();
        assert!(chain.len() >= 2, "leaf and issuer: {pem}");
        (key, chain)
    }

    /// A new order for `names` (dns-01 for names, http-01 for IP addresses), authorized and
    /// finalized.
    async fn obtain(&self, account: &Account, names: &[&str]) -> (rcgen::KeyPair, Vec<Vec<u8>>) {
        let identifiers: Vec<Identifier> = names
            .iter()
            .map(|n| match n.parse::<IpAddr>() {
                Ok(ip) => Identifier::Ip(ip),
                Err(_) => dns(n),
            })
            .collect();
        let mut order = account.new_order(&NewOrder::new(&identifiers)).await.unwrap();
        self.authorize(&mut order).await;
        self.finalize(&mut order, names).await
    }

    /// `certgate cert show SERIAL` as JSON.
    fn inventory(&self, serial: &str) -> Value {
        let (ok, out, err) = self.daemon.cli(&["cert", "show", serial]);
        assert!(ok, "cert show {serial}: {out}{err}");
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("cert show prints JSON ({e}): {out}"))
    }

    /// openssl verify (with the chain the server sent) and pkilint on an issued leaf.
    fn check_issued(&self, chain: &[Vec<u8>], purpose: &str, server_auth: bool) {
        let dir = self.daemon.dir.path();
        let (leaf, intermediates) = (dir.join("instant-leaf.pem"), dir.join("instant-chain.pem"));
        write_pem(&leaf, &[&chain[0]]);
        let rest: Vec<&[u8]> = chain[1..].iter().map(Vec::as_slice).collect();
        write_pem(&intermediates, &rest);
        openssl_verify(&self.daemon.root, &intermediates, &leaf, Some(purpose)).unwrap();
        let findings = unwaived(pkilint(&chain[0], server_auth), false);
        assert!(findings.is_empty(), "pkilint: {findings:#?}");
    }
}

fn parse(der: &[u8]) -> X509Certificate<'_> {
    X509Certificate::from_der(der).unwrap().1
}

/// The serial as certgate prints it (upper-case hex without the sign byte).
fn serial_hex(der: &[u8]) -> String {
    let certificate = parse(der);
    let raw = certificate.tbs_certificate.raw_serial();
    let significant = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    hex::encode_upper(significant)
}

fn subject_alt_names(der: &[u8]) -> Vec<String> {
    let certificate = parse(der);
    let names = certificate
        .subject_alternative_name()
        .unwrap()
        .expect("a SAN extension");
    names
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => (*dns).to_owned(),
            GeneralName::IPAddress(bytes) => match <[u8; 4]>::try_from(*bytes) {
                Ok(v4) => IpAddr::from(v4).to_string(),
                Err(_) => format!("{bytes:?}"),
            },
            other => format!("{other:?}"),
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Tests

/// dns-01 against the test's own DNS server for a wildcard and its base name (two
/// authorizations, two TXT values at one owner name), and http-01 for an IP identifier;
/// both certificates verified with openssl and linted with pkilint.
#[tokio::test(flavor = "multi_thread")]
async fn dns01_wildcard_and_ip_identifiers() {
    let mut setup = Setup::start(&["wild.certgate.test"], "", "").await;
    let (account, _) = setup.account().await;

    let names = ["*.wild.certgate.test", "wild.certgate.test"];
    let (_, chain) = setup.obtain(&account, &names).await;
    let mut sans = subject_alt_names(&chain[0]);
    sans.sort();
    assert_eq!(sans, names);
    setup.check_issued(&chain, "sslserver", true);

    let (_, chain) = setup.obtain(&account, &["127.0.0.1"]).await;
    assert_eq!(subject_alt_names(&chain[0]), ["127.0.0.1"]);
    setup.check_issued(&chain, "sslserver", true);
    let shown = setup.inventory(&serial_hex(&chain[0]));
    assert_eq!(shown["status"], "valid", "{shown}");
    setup.daemon.stop();
}

/// External account binding required: refused without, accepted with a key from
/// `certgate acme eab create`, refused when the key is reused; keyChange (the new key works,
/// the old one no longer does); the orders list (hand-signed POST-as-GET); deactivation.
#[tokio::test(flavor = "multi_thread")]
async fn eab_keychange_deactivation_orders_list() {
    let mut setup = Setup::start(&["eab.certgate.test"], "", "external_account_required = true\n").await;
    let daemon = &setup.daemon;
    let directory = directory_url(daemon);
    let raw = Raw::new(daemon).await;
    assert_eq!(
        raw.directory["meta"]["externalAccountRequired"], true,
        "{}",
        raw.directory
    );

    let problem = refused(
        builder(daemon).create(&agreeing(), directory.clone(), None).await,
        "newAccount without EAB",
    );
    assert_problem(&problem, "externalAccountRequired", "newAccount without EAB");

    let (ok, out, err) = daemon.cli(&[
        "acme",
        "eab",
        "create",
        "--endpoint",
        "default",
        "--json",
        "--config",
        "certgate.toml",
    ]);
    assert!(ok, "eab create: {out}{err}");
    let eab: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let hmac = B64URL.decode(eab["hmac_key"].as_str().unwrap()).unwrap();
    let eab_key = || ExternalAccountKey::new(eab["key_id"].as_str().unwrap().to_owned(), &hmac);

    let (mut account, credentials) = builder(daemon)
        .create(&agreeing(), directory.clone(), Some(&eab_key()))
        .await
        .unwrap();
    let problem = refused(
        builder(daemon)
            .create(&agreeing(), directory.clone(), Some(&eab_key()))
            .await,
        "a second account with the same EAB key",
    );
    assert_problem(&problem, "unauthorized", "EAB key reuse");

    let names = ["eab.certgate.test"];
    let identifiers = [dns(names[0])];
    let mut first = account.new_order(&NewOrder::new(&identifiers)).await.unwrap();
    setup.authorize(&mut first).await;
    setup.finalize(&mut first, &names).await;
    let pending = account
        .new_order(&NewOrder::new(&[dns("other.certgate.test")]))
        .await
        .unwrap();

    // keyChange: instant-acme signs the inner JWS with a fresh key.
    let old_credentials = serde_json::to_string(&credentials).unwrap();
    let new_credentials = account.update_key().await.unwrap();
    let mut after = account.new_order(&NewOrder::new(&identifiers)).await.unwrap();
    assert_eq!(
        after.state().status,
        OrderStatus::Ready,
        "the authorization is reused after keyChange"
    );

    let old_account = builder(daemon)
        .from_credentials(serde_json::from_str(&old_credentials).unwrap())
        .await
        .unwrap();
    let problem = refused(
        old_account.new_order(&NewOrder::new(&identifiers)).await,
        "newOrder signed with the replaced key",
    );
    assert_problem(&problem, "malformed", "the replaced key no longer verifies");
    let key_pair = |c: &AccountCredentials| {
        let pkcs8 = PrivatePkcs8KeyDer::from(c.private_key().secret_pkcs8_der().to_vec());
        (
            Key::from_pkcs8_der(pkcs8.clone_key()).unwrap(),
            PrivateKeyDer::Pkcs8(pkcs8),
        )
    };
    let old: AccountCredentials = serde_json::from_str(&old_credentials).unwrap();
    let problem = refused(
        builder(daemon).from_key(key_pair(&old), directory.clone()).await,
        "onlyReturnExisting with the replaced key",
    );
    assert_problem(&problem, "accountDoesNotExist", "the replaced key names no account");
    let (found, _) = builder(daemon)
        .from_key(key_pair(&new_credentials), directory.clone())
        .await
        .unwrap();
    assert_eq!(found.id(), account.id(), "the new key finds the same account");

    // The orders list, signed by hand with the new key (instant-acme has no call for it).
    let key = JwsKey::of_account(&new_credentials);
    let object = raw.post(&key, Some(account.id()), account.id(), None).await;
    assert_eq!(object.status, 200, "{}", object.body);
    assert_eq!(object.body["status"], "valid");
    let orders_url = object.body["orders"].as_str().unwrap().to_owned();
    let listed = raw.post(&key, Some(account.id()), &orders_url, None).await;
    assert_eq!(listed.status, 200, "{}", listed.body);
    let paged = listed
        .headers
        .get_all("link")
        .iter()
        .any(|l| l.to_str().unwrap_or_default().contains("rel=\"next\""));
    assert!(!paged, "three orders fit one page");
    let mut listed: Vec<&str> = listed.body["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap())
        .collect();
    listed.sort();
    let mut expected = vec![first.url(), pending.url(), after.url()];
    expected.sort();
    assert_eq!(listed, expected, "the orders list holds the account's orders");
    let stale = raw
        .post(&JwsKey::of_account(&old), Some(account.id()), &orders_url, None)
        .await;
    assert_eq!(stale.status, 400, "the replaced key cannot list orders: {}", stale.body);

    // Deactivation: afterwards nothing signed by the account is accepted.
    account.clone().deactivate().await.unwrap();
    let problem = refused(
        account.new_order(&NewOrder::new(&identifiers)).await,
        "newOrder after deactivation",
    );
    assert_problem(&problem, "unauthorized", "a deactivated account");
    let object = raw.post(&key, Some(account.id()), account.id(), None).await;
    assert_eq!(
        object.status, 403,
        "POST-as-GET of a deactivated account: {}",
        object.body
    );
    assert_eq!(object.body["type"], "urn:ietf:params:acme:error:unauthorized");
    let problem = refused(
        builder(daemon).from_key(key_pair(&new_credentials), directory).await,
        "looking up a deactivated account",
    );
    assert_problem(&problem, "unauthorized", "a deactivated account's key");
    setup.daemon.stop();
}

/// Profiles and notAfter (a hand-signed newOrder, which instant-acme cannot express), then ARI:
/// renewalInfo for the certificate, a new order that `replaces` it (linked in the inventory),
/// and a second replacement refused.
#[tokio::test(flavor = "multi_thread")]
async fn ari_replaces_not_after_profiles() {
    let mut setup = Setup::start(
        &["ari.certgate.test"],
        "profiles = [\"tls-server\", \"tls-client\"]\n",
        "",
    )
    .await;
    let (account, credentials) = setup.account().await;
    let mut profiles: Vec<&str> = account.profiles().map(|p| p.name).collect();
    profiles.sort();
    assert_eq!(profiles, ["tls-client", "tls-server"]);

    let names = ["ari.certgate.test"];
    let identifiers = [dns(names[0])];
    let problem = refused(
        account.new_order(&NewOrder::new(&identifiers).profile("device")).await,
        "a profile the endpoint does not offer",
    );
    assert_problem(&problem, "invalidProfile", "profile device");

    let raw = Raw::new(&setup.daemon).await;
    let not_after = (OffsetDateTime::now_utc() + time::Duration::days(10))
        .replace_nanosecond(0)
        .unwrap();
    let payload = json!({
        "identifiers": [{"type": "dns", "value": names[0]}],
        "notAfter": not_after.format(&Rfc3339).unwrap(),
        "profile": "tls-client",
    });
    let created = raw
        .post(
            &JwsKey::of_account(&credentials),
            Some(account.id()),
            &raw.url("newOrder"),
            Some(&payload),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["profile"], "tls-client");
    assert_eq!(
        created.body["notAfter"], payload["notAfter"],
        "the order echoes notAfter"
    );
    let location = created.headers["location"].to_str().unwrap().to_owned();
    let mut order = account.order(location).await.unwrap();
    assert_eq!(order.state().profile.as_deref(), Some("tls-client"));
    setup.authorize(&mut order).await;
    let (_, chain) = setup.finalize(&mut order, &names).await;
    let certificate = parse(&chain[0]);
    assert_eq!(
        certificate.validity().not_after.timestamp(),
        not_after.unix_timestamp(),
        "the certificate ends at the requested notAfter"
    );
    let eku = certificate
        .extended_key_usage()
        .unwrap()
        .expect("an EKU extension")
        .value;
    assert!(eku.client_auth && !eku.server_auth, "profile tls-client: {eku:?}");
    setup.check_issued(&chain, "sslclient", false);
    let old_serial = serial_hex(&chain[0]);

    let leaf = CertificateDer::from(chain[0].clone());
    let cert_id = CertificateIdentifier::try_from(&leaf).unwrap();
    let (info, retry_after) = account.renewal_info(&cert_id).await.unwrap();
    let window = info.suggested_window;
    let not_before = certificate.validity().not_before.timestamp();
    assert!(
        not_before < window.start.unix_timestamp()
            && window.start < window.end
            && window.end.unix_timestamp() <= not_after.unix_timestamp(),
        "the window lies inside the validity: {window:?}"
    );
    assert!(retry_after > Duration::ZERO, "a Retry-After hint");

    // instant-acme checks that the order echoes `replaces`.
    let mut successor = account
        .new_order(&NewOrder::new(&identifiers).replaces(cert_id.clone()))
        .await
        .unwrap();
    setup.authorize(&mut successor).await;
    let (_, chain) = setup.finalize(&mut successor, &names).await;
    let new_serial = serial_hex(&chain[0]);
    assert_ne!(new_serial, old_serial);
    let shown = setup.inventory(&new_serial);
    assert_eq!(
        shown["replaces"].as_str().map(str::to_uppercase),
        Some(old_serial.clone()),
        "the inventory links the successor: {shown}"
    );
    assert_eq!(shown["profile"], "tls-server", "the default profile: {shown}");
    let problem = refused(
        account.new_order(&NewOrder::new(&identifiers).replaces(cert_id)).await,
        "replacing a certificate twice",
    );
    assert_problem(&problem, "alreadyReplaced", "second replacement");
    setup.daemon.stop();
}

/// revokeCert signed by the certificate's own key (jwk, no account), reason keyCompromise;
/// a key that is neither the account's nor the certificate's is refused; account revocation
/// through instant-acme; ARI then suggests renewing at once.
#[tokio::test(flavor = "multi_thread")]
async fn revocation_by_certificate_key() {
    let mut setup = Setup::start(&["revoke.certgate.test"], "", "").await;
    let (account, _) = setup.account().await;
    let names = ["revoke.certgate.test"];
    let (key, chain) = setup.obtain(&account, &names).await;
    let serial = serial_hex(&chain[0]);
    let raw = Raw::new(&setup.daemon).await;
    let revoke_url = raw.url("revokeCert");
    let payload = json!({"certificate": B64URL.encode(&chain[0]), "reason": 1});

    let stranger = JwsKey::from_pkcs8(&rcgen::KeyPair::generate().unwrap().serialize_der());
    let refused_raw = raw.post(&stranger, None, &revoke_url, Some(&payload)).await;
    assert_eq!(refused_raw.status, 403, "{}", refused_raw.body);
    assert_eq!(refused_raw.body["type"], "urn:ietf:params:acme:error:unauthorized");
    assert_eq!(setup.inventory(&serial)["status"], "valid");

    let certificate_key = JwsKey::from_pkcs8(&key.serialize_der());
    let revoked = raw.post(&certificate_key, None, &revoke_url, Some(&payload)).await;
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    let shown = setup.inventory(&serial);
    assert_eq!(shown["status"], "revoked", "{shown}");
    assert!(shown.to_string().contains("keyCompromise"), "{shown}");

    let leaf = CertificateDer::from(chain[0].clone());
    let problem = refused(
        account
            .revoke(&RevocationRequest {
                certificate: &leaf,
                reason: Some(RevocationReason::Superseded),
            })
            .await,
        "revoking twice",
    );
    assert_problem(&problem, "alreadyRevoked", "revoking twice");
    let (info, _) = account
        .renewal_info(&CertificateIdentifier::try_from(&leaf).unwrap())
        .await
        .unwrap();
    assert!(
        info.suggested_window.start <= OffsetDateTime::now_utc(),
        "renew a revoked certificate at once: {info:?}"
    );

    let (_, chain) = setup.obtain(&account, &names).await;
    let other = CertificateDer::from(chain[0].clone());
    account
        .revoke(&RevocationRequest {
            certificate: &other,
            reason: Some(RevocationReason::Superseded),
        })
        .await
        .unwrap();
    let shown = setup.inventory(&serial_hex(&chain[0]));
    assert_eq!(shown["status"], "revoked", "{shown}");
    assert!(shown.to_string().contains("superseded"), "{shown}");

    // Both ACME revocations are in the next CRL, with their reasons, signed by the issuer.
    let work = tempfile::tempdir().unwrap();
    let crl = work.path().join("default.crl");
    let (ok, out) = super::curl(&[
        "-o",
        crl.to_str().unwrap(),
        &format!("{}/crl/default.crl", setup.daemon.http),
    ]);
    assert!(ok, "{out}");
    let issuer = setup.daemon.root.with_file_name("issuer.pem");
    let output = std::process::Command::new("openssl")
        .args([
            "crl",
            "-inform",
            "DER",
            "-noout",
            "-text",
            "-in",
            crl.to_str().unwrap(),
            "-CAfile",
        ])
        .arg(&issuer)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && text.contains("verify OK"), "{text}");
    for (revoked, reason) in [(&serial, "Key Compromise"), (&serial_hex(&chain[0]), "Superseded")] {
        let at = text
            .find(&format!("Serial Number: {revoked}"))
            .unwrap_or_else(|| panic!("{revoked} in the CRL: {text}"));
        assert!(
            text[at..].lines().take(5).any(|l| l.contains(reason)),
            "{reason} for {revoked}: {text}"
        );
    }
    setup.daemon.stop();
}
