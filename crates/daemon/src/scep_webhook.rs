//! SCEP challenge webhooks over certgate-lifecycle's outbound client, the workspace's one:
//! `http://` or `https://` (the receiver's certificate verified against `webhook_ca_file` or
//! the system's trust store), each request signed with `X-Certgate-Signature` as lifecycle
//! webhooks are, with event `scep_challenge` and a fresh delivery id.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use certgate_core::Clock;
use certgate_lifecycle::{OutboundWebhook, delivery_id};
use certgate_scep::{ChallengeWebhook, ScepError, WebhookRequest};
use hyper::body::Bytes;

/// The `X-Certgate-Event` of a challenge question.
pub const SCEP_CHALLENGE_EVENT: &str = "scep_challenge";

/// A SCEP endpoint's challenge webhook: 2xx allows, any other status refuses, and no answer
/// within the timeout (or a receiver whose certificate does not verify) is an error, which
/// the SCEP server answers with FAILURE.
#[derive(Debug)]
pub struct ScepChallengeWebhook {
    outbound: OutboundWebhook,
    timeout: Duration,
    clock: Arc<dyn Clock>,
}

impl ScepChallengeWebhook {
    /// Asks `outbound`, each question bounded by `timeout` in all, signed at `clock`'s time.
    pub fn new(outbound: OutboundWebhook, timeout: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            outbound,
            timeout,
            clock,
        }
    }
}

#[async_trait]
impl ChallengeWebhook for ScepChallengeWebhook {
    async fn allows(&self, request: &WebhookRequest<'_>) -> Result<bool, ScepError> {
        let body = request.to_json()?;
        let id = delivery_id();
        let timestamp = self.clock.now().unix_timestamp();
        let post = self
            .outbound
            .post_json(SCEP_CHALLENGE_EVENT, &id, timestamp, Bytes::copy_from_slice(&body));
        match tokio::time::timeout(self.timeout, post).await {
            Err(_) => Err(ScepError::Webhook(format!(
                "{}: no answer within {}s",
                self.outbound.name(),
                self.timeout.as_secs()
            ))),
            Ok(Ok(_)) => Ok(true),
            Ok(Err(e)) if e.status.is_some() => {
                tracing::debug!(target: "certgate::scep", webhook = self.outbound.name(), delivery = %id,
                    status = e.status, "challenge webhook refused");
                Ok(false)
            }
            Ok(Err(e)) => Err(ScepError::Webhook(format!("{}: {e}", self.outbound.name()))),
        }
    }
}
