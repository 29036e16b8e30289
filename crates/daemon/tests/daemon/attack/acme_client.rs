//! A hand-rolled ACME client over the harness's raw HTTPS: ES256 JWS whose every header and
//! member a case can bend, the account/order/http-01/finalize flow for the setup the cases
//! attack, and a loopback http-01 responder that answers unknown tokens with a secret (the
//! SSRF-echo probe).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::harness::{Answer, Listener, Outcome, Target};

/// The ACME endpoint every area uses: the embedded default.
pub const ACME_PATH: &str = "/acme/default";
/// What the http-01 responder answers for tokens nobody registered.
pub const SECRET: &str = "SECRET-xyz-7d1f3c";

/// An ES256 key signing ACME requests by hand.
pub struct JwsKey {
    key: EcdsaKeyPair,
    /// Its public JWK.
    pub jwk: Value,
}

impl JwsKey {
    /// A fresh P-256 key.
    pub fn generate() -> Self {
        Self::from_pkcs8(&rcgen::KeyPair::generate().expect("P-256 key").serialize_der())
    }

    /// A P-256 key from PKCS#8 DER.
    pub fn from_pkcs8(der: &[u8]) -> Self {
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).expect("a P-256 PKCS#8 key");
        let point = key.public_key().as_ref().to_vec();
        let jwk = json!({
            "crv": "P-256",
            "kty": "EC",
            "x": B64URL.encode(&point[1..33]),
            "y": B64URL.encode(&point[33..]),
        });
        Self { key, jwk }
    }

    /// The RFC 7638 thumbprint (base64url).
    pub fn thumbprint(&self) -> String {
        let canonical = format!(
            "{{\"crv\":\"P-256\",\"kty\":\"EC\",\"x\":{},\"y\":{}}}",
            self.jwk["x"], self.jwk["y"]
        );
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
        B64URL.encode(digest.as_ref())
    }

    /// The base64url ES256 signature of `protected_b64.payload_b64`.
    pub fn signature(&self, protected_b64: &str, payload_b64: &str) -> String {
        let input = format!("{protected_b64}.{payload_b64}");
        let signature = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("ES256 signing");
        B64URL.encode(signature.as_ref())
    }

    /// A flattened JWS with `protected` (any JSON) over `payload` (`None`: POST-as-GET).
    pub fn jws(&self, protected: &Value, payload: Option<&[u8]>) -> Vec<u8> {
        self.jws_text(&protected.to_string(), payload)
    }

    /// [`JwsKey::jws`] with the protected header given as text (which need not be JSON).
    pub fn jws_text(&self, protected: &str, payload: Option<&[u8]>) -> Vec<u8> {
        let protected = B64URL.encode(protected);
        let payload = payload.map(|p| B64URL.encode(p)).unwrap_or_default();
        let signature = self.signature(&protected, &payload);
        json!({"protected": protected, "payload": payload, "signature": signature})
            .to_string()
            .into_bytes()
    }
}

/// How a request names its signer.
#[derive(Debug, Clone, Copy)]
pub enum Signer<'a> {
    /// The key itself (`jwk`).
    Jwk,
    /// An account URL (`kid`).
    Kid(&'a str),
}

/// An account: its key and URL.
pub struct Account {
    /// The key.
    pub key: JwsKey,
    /// The account URL.
    pub kid: String,
}

/// An order as the server described it.
#[derive(Debug, Clone)]
pub struct Order {
    /// Its URL.
    pub url: String,
    /// Its JSON.
    pub body: Value,
}

impl Order {
    /// The URL of its first authorization.
    pub fn authz(&self) -> String {
        self.body["authorizations"][0].as_str().unwrap_or_default().to_owned()
    }

    /// Its finalize URL.
    pub fn finalize(&self) -> String {
        self.body["finalize"].as_str().unwrap_or_default().to_owned()
    }
}

/// A certificate obtained through ACME.
pub struct Issued {
    /// The order.
    pub order: Order,
    /// Its certificate URL.
    pub cert_url: String,
    /// The leaf (DER).
    pub leaf: Vec<u8>,
    /// The leaf's key.
    pub key: rcgen::KeyPair,
}

/// The ACME endpoint of a target.
#[derive(Debug, Clone)]
pub struct Acme {
    origin: String,
}

impl Acme {
    /// The default ACME endpoint of `target`'s HTTPS listener.
    pub fn of(target: &Target) -> Self {
        Self {
            origin: format!("https://{}", target.https),
        }
    }

    /// The full URL of `rest` under the endpoint (`/new-order`).
    pub fn url(&self, rest: &str) -> String {
        format!("{}{ACME_PATH}{rest}", self.origin)
    }

    /// The path of one of the endpoint's URLs.
    pub fn path<'u>(&self, url: &'u str) -> &'u str {
        url.strip_prefix(&self.origin).unwrap_or(url)
    }

    /// A fresh nonce.
    pub async fn nonce(&self, target: &Target) -> String {
        let answer = target
            .answer(Listener::Https, "GET", &format!("{ACME_PATH}/new-nonce"), &[], b"")
            .await;
        answer
            .header("replay-nonce")
            .unwrap_or_else(|| panic!("a nonce: {answer:?}"))
            .to_owned()
    }

    /// The protected header ACME wants.
    pub fn protected(&self, key: &JwsKey, signer: Signer<'_>, nonce: &str, url: &str) -> Value {
        let mut protected = json!({"alg": "ES256", "nonce": nonce, "url": url});
        match signer {
            Signer::Jwk => protected["jwk"] = key.jwk.clone(),
            Signer::Kid(kid) => protected["kid"] = json!(kid),
        }
        protected
    }

    /// POSTs `body` to `url` as `application/jose+json`.
    pub async fn send(&self, target: &Target, url: &str, body: &[u8]) -> Outcome {
        let headers = [("content-type", "application/jose+json")];
        target
            .request(Listener::Https, "POST", self.path(url), &headers, body)
            .await
    }

    /// A correctly signed POST with a fresh nonce (`None` payload: POST-as-GET).
    pub async fn post(
        &self,
        target: &Target,
        key: &JwsKey,
        signer: Signer<'_>,
        url: &str,
        payload: Option<&Value>,
    ) -> Outcome {
        let protected = self.protected(key, signer, &self.nonce(target).await, url);
        let payload = payload.map(|p| p.to_string().into_bytes());
        self.send(target, url, &key.jws(&protected, payload.as_deref())).await
    }

    /// [`Acme::post`] that must be answered with `status`.
    pub async fn post_ok(
        &self,
        target: &Target,
        key: &JwsKey,
        signer: Signer<'_>,
        url: &str,
        payload: Option<&Value>,
        status: u16,
    ) -> Answer {
        match self.post(target, key, signer, url, payload).await {
            Outcome::Answer(answer) if answer.status == status => answer,
            other => panic!("POST {url}: expected {status}, got {other:?}"),
        }
    }

    /// A new account with a fresh key.
    pub async fn account(&self, target: &Target) -> Account {
        let key = JwsKey::generate();
        let payload = json!({"termsOfServiceAgreed": true});
        let url = self.url("/new-account");
        let answer = self.post_ok(target, &key, Signer::Jwk, &url, Some(&payload), 201).await;
        let kid = answer.header("location").expect("the account URL").to_owned();
        Account { key, kid }
    }

    /// A new order for IP or DNS identifiers.
    pub async fn order(&self, target: &Target, account: &Account, names: &[&str]) -> Order {
        let identifiers: Vec<Value> = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(_) => json!({"type": "ip", "value": n}),
                Err(_) => json!({"type": "dns", "value": n}),
            })
            .collect();
        let payload = json!({"identifiers": identifiers});
        let url = self.url("/new-order");
        let answer = self
            .post_ok(
                target,
                &account.key,
                Signer::Kid(&account.kid),
                &url,
                Some(&payload),
                201,
            )
            .await;
        Order {
            url: answer.header("location").expect("the order URL").to_owned(),
            body: answer.json(),
        }
    }

    /// POST-as-GET of `url` by `account`, answered 200.
    pub async fn fetch(&self, target: &Target, account: &Account, url: &str) -> Value {
        self.post_ok(target, &account.key, Signer::Kid(&account.kid), url, None, 200)
            .await
            .json()
    }

    /// Answers the order's http-01 challenge through `responder` (or lets it answer the
    /// secret when `serve` is false) and waits until the authorization is no longer pending.
    pub async fn http01(
        &self,
        target: &Target,
        account: &Account,
        order: &Order,
        responder: &Http01,
        serve: bool,
    ) -> Value {
        let authz_url = order.authz();
        let authz = self.fetch(target, account, &authz_url).await;
        let challenge = authz["challenges"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["type"] == "http-01"))
            .unwrap_or_else(|| panic!("an http-01 challenge: {authz}"))
            .clone();
        let token = challenge["token"].as_str().expect("a token");
        if serve {
            responder.serve(token, &format!("{token}.{}", account.key.thumbprint()));
        }
        let url = challenge["url"].as_str().expect("a challenge URL");
        self.post_ok(
            target,
            &account.key,
            Signer::Kid(&account.kid),
            url,
            Some(&json!({})),
            200,
        )
        .await;
        self.poll(target, account, &authz_url, |v| v["status"] != "pending")
            .await
    }

    /// Polls `url` until `done` (at most 20 s).
    pub async fn poll(&self, target: &Target, account: &Account, url: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.fetch(target, account, url).await;
            if done(&value) || Instant::now() > deadline {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A ready order for `ip` (validated with http-01 unless an authorization is reused).
    pub async fn ready_order(&self, target: &Target, account: &Account, ip: &str, responder: &Http01) -> Order {
        let order = self.order(target, account, &[ip]).await;
        if order.body["status"] == "pending" {
            let authz = self.http01(target, account, &order, responder, true).await;
            assert_eq!(authz["status"], "valid", "http-01 for {ip}: {authz}");
        }
        let body = self
            .poll(target, account, &order.url, |v| v["status"] != "pending")
            .await;
        assert_eq!(body["status"], "ready", "{body}");
        Order { body, ..order }
    }

    /// Finalizes a ready order with a fresh key's CSR for `names` and fetches the leaf.
    pub async fn finalize(&self, target: &Target, account: &Account, order: Order, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        let csr = certgate_test_support::csr(&key, None, names);
        let payload = json!({"csr": B64URL.encode(&csr)});
        self.post_ok(
            target,
            &account.key,
            Signer::Kid(&account.kid),
            &order.finalize(),
            Some(&payload),
            200,
        )
        .await;
        let body = self
            .poll(target, account, &order.url, |v| v["status"] != "processing")
            .await;
        let cert_url = body["certificate"]
            .as_str()
            .unwrap_or_else(|| panic!("a certificate URL: {body}"))
            .to_owned();
        let pem = self
            .post_ok(target, &account.key, Signer::Kid(&account.kid), &cert_url, None, 200)
            .await;
        let leaf = CertificateDer::pem_slice_iter(&pem.body)
            .next()
            .expect("a PEM chain")
            .expect("a PEM certificate")
            .to_vec();
        Issued {
            order: Order { body, ..order },
            cert_url,
            leaf,
            key,
        }
    }

    /// A certificate for `ip` (http-01 through `responder`).
    pub async fn obtain(&self, target: &Target, account: &Account, ip: &str, responder: &Http01) -> Issued {
        let order = self.ready_order(target, account, ip, responder).await;
        self.finalize(target, account, order, &[ip]).await
    }
}

/// Answers `GET /.well-known/acme-challenge/<token>` on a loopback port with the key
/// authorizations registered, and every other request with [`SECRET`].
pub struct Http01 {
    /// The port.
    pub port: u16,
    answers: Arc<Mutex<HashMap<String, String>>>,
}

impl Http01 {
    /// Starts the responder on 127.0.0.1.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let answers: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let served = Arc::clone(&answers);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(respond(stream, Arc::clone(&served)));
            }
        });
        Self { port, answers }
    }

    /// Serves `key_authorization` for `token`.
    pub fn serve(&self, token: &str, key_authorization: &str) {
        self.answers
            .lock()
            .expect("responder lock")
            .insert(token.to_owned(), key_authorization.to_owned());
    }
}

async fn respond(mut stream: tokio::net::TcpStream, served: Arc<Mutex<HashMap<String, String>>>) {
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
        .and_then(|token| served.lock().expect("responder lock").get(token).cloned())
        .unwrap_or_else(|| SECRET.to_owned());
    let response = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The serial of a DER certificate as certgate prints it (upper-case hex, no sign byte).
pub fn serial_hex(der: &[u8]) -> String {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, certificate) = X509Certificate::from_der(der).expect("a certificate");
    let raw = certificate.tbs_certificate.raw_serial();
    let significant = match raw {
        [0, rest @ ..] if !rest.is_empty() => rest,
        all => all,
    };
    hex::encode_upper(significant)
}

/// The ACME section of a daemon configuration: the embedded default endpoint, validating
/// http-01 on `http01_port` (the one setting the cases need), beside the embedded EST and
/// SCEP endpoints.
pub fn defaults_with_http01(http01_port: u16) -> String {
    format!(
        "[[endpoints]]\nprotocol = \"acme\"\nname = \"default\"\n\
         [endpoints.acme]\nhttp01_port = {http01_port}\n\
         [[endpoints]]\nprotocol = \"est\"\nname = \"default\"\nprofiles = [\"device\"]\n\
         [[endpoints]]\nprotocol = \"scep\"\nname = \"default\"\nprofiles = [\"device\"]\n"
    )
}
