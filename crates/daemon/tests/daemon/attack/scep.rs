//! SCEP under attack: junk, truncated and oversized operations, BER/DER nested 40,000 deep in
//! each layer of a signed PKIOperation (SignedData, its eContent, a signed attribute, the
//! EnvelopedData's encryptedContent (the finding that aborted the process), the CSR), wrong,
//! reused and foreign challenges, renewal signed by an EST certificate for other names,
//! CertPoll and GetCert for another requester's transaction and certificate.

use std::sync::Arc;

use certgate_authority::KeyTransport;
use certgate_scep::crypto::{ContentCipher, DigestAlg};
use certgate_scep::message::{self, ScepAttributes};
use certgate_scep::testclient::{self, CertRepView, RequestOptions, ScepClient, SigningTime};
use certgate_scep::{FailInfo, MessageType, PkiStatus};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

use super::harness::{Area, Case, Expect, Listener, Outcome, SendOptions, Target, case, finish, run_cases};
use super::{est, hostile};

/// Depth of the hostile nesting (the finding's message: ~185 KB, under the 256 KiB limit).
const DEEP: usize = 40_000;

/// The SCEP path of an operation at `endpoint`.
fn operation_path(endpoint: &str, operation: &str) -> String {
    format!("/scep/{endpoint}?operation={operation}")
}

/// A one-time challenge for `endpoint` from the CLI.
pub fn challenge(target: &Target, endpoint: &str) -> String {
    let (ok, out, err) = target.cli(&["scep", "challenge", "create", "--endpoint", endpoint, "--json"]);
    assert!(ok, "scep challenge create: {out}{err}");
    let created: serde_json::Value = serde_json::from_str(out.trim()).expect("challenge JSON");
    created["challenge"].as_str().expect("a challenge").to_owned()
}

/// The RA certificate GetCACert names for `endpoint`.
pub async fn ra(target: &Target, endpoint: &str) -> Vec<u8> {
    let answer = target
        .answer(Listener::Http, "GET", &operation_path(endpoint, "GetCACert"), &[], b"")
        .await;
    let content_type = answer.header("content-type").unwrap_or_default().to_owned();
    testclient::ra_certificate(&content_type, &answer.body).expect("an RA certificate")
}

/// POSTs a PKIOperation to `endpoint`.
pub async fn post(target: &Target, endpoint: &str, message: Vec<u8>) -> Outcome {
    let headers = [("content-type", "application/x-pki-message")];
    let path = operation_path(endpoint, "PKIOperation");
    target.request(Listener::Http, "POST", &path, &headers, &message).await
}

/// Opens the CertRep of an answer with `client`'s key.
pub fn cert_rep(outcome: &Outcome, client: &ScepClient, ra: &[u8]) -> Result<CertRepView, String> {
    match outcome {
        Outcome::Answer(answer) if answer.status == 200 => client
            .open_cert_rep(&answer.body, ra)
            .map_err(|e| format!("not a CertRep from the RA: {e}")),
        other => Err(format!("no CertRep: {other:?}")),
    }
}

/// PKCSReq at `endpoint` with a fresh one-time challenge; returns the issued leaf.
pub async fn enroll(target: &Target, endpoint: &str, client: &ScepClient, cn: &str) -> Vec<u8> {
    enroll_with(target, endpoint, client, cn, &challenge(target, endpoint)).await
}

/// PKCSReq at `endpoint` with `challenge`; returns the issued leaf.
async fn enroll_with(target: &Target, endpoint: &str, client: &ScepClient, cn: &str, challenge: &str) -> Vec<u8> {
    let ra = ra(target, endpoint).await;
    let csr = testclient::csr(client.key(), cn, &[], Some(challenge)).expect("a CSR");
    let message = client
        .pki_message(&ra, &csr, &RequestOptions::new(MessageType::PkcsReq))
        .expect("a PKIMessage");
    let view = cert_rep(&post(target, endpoint, message).await, client, &ra).expect("a CertRep");
    assert_eq!(view.status, PkiStatus::Success, "{:?}", view.fail_info_text);
    view.certificates[0].clone()
}

/// A PKIOperation of `message_type` whose (encrypted or not) content is `content`, signed by
/// `client`, with `transaction_id`.
fn signed(client: &ScepClient, content: Vec<u8>, message_type: MessageType, transaction_id: &str) -> Vec<u8> {
    let attributes = ScepAttributes {
        message_type,
        transaction_id: message::transaction_id_value(transaction_id).expect("a transactionID"),
        sender_nonce: vec![7; 16],
        recipient_nonce: None,
        pki_status: None,
        fail: None,
    };
    let tbs = message::to_be_signed(
        Some(content),
        Some(&attributes),
        DigestAlg::Sha256,
        &client.certificate,
        OffsetDateTime::now_utc(),
    )
    .expect("signed attributes");
    let key = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&client.key().serialize_der()).expect("RSA key");
    let mut signature = vec![0u8; key.public_modulus_len()];
    key.sign(
        &aws_lc_rs::signature::RSA_PKCS1_SHA256,
        &aws_lc_rs::rand::SystemRandom::new(),
        &tbs.signed_attrs_der,
        &mut signature,
    )
    .expect("RSA signing");
    tbs.finish(signature).expect("a PKIMessage")
}

/// `plaintext` sealed to `ra` (AES-256, PKCS#1 v1.5).
fn sealed(plaintext: &[u8], ra: &[u8]) -> Vec<u8> {
    message::seal(plaintext, ra, ContentCipher::Aes256, KeyTransport::Pkcs1v15).expect("sealed content")
}

/// Where the encryptedContent `[0]` sits in a sealed ContentInfo(EnvelopedData).
const ENCRYPTED_CONTENT: [usize; 4] = [1, 0, 2, 2];
/// Where the eContent OCTET STRING sits in a signed ContentInfo(SignedData).
const ECONTENT: [usize; 5] = [1, 0, 2, 1, 0];

/// A sealed EnvelopedData whose encryptedContent `remake(ciphertext)` re-encodes.
fn envelope_with(ra: &[u8], remake: &dyn Fn(&[u8]) -> Vec<u8>) -> Vec<u8> {
    let envelope = sealed(b"a CSR would be here", ra);
    let (tag, _) = hostile::element_at(&envelope, &ENCRYPTED_CONTENT).expect("encryptedContent");
    assert_eq!(tag, 0x80, "the encryptedContent is where the suite expects it");
    hostile::replace_at(&envelope, &ENCRYPTED_CONTENT, &|_, ciphertext| remake(ciphertext)).expect("rewritten")
}

/// The daemon (embedded endpoints plus SCEP `other` and `approve`, which needs approval) and
/// what the cases reuse or attack.
pub struct Ctx {
    target: Target,
    ra: Vec<u8>,
    ra_approve: Vec<u8>,
    used_challenge: String,
    other_challenge: String,
    victim: Vec<u8>,
    renewer: ScepClient,
    approved: Approved,
}

/// A request waiting at `approve`, approved by the operator but not yet collected.
struct Approved {
    transaction_id: String,
    poll_content: Vec<u8>,
}

impl Area for Ctx {
    fn target(&self) -> &Target {
        &self.target
    }

    fn target_mut(&mut self) -> &mut Target {
        &mut self.target
    }
}

const CONFIG: &str = "[[endpoints]]\nprotocol = \"scep\"\nname = \"default\"\nprofiles = [\"device\"]\n\
    [[endpoints]]\nprotocol = \"scep\"\nname = \"other\"\nprofiles = [\"device\"]\n\
    [[endpoints]]\nprotocol = \"scep\"\nname = \"approve\"\nprofiles = [\"device\"]\n\
    [endpoints.scep]\nrequire_approval = true\n\
    [[endpoints]]\nprotocol = \"est\"\nname = \"default\"\nprofiles = [\"device\"]\n";

impl Ctx {
    async fn start() -> Arc<Self> {
        let target = Target::start(CONFIG);
        let ra_default = ra(&target, "default").await;
        let used_challenge = challenge(&target, "default");
        let used = ScepClient::new("used-challenge").expect("client");
        enroll_with(&target, "default", &used, "used-challenge", &used_challenge).await;
        let victim = enroll(
            &target,
            "default",
            &ScepClient::new("victim").expect("client"),
            "victim",
        )
        .await;
        let renewer = ScepClient::new("est-device").expect("client");
        est::add_user(&target, None, "fleet", "fleet-pass");
        let est_leaf = est::enroll(&target, None, "fleet", "fleet-pass", renewer.key(), "est-device").await;
        let renewer = renewer
            .with_certificate(est_leaf)
            .expect("client with the EST certificate");
        let approved = approved_request(&target).await;
        Arc::new(Self {
            ra_approve: ra(&target, "approve").await,
            other_challenge: challenge(&target, "other"),
            target,
            ra: ra_default,
            used_challenge,
            victim,
            renewer,
            approved,
        })
    }

    /// A PKCSReq from a fresh client at `default` with `challenge` in the CSR.
    async fn enroll_with(&self, challenge: Option<&str>, options: &RequestOptions) -> Outcome {
        let client = ScepClient::new("intruder").expect("client");
        let csr = testclient::csr(client.key(), "intruder", &[], challenge).expect("CSR");
        let message = client.pki_message(&self.ra, &csr, options).expect("PKIMessage");
        Outcome::Checked(failure(
            &post(&self.target, "default", message).await,
            &client,
            &self.ra,
            refusal_for(options),
        ))
    }

    /// A PKIOperation by a fresh self-signed client whose content is `content`.
    async fn send_signed(&self, content: Vec<u8>, allowed: &[FailInfo]) -> Outcome {
        let client = ScepClient::new("deep").expect("client");
        let message = signed(&client, content, MessageType::PkcsReq, &testclient::random_hex(8));
        Outcome::Checked(failure(
            &post(&self.target, "default", message).await,
            &client,
            &self.ra,
            allowed,
        ))
    }

    /// A signed PKCSReq that `rewrite` changes after signing: refused with HTTP 400 (it
    /// cannot be parsed) or a CertRep FAILURE.
    async fn send_rewritten(&self, rewrite: impl FnOnce(Vec<u8>) -> Vec<u8>) -> Outcome {
        let client = ScepClient::new("rewritten").expect("client");
        let csr = testclient::csr(client.key(), "rewritten", &[], Some("whatever")).expect("CSR");
        let message = signed(&client, sealed(&csr, &self.ra), MessageType::PkcsReq, "rewritten-0001");
        let outcome = post(&self.target, "default", rewrite(message)).await;
        Outcome::Checked(refused(&outcome, &client, &self.ra))
    }
}

/// The failInfo a refused request built with `options` gets: what its options break, else
/// badRequest (authentication; SHA-1 signatures are accepted on the defaults).
fn refusal_for(options: &RequestOptions) -> &'static [FailInfo] {
    if options.signing_time != SigningTime::Now {
        &[FailInfo::BadTime]
    } else if options.corrupt_key_transport {
        &[FailInfo::BadMessageCheck]
    } else {
        &[FailInfo::BadRequest]
    }
}

/// A PKCSReq at `approve` (PENDING), approved through the CLI.
async fn approved_request(target: &Target) -> Approved {
    let ra = ra(target, "approve").await;
    let client = ScepClient::new("approved-device").expect("client");
    let csr = testclient::csr(
        client.key(),
        "approved-device",
        &[],
        Some(&challenge(target, "approve")),
    )
    .expect("CSR");
    let options = RequestOptions::new(MessageType::PkcsReq);
    let message = client.pki_message(&ra, &csr, &options).expect("PKIMessage");
    let view = cert_rep(&post(target, "approve", message).await, &client, &ra).expect("CertRep");
    assert_eq!(view.status, PkiStatus::Pending, "{:?}", view.fail_info_text);
    let (ok, listed, err) = target.cli(&["approvals", "list"]);
    assert!(ok, "{err}");
    let id = listed
        .lines()
        .find(|l| l.contains("approved-device"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("the request is queued: {listed}"))
        .to_owned();
    let (ok, out, err) = target.cli(&["approvals", "approve", &id]);
    assert!(ok, "{out}{err}");
    let issuer = CertificateDer::from_pem_file(target.data_file("ca/default/issuer.pem"))
        .expect("the issuing CA certificate")
        .to_vec();
    Approved {
        transaction_id: options.transaction_id,
        poll_content: testclient::issuer_and_subject(&issuer, &csr).expect("IssuerAndSubject"),
    }
}

/// A signed CertRep FAILURE with one of `allowed`.
fn failure(outcome: &Outcome, client: &ScepClient, ra: &[u8], allowed: &[FailInfo]) -> Result<(), String> {
    let view = cert_rep(outcome, client, ra)?;
    match (view.status, view.fail_info) {
        (PkiStatus::Failure, Some(info)) if allowed.contains(&info) => Ok(()),
        (status, info) => Err(format!(
            "expected FAILURE {allowed:?}, got {status:?} {info:?} ({:?})",
            view.fail_info_text
        )),
    }
}

/// HTTP 400 with a reason, or a CertRep FAILURE of any kind.
fn refused(outcome: &Outcome, client: &ScepClient, ra: &[u8]) -> Result<(), String> {
    match outcome {
        Outcome::Answer(answer) if answer.status == 400 && !answer.body.is_empty() => Ok(()),
        other => failure(other, client, ra, &ALL_FAIL_INFOS),
    }
}

const ALL_FAIL_INFOS: [FailInfo; 5] = [
    FailInfo::BadAlg,
    FailInfo::BadMessageCheck,
    FailInfo::BadRequest,
    FailInfo::BadTime,
    FailInfo::BadCertId,
];

/// Discovery with junk, unknown operations and endpoints, and GET messages.
fn http_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("scep_getcacaps_with_junk_message", Expect::Status(200), |c| {
            let path = format!("{}&message=%00%FF%2F..%2F..", operation_path("default", "GetCACaps"));
            c.target.request(Listener::Http, "GET", &path, &[], b"").await
        }),
        case!("scep_getcacert_with_junk_message", Expect::Status(200), |c| {
            let path = format!(
                "{}&message={}",
                operation_path("default", "GetCACert"),
                "%41".repeat(5000)
            );
            c.target.request(Listener::Http, "GET", &path, &[], b"").await
        }),
        case!("scep_unknown_operation", Expect::Status(400), |c| {
            c.target
                .request(Listener::Http, "GET", &operation_path("default", "GetRoot"), &[], b"")
                .await
        }),
        case!("scep_unknown_endpoint", Expect::Status(404), |c| {
            c.target
                .request(Listener::Http, "GET", &operation_path("nosuch", "GetCACaps"), &[], b"")
                .await
        }),
    ]
}

/// PKIOperations that are empty, junk, truncated or oversized.
fn pki_operation_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("scep_pkioperation_empty", Expect::Status(400), |c| post(
            &c.target,
            "default",
            Vec::new()
        )
        .await),
        case!("scep_pkioperation_junk_der", Expect::Status(400), |c| {
            post(&c.target, "default", b"\x30\x82\x01\x00junk junk junk".to_vec()).await
        }),
        case!("scep_pkioperation_junk_text", Expect::Status(400), |c| {
            post(&c.target, "default", b"this is not a PKIMessage at all".to_vec()).await
        }),
        case!("scep_pkioperation_truncated", Expect::Status(400), |c| {
            let client = ScepClient::new("truncated").expect("client");
            let csr = testclient::csr(client.key(), "truncated", &[], Some("x")).expect("CSR");
            let message = client
                .pki_message(&c.ra, &csr, &RequestOptions::new(MessageType::PkcsReq))
                .expect("PKIMessage");
            post(&c.target, "default", hostile::truncated(&message)).await
        }),
        case!("scep_pkioperation_over_256k", Expect::Status(413), |c| {
            post(&c.target, "default", hostile::tlv(0x30, &vec![0u8; 300 * 1024])).await
        }),
        case!(
            "scep_pkioperation_truncated_stream",
            Expect::StatusOrClosed(&[400, 413]),
            |c| {
                let mut bytes = format!(
                    "POST {} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/x-pki-message\r\n\
                 content-length: 9000\r\nconnection: close\r\n\r\n",
                    operation_path("default", "PKIOperation"),
                    c.target.host(Listener::Http)
                )
                .into_bytes();
                bytes.extend_from_slice(b"\x30\x82\x23\x24\x06\x09");
                let send = SendOptions {
                    half_close: true,
                    ..SendOptions::default()
                };
                c.target.exchange_with(Listener::Http, bytes, &send).await
            }
        ),
        case!("scep_get_message_garbage_base64", Expect::Status(400), |c| {
            let path = format!("{}&message=***%%%!!!", operation_path("default", "PKIOperation"));
            c.target.request(Listener::Http, "GET", &path, &[], b"").await
        }),
        case!("scep_get_message_base64_of_junk", Expect::Status(400), |c| {
            let path = format!("{}&message=MIIBAAAAAAAA", operation_path("default", "PKIOperation"));
            c.target.request(Listener::Http, "GET", &path, &[], b"").await
        }),
        case!(
            "scep_get_huge_query",
            Expect::StatusOrClosed(&[400, 413, 414, 431]),
            |c| {
                let path = format!(
                    "{}&message={}",
                    operation_path("default", "PKIOperation"),
                    "A".repeat(600 * 1024)
                );
                c.target.request(Listener::Http, "GET", &path, &[], b"").await
            }
        ),
    ]
}

/// Authentication: challenges, renewal signers, other requesters' transactions.
fn auth_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("scep_wrong_challenge", Expect::Checked, |c| {
            c.enroll_with(Some("not-the-challenge"), &RequestOptions::new(MessageType::PkcsReq))
                .await
        }),
        case!("scep_no_challenge", Expect::Checked, |c| {
            c.enroll_with(None, &RequestOptions::new(MessageType::PkcsReq)).await
        }),
        case!("scep_reused_one_time_challenge", Expect::Checked, |c| {
            c.enroll_with(Some(&c.used_challenge), &RequestOptions::new(MessageType::PkcsReq))
                .await
        }),
        case!("scep_challenge_of_other_endpoint", Expect::Checked, |c| {
            c.enroll_with(Some(&c.other_challenge), &RequestOptions::new(MessageType::PkcsReq))
                .await
        }),
        case!("scep_sha1_signature_with_a_wrong_challenge", Expect::Checked, |c| {
            let mut options = RequestOptions::new(MessageType::PkcsReq);
            options.digest = DigestAlg::Sha1;
            c.enroll_with(Some("x"), &options).await
        }),
        case!("scep_signing_time_30_days_old", Expect::Checked, |c| {
            let mut options = RequestOptions::new(MessageType::PkcsReq);
            options.signing_time = SigningTime::At(OffsetDateTime::now_utc() - time::Duration::days(30));
            c.enroll_with(Some("x"), &options).await
        }),
        case!("scep_corrupted_key_transport", Expect::Checked, |c| {
            let mut options = RequestOptions::new(MessageType::PkcsReq);
            options.corrupt_key_transport = true;
            c.enroll_with(Some("x"), &options).await
        }),
        case!("scep_certrep_sent_by_client", Expect::Checked, |c| {
            c.enroll_with(Some("x"), &RequestOptions::new(MessageType::CertRep))
                .await
        }),
        case!("scep_renewal_self_signed", Expect::Checked, |c| {
            c.enroll_with(None, &RequestOptions::new(MessageType::RenewalReq)).await
        }),
        case!(
            "scep_renewal_by_est_certificate_for_other_names",
            Expect::Checked,
            |c| {
                let client = &c.renewer;
                let csr = testclient::csr(client.key(), "est-device", &["admin.attack.test"], None).expect("CSR");
                let message = client
                    .pki_message(&c.ra, &csr, &RequestOptions::new(MessageType::RenewalReq))
                    .expect("PKIMessage");
                let outcome = post(&c.target, "default", message).await;
                Outcome::Checked(failure(&outcome, client, &c.ra, &[FailInfo::BadRequest]))
            }
        ),
        case!(
            "scep_certpoll_for_another_requesters_transaction",
            Expect::Checked,
            |c| {
                let attacker = ScepClient::new("poller").expect("client");
                let mut options = RequestOptions::new(MessageType::CertPoll);
                options.transaction_id = c.approved.transaction_id.clone();
                let message = attacker
                    .pki_message(&c.ra_approve, &c.approved.poll_content, &options)
                    .expect("PKIMessage");
                let outcome = post(&c.target, "approve", message).await;
                let allowed = [FailInfo::BadCertId, FailInfo::BadRequest];
                Outcome::Checked(failure(&outcome, &attacker, &c.ra_approve, &allowed))
            }
        ),
        case!("scep_getcert_for_serial_not_owned", Expect::Checked, |c| {
            let attacker = ScepClient::new("collector").expect("client");
            let content = testclient::issuer_and_serial(&c.victim).expect("IssuerAndSerialNumber");
            let message = attacker
                .pki_message(&c.ra, &content, &RequestOptions::new(MessageType::GetCert))
                .expect("PKIMessage");
            let outcome = post(&c.target, "default", message).await;
            Outcome::Checked(failure(&outcome, &attacker, &c.ra, &[FailInfo::BadCertId]))
        }),
    ]
}

/// Nesting 40,000 deep in each layer; last, since before the fix one of them aborted the
/// daemon.
fn deep_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("scep_csr_garbage", Expect::Checked, |c| {
            c.send_signed(sealed(b"\x30\x03garbage", &c.ra), &[FailInfo::BadMessageCheck])
                .await
        }),
        case!("scep_csr_nested_40000", Expect::Checked, |c| {
            let csr = hostile::nest_definite(0x30, DEEP, &[]);
            c.send_signed(sealed(&csr, &c.ra), &[FailInfo::BadMessageCheck]).await
        }),
        case!("scep_enveloped_data_garbage", Expect::Checked, |c| {
            c.send_signed(b"\x30\x80\x06\x09garbage".to_vec(), &[FailInfo::BadMessageCheck])
                .await
        }),
        case!("scep_enveloped_data_nested_40000_ber", Expect::Checked, |c| {
            let content = hostile::nest_indefinite(0x30, DEEP, &[]);
            c.send_signed(content, &[FailInfo::BadMessageCheck]).await
        }),
        case!("scep_signed_data_nested_40000_ber", Expect::Status(400), |c| {
            let oid = hostile::tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]);
            let inner = hostile::tlv(0xa0, &hostile::nest_indefinite(0x30, DEEP, &[]));
            post(&c.target, "default", hostile::tlv(0x30, &[oid, inner].concat())).await
        }),
        case!("scep_signed_data_nested_40000_der", Expect::Status(400), |c| {
            let oid = hostile::tlv(0x06, &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02]);
            let inner = hostile::tlv(0xa0, &hostile::nest_definite(0x30, DEEP, &[]));
            post(&c.target, "default", hostile::tlv(0x30, &[oid, inner].concat())).await
        }),
        case!("scep_econtent_octets_nested_40000_ber", Expect::Checked, |c| {
            c.send_rewritten(|message| {
                hostile::replace_at(&message, &ECONTENT, &|_, octets| {
                    hostile::nest_indefinite(0x24, DEEP, &hostile::tlv(0x04, octets))
                })
                .expect("eContent rewritten")
            })
            .await
        }),
        case!("scep_signed_attribute_nested_40000_ber", Expect::Checked, |c| {
            c.send_rewritten(|message| {
                let deep = hostile::nest_indefinite(0x30, DEEP, &[]);
                hostile::replace_marker(&message, b"rewritten-0001", &deep).expect("transactionID rewritten")
            })
            .await
        }),
        case!("scep_encrypted_content_nested_40000_ber", Expect::Checked, |c| {
            let envelope = envelope_with(&c.ra, &|ciphertext| {
                hostile::nest_indefinite(
                    0xa0,
                    1,
                    &hostile::nest_indefinite(0x24, DEEP, &hostile::tlv(0x04, ciphertext)),
                )
            });
            c.send_signed(envelope, &[FailInfo::BadMessageCheck]).await
        }),
        case!(
            "scep_encrypted_content_nested_40000_der_aborted_the_daemon",
            Expect::Checked,
            |c| {
                let envelope = envelope_with(&c.ra, &|ciphertext| {
                    hostile::tlv(
                        0xa0,
                        &hostile::nest_definite(0x24, DEEP, &hostile::tlv(0x04, ciphertext)),
                    )
                });
                // The finding's shape: ~185 KB, under the 256 KiB message limit.
                assert!((150_000..240_000).contains(&envelope.len()), "{} bytes", envelope.len());
                c.send_signed(envelope, &[FailInfo::BadMessageCheck]).await
            }
        ),
    ]
}

/// Every SCEP case.
pub fn cases() -> Vec<Case<Ctx>> {
    let mut all = http_cases();
    all.extend(pki_operation_cases());
    all.extend(auth_cases());
    all.extend(deep_cases());
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn scep_attacks() {
    let ctx = Ctx::start().await;
    run_cases(Arc::clone(&ctx), cases()).await;
    finish(ctx);
}
