//! The negative catalogue: one test per way a client can get a request wrong. Each checks the
//! RFC 8555 problem type and HTTP status, and that the request changed nothing (no
//! certificate, no account, order or authorization moved).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use certgate_core::Clock;
use certgate_store::AcmeStore;
use serde_json::{Value, json};

use super::harness::{Account, BASE, Harness, ORIGIN, Resp, TestKey, jws, path_of, url};

fn expect(resp: &Resp, problem: &str, status: u16) {
    assert_eq!(
        (resp.problem().as_str(), resp.status),
        (problem, status),
        "answer: {}",
        String::from_utf8_lossy(&resp.body)
    );
    let body = resp.json();
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "a problem says what is wrong: {body}"
    );
    assert_eq!(body["status"], status, "the body repeats the status");
}

/// What a refused request must leave untouched.
#[derive(Debug, PartialEq)]
struct Snapshot {
    certificates: usize,
    order: Option<Value>,
    authorizations: Vec<Value>,
    accounts: Vec<Value>,
}

async fn snapshot(h: &Harness, accounts: &[&Account], order_url: Option<&str>) -> Snapshot {
    let id_of = |url: &str| url.rsplit('/').next().unwrap().to_owned();
    let order = match order_url {
        Some(url) => h.ta.store.order(&id_of(url)).await.ok(),
        None => None,
    };
    let mut authorizations = Vec::new();
    if let Some(order) = &order {
        for id in &order.authorizations {
            authorizations.push(serde_json::to_value(h.ta.store.authorization(id).await.unwrap()).unwrap());
        }
    }
    let mut records = Vec::new();
    for account in accounts {
        records.push(serde_json::to_value(h.ta.store.account(&id_of(&account.kid)).await.unwrap()).unwrap());
    }
    Snapshot {
        certificates: h.certificate_count().await,
        order: order.map(|o| serde_json::to_value(o).unwrap()),
        authorizations,
        accounts: records,
    }
}

fn new_order_path() -> String {
    format!("{BASE}/new-order")
}

fn order_payload(names: &[&str]) -> Value {
    json!({"identifiers": names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>()})
}

async fn header(h: &Harness, key: &TestKey, kid: Option<&str>, path: &str) -> Value {
    let mut header = json!({"alg": key.alg, "nonce": h.nonce().await, "url": format!("{ORIGIN}{path}")});
    match kid {
        Some(kid) => header["kid"] = json!(kid),
        None => header["jwk"] = key.public.clone(),
    }
    header
}

/// A ready order of `account` for one name.
async fn ready_order(h: &Harness, account: &Account, name: &str) -> (String, Value) {
    let (order_url, order) = h.new_order(account, &[name]).await;
    h.authorize(account, &order, "http-01").await;
    let order = h.as_account(account, path_of(&order_url), None).await.json();
    assert_eq!(order["status"], "ready");
    (order_url, order)
}

fn csr_for(names: &[&str]) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    certgate_test_support::csr(&key, None, names)
}

#[tokio::test]
async fn bad_nonce_and_the_fresh_nonce_in_that_answer_works() {
    let h = Harness::new();
    let account = h.new_account().await;
    let before = snapshot(&h, &[&account], None).await;
    let path = new_order_path();
    let mut hdr = header(&h, &account.key, Some(&account.kid), &path).await;
    hdr["nonce"] = json!("AAAAAAAAAAAAAAAAAAAAAA");
    let payload = serde_json::to_vec(&order_payload(&["a.test"])).unwrap();
    let resp = h.post_raw(&path, &jws(&account.key, &hdr, &payload)).await;
    expect(&resp, "badNonce", 400);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
    // The client retries with the nonce of the error answer, as certbot and lego do.
    hdr["nonce"] = json!(resp.header("replay-nonce").unwrap());
    let retry = h.post_raw(&path, &jws(&account.key, &hdr, &payload)).await;
    assert_eq!(retry.status, 201, "{:?}", retry.json());
}

#[tokio::test]
async fn replayed_nonce() {
    let h = Harness::new();
    let account = h.new_account().await;
    let path = new_order_path();
    let hdr = header(&h, &account.key, Some(&account.kid), &path).await;
    let body = jws(
        &account.key,
        &hdr,
        &serde_json::to_vec(&order_payload(&["a.test"])).unwrap(),
    );
    assert_eq!(h.post_raw(&path, &body).await.status, 201);
    let before = snapshot(&h, &[&account], None).await;
    expect(&h.post_raw(&path, &body).await, "badNonce", 400);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn url_mismatch() {
    refused_request(
        |h, _| h["url"] = json!(url("/new-account")),
        |_| {},
        "unauthorized",
        403,
    )
    .await;
}

/// A newOrder whose protected header (given the account's public JWK) or flattened body is
/// edited before sending: refused with `problem`, nothing changed.
async fn refused_request(
    edit_header: impl FnOnce(&mut Value, &Value),
    edit_body: impl FnOnce(&mut Value),
    problem: &str,
    status: u16,
) {
    let h = Harness::new();
    let account = h.new_account().await;
    let before = snapshot(&h, &[&account], None).await;
    let mut hdr = header(&h, &account.key, Some(&account.kid), &new_order_path()).await;
    edit_header(&mut hdr, &account.key.public);
    let payload = serde_json::to_vec(&order_payload(&["a.test"])).unwrap();
    let mut body: Value = serde_json::from_slice(&jws(&account.key, &hdr, &payload)).unwrap();
    edit_body(&mut body);
    let resp = h.post_raw(&new_order_path(), &serde_json::to_vec(&body).unwrap()).await;
    expect(&resp, problem, status);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

async fn refused_header(edit: impl FnOnce(&mut Value), problem: &str, status: u16) {
    refused_request(|h, _| edit(h), |_| {}, problem, status).await;
}

#[tokio::test]
async fn alg_none() {
    refused_header(|h| h["alg"] = json!("none"), "badSignatureAlgorithm", 400).await;
}

#[tokio::test]
async fn alg_hs256() {
    refused_header(|h| h["alg"] = json!("HS256"), "badSignatureAlgorithm", 400).await;
}

#[tokio::test]
async fn alg_does_not_match_the_key() {
    refused_header(|h| h["alg"] = json!("RS256"), "badSignatureAlgorithm", 400).await;
}

#[tokio::test]
async fn jwk_and_kid_together() {
    refused_request(|h, jwk| h["jwk"] = jwk.clone(), |_| {}, "malformed", 400).await;
}

#[tokio::test]
async fn crit_header() {
    refused_header(|h| h["crit"] = json!(["exp"]), "malformed", 400).await;
}

#[tokio::test]
async fn unprotected_header() {
    refused_request(|_, _| {}, |b| b["header"] = json!({"kid": "x"}), "malformed", 400).await;
}

#[tokio::test]
async fn tampered_payload_fails_the_signature() {
    let tampered = B64.encode(serde_json::to_vec(&order_payload(&["b.test"])).unwrap());
    refused_request(|_, _| {}, |b| b["payload"] = json!(tampered), "malformed", 400).await;
}

#[tokio::test]
async fn kid_of_another_account() {
    let h = Harness::new();
    let (alice, bob) = (h.new_account().await, h.new_account().await);
    let before = snapshot(&h, &[&alice, &bob], None).await;
    let resp = h
        .post(
            &alice.key,
            Some(&bob.kid),
            &new_order_path(),
            Some(&order_payload(&["a.test"])),
        )
        .await;
    expect(&resp, "malformed", 400);
    assert_eq!(snapshot(&h, &[&alice, &bob], None).await, before);
}

#[tokio::test]
async fn unknown_account() {
    let h = Harness::new();
    let key = TestKey::es256();
    let resp = h
        .post(
            &key,
            Some(&url("/acct/nosuchaccount")),
            &new_order_path(),
            Some(&order_payload(&["a.test"])),
        )
        .await;
    expect(&resp, "accountDoesNotExist", 400);
    assert_eq!(h.certificate_count().await, 0);
}

#[tokio::test]
async fn deactivated_account() {
    let h = Harness::new();
    let account = h.new_account().await;
    let resp = h
        .as_account(&account, path_of(&account.kid), Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(resp.json()["status"], "deactivated");
    let before = snapshot(&h, &[&account], None).await;
    expect(
        &h.as_account(&account, &new_order_path(), Some(&order_payload(&["a.test"])))
            .await,
        "unauthorized",
        403,
    );
    // newAccount with the same key does not resurrect it either.
    let again = h
        .post(
            &account.key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true})),
        )
        .await;
    expect(&again, "unauthorized", 403);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn oversized_body() {
    let h = Harness::new();
    let account = h.new_account().await;
    let before = snapshot(&h, &[&account], None).await;
    let body = vec![b' '; certgate_acme::jws::MAX_JWS_LEN + 1];
    expect(&h.post_raw(&new_order_path(), &body).await, "malformed", 413);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn wrong_content_type() {
    let h = Harness::new();
    let account = h.new_account().await;
    let hdr = header(&h, &account.key, Some(&account.kid), &new_order_path()).await;
    let body = jws(
        &account.key,
        &hdr,
        &serde_json::to_vec(&order_payload(&["a.test"])).unwrap(),
    );
    let before = snapshot(&h, &[&account], None).await;
    let resp = h.call("POST", &new_order_path(), Some("application/json"), &body).await;
    expect(&resp, "malformed", 415);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn malformed_json_payload() {
    let h = Harness::new();
    let account = h.new_account().await;
    let hdr = header(&h, &account.key, Some(&account.kid), &new_order_path()).await;
    let before = snapshot(&h, &[&account], None).await;
    let resp = h
        .post_raw(&new_order_path(), &jws(&account.key, &hdr, b"{\"identifiers\": [}"))
        .await;
    expect(&resp, "malformed", 400);
    expect(&h.post_raw(&new_order_path(), b"{not json").await, "malformed", 400);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn jwk_where_kid_is_required() {
    let h = Harness::new();
    let account = h.new_account().await;
    let before = snapshot(&h, &[&account], None).await;
    let resp = h
        .post(&account.key, None, &new_order_path(), Some(&order_payload(&["a.test"])))
        .await;
    expect(&resp, "malformed", 400);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn kid_on_new_account() {
    let h = Harness::new();
    let account = h.new_account().await;
    let resp = h
        .as_account(
            &account,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true})),
        )
        .await;
    expect(&resp, "malformed", 400);
}

#[tokio::test]
async fn finalize_before_ready() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = h.new_order(&account, &["a.test"]).await;
    let before = snapshot(&h, &[&account], Some(&order_url)).await;
    let resp = h.finalize(&account, &order, &csr_for(&["a.test"])).await;
    expect(&resp, "orderNotReady", 403);
    assert_eq!(snapshot(&h, &[&account], Some(&order_url)).await, before);
}

#[tokio::test]
async fn csr_names_differ_from_identifiers() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = ready_order(&h, &account, "a.test").await;
    let before = snapshot(&h, &[&account], Some(&order_url)).await;
    for names in [&["b.test"][..], &["a.test", "b.test"][..]] {
        expect(&h.finalize(&account, &order, &csr_for(names)).await, "badCSR", 400);
    }
    assert_eq!(snapshot(&h, &[&account], Some(&order_url)).await, before);
    // The order is still ready: a corrected CSR goes through.
    assert_eq!(h.finalize(&account, &order, &csr_for(&["a.test"])).await.status, 200);
}

#[tokio::test]
async fn csr_key_is_the_account_key() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = ready_order(&h, &account, "a.test").await;
    let before = snapshot(&h, &[&account], Some(&order_url)).await;
    let csr = certgate_test_support::csr(account.key.rcgen.as_ref().unwrap(), None, &["a.test"]);
    expect(&h.finalize(&account, &order, &csr).await, "badCSR", 400);
    assert_eq!(snapshot(&h, &[&account], Some(&order_url)).await, before);
}

#[tokio::test]
async fn rsa_1024_csr() {
    let h = Harness::new();
    let account = h.new_account().await;
    // The golden CSR's names (testdata/csr/regenerate.sh).
    let payload = json!({"identifiers": [
        {"type": "dns", "value": "dev1.example.com"},
        {"type": "dns", "value": "www.example.com"},
        {"type": "ip", "value": "192.0.2.10"},
    ]});
    let resp = h.as_account(&account, &new_order_path(), Some(&payload)).await;
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    let (order_url, order) = (resp.location(), resp.json());
    h.authorize(&account, &order, "http-01").await;
    assert_eq!(
        h.as_account(&account, path_of(&order_url), None).await.json()["status"],
        "ready"
    );
    let before = snapshot(&h, &[&account], Some(&order_url)).await;
    let csr = std::fs::read(certgate_test_support::workspace_root().join("testdata/csr/bad_rsa1024.der"))
        .expect("golden RSA-1024 CSR");
    let resp = h.finalize(&account, &order, &csr).await;
    expect(&resp, "badCSR", 400);
    assert!(
        resp.json()["detail"].as_str().unwrap().contains("RSA"),
        "{:?}",
        resp.json()
    );
    assert_eq!(snapshot(&h, &[&account], Some(&order_url)).await, before);
}

#[tokio::test]
async fn garbage_csr() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = ready_order(&h, &account, "a.test").await;
    let before = snapshot(&h, &[&account], Some(&order_url)).await;
    expect(&h.finalize(&account, &order, b"not a CSR").await, "badCSR", 400);
    assert_eq!(snapshot(&h, &[&account], Some(&order_url)).await, before);
}

#[tokio::test]
async fn wildcard_with_http01() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = h.new_order(&account, &["*.w.test"]).await;
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let authz = h.as_account(&account, path_of(&authz_url), None).await.json();
    assert_eq!(authz["wildcard"], true);
    let kinds: Vec<&str> = authz["challenges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["dns-01"], "wildcards offer only dns-01");
    let before = snapshot(&h, &[&account], Some(&order_url)).await;
    let http01 = format!("{}/http-01", path_of(&authz_url).replace("/authz/", "/chall/"));
    expect(
        &h.as_account(&account, &http01, Some(&json!({}))).await,
        "malformed",
        404,
    );
    assert_eq!(snapshot(&h, &[&account], Some(&order_url)).await, before);
}

#[tokio::test]
async fn name_outside_policy() {
    let h = Harness::with(
        |_| {},
        |policy| policy.names.denied_dns_suffixes = vec!["forbidden.test".into()],
    );
    let account = h.new_account().await;
    let before = snapshot(&h, &[&account], None).await;
    let resp = h
        .as_account(
            &account,
            &new_order_path(),
            Some(&order_payload(&["ok.test", "x.forbidden.test"])),
        )
        .await;
    expect(&resp, "rejectedIdentifier", 400);
    let body = resp.json();
    assert_eq!(
        body["subproblems"][0]["identifier"]["value"], "x.forbidden.test",
        "{body}"
    );
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn unsupported_identifier_type() {
    let h = Harness::new();
    let account = h.new_account().await;
    let resp = h
        .as_account(
            &account,
            &new_order_path(),
            Some(&json!({"identifiers": [{"type": "email", "value": "a@b.test"}]})),
        )
        .await;
    expect(&resp, "unsupportedIdentifier", 400);
}

#[tokio::test]
async fn empty_identifiers() {
    let h = Harness::new();
    let account = h.new_account().await;
    let resp = h
        .as_account(&account, &new_order_path(), Some(&json!({"identifiers": []})))
        .await;
    expect(&resp, "malformed", 400);
}

#[tokio::test]
async fn unknown_profile() {
    let h = Harness::new();
    let account = h.new_account().await;
    let mut payload = order_payload(&["a.test"]);
    payload["profile"] = json!("no-such-profile");
    expect(
        &h.as_account(&account, &new_order_path(), Some(&payload)).await,
        "invalidProfile",
        400,
    );
}

#[tokio::test]
async fn not_after_beyond_the_profile_maximum() {
    let h = Harness::new();
    let account = h.new_account().await;
    let mut payload = order_payload(&["a.test"]);
    let far = h.clock.now() + time::Duration::days(4000);
    payload["notAfter"] = json!(far.format(&time::format_description::well_known::Rfc3339).unwrap());
    expect(
        &h.as_account(&account, &new_order_path(), Some(&payload)).await,
        "malformed",
        400,
    );
}

async fn foreign_resource(what: &str) {
    let h = Harness::new();
    let (alice, mallory) = (h.new_account().await, h.new_account().await);
    let (order_url, _, _) = h.issue(&alice, &["a.test"]).await;
    let order = h.as_account(&alice, path_of(&order_url), None).await.json();
    let before = snapshot(&h, &[&alice, &mallory], Some(&order_url)).await;
    let authz_url = order["authorizations"][0].as_str().unwrap();
    let (path, payload) = match what {
        "order" => (path_of(&order_url).to_owned(), None),
        "finalize" => (
            path_of(order["finalize"].as_str().unwrap()).to_owned(),
            Some(json!({"csr": B64.encode(csr_for(&["a.test"]))})),
        ),
        "authorization" => (path_of(authz_url).to_owned(), None),
        "deactivate authorization" => (path_of(authz_url).to_owned(), Some(json!({"status": "deactivated"}))),
        "challenge" => (
            format!("{}/http-01", path_of(authz_url).replace("/authz/", "/chall/")),
            Some(json!({})),
        ),
        "certificate" => (path_of(order["certificate"].as_str().unwrap()).to_owned(), None),
        "account" => (path_of(&alice.kid).to_owned(), Some(json!({"status": "deactivated"}))),
        "orders list" => (format!("{}/orders", path_of(&alice.kid)), None),
        other => panic!("{other}"),
    };
    let resp = h.as_account(&mallory, &path, payload.as_ref()).await;
    expect(&resp, "unauthorized", 403);
    assert_eq!(
        snapshot(&h, &[&alice, &mallory], Some(&order_url)).await,
        before,
        "{what}"
    );
}

#[tokio::test]
async fn another_accounts_order() {
    foreign_resource("order").await;
}

#[tokio::test]
async fn another_accounts_finalize() {
    foreign_resource("finalize").await;
}

#[tokio::test]
async fn another_accounts_authorization() {
    foreign_resource("authorization").await;
}

#[tokio::test]
async fn another_accounts_authorization_deactivation() {
    foreign_resource("deactivate authorization").await;
}

#[tokio::test]
async fn another_accounts_challenge() {
    foreign_resource("challenge").await;
}

#[tokio::test]
async fn another_accounts_certificate() {
    foreign_resource("certificate").await;
}

#[tokio::test]
async fn another_account_deactivated_by_a_stranger() {
    foreign_resource("account").await;
}

#[tokio::test]
async fn another_accounts_orders_list() {
    foreign_resource("orders list").await;
}

#[tokio::test]
async fn revocation_by_a_stranger() {
    let h = Harness::new();
    let (alice, mallory) = (h.new_account().await, h.new_account().await);
    let (_, _, der) = h.issue(&alice, &["a.test"]).await;
    let before = snapshot(&h, &[&alice, &mallory], None).await;
    let payload = json!({"certificate": B64.encode(&der), "reason": 1});
    expect(
        &h.as_account(&mallory, &format!("{BASE}/revoke-cert"), Some(&payload))
            .await,
        "unauthorized",
        403,
    );
    // Nor with a key that is not the certificate's.
    let stranger = TestKey::es256();
    expect(
        &h.post(&stranger, None, &format!("{BASE}/revoke-cert"), Some(&payload))
            .await,
        "unauthorized",
        403,
    );
    assert_eq!(snapshot(&h, &[&alice, &mallory], None).await, before);
    let listed = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    assert!(listed.iter().all(|c| c.revocation.is_none()));
}

#[tokio::test]
async fn double_revocation() {
    let h = Harness::new();
    let alice = h.new_account().await;
    let (_, _, der) = h.issue(&alice, &["a.test"]).await;
    let payload = json!({"certificate": B64.encode(&der), "reason": 4});
    let first = h
        .as_account(&alice, &format!("{BASE}/revoke-cert"), Some(&payload))
        .await;
    assert_eq!(first.status, 200, "{:?}", first.json());
    let listed = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    let revoked_at = listed[0].revocation.clone().unwrap();
    expect(
        &h.as_account(&alice, &format!("{BASE}/revoke-cert"), Some(&payload))
            .await,
        "alreadyRevoked",
        400,
    );
    let listed = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    assert_eq!(listed[0].revocation, Some(revoked_at), "the first revocation stands");
}

#[tokio::test]
async fn bad_revocation_reason() {
    let h = Harness::new();
    let alice = h.new_account().await;
    let (_, _, der) = h.issue(&alice, &["a.test"]).await;
    for reason in [2, 6, 7, 8, 10, 99] {
        let payload = json!({"certificate": B64.encode(&der), "reason": reason});
        expect(
            &h.as_account(&alice, &format!("{BASE}/revoke-cert"), Some(&payload))
                .await,
            "badRevocationReason",
            400,
        );
    }
    let listed = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    assert!(listed[0].revocation.is_none());
}

#[tokio::test]
async fn revocation_of_a_certificate_this_server_did_not_issue() {
    let h = Harness::new();
    let alice = h.new_account().await;
    let other = certgate_test_support::TestCa::new(certgate_signer::KeyType::P256);
    let payload = json!({"certificate": B64.encode(other.issuer.certificate_der())});
    expect(
        &h.as_account(&alice, &format!("{BASE}/revoke-cert"), Some(&payload))
            .await,
        "malformed",
        404,
    );
}

#[tokio::test]
async fn expired_order() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = ready_order(&h, &account, "a.test").await;
    h.clock.advance(time::Duration::hours(25));
    let resp = h.finalize(&account, &order, &csr_for(&["a.test"])).await;
    expect(&resp, "orderNotReady", 403);
    let order = h.as_account(&account, path_of(&order_url), None).await.json();
    assert_eq!(order["status"], "invalid");
    assert!(
        order["error"]["detail"].as_str().unwrap().contains("expired"),
        "{order}"
    );
    assert_eq!(h.certificate_count().await, 0);
}

#[tokio::test]
async fn unknown_order() {
    let h = Harness::new();
    let account = h.new_account().await;
    expect(
        &h.as_account(&account, &format!("{BASE}/order/nosuchorder"), None).await,
        "malformed",
        404,
    );
}

#[tokio::test]
async fn plain_get_of_a_resource() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, _) = h.new_order(&account, &["a.test"]).await;
    let resp = h.call("GET", path_of(&order_url), None, &[]).await;
    expect(&resp, "malformed", 405);
}

#[tokio::test]
async fn post_to_a_get_resource() {
    let h = Harness::new();
    for path in ["/directory", "/new-nonce", "/renewal-info/x"] {
        let resp = h.post_raw(&format!("{BASE}{path}"), b"{}").await;
        expect(&resp, "malformed", 405);
    }
}

async fn eab_harness() -> (Harness, String, Vec<u8>) {
    let h = Harness::with(|c| c.external_account_required = true, |_| {});
    let (kid, mac) = AcmeServerEab::create(&h).await;
    (h, kid, mac)
}

struct AcmeServerEab;

impl AcmeServerEab {
    async fn create(h: &Harness) -> (String, Vec<u8>) {
        let (kid, mac) = certgate_acme::AcmeServer::create_eab_key(
            &h.ta.store,
            &certgate_test_support::name("default"),
            time::OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        (kid, B64.decode(mac).unwrap())
    }
}

/// An externalAccountBinding for `key` made with `mac`.
fn eab(key: &TestKey, kid: &str, mac: &[u8]) -> Value {
    let protected =
        B64.encode(serde_json::to_vec(&json!({"alg": "HS256", "kid": kid, "url": url("/new-account")})).unwrap());
    let payload = B64.encode(serde_json::to_vec(&key.public).unwrap());
    let tag = aws_lc_rs::hmac::sign(
        &aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, mac),
        format!("{protected}.{payload}").as_bytes(),
    );
    json!({"protected": protected, "payload": payload, "signature": B64.encode(tag.as_ref())})
}

#[tokio::test]
async fn eab_required_but_missing() {
    let (h, _, _) = eab_harness().await;
    let key = TestKey::es256();
    let resp = h
        .post(
            &key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true})),
        )
        .await;
    expect(&resp, "externalAccountRequired", 400);
    // onlyReturnExisting without EAB still answers (cert-manager sends it).
    let resp = h
        .post(
            &key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"onlyReturnExisting": true})),
        )
        .await;
    expect(&resp, "accountDoesNotExist", 400);
}

#[tokio::test]
async fn used_eab_key() {
    let (h, kid, mac) = eab_harness().await;
    let first = TestKey::es256();
    let resp = h
        .post(
            &first,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab(&first, &kid, &mac)})),
        )
        .await;
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    let second = TestKey::es256();
    let resp = h
        .post(
            &second,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab(&second, &kid, &mac)})),
        )
        .await;
    expect(&resp, "unauthorized", 403);
    let keys = h.ta.store.eab_keys(None).await.unwrap();
    assert_eq!(
        keys[0].account_id.as_deref(),
        Some(first_account_id(&h, &first).await.as_str())
    );
}

async fn first_account_id(h: &Harness, key: &TestKey) -> String {
    let resp = h
        .post(
            key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"onlyReturnExisting": true})),
        )
        .await;
    resp.location().rsplit('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn wrong_eab_mac() {
    let (h, kid, _) = eab_harness().await;
    let key = TestKey::es256();
    let resp = h
        .post(
            &key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab(&key, &kid, &[7u8; 32])})),
        )
        .await;
    expect(&resp, "unauthorized", 403);
    assert!(
        h.ta.store.eab_keys(None).await.unwrap()[0].account_id.is_none(),
        "the key stays unused"
    );
}

#[tokio::test]
async fn eab_binding_another_key() {
    let (h, kid, mac) = eab_harness().await;
    let (key, other) = (TestKey::es256(), TestKey::es256());
    let resp = h
        .post(
            &key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true, "externalAccountBinding": eab(&other, &kid, &mac)})),
        )
        .await;
    expect(&resp, "malformed", 400);
}

#[tokio::test]
async fn invalid_and_unsupported_contacts() {
    let h = Harness::new();
    for (contact, problem) in [
        ("mailto:not-an-address", "invalidContact"),
        ("mailto:a@b.test,c@d.test", "invalidContact"),
        ("mailto:a@b.test?subject=x", "invalidContact"),
        ("tel:+15551234", "unsupportedContact"),
    ] {
        let key = TestKey::es256();
        let resp = h
            .post(
                &key,
                None,
                &format!("{BASE}/new-account"),
                Some(&json!({"termsOfServiceAgreed": true, "contact": [contact]})),
            )
            .await;
        expect(&resp, problem, 400);
    }
}

#[tokio::test]
async fn terms_of_service_not_agreed() {
    let h = Harness::with(|c| c.terms_of_service = Some("https://ca.test/terms".into()), |_| {});
    let key = TestKey::es256();
    let resp = h
        .post(
            &key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"contact": []})),
        )
        .await;
    expect(&resp, "malformed", 400);
}

#[tokio::test]
async fn key_change_with_the_wrong_old_key() {
    let h = Harness::new();
    let account = h.new_account().await;
    let before = snapshot(&h, &[&account], None).await;
    let new_key = TestKey::es256();
    let impostor = TestKey::es256();
    let path = format!("{BASE}/key-change");
    let inner_header = json!({"alg": "ES256", "jwk": new_key.public, "url": format!("{ORIGIN}{path}")});
    let inner = jws(
        &new_key,
        &inner_header,
        &serde_json::to_vec(&json!({"account": account.kid, "oldKey": impostor.public})).unwrap(),
    );
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    expect(&h.as_account(&account, &path, Some(&inner)).await, "unauthorized", 403);
    assert_eq!(snapshot(&h, &[&account], None).await, before);
}

#[tokio::test]
async fn key_change_to_a_key_another_account_holds() {
    let h = Harness::new();
    let (alice, bob) = (h.new_account().await, h.new_account().await);
    let before = snapshot(&h, &[&alice, &bob], None).await;
    let path = format!("{BASE}/key-change");
    let inner_header = json!({"alg": "ES256", "jwk": bob.key.public, "url": format!("{ORIGIN}{path}")});
    let inner = jws(
        &bob.key,
        &inner_header,
        &serde_json::to_vec(&json!({"account": alice.kid, "oldKey": alice.key.public})).unwrap(),
    );
    let inner: Value = serde_json::from_slice(&inner).unwrap();
    let resp = h.as_account(&alice, &path, Some(&inner)).await;
    assert_eq!(resp.status, 409, "{:?}", resp.json());
    assert_eq!(resp.location(), bob.kid, "409 names the account holding the key");
    assert_eq!(snapshot(&h, &[&alice, &bob], None).await, before);
}

#[tokio::test]
async fn replaces_a_certificate_of_another_account() {
    let h = Harness::new();
    let (alice, mallory) = (h.new_account().await, h.new_account().await);
    let (_, _, der) = h.issue(&alice, &["a.test"]).await;
    let record = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    let cert_id = certgate_acme::ari::cert_id(&record[0]).unwrap();
    let _ = der;
    let mut payload = order_payload(&["a.test"]);
    payload["replaces"] = json!(cert_id);
    let before = snapshot(&h, &[&alice, &mallory], None).await;
    expect(
        &h.as_account(&mallory, &new_order_path(), Some(&payload)).await,
        "unauthorized",
        403,
    );
    assert_eq!(snapshot(&h, &[&alice, &mallory], None).await, before);
}

#[tokio::test]
async fn rate_limited_new_orders() {
    let h = Harness::with(|c| c.rate_limits.new_orders_per_account = Some(2), |_| {});
    let account = h.new_account().await;
    h.new_order(&account, &["a.test"]).await;
    h.new_order(&account, &["b.test"]).await;
    let before = snapshot(&h, &[&account], None).await;
    let resp = h
        .as_account(&account, &new_order_path(), Some(&order_payload(&["c.test"])))
        .await;
    expect(&resp, "rateLimited", 429);
    assert_eq!(
        resp.header("retry-after"),
        Some("3600"),
        "the rest of the one-hour window (the test clock stands still)"
    );
    assert_eq!(snapshot(&h, &[&account], None).await, before);
    // The window passes.
    h.clock.advance(time::Duration::hours(2));
    assert_eq!(
        h.as_account(&account, &new_order_path(), Some(&order_payload(&["c.test"])))
            .await
            .status,
        201
    );
}

/// A limit on new orders holds for requests sent at once, and an order refused for another
/// reason (after its order was counted) gives its count back. The race itself is pinned down
/// by the limiter's own concurrency test.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rate_limited_new_orders_concurrently() {
    let h = Harness::with(
        |c| c.rate_limits.new_orders_per_account = Some(3),
        |policy| policy.names.denied_dns_suffixes = vec!["forbidden.test".into()],
    );
    let account = h.new_account().await;
    let refused = h
        .as_account(&account, &new_order_path(), Some(&order_payload(&["x.forbidden.test"])))
        .await;
    expect(&refused, "rejectedIdentifier", 400);
    let (h, account) = (std::sync::Arc::new(h), std::sync::Arc::new(account));
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let (h, account, barrier) = (h.clone(), account.clone(), barrier.clone());
            tokio::spawn(async move {
                let payload = order_payload(&[format!("n{i}.test").as_str()]);
                barrier.wait().await;
                h.as_account(&account, &new_order_path(), Some(&payload)).await
            })
        })
        .collect();
    let (mut created, mut limited) = (0, 0);
    for task in tasks {
        let resp = task.await.unwrap();
        match resp.status {
            201 => created += 1,
            _ => {
                expect(&resp, "rateLimited", 429);
                limited += 1;
            }
        }
    }
    assert_eq!((created, limited), (3, 5), "the refused order spent nothing");
}

#[tokio::test]
async fn unknown_endpoint_and_resource() {
    let h = Harness::new();
    let resp = h.call("GET", "/acme/nope/directory", None, &[]).await;
    assert_eq!(resp.status, 404);
    assert!(
        resp.header("replay-nonce").is_none(),
        "no nonce is stored for made-up endpoints"
    );
    let resp = h.call("GET", &format!("{BASE}/nothing-here"), None, &[]).await;
    expect(&resp, "malformed", 404);
}

#[tokio::test]
async fn account_of_another_endpoint() {
    let h = Harness::with_second_endpoint();
    let account = h.new_account().await;
    let foreign_kid = account.kid.replace("/acme/default/", "/acme/other/");
    let resp = h
        .post(
            &account.key,
            Some(&foreign_kid),
            "/acme/other/new-order",
            Some(&order_payload(&["a.test"])),
        )
        .await;
    expect(&resp, "accountDoesNotExist", 400);
}

#[tokio::test]
async fn finalize_after_an_authorization_was_deactivated() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = ready_order(&h, &account, "a.test").await;
    let authz_url = order["authorizations"][0].as_str().unwrap().to_owned();
    let resp = h
        .as_account(&account, path_of(&authz_url), Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(resp.json()["status"], "deactivated");
    expect(
        &h.finalize(&account, &order, &csr_for(&["a.test"])).await,
        "orderNotReady",
        403,
    );
    assert_eq!(
        h.as_account(&account, path_of(&order_url), None).await.json()["status"],
        "invalid"
    );
    assert_eq!(h.certificate_count().await, 0);
}

#[tokio::test]
async fn rate_limited_new_accounts() {
    let h = Harness::with(|c| c.rate_limits.new_accounts_per_ip = Some(1), |_| {});
    let first = h.new_account().await;
    let key = TestKey::es256();
    let resp = h
        .post(
            &key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"termsOfServiceAgreed": true})),
        )
        .await;
    expect(&resp, "rateLimited", 429);
    // The existing account is still found: only creation is limited.
    let again = h
        .post(
            &first.key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"onlyReturnExisting": true})),
        )
        .await;
    assert_eq!(again.location(), first.kid);
}
