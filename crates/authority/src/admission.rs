//! Admission of new issuance: the one place that decides whether a protocol may start an
//! issuance now, so overload is shed before any work or write is done.
//!
//! The gate is opened and closed from outside (the daemon's store monitor closes it while the
//! store cannot reclaim space as fast as issuance makes garbage); the authority only reads it.
//! It does not refuse issuance that was already admitted: an ACME order created before the gate
//! closed still finalizes, so no client is left with a half-done flow.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use certgate_core::{Name, Protocol};

use crate::{Authority, AuthorityError};

/// Whether new issuance is admitted. Cheap to clone; every clone is the same gate.
#[derive(Debug, Clone, Default)]
pub struct AdmissionGate {
    state: Arc<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    paused: AtomicBool,
    retry_after_seconds: AtomicU64,
}

impl AdmissionGate {
    /// A gate that admits everything until [`AdmissionGate::pause`] is called.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses new issuance, telling clients to come back after `retry_after`, rounded up to
    /// whole seconds (at least 1): a client retrying on the dot finds the pause over.
    pub fn pause(&self, retry_after: Duration) {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        self.state.retry_after_seconds.store(seconds.max(1), Ordering::Relaxed);
        self.state.paused.store(true, Ordering::Release);
    }

    /// Admits new issuance again.
    pub fn resume(&self) {
        self.state.paused.store(false, Ordering::Release);
    }

    /// Whether new issuance is refused right now.
    pub fn is_paused(&self) -> bool {
        self.state.paused.load(Ordering::Acquire)
    }

    /// None while open; the seconds a client should wait while paused.
    fn retry_after_seconds(&self) -> Option<u64> {
        self.is_paused()
            .then(|| self.state.retry_after_seconds.load(Ordering::Relaxed).max(1))
    }
}

impl Authority {
    /// Whether a new issuance on this endpoint may start now: protocols ask before creating
    /// anything (an ACME order, an EST or SCEP enrollment). A refusal is
    /// [`AuthorityError::Busy`], counted as `shed` in `certgate_issuance_total`.
    pub fn admit_issuance(&self, protocol: Protocol, endpoint: &Name) -> Result<(), AuthorityError> {
        let Some(retry_after_seconds) = self.admission.retry_after_seconds() else {
            return Ok(());
        };
        if let Some(metrics) = &self.metrics
            && let Some(protocol) = certgate_metrics::Protocol::from_name(protocol.as_str())
        {
            metrics.issuance(endpoint.as_str(), protocol, certgate_metrics::IssuanceResult::Shed);
        }
        Err(AuthorityError::Busy { retry_after_seconds })
    }

    /// The gate [`Authority::admit_issuance`] reads, for whoever decides when to shed.
    pub fn admission(&self) -> &AdmissionGate {
        &self.admission
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_admits_until_paused_and_after_resumed() {
        let gate = AdmissionGate::new();
        assert_eq!(gate.retry_after_seconds(), None);
        gate.pause(Duration::from_secs(7));
        assert!(gate.clone().is_paused(), "clones share the state");
        assert_eq!(gate.retry_after_seconds(), Some(7));
        gate.resume();
        assert_eq!(gate.retry_after_seconds(), None);
    }

    #[test]
    fn a_pause_asks_for_at_least_one_second() {
        let gate = AdmissionGate::new();
        gate.pause(Duration::from_millis(10));
        assert_eq!(gate.retry_after_seconds(), Some(1));
        gate.pause(Duration::from_millis(1500));
        assert_eq!(gate.retry_after_seconds(), Some(2), "rounded up");
    }
}
