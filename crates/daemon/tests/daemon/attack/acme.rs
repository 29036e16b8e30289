//! ACME under attack: malformed and bent JWS (structure, nesting, sizes, nonces, URLs, keys,
//! algorithms), one account reaching for another's resources, finalize with CSRs for other
//! names or built to hurt the parser, certificates of other protocols, the http-01 echo of
//! a validation target's body, and the default rate limit on new accounts.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use serde_json::{Map, Value, json};

use super::acme_client::{ACME_PATH, Account, Acme, Http01, Issued, JwsKey, Order, SECRET, Signer, serial_hex};
use super::harness::{Area, Case, Expect, Listener, Outcome, SendOptions, Target, case, finish, run_cases};
use super::{est, hostile};

/// Where the rate-limit case sends from, so that the other cases' accounts do not count.
const RATE_LIMIT_SOURCE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 20));
/// New accounts one address may create per hour by default (`RateLimits::default`).
const DEFAULT_NEW_ACCOUNTS_PER_IP: usize = 100;

/// The daemon and what the cases attack: alice's certificate, ready and pending orders;
/// bob, a second account; a certificate issued through EST.
pub struct Ctx {
    target: Target,
    acme: Acme,
    http01: Http01,
    alice: Account,
    bob: Account,
    issued: Issued,
    pending: Order,
    est_leaf: Vec<u8>,
    est_key: JwsKey,
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
        let target = Target::start(&super::acme_client::defaults_with_http01(http01.port));
        let acme = Acme::of(&target);
        let alice = acme.account(&target).await;
        let bob = acme.account(&target).await;
        let issued = acme.obtain(&target, &alice, "127.0.0.1", &http01).await;
        let pending = acme.order(&target, &alice, &["pending.attack.test"]).await;
        let key = rcgen::KeyPair::generate().expect("P-256 key");
        est::add_user(&target, None, "device", "s3cret");
        let est_leaf = est::enroll(&target, None, "device", "s3cret", &key, "est-device").await;
        Arc::new(Self {
            est_key: JwsKey::from_pkcs8(&key.serialize_der()),
            target,
            acme,
            http01,
            alice,
            bob,
            issued,
            pending,
            est_leaf,
        })
    }

    fn url(&self, rest: &str) -> String {
        self.acme.url(rest)
    }

    async fn nonce(&self) -> String {
        self.acme.nonce(&self.target).await
    }

    /// POSTs a body as it is.
    async fn raw(&self, url: &str, body: &[u8]) -> Outcome {
        self.acme.send(&self.target, url, body).await
    }

    /// A correctly signed request whose protected header `bend` changes first.
    async fn bent(
        &self,
        key: &JwsKey,
        signer: Signer<'_>,
        url: &str,
        payload: Option<Value>,
        bend: impl FnOnce(&mut Value),
    ) -> Outcome {
        let mut protected = self.acme.protected(key, signer, &self.nonce().await, url);
        bend(&mut protected);
        let payload = payload.map(|p| p.to_string().into_bytes());
        self.raw(url, &key.jws(&protected, payload.as_deref())).await
    }

    /// newAccount for a fresh key with a protected header `bend` changed.
    async fn new_account_bent(&self, bend: impl FnOnce(&mut Value)) -> Outcome {
        let url = self.url("/new-account");
        let payload = json!({"termsOfServiceAgreed": true});
        self.bent(&JwsKey::generate(), Signer::Jwk, &url, Some(payload), bend)
            .await
    }

    /// A correctly signed newAccount JWS as a JSON object, for `bend` to change its members.
    async fn new_account_members(&self, bend: impl FnOnce(&mut Map<String, Value>)) -> Outcome {
        let key = JwsKey::generate();
        let url = self.url("/new-account");
        let protected = self.acme.protected(&key, Signer::Jwk, &self.nonce().await, &url);
        let jws = key.jws(&protected, Some(br#"{"termsOfServiceAgreed":true}"#));
        let mut members: Map<String, Value> = serde_json::from_slice(&jws).expect("a JWS object");
        bend(&mut members);
        self.raw(&url, Value::Object(members).to_string().as_bytes()).await
    }

    /// newOrder by alice with a protected header `bend` changed.
    async fn new_order_bent(&self, bend: impl FnOnce(&mut Value)) -> Outcome {
        let payload = json!({"identifiers": [{"type": "dns", "value": "bent.attack.test"}]});
        let url = self.url("/new-order");
        self.bent(&self.alice.key, Signer::Kid(&self.alice.kid), &url, Some(payload), bend)
            .await
    }

    /// A request signed by `as_` (kid) with a fresh nonce.
    async fn post(&self, as_: &Account, url: &str, payload: Option<Value>) -> Outcome {
        self.acme
            .post(&self.target, &as_.key, Signer::Kid(&as_.kid), url, payload.as_ref())
            .await
    }

    /// A fresh ready order of alice for 127.0.0.1 (her authorization is reused).
    async fn ready(&self) -> Order {
        self.acme
            .ready_order(&self.target, &self.alice, "127.0.0.1", &self.http01)
            .await
    }

    /// Alice finalizes a fresh ready order with `csr` (DER) as the CSR.
    async fn finalize_with(&self, csr: &[u8]) -> Outcome {
        let order = self.ready().await;
        let payload = json!({"csr": B64URL.encode(csr)});
        self.post(&self.alice, &order.finalize(), Some(payload)).await
    }

    /// The challenge URL of the first challenge of alice's pending order.
    async fn pending_challenge(&self) -> String {
        let authz = self.acme.fetch(&self.target, &self.alice, &self.pending.authz()).await;
        authz["challenges"][0]["url"].as_str().unwrap_or_default().to_owned()
    }
}

/// A CSR for `names` from a fresh key.
fn csr_for(names: &[&str]) -> Vec<u8> {
    certgate_test_support::csr(&rcgen::KeyPair::generate().expect("P-256 key"), None, names)
}

/// An RSA JWK with a modulus of `bits` bits (never a real key: the size check comes first).
fn rsa_jwk(bits: usize) -> Value {
    let mut modulus = vec![0xc5u8; bits / 8];
    modulus[bits / 8 - 1] |= 1;
    json!({"kty": "RSA", "n": B64URL.encode(&modulus), "e": "AQAB"})
}

const fn problem(kind: &'static str, status: u16) -> Expect {
    Expect::Problem(kind, status)
}

/// The JWS structure: not JSON, nested, members missing or extra.
fn structure_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("acme_body_not_json", problem("malformed", 400), |c| c
            .raw(&c.url("/new-account"), br#"{"protected": "#)
            .await),
        case!("acme_body_json_array", problem("malformed", 400), |c| c
            .raw(&c.url("/new-account"), b"[]")
            .await),
        case!("acme_body_nested_10000", problem("malformed", 400), |c| {
            c.raw(&c.url("/new-account"), hostile::deep_json_array(10_000).as_bytes())
                .await
        }),
        case!("acme_payload_nested_10000", problem("malformed", 400), |c| {
            let key = JwsKey::generate();
            let url = c.url("/new-account");
            let protected = c.acme.protected(&key, Signer::Jwk, &c.nonce().await, &url);
            let payload = hostile::deep_json_array(10_000);
            c.raw(&url, &key.jws(&protected, Some(payload.as_bytes()))).await
        }),
        case!("acme_protected_nested_10000", problem("malformed", 400), |c| {
            let key = JwsKey::generate();
            let protected = hostile::deep_json_object("alg", 10_000);
            c.raw(&c.url("/new-account"), &key.jws_text(&protected, Some(b"{}")))
                .await
        }),
        case!("acme_jwk_nested_10000", problem("malformed", 400), |c| {
            let key = JwsKey::generate();
            let url = c.url("/new-account");
            let protected = format!(
                r#"{{"alg":"ES256","nonce":"{}","url":"{url}","jwk":{}}}"#,
                c.nonce().await,
                hostile::deep_json_object("kty", 10_000)
            );
            c.raw(&url, &key.jws_text(&protected, Some(b"{}"))).await
        }),
        case!("acme_protected_missing", problem("malformed", 400), |c| {
            c.new_account_members(|m| drop(m.remove("protected"))).await
        }),
        case!("acme_signature_missing", problem("malformed", 400), |c| {
            c.new_account_members(|m| drop(m.remove("signature"))).await
        }),
        case!("acme_signature_empty", problem("malformed", 400), |c| {
            c.new_account_members(|m| drop(m.insert("signature".into(), json!(""))))
                .await
        }),
        case!("acme_signature_huge", problem("malformed", 400), |c| {
            c.new_account_members(|m| drop(m.insert("signature".into(), json!("A".repeat(100_000)))))
                .await
        }),
        case!("acme_signature_not_base64url", problem("malformed", 400), |c| {
            c.new_account_members(|m| drop(m.insert("signature".into(), json!("%%%/+=="))))
                .await
        }),
        case!("acme_unprotected_header_member", problem("malformed", 400), |c| {
            c.new_account_members(|m| drop(m.insert("header".into(), json!({"kid": "x"}))))
                .await
        }),
        case!("acme_general_serialization", problem("malformed", 400), |c| {
            c.new_account_members(|m| drop(m.insert("signatures".into(), json!([]))))
                .await
        }),
    ]
}

/// Content type, size and a body cut short.
fn transport_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("acme_content_type_json", problem("malformed", 415), |c| {
            let headers = [("content-type", "application/json")];
            let path = format!("{ACME_PATH}/new-account");
            c.target.request(Listener::Https, "POST", &path, &headers, b"{}").await
        }),
        case!("acme_content_type_missing", problem("malformed", 415), |c| {
            let path = format!("{ACME_PATH}/new-account");
            c.target.request(Listener::Https, "POST", &path, &[], b"{}").await
        }),
        case!("acme_body_over_128k", problem("malformed", 413), |c| {
            c.raw(&c.url("/new-account"), &vec![b'{'; 129 * 1024]).await
        }),
        case!("acme_body_truncated", Expect::StatusOrClosed(&[400, 413]), |c| {
            let mut bytes = format!(
                "POST {ACME_PATH}/new-account HTTP/1.1\r\nhost: {}\r\ncontent-type: application/jose+json\r\n\
                 content-length: 4000\r\nconnection: close\r\n\r\n",
                c.target.host(Listener::Https)
            )
            .into_bytes();
            bytes.extend_from_slice(br#"{"protected":"eyJhbGciOiJFUzI1NiJ9","payload":""#);
            let send = SendOptions {
                half_close: true,
                ..SendOptions::default()
            };
            c.target.exchange_with(Listener::Https, bytes, &send).await
        }),
    ]
}

/// Nonces (garbage, huge, forged, missing, replayed), URLs and kids.
fn nonce_and_url_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("acme_nonce_garbage", problem("badNonce", 400), |c| {
            c.new_account_bent(|p| p["nonce"] = json!("not-a-nonce")).await
        }),
        case!("acme_nonce_huge", problem("badNonce", 400), |c| {
            c.new_account_bent(|p| p["nonce"] = json!("N".repeat(60_000))).await
        }),
        case!("acme_nonce_forged", problem("badNonce", 400), |c| {
            let nonce = c.nonce().await;
            let mut forged: Vec<char> = nonce.chars().collect();
            let last = forged.len() / 2;
            forged[last] = if forged[last] == 'A' { 'B' } else { 'A' };
            let forged: String = forged.into_iter().collect();
            c.new_account_bent(|p| p["nonce"] = json!(forged)).await
        }),
        case!("acme_nonce_missing", problem("malformed", 400), |c| {
            c.new_account_bent(|p| drop(p.as_object_mut().map(|o| o.remove("nonce"))))
                .await
        }),
        case!("acme_nonce_replayed", problem("badNonce", 400), |c| {
            let nonce = c.nonce().await;
            let url = c.alice.kid.clone();
            let protected = c.acme.protected(&c.alice.key, Signer::Kid(&c.alice.kid), &nonce, &url);
            let first = c.raw(&url, &c.alice.key.jws(&protected, None)).await;
            assert!(
                matches!(&first, Outcome::Answer(a) if a.status == 200),
                "first use: {first:?}"
            );
            c.raw(&url, &c.alice.key.jws(&protected, None)).await
        }),
        case!("acme_url_of_another_resource", problem("unauthorized", 403), |c| {
            let other = c.url("/new-order");
            c.new_account_bent(|p| p["url"] = json!(other)).await
        }),
        case!("acme_url_of_another_origin", problem("unauthorized", 403), |c| {
            let evil = format!("https://evil.example{ACME_PATH}/new-account");
            c.new_account_bent(|p| p["url"] = json!(evil)).await
        }),
        case!("acme_url_missing", problem("malformed", 400), |c| {
            c.new_account_bent(|p| drop(p.as_object_mut().map(|o| o.remove("url"))))
                .await
        }),
        case!("acme_kid_unknown", problem("accountDoesNotExist", 400), |c| {
            let kid = c.url("/acct/doesnotexist");
            c.new_order_bent(|p| p["kid"] = json!(kid)).await
        }),
        case!("acme_kid_of_another_origin", problem("accountDoesNotExist", 400), |c| {
            let kid = c.alice.kid.replace("127.0.0.1", "evil.example");
            c.new_order_bent(|p| p["kid"] = json!(kid)).await
        }),
        case!("acme_kid_huge", problem("accountDoesNotExist", 400), |c| {
            let kid = c.url(&format!("/acct/{}", "k".repeat(60_000)));
            c.new_order_bent(|p| p["kid"] = json!(kid)).await
        }),
        case!(
            "acme_kid_of_other_account_signed_by_own_key",
            problem("malformed", 400),
            |c| {
                let url = c.url("/new-order");
                let payload = json!({"identifiers": [{"type": "dns", "value": "kid.attack.test"}]});
                c.bent(&c.bob.key, Signer::Kid(&c.alice.kid), &url, Some(payload), |_| {})
                    .await
            }
        ),
    ]
}

/// Algorithms, signer fields, keys and signatures.
fn key_and_algorithm_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("acme_alg_none", problem("badSignatureAlgorithm", 400), |c| {
            c.new_account_bent(|p| p["alg"] = json!("none")).await
        }),
        case!("acme_alg_hs256", problem("badSignatureAlgorithm", 400), |c| {
            c.new_account_bent(|p| p["alg"] = json!("HS256")).await
        }),
        case!("acme_alg_missing", problem("badSignatureAlgorithm", 400), |c| {
            c.new_account_bent(|p| drop(p.as_object_mut().map(|o| o.remove("alg"))))
                .await
        }),
        case!(
            "acme_alg_rs256_for_ec_key",
            problem("badSignatureAlgorithm", 400),
            |c| { c.new_account_bent(|p| p["alg"] = json!("RS256")).await }
        ),
        case!("acme_crit_header", problem("malformed", 400), |c| {
            c.new_account_bent(|p| p["crit"] = json!(["exp"])).await
        }),
        case!("acme_jwk_and_kid", problem("malformed", 400), |c| {
            let kid = c.alice.kid.clone();
            c.new_account_bent(|p| p["kid"] = json!(kid)).await
        }),
        case!("acme_neither_jwk_nor_kid", problem("malformed", 400), |c| {
            c.new_account_bent(|p| drop(p.as_object_mut().map(|o| o.remove("jwk"))))
                .await
        }),
        case!("acme_new_account_signed_with_kid", problem("malformed", 400), |c| {
            let url = c.url("/new-account");
            let payload = json!({"termsOfServiceAgreed": true});
            c.bent(&c.alice.key, Signer::Kid(&c.alice.kid), &url, Some(payload), |_| {})
                .await
        }),
        case!("acme_new_order_signed_with_jwk", problem("malformed", 400), |c| {
            let jwk = c.alice.key.jwk.clone();
            c.new_order_bent(|p| {
                p.as_object_mut().map(|o| o.remove("kid"));
                p["jwk"] = jwk;
            })
            .await
        }),
        case!("acme_rsa_512_key", problem("badPublicKey", 400), |c| {
            c.new_account_bent(|p| {
                p["alg"] = json!("RS256");
                p["jwk"] = rsa_jwk(512);
            })
            .await
        }),
        case!("acme_rsa_1024_key", problem("badPublicKey", 400), |c| {
            c.new_account_bent(|p| {
                p["alg"] = json!("RS256");
                p["jwk"] = rsa_jwk(1024);
            })
            .await
        }),
        // An off-curve point is refused when the signature is checked (malformed); RFC 8555 would
        // prefer badPublicKey, which needs a point check at JWK parse time (left for issue 14).
        case!("acme_ec_point_not_on_curve", problem("badPublicKey", 400), |c| {
            c.new_account_bent(|p| p["jwk"]["y"] = json!(B64URL.encode([7u8; 32])))
                .await
        }),
        case!("acme_signature_by_another_key", problem("malformed", 400), |c| {
            let other = JwsKey::generate().jwk;
            c.new_account_bent(|p| p["jwk"] = other).await
        }),
    ]
}

/// One account reaching for another's order, authorization, challenge, certificate and
/// account (RFC 8555 7.3, 7.4, 7.5: unauthorized).
fn cross_account_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("acme_cross_account_order", problem("unauthorized", 403), |c| {
            c.post(&c.bob, &c.issued.order.url, None).await
        }),
        case!("acme_cross_account_authz", problem("unauthorized", 403), |c| {
            c.post(&c.bob, &c.pending.authz(), None).await
        }),
        case!(
            "acme_cross_account_authz_deactivate",
            problem("unauthorized", 403),
            |c| {
                c.post(&c.bob, &c.pending.authz(), Some(json!({"status": "deactivated"})))
                    .await
            }
        ),
        case!("acme_cross_account_challenge", problem("unauthorized", 403), |c| {
            let url = c.pending_challenge().await;
            c.post(&c.bob, &url, Some(json!({}))).await
        }),
        case!("acme_cross_account_finalize", problem("unauthorized", 403), |c| {
            let order = c.ready().await;
            let payload = json!({"csr": B64URL.encode(csr_for(&["127.0.0.1"]))});
            c.post(&c.bob, &order.finalize(), Some(payload)).await
        }),
        case!("acme_cross_account_certificate", problem("unauthorized", 403), |c| {
            c.post(&c.bob, &c.issued.cert_url, None).await
        }),
        case!("acme_cross_account_account_object", problem("unauthorized", 403), |c| {
            c.post(&c.bob, &c.alice.kid, None).await
        }),
        case!(
            "acme_cross_account_deactivate_account",
            problem("unauthorized", 403),
            |c| {
                c.post(&c.bob, &c.alice.kid, Some(json!({"status": "deactivated"})))
                    .await
            }
        ),
        case!("acme_cross_account_orders_list", problem("unauthorized", 403), |c| {
            c.post(&c.bob, &format!("{}/orders", c.alice.kid), None).await
        }),
        case!("acme_cross_account_revoke", Expect::Checked, |c| {
            let payload = json!({"certificate": B64URL.encode(&c.issued.leaf), "reason": 1});
            let outcome = c.post(&c.bob, &c.url("/revoke-cert"), Some(payload)).await;
            let answer = super::harness::check(problem("unauthorized", 403), &outcome);
            Outcome::Checked(answer.and(c.target.not_revoked(&serial_hex(&c.issued.leaf)).await))
        }),
        case!("acme_revoke_signed_by_unrelated_key", Expect::Checked, |c| {
            let payload = json!({"certificate": B64URL.encode(&c.issued.leaf)});
            let url = c.url("/revoke-cert");
            let outcome = c
                .bent(&JwsKey::generate(), Signer::Jwk, &url, Some(payload), |_| {})
                .await;
            let answer = super::harness::check(problem("unauthorized", 403), &outcome);
            Outcome::Checked(answer.and(c.target.not_revoked(&serial_hex(&c.issued.leaf)).await))
        }),
    ]
}

/// finalize with CSRs the order does not allow or that attack the parser.
fn finalize_cases() -> Vec<Case<Ctx>> {
    vec![
        case!("acme_finalize_csr_with_other_names", problem("badCSR", 400), |c| {
            c.finalize_with(&csr_for(&["127.0.0.1", "evil.attack.test"])).await
        }),
        case!("acme_finalize_csr_for_other_name_only", problem("badCSR", 400), |c| {
            c.finalize_with(&csr_for(&["evil.attack.test"])).await
        }),
        case!("acme_finalize_csr_garbage", problem("badCSR", 400), |c| {
            c.finalize_with(b"\x30\x82\xff\xffgarbage that is not a PKCS#10 request")
                .await
        }),
        case!("acme_finalize_csr_bad_signature", problem("badCSR", 400), |c| {
            let mut csr = csr_for(&["127.0.0.1"]);
            let last = csr.len() - 3;
            csr[last] ^= 0x55;
            c.finalize_with(&csr).await
        }),
        case!("acme_finalize_csr_nested_30000_ber", problem("badCSR", 400), |c| {
            c.finalize_with(&hostile::nest_unterminated(0x30, 30_000)).await
        }),
        case!("acme_finalize_csr_nested_15000_der", problem("badCSR", 400), |c| {
            c.finalize_with(&hostile::nest_definite(0x30, 15_000, &[])).await
        }),
        case!(
            "acme_finalize_csr_nested_40000_over_limit",
            problem("malformed", 413),
            |c| { c.finalize_with(&hostile::nest_unterminated(0x30, 40_000)).await }
        ),
        case!("acme_finalize_csr_not_base64url", problem("badCSR", 400), |c| {
            let order = c.ready().await;
            c.post(&c.alice, &order.finalize(), Some(json!({"csr": "***not base64***"})))
                .await
        }),
        case!("acme_finalize_pending_order", problem("orderNotReady", 403), |c| {
            let payload = json!({"csr": B64URL.encode(csr_for(&["pending.attack.test"]))});
            c.post(&c.alice, &c.pending.finalize(), Some(payload)).await
        }),
        case!("acme_finalize_valid_order_again", problem("orderNotReady", 403), |c| {
            let payload = json!({"csr": B64URL.encode(csr_for(&["127.0.0.1"]))});
            c.post(&c.alice, &c.issued.order.finalize(), Some(payload)).await
        }),
    ]
}

/// Certificates of other protocols, orders the policy refuses, endpoint-level mistakes, the
/// http-01 echo and the rate limit.
fn other_cases() -> Vec<Case<Ctx>> {
    vec![
        case!(
            "acme_revoke_est_certificate_with_its_key",
            problem("malformed", 404),
            |c| {
                let payload = json!({"certificate": B64URL.encode(&c.est_leaf)});
                let url = c.url("/revoke-cert");
                c.bent(&c.est_key, Signer::Jwk, &url, Some(payload), |_| {}).await
            }
        ),
        case!("acme_cert_url_of_est_certificate", problem("malformed", 404), |c| {
            let url = c.url(&format!("/cert/{}", serial_hex(&c.est_leaf)));
            c.post(&c.alice, &url, None).await
        }),
        case!("acme_order_101_identifiers", problem("rejectedIdentifier", 400), |c| {
            let identifiers: Vec<Value> = (0..101)
                .map(|i| json!({"type": "dns", "value": format!("n{i}.attack.test")}))
                .collect();
            c.post(
                &c.alice,
                &c.url("/new-order"),
                Some(json!({"identifiers": identifiers})),
            )
            .await
        }),
        case!(
            "acme_order_path_traversal_name",
            problem("rejectedIdentifier", 400),
            |c| {
                let identifiers = json!([{"type": "dns", "value": "../../etc/passwd"}]);
                c.post(
                    &c.alice,
                    &c.url("/new-order"),
                    Some(json!({"identifiers": identifiers})),
                )
                .await
            }
        ),
        case!(
            "acme_order_unsupported_identifier_type",
            problem("unsupportedIdentifier", 400),
            |c| {
                let identifiers = json!([{"type": "email", "value": "root@attack.test"}]);
                c.post(
                    &c.alice,
                    &c.url("/new-order"),
                    Some(json!({"identifiers": identifiers})),
                )
                .await
            }
        ),
        case!("acme_directory_post", problem("malformed", 405), |c| c
            .raw(&c.url("/directory"), b"{}")
            .await),
        case!("acme_unknown_resource", problem("malformed", 404), |c| c
            .post(&c.alice, &c.url("/nosuch"), None)
            .await),
        case!("acme_unknown_endpoint", Expect::Status(404), |c| {
            c.target
                .request(Listener::Https, "GET", "/acme/nosuch/directory", &[], b"")
                .await
        }),
        case!("acme_http01_target_body_not_echoed", Expect::Checked, |c| {
            Outcome::Checked(secret_not_echoed(&c).await)
        }),
        case!("acme_rate_limit_new_accounts_by_default", Expect::Checked, |c| {
            Outcome::Checked(new_accounts_rate_limited(&c).await)
        }),
    ]
}

/// http-01 against a target that answers a secret: the authorization fails, and neither
/// it nor its challenge repeats the secret (the server must not be a proxy that reads
/// internal URLs for its clients).
async fn secret_not_echoed(c: &Ctx) -> Result<(), String> {
    let carol = c.acme.account(&c.target).await;
    let order = c.acme.order(&c.target, &carol, &["127.0.0.1"]).await;
    let authz = c.acme.http01(&c.target, &carol, &order, &c.http01, false).await;
    if authz["status"] != "invalid" {
        return Err(format!("the authorization is not invalid: {authz}"));
    }
    let challenge_url = authz["challenges"][0]["url"].as_str().unwrap_or_default().to_owned();
    let challenge = c.acme.fetch(&c.target, &carol, &challenge_url).await;
    let order_now = c.acme.fetch(&c.target, &carol, &order.url).await;
    for shown in [&authz, &challenge, &order_now] {
        if shown.to_string().contains(SECRET) {
            return Err(format!("the target's body is echoed to the client: {shown}"));
        }
    }
    if challenge["error"]["type"].as_str().is_none() {
        return Err(format!("the failed challenge carries no error: {challenge}"));
    }
    Ok(())
}

/// newAccount from one address beyond the default limit is `rateLimited` with Retry-After.
async fn new_accounts_rate_limited(c: &Ctx) -> Result<(), String> {
    let url = c.url("/new-account");
    let send = SendOptions {
        source: Some(RATE_LIMIT_SOURCE),
        ..SendOptions::default()
    };
    for attempt in 1..=DEFAULT_NEW_ACCOUNTS_PER_IP + 1 {
        let key = JwsKey::generate();
        let protected = c.acme.protected(&key, Signer::Jwk, &c.nonce().await, &url);
        let body = key.jws(&protected, Some(br#"{"termsOfServiceAgreed":true}"#));
        let headers = [("content-type", "application/jose+json")];
        let bytes = super::harness::request(
            "POST",
            c.acme.path(&url),
            &c.target.host(Listener::Https),
            &headers,
            &body,
        );
        let outcome = c.target.exchange_with(Listener::Https, bytes, &send).await;
        let Outcome::Answer(answer) = outcome else {
            return Err(format!("account {attempt}: {outcome:?}"));
        };
        match answer.status {
            201 if attempt <= DEFAULT_NEW_ACCOUNTS_PER_IP => continue,
            201 => return Err(format!("{attempt} new accounts from one address, none refused")),
            429 if answer.json()["type"] == "urn:ietf:params:acme:error:rateLimited" => {
                return match answer.header("retry-after").and_then(|v| v.parse::<u64>().ok()) {
                    Some(seconds) if seconds > 0 => Ok(()),
                    _ => Err(format!("rateLimited without a Retry-After: {:?}", answer.headers)),
                };
            }
            _ => return Err(format!("account {attempt}: HTTP {} {}", answer.status, answer.text())),
        }
    }
    Err("unreachable: the loop returns".into())
}

/// Every ACME case.
pub fn cases() -> Vec<Case<Ctx>> {
    let mut all = structure_cases();
    all.extend(transport_cases());
    all.extend(nonce_and_url_cases());
    all.extend(key_and_algorithm_cases());
    all.extend(cross_account_cases());
    all.extend(finalize_cases());
    all.extend(other_cases());
    all
}

#[tokio::test(flavor = "multi_thread")]
async fn acme_attacks() {
    let ctx = Ctx::start().await;
    run_cases(Arc::clone(&ctx), cases()).await;
    finish(ctx);
}
