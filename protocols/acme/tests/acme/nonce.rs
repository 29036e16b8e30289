//! Nonces over a real sled store with an injected clock.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use certgate_acme::nonce::{NONCE_CHARS, Nonces};
use certgate_core::{Clock, ManualClock};
use certgate_store::{NonceStore, SledStore};
use serde_json::json;
use time::{Duration, OffsetDateTime};

use super::harness::{Account, BASE, Harness, ORIGIN, TestKey, jws};

struct Fixture {
    nonces: Nonces,
    store: SledStore,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    Fixture {
        nonces: Nonces::new(Arc::new(store.clone()), dyn_clock, Duration::minutes(60)).unwrap(),
        store,
        clock,
        _dir: dir,
    }
}

impl Fixture {
    /// How many used nonces the store holds (the sweep far in the future forgets them all).
    async fn used_in_store(&self) -> u64 {
        self.store
            .sweep_nonces(self.clock.now() + Duration::days(1))
            .await
            .unwrap()
    }

    /// The problem's short name, or `None` when the nonce was checked and redeemed.
    async fn check_and_redeem(&self, nonce: &str) -> Option<String> {
        let result = match self.nonces.check(nonce) {
            Ok(checked) => self.nonces.redeem(&checked).await,
            Err(problem) => Err(problem),
        };
        result.err().map(|p| {
            assert_eq!(p.status, 400, "badNonce is a 400");
            p.kind.rsplit(':').next().unwrap().to_owned()
        })
    }
}

/// Flips one bit of the decoded token at `byte` and encodes it again.
fn tampered(nonce: &str, byte: usize) -> String {
    let mut token = B64.decode(nonce).unwrap();
    token[byte] ^= 0x01;
    B64.encode(token)
}

#[tokio::test]
async fn issuing_is_stateless_and_redeeming_is_once() {
    let f = fixture();
    let issued: Vec<String> = (0..1000).map(|_| f.nonces.issue().unwrap()).collect();
    assert_eq!(f.used_in_store().await, 0, "issuing writes nothing");
    let first = &issued[0];
    assert_ne!(issued[0], issued[1]);
    assert_eq!(
        (first.len(), NONCE_CHARS),
        (54, 54),
        "64-bit expiry, 128 random bits and a 128-bit tag, base64url without padding"
    );
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("good_first_use", first.clone(), None),
        ("bad_replay", first.clone(), Some("badNonce")),
        ("bad_forged", B64.encode([7u8; 40]), Some("badNonce")),
        ("bad_expiry_edited", tampered(&issued[1], 7), Some("badNonce")),
        ("bad_random_edited", tampered(&issued[1], 12), Some("badNonce")),
        ("bad_tag_edited", tampered(&issued[1], 39), Some("badNonce")),
        ("bad_too_long", "A".repeat(4096), Some("badNonce")),
        ("bad_not_base64url", "not a nonce!".into(), Some("badNonce")),
        (
            "bad_old_format",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            Some("badNonce"),
        ),
        ("bad_padded", format!("{}==", issued[2]), Some("badNonce")),
        ("good_untouched_after_forgeries", issued[1].clone(), None),
        ("good_second", issued[2].clone(), None),
    ];
    for (case, nonce, want) in cases {
        assert_eq!(f.check_and_redeem(&nonce).await.as_deref(), want, "case {case}");
    }
    assert_eq!(
        f.used_in_store().await,
        3,
        "only the three redeemed nonces were written"
    );
}

#[tokio::test]
async fn a_checked_nonce_is_not_used_until_redeemed() {
    let f = fixture();
    let nonce = f.nonces.issue().unwrap();
    // Checked twice (two requests whose signatures failed, say): nothing is written, and
    // the nonce still redeems once.
    let checked = f.nonces.check(&nonce).unwrap();
    assert_eq!(f.nonces.check(&nonce).unwrap(), checked);
    assert_eq!(f.used_in_store().await, 0);
    f.nonces.redeem(&checked).await.unwrap();
    let replay = f.nonces.redeem(&checked).await.unwrap_err();
    assert_eq!(replay.kind, "urn:ietf:params:acme:error:badNonce");
}

#[tokio::test]
async fn expired_nonces_and_nonces_from_before_a_restart_are_refused() {
    let f = fixture();
    let expiring = f.nonces.issue().unwrap();
    let redeemed = f.nonces.issue().unwrap();
    assert_eq!(f.check_and_redeem(&redeemed).await, None);
    f.clock.advance(Duration::minutes(61));
    assert_eq!(
        f.check_and_redeem(&expiring).await.as_deref(),
        Some("badNonce"),
        "expired"
    );
    assert_eq!(
        f.check_and_redeem(&redeemed).await.as_deref(),
        Some("badNonce"),
        "used and expired"
    );
    // The sweep forgets the expired used nonce; a replay stays refused as expired.
    assert_eq!(f.nonces.sweep().await, 1);
    assert_eq!(f.check_and_redeem(&redeemed).await.as_deref(), Some("badNonce"));
    assert_eq!(f.nonces.sweep().await, 0);

    // A restart draws a new key: nonces of the process before are not ours.
    let before = f.nonces.issue().unwrap();
    let dyn_clock: Arc<dyn Clock> = f.clock.clone();
    let restarted = Nonces::new(Arc::new(f.store.clone()), dyn_clock, Duration::minutes(60)).unwrap();
    let problem = restarted.check(&before).unwrap_err();
    assert_eq!(problem.kind, "urn:ietf:params:acme:error:badNonce");
    assert!(restarted.check(&restarted.issue().unwrap()).is_ok());
}

// ---- through the server ----

/// How many used nonces the harness's store holds (a sweep far in the future forgets and
/// counts them all).
async fn used_nonces(h: &Harness) -> u64 {
    h.ta.store
        .sweep_nonces(h.clock.now() + Duration::days(1))
        .await
        .unwrap()
}

#[tokio::test]
async fn unauthenticated_requests_write_no_nonce() {
    let h = Harness::new();
    assert_eq!(used_nonces(&h).await, 0);
    for _ in 0..20 {
        for (method, path) in [
            ("GET", "/directory"),
            ("HEAD", "/directory"),
            ("HEAD", "/new-nonce"),
            ("GET", "/new-nonce"),
            ("GET", "/renewal-info/not-a-cert-id"),
            ("PUT", "/new-order"),
        ] {
            let resp = h.call(method, &format!("{BASE}{path}"), None, &[]).await;
            assert!(resp.header("replay-nonce").is_some(), "{method} {path}");
        }
    }
    assert_eq!(used_nonces(&h).await, 0, "120 answers with nonces, nothing stored");
    // A POST whose JWS does not even parse writes nothing either.
    let resp = h.post_raw(&format!("{BASE}/new-account"), b"{}").await;
    assert_eq!(resp.problem(), "malformed");
    assert_eq!(used_nonces(&h).await, 0);
    // A signed request redeems exactly its own nonce.
    h.new_account().await;
    assert_eq!(used_nonces(&h).await, 1);
}

/// A new-order request of `account` with `nonce`, signed by `signer`.
fn new_order_body(account: &Account, signer: &TestKey, nonce: &str) -> Vec<u8> {
    let header =
        json!({"alg": "ES256", "nonce": nonce, "url": format!("{ORIGIN}{BASE}/new-order"), "kid": account.kid});
    let payload = json!({"identifiers": [{"type": "dns", "value": "a.test"}]});
    jws(signer, &header, &serde_json::to_vec(&payload).unwrap())
}

#[tokio::test]
async fn forged_and_replayed_nonces_are_bad_nonces_with_a_fresh_one() {
    let h = Harness::new();
    let account = h.new_account().await;
    let path = format!("{BASE}/new-order");
    let forged = B64.encode([7u8; 40]);
    let resp = h
        .post_raw(&path, &new_order_body(&account, &account.key, &forged))
        .await;
    assert_eq!((resp.problem().as_str(), resp.status), ("badNonce", 400));
    let fresh = resp.header("replay-nonce").unwrap().to_owned();
    assert_ne!(fresh, forged);
    let body = new_order_body(&account, &account.key, &fresh);
    assert_eq!(h.post_raw(&path, &body).await.status, 201, "the fresh nonce works");
    let replay = h.post_raw(&path, &body).await;
    assert_eq!((replay.problem().as_str(), replay.status), ("badNonce", 400));
    assert!(replay.header("replay-nonce").is_some());
}

/// The nonce is redeemed only once the signature verified: a request signed by the wrong
/// key (or not at all) is refused for its signature, writes nothing, and the nonce stays
/// good for the request its key signs.
#[tokio::test]
async fn a_nonce_sent_with_a_bad_signature_stays_usable() {
    let h = Harness::new();
    let account = h.new_account().await;
    used_nonces(&h).await;
    let path = format!("{BASE}/new-order");
    let nonce = h.nonce().await;
    let stranger = TestKey::es256();
    let resp = h.post_raw(&path, &new_order_body(&account, &stranger, &nonce)).await;
    assert_eq!((resp.problem().as_str(), resp.status), ("malformed", 400));
    let mut garbage: serde_json::Value =
        serde_json::from_slice(&new_order_body(&account, &account.key, &nonce)).unwrap();
    garbage["signature"] = json!(B64.encode([0u8; 64]));
    let resp = h.post_raw(&path, &serde_json::to_vec(&garbage).unwrap()).await;
    assert_eq!((resp.problem().as_str(), resp.status), ("malformed", 400));
    assert_eq!(used_nonces(&h).await, 0, "nothing written for unsigned requests");
    let signed = new_order_body(&account, &account.key, &nonce);
    assert_eq!(h.post_raw(&path, &signed).await.status, 201);
    assert_eq!(h.post_raw(&path, &signed).await.problem(), "badNonce");
}
