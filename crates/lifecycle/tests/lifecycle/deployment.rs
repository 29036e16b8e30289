//! Deployment verification against live loopback TLS servers, and targets from the inventory.

use std::collections::BTreeMap;
use std::sync::Arc;

use certgate_core::RevocationReason;
use certgate_lifecycle::{
    DeploymentSettings, DeploymentState, DeploymentTarget, DeploymentVerifier, INVENTORY_LABEL, MonitorSettings,
    Notifier, targets_from_inventory,
};
use certgate_store::notifications::{NotificationEvent, NotificationStore};
use certgate_test_support::rcgen;
use time::Duration;

use crate::support::{Fixture, Receiver, TlsServer, closed_port, notifier_settings, webhook};

fn target(port: u16) -> DeploymentTarget {
    DeploymentTarget {
        sni: Some("svc.example.test".into()),
        owner_labels: BTreeMap::from([("team".to_owned(), "web".to_owned())]),
        ..DeploymentTarget::new("127.0.0.1", port)
    }
}

fn verifier(f: &Fixture, notifier: Option<Notifier>) -> DeploymentVerifier {
    let settings = DeploymentSettings {
        connect_timeout_ms: 2000,
        from_inventory: false,
        ..DeploymentSettings::default()
    };
    DeploymentVerifier::new(f.deps(), settings, MonitorSettings::default(), notifier).unwrap()
}

/// Four targets: the successor (current), the superseded certificate, a self-signed one
/// (unknown) and a closed port (unreachable). Observations are recorded; every state but
/// current is alerted once, with the certificate, successor and observation in the payload;
/// a CLI check without notifier claims nothing. Later, the successor turns expiring and the old
/// one expired; the unreachable alert is repeated after `realert_hours`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_states_against_live_tls_servers() {
    let f = Fixture::new();
    let (old, old_chain, old_key) = f.issue(&["svc.example.test"], None, &[]).await;
    f.at(Duration::days(61));
    let (new, new_chain, new_key) = f.issue(&["svc.example.test"], Some(&old.serial), &[]).await;
    let stranger_key = rcgen::KeyPair::generate().unwrap();
    let stranger = rcgen::CertificateParams::new(vec!["svc.example.test".to_owned()])
        .unwrap()
        .self_signed(&stranger_key)
        .unwrap();

    let serving_new = TlsServer::start(&new_chain, &new_key).await;
    let serving_old = TlsServer::start(&old_chain, &old_key).await;
    let serving_stranger = TlsServer::start(&[stranger.der().to_vec()], &stranger_key).await;
    let closed = closed_port().await;
    let targets = [
        target(serving_new.addr.port()),
        target(serving_old.addr.port()),
        target(serving_stranger.addr.port()),
        target(closed.port()),
    ];
    let receiver = Receiver::start().await;
    let deps = f.deps();
    let notifier = Notifier::new(
        notifier_settings(vec![webhook("ops", receiver.url())]),
        Arc::clone(&deps.notifications),
        Arc::clone(&deps.clock),
    )
    .unwrap();
    let cli = verifier(&f, None);
    let daemon = verifier(&f, Some(notifier.clone()));

    let summarize = |reports: &[certgate_lifecycle::DeploymentReport]| {
        reports
            .iter()
            .map(|r| (r.observation.state.as_str(), r.alerted))
            .collect::<Vec<_>>()
    };
    let reports = cli.verify_targets(&targets).await.unwrap();
    assert_eq!(
        summarize(&reports),
        [
            ("current", false),
            ("superseded", false),
            ("unknown", false),
            ("unreachable", false)
        ],
        "the CLI check alerts nothing"
    );
    let reports = daemon.verify_targets(&targets).await.unwrap();
    assert_eq!(
        summarize(&reports),
        [
            ("current", false),
            ("superseded", true),
            ("unknown", true),
            ("unreachable", true)
        ]
    );
    assert_eq!(
        reports[1].observation.state,
        DeploymentState::Superseded {
            successor: new.serial.clone()
        }
    );
    let observed_serials: Vec<_> = reports.iter().map(|r| r.observation.serial.clone()).collect();
    assert_eq!(observed_serials[0].as_ref(), Some(&new.serial));
    assert_eq!(observed_serials[1].as_ref(), Some(&old.serial));
    assert!(
        observed_serials[2].is_some(),
        "a foreign certificate's serial is still shown"
    );
    assert_eq!(observed_serials[3], None);
    assert_eq!(reports[0].certificate.as_ref().map(|c| &c.serial), Some(&new.serial));
    assert!(reports[2].certificate.is_none());
    match &reports[3].observation.state {
        DeploymentState::Unreachable { error } => assert!(error.contains("connection refused"), "{error}"),
        other => panic!("{other:?}"),
    }

    let mut stored = f.t.store.deployments().await.unwrap();
    stored.sort_by_key(|o| o.target.clone());
    let mut want: Vec<_> = reports.iter().map(|r| r.observation.clone()).collect();
    want.sort_by_key(|o| o.target.clone());
    assert_eq!(stored, want, "the latest observation per target is recorded");

    notifier.wait_idle().await;
    let mut accepted = receiver.accepted();
    assert_eq!(accepted.len(), 3);
    accepted.sort_by_key(|r| r.notification.alert_key.clone());
    assert!(
        accepted
            .iter()
            .all(|r| r.notification.event == NotificationEvent::Deployment)
    );
    let superseded = accepted
        .iter()
        .map(|r| &r.notification)
        .find(|n| n.alert_key.ends_with(":superseded"))
        .unwrap();
    assert_eq!(
        superseded.alert_key,
        format!("deployment:{}:{}:superseded", targets[1].id(), old.serial)
    );
    assert_eq!(superseded.certificate.as_ref().unwrap().serial, old.serial);
    assert_eq!(superseded.successor.as_ref().unwrap().serial, new.serial);
    assert_eq!(superseded.deployment.as_ref(), Some(&reports[1].observation));

    // Again at the same time: nothing new.
    let reports = daemon.verify_targets(&targets).await.unwrap();
    assert!(reports.iter().all(|r| !r.alerted));

    // 83 days later the successor is in its last 7 days and the old certificate expired.
    f.at(Duration::days(61 + 84));
    let reports = daemon.verify_targets(&targets).await.unwrap();
    assert_eq!(
        summarize(&reports),
        [
            ("expiring", true),
            ("expired", true),
            ("unknown", false),
            ("unreachable", true)
        ]
    );
    notifier.wait_idle().await;
    assert_eq!(receiver.accepted().len(), 6);
    assert!(receiver.rejected().is_empty());
}

/// Inventory targets: the DNS names (not wildcards) of unexpired, unrevoked, not superseded
/// certificates whose `verify_deployment` label is a port, with their other owner labels.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn targets_from_inventory_lists_opted_in_live_certificates() {
    let f = Fixture::new();
    let label = |port: &'static str| [(INVENTORY_LABEL, port), ("team", "web")];
    f.issue(
        &[
            "web.example.test",
            "www.example.test",
            "*.wild.example.test",
            "10.0.0.1",
        ],
        None,
        &label("8443"),
    )
    .await;
    let (old, _, _) = f.issue(&["old.example.test"], None, &label("443")).await;
    f.issue(&["new.example.test"], Some(&old.serial), &label("443")).await;
    let (revoked, _, _) = f.issue(&["revoked.example.test"], None, &label("443")).await;
    f.t.authority
        .revoke(&revoked.serial, RevocationReason::Superseded, "operator")
        .await
        .unwrap();
    f.issue(&["nolabel.example.test"], None, &[]).await;
    f.issue(&["badport.example.test"], None, &label("https")).await;
    // Same name and port as another certificate: one target.
    f.issue(&["www.example.test"], None, &label("8443")).await;

    let targets = targets_from_inventory(&f.t.store, f.clock_now()).await.unwrap();
    let ids: Vec<String> = targets.iter().map(DeploymentTarget::id).collect();
    assert_eq!(
        ids,
        ["new.example.test:443", "web.example.test:8443", "www.example.test:8443"]
    );
    for target in &targets {
        assert_eq!(target.owner_labels.get("team").map(String::as_str), Some("web"));
        assert!(!target.owner_labels.contains_key(INVENTORY_LABEL));
    }

    // The verifier adds them to the configured targets, configured first, without repeats.
    let settings = DeploymentSettings {
        targets: vec![
            DeploymentTarget::new("configured.example.test", 443),
            DeploymentTarget::new("new.example.test", 443),
        ],
        ..DeploymentSettings::default()
    };
    let verifier = DeploymentVerifier::new(f.deps(), settings, MonitorSettings::default(), None).unwrap();
    let ids: Vec<String> = verifier
        .targets()
        .await
        .unwrap()
        .iter()
        .map(DeploymentTarget::id)
        .collect();
    assert_eq!(
        ids,
        [
            "configured.example.test:443",
            "new.example.test:443",
            "web.example.test:8443",
            "www.example.test:8443"
        ]
    );

    // Once expired, nothing is listed.
    f.at(Duration::days(91));
    assert!(
        targets_from_inventory(&f.t.store, f.clock_now())
            .await
            .unwrap()
            .is_empty()
    );
}
