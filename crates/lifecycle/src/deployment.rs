//! Deployment verification: what certificate do the TLS endpoints actually serve?
//!
//! For each target: TCP connect and TLS handshake (accepting any certificate, see
//! `net::observing_tls`), then the served leaf is looked up by serial and compared byte for
//! byte with certgate's record. The observation is stored as the target's latest, and every
//! state but `current` is alerted once per (target, serial, state).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use certgate_core::{Identifier, Serial};
use certgate_store::notifications::{DeploymentObservation, DeploymentState, NotificationEvent};
use certgate_store::{CertificateFilter, CertificateQuery, CertificateRecord, CertificateStore, StoreError};
use rustls::ClientConfig;
use serde::Serialize;
use time::OffsetDateTime;
use time::macros::datetime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::monitor::live_successor;
use crate::{
    CertificateSummary, DeploymentSettings, DeploymentTarget, LifecycleDeps, LifecycleError, MonitorSettings,
    Notification, Notifier, net,
};

/// The owner label by which a certificate opts in to deployment checks: its value is the
/// port its DNS names serve it on (e.g. `"443"`).
pub const INVENTORY_LABEL: &str = "verify_deployment";

const FAR_FUTURE: OffsetDateTime = datetime!(9999-12-31 0:00 UTC);
const INVENTORY_PAGE: usize = 500;

/// What one target served, and what certgate knows about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentReport {
    /// The target checked.
    pub target: DeploymentTarget,
    /// What was found (also stored as the target's latest observation, unless the run's
    /// total time ran out before the target was checked).
    pub observation: DeploymentObservation,
    /// certgate's record of the served certificate, if it is certgate's.
    pub certificate: Option<CertificateSummary>,
    /// Its live successor, if any.
    pub successor: Option<CertificateSummary>,
    /// Whether this check raised a `deployment` alert (false when it was already alerted, for
    /// `current`, and when the verifier has no notifier).
    pub alerted: bool,
}

/// Checks deployment targets.
#[derive(Debug, Clone)]
pub struct DeploymentVerifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    deps: LifecycleDeps,
    settings: DeploymentSettings,
    rules: MonitorSettings,
    notifier: Option<Notifier>,
    tls: Arc<ClientConfig>,
}

impl DeploymentVerifier {
    /// A verifier. `rules` decides when a served certificate counts as expiring (the
    /// monitor's expiring window). Without a `notifier` (a one-off CLI check) observations are
    /// recorded but no alert is claimed or sent, so the daemon's next run still alerts.
    pub fn new(
        deps: LifecycleDeps,
        settings: DeploymentSettings,
        rules: MonitorSettings,
        notifier: Option<Notifier>,
    ) -> Result<Self, LifecycleError> {
        settings.validate()?;
        rules.validate()?;
        let tls = net::observing_tls().map_err(LifecycleError::TlsSetup)?;
        Ok(Self {
            inner: Arc::new(Inner {
                deps,
                settings,
                rules,
                notifier,
                tls,
            }),
        })
    }

    /// The configured targets plus, if `from_inventory`, those from
    /// [`targets_from_inventory`]; one per [`DeploymentTarget::id`], configured first.
    pub async fn targets(&self) -> Result<Vec<DeploymentTarget>, LifecycleError> {
        let mut targets = self.inner.settings.targets.clone();
        if self.inner.settings.from_inventory {
            let now = self.inner.deps.clock.now();
            targets.extend(targets_from_inventory(self.inner.deps.certificates.as_ref(), now).await?);
        }
        let mut seen = BTreeSet::new();
        targets.retain(|t| seen.insert(t.id()));
        Ok(targets)
    }

    /// Checks [`Self::targets`].
    pub async fn run_once(&self) -> Result<Vec<DeploymentReport>, LifecycleError> {
        let targets = self.targets().await?;
        self.verify_targets(&targets).await
    }

    /// Checks `targets` (at most `max_concurrent` at once, within `total_timeout_seconds`)
    /// and returns one report per target, in order. Fails only when the store fails.
    pub async fn verify_targets(&self, targets: &[DeploymentTarget]) -> Result<Vec<DeploymentReport>, LifecycleError> {
        let settings = &self.inner.settings;
        let total = Duration::from_secs(settings.total_timeout_seconds);
        let deadline = Instant::now() + total;
        let permits = Arc::new(Semaphore::new(settings.max_concurrent));
        let mut checks = JoinSet::new();
        for (index, target) in targets.iter().enumerate() {
            let (inner, target, permits) = (Arc::clone(&self.inner), target.clone(), Arc::clone(&permits));
            checks.spawn(async move {
                // The semaphore is never closed.
                let _permit = permits.acquire_owned().await;
                (index, inner.verify_one(target).await)
            });
        }
        let mut reports: Vec<Option<DeploymentReport>> = vec![None; targets.len()];
        loop {
            match tokio::time::timeout_at(deadline, checks.join_next()).await {
                Ok(Some(Ok((index, Ok(report))))) => {
                    if let Some(slot) = reports.get_mut(index) {
                        *slot = Some(report);
                    }
                }
                Ok(Some(Ok((_, Err(e))))) => {
                    checks.abort_all();
                    return Err(e);
                }
                Ok(Some(Err(e))) => {
                    tracing::error!(target: "certgate::deployment", error = %e, "a deployment check task failed");
                }
                Ok(None) => break,
                Err(_) => {
                    checks.abort_all();
                    break;
                }
            }
        }
        let now = self.inner.deps.clock.now();
        Ok(targets
            .iter()
            .zip(reports)
            .map(|(target, report)| {
                report.unwrap_or_else(|| DeploymentReport {
                    target: target.clone(),
                    observation: DeploymentObservation {
                        target: target.id(),
                        state: DeploymentState::Unreachable {
                            error: format!("not checked within the run's limit of {} s", total.as_secs()),
                        },
                        serial: None,
                        not_after: None,
                        observed_at: now,
                    },
                    certificate: None,
                    successor: None,
                    alerted: false,
                })
            })
            .collect())
    }
}

impl Inner {
    async fn verify_one(&self, target: DeploymentTarget) -> Result<DeploymentReport, LifecycleError> {
        let deadline = Instant::now() + Duration::from_millis(self.settings.connect_timeout_ms);
        let served = net::served_leaf(
            Arc::clone(&self.tls),
            &target.host,
            target.port,
            target.server_name(),
            deadline,
        )
        .await;
        let now = self.deps.clock.now();
        let store = self.deps.certificates.as_ref();
        let (state, leaf, record, successor) = match served {
            Err(error) => (DeploymentState::Unreachable { error }, None, None, None),
            Ok(der) => match parse_leaf(&der) {
                None => (DeploymentState::Unknown, None, None, None),
                Some(leaf) => {
                    let record = match store.certificate(&leaf.0).await {
                        Ok(record) if record.der == der => Some(record),
                        // Same serial, other bytes: another CA's certificate.
                        Ok(_) | Err(StoreError::NotFound) => None,
                        Err(e) => return Err(e.into()),
                    };
                    let successor = match &record {
                        Some(record) => live_successor(store, &record.serial, now).await?,
                        None => None,
                    };
                    let state = classify(record.as_ref(), successor.as_ref(), now, &self.rules);
                    (state, Some(leaf), record, successor)
                }
            },
        };
        let observation = DeploymentObservation {
            target: target.id(),
            state,
            serial: leaf.as_ref().map(|l| l.0.clone()),
            not_after: leaf.as_ref().map(|l| l.1),
            observed_at: now,
        };
        self.deps.notifications.record_deployment(&observation).await?;
        tracing::info!(target: "certgate::deployment", deployment_target = %observation.target,
            state = %observation.state, serial = ?observation.serial.as_ref().map(Serial::to_hex),
            "deployment observed");
        let mut report = DeploymentReport {
            target,
            observation,
            certificate: record.as_ref().map(CertificateSummary::from),
            successor: successor.as_ref().map(CertificateSummary::from),
            alerted: false,
        };
        report.alerted = self.alert(&report, now).await?;
        Ok(report)
    }

    /// Raises the `deployment` alert for `report` unless it is current or already alerted.
    async fn alert(&self, report: &DeploymentReport, now: OffsetDateTime) -> Result<bool, LifecycleError> {
        let observation = &report.observation;
        let Some(notifier) = &self.notifier else {
            return Ok(false);
        };
        if observation.state == DeploymentState::Current {
            return Ok(false);
        }
        let serial = observation
            .serial
            .as_ref()
            .map_or_else(|| "-".to_owned(), Serial::to_hex);
        let alert_key = format!("deployment:{}:{serial}:{}", observation.target, observation.state);
        // Held for the served certificate's remaining life; states without one (unreachable,
        // expired, unparseable) are reminded of every `realert_hours` while they last.
        let realert = now + time::Duration::hours(self.settings.realert_hours.into());
        let until = match (&observation.state, observation.not_after) {
            (DeploymentState::Unreachable { .. } | DeploymentState::Expired, _) | (_, None) => realert,
            (_, Some(not_after)) => not_after.max(realert),
        };
        if !self.deps.notifications.claim_alert(&alert_key, now, until).await? {
            return Ok(false);
        }
        tracing::warn!(target: "certgate::notify", event = "deployment", alert_key = %alert_key,
            deployment_target = %observation.target, state = %observation.state, "deployment alert raised");
        let notification = Notification {
            event: NotificationEvent::Deployment,
            alert_key,
            at: now,
            certificate: report.certificate.clone(),
            successor: report.successor.clone(),
            deployment: Some(observation.clone()),
        };
        notifier.notify(&notification).await;
        Ok(true)
    }
}

/// The serial and notAfter of a DER certificate, if it parses.
fn parse_leaf(der: &[u8]) -> Option<(Serial, OffsetDateTime)> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let serial = Serial::from_der_integer(cert.raw_serial()).ok()?;
    let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp()).ok()?;
    Some((serial, not_after))
}

/// The state of a served certificate: `record` is certgate's record of exactly the served
/// bytes (none: not certgate's), `successor` its live successor.
fn classify(
    record: Option<&CertificateRecord>,
    successor: Option<&CertificateRecord>,
    now: OffsetDateTime,
    rules: &MonitorSettings,
) -> DeploymentState {
    let Some(record) = record else {
        return DeploymentState::Unknown;
    };
    if record.revocation.is_some() {
        DeploymentState::Revoked
    } else if record.not_after <= now {
        DeploymentState::Expired
    } else if let Some(successor) = successor {
        DeploymentState::Superseded {
            successor: successor.serial.clone(),
        }
    } else if now >= rules.expiring_window_start(record.not_before, record.not_after) {
        DeploymentState::Expiring
    } else {
        DeploymentState::Current
    }
}

/// Targets from the inventory: for every unexpired, unrevoked certificate without a live
/// successor whose owner label [`INVENTORY_LABEL`] holds a port number, each of its DNS names
/// (wildcards cannot be connected to and are skipped; IP addresses are not checked) on that
/// port, with the certificate's other owner labels. One target per name and port, by id.
pub async fn targets_from_inventory(
    store: &dyn CertificateStore,
    now: OffsetDateTime,
) -> Result<Vec<DeploymentTarget>, LifecycleError> {
    let mut targets = BTreeMap::new();
    let mut after = None;
    loop {
        let page = store
            .list_certificates(&CertificateQuery {
                filter: CertificateFilter::ExpiringBetween {
                    from: now,
                    to: FAR_FUTURE,
                },
                limit: INVENTORY_PAGE,
                after,
            })
            .await?;
        for record in &page.items {
            let Some(port) = record.owner_labels.get(INVENTORY_LABEL) else {
                continue;
            };
            if record.not_after <= now || record.revocation.is_some() {
                continue;
            }
            let port = match port.trim().parse::<u16>() {
                Ok(port) if port > 0 => port,
                _ => {
                    tracing::warn!(target: "certgate::deployment", serial = %record.serial, label = %port,
                        "owner label {INVENTORY_LABEL} is not a port number; not checked");
                    continue;
                }
            };
            if live_successor(store, &record.serial, now).await?.is_some() {
                continue;
            }
            let mut labels = record.owner_labels.clone();
            labels.remove(INVENTORY_LABEL);
            for identifier in &record.identifiers {
                if let Identifier::Dns(name) = identifier
                    && !name.is_wildcard()
                {
                    let target = DeploymentTarget {
                        owner_labels: labels.clone(),
                        ..DeploymentTarget::new(name.as_str(), port)
                    };
                    targets.entry(target.id()).or_insert(target);
                }
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(targets.into_values().collect()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use certgate_core::{DnsName, KeyKind, Name, Protocol, RequesterId, RevocationReason};
    use certgate_store::Revocation;
    use time::macros::datetime;

    use super::*;

    fn record(serial: u8, not_before: OffsetDateTime, days: i64, revoked: bool) -> CertificateRecord {
        CertificateRecord {
            serial: Serial::from_random([serial; 16]),
            issuer: Name::new("default").unwrap(),
            endpoint: Name::new("default").unwrap(),
            protocol: Protocol::Acme,
            requester: RequesterId::new("acme:1").unwrap(),
            profile: Name::new("tls-server").unwrap(),
            owner_labels: BTreeMap::new(),
            subject: String::new(),
            identifiers: vec![Identifier::Dns(DnsName::new("a.example").unwrap())],
            key: KeyKind::EcP256,
            not_before,
            not_after: not_before + time::Duration::days(days),
            issued_at: not_before,
            replaces: None,
            revocation: revoked.then(|| Revocation {
                reason: RevocationReason::KeyCompromise,
                revoked_at: not_before,
                by: "operator".into(),
            }),
            der: vec![serial],
        }
    }

    #[test]
    fn classification() {
        let now = datetime!(2030-06-01 0:00 UTC);
        let rules = MonitorSettings::default();
        let fresh = record(1, now - time::Duration::days(10), 90, false);
        let near_end = record(2, now - time::Duration::days(85), 90, false);
        let expired = record(3, now - time::Duration::days(100), 90, false);
        let revoked = record(4, now - time::Duration::days(10), 90, true);
        let successor = record(5, now, 90, false);
        let cases: [(
            &str,
            Option<&CertificateRecord>,
            Option<&CertificateRecord>,
            DeploymentState,
        ); 7] = [
            ("current", Some(&fresh), None, DeploymentState::Current),
            ("expiring", Some(&near_end), None, DeploymentState::Expiring),
            (
                "superseded_wins_over_expiring",
                Some(&near_end),
                Some(&successor),
                DeploymentState::Superseded {
                    successor: successor.serial.clone(),
                },
            ),
            ("expired", Some(&expired), None, DeploymentState::Expired),
            (
                "expired_wins_over_superseded",
                Some(&expired),
                Some(&successor),
                DeploymentState::Expired,
            ),
            ("revoked", Some(&revoked), Some(&successor), DeploymentState::Revoked),
            ("unknown", None, None, DeploymentState::Unknown),
        ];
        for (case, record, successor, want) in cases {
            assert_eq!(classify(record, successor, now, &rules), want, "case {case}");
        }
    }

    #[test]
    fn leaf_parsing() {
        let key = rcgen_key();
        let cert = key.1.self_signed(&key.0).unwrap();
        let (serial, _) = parse_leaf(cert.der()).unwrap();
        assert!(!serial.as_bytes().is_empty());
        assert_eq!(parse_leaf(b"not a certificate"), None);
    }

    fn rcgen_key() -> (
        certgate_test_support::rcgen::KeyPair,
        certgate_test_support::rcgen::CertificateParams,
    ) {
        let key = certgate_test_support::rcgen::KeyPair::generate().unwrap();
        let params = certgate_test_support::rcgen::CertificateParams::new(vec!["self.example".to_owned()]).unwrap();
        (key, params)
    }
}
