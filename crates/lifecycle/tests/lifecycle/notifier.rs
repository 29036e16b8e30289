//! Webhook deliveries: retries with backoff, every attempt recorded, failure counters, and
//! https receivers checked against a configured CA file.

use std::time::{Duration, Instant};

use certgate_lifecycle::{CertificateSummary, Notification, Notifier, NotifierSettings, WebhookConfig, sign_payload};
use certgate_store::notifications::{DeliveryOutcome, DeliveryQuery, NotificationEvent, NotificationStore};
use certgate_test_support::TestCa;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::support::{Fixture, Receiver, SECRET, closed_port, eventually, notifier_settings, tls_acceptor, webhook};

fn notifier(f: &Fixture, settings: NotifierSettings) -> Notifier {
    let deps = f.deps();
    Notifier::new(settings, deps.notifications, deps.clock).unwrap()
}

async fn notification(f: &Fixture, key: &str) -> Notification {
    let (record, _, _) = f.issue(&["hooked.example.test"], None, &[]).await;
    Notification {
        event: NotificationEvent::Expiring,
        alert_key: key.to_owned(),
        at: f.t0,
        certificate: Some(CertificateSummary::from(&record)),
        successor: None,
        deployment: None,
    }
}

async fn attempts(f: &Fixture, key: &str) -> Vec<(u32, DeliveryOutcome)> {
    let mut records =
        f.t.store
            .deliveries(&DeliveryQuery {
                alert_key: Some(key.to_owned()),
                ..DeliveryQuery::default()
            })
            .await
            .unwrap();
    records.sort_by_key(|r| r.attempt);
    assert!(
        records.windows(2).all(|w| w[0].id == w[1].id),
        "one delivery id for all attempts"
    );
    records.into_iter().map(|r| (r.attempt, r.outcome)).collect()
}

/// A receiver on a closed port: every attempt fails and is recorded, the waits between them
/// double (20, 40, 80 ms), the delivery is given up once and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_is_down_gets_retries_with_backoff_all_recorded() {
    let f = Fixture::new();
    let addr = closed_port().await;
    let notifier = notifier(
        &f,
        NotifierSettings {
            attempts: 4,
            base_delay_ms: 20,
            ..notifier_settings(vec![webhook("down", format!("http://{addr}/hooks/certgate"))])
        },
    );
    let n = notification(&f, "expiring:down").await;
    let started = Instant::now();
    assert_eq!(notifier.notify(&n).await, 1);
    assert_eq!(notifier.queued(), 1);
    notifier.wait_idle().await;
    assert!(
        started.elapsed() >= Duration::from_millis(20 + 40 + 80),
        "{:?}",
        started.elapsed()
    );

    let got = attempts(&f, "expiring:down").await;
    assert_eq!(got.iter().map(|(a, _)| *a).collect::<Vec<_>>(), [1, 2, 3, 4]);
    for (attempt, outcome) in &got {
        match outcome {
            DeliveryOutcome::Failed { status: None, error } => {
                assert!(error.contains("connection refused"), "attempt {attempt}: {error}")
            }
            other => panic!("attempt {attempt}: {other:?}"),
        }
    }
    assert_eq!(
        (
            notifier.failed_attempts_total(),
            notifier.failures_total(),
            notifier.delivered_total(),
            notifier.queued()
        ),
        (4, 1, 0, 0)
    );
}

/// Receivers that recover: one whose port opens after two failed attempts, one that answers
/// 503 then 500 before 200. Each gets the notification exactly once; earlier attempts are
/// recorded as failed (with the status when there was one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_that_comes_back_gets_the_notification_once() {
    let f = Fixture::new();
    let addr = closed_port().await;
    let flaky_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let flaky = Receiver::start_on(flaky_listener, None, vec![503, 500]);
    let late_url = format!("http://{addr}/hooks/certgate?source=test");
    let notifier = notifier(
        &f,
        NotifierSettings {
            base_delay_ms: 100,
            ..notifier_settings(vec![webhook("late", late_url), webhook("flaky", flaky.url())])
        },
    );
    let n = notification(&f, "expiring:recover").await;
    assert_eq!(notifier.notify(&n).await, 2);

    // The late receiver starts on its port once two attempts have failed (the next comes
    // 200 ms later).
    let store = f.t.store.clone();
    let mut failed = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while failed < 2 {
        assert!(tokio::time::Instant::now() < deadline, "no two failed attempts");
        tokio::time::sleep(Duration::from_millis(5)).await;
        failed = store
            .deliveries(&DeliveryQuery {
                webhook: Some("late".into()),
                failed_only: true,
                ..DeliveryQuery::default()
            })
            .await
            .unwrap()
            .len();
    }
    let late = Receiver::start_on(TcpListener::bind(addr).await.unwrap(), None, Vec::new());
    notifier.wait_idle().await;

    for (case, receiver) in [("late", &late), ("flaky", &flaky)] {
        let accepted = receiver.accepted();
        assert_eq!(accepted.len(), 1, "case {case}");
        assert_eq!(accepted[0].notification, n, "case {case}");
        assert!(receiver.rejected().is_empty(), "case {case}");
    }
    let mut records = store
        .deliveries(&DeliveryQuery {
            alert_key: Some("expiring:recover".into()),
            ..DeliveryQuery::default()
        })
        .await
        .unwrap();
    records.sort_by_key(|r| (r.webhook.clone(), r.attempt));
    let flaky_outcomes: Vec<_> = records
        .iter()
        .filter(|r| r.webhook == "flaky")
        .map(|r| r.outcome.clone())
        .collect();
    assert_eq!(
        flaky_outcomes,
        [
            DeliveryOutcome::Failed {
                status: Some(503),
                error: "HTTP 503 Service Unavailable".into()
            },
            DeliveryOutcome::Failed {
                status: Some(500),
                error: "HTTP 500 Internal Server Error".into()
            },
            DeliveryOutcome::Delivered { status: 200 },
        ]
    );
    let late_records: Vec<_> = records.iter().filter(|r| r.webhook == "late").collect();
    let (last, earlier) = late_records.split_last().unwrap();
    assert!(last.outcome.is_delivered());
    assert!(earlier.len() >= 2 && earlier.iter().all(|r| !r.outcome.is_delivered()));
    assert_eq!(notifier.delivered_total(), 2);
    assert_eq!(notifier.failures_total(), 0);
    assert_eq!(notifier.failed_attempts_total(), 2 + earlier.len() as u64);
}

/// https receivers: one whose certificate chains to the configured CA file gets the
/// notification; one checked against another CA's file fails the handshake, recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_webhooks_are_verified_against_the_ca_file() {
    let f = Fixture::new();
    let (_, chain, key) = f.issue(&["127.0.0.1"], None, &[]).await;
    let receiver = Receiver::start_on(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        Some(tls_acceptor(&chain, &key)),
        Vec::new(),
    );
    let url = format!("https://{}/hooks/certgate", receiver.addr);
    let other_ca = TestCa::new(certgate_authority::KeyType::P256);
    let trusted = WebhookConfig {
        ca_file: Some(f.t.ca.root_pem.clone()),
        ..webhook("trusted", url.clone())
    };
    let untrusted = WebhookConfig {
        ca_file: Some(other_ca.root_pem.clone()),
        ..webhook("untrusted", url)
    };
    let notifier = notifier(
        &f,
        NotifierSettings {
            attempts: 2,
            ..notifier_settings(vec![trusted, untrusted])
        },
    );
    let n = notification(&f, "expiring:https").await;
    assert_eq!(notifier.notify(&n).await, 2);
    notifier.wait_idle().await;
    assert_eq!(receiver.accepted().len(), 1);
    let records =
        f.t.store
            .deliveries(&DeliveryQuery {
                webhook: Some("untrusted".into()),
                ..DeliveryQuery::default()
            })
            .await
            .unwrap();
    assert_eq!(records.len(), 2);
    for record in records {
        match record.outcome {
            DeliveryOutcome::Failed { status: None, error } => {
                assert!(error.contains("TLS handshake failed"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((notifier.delivered_total(), notifier.failures_total()), (1, 1));
    let by_webhook: Vec<(&str, u64)> = notifier.failures_by_webhook().collect();
    assert_eq!(by_webhook, vec![("trusted", 0), ("untrusted", 1)]);

    let missing = WebhookConfig {
        ca_file: Some(f.t.ca.dir.path().join("missing.pem")),
        ..webhook("missing", "https://127.0.0.1:1/".into())
    };
    let deps = f.deps();
    assert!(Notifier::new(notifier_settings(vec![missing]), deps.notifications, deps.clock).is_err());
}

/// The published signing helper produces what a receiver's own HMAC check accepts, and a
/// changed body or another secret is refused.
#[tokio::test]
async fn sign_payload_is_what_receivers_verify() {
    let f = Fixture::new();
    let receiver = Receiver::start().await;
    let n = notification(&f, "expiring:manual").await;
    let body = serde_json::to_vec(&n).unwrap();
    let mut tampered = body.clone();
    tampered.extend_from_slice(b" ");
    /// (case, signing secret, body sent, accepted so far, rejected so far)
    type Case<'a> = (&'a str, &'a [u8], &'a [u8], usize, usize);
    let cases: [Case; 3] = [
        ("good_signature", SECRET, &body, 1, 0),
        ("bad_other_secret", b"another-secret-0123456789", &body, 1, 1),
        ("bad_body_changed_after_signing", SECRET, &tampered, 1, 2),
    ];
    for (case, secret, sent, want_accepted, want_rejected) in cases {
        let signature = sign_payload(secret, 1_700_000_000, &body);
        let request = format!(
            "POST /hooks/certgate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             X-Certgate-Event: expiring\r\nX-Certgate-Delivery: manual\r\nX-Certgate-Signature: {signature}\r\n\
             Connection: close\r\n\r\n",
            sent.len()
        );
        let mut stream = tokio::net::TcpStream::connect(receiver.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        stream.write_all(sent).await.unwrap();
        eventually(case, || {
            receiver.accepted().len() + receiver.rejected().len() == want_accepted + want_rejected
        })
        .await;
        assert_eq!(receiver.accepted().len(), want_accepted, "case {case}");
        assert_eq!(receiver.rejected().len(), want_rejected, "case {case}");
    }
}
