//! Webhook deliveries: signed JSON POSTs (through [`crate::OutboundWebhook`]) with retries, in
//! spawned tasks.
//!
//! Signature scheme (as Stripe's): `X-Certgate-Signature: t=<unix seconds>,v1=<hex>`, where
//! `<hex>` is the lower-case hex HMAC-SHA256, keyed with the webhook's secret, of the ASCII
//! timestamp, a `.`, and the raw request body. `t` is taken at each attempt, so a receiver can
//! refuse stale or replayed requests (for example, older than five minutes) besides checking the MAC.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_lc_rs::hmac;
use certgate_core::{Clock, Serial};
use certgate_store::notifications::{DeliveryOutcome, DeliveryRecord, NotificationEvent, NotificationStore};
use hyper::body::Bytes;
use rustls::RootCertStore;
use tokio::sync::{Semaphore, watch};

use crate::net::ExchangeError;
use crate::outbound::{OutboundWebhook, WebhookTimeouts};
use crate::{LifecycleError, Notification, NotifierSettings, WebhookConfig};

/// The signature header (`t=<unix>,v1=<hex hmac-sha256 over "<t>.<body>">`).
pub const SIGNATURE_HEADER: &str = "x-certgate-signature";
/// The event kind header.
pub(crate) const EVENT_HEADER: &str = "x-certgate-event";
/// The delivery id header (the same for every attempt of one delivery: receivers dedupe on it).
pub(crate) const DELIVERY_HEADER: &str = "x-certgate-delivery";

/// The `X-Certgate-Signature` value for `body` sent at `timestamp` (unix seconds).
pub fn sign_payload(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), timestamp, body)
}

pub(crate) fn sign(key: &hmac::Key, timestamp: i64, body: &[u8]) -> String {
    let t = timestamp.to_string();
    let mut context = hmac::Context::with_key(key);
    context.update(t.as_bytes());
    context.update(b".");
    context.update(body);
    format!("t={t},v1={}", hex::encode(context.sign().as_ref()))
}

/// Sends notifications to the configured webhooks. Cheap to clone; clones share queues and
/// counters.
#[derive(Debug, Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    webhooks: Vec<Arc<Webhook>>,
    settings: NotifierSettings,
    notifications: Arc<dyn NotificationStore>,
    clock: Arc<dyn Clock>,
    /// Attempts in progress (a retry waiting out its backoff holds none).
    permits: Semaphore,
    /// Deliveries queued, in progress or waiting to retry.
    in_flight: watch::Sender<usize>,
    delivered: AtomicU64,
    failed_attempts: AtomicU64,
}

struct Webhook {
    /// The receiver (its name is the webhook's).
    outbound: OutboundWebhook,
    events: Option<BTreeSet<NotificationEvent>>,
    /// Deliveries to this webhook given up.
    failures: AtomicU64,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("outbound", &self.outbound)
            .field("events", &self.events)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    fn new(
        config: &WebhookConfig,
        timeouts: WebhookTimeouts,
        system_roots: &mut Option<RootCertStore>,
    ) -> Result<Self, LifecycleError> {
        let outbound = OutboundWebhook::with_roots(
            &config.name,
            &config.url,
            &config.secret,
            config.ca_file.as_deref(),
            timeouts,
            system_roots,
        )?;
        Ok(Self {
            outbound,
            events: config.events.as_ref().map(|e| e.iter().copied().collect()),
            failures: AtomicU64::new(0),
        })
    }

    fn name(&self) -> &str {
        self.outbound.name()
    }

    fn wants(&self, event: NotificationEvent) -> bool {
        self.events.as_ref().is_none_or(|events| events.contains(&event))
    }
}

/// One notification on its way to one webhook.
struct Delivery {
    id: String,
    event: NotificationEvent,
    alert_key: String,
    serial: Option<Serial>,
    body: Bytes,
}

/// Counts a delivery out of the in-flight gauge however its task ends.
struct InFlight(Arc<Inner>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl Notifier {
    /// Checks the webhooks (URL, secret, TLS roots: a CA file, else the system's trust
    /// store, loaded once) and the settings.
    pub fn new(
        settings: NotifierSettings,
        notifications: Arc<dyn NotificationStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, LifecycleError> {
        settings.validate()?;
        let mut system_roots = None;
        let timeouts = WebhookTimeouts {
            connect: Duration::from_millis(settings.connect_timeout_ms),
            response: Duration::from_millis(settings.response_timeout_ms),
        };
        let webhooks = settings
            .webhooks
            .iter()
            .map(|config| Webhook::new(config, timeouts, &mut system_roots).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            inner: Arc::new(Inner {
                webhooks,
                permits: Semaphore::new(settings.max_concurrent),
                settings,
                notifications,
                clock,
                in_flight: watch::Sender::new(0),
                delivered: AtomicU64::new(0),
                failed_attempts: AtomicU64::new(0),
            }),
        })
    }

    /// Queues `notification` for every webhook that wants its event kind and returns how many
    /// deliveries were queued. Returns before anything is sent: each delivery runs in its own
    /// task (call from within a Tokio runtime), so a slow receiver never holds the caller up.
    pub async fn notify(&self, notification: &Notification) -> usize {
        let inner = &self.inner;
        let body = match serde_json::to_vec(notification) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                tracing::error!(target: "certgate::notify", alert_key = %notification.alert_key, error = %e,
                    "notification does not serialize");
                return 0;
            }
        };
        let mut queued = 0;
        for webhook in inner.webhooks.iter().filter(|w| w.wants(notification.event)) {
            let delivery = Delivery {
                id: delivery_id(),
                event: notification.event,
                alert_key: notification.alert_key.clone(),
                serial: notification.serial().cloned(),
                body: body.clone(),
            };
            let max = inner.settings.max_queued;
            let admitted = inner.in_flight.send_if_modified(|n| {
                let room = *n < max;
                if room {
                    *n += 1;
                }
                room
            });
            if !admitted {
                webhook.failures.fetch_add(1, Ordering::Relaxed);
                let error = format!("not attempted: {max} deliveries already queued");
                tracing::error!(target: "certgate::notify", webhook = %webhook.name(), event = %delivery.event,
                    alert_key = %delivery.alert_key, delivery = %delivery.id, "{error}");
                inner
                    .record(webhook, &delivery, 0, DeliveryOutcome::Failed { status: None, error })
                    .await;
                continue;
            }
            let guard = InFlight(Arc::clone(inner));
            tokio::spawn(Arc::clone(inner).deliver(Arc::clone(webhook), delivery, guard));
            queued += 1;
        }
        queued
    }

    /// Waits until no delivery is queued, in progress or waiting to retry (tests, shutdown:
    /// bound it with a timeout).
    pub async fn wait_idle(&self) {
        let mut idle = self.inner.in_flight.subscribe();
        // The sender lives in `inner`, which `self` keeps alive: this cannot fail.
        let _ = idle.wait_for(|n| *n == 0).await;
    }

    /// Deliveries accepted by a receiver (a counter).
    pub fn delivered_total(&self) -> u64 {
        self.inner.delivered.load(Ordering::Relaxed)
    }

    /// Deliveries given up: every attempt failed, or the queue was full (a counter).
    pub fn failures_total(&self) -> u64 {
        self.failures_by_webhook().map(|(_, failures)| failures).sum()
    }

    /// [`Notifier::failures_total`] by webhook name, in configuration order.
    pub fn failures_by_webhook(&self) -> impl Iterator<Item = (&str, u64)> {
        self.inner
            .webhooks
            .iter()
            .map(|w| (w.name(), w.failures.load(Ordering::Relaxed)))
    }

    /// Attempts that failed, retried or not (a counter).
    pub fn failed_attempts_total(&self) -> u64 {
        self.inner.failed_attempts.load(Ordering::Relaxed)
    }

    /// Deliveries queued, in progress or waiting to retry (a gauge).
    pub fn queued(&self) -> usize {
        *self.inner.in_flight.borrow()
    }

    /// The configured webhooks' names.
    pub fn webhooks(&self) -> impl Iterator<Item = &str> {
        self.inner.webhooks.iter().map(|w| w.name())
    }
}

impl Inner {
    async fn deliver(self: Arc<Self>, webhook: Arc<Webhook>, delivery: Delivery, _in_flight: InFlight) {
        let attempts = self.settings.attempts;
        for attempt in 1..=attempts {
            let result = {
                // The semaphore is never closed; should it be, give up quietly.
                let Ok(_permit) = self.permits.acquire().await else {
                    return;
                };
                self.attempt(&webhook, &delivery).await
            };
            let outcome = match &result {
                Ok(status) => DeliveryOutcome::Delivered { status: *status },
                Err(e) => DeliveryOutcome::Failed {
                    status: e.status,
                    error: e.error.clone(),
                },
            };
            self.record(&webhook, &delivery, attempt, outcome).await;
            match result {
                Ok(status) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(target: "certgate::notify", webhook = %webhook.name(), event = %delivery.event,
                        alert_key = %delivery.alert_key, delivery = %delivery.id, attempt, status,
                        "notification delivered");
                    return;
                }
                Err(e) => {
                    self.failed_attempts.fetch_add(1, Ordering::Relaxed);
                    if attempt == attempts {
                        webhook.failures.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(target: "certgate::notify", webhook = %webhook.name(), event = %delivery.event,
                            alert_key = %delivery.alert_key, delivery = %delivery.id, attempt, status = ?e.status,
                            error = %e.error, "notification not delivered; giving up");
                        return;
                    }
                    let wait = self.settings.backoff(attempt);
                    tracing::warn!(target: "certgate::notify", webhook = %webhook.name(), event = %delivery.event,
                        alert_key = %delivery.alert_key, delivery = %delivery.id, attempt, status = ?e.status,
                        error = %e.error, retry_in_ms = wait.as_millis() as u64, "notification attempt failed");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn attempt(&self, webhook: &Webhook, delivery: &Delivery) -> Result<u16, ExchangeError> {
        let timestamp = self.clock.now().unix_timestamp();
        webhook
            .outbound
            .post_json(delivery.event.as_str(), &delivery.id, timestamp, delivery.body.clone())
            .await
    }

    async fn record(&self, webhook: &Webhook, delivery: &Delivery, attempt: u32, outcome: DeliveryOutcome) {
        let record = DeliveryRecord {
            id: delivery.id.clone(),
            webhook: webhook.name().to_owned(),
            event: delivery.event,
            alert_key: delivery.alert_key.clone(),
            serial: delivery.serial.clone(),
            attempt,
            outcome,
            at: self.clock.now(),
        };
        if let Err(e) = self.notifications.record_delivery(&record).await {
            tracing::warn!(target: "certgate::notify", webhook = %webhook.name(), delivery = %delivery.id, attempt,
                error = %e, "cannot record the delivery attempt");
        }
    }
}

/// A fresh delivery id (`X-Certgate-Delivery`): 128 random bits in hex; a counter if the
/// system's random source fails (ids only need to be unique per process and time, not secret).
pub fn delivery_id() -> String {
    static FALLBACK: AtomicU64 = AtomicU64::new(0);
    let mut random = [0u8; 16];
    match aws_lc_rs::rand::fill(&mut random) {
        Ok(()) => hex::encode(random),
        Err(_) => format!(
            "{:x}-{:x}",
            std::process::id(),
            FALLBACK.fetch_add(1, Ordering::Relaxed)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_a_known_vector() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'whsec_0123456789abcdef'
        let got = sign_payload(b"whsec_0123456789abcdef", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            got,
            "t=1700000000,v1=9f5e37cdc7ea587c7c02062d93283cad000d66a831b2a1676418696db47ed6c2"
        );
    }

    #[test]
    fn delivery_ids_are_valid_and_distinct() {
        let (a, b) = (delivery_id(), delivery_id());
        assert_ne!(a, b);
        assert!(certgate_store::notifications::valid_delivery_id(&a));
    }
}
