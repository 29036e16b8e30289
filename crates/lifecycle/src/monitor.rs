//! The expiry monitor: which certificates need an alert now, each alert sent once.

use certgate_core::Serial;
use certgate_store::notifications::{NotificationEvent, NotificationSweep};
use certgate_store::{CertificateFilter, CertificateQuery, CertificateRecord, CertificateStore};
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::datetime;

use crate::{CertificateSummary, LifecycleDeps, LifecycleError, MonitorSettings, Notification, Notifier};

/// The end of the expiry index for "everything not yet expired".
const FAR_FUTURE: OffsetDateTime = datetime!(9999-12-31 0:00 UTC);
/// Successor chains longer than this are not followed (a guard against a cycle in the data).
const MAX_SUCCESSOR_HOPS: usize = 16;

/// What one scan did, for logs and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct ScanSummary {
    /// Certificates read (unexpired, expiring within the scan horizon).
    pub scanned: u64,
    /// Revoked certificates skipped.
    pub revoked: u64,
    /// Certificates in their renewal or expiring window.
    pub due: u64,
    /// Due certificates skipped because a live successor replaces them.
    pub superseded: u64,
    /// `renewal_due` alerts raised by this scan.
    pub renewal_due: u64,
    /// `expiring` alerts raised by this scan.
    pub expiring: u64,
    /// Alerts already claimed (by an earlier scan or another scheduler).
    pub already_alerted: u64,
    /// Webhook deliveries queued.
    pub deliveries_queued: u64,
}

/// The next certificate to expire that no live successor replaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NextExpiry {
    /// Its serial.
    pub serial: Serial,
    /// Its notAfter.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
}

/// The newest live certificate replacing `serial`, following the chain of renewals: if the
/// newest direct successor is itself revoked or expired, its own successor counts. Live:
/// not revoked and notAfter after `now`.
pub async fn live_successor(
    store: &dyn CertificateStore,
    serial: &Serial,
    now: OffsetDateTime,
) -> Result<Option<CertificateRecord>, LifecycleError> {
    let mut current = serial.clone();
    for _ in 0..MAX_SUCCESSOR_HOPS {
        let Some(next) = store.successor(&current).await? else {
            return Ok(None);
        };
        if next.revocation.is_none() && next.not_after > now {
            return Ok(Some(next));
        }
        current = next.serial;
    }
    Ok(None)
}

/// Scans the inventory and raises `renewal_due` and `expiring` alerts.
#[derive(Debug, Clone)]
pub struct ExpiryMonitor {
    deps: LifecycleDeps,
    settings: MonitorSettings,
    notifier: Notifier,
}

impl ExpiryMonitor {
    /// A monitor; refuses invalid settings.
    pub fn new(deps: LifecycleDeps, settings: MonitorSettings, notifier: Notifier) -> Result<Self, LifecycleError> {
        settings.validate()?;
        Ok(Self {
            deps,
            settings,
            notifier,
        })
    }

    /// One scan: every unexpired, unrevoked certificate expiring within the horizon whose
    /// renewal window (`renewal_due`) or expiring window (`expiring`) has opened and that has
    /// no live successor gets each of those alerts once. Claims are made before sending, so an
    /// alert is sent at most once even with several schedulers; one whose every delivery
    /// attempt fails is not sent again (the failure is recorded and counted).
    pub async fn run_once(&self) -> Result<ScanSummary, LifecycleError> {
        let now = self.deps.clock.now();
        let mut summary = ScanSummary::default();
        let mut after = None;
        loop {
            let page = self
                .deps
                .certificates
                .list_certificates(&CertificateQuery {
                    filter: CertificateFilter::ExpiringBetween {
                        from: now,
                        to: now + self.settings.scan_horizon(),
                    },
                    limit: self.settings.page_size,
                    after,
                })
                .await?;
            for record in &page.items {
                self.consider(record, now, &mut summary).await?;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        tracing::debug!(target: "certgate::notify", ?summary, "expiry scan finished");
        Ok(summary)
    }

    async fn consider(
        &self,
        record: &CertificateRecord,
        now: OffsetDateTime,
        summary: &mut ScanSummary,
    ) -> Result<(), LifecycleError> {
        if record.not_after <= now {
            return Ok(());
        }
        summary.scanned += 1;
        if record.revocation.is_some() {
            summary.revoked += 1;
            return Ok(());
        }
        let rules = &self.settings;
        let due: Vec<NotificationEvent> = [
            (
                NotificationEvent::RenewalDue,
                rules.renewal_window_start(record.not_before, record.not_after),
            ),
            (
                NotificationEvent::Expiring,
                rules.expiring_window_start(record.not_before, record.not_after),
            ),
        ]
        .into_iter()
        .filter(|(_, start)| now >= *start)
        .map(|(event, _)| event)
        .collect();
        if due.is_empty() {
            return Ok(());
        }
        summary.due += 1;
        if live_successor(self.deps.certificates.as_ref(), &record.serial, now)
            .await?
            .is_some()
        {
            summary.superseded += 1;
            return Ok(());
        }
        for event in due {
            let alert_key = format!("{event}:{}", record.serial);
            // Held until the certificate expires; after that it is skipped anyway.
            if !self
                .deps
                .notifications
                .claim_alert(&alert_key, now, record.not_after)
                .await?
            {
                summary.already_alerted += 1;
                continue;
            }
            match event {
                NotificationEvent::RenewalDue => summary.renewal_due += 1,
                _ => summary.expiring += 1,
            }
            tracing::info!(target: "certgate::notify", event = %event, alert_key = %alert_key,
                serial = %record.serial, not_after = %record.not_after, endpoint = %record.endpoint,
                requester = %record.requester, "certificate alert raised");
            let notification = Notification {
                event,
                alert_key,
                at: now,
                certificate: Some(CertificateSummary::from(record)),
                successor: None,
                deployment: None,
            };
            summary.deliveries_queued += self.notifier.notify(&notification).await as u64;
        }
        Ok(())
    }

    /// The certificate expiring next, from now on, that is not revoked and has no live
    /// successor (the daemon exports `not_after - now` as a gauge). `None` when there is none.
    pub async fn next_expiry_without_successor(&self) -> Result<Option<NextExpiry>, LifecycleError> {
        let now = self.deps.clock.now();
        let mut after = None;
        loop {
            let page = self
                .deps
                .certificates
                .list_certificates(&CertificateQuery {
                    filter: CertificateFilter::ExpiringBetween {
                        from: now,
                        to: FAR_FUTURE,
                    },
                    limit: self.settings.page_size,
                    after,
                })
                .await?;
            for record in &page.items {
                if record.not_after <= now || record.revocation.is_some() {
                    continue;
                }
                if live_successor(self.deps.certificates.as_ref(), &record.serial, now)
                    .await?
                    .is_none()
                {
                    return Ok(Some(NextExpiry {
                        serial: record.serial.clone(),
                        not_after: record.not_after,
                    }));
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(None),
            }
        }
    }

    /// Forgets delivery records and deployment observations older than `retention_days`, and
    /// alert claims that no longer hold (run it about hourly; the database stays bounded).
    pub async fn sweep(&self) -> Result<NotificationSweep, LifecycleError> {
        let now = self.deps.clock.now();
        let before = now - time::Duration::days(self.settings.retention_days.into());
        let swept = self.deps.notifications.sweep_notifications(before, now).await?;
        tracing::debug!(target: "certgate::notify", ?swept, "notification records swept");
        Ok(swept)
    }

    /// The settings in force.
    pub fn settings(&self) -> &MonitorSettings {
        &self.settings
    }
}
