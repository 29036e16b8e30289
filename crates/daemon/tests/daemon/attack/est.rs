//! EST under attack: missing, wrong and oversized credentials, a user of one endpoint on
//! another, admin tokens as EST credentials, a revoked certificate of certgate's CA as client
//! certificate, re-enrollment with certificates of other protocols, revoked certificates and
//! changed names, and bodies that are oversized, truncated, garbage or nested 40,000 deep.
//! The daemon's CA is made with `certgate ca init` first (the embedded default issuer, made
//! before the start) so that the `anchored` endpoint can name it as trust anchor.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::acme_client::{Acme, Http01, defaults_with_http01, serial_hex};
use super::harness::{
    Area, Case, Expect, Listener, Outcome, SendOptions, Target, basic, case, client_config, finish, run_cases,
};
use super::{hostile, scep};

const USER: (&str, &str) = ("alice", "wonderland");
const OTHER_USER: (&str, &str) = ("olivia", "other-pass");

/// The EST path of `op` at the default endpoint or a labelled one.
pub fn path(label: Option<&str>, op: &str) -> String {
    match label {
        Some(label) => format!("/.well-known/est/{label}/{op}"),
        None => format!("/.well-known/est/{op}"),
    }
}

/// Adds an EST user (the password goes through the CLI's standard input).
pub fn add_user(target: &Target, label: Option<&str>, user: &str, password: &str) {
    let endpoint = label.unwrap_or("default");
    let (ok, out, err) = target.cli_stdin(
        &["est", "user", "add", "--endpoint", endpoint, user],
        &format!("{password}\n"),
    );
    assert!(ok, "est user add: {out}{err}");
}

/// The first certificate of a base64 certs-only EST answer.
pub fn leaf_of(body: &[u8]) -> Vec<u8> {
    let text: Vec<u8> = body.iter().copied().filter(|b| !b.is_ascii_whitespace()).collect();
    let der = B64.decode(text).expect("a base64 certs-only body");
    let certificates = certgate_scep::message::certificates_of(&der).expect("a certs-only PKCS#7");
    certificates.into_iter().next().expect("a certificate")
}

/// simpleenroll with HTTP Basic for `key` with subject CN=`cn`; returns the leaf.
pub async fn enroll(
    target: &Target,
    label: Option<&str>,
    user: &str,
    password: &str,
    key: &rcgen::KeyPair,
    cn: &str,
) -> Vec<u8> {
    let csr = certgate_test_support::csr(key, Some(cn), &[]);
    let auth = basic(user, password);
    let headers = [("authorization", auth.as_str()), ("content-type", "application/pkcs10")];
    let answer = target
        .answer(
            Listener::Https,
            "POST",
            &path(label, "simpleenroll"),
            &headers,
            B64.encode(csr).as_bytes(),
        )
        .await;
    assert_eq!(answer.status, 200, "simpleenroll: {}", answer.text());
    leaf_of(&answer.body)
}

/// A certificate and the PKCS#8 DER of its key, as a TLS client presents them.
struct Holder {
    leaf: Vec<u8>,
    pkcs8: Vec<u8>,
}

/// The daemon (embedded endpoints plus labelled EST endpoints: `other`, and `anchored`,
/// which also admits client certificates of certgate's own CA), users on the Basic
/// endpoints, and certificates: one EST certificate to renew, one revoked, one from SCEP and
/// one from ACME.
pub struct Ctx {
    target: Target,
    _ca: tempfile::TempDir,
    renewable: Holder,
    revoked: Holder,
    from_scep: Holder,
    from_acme: Holder,
    _http01: Http01,
}

impl Area for Ctx {
    fn target(&self) -> &Target {
        &self.target
    }

    fn target_mut(&mut self) -> &mut Target {
        &mut self.target
    }
}

impl Ctx {
    async fn start() -> Arc<Self> {
        let http01 = Http01::start().await;
        let ca = own_ca();
        let issuer = ca.path().join("data/ca/default");
        let config = format!(
            "[[issuers]]\nname = \"default\"\ndir = \"{dir}\"\ncreate_if_missing = false\n{}\
             [[endpoints]]\nprotocol = \"est\"\nname = \"other\"\nprofiles = [\"device\"]\n\
             [[endpoints]]\nprotocol = \"est\"\nname = \"anchored\"\nprofiles = [\"device\"]\n\
             [endpoints.est]\nauth = \"either\"\ntrust_anchors = [\"{dir}/issuer.pem\"]\n",
            defaults_with_http01(http01.port),
            dir = issuer.display()
        );
        let target = Target::start(&config);
        add_user(&target, None, USER.0, USER.1);
        add_user(&target, Some("other"), OTHER_USER.0, OTHER_USER.1);
        add_user(&target, Some("anchored"), USER.0, USER.1);
        let holder = |leaf, key: &rcgen::KeyPair| Holder {
            leaf,
            pkcs8: key.serialize_der(),
        };
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        let renewable = holder(
            enroll(&target, None, USER.0, USER.1, &key, "renewing-device").await,
            &key,
        );
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        let revoked = holder(
            enroll(&target, None, USER.0, USER.1, &key, "revoked-device").await,
            &key,
        );
        revoke(&target, &serial_hex(&revoked.leaf)).await;
        let client = certgate_scep::testclient::ScepClient::new("scep-device").expect("SCEP client");
        let scep_leaf = scep::enroll(&target, "default", &client, "scep-device").await;
        let from_scep = holder(scep_leaf, client.key());
        let acme = Acme::of(&target);
        let account = acme.account(&target).await;
        let issued = acme.obtain(&target, &account, "127.0.0.1", &http01).await;
        let from_acme = holder(issued.leaf, &issued.key);
        Arc::new(Self {
            target,
            _ca: ca,
            renewable,
            revoked,
            from_scep,
            from_acme,
            _http01: http01,
        })
    }

    /// POSTs `body` to `op` with `headers`.
    async fn post(&self, label: Option<&str>, op: &str, headers: &[(&str, &str)], body: &[u8]) -> Outcome {
        self.target
            .request(Listener::Https, "POST", &path(label, op), headers, body)
            .await
    }

    /// simpleenroll as alice with `body` of `content_type`.
    async fn enroll_body(&self, content_type: &str, body: &[u8]) -> Outcome {
        let auth = basic(USER.0, USER.1);
        let headers = [("authorization", auth.as_str()), ("content-type", content_type)];
        self.post(None, "simpleenroll", &headers, body).await
    }

    /// simpleenroll of a good CSR with this `Authorization` (none when `None`).
    async fn enroll_as(&self, label: Option<&str>, authorization: Option<&str>) -> Outcome {
        let csr = csr("intruder", &[]);
        let mut headers = vec![("content-type", "application/pkcs10")];
        if let Some(value) = authorization {
            headers.push(("authorization", value));
        }
        self.post(label, "simpleenroll", &headers, B64.encode(csr).as_bytes())
            .await
    }

    /// simplereenroll at `label` over TLS with `holder` as client certificate.
    async fn reenroll(&self, label: Option<&str>, holder: &Holder, csr_der: &[u8]) -> Outcome {
        self.with_certificate(label, "simplereenroll", holder, None, csr_der)
            .await
    }

    /// `op` at `label` over TLS with `holder` as client certificate (and `authorization`).
    async fn with_certificate(
        &self,
        label: Option<&str>,
        op: &str,
        holder: &Holder,
        authorization: Option<&str>,
        csr_der: &[u8],
    ) -> Outcome {
        let send = SendOptions {
            client_tls: Some(client_config(
                &self.target.root,
                Some((holder.leaf.clone(), holder.pkcs8.clone())),
            )),
            ..SendOptions::default()
        };
        let mut headers = vec![("content-type", "application/pkcs10")];
        if let Some(value) = authorization {
            headers.push(("authorization", value));
        }
        let bytes = super::harness::request(
            "POST",
            &path(label, op),
            &self.target.host(Listener::Https),
            &headers,
            B64.encode(csr_der).as_bytes(),
        );
        self.target.exchange_with(Listener::Https, bytes, &send).await
    }

    /// A CSR for the renewable certificate's key with subject CN=`cn` and `sans`.
    fn renewal_csr(&self, cn: &str, sans: &[&str]) -> Vec<u8> {
        let key = rcgen::KeyPair::try_from(self.renewable.pkcs8.as_slice()).expect("the key");
        certgate_test_support::csr(&key, Some(cn), sans)
    }
}

/// certgate's CA, made with `certgate ca init` before the daemon starts, so that an EST
/// endpoint can name its issuing certificate as a trust anchor.
fn own_ca() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let (ok, out, err) =
        certgate_test_support::binary::run(crate::certgate(), &["ca", "init", "--data-dir", "data"], dir.path());
    assert!(ok, "ca init: {out}{err}");
    dir
}

/// Revokes a certificate through the admin API.
pub async fn revoke(target: &Target, serial: &str) {
    let bearer = target.bearer();
    let headers = [("authorization", bearer.as_str()), ("content-type", "application/json")];
    let path = format!("/admin/v1/certificates/{serial}/revoke");
    let answer = target
        .answer(
            Listener::Https,
            "POST",
            &path,
            &headers,
            br#"{"reason":"keyCompromise"}"#,
        )
        .await;
    assert_eq!(answer.status, 200, "revoke {serial}: {}", answer.text());
}

/// A CSR from a fresh key.
fn csr(cn: &str, sans: &[&str]) -> Vec<u8> {
    certgate_test_support::csr(&rcgen::KeyPair::generate().expect("P-256 key"), Some(cn), sans)
}

/// Credentials that are missing, wrong, too big, or another endpoint's or service's.
fn credential_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("est_enroll_without_credentials", Expect::Status(401), |c| c
            .enroll_as(None, None)
            .await),
        case!("est_enroll_wrong_password", Expect::Status(401), |c| {
            c.enroll_as(None, Some(&basic(USER.0, "guess"))).await
        }),
        case!("est_enroll_unknown_user", Expect::Status(401), |c| {
            c.enroll_as(None, Some(&basic("mallory", "guess"))).await
        }),
        case!("est_enroll_basic_not_base64", Expect::Status(401), |c| {
            c.enroll_as(None, Some("Basic ***not-base64***")).await
        }),
        case!("est_enroll_basic_without_colon", Expect::Status(401), |c| {
            c.enroll_as(None, Some(&format!("Basic {}", B64.encode("alicewonderland"))))
                .await
        }),
        case!("est_enroll_basic_password_32k", Expect::Status(401), |c| {
            c.enroll_as(None, Some(&basic(USER.0, &"p".repeat(32 * 1024)))).await
        }),
        case!("est_enroll_basic_header_1mb", Expect::StatusOrClosed(&[431]), |c| {
            c.enroll_as(None, Some(&format!("Basic {}", "A".repeat(1024 * 1024))))
                .await
        }),
        case!("est_user_of_other_endpoint_on_default", Expect::Status(401), |c| {
            c.enroll_as(None, Some(&basic(OTHER_USER.0, OTHER_USER.1))).await
        }),
        case!("est_user_of_default_on_other_endpoint", Expect::Status(401), |c| {
            c.enroll_as(Some("other"), Some(&basic(USER.0, USER.1))).await
        }),
        case!("est_admin_token_as_credentials", Expect::Status(401), |c| {
            c.enroll_as(None, Some(&c.target.bearer())).await
        }),
        case!("est_enroll_on_plain_http_listener", Expect::Status(403), |c| {
            let auth = basic(USER.0, USER.1);
            let headers = [("authorization", auth.as_str()), ("content-type", "application/pkcs10")];
            let body = B64.encode(csr("plain-http", &[]));
            let path = path(None, "simpleenroll");
            c.target
                .request(Listener::Http, "POST", &path, &headers, body.as_bytes())
                .await
        }),
        case!("est_unknown_label", Expect::Status(404), |c| {
            c.enroll_as(Some("nosuch"), Some(&basic(USER.0, USER.1))).await
        }),
    ]
}

/// simplereenroll with certificates it must not renew.
fn reenroll_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("est_reenroll_with_scep_certificate", Expect::Status(403), |c| {
            c.reenroll(None, &c.from_scep, &csr("scep-device", &[])).await
        }),
        case!(
            "est_reenroll_with_acme_certificate",
            Expect::StatusOrClosed(&[403]),
            |c| { c.reenroll(None, &c.from_acme, &csr("127.0.0.1", &["127.0.0.1"])).await }
        ),
        case!("est_reenroll_with_revoked_certificate", Expect::Status(403), |c| {
            c.reenroll(None, &c.revoked, &csr("revoked-device", &[])).await
        }),
        case!("est_reenroll_with_changed_subject", Expect::Status(403), |c| {
            c.reenroll(None, &c.renewable, &c.renewal_csr("someone-else", &[]))
                .await
        }),
        case!("est_reenroll_with_added_san", Expect::Status(403), |c| {
            let csr = c.renewal_csr("renewing-device", &["admin.attack.test"]);
            c.reenroll(None, &c.renewable, &csr).await
        }),
        case!("est_reenroll_at_another_endpoint", Expect::Status(403), |c| {
            c.reenroll(Some("other"), &c.renewable, &c.renewal_csr("renewing-device", &[]))
                .await
        }),
        case!(
            "est_enroll_with_revoked_client_certificate_and_password",
            Expect::Status(403),
            |c| {
                let auth = basic(USER.0, USER.1);
                let csr = csr("revoked-device", &[]);
                c.with_certificate(Some("anchored"), "simpleenroll", &c.revoked, Some(&auth), &csr)
                    .await
            }
        ),
        case!(
            "est_enroll_with_revoked_client_certificate_only",
            Expect::Status(403),
            |c| {
                let csr = csr("revoked-device", &[]);
                c.with_certificate(Some("anchored"), "simpleenroll", &c.revoked, None, &csr)
                    .await
            }
        ),
        case!("est_reenroll_with_basic_only", Expect::AnyStatus(&[401, 403]), |c| {
            let auth = basic(USER.0, USER.1);
            let headers = [("authorization", auth.as_str()), ("content-type", "application/pkcs10")];
            let body = B64.encode(c.renewal_csr("renewing-device", &[]));
            c.post(None, "simplereenroll", &headers, body.as_bytes()).await
        }),
    ]
}

/// Bodies: oversized, truncated, garbage, wrong type.
fn body_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("est_body_over_128k", Expect::Status(413), |c| {
            c.enroll_body("application/pkcs10", &vec![b'A'; 129 * 1024]).await
        }),
        case!("est_body_truncated_base64", Expect::Status(400), |c| {
            let full = B64.encode(csr("truncated", &[]));
            c.enroll_body("application/pkcs10", &full.as_bytes()[..full.len() / 2])
                .await
        }),
        case!("est_body_pem_garbage", Expect::Status(400), |c| {
            let pem = "-----BEGIN CERTIFICATE REQUEST-----\n!!!garbage###\n-----END CERTIFICATE REQUEST-----\n";
            c.enroll_body("application/pkcs10", pem.as_bytes()).await
        }),
        case!("est_body_binary_garbage", Expect::Status(400), |c| {
            c.enroll_body("application/pkcs10", &[0xffu8, 0x00, 0x13, 0x37, 0x80, 0x80, 0x80])
                .await
        }),
        case!("est_body_empty", Expect::Status(400), |c| c
            .enroll_body("application/pkcs10", b"")
            .await),
        case!("est_body_csr_bad_signature", Expect::Status(400), |c| {
            let mut der = csr("bad-signature", &[]);
            let at = der.len() - 3;
            der[at] ^= 0x55;
            c.enroll_body("application/pkcs10", B64.encode(der).as_bytes()).await
        }),
        case!("est_wrong_content_type", Expect::Status(415), |c| {
            c.enroll_body("text/html", B64.encode(csr("wrong-type", &[])).as_bytes())
                .await
        }),
        case!("est_body_truncated_stream", Expect::StatusOrClosed(&[400, 413]), |c| {
            let auth = basic(USER.0, USER.1);
            let mut bytes = format!(
                "POST {} HTTP/1.1\r\nhost: {}\r\nauthorization: {auth}\r\ncontent-type: application/pkcs10\r\n\
                 content-length: 5000\r\nconnection: close\r\n\r\nMIIB",
                path(None, "simpleenroll"),
                c.target.host(Listener::Https)
            )
            .into_bytes();
            bytes.extend_from_slice(b"CjCCAQ");
            let send = SendOptions {
                half_close: true,
                ..SendOptions::default()
            };
            c.target.exchange_with(Listener::Https, bytes, &send).await
        }),
    ]
}

/// CSRs nested deep, in the body and inside an attribute.
fn nested_csr_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("est_csr_nested_15000_der", Expect::Status(400), |c| {
            let der = hostile::nest_definite(0x30, 15_000, &[]);
            c.enroll_body("application/pkcs10", B64.encode(der).as_bytes()).await
        }),
        case!("est_csr_nested_30000_ber", Expect::Status(400), |c| {
            let der = hostile::nest_unterminated(0x30, 30_000);
            c.enroll_body("application/pkcs10", B64.encode(der).as_bytes()).await
        }),
        case!("est_csr_nested_40000_ber_over_csr_limit", Expect::Status(400), |c| {
            let der = hostile::nest_unterminated(0x30, 40_000);
            c.enroll_body("application/pkcs10", B64.encode(der).as_bytes()).await
        }),
        case!("est_csr_nested_30000_ber_as_pem", Expect::Status(400), |c| {
            let der = hostile::nest_unterminated(0x30, 30_000);
            let pem = format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
                B64.encode(der)
            );
            c.enroll_body("application/pkcs10", pem.as_bytes()).await
        }),
        case!("est_csr_nested_14000_in_extension_request", Expect::Status(400), |c| {
            let attribute = rcgen::Attribute {
                oid: &[1, 2, 840, 113549, 1, 9, 14],
                values: hostile::tlv(0x31, &hostile::nest_definite(0x30, 14_000, &[])),
            };
            let key = rcgen::KeyPair::generate().expect("P-256 key");
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, "deep-attribute");
            let der = params
                .serialize_request_with_attributes(&key, vec![attribute])
                .expect("a CSR")
                .der()
                .to_vec();
            c.enroll_body("application/pkcs10", B64.encode(der).as_bytes()).await
        }),
    ]
}

/// Every EST case.
pub fn cases() -> Vec<Case<Ctx>> {
    let mut all = credential_cases();
    all.extend(reenroll_cases());
    all.extend(body_cases());
    all.extend(nested_csr_cases());
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn est_attacks() {
    let ctx = Ctx::start().await;
    run_cases(Arc::clone(&ctx), cases()).await;
    finish(ctx);
}
