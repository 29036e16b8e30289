//! Background jobs: CRL refresh, retention sweeps, inventory gauges, expiry monitoring and
//! deployment verification. Each runs on its own timer until shutdown; a failing run is
//! logged and retried at the next tick, never fatal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use certgate_acme::AcmeServer;
use certgate_core::Clock;
use certgate_lifecycle::{DeploymentVerifier, ExpiryMonitor, Notifier};
use certgate_metrics::{CertificateStatus, Metrics};
use certgate_revocation::RevocationService;
use certgate_store::audit::{AuditLog, SledAuditLog};
use certgate_store::{AcmeStore, SledStore};
use tokio::sync::watch;

use crate::config::RetentionConfig;
use crate::inventory::{CertStatus, InventoryFilter};

/// Runs `job` every `period` (the first run right away) until `shutdown` fires.
pub async fn every<F, Fut>(period: Duration, mut shutdown: watch::Receiver<bool>, mut job: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()>,
{
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => job().await,
            _ = shutdown.changed() => return,
        }
    }
}

/// Regenerates CRLs that are half-way to their nextUpdate (revocations regenerate them on
/// the next read anyway) and rotates OCSP signers that near expiry.
pub async fn refresh_revocation(revocation: &RevocationService, clock: &dyn Clock) {
    let now = clock.now();
    if revocation.refresh_due(now)
        && let Err(e) = revocation.refresh(now).await
    {
        tracing::warn!(error = %e, "refreshing CRLs failed");
    }
}

/// Everything the retention sweep touches.
pub struct Sweeper {
    /// The store.
    pub store: SledStore,
    /// The ACME server (nonces).
    pub acme: Option<Arc<AcmeServer>>,
    /// Lifecycle state (delivery records).
    pub monitor: Option<Arc<ExpiryMonitor>>,
    /// The audit log, whose oldest entries move to segment files.
    pub audit: Arc<SledAuditLog>,
    /// Retention periods.
    pub retention: RetentionConfig,
    /// The clock.
    pub clock: Arc<dyn Clock>,
}

impl Sweeper {
    /// One sweep of everything that expires, so the database stays bounded under load.
    pub async fn run_once(&self) {
        use certgate_store::ScepChallengeStore;
        let now = self.clock.now();
        let ago = |seconds: u64| now - time::Duration::seconds(seconds.min(i64::MAX as u64) as i64);
        let retention = &self.retention;
        if let Some(acme) = &self.acme {
            let swept = acme.sweep_nonces().await;
            log_swept("ACME nonces", Ok(swept));
        }
        let acme = self.store.sweep_acme(ago(retention.acme_seconds_after_expiry)).await;
        log_swept(
            "ACME orders and authorizations",
            acme.map(|s| s.orders + s.authorizations),
        );
        log_swept("SCEP challenges", self.store.sweep_scep_challenges(now).await);
        log_swept(
            "approvals",
            self.store
                .sweep_approvals(ago(retention.approval_seconds), ago(retention.approval_seconds))
                .await,
        );
        log_swept(
            "expired certificates",
            self.store
                .sweep_expired_certificates(ago(retention.certificate_seconds_after_expiry))
                .await,
        );
        self.archive_audit().await;
        if let Some(monitor) = &self.monitor {
            match monitor.sweep().await {
                Ok(swept) => tracing::debug!(?swept, "notification records swept"),
                Err(e) => tracing::warn!(error = %e, "sweeping notification records failed"),
            }
        }
    }

    /// Moves audit entries beyond `audit_entries_in_store` into segment files, a segment at a
    /// time, so the database holds a bounded tail of the log.
    async fn archive_audit(&self) {
        let keep = self.retention.audit_entries_in_store;
        // What is due now, and no more: under endless load new entries are always due, and
        // the rest of the sweep must still run.
        let due_through = match self.audit.len().await {
            Ok(newest) => newest.saturating_sub(keep),
            Err(e) => {
                tracing::error!(error = %e, "reading the audit log failed");
                return;
            }
        };
        loop {
            match self.audit.archive(keep).await {
                Ok(Some(segment)) => {
                    tracing::info!(
                        first = segment.first,
                        last = segment.last,
                        path = %segment.path.display(),
                        "audit entries archived"
                    );
                    if segment.last >= due_through {
                        return;
                    }
                }
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "archiving audit entries failed");
                    return;
                }
            }
        }
    }
}

fn log_swept(what: &str, result: Result<u64, certgate_store::StoreError>) {
    match result {
        Ok(0) => {}
        Ok(swept) => tracing::debug!(swept, what, "swept"),
        Err(e) => tracing::warn!(error = %e, what, "sweeping failed"),
    }
}

/// Sets the certificate-status gauges and the next-expiry gauge from the inventory.
pub async fn inventory_gauges(
    store: &SledStore,
    monitor: Option<&ExpiryMonitor>,
    metrics: &Metrics,
    clock: &dyn Clock,
    renewal_fraction: f64,
) {
    let now = clock.now();
    // Page by page, keeping counts only: the inventory can be far larger than memory wants.
    let mut counts = [0u64; CertStatus::ALL.len()];
    let mut after = None;
    loop {
        let page = match crate::inventory::list(store, &InventoryFilter::default(), 1000, after, now, renewal_fraction)
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(error = %e, "counting certificates for metrics failed");
                return;
            }
        };
        for item in &page.items {
            if let Some(slot) = CertStatus::ALL.iter().position(|s| *s == item.status) {
                counts[slot] += 1;
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    for (status, count) in CertStatus::ALL.into_iter().zip(counts) {
        let label = match status {
            CertStatus::Valid => CertificateStatus::Valid,
            CertStatus::RenewalDue => CertificateStatus::RenewalDue,
            CertStatus::Superseded => CertificateStatus::Superseded,
            CertStatus::Expired => CertificateStatus::Expired,
            CertStatus::Revoked => CertificateStatus::Revoked,
        };
        metrics.set_certificates(label, count);
    }
    if let Some(monitor) = monitor {
        match monitor.next_expiry_without_successor().await {
            Ok(next) => {
                metrics.set_next_expiry_seconds(next.map(|n| (n.not_after - now).as_seconds_f64()));
            }
            Err(e) => tracing::warn!(error = %e, "finding the next expiry failed"),
        }
    }
}

/// One expiry scan, logged.
pub async fn scan_expiries(monitor: &ExpiryMonitor) {
    match monitor.run_once().await {
        Ok(summary) => {
            if summary.renewal_due + summary.expiring > 0 {
                tracing::info!(target: "certgate::notify", ?summary, "expiry scan sent notifications");
            } else {
                tracing::debug!(?summary, "expiry scan");
            }
        }
        Err(e) => tracing::warn!(error = %e, "expiry scan failed"),
    }
}

/// One deployment check of every target, logged.
pub async fn verify_deployments(verifier: &DeploymentVerifier) {
    match verifier.run_once().await {
        Ok(reports) => {
            // The lifecycle crate logs each observation; this is the run's summary.
            tracing::debug!(targets = reports.len(), "deployment verification run");
        }
        Err(e) => tracing::warn!(error = %e, "deployment verification failed"),
    }
}

/// Adds webhook failures the notifier counted since the last call to the metrics, by webhook
/// (`seen` holds the counts already added, in the notifier's webhook order).
pub fn webhook_failures(notifier: &Notifier, metrics: &Metrics, seen: &mut Vec<u64>) {
    seen.resize(notifier.webhooks().count(), 0);
    for ((name, total), seen) in notifier.failures_by_webhook().zip(seen.iter_mut()) {
        for _ in *seen..total {
            metrics.webhook_failure(name);
        }
        *seen = total;
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use certgate_core::{
        DnsName, Identifier, KeyKind, Name, Protocol, RequesterId, RevocationReason, Serial, SystemClock,
    };
    use certgate_metrics::MetricsConfig;
    use certgate_store::{CertificateRecord, CertificateStore, Revocation, SerialReservation};
    use time::{Duration, OffsetDateTime};

    use super::*;

    async fn issue(store: &SledStore, n: u32, not_after: OffsetDateTime, revoked: bool) {
        let mut random = [0u8; 16];
        random[..4].copy_from_slice(&n.to_be_bytes());
        let serial = Serial::from_random(random);
        let now = OffsetDateTime::now_utc();
        let record = CertificateRecord {
            serial: serial.clone(),
            issuer: Name::new("default").unwrap(),
            endpoint: Name::new("default").unwrap(),
            protocol: Protocol::Acme,
            requester: RequesterId::new(format!("acme-account:{n}")).unwrap(),
            profile: Name::new("tls-server").unwrap(),
            owner_labels: BTreeMap::new(),
            subject: String::new(),
            identifiers: vec![Identifier::Dns(DnsName::new(&format!("h{n}.example")).unwrap())],
            key: KeyKind::EcP256,
            not_before: not_after - Duration::days(90),
            not_after,
            issued_at: now,
            replaces: None,
            revocation: None,
            der: vec![0x30, 0x00],
        };
        let reservation = SerialReservation {
            serial: serial.clone(),
            issuer: record.issuer.clone(),
            endpoint: record.endpoint.clone(),
            reserved_at: now,
        };
        store.reserve_serial(&reservation).await.unwrap();
        store.record_issued(&record).await.unwrap();
        if revoked {
            let revocation = Revocation {
                reason: RevocationReason::KeyCompromise,
                revoked_at: now,
                by: "test".into(),
            };
            store.revoke(&serial, &revocation).await.unwrap();
        }
    }

    /// The gauges count every certificate, across pages of the inventory.
    #[tokio::test]
    async fn inventory_gauges_count_every_page() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let now = OffsetDateTime::now_utc();
        let mut n = 0;
        for (count, not_after, revoked) in [
            (1_001, now + Duration::days(80), false),
            (4, now + Duration::days(5), false),
            (3, now + Duration::days(80), true),
            (2, now - Duration::days(1), false),
        ] {
            for _ in 0..count {
                n += 1;
                issue(&store, n, not_after, revoked).await;
            }
        }
        let metrics = Metrics::new(MetricsConfig::default());
        inventory_gauges(&store, None, &metrics, &SystemClock, 0.5).await;
        let rendered = metrics.render();
        for (status, want) in [
            ("valid", 1_001),
            ("renewal_due", 4),
            ("revoked", 3),
            ("expired", 2),
            ("superseded", 0),
        ] {
            let line = format!("certgate_certificates{{status=\"{status}\"}} {want}");
            assert!(rendered.lines().any(|l| l == line), "missing {line:?} in\n{rendered}");
        }
    }
}
