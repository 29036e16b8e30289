//! certgate certificate lifecycle: expiry monitoring with signed webhook notifications, and
//! deployment verification.
//!
//! What it does:
//! - [`ExpiryMonitor`] scans the inventory for certificates whose renewal window has opened or
//!   that are about to expire, skips those with a live successor, and sends each alert once
//!   (claimed in the store, so two schedulers never both send it).
//! - [`OutboundWebhook`] is the workspace's one outbound webhook client: a JSON POST over http
//!   or https (the receiver's certificate verified against a CA file or the system's trust
//!   store), signed with HMAC-SHA256 (`X-Certgate-Signature`), with deadlines. The notifier
//!   uses it, and so does the daemon for SCEP challenge webhooks.
//! - [`Notifier`] POSTs notifications to webhooks through [`OutboundWebhook`], with retries and
//!   exponential backoff in spawned tasks, and records every attempt.
//! - [`DeploymentVerifier`] connects to TLS endpoints, takes the served leaf certificate and
//!   tells whether it is certgate's current certificate, a superseded, revoked, expiring or
//!   expired one, a foreign one, or nothing at all; observations are recorded and every state
//!   but `current` is alerted once.
//!
//! What it does not do: schedule itself (the daemon runs [`ExpiryMonitor::run_once`] and
//! [`DeploymentVerifier::run_once`] on its own timers), renew certificates, or read config
//! files (the daemon maps its TOML onto the settings structs).
#![warn(missing_docs)]

mod deployment;
mod monitor;
mod net;
mod notifier;
mod outbound;
mod settings;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use certgate_core::{Clock, Identifier, Name, Protocol, RequesterId, Serial};
use certgate_store::notifications::NotificationStore;
use certgate_store::{CertificateRecord, CertificateStore, StoreError};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

pub use certgate_store::notifications::{
    DeliveryOutcome, DeliveryRecord, DeploymentObservation, DeploymentState, NotificationEvent, NotificationSweep,
};
pub use deployment::{DeploymentReport, DeploymentVerifier, INVENTORY_LABEL, targets_from_inventory};
pub use monitor::{ExpiryMonitor, NextExpiry, ScanSummary, live_successor};
pub use net::ExchangeError;
pub use notifier::{Notifier, SIGNATURE_HEADER, delivery_id, sign_payload};
pub use outbound::{OutboundWebhook, WebhookTimeouts};
pub use settings::{
    DeploymentSettings, DeploymentTarget, MonitorSettings, NotifierSettings, WebhookConfig, WebhookSecret,
};

/// A lifecycle failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LifecycleError {
    /// A setting is out of range.
    #[error("invalid lifecycle settings: {0}")]
    Settings(String),
    /// A webhook cannot be used as configured (URL, secret, TLS roots).
    #[error("webhook {webhook}: {reason}")]
    Webhook {
        /// The webhook's name.
        webhook: String,
        /// What is wrong.
        reason: String,
    },
    /// A webhook's CA file cannot be read or holds no certificate.
    #[error("CA file {path}: {reason}")]
    CaFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The TLS client could not be set up (the crypto provider refused the protocol versions).
    #[error("TLS client setup: {0}")]
    TlsSetup(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the monitor and the verifier read and write, and their clock.
#[derive(Debug, Clone)]
pub struct LifecycleDeps {
    /// The certificate inventory.
    pub certificates: Arc<dyn CertificateStore>,
    /// Alert claims, delivery records, deployment observations.
    pub notifications: Arc<dyn NotificationStore>,
    /// Now.
    pub clock: Arc<dyn Clock>,
}

/// A certificate as notifications describe it (no DER, no key material).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertificateSummary {
    /// Serial number, upper-case hex.
    pub serial: Serial,
    /// The issuer that signed it.
    pub issuer: Name,
    /// The endpoint it was requested through.
    pub endpoint: Name,
    /// The protocol it was requested with.
    pub protocol: Protocol,
    /// Who requested it.
    pub requester: RequesterId,
    /// The profile used.
    pub profile: Name,
    /// Subject, RFC 4514 text.
    pub subject: String,
    /// subjectAltName entries.
    pub identifiers: Vec<Identifier>,
    /// Validity start.
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    /// Validity end.
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Owner labels.
    pub owner_labels: BTreeMap<String, String>,
    /// Whether it is revoked.
    pub revoked: bool,
}

impl From<&CertificateRecord> for CertificateSummary {
    fn from(record: &CertificateRecord) -> Self {
        Self {
            serial: record.serial.clone(),
            issuer: record.issuer.clone(),
            endpoint: record.endpoint.clone(),
            protocol: record.protocol,
            requester: record.requester.clone(),
            profile: record.profile.clone(),
            subject: record.subject.clone(),
            identifiers: record.identifiers.clone(),
            not_before: record.not_before,
            not_after: record.not_after,
            owner_labels: record.owner_labels.clone(),
            revoked: record.revocation.is_some(),
        }
    }
}

/// One notification: the webhook payload, exactly as POSTed (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The event kind (`renewal_due`, `expiring`, `deployment`).
    pub event: NotificationEvent,
    /// The alert key; the same alert is never sent twice under one key.
    pub alert_key: String,
    /// When the alert was raised.
    #[serde(rename = "timestamp", with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// The certificate concerned; none for a deployment target serving nothing of certgate's.
    pub certificate: Option<CertificateSummary>,
    /// Its live successor, if any (deployment alerts of superseded certificates).
    pub successor: Option<CertificateSummary>,
    /// The deployment observation (deployment alerts only).
    pub deployment: Option<DeploymentObservation>,
}

impl Notification {
    /// The serial the notification is about: the certificate's, else the served one's.
    pub fn serial(&self) -> Option<&Serial> {
        self.certificate
            .as_ref()
            .map(|c| &c.serial)
            .or_else(|| self.deployment.as_ref().and_then(|d| d.serial.as_ref()))
    }
}
