//! The expiry monitor: when alerts are raised, that each is sent once, and that a renewal
//! stops them.

use std::sync::Arc;

use certgate_core::RevocationReason;
use certgate_lifecycle::{ExpiryMonitor, MonitorSettings, Notifier, ScanSummary, WebhookConfig};
use certgate_store::notifications::{DeliveryQuery, NotificationEvent, NotificationStore};
use time::Duration;

use crate::support::{Fixture, Receiver, notifier_settings, webhook};

fn monitor(f: &Fixture, webhooks: Vec<WebhookConfig>) -> (ExpiryMonitor, Notifier) {
    let deps = f.deps();
    let notifier = Notifier::new(
        notifier_settings(webhooks),
        Arc::clone(&deps.notifications),
        Arc::clone(&deps.clock),
    )
    .unwrap();
    let monitor = ExpiryMonitor::new(deps, MonitorSettings::default(), notifier.clone()).unwrap();
    (monitor, notifier)
}

/// A 90-day certificate's renewal window opens at two thirds of its life (day 60). Before it:
/// nothing. In it: one signed `renewal_due` notification, however often the monitor runs and
/// even with a second scheduler over the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reaching_the_renewal_window_sends_exactly_one_signed_notification() {
    let f = Fixture::new();
    let receiver = Receiver::start().await;
    let (first, first_notifier) = monitor(&f, vec![webhook("ops", receiver.url())]);
    let (second, second_notifier) = monitor(&f, vec![webhook("ops", receiver.url())]);
    let (record, _, _) = f.issue(&["app.example.test"], None, &[]).await;

    let mut raised = 0;
    for (case, offset, want_raised) in [
        ("before_window", Duration::days(59), 0),
        ("window_open", Duration::days(61), 1),
        ("window_open_again", Duration::days(61) + Duration::hours(1), 0),
        ("later_in_window", Duration::days(70), 0),
    ] {
        f.at(offset);
        let mut summaries: Vec<ScanSummary> = Vec::new();
        for _ in 0..3 {
            summaries.push(first.run_once().await.unwrap());
            summaries.push(second.run_once().await.unwrap());
        }
        let got: u64 = summaries.iter().map(|s| s.renewal_due).sum();
        assert_eq!(got, want_raised, "case {case}: {summaries:?}");
        assert!(summaries.iter().all(|s| s.expiring == 0), "case {case}");
        raised += got;
        first_notifier.wait_idle().await;
        second_notifier.wait_idle().await;
        assert_eq!(receiver.accepted().len() as u64, raised, "case {case}");
    }

    assert!(receiver.rejected().is_empty(), "{:?}", receiver.rejected());
    let received = receiver.accepted().remove(0);
    let notification = &received.notification;
    let certificate = notification.certificate.as_ref().unwrap();
    assert_eq!(received.event, "renewal_due");
    assert_eq!(notification.event, NotificationEvent::RenewalDue);
    assert_eq!(notification.alert_key, format!("renewal_due:{}", record.serial));
    assert_eq!(notification.at, f.t0 + Duration::days(61));
    assert_eq!(certificate.serial, record.serial);
    assert_eq!(certificate.not_after, record.not_after);
    assert_eq!(certificate.identifiers, record.identifiers);
    assert_eq!(
        certificate.owner_labels.get("team").map(String::as_str),
        Some("platform")
    );
    assert!(notification.successor.is_none() && notification.deployment.is_none());

    let deliveries =
        f.t.store
            .deliveries(&DeliveryQuery {
                alert_key: Some(notification.alert_key.clone()),
                ..DeliveryQuery::default()
            })
            .await
            .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].outcome.is_delivered());
    assert_eq!(
        deliveries[0].id, received.delivery,
        "X-Certgate-Delivery names the record"
    );
    assert_eq!(first_notifier.delivered_total() + second_notifier.delivered_total(), 1);

    // After expiry and the retention: the delivery record and the lapsed claim are swept, and
    // the expired certificate is not alerted again.
    f.at(Duration::days(92));
    let swept = first.sweep().await.unwrap();
    assert_eq!((swept.deliveries, swept.alerts), (1, 1), "{swept:?}");
    assert_eq!(first.run_once().await.unwrap(), ScanSummary::default());
}

/// A renewal recorded with `replaces` stops alerts for the old certificate: the `expiring`
/// alert it would get at day 83 is not sent while the successor lives, and is sent once the
/// successor is revoked. A control certificate without successor gets its `expiring` alert;
/// a webhook filtered to `expiring` sees only those.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_with_replaces_stops_alerts_for_the_old_certificate() {
    let f = Fixture::new();
    let all = Receiver::start().await;
    let expiring_only = Receiver::start().await;
    let filtered = WebhookConfig {
        events: Some(vec![NotificationEvent::Expiring]),
        ..webhook("expiring-only", expiring_only.url())
    };
    let (monitor, notifier) = monitor(&f, vec![webhook("all", all.url()), filtered]);
    let (old, _, _) = f.issue(&["renewed.example.test"], None, &[]).await;
    let (control, _, _) = f.issue(&["control.example.test"], None, &[]).await;

    f.at(Duration::days(61));
    let summary = monitor.run_once().await.unwrap();
    assert_eq!((summary.due, summary.renewal_due, summary.superseded), (2, 2, 0));
    let (renewal, _, _) = f.issue(&["renewed.example.test"], Some(&old.serial), &[]).await;
    let next = monitor.next_expiry_without_successor().await.unwrap().unwrap();
    assert_eq!(next.serial, control.serial, "the renewed certificate no longer counts");

    f.at(Duration::days(84));
    let summary = monitor.run_once().await.unwrap();
    assert_eq!(
        (summary.due, summary.superseded, summary.expiring, summary.renewal_due),
        (2, 1, 1, 0),
        "{summary:?}"
    );
    notifier.wait_idle().await;
    let keys = |r: &Receiver| {
        let mut keys: Vec<String> = r.accepted().into_iter().map(|x| x.notification.alert_key).collect();
        keys.sort();
        keys
    };
    let mut want = vec![
        format!("renewal_due:{}", old.serial),
        format!("renewal_due:{}", control.serial),
        format!("expiring:{}", control.serial),
    ];
    want.sort();
    assert_eq!(keys(&all), want);
    assert_eq!(keys(&expiring_only), [format!("expiring:{}", control.serial)]);

    // A revoked successor is not live: the old certificate is alerted again.
    f.t.authority
        .revoke(&renewal.serial, RevocationReason::KeyCompromise, "operator")
        .await
        .unwrap();
    f.at(Duration::days(85));
    let summary = monitor.run_once().await.unwrap();
    assert_eq!((summary.expiring, summary.revoked), (1, 1), "{summary:?}");
    notifier.wait_idle().await;
    assert!(keys(&all).contains(&format!("expiring:{}", old.serial)));
    assert_eq!(expiring_only.accepted().len(), 2);

    // Expired certificates are not even read; the revoked renewal is skipped; nothing unrevoked
    // expires next.
    f.at(Duration::days(91));
    let summary = monitor.run_once().await.unwrap();
    assert_eq!(
        summary,
        ScanSummary {
            scanned: 1,
            revoked: 1,
            ..ScanSummary::default()
        }
    );
    assert_eq!(monitor.next_expiry_without_successor().await.unwrap(), None);
    assert!(all.rejected().is_empty() && expiring_only.rejected().is_empty());
}
