//! Settings for the monitor, the notifier and the deployment verifier. Every struct has a
//! `Default`, derives serde with `deny_unknown_fields`, and names its units in field names
//! (`_ms`, `_seconds`, `_hours`, `_days`), as the daemon's TOML config does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use certgate_store::notifications::NotificationEvent;
use serde::{Deserialize, Deserializer, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::LifecycleError;

/// When certificates are due for an alert (see the crate README for the rules).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorSettings {
    /// The renewal window opens at notBefore + this fraction of the lifetime (0 < f < 1).
    /// Default 2/3, as ACME clients (certbot, lego) renew.
    pub renewal_fraction: f64,
    /// `expiring` alerts start this long before notAfter, or at [`Self::expiring_fraction`]
    /// of the lifetime before it if that is shorter. Default 168 (7 days).
    pub expiring_within_hours: u32,
    /// See [`Self::expiring_within_hours`] (0 < f <= 1). Default 0.1: a 24-hour certificate
    /// gets its `expiring` alert 2.4 hours before notAfter, not at issuance.
    pub expiring_fraction: f64,
    /// Only certificates expiring within this many days are scanned, so one scan does not read
    /// the whole inventory. A certificate whose renewal window opens earlier than this before
    /// its expiry is alerted when it enters the horizon. Default 400 (covers lifetimes up to
    /// 1200 days at the default fraction).
    pub scan_horizon_days: u32,
    /// Certificates read per store page (1 to 1000). Default 500.
    pub page_size: usize,
    /// Delivery records and deployment observations are kept this long by
    /// [`crate::ExpiryMonitor::sweep`]. Default 30.
    pub retention_days: u32,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            renewal_fraction: 2.0 / 3.0,
            expiring_within_hours: 7 * 24,
            expiring_fraction: 0.1,
            scan_horizon_days: 400,
            page_size: 500,
            retention_days: 30,
        }
    }
}

impl MonitorSettings {
    /// Refuses fractions out of range and page sizes outside 1..=1000.
    pub fn validate(&self) -> Result<(), LifecycleError> {
        let problem = if !(self.renewal_fraction > 0.0 && self.renewal_fraction < 1.0) {
            "renewal_fraction must be between 0 and 1 (exclusive)"
        } else if !(self.expiring_fraction > 0.0 && self.expiring_fraction <= 1.0) {
            "expiring_fraction must be greater than 0 and at most 1"
        } else if !(1..=1000).contains(&self.page_size) {
            "page_size must be between 1 and 1000"
        } else if self.scan_horizon_days == 0 || self.retention_days == 0 {
            "scan_horizon_days and retention_days must be at least 1"
        } else {
            return Ok(());
        };
        Err(LifecycleError::Settings(problem.to_owned()))
    }

    /// When the renewal window of a certificate valid from `not_before` to `not_after` opens.
    pub fn renewal_window_start(&self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
        not_before + (not_after - not_before) * self.renewal_fraction
    }

    /// When `expiring` alerts start for a certificate valid from `not_before` to `not_after`:
    /// `min(expiring_within, expiring_fraction × lifetime)` before notAfter.
    pub fn expiring_window_start(&self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> OffsetDateTime {
        let within = time::Duration::hours(self.expiring_within_hours.into());
        let fraction = (not_after - not_before) * self.expiring_fraction;
        not_after - within.min(fraction)
    }

    pub(crate) fn scan_horizon(&self) -> time::Duration {
        time::Duration::days(self.scan_horizon_days.into())
    }
}

/// The webhook notifier: where to send, and how hard to try.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifierSettings {
    /// The receivers. Every notification goes to each webhook whose `events` include it.
    pub webhooks: Vec<WebhookConfig>,
    /// Attempts per delivery, the first included (1 to 20). Default 5.
    pub attempts: u32,
    /// The wait after the first failed attempt; each later wait doubles. Default 1000.
    pub base_delay_ms: u64,
    /// The longest wait between two attempts. Default 60000.
    pub max_delay_ms: u64,
    /// Limit for name lookup, TCP connect and (https) TLS handshake. Default 5000.
    pub connect_timeout_ms: u64,
    /// Limit for sending the request and receiving the response head. Default 10000.
    pub response_timeout_ms: u64,
    /// Attempts running at once, over all webhooks (a waiting retry holds no slot). Default 4.
    pub max_concurrent: usize,
    /// Deliveries queued or retrying at most; beyond that a delivery is dropped, counted as a
    /// failure and recorded with attempt 0. Default 1000.
    pub max_queued: usize,
}

impl Default for NotifierSettings {
    fn default() -> Self {
        Self {
            webhooks: Vec::new(),
            attempts: 5,
            base_delay_ms: 1000,
            max_delay_ms: 60_000,
            connect_timeout_ms: 5000,
            response_timeout_ms: 10_000,
            max_concurrent: 4,
            max_queued: 1000,
        }
    }
}

impl NotifierSettings {
    /// The wait after failed attempt number `attempt` (1-based): base × 2^(attempt-1), capped.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u64 << attempt.saturating_sub(1).min(30);
        Duration::from_millis(self.base_delay_ms.saturating_mul(factor).min(self.max_delay_ms))
    }

    pub(crate) fn validate(&self) -> Result<(), LifecycleError> {
        let problem = if !(1..=20).contains(&self.attempts) {
            "attempts must be between 1 and 20"
        } else if self.max_concurrent == 0 || self.max_queued == 0 {
            "max_concurrent and max_queued must be at least 1"
        } else if self.connect_timeout_ms == 0 || self.response_timeout_ms == 0 {
            "connect_timeout_ms and response_timeout_ms must be at least 1"
        } else {
            let mut names = BTreeSet::new();
            match self.webhooks.iter().find(|w| !names.insert(w.name.as_str())) {
                Some(_) => "webhook names must be unique",
                None => return Ok(()),
            }
        };
        Err(LifecycleError::Settings(problem.to_owned()))
    }
}

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// A name for logs, metrics and delivery records (1 to 64 characters).
    pub name: String,
    /// `http://` or `https://` URL the notifications are POSTed to.
    pub url: String,
    /// The HMAC-SHA256 key for `X-Certgate-Signature` (at least 16 bytes; the config's string
    /// as UTF-8 bytes). Never logged.
    pub secret: WebhookSecret,
    /// The event kinds this webhook wants; all when absent.
    #[serde(default)]
    pub events: Option<Vec<NotificationEvent>>,
    /// PEM file of the CA certificates that may sign an https receiver's certificate; the
    /// system's trust store (rustls-native-certs) when absent.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
}

/// A webhook's signing secret: zeroed on drop, redacted in `Debug`, never serialized.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Zeroizing<Vec<u8>>);

impl WebhookSecret {
    /// The secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Self(Zeroizing::new(bytes.into()))
    }

    pub(crate) fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(<redacted>)")
    }
}

impl<'de> Deserialize<'de> for WebhookSecret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Zeroizing::new(String::deserialize(deserializer)?);
        Ok(Self::new(text.as_bytes()))
    }
}

/// Deployment verification: what to check and how long to try.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeploymentSettings {
    /// Configured targets, checked besides those from the inventory.
    pub targets: Vec<DeploymentTarget>,
    /// Also check the DNS names of unexpired, unrevoked, not superseded certificates that
    /// carry the owner label `verify_deployment` with a port number. Default true.
    pub from_inventory: bool,
    /// Limit for name lookup, TCP connect and TLS handshake of one target. Default 5000.
    pub connect_timeout_ms: u64,
    /// Targets checked at once. Default 16.
    pub max_concurrent: usize,
    /// Limit for one whole verification run; targets not checked by then are reported
    /// unreachable (and neither recorded nor alerted). Default 120.
    pub total_timeout_seconds: u64,
    /// How long an `unreachable` or `expired` alert (whose certificate gives no natural end)
    /// holds before it is sent again while the condition lasts. Default 24.
    pub realert_hours: u32,
}

impl Default for DeploymentSettings {
    fn default() -> Self {
        Self {
            targets: Vec::new(),
            from_inventory: true,
            connect_timeout_ms: 5000,
            max_concurrent: 16,
            total_timeout_seconds: 120,
            realert_hours: 24,
        }
    }
}

impl DeploymentSettings {
    pub(crate) fn validate(&self) -> Result<(), LifecycleError> {
        if self.max_concurrent == 0 || self.connect_timeout_ms == 0 || self.total_timeout_seconds == 0 {
            return Err(LifecycleError::Settings(
                "max_concurrent, connect_timeout_ms and total_timeout_seconds must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

/// One TLS endpoint to check.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentTarget {
    /// DNS name or IP address to connect to.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// The TLS server name to send; the host when absent (no SNI for an IP address).
    #[serde(default)]
    pub sni: Option<String>,
    /// Who owns it (e.g. `team = "payments"`); passed on in notifications.
    #[serde(default)]
    pub owner_labels: BTreeMap<String, String>,
}

impl DeploymentTarget {
    /// A target without SNI override or labels.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
            sni: None,
            owner_labels: BTreeMap::new(),
        }
    }

    /// The identity used in alert keys and observations: `host:port` (IPv6 in brackets),
    /// then `/sni` when the SNI name differs from the host.
    pub fn id(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match &self.sni {
            Some(sni) if !sni.eq_ignore_ascii_case(&self.host) => format!("{host}:{}/{sni}", self.port),
            _ => format!("{host}:{}", self.port),
        }
    }

    /// The server name for the handshake.
    pub(crate) fn server_name(&self) -> &str {
        self.sni.as_deref().unwrap_or(&self.host)
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn windows() {
        let nb = datetime!(2030-01-01 0:00 UTC);
        let defaults = MonitorSettings::default();
        // (case, lifetime, want renewal start offset, want expiring start offset) from nb
        let cases = [
            (
                "good_90_days",
                time::Duration::days(90),
                time::Duration::days(60),
                time::Duration::days(83),
            ),
            (
                "good_24_hours_fraction_wins",
                time::Duration::hours(24),
                time::Duration::hours(16),
                time::Duration::minutes(24 * 60 - 144),
            ),
            (
                "good_70_days_equal",
                time::Duration::days(70),
                time::Duration::days(70) * (2.0 / 3.0),
                time::Duration::days(63),
            ),
        ];
        for (case, lifetime, renewal, expiring) in cases {
            let na = nb + lifetime;
            // Fractions of a lifetime go through f64 seconds: compare to the millisecond.
            let close =
                |got: OffsetDateTime, want: OffsetDateTime| (got - want).abs() < time::Duration::milliseconds(1);
            assert!(
                close(defaults.renewal_window_start(nb, na), nb + renewal),
                "case {case}"
            );
            assert!(
                close(defaults.expiring_window_start(nb, na), nb + expiring),
                "case {case}"
            );
        }
    }

    #[test]
    fn settings_validation() {
        let cases = [
            ("good_defaults", MonitorSettings::default(), true),
            (
                "bad_fraction_one",
                MonitorSettings {
                    renewal_fraction: 1.0,
                    ..MonitorSettings::default()
                },
                false,
            ),
            (
                "bad_fraction_nan",
                MonitorSettings {
                    renewal_fraction: f64::NAN,
                    ..MonitorSettings::default()
                },
                false,
            ),
            (
                "bad_expiring_zero",
                MonitorSettings {
                    expiring_fraction: 0.0,
                    ..MonitorSettings::default()
                },
                false,
            ),
            (
                "bad_page_size",
                MonitorSettings {
                    page_size: 0,
                    ..MonitorSettings::default()
                },
                false,
            ),
        ];
        for (case, settings, ok) in cases {
            assert_eq!(settings.validate().is_ok(), ok, "case {case}");
        }
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let settings = NotifierSettings {
            base_delay_ms: 100,
            max_delay_ms: 1000,
            ..NotifierSettings::default()
        };
        let got: Vec<u64> = (1..=6).map(|n| settings.backoff(n).as_millis() as u64).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(settings.backoff(u32::MAX), Duration::from_millis(1000));
    }

    #[test]
    fn target_ids() {
        let with_sni = |host: &str, sni: Option<&str>| DeploymentTarget {
            sni: sni.map(str::to_owned),
            ..DeploymentTarget::new(host, 443)
        };
        let cases = [
            ("name", with_sni("a.example", None), "a.example:443"),
            ("same_sni", with_sni("a.example", Some("A.example")), "a.example:443"),
            (
                "ip_with_sni",
                with_sni("127.0.0.1", Some("a.example")),
                "127.0.0.1:443/a.example",
            ),
            ("ipv6", with_sni("::1", None), "[::1]:443"),
        ];
        for (case, target, want) in cases {
            assert_eq!(target.id(), want, "case {case}");
        }
    }

    #[test]
    fn settings_parse_from_toml_and_secret_is_redacted() {
        let text = r#"
            attempts = 3
            base_delay_ms = 10
            [[webhooks]]
            name = "ops"
            url = "https://hooks.example/certgate"
            secret = "0123456789abcdef0123"
            events = ["renewal_due", "expiring"]
            ca_file = "/etc/certgate/hooks-ca.pem"
        "#;
        let settings: NotifierSettings = toml::from_str(text).unwrap();
        assert_eq!(settings.attempts, 3);
        assert_eq!(settings.max_delay_ms, 60_000, "defaulted");
        let hook = &settings.webhooks[0];
        assert_eq!(hook.secret.expose(), b"0123456789abcdef0123");
        assert_eq!(
            hook.events.as_deref(),
            Some(&[NotificationEvent::RenewalDue, NotificationEvent::Expiring][..])
        );
        assert!(!format!("{settings:?}").contains("0123456789"), "secret redacted");
        let bad = [
            ("bad_unknown_field", "attempt = 3"),
            (
                "bad_unknown_event",
                "[[webhooks]]\nname='a'\nurl='http://a'\nsecret='x'\nevents=['x']",
            ),
        ];
        for (case, text) in bad {
            assert!(toml::from_str::<NotifierSettings>(text).is_err(), "case {case}");
        }
        let monitor: MonitorSettings = toml::from_str("renewal_fraction = 0.5").unwrap();
        assert_eq!(monitor.expiring_within_hours, 168);
        let deployment: DeploymentSettings =
            toml::from_str("[[targets]]\nhost = \"a.example\"\nport = 443\nowner_labels = { team = \"web\" }").unwrap();
        assert_eq!(deployment.targets[0].owner_labels["team"], "web");
    }
}
