//! Whole flows in process (validation always passes here; the real validators are exercised
//! end to end against the binary): what a well-behaved client gets.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use certgate_core::Clock;
use serde_json::json;

use super::harness::{BASE, Harness, ORIGIN, TestKey, jws, path_of};

#[tokio::test]
async fn directory_and_nonces() {
    let h = Harness::with(
        |c| {
            c.terms_of_service = Some("https://ca.test/terms".into());
            c.caa_identities = vec!["ca.test".into()];
        },
        |_| {},
    );
    let resp = h.call("GET", &format!("{BASE}/directory"), None, &[]).await;
    assert_eq!(resp.status, 200);
    let directory = resp.json();
    for (field, path) in [
        ("newNonce", "/new-nonce"),
        ("newAccount", "/new-account"),
        ("newOrder", "/new-order"),
        ("revokeCert", "/revoke-cert"),
        ("keyChange", "/key-change"),
        ("renewalInfo", "/renewal-info"),
    ] {
        assert_eq!(directory[field], format!("{ORIGIN}{BASE}{path}"), "{field}");
    }
    assert_eq!(directory["meta"]["termsOfService"], "https://ca.test/terms");
    assert_eq!(directory["meta"]["caaIdentities"], json!(["ca.test"]));
    assert_eq!(directory["meta"]["externalAccountRequired"], false);
    assert!(directory["meta"]["profiles"]["tls-server"].is_string());

    let head = h.call("HEAD", &format!("{BASE}/new-nonce"), None, &[]).await;
    assert_eq!(head.status, 200);
    assert_eq!(head.header("cache-control"), Some("no-store"));
    let get = h.call("GET", &format!("{BASE}/new-nonce"), None, &[]).await;
    assert_eq!(get.status, 204);
    assert_ne!(head.header("replay-nonce"), get.header("replay-nonce"));
}

#[tokio::test]
async fn issue_download_and_reuse_authorizations() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, cert_url, der) = h.issue(&account, &["a.test", "b.test"]).await;
    assert!(cert_url.starts_with(&format!("{ORIGIN}{BASE}/cert/")));
    let order = h.as_account(&account, path_of(&order_url), None).await.json();
    assert_eq!(order["status"], "valid");
    assert!(!der.is_empty());
    // A second order for the same names reuses the valid authorizations: ready at once.
    let (_, second) = h.new_order(&account, &["b.test", "a.test"]).await;
    assert_eq!(second["status"], "ready", "{second}");
}

#[tokio::test]
async fn ip_and_wildcard_identifiers() {
    let h = Harness::new();
    let account = h.new_account().await;
    let resp = h
        .as_account(
            &account,
            &format!("{BASE}/new-order"),
            Some(&json!({"identifiers": [{"type": "ip", "value": "192.0.2.7"}, {"type": "dns", "value": "*.w.test"}]})),
        )
        .await;
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    let order = resp.json();
    for authz_url in order["authorizations"].as_array().unwrap() {
        let authz = h
            .as_account(&account, path_of(authz_url.as_str().unwrap()), None)
            .await
            .json();
        let kind = if authz["identifier"]["type"] == "ip" {
            "http-01"
        } else {
            "dns-01"
        };
        let challenge = authz["challenges"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == kind)
            .unwrap();
        h.as_account(&account, path_of(challenge["url"].as_str().unwrap()), Some(&json!({})))
            .await;
    }
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = certgate_test_support::csr(&key, None, &["192.0.2.7", "*.w.test"]);
    let resp = h.finalize(&account, &order, &csr).await;
    assert_eq!(resp.json()["status"], "valid", "{:?}", resp.json());
}

#[tokio::test]
async fn orders_list_is_paginated() {
    let h = Harness::new();
    let account = h.new_account().await;
    for i in 0..103 {
        h.new_order(&account, &[&format!("n{i}.test")]).await;
    }
    let mut path = format!("{}/orders", path_of(&account.kid));
    let mut seen = Vec::new();
    loop {
        let resp = h.as_account(&account, &path, None).await;
        assert_eq!(resp.status, 200);
        seen.extend(resp.json()["orders"].as_array().unwrap().iter().cloned());
        match resp
            .headers
            .iter()
            .find(|(n, v)| *n == "link" && v.contains("rel=\"next\""))
        {
            Some((_, link)) => {
                let next = link.trim_start_matches('<').split('>').next().unwrap();
                path = path_of(next).to_owned();
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 103);
    seen.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    seen.dedup();
    assert_eq!(seen.len(), 103, "no order twice across pages");
}

#[tokio::test]
async fn key_change_then_the_old_key_is_refused() {
    let h = Harness::new();
    let mut account = h.new_account().await;
    let new_key = TestKey::es256();
    let path = format!("{BASE}/key-change");
    let inner_header = json!({"alg": "ES256", "jwk": new_key.public, "url": format!("{ORIGIN}{path}")});
    let inner = jws(
        &new_key,
        &inner_header,
        &serde_json::to_vec(&json!({"account": account.kid, "oldKey": account.key.public})).unwrap(),
    );
    let inner: serde_json::Value = serde_json::from_slice(&inner).unwrap();
    let resp = h.as_account(&account, &path, Some(&inner)).await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    let old = std::mem::replace(&mut account.key, new_key);
    let stale = h.post(&old, Some(&account.kid), path_of(&account.kid), None).await;
    assert_eq!(stale.problem(), "malformed", "the old key no longer verifies");
    let fresh = h.as_account(&account, path_of(&account.kid), None).await;
    assert_eq!(fresh.status, 200);
    // The new key finds the account; the old one finds none.
    let found = h
        .post(
            &account.key,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"onlyReturnExisting": true})),
        )
        .await;
    assert_eq!(found.location(), account.kid);
    let gone = h
        .post(
            &old,
            None,
            &format!("{BASE}/new-account"),
            Some(&json!({"onlyReturnExisting": true})),
        )
        .await;
    assert_eq!(gone.problem(), "accountDoesNotExist");
}

#[tokio::test]
async fn renewal_info_and_replaces() {
    let h = Harness::new();
    let account = h.new_account().await;
    h.issue(&account, &["a.test"]).await;
    let records = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    let cert_id = certgate_acme::ari::cert_id(&records[0]).unwrap();
    let resp = h
        .call("GET", &format!("{BASE}/renewal-info/{cert_id}"), None, &[])
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    assert!(resp.header("retry-after").is_some());
    let window = resp.json()["suggestedWindow"].clone();
    let parse = |v: &serde_json::Value| {
        time::OffsetDateTime::parse(v.as_str().unwrap(), &time::format_description::well_known::Rfc3339).unwrap()
    };
    let (start, end) = (parse(&window["start"]), parse(&window["end"]));
    assert!(records[0].not_before < start && start < end && end < records[0].not_after);

    let resp = h
        .as_account(
            &account,
            &format!("{BASE}/new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "a.test"}], "replaces": cert_id})),
        )
        .await;
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    let order = resp.json();
    assert_eq!(order["replaces"], cert_id);
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let done = h
        .finalize(&account, &order, &certgate_test_support::csr(&key, None, &["a.test"]))
        .await;
    assert_eq!(done.json()["status"], "valid");
    let records = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    let successor = records.iter().find(|r| r.serial != records_first(&records)).unwrap();
    assert_eq!(
        successor.replaces.as_ref().map(|s| s.to_hex()),
        Some(records_first(&records).to_hex())
    );

    // Replacing it again is refused.
    let again = h
        .as_account(
            &account,
            &format!("{BASE}/new-order"),
            Some(&json!({"identifiers": [{"type": "dns", "value": "a.test"}], "replaces": cert_id})),
        )
        .await;
    assert_eq!((again.problem().as_str(), again.status), ("alreadyReplaced", 409));

    // A revoked certificate should be renewed now.
    let der = records.iter().find(|r| r.replaces.is_none()).unwrap().der.clone();
    h.as_account(
        &account,
        &format!("{BASE}/revoke-cert"),
        Some(&json!({"certificate": B64.encode(der)})),
    )
    .await;
    let resp = h
        .call("GET", &format!("{BASE}/renewal-info/{cert_id}"), None, &[])
        .await;
    let end = parse(&resp.json()["suggestedWindow"]["end"]);
    assert!(end <= time::OffsetDateTime::now_utc() + time::Duration::minutes(1));
}

fn records_first(records: &[certgate_store::CertificateRecord]) -> certgate_core::Serial {
    records.iter().find(|r| r.replaces.is_none()).unwrap().serial.clone()
}

#[tokio::test]
async fn revocation_by_the_certificate_key() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = h.new_order(&account, &["k.test"]).await;
    let _ = order_url;
    h.authorize(&account, &order, "http-01").await;
    let cert_key = TestKey::es256();
    let csr = certgate_test_support::csr(cert_key.rcgen.as_ref().unwrap(), None, &["k.test"]);
    let done = h.finalize(&account, &order, &csr).await;
    assert_eq!(done.json()["status"], "valid");
    let records = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    let payload = json!({"certificate": B64.encode(&records[0].der), "reason": 1});
    let resp = h
        .post(&cert_key, None, &format!("{BASE}/revoke-cert"), Some(&payload))
        .await;
    assert_eq!(resp.status, 200, "{:?}", resp.json());
    let records = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    assert_eq!(records[0].revocation.as_ref().unwrap().reason.code(), 1);
}

#[tokio::test]
async fn profile_and_not_after() {
    let h = Harness::new();
    let account = h.new_account().await;
    let not_after = h.clock.now() + time::Duration::days(10);
    let resp = h
        .as_account(
            &account,
            &format!("{BASE}/new-order"),
            Some(&json!({
                "identifiers": [{"type": "dns", "value": "p.test"}],
                "profile": "tls-client",
                "notAfter": not_after.format(&time::format_description::well_known::Rfc3339).unwrap(),
            })),
        )
        .await;
    assert_eq!(resp.status, 201, "{:?}", resp.json());
    let order = resp.json();
    assert_eq!(order["profile"], "tls-client");
    h.authorize(&account, &order, "dns-01").await;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let done = h
        .finalize(&account, &order, &certgate_test_support::csr(&key, None, &["p.test"]))
        .await;
    assert_eq!(done.json()["status"], "valid", "{:?}", done.json());
    let records = certgate_store::list_all(&h.ta.store, certgate_store::CertificateFilter::All)
        .await
        .unwrap();
    assert_eq!(records[0].profile.as_str(), "tls-client");
    assert_eq!(records[0].not_after.unix_timestamp(), not_after.unix_timestamp());
}

#[tokio::test]
async fn authorization_deactivation() {
    let h = Harness::new();
    let account = h.new_account().await;
    let (order_url, order) = h.new_order(&account, &["d.test"]).await;
    let authz_url = order["authorizations"][0].as_str().unwrap();
    let resp = h
        .as_account(&account, path_of(authz_url), Some(&json!({"status": "deactivated"})))
        .await;
    assert_eq!(resp.json()["status"], "deactivated");
    let order = h.as_account(&account, path_of(&order_url), None).await.json();
    assert_eq!(order["status"], "invalid");
}
