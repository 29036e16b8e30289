//! The backend test battery: every storage backend must pass every case here. Each case is a
//! generic async fn over a `Backend` that can open (and reopen) a store in a directory.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use certgate_core::{DnsName, Identifier, KeyKind, Name, Protocol, RequesterId, RevocationReason, Serial};
use certgate_store::{
    CertificateFilter, CertificateQuery, CertificateRecord, CertificateStore, Lineage, NonceStore, Revocation,
    SerialReservation, SledStore, StoreError,
};
use time::{Duration, OffsetDateTime};

trait Backend {
    type Store: CertificateStore + NonceStore + 'static;
    fn open(dir: &Path) -> Self::Store;
}

struct Sled;
impl Backend for Sled {
    type Store = SledStore;
    fn open(dir: &Path) -> SledStore {
        SledStore::open(dir).expect("open sled store")
    }
}

fn serial(n: u64) -> Serial {
    let mut bytes = [0u8; 16];
    bytes[8..].copy_from_slice(&n.to_be_bytes());
    Serial::from_random(bytes)
}

fn name(s: &str) -> Name {
    Name::new(s).unwrap()
}

fn reservation(serial: &Serial) -> SerialReservation {
    SerialReservation {
        serial: serial.clone(),
        issuer: name("default"),
        endpoint: name("default"),
        reserved_at: OffsetDateTime::now_utc(),
    }
}

fn record(serial: &Serial, requester: &str, host: &str, expires_in_days: i64) -> CertificateRecord {
    let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    CertificateRecord {
        serial: serial.clone(),
        issuer: name("default"),
        endpoint: name("default"),
        protocol: Protocol::Acme,
        requester: RequesterId::new(requester).unwrap(),
        profile: name("tls-server"),
        owner_labels: BTreeMap::from([("team".to_owned(), "edge".to_owned())]),
        subject: format!("CN={host}"),
        identifiers: vec![Identifier::Dns(DnsName::new(host).unwrap())],
        key: KeyKind::EcP256,
        not_before: now,
        not_after: now + Duration::days(expires_in_days),
        issued_at: now,
        replaces: None,
        revocation: None,
        der: vec![0x30, 0x03, 0x02, 0x01, 0x01],
    }
}

async fn issue<S: CertificateStore>(store: &S, rec: &CertificateRecord) {
    store.reserve_serial(&reservation(&rec.serial)).await.unwrap();
    store.record_issued(rec).await.unwrap();
}

async fn good_record_round_trips_and_survives_reopen<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record(&serial(1), "acme-account:1", "a.example.com", 90);
    {
        let store = B::open(dir.path());
        issue(&store, &rec).await;
        assert_eq!(store.certificate(&rec.serial).await.unwrap(), rec);
    }
    let store = B::open(dir.path());
    assert_eq!(store.certificate(&rec.serial).await.unwrap(), rec);
    let status = store.journal_status().await.unwrap();
    assert_eq!((status.certificates, status.reserved, status.abandoned), (1, 0, 0));
}

async fn bad_serial_reuse_is_refused<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path());
    let issued = record(&serial(1), "r", "a.example.com", 90);
    issue(&store, &issued).await;
    let reserved = serial(2);
    store.reserve_serial(&reservation(&reserved)).await.unwrap();
    let abandoned = serial(3);
    store.reserve_serial(&reservation(&abandoned)).await.unwrap();
    store.abandon_reservation(&abandoned, "signing failed").await.unwrap();

    for (case, s) in [
        ("issued", &issued.serial),
        ("reserved", &reserved),
        ("abandoned", &abandoned),
    ] {
        let err = store.reserve_serial(&reservation(s)).await.expect_err(case);
        assert!(matches!(err, StoreError::Conflict(_)), "case {case}: {err:?}");
    }
    let err = store.record_issued(&issued).await.expect_err("recorded twice");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let unreserved = record(&serial(4), "r", "b.example.com", 90);
    let err = store.record_issued(&unreserved).await.expect_err("no reservation");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let err = store
        .abandon_reservation(&serial(5), "x")
        .await
        .expect_err("nothing to abandon");
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    let status = store.journal_status().await.unwrap();
    assert_eq!((status.certificates, status.reserved, status.abandoned), (1, 1, 1));
}

async fn revocation_is_compare_and_swap<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let rec = record(&serial(1), "r", "a.example.com", 90);
    let revocation = Revocation {
        reason: RevocationReason::KeyCompromise,
        revoked_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        by: "operator".into(),
    };
    {
        let store = B::open(dir.path());
        issue(&store, &rec).await;
        let revoked = store.revoke(&rec.serial, &revocation).await.unwrap();
        assert_eq!(revoked.revocation.as_ref(), Some(&revocation));
        let err = store.revoke(&rec.serial, &revocation).await.expect_err("twice");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        let err = store.revoke(&serial(9), &revocation).await.expect_err("unknown");
        assert!(matches!(err, StoreError::NotFound), "{err:?}");
    }
    let store = B::open(dir.path());
    assert_eq!(
        store.certificate(&rec.serial).await.unwrap().revocation,
        Some(revocation)
    );
}

async fn concurrent_revocations_only_one_wins<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(B::open(dir.path()));
    let rec = record(&serial(1), "r", "a.example.com", 90);
    issue(&*store, &rec).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let store = Arc::clone(&store);
        let s = rec.serial.clone();
        tasks.push(tokio::spawn(async move {
            let revocation = Revocation {
                reason: RevocationReason::Superseded,
                revoked_at: OffsetDateTime::now_utc(),
                by: format!("t{i}"),
            };
            store.revoke(&s, &revocation).await.is_ok()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
}

async fn listing_pages_and_filters<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path());
    for i in 0..25u64 {
        let requester = if i % 5 == 0 { "est-user:alice" } else { "est-user:bob" };
        let host = if i == 7 {
            "shared.example.com".to_owned()
        } else {
            format!("h{i}.example.com")
        };
        issue(&store, &record(&serial(i + 1), requester, &host, 10 + i as i64)).await;
    }
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .list_certificates(&CertificateQuery {
                filter: CertificateFilter::All,
                limit: 10,
                after,
            })
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|r| r.not_after));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25, "every certificate exactly once");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "ordered by expiry");

    let count = |filter| {
        let store = &store;
        async move {
            store
                .list_certificates(&CertificateQuery {
                    filter,
                    limit: 1000,
                    after: None,
                })
                .await
                .unwrap()
                .items
                .len()
        }
    };
    let now = OffsetDateTime::now_utc();
    let cases = [
        (
            "requester_alice",
            CertificateFilter::Requester(RequesterId::new("est-user:alice").unwrap()),
            5,
        ),
        (
            "requester_unknown",
            CertificateFilter::Requester(RequesterId::new("est-user:carol").unwrap()),
            0,
        ),
        (
            "identifier",
            CertificateFilter::Identifier(Identifier::Dns(DnsName::new("SHARED.example.com").unwrap())),
            1,
        ),
        (
            "expiring_window",
            CertificateFilter::ExpiringBetween {
                from: now,
                to: now + Duration::days(15),
            },
            5,
        ),
    ];
    for (case, filter, want) in cases {
        assert_eq!(count(filter).await, want, "case {case}");
    }
    let err = store
        .list_certificates(&CertificateQuery {
            filter: CertificateFilter::All,
            limit: 10,
            after: Some("zz".into()),
        })
        .await
        .expect_err("bad cursor");
    assert!(matches!(err, StoreError::Conflict(_)));
}

async fn reservation_in_flight_at_crash_is_abandoned_on_open<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let in_flight = serial(1);
    {
        let store = B::open(dir.path());
        store.reserve_serial(&reservation(&in_flight)).await.unwrap();
        store.flush().await.unwrap();
        // dropped without recording: as if the process died while signing
    }
    let store = B::open(dir.path());
    let status = store.journal_status().await.unwrap();
    assert_eq!((status.reserved, status.abandoned, status.recovered_at_open), (0, 1, 1));
    assert!(matches!(
        store.reserve_serial(&reservation(&in_flight)).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(store.certificate(&in_flight).await, Err(StoreError::NotFound)));
}

async fn concurrent_durable_writes_all_land<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let serials: Vec<Serial> = (1..=400).map(serial).collect();
    {
        let store = Arc::new(B::open(dir.path()));
        let mut tasks = Vec::new();
        for chunk in serials.chunks(50) {
            let store = Arc::clone(&store);
            let chunk = chunk.to_vec();
            tasks.push(tokio::spawn(async move {
                for s in chunk {
                    issue(&*store, &record(&s, "r", "a.example.com", 30)).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    }
    let store = B::open(dir.path());
    let mut found = HashSet::new();
    for s in &serials {
        found.insert(store.certificate(s).await.unwrap().serial);
    }
    assert_eq!(found.len(), serials.len());
}

async fn nonces_are_single_use_expire_and_are_swept<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path());
    let now = OffsetDateTime::now_utc();
    let soon = now + Duration::minutes(10);
    // Each case redeems in order: earlier cases are what later ones replay.
    let cases: [(&str, &[u8], OffsetDateTime, bool); 7] = [
        ("good_first_use", b"fresh", soon, true),
        ("bad_replayed", b"fresh", soon, false),
        ("good_other_nonce", b"other", soon, true),
        (
            "good_same_random_other_expiry",
            b"fresh",
            soon + Duration::seconds(1),
            true,
        ),
        ("bad_expired", b"stale", now - Duration::seconds(1), false),
        ("bad_expiring_this_second", b"edge", now, false),
        (
            "good_never_seen",
            b"never-seen-before",
            now + Duration::minutes(5),
            true,
        ),
    ];
    for (case, id, expires_at, want) in cases {
        assert_eq!(
            store.redeem_nonce(id, expires_at, now).await.unwrap(),
            want,
            "case {case}"
        );
    }
    // Nothing expired yet: the sweep keeps every used nonce, so each is still refused.
    assert_eq!(store.sweep_nonces(now).await.unwrap(), 0);
    assert!(!store.redeem_nonce(b"fresh", soon, now).await.unwrap(), "kept");
    // Once they expire the sweep forgets them, and a replay is refused as expired.
    let later = soon + Duration::seconds(2);
    assert_eq!(store.sweep_nonces(later).await.unwrap(), 4);
    assert!(!store.redeem_nonce(b"fresh", soon, later).await.unwrap(), "expired");
    assert_eq!(store.sweep_nonces(later).await.unwrap(), 0, "a refusal writes nothing");
    for i in 0..100u32 {
        assert!(
            store
                .redeem_nonce(&i.to_be_bytes(), later + Duration::minutes(5), later)
                .await
                .unwrap()
        );
    }
    assert_eq!(
        store.sweep_nonces(later + Duration::hours(1)).await.unwrap(),
        100,
        "used nonces are swept once expired"
    );

    // One nonce, many concurrent redeemers: exactly one wins.
    let store = Arc::new(store);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            store.redeem_nonce(b"contested", soon, now).await.unwrap()
        }));
    }
    let mut winners = 0;
    for task in tasks {
        winners += usize::from(task.await.unwrap());
    }
    assert_eq!(winners, 1);
}

async fn successors_and_revoked_lists<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path());
    let old = record(&serial(1), "acme:default/acct-1", "a.example", 30);
    issue(&store, &old).await;
    assert!(
        store.successor(&old.serial).await.unwrap().is_none(),
        "no successor yet"
    );
    let mut first = record(&serial(2), "acme:default/acct-1", "a.example", 60);
    first.replaces = Some(old.serial.clone());
    issue(&store, &first).await;
    let mut second = record(&serial(3), "acme:default/acct-1", "a.example", 90);
    second.replaces = Some(old.serial.clone());
    second.issued_at += Duration::seconds(5);
    issue(&store, &second).await;
    let cases = [
        ("newest_successor_wins", &old.serial, Some(second.serial.clone())),
        ("successor_without_successor", &second.serial, None),
    ];
    for (case, of, want) in cases {
        let got = store.successor(of).await.unwrap().map(|r| r.serial);
        assert_eq!(got, want, "case {case}");
    }

    let revocation = Revocation {
        reason: RevocationReason::Superseded,
        revoked_at: OffsetDateTime::now_utc(),
        by: "test".into(),
    };
    store.revoke(&old.serial, &revocation).await.unwrap();
    store.revoke(&second.serial, &revocation).await.unwrap();
    let revoked: HashSet<Serial> = store
        .revoked(&name("default"))
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.serial)
        .collect();
    assert_eq!(revoked, HashSet::from([old.serial.clone(), second.serial.clone()]));
    assert!(store.revoked(&name("other")).await.unwrap().is_empty(), "per issuer");
    drop(store);
    let store = B::open(dir.path());
    assert_eq!(store.revoked(&name("default")).await.unwrap().len(), 2, "durable");
}

async fn lineages_list_newest_first<B: Backend>() {
    let dir = tempfile::tempdir().unwrap();
    let store = B::open(dir.path());
    let two_names = |mut rec: CertificateRecord, first: &str, second: &str| {
        rec.identifiers = vec![
            Identifier::Dns(DnsName::new(first).unwrap()),
            Identifier::Dns(DnsName::new(second).unwrap()),
        ];
        rec
    };
    let older = record(&serial(21), "acme:default/acct-1", "a.example", 30);
    let mut newer = record(&serial(22), "acme:default/acct-1", "a.example", 30);
    newer.issued_at += Duration::seconds(5);
    let pair = two_names(
        record(&serial(23), "acme:default/acct-1", "a.example", 30),
        "a.example",
        "b.example",
    );
    let mut pair_reordered = two_names(
        record(&serial(24), "acme:default/acct-1", "a.example", 30),
        "b.example",
        "a.example",
    );
    pair_reordered.issued_at += Duration::seconds(10);
    let stranger = record(&serial(25), "acme:default/acct-2", "a.example", 30);
    let mut elsewhere = record(&serial(26), "acme:default/acct-1", "a.example", 30);
    elsewhere.endpoint = name("other");
    // Issued out of time order, so the index, not insertion order, decides.
    for rec in [&newer, &pair, &older, &stranger, &pair_reordered, &elsewhere] {
        issue(&store, rec).await;
    }
    let cases = [
        ("one_name_newest_first", Lineage::of(&older), vec![&newer, &older]),
        (
            "name_set_in_any_order",
            Lineage::of(&pair),
            vec![&pair_reordered, &pair],
        ),
        ("other_requester", Lineage::of(&stranger), vec![&stranger]),
        ("other_endpoint", Lineage::of(&elsewhere), vec![&elsewhere]),
    ];
    for (case, lineage, want) in cases {
        let got: Vec<Serial> = certgate_store::list_all(&store, CertificateFilter::Lineage(lineage))
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.serial)
            .collect();
        let want: Vec<Serial> = want.into_iter().map(|r| r.serial.clone()).collect();
        assert_eq!(got, want, "case {case}");
    }
    let first_page = store
        .list_certificates(&CertificateQuery {
            filter: CertificateFilter::Lineage(Lineage::of(&older)),
            limit: 1,
            after: None,
        })
        .await
        .unwrap();
    assert_eq!(first_page.items, vec![newer.clone()], "a page of one is the newest");
    let second_page = store
        .list_certificates(&CertificateQuery {
            filter: CertificateFilter::Lineage(Lineage::of(&older)),
            limit: 1,
            after: first_page.next,
        })
        .await
        .unwrap();
    assert_eq!(second_page.items, vec![older.clone()]);
}

macro_rules! battery {
    ($backend:ident, $module:ident) => {
        mod $module {
            use super::*;
            #[tokio::test]
            async fn good_record_round_trips_and_survives_reopen() {
                super::good_record_round_trips_and_survives_reopen::<$backend>().await
            }
            #[tokio::test]
            async fn bad_serial_reuse_is_refused() {
                super::bad_serial_reuse_is_refused::<$backend>().await
            }
            #[tokio::test]
            async fn revocation_is_compare_and_swap() {
                super::revocation_is_compare_and_swap::<$backend>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_revocations_only_one_wins() {
                super::concurrent_revocations_only_one_wins::<$backend>().await
            }
            #[tokio::test]
            async fn listing_pages_and_filters() {
                super::listing_pages_and_filters::<$backend>().await
            }
            #[tokio::test]
            async fn reservation_in_flight_at_crash_is_abandoned_on_open() {
                super::reservation_in_flight_at_crash_is_abandoned_on_open::<$backend>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn nonces_are_single_use_expire_and_are_swept() {
                super::nonces_are_single_use_expire_and_are_swept::<$backend>().await
            }
            #[tokio::test]
            async fn lineages_list_newest_first() {
                super::lineages_list_newest_first::<$backend>().await
            }
            #[tokio::test]
            async fn successors_and_revoked_lists() {
                super::successors_and_revoked_lists::<$backend>().await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn concurrent_durable_writes_all_land() {
                super::concurrent_durable_writes_all_land::<$backend>().await
            }
        }
    };
}

battery!(Sled, sled_backend);

/// Retention sweeps are sled maintenance (another backend has its own), so they are tested
/// on sled alone.
#[tokio::test]
async fn sled_expired_certificates_are_swept_with_their_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let expired = record(&serial(10), "acme:default/acct-9", "gone.example", -40);
    let mut renewal = record(&serial(11), "acme:default/acct-9", "gone.example", 30);
    renewal.replaces = Some(expired.serial.clone());
    issue(&store, &expired).await;
    issue(&store, &renewal).await;
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        store
            .sweep_expired_certificates(now - Duration::days(60))
            .await
            .unwrap(),
        0,
        "within retention"
    );
    assert_eq!(
        store
            .sweep_expired_certificates(now - Duration::days(30))
            .await
            .unwrap(),
        1
    );
    assert!(matches!(
        store.certificate(&expired.serial).await,
        Err(StoreError::NotFound)
    ));
    assert!(store.successor(&expired.serial).await.unwrap().is_none());
    let by_name = certgate_store::list_all(
        &store,
        CertificateFilter::Identifier(Identifier::Dns(DnsName::new("gone.example").unwrap())),
    )
    .await
    .unwrap();
    assert_eq!(
        by_name.into_iter().map(|r| r.serial).collect::<Vec<_>>(),
        vec![renewal.serial.clone()]
    );
    let lineage = certgate_store::list_all(&store, CertificateFilter::Lineage(Lineage::of(&renewal)))
        .await
        .unwrap();
    assert_eq!(lineage, vec![renewal.clone()], "lineage entry swept too");
    let all = certgate_store::list_all(&store, CertificateFilter::All).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(store.journal_status().await.unwrap().certificates, 1);
}

#[tokio::test]
async fn sled_admin_tokens_round_trip() {
    use certgate_store::AdminTokenStore;
    use certgate_store::admin_tokens::{AdminRole, AdminTokenRecord};
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    let token = AdminTokenRecord {
        id: "0123456789abcdef".into(),
        name: "ci".into(),
        role: AdminRole::ReadOnly,
        secret_sha256: "00".repeat(32),
        created_at: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
        expires_at: None,
        created_by: "test".into(),
    };
    store.insert_admin_token(&token).await.unwrap();
    assert!(matches!(
        store.insert_admin_token(&token).await,
        Err(StoreError::Conflict(_))
    ));
    drop(store);
    let store = SledStore::open(dir.path()).unwrap();
    assert_eq!(store.admin_token(&token.id).await.unwrap(), token);
    assert_eq!(store.admin_tokens().await.unwrap().len(), 1);
    store.remove_admin_token(&token.id).await.unwrap();
    assert!(matches!(store.admin_token(&token.id).await, Err(StoreError::NotFound)));
    assert!(matches!(
        store.remove_admin_token(&token.id).await,
        Err(StoreError::NotFound)
    ));
}
