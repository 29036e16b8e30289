//! Nonces over a real sled store with an injected clock.

use std::sync::Arc;

use certgate_acme::nonce::Nonces;
use certgate_core::{Clock, ManualClock};
use certgate_store::SledStore;
use time::{Duration, OffsetDateTime};

fn nonces() -> (Nonces, Arc<ManualClock>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let dyn_clock: Arc<dyn Clock> = clock.clone();
    (
        Nonces::new(Arc::new(store), dyn_clock, Duration::minutes(60)),
        clock,
        dir,
    )
}

#[tokio::test]
async fn nonce_lifecycle() {
    let (nonces, clock, _dir) = nonces();
    let first = nonces.issue().await.unwrap();
    let second = nonces.issue().await.unwrap();
    assert_ne!(first, second);
    assert_eq!(
        first.len(),
        32,
        "128 random bits after the store's 64-bit expiry, base64url without padding"
    );
    assert!(
        first
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );

    let expired = nonces.issue().await.unwrap();
    let _abandoned = nonces.issue().await.unwrap();
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        ("good_first_use", first.clone(), None),
        ("bad_replay", first.clone(), Some("badNonce")),
        (
            "bad_unknown",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            Some("badNonce"),
        ),
        ("bad_too_long", "A".repeat(4096), Some("badNonce")),
        ("bad_not_base64url", "not a nonce!".into(), Some("badNonce")),
        ("bad_wrong_length", "AAAA".into(), Some("badNonce")),
        ("bad_padded", format!("{second}=="), Some("badNonce")),
        ("good_second", second.clone(), None),
    ];
    for (case, nonce, want) in cases {
        let got = nonces
            .redeem(&nonce)
            .await
            .err()
            .map(|p| p.kind.rsplit(':').next().unwrap().to_owned());
        assert_eq!(got.as_deref(), want, "case {case}");
    }
    clock.advance(Duration::minutes(61));
    let problem = nonces.redeem(&expired).await.unwrap_err();
    assert_eq!(problem.kind, "urn:ietf:params:acme:error:badNonce", "expired");
    assert_eq!(problem.status, 400);
    let _unused = nonces.issue().await.unwrap();
    // Redeemed nonces (expired one included) are gone already; what is left to sweep is the
    // nonce issued and never used.
    assert_eq!(nonces.sweep().await, 1, "the abandoned nonce is swept");
    assert_eq!(nonces.sweep().await, 0);
}
