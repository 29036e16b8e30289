//! An in-process EST server over a real authority, CA and sled store.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use certgate_authority::EndpointPolicy;
use certgate_core::{KeyKind, Protocol, SystemClock};
use certgate_est::{
    Base64Layout, ClientAuth, CsrAttrsConfig, EstEndpointConfig, EstRequest, EstResponse, EstServer, EstStores,
    TlsFacts, TlsVersion,
};
use certgate_signer::KeyType;
use certgate_test_support::{TestAuthority, name, test_endpoint};
use cms::cert::CertificateChoices;
use cms::content_info::ContentInfo;
use cms::signed_data::SignedData;
use der::{Decode, Encode};
use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery";
pub const EXPORTER: [u8; 32] = [0x5a; 32];

/// A device maker's CA and one device certificate it issued.
pub struct MakerCa {
    pub ca_der: Vec<u8>,
    pub device_der: Vec<u8>,
}

impl MakerCa {
    pub fn new(cn: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        let ca = params.self_signed(&key).unwrap();
        let issuer = rcgen::Issuer::new(params, key);
        let mut device = CertificateParams::new(Vec::<String>::new()).unwrap();
        device.distinguished_name.push(DnType::CommonName, "device-0001");
        device.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let device_key = KeyPair::generate().unwrap();
        let device = device.signed_by(&device_key, &issuer).unwrap();
        Self {
            ca_der: ca.der().to_vec(),
            device_der: device.der().to_vec(),
        }
    }
}

pub struct Harness {
    pub server: EstServer,
    pub ta: TestAuthority,
    pub maker: MakerCa,
    pub stranger: MakerCa,
}

fn policy(endpoint: &str) -> EndpointPolicy {
    let mut policy = test_endpoint();
    policy.protocol = Protocol::Est;
    policy.name = name(endpoint);
    policy.profiles = vec![name("device"), name("tls-client"), name("tls-server")];
    if endpoint == "strict" {
        policy.names.allowed_dns_suffixes = vec!["example.com".into()];
    }
    policy
}

pub const ENDPOINTS: [&str; 11] = [
    "default", "cert", "both", "either", "bound", "attrs", "approve", "keygen", "strict", "own", "fromscep",
];

/// A SCEP endpoint of the same authority (no SCEP server runs): its certificates are what
/// simplereenroll must not accept, except on `fromscep`, which lists it in
/// `renewal_from_endpoints`.
pub const SCEP_ENDPOINT: &str = "device";

impl Harness {
    pub async fn new() -> Self {
        let mut policies: Vec<EndpointPolicy> = ENDPOINTS.iter().map(|e| policy(e)).collect();
        policies.push(EndpointPolicy {
            protocol: Protocol::Scep,
            ..policy(SCEP_ENDPOINT)
        });
        let ta = TestAuthority::new(KeyType::P256, policies);
        let maker = MakerCa::new("Maker Root");
        let stranger = MakerCa::new("Stranger Root");
        let configs = ENDPOINTS
            .iter()
            .map(|e| {
                let mut config = EstEndpointConfig::new(name(e));
                match *e {
                    "cert" => config.auth = ClientAuth::Certificate,
                    "both" => config.auth = ClientAuth::Both,
                    // Client certificates from the maker or from certgate itself, or HTTP Basic.
                    "either" | "own" => config.auth = ClientAuth::Either,
                    "fromscep" => {
                        config.renewal_from_endpoints = vec![format!("scep:{SCEP_ENDPOINT}").parse().unwrap()];
                    }
                    "bound" => config.channel_binding = true,
                    "attrs" => {
                        config.csr_attrs = CsrAttrsConfig {
                            challenge_password: true,
                            key: Some(KeyKind::EcP256),
                            extensions: vec![const_oid::db::rfc5280::ID_CE_SUBJECT_ALT_NAME],
                            enforce: true,
                        }
                    }
                    "approve" => {
                        config.require_approval = true;
                        config.approval_retry_after = 30;
                    }
                    "keygen" => {
                        config.server_keygen = Some(KeyKind::EcP256);
                        config.base64 = Base64Layout::Wrap64;
                    }
                    _ => {}
                }
                if config.auth.accepts_certificate() {
                    config.trust_anchors = vec![maker.ca_der.clone()];
                }
                if *e == "own" {
                    config.trust_anchors.push(ta.ca.issuer.root_der().to_vec());
                }
                config
            })
            .collect();
        let store = Arc::new(ta.store.clone());
        let stores = EstStores {
            users: store.clone(),
            approvals: store,
        };
        let server = EstServer::new(configs, stores, Arc::clone(&ta.authority), Arc::new(SystemClock)).unwrap();
        for endpoint in ENDPOINTS {
            EstServer::add_user(
                &ta.store,
                &name(endpoint),
                USER,
                PASSWORD.as_bytes(),
                time::OffsetDateTime::now_utc(),
            )
            .await
            .unwrap();
        }
        Self {
            server,
            ta,
            maker,
            stranger,
        }
    }

    pub async fn call(&self, call: Call<'_>) -> EstResponse {
        let request = EstRequest {
            method: call.method,
            path: call.path,
            query: None,
            content_type: call.content_type,
            authorization: call.authorization.as_deref(),
            body: call.body,
            body_too_large: call.body_too_large,
            peer: "127.0.0.1".parse().unwrap(),
            tls: call.tls,
        };
        self.server.handle(&request).await
    }
}

/// One request; `Call::post(path, body)` with Basic credentials and TLS 1.3 by default.
pub struct Call<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub authorization: Option<String>,
    pub body: &'a [u8],
    pub body_too_large: bool,
    pub tls: Option<&'a TlsFacts>,
}

pub fn tls13() -> TlsFacts {
    TlsFacts {
        version: Some(TlsVersion::Tls13),
        client_chain: Vec::new(),
        exporter: Some(EXPORTER),
        tls_unique: None,
    }
}

pub fn with_chain(chain: Vec<Vec<u8>>) -> TlsFacts {
    TlsFacts {
        client_chain: chain,
        ..tls13()
    }
}

pub fn basic(user: &str, password: &str) -> Option<String> {
    Some(format!("Basic {}", STANDARD.encode(format!("{user}:{password}"))))
}

impl<'a> Call<'a> {
    pub fn get(path: &'a str) -> Self {
        Self {
            method: "GET",
            path,
            content_type: None,
            authorization: None,
            body: b"",
            body_too_large: false,
            tls: None,
        }
    }

    pub fn post(path: &'a str, body: &'a [u8], tls: &'a TlsFacts) -> Self {
        Self {
            method: "POST",
            path,
            content_type: Some("application/pkcs10"),
            authorization: basic(USER, PASSWORD),
            body,
            body_too_large: false,
            tls: Some(tls),
        }
    }
}

/// A base64 (64-column, CRLF) P-256 CSR for `cn` and DNS `sans`, with an optional
/// challengePassword.
pub fn csr_b64(key: &KeyPair, cn: &str, sans: &[&str], challenge: Option<&str>) -> Vec<u8> {
    let der = csr_der(key, cn, sans, challenge);
    certgate_est::codec::encode_base64(&der, Base64Layout::Wrap64)
}

pub fn csr_der(key: &KeyPair, cn: &str, sans: &[&str], challenge: Option<&str>) -> Vec<u8> {
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let attrs = match challenge {
        Some(password) => {
            let value = der::asn1::Utf8StringRef::new(password).unwrap().to_der().unwrap();
            let mut set = vec![0x31, u8::try_from(value.len()).unwrap()];
            set.extend_from_slice(&value);
            vec![rcgen::Attribute {
                oid: &[1, 2, 840, 113549, 1, 9, 7],
                values: set,
            }]
        }
        None => Vec::new(),
    };
    params
        .serialize_request_with_attributes(key, attrs)
        .unwrap()
        .der()
        .to_vec()
}

/// The certificates (DER) of a base64 certs-only answer body.
pub fn certs_of(body: &[u8]) -> Vec<Vec<u8>> {
    let compact: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(compact).unwrap();
    let info = ContentInfo::from_der(&der).unwrap();
    assert_eq!(info.content_type, const_oid::db::rfc5911::ID_SIGNED_DATA);
    let signed: SignedData = info.content.decode_as().unwrap();
    assert!(signed.signer_infos.0.is_empty(), "degenerate: no signers");
    signed
        .certificates
        .unwrap()
        .0
        .iter()
        .map(|c| match c {
            CertificateChoices::Certificate(cert) => cert.to_der().unwrap(),
            _ => panic!("only certificates"),
        })
        .collect()
}
