//! An in-process ACME server over a real sled store, a real CA and a manual clock, and a
//! client that signs with josekit (OpenSSL), so requests can be built wrong on purpose.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use certgate_acme::{AcmeEndpointConfig, AcmeRequest, AcmeServer};
use certgate_authority::EndpointPolicy;
use certgate_core::{Clock, ManualClock};
use certgate_signer::KeyType;
use certgate_test_support::{TestAuthority, name, test_endpoint};
use josekit::jwk::Jwk;
use josekit::jws::JwsSigner;
use serde_json::{Value, json};
use time::OffsetDateTime;

pub const ORIGIN: &str = "https://ca.test:8443";
pub const BASE: &str = "/acme/default";

pub struct Harness {
    pub server: AcmeServer,
    pub ta: TestAuthority,
    pub clock: Arc<ManualClock>,
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The problem type's short name (`badNonce`), or "" when the answer is no problem.
    pub fn problem(&self) -> String {
        if self.header("content-type") != Some("application/problem+json") {
            return String::new();
        }
        self.json()["type"]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches("urn:ietf:params:acme:error:")
            .to_owned()
    }

    pub fn location(&self) -> String {
        self.header("location").expect("a Location header").to_owned()
    }
}

/// A key that signs JWS (josekit) and can also sign CSRs (rcgen), for "CSR key = account key".
pub struct TestKey {
    pub alg: &'static str,
    pub signer: Box<dyn JwsSigner>,
    pub public: Value,
    pub rcgen: Option<rcgen::KeyPair>,
}

impl TestKey {
    pub fn es256() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pair = josekit::jws::ES256.key_pair_from_der(key.serialize_der()).unwrap();
        let public: serde_json::Map<String, Value> = pair.to_jwk_public_key().into();
        let mut private: serde_json::Map<String, Value> = pair.to_jwk_private_key().into();
        private.remove("alg");
        let signer = josekit::jws::ES256
            .signer_from_jwk(&Jwk::from_map(private).unwrap())
            .unwrap();
        Self {
            alg: "ES256",
            signer: Box::new(signer),
            public: Value::Object(public),
            rcgen: Some(key),
        }
    }

    pub fn sign(&self, input: &[u8]) -> Vec<u8> {
        self.signer.sign(input).unwrap()
    }
}

/// A flattened JWS.
pub fn jws(key: &TestKey, header: &Value, payload: &[u8]) -> Vec<u8> {
    let protected = B64.encode(serde_json::to_vec(header).unwrap());
    let payload = B64.encode(payload);
    let signature = key.sign(format!("{protected}.{payload}").as_bytes());
    serde_json::to_vec(&json!({"protected": protected, "payload": payload, "signature": B64.encode(signature)}))
        .unwrap()
}

pub fn url(path: &str) -> String {
    format!("{ORIGIN}{BASE}{path}")
}

pub fn path_of(full_url: &str) -> &str {
    full_url.strip_prefix(ORIGIN).expect("a URL of the test origin")
}

/// An account as the client holds it.
pub struct Account {
    pub key: TestKey,
    pub kid: String,
}

impl Harness {
    pub fn new() -> Self {
        Self::with(|_| {}, |_| {})
    }

    /// Always-valid validation (the catalogue tests requests, not validation), adjustable.
    pub fn with(acme: impl FnOnce(&mut AcmeEndpointConfig), policy: impl FnOnce(&mut EndpointPolicy)) -> Self {
        Self::build(acme, policy, false)
    }

    /// The default endpoint plus a second one, `other`.
    pub fn with_second_endpoint() -> Self {
        Self::build(|_| {}, |_| {}, true)
    }

    fn build(
        acme: impl FnOnce(&mut AcmeEndpointConfig),
        policy: impl FnOnce(&mut EndpointPolicy),
        second: bool,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
        let mut endpoint = test_endpoint();
        policy(&mut endpoint);
        let mut endpoints = vec![endpoint.clone()];
        let mut configs = Vec::new();
        if second {
            endpoints.push(EndpointPolicy {
                name: name("other"),
                ..endpoint
            });
            configs.push(AcmeEndpointConfig::new(name("other")));
        }
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let ta = TestAuthority::with_clock(KeyType::P256, endpoints, Arc::clone(&dyn_clock));
        let mut config = AcmeEndpointConfig::new(name("default"));
        config.danger_always_valid = true;
        acme(&mut config);
        configs.push(config);
        let server = AcmeServer::new(
            configs,
            Arc::new(ta.store.clone()),
            Arc::new(ta.store.clone()),
            Arc::clone(&ta.authority),
            dyn_clock,
        )
        .unwrap();
        Self { server, ta, clock }
    }

    pub async fn call(&self, method: &str, path: &str, content_type: Option<&str>, body: &[u8]) -> Resp {
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        let too_large = body.len() > certgate_acme::jws::MAX_JWS_LEN;
        let response = self
            .server
            .handle(&AcmeRequest {
                method,
                origin: ORIGIN,
                path,
                query,
                content_type,
                body: if too_large { &[] } else { body },
                body_too_large: too_large,
                peer: "127.0.0.1".parse().unwrap(),
            })
            .await;
        let resp = Resp {
            status: response.status,
            headers: response.headers,
            body: response.body,
        };
        // Every answer of an endpoint, errors included, carries a nonce and the index link.
        if path.starts_with(BASE) || path.starts_with("/acme/other/") {
            assert!(
                resp.header("replay-nonce").is_some(),
                "Replay-Nonce on {method} {path}: {resp:?}"
            );
        }
        if path.starts_with(BASE) {
            assert!(
                resp.headers
                    .iter()
                    .any(|(n, v)| *n == "link" && v.contains("rel=\"index\"")),
                "Link rel=index on {method} {path}"
            );
        }
        resp
    }

    pub async fn nonce(&self) -> String {
        let resp = self.call("HEAD", &format!("{BASE}/new-nonce"), None, &[]).await;
        resp.header("replay-nonce").unwrap().to_owned()
    }

    /// A POST with a well-formed JWS: `kid` when given, else `jwk`.
    pub async fn post(&self, key: &TestKey, kid: Option<&str>, path: &str, payload: Option<&Value>) -> Resp {
        let mut header = json!({"alg": key.alg, "nonce": self.nonce().await, "url": format!("{ORIGIN}{path}")});
        match kid {
            Some(kid) => header["kid"] = json!(kid),
            None => header["jwk"] = key.public.clone(),
        }
        let payload = payload.map(|p| serde_json::to_vec(p).unwrap()).unwrap_or_default();
        self.post_raw(path, &jws(key, &header, &payload)).await
    }

    pub async fn post_raw(&self, path: &str, body: &[u8]) -> Resp {
        self.call("POST", path, Some("application/jose+json"), body).await
    }

    pub async fn as_account(&self, account: &Account, path: &str, payload: Option<&Value>) -> Resp {
        self.post(&account.key, Some(&account.kid), path, payload).await
    }

    pub async fn new_account(&self) -> Account {
        let key = TestKey::es256();
        let resp = self
            .post(
                &key,
                None,
                &format!("{BASE}/new-account"),
                Some(&json!({"termsOfServiceAgreed": true, "contact": ["mailto:ops@example.test"]})),
            )
            .await;
        assert_eq!(resp.status, 201, "{:?}", resp.json());
        Account {
            key,
            kid: resp.location(),
        }
    }

    /// A new order for DNS names; returns (order URL, order JSON).
    pub async fn new_order(&self, account: &Account, names: &[&str]) -> (String, Value) {
        let identifiers: Vec<Value> = names.iter().map(|n| json!({"type": "dns", "value": n})).collect();
        let resp = self
            .as_account(
                account,
                &format!("{BASE}/new-order"),
                Some(&json!({ "identifiers": identifiers })),
            )
            .await;
        assert_eq!(resp.status, 201, "{:?}", resp.json());
        (resp.location(), resp.json())
    }

    /// Responds to every authorization's `kind` challenge (always valid here).
    pub async fn authorize(&self, account: &Account, order: &Value, kind: &str) {
        for authz in order["authorizations"].as_array().unwrap() {
            let authz = self
                .as_account(account, path_of(authz.as_str().unwrap()), None)
                .await
                .json();
            let challenge = authz["challenges"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == kind)
                .unwrap_or_else(|| panic!("no {kind} challenge in {authz}"));
            let resp = self
                .as_account(account, path_of(challenge["url"].as_str().unwrap()), Some(&json!({})))
                .await;
            assert_eq!(resp.status, 200, "{:?}", resp.json());
        }
    }

    /// Finalizes with a CSR for `names` made with `key`.
    pub async fn finalize(&self, account: &Account, order: &Value, csr_der: &[u8]) -> Resp {
        self.as_account(
            account,
            path_of(order["finalize"].as_str().unwrap()),
            Some(&json!({"csr": B64.encode(csr_der)})),
        )
        .await
    }

    /// A whole issuance; returns (order URL, certificate URL, leaf DER).
    pub async fn issue(&self, account: &Account, names: &[&str]) -> (String, String, Vec<u8>) {
        let (order_url, order) = self.new_order(account, names).await;
        self.authorize(account, &order, "http-01").await;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let resp = self
            .finalize(account, &order, &certgate_test_support::csr(&key, None, names))
            .await;
        assert_eq!(resp.status, 200, "{:?}", resp.json());
        assert_eq!(resp.json()["status"], "valid");
        let cert_url = resp.json()["certificate"].as_str().unwrap().to_owned();
        let chain = self.as_account(account, path_of(&cert_url), None).await;
        assert_eq!(chain.header("content-type"), Some("application/pem-certificate-chain"));
        let pem = String::from_utf8(chain.body).unwrap();
        let leaf = pem
            .split("-----END CERTIFICATE-----")
            .next()
            .unwrap()
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<String>();
        let der = base64::engine::general_purpose::STANDARD.decode(leaf).unwrap();
        (order_url, cert_url, der)
    }

    /// How many certificates the store holds.
    pub async fn certificate_count(&self) -> usize {
        certgate_store::list_all(&self.ta.store, certgate_store::CertificateFilter::All)
            .await
            .unwrap()
            .len()
    }
}

/// A DNS server that never answers: validations against it wait for their timeout. Drop the
/// socket to stop it.
pub fn silent_dns() -> (std::net::UdpSocket, std::net::SocketAddr) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A DNS server that answers every query NXDOMAIN, so dns-01 validations fail at once.
pub async fn nxdomain_dns() -> std::net::SocketAddr {
    let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = socket.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            // The query echoed as its answer: QR set, RCODE 3 (NXDOMAIN), no records.
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80;
            answer[3] = (answer[3] & 0xf0) | 3;
            let _ = socket.send_to(&answer, from).await;
        }
    });
    addr
}

impl Harness {
    /// The `kind` challenge of the order's `index`th authorization: (challenge URL path,
    /// authorization URL path).
    pub async fn challenge_of(&self, account: &Account, order: &Value, index: usize, kind: &str) -> (String, String) {
        let authz_url = order["authorizations"][index].as_str().unwrap().to_owned();
        let authz = self.as_account(account, path_of(&authz_url), None).await.json();
        let challenge = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap_or_else(|| panic!("no {kind} challenge in {authz}"));
        (
            path_of(challenge["url"].as_str().unwrap()).to_owned(),
            path_of(&authz_url).to_owned(),
        )
    }

    /// Polls the authorization until it is no longer pending (real validations take real
    /// time, whatever the manual clock says); returns it.
    pub async fn settled_authorization(&self, account: &Account, authz_path: &str) -> Value {
        for _ in 0..200 {
            let authz = self.as_account(account, authz_path, None).await.json();
            if authz["status"] != "pending" {
                return authz;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("{authz_path} still pending after 5 s");
    }
}
