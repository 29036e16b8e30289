//! Lifecycle notifications: which alerts were already sent (claims), what each webhook
//! delivery attempt did, and the latest deployment observation per target.
//!
//! An alert is identified by a key such as `renewal_due:<serial>`, `expiring:<serial>` or
//! `deployment:<target>:<serial>:<state>`. [`NotificationStore::claim_alert`] is a
//! compare-and-swap, so of several schedulers (or restarts) looking at the same certificate
//! exactly one sends the alert. A claim carries the instant until which it holds: after that
//! the key may be claimed again (a reminder), and the sweep forgets it, so the database stays
//! bounded. Delivery records and deployment observations are swept by age.
//!
//! The store decides nothing about when to alert: `certgate-lifecycle` does.

use std::fmt;

use async_trait::async_trait;
use certgate_core::Serial;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::StoreError;

/// What a notification is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationEvent {
    /// A certificate reached its renewal window and has no live successor.
    RenewalDue,
    /// A certificate is about to expire and has no live successor.
    Expiring,
    /// A deployment check found something other than the current certificate.
    Deployment,
}

impl NotificationEvent {
    /// Every event kind.
    pub const ALL: [Self; 3] = [Self::RenewalDue, Self::Expiring, Self::Deployment];

    /// The snake_case name used in payloads, headers, alert keys and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RenewalDue => "renewal_due",
            Self::Expiring => "expiring",
            Self::Deployment => "deployment",
        }
    }
}

impl fmt::Display for NotificationEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for NotificationEvent {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| format!("unknown notification event {s:?}"))
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// The receiver answered 2xx.
    Delivered {
        /// The HTTP status.
        status: u16,
    },
    /// The attempt failed: no connection, a timeout, TLS, or a non-2xx answer.
    Failed {
        /// The HTTP status, when the receiver answered.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

impl DeliveryOutcome {
    /// Whether the receiver accepted the notification.
    pub fn is_delivered(&self) -> bool {
        matches!(self, Self::Delivered { .. })
    }
}

/// One attempt to deliver one notification to one webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// The delivery id (the same for every attempt of one delivery; sent as
    /// `X-Certgate-Delivery`). 1 to 64 ASCII letters, digits, '-' or '_'.
    pub id: String,
    /// The webhook's configured name.
    pub webhook: String,
    /// The event kind.
    pub event: NotificationEvent,
    /// The alert key the notification was sent for.
    pub alert_key: String,
    /// The certificate concerned, if any (none for an unreachable deployment target).
    pub serial: Option<Serial>,
    /// 1 for the first attempt.
    pub attempt: u32,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: DeliveryOutcome,
    /// When the attempt ended.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// Which delivery records to list (newest first).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryQuery {
    /// Only this webhook's.
    pub webhook: Option<String>,
    /// Only attempts for this alert key.
    pub alert_key: Option<String>,
    /// Only failed attempts.
    pub failed_only: bool,
    /// At most this many (0 means the maximum, 1000).
    pub limit: usize,
}

/// What a deployment check found at a target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum DeploymentState {
    /// certgate's certificate, valid, not superseded, not about to expire.
    Current,
    /// certgate's certificate, but a newer one replaces it and has not been deployed.
    Superseded {
        /// The live successor.
        successor: Serial,
    },
    /// certgate's certificate, revoked.
    Revoked,
    /// certgate's certificate, about to expire, with no live successor.
    Expiring,
    /// certgate's certificate, expired.
    Expired,
    /// A certificate certgate did not issue (or one it cannot parse).
    Unknown,
    /// No TLS handshake: connection refused, timeout, handshake failure.
    Unreachable {
        /// What went wrong.
        error: String,
    },
}

impl DeploymentState {
    /// The snake_case name used in alert keys, payloads and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Current => "current",
            Self::Superseded { .. } => "superseded",
            Self::Revoked => "revoked",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Unknown => "unknown",
            Self::Unreachable { .. } => "unreachable",
        }
    }
}

impl fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The latest thing seen at one deployment target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentObservation {
    /// The target's identity, `host:port` (with `/sni` appended when the SNI name differs
    /// from the host). At most 1024 bytes.
    pub target: String,
    /// What was found.
    #[serde(flatten)]
    pub state: DeploymentState,
    /// The serial of the certificate served, when one was served and parsed.
    pub serial: Option<Serial>,
    /// The served certificate's notAfter, when one was served and parsed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub not_after: Option<OffsetDateTime>,
    /// When it was observed.
    #[serde(with = "time::serde::rfc3339")]
    pub observed_at: OffsetDateTime,
}

/// What a sweep removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotificationSweep {
    /// Delivery records older than the retention.
    pub deliveries: u64,
    /// Alert claims that no longer hold.
    pub alerts: u64,
    /// Deployment observations older than the retention.
    pub deployments: u64,
}

/// Whether `id` is a well-formed delivery id.
pub fn valid_delivery_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Storage for alert claims, delivery records and deployment observations.
#[async_trait]
pub trait NotificationStore: Send + Sync + std::fmt::Debug {
    /// Claims alert `key` at `at`, to hold until `until`: true for exactly one caller while a
    /// claim holds, false for everyone else. A claim whose `until` has passed (at `at`) may be
    /// claimed again. Durable on return when true: a sent alert stays sent after a restart.
    /// `Conflict` for an empty key or one longer than 1024 bytes.
    async fn claim_alert(&self, key: &str, at: OffsetDateTime, until: OffsetDateTime) -> Result<bool, StoreError>;

    /// Records one delivery attempt (not flushed: a record lost in a crash costs only
    /// history). `Conflict` for a malformed id or a second record of the same attempt.
    async fn record_delivery(&self, record: &DeliveryRecord) -> Result<(), StoreError>;

    /// Delivery records matching `query`, newest first.
    async fn deliveries(&self, query: &DeliveryQuery) -> Result<Vec<DeliveryRecord>, StoreError>;

    /// Stores `observation` as the latest for its target (not flushed). `Conflict` for an
    /// empty target or one longer than 1024 bytes.
    async fn record_deployment(&self, observation: &DeploymentObservation) -> Result<(), StoreError>;

    /// The latest observation of every target, by target.
    async fn deployments(&self) -> Result<Vec<DeploymentObservation>, StoreError>;

    /// Forgets delivery records and deployment observations from before `before`, and alert
    /// claims that stopped holding before `now`.
    async fn sweep_notifications(
        &self,
        before: OffsetDateTime,
        now: OffsetDateTime,
    ) -> Result<NotificationSweep, StoreError>;
}
