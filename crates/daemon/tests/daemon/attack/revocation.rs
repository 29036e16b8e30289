//! CRL and OCSP under attack, on the embedded defaults: OCSP requests nested deep, oversized,
//! truncated, of the wrong type, with bad base64 or for an unknown issuer; CRLs of unknown
//! issuers and paths that try to leave `/crl/`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use super::harness::{Answer, Area, Case, Expect, Listener, Outcome, SendOptions, Target, case, finish, run_cases};
use super::hostile;

/// OCSPResponseStatus values (RFC 6960 4.2.1).
const SUCCESSFUL: u8 = 0;
const MALFORMED_REQUEST: u8 = 1;
const UNAUTHORIZED: u8 = 6;

/// The daemon, a well-formed OCSP request for a serial of the default issuer, and one whose
/// CertID names a CA the daemon does not know.
pub struct Ctx {
    target: Target,
    request: Vec<u8>,
    foreign: Vec<u8>,
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
    fn start() -> Arc<Self> {
        let target = Target::start("");
        let issuer = target.data_file("ca/default/issuer.pem");
        let request = ocsp_request(&target, &issuer, "0x0123456789ABCDEF");
        let stranger = target.dir.join("stranger-ca.pem");
        std::fs::write(&stranger, stranger_ca()).expect("a CA file");
        let foreign = ocsp_request(&target, &stranger, "0x0FEDCBA987654321");
        Arc::new(Self {
            target,
            request,
            foreign,
        })
    }

    /// POSTs `body` to `path` on the HTTP listener as `content_type`.
    async fn post(&self, path: &str, content_type: &str, body: &[u8]) -> Outcome {
        let headers = [("content-type", content_type)];
        self.target.request(Listener::Http, "POST", path, &headers, body).await
    }

    /// POSTs an OCSP request body to `/ocsp/default`.
    async fn ocsp(&self, body: &[u8]) -> Outcome {
        self.post("/ocsp/default", "application/ocsp-request", body).await
    }

    async fn get(&self, path: &str) -> Outcome {
        self.target.request(Listener::Http, "GET", path, &[], b"").await
    }
}

/// A self-signed CA certificate (PEM) the daemon has never seen.
fn stranger_ca() -> String {
    let key = rcgen::KeyPair::generate().expect("P-256 key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(rcgen::DnType::CommonName, "Stranger CA");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.self_signed(&key).expect("a CA certificate").pem()
}

/// An OCSP request (no nonce) for `serial` of the CA in `issuer` (PEM), made by openssl.
fn ocsp_request(target: &Target, issuer: &std::path::Path, serial: &str) -> Vec<u8> {
    let out = target.dir.join(format!("ocsp-{serial}.der"));
    let status = std::process::Command::new("openssl")
        .args(["ocsp", "-no_nonce", "-issuer"])
        .arg(issuer)
        .args(["-serial", serial, "-reqout"])
        .arg(&out)
        .output()
        .expect("openssl is installed");
    assert!(status.status.success(), "openssl ocsp: {status:?}");
    std::fs::read(&out).expect("the OCSP request")
}

/// The OCSPResponseStatus of an answer (`30 len 0a 01 status …`).
fn ocsp_status(answer: &Answer) -> Option<u8> {
    let (tag, contents) = hostile::element_at(&answer.body, &[0])?;
    (tag == 0x0a && contents.len() == 1).then(|| contents[0])
}

/// HTTP 200 `application/ocsp-response` with this OCSP status.
fn ocsp_answer(outcome: Outcome, want: u8) -> Outcome {
    let checked = match &outcome {
        Outcome::Answer(answer)
            if answer.status == 200 && answer.header("content-type") == Some("application/ocsp-response") =>
        {
            match ocsp_status(answer) {
                Some(status) if status == want => Ok(()),
                other => Err(format!("expected OCSP status {want}, got {other:?}")),
            }
        }
        other => Err(format!("expected an OCSP response, got {other:?}")),
    };
    Outcome::Checked(checked)
}

/// 404 that shows nothing of the file system.
fn not_found_only(outcome: Outcome) -> Outcome {
    let checked = match &outcome {
        Outcome::Answer(answer) if answer.status == 404 && !answer.text().contains("root:") => Ok(()),
        other => Err(format!("expected 404, got {other:?}")),
    };
    Outcome::Checked(checked)
}

/// OCSP POSTs: nested, oversized, truncated, garbage, of the wrong type.
fn post_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("ocsp_post_well_formed_is_answered", Expect::Checked, |c| ocsp_answer(
            c.ocsp(&c.request).await,
            SUCCESSFUL
        )),
        case!("ocsp_post_nested_8000_ber", Expect::Checked, |c| {
            ocsp_answer(
                c.ocsp(&hostile::nest_unterminated(0x30, 8_000)).await,
                MALFORMED_REQUEST,
            )
        }),
        case!("ocsp_post_nested_3500_der", Expect::Checked, |c| {
            ocsp_answer(
                c.ocsp(&hostile::nest_definite(0x30, 3_500, &[])).await,
                MALFORMED_REQUEST,
            )
        }),
        case!("ocsp_post_nested_in_request_extensions", Expect::Checked, |c| {
            let deep = hostile::nest_unterminated(0x30, 7_000);
            let request = hostile::replace_at(&c.request, &[0], &|_, tbs| {
                hostile::tlv(0x30, &[tbs, &hostile::tlv(0xa2, &deep)].concat())
            })
            .expect("tbsRequest rewritten");
            ocsp_answer(c.ocsp(&request).await, MALFORMED_REQUEST)
        }),
        case!("ocsp_post_over_16k", Expect::Status(413), |c| c
            .ocsp(&vec![0x30; 17 * 1024])
            .await),
        case!("ocsp_post_truncated_der", Expect::Checked, |c| {
            ocsp_answer(c.ocsp(&hostile::truncated(&c.request)).await, MALFORMED_REQUEST)
        }),
        case!("ocsp_post_garbage", Expect::Checked, |c| {
            ocsp_answer(c.ocsp(b"GET / HTTP/1.0\r\n\r\n").await, MALFORMED_REQUEST)
        }),
        case!("ocsp_post_empty", Expect::Checked, |c| ocsp_answer(
            c.ocsp(b"").await,
            MALFORMED_REQUEST
        )),
        case!("ocsp_post_truncated_stream", Expect::StatusOrClosed(&[400, 413]), |c| {
            let mut bytes = format!(
                "POST /ocsp/default HTTP/1.1\r\nhost: {}\r\ncontent-type: application/ocsp-request\r\n\
                 content-length: 3000\r\nconnection: close\r\n\r\n",
                c.target.host(Listener::Http)
            )
            .into_bytes();
            bytes.extend_from_slice(&c.request[..10]);
            let send = SendOptions {
                half_close: true,
                ..SendOptions::default()
            };
            c.target.exchange_with(Listener::Http, bytes, &send).await
        }),
        case!("ocsp_post_wrong_content_type_is_tolerated", Expect::Checked, |c| {
            ocsp_answer(c.post("/ocsp/default", "text/html", &c.request).await, SUCCESSFUL)
        }),
        case!("ocsp_post_garbage_as_form", Expect::Checked, |c| {
            let body = b"a=1&b=%00%ff";
            ocsp_answer(
                c.post("/ocsp/default", "application/x-www-form-urlencoded", body).await,
                MALFORMED_REQUEST,
            )
        }),
    ]
}

/// Unknown issuers and GET requests.
fn lookup_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("ocsp_post_unknown_issuer", Expect::Checked, |c| {
            ocsp_answer(c.ocsp(&c.foreign).await, UNAUTHORIZED)
        }),
        case!("ocsp_post_unknown_issuer_on_unknown_path", Expect::Checked, |c| {
            ocsp_answer(
                c.post("/ocsp/nosuch", "application/ocsp-request", &c.foreign).await,
                UNAUTHORIZED,
            )
        }),
        case!("ocsp_get_unknown_issuer", Expect::Checked, |c| {
            let path = format!("/ocsp/{}", B64.encode(&c.foreign).replace('/', "%2F"));
            ocsp_answer(c.get(&path).await, UNAUTHORIZED)
        }),
        case!("ocsp_get_bad_base64", Expect::Checked, |c| {
            ocsp_answer(c.get("/ocsp/default/***not-base64***").await, MALFORMED_REQUEST)
        }),
        case!("ocsp_get_base64_of_junk", Expect::Checked, |c| {
            ocsp_answer(c.get("/ocsp/default/MIIBAAAAAAAA").await, MALFORMED_REQUEST)
        }),
        case!("ocsp_get_nested_4000_ber", Expect::Checked, |c| {
            let path = format!("/ocsp/default/{}", B64.encode(hostile::nest_unterminated(0x30, 4_000)));
            ocsp_answer(c.get(&path).await, MALFORMED_REQUEST)
        }),
        case!("ocsp_get_path_over_limit", Expect::AnyStatus(&[414, 431]), |c| {
            c.get(&format!("/ocsp/default/{}", "A".repeat(60 * 1024))).await
        }),
        case!("ocsp_put", Expect::Status(405), |c| {
            c.target
                .request(Listener::Http, "PUT", "/ocsp/default", &[], &c.request)
                .await
        }),
    ]
}

/// CRLs of unknown issuers and paths that try to leave `/crl/`.
fn crl_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("crl_unknown_issuer", Expect::Status(404), |c| c
            .get("/crl/nosuch.crl")
            .await),
        case!("crl_post", Expect::Status(405), |c| c
            .post("/crl/default.crl", "application/pkix-crl", b"x")
            .await),
        case!("crl_path_traversal_plain", Expect::Checked, |c| not_found_only(
            c.get("/crl/../../etc/passwd").await
        )),
        case!("crl_path_traversal_with_suffix", Expect::Checked, |c| {
            not_found_only(c.get("/crl/../../../etc/passwd%00.crl").await)
        }),
        case!("crl_path_traversal_encoded", Expect::Checked, |c| {
            not_found_only(c.get("/crl/..%2f..%2f..%2fetc%2fpasswd.crl").await)
        }),
        case!("crl_path_traversal_on_https", Expect::Checked, |c| {
            not_found_only(
                c.target
                    .request(Listener::Https, "GET", "/crl/..%2F..%2Fetc%2Fpasswd.crl", &[], b"")
                    .await,
            )
        }),
        case!("ca_certificate_path_traversal", Expect::Checked, |c| not_found_only(
            c.get("/ca/..%2F..%2Fetc%2Fpasswd.crt").await
        )),
    ]
}

/// Every CRL and OCSP case.
pub fn cases() -> Vec<Case<Ctx>> {
    let mut all = post_cases();
    all.extend(lookup_cases());
    all.extend(crl_cases());
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn revocation_attacks() {
    let ctx = Ctx::start();
    run_cases(Arc::clone(&ctx), cases()).await;
    finish(ctx);
}
