//! Admission of new issuance: the one place that decides whether a protocol may start an
//! issuance now, so overload is shed before any work or write is done.
//!
//! The gate is opened, limited to a rate or closed from outside (the daemon's store monitor
//! limits it while the store cannot reclaim space as fast as issuance makes garbage); the
//! authority only reads it.
//! It does not refuse issuance that was already admitted: an ACME order created before the gate
//! closed still finalizes, so no client is left with a half-done flow.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use certgate_core::{Name, Protocol};

use crate::{Authority, AuthorityError};

/// Whether new issuance is admitted. Cheap to clone; every clone is the same gate.
#[derive(Debug, Clone, Default)]
pub struct AdmissionGate {
    state: Arc<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    /// False while open: the common case reads one atomic and takes no lock.
    restricted: AtomicBool,
    mode: Mutex<Mode>,
    admitted: AtomicU64,
}

#[derive(Debug, Default)]
enum Mode {
    #[default]
    Open,
    Paused {
        retry_after_seconds: u64,
    },
    Limited(TokenBucket),
}

/// At most `per_second` admissions a second, with a burst of one second's worth.
#[derive(Debug)]
struct TokenBucket {
    per_second: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    fn burst(&self) -> f64 {
        self.per_second.max(1.0)
    }

    /// Credits the time since the last refill at the current rate. Callers read the clock
    /// before taking the lock, so `now` may be a little older than `refilled`: that interval was
    /// credited already.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.per_second).min(self.burst());
        self.refilled = self.refilled.max(now);
    }

    /// Ok, or the whole seconds until the next token (at least 1).
    fn take(&mut self, now: Instant) -> Result<(), u64> {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(((1.0 - self.tokens) / self.per_second).ceil().max(1.0) as u64)
    }
}

impl AdmissionGate {
    /// A gate that admits everything until it is paused or limited.
    pub fn new() -> Self {
        Self::default()
    }

    /// Refuses new issuance, telling clients to come back after `retry_after`, rounded up to
    /// whole seconds (at least 1): a client retrying on the dot finds the pause over.
    pub fn pause(&self, retry_after: Duration) {
        let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
        self.set(Mode::Paused {
            retry_after_seconds: seconds.max(1),
        });
    }

    /// Admits at most `per_second` new issuances a second (at least one a minute; infinity
    /// lifts the limit); the rest are told when the next one may start. Changing the rate keeps
    /// what was saved up, credited at the old rate until now.
    pub fn limit(&self, per_second: f64) {
        self.limit_at(per_second, Instant::now());
    }

    fn limit_at(&self, per_second: f64, now: Instant) {
        if per_second == f64::INFINITY {
            return self.resume();
        }
        // NaN compares false, so it lands on the floor.
        let per_second = if per_second >= 1.0 / 60.0 {
            per_second
        } else {
            1.0 / 60.0
        };
        let mut mode = self.lock();
        if let Mode::Limited(bucket) = &mut *mode {
            bucket.refill(now);
            bucket.per_second = per_second;
            bucket.tokens = bucket.tokens.min(bucket.burst());
        } else {
            *mode = Mode::Limited(TokenBucket {
                per_second,
                tokens: per_second.max(1.0),
                refilled: now,
            });
        }
        self.state.restricted.store(true, Ordering::Release);
    }

    /// Admits new issuance again, without limit.
    pub fn resume(&self) {
        self.set(Mode::Open);
    }

    /// Whether new issuance is refused outright right now.
    pub fn is_paused(&self) -> bool {
        matches!(*self.lock(), Mode::Paused { .. })
    }

    /// How many new issuances this gate has admitted since it was made.
    pub fn admitted(&self) -> u64 {
        self.state.admitted.load(Ordering::Relaxed)
    }

    /// Ok when a new issuance may start now; otherwise the seconds a client should wait.
    fn try_admit(&self, now: Instant) -> Result<(), u64> {
        if self.state.restricted.load(Ordering::Acquire) {
            match &mut *self.lock() {
                Mode::Open => {}
                Mode::Paused { retry_after_seconds } => return Err(*retry_after_seconds),
                Mode::Limited(bucket) => bucket.take(now)?,
            }
        }
        self.state.admitted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn set(&self, mode: Mode) {
        let restricted = !matches!(mode, Mode::Open);
        let mut guard = self.lock();
        *guard = mode;
        // Under the lock, so a concurrent `limit` cannot be left with the fast path open.
        self.state.restricted.store(restricted, Ordering::Release);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mode> {
        // The mode is replaced whole, so a panic elsewhere cannot leave it half-written.
        self.state.mode.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Authority {
    /// Whether a new issuance on this endpoint may start now: protocols ask before creating
    /// anything (an ACME order, an EST or SCEP enrollment). A refusal is
    /// [`AuthorityError::Busy`], counted as `shed` in `certgate_issuance_total`.
    pub fn admit_issuance(&self, protocol: Protocol, endpoint: &Name) -> Result<(), AuthorityError> {
        let Err(retry_after_seconds) = self.admission.try_admit(Instant::now()) else {
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
        let now = Instant::now();
        assert_eq!(gate.try_admit(now), Ok(()));
        gate.pause(Duration::from_secs(7));
        assert!(gate.clone().is_paused(), "clones share the state");
        assert_eq!(gate.try_admit(now), Err(7));
        gate.resume();
        assert_eq!(gate.try_admit(now), Ok(()));
        assert_eq!(gate.admitted(), 2, "refusals are not counted as admitted");
    }

    #[test]
    fn a_pause_asks_for_at_least_one_second() {
        let gate = AdmissionGate::new();
        gate.pause(Duration::from_millis(10));
        assert_eq!(gate.try_admit(Instant::now()), Err(1));
        gate.pause(Duration::from_millis(1500));
        assert_eq!(gate.try_admit(Instant::now()), Err(2), "rounded up");
    }

    #[test]
    fn a_limit_admits_a_second_of_burst_then_the_rate() {
        let gate = AdmissionGate::new();
        let start = Instant::now();
        gate.limit_at(4.0, start);
        let admitted = (0..10).filter(|_| gate.try_admit(start).is_ok()).count();
        assert_eq!(admitted, 4, "one second's worth at once");
        assert_eq!(gate.try_admit(start), Err(1));
        let later = start + Duration::from_millis(500);
        let admitted = (0..10).filter(|_| gate.try_admit(later).is_ok()).count();
        assert_eq!(admitted, 2, "half a second at 4/s");
        assert!(!gate.is_paused());
    }

    #[test]
    fn a_slow_limit_says_how_long_until_the_next_token() {
        let gate = AdmissionGate::new();
        let start = Instant::now();
        gate.limit_at(0.1, start);
        assert_eq!(gate.try_admit(start), Ok(()), "a burst of at least one");
        assert_eq!(gate.try_admit(start), Err(10));
        assert_eq!(gate.try_admit(start + Duration::from_millis(4500)), Err(6));
        assert_eq!(gate.try_admit(start + Duration::from_millis(10_500)), Ok(()));
    }

    #[test]
    fn a_new_rate_applies_from_the_change_on() {
        let gate = AdmissionGate::new();
        let start = Instant::now();
        gate.limit_at(2.0, start);
        assert!(gate.try_admit(start).is_ok() && gate.try_admit(start).is_ok());
        // Half a second at 2/s is one token; the new rate of 100/s counts only from here.
        let change = start + Duration::from_millis(500);
        gate.limit_at(100.0, change);
        assert_eq!(gate.try_admit(change), Ok(()));
        assert_eq!(gate.try_admit(change), Err(1));
        assert_eq!(gate.try_admit(start), Err(1), "an older clock reading credits nothing");
    }

    #[test]
    fn infinity_lifts_the_limit_and_nan_is_the_floor() {
        let gate = AdmissionGate::new();
        gate.limit(f64::INFINITY);
        assert!(!gate.state.restricted.load(Ordering::Acquire));
        let start = Instant::now();
        gate.limit_at(f64::NAN, start);
        assert_eq!(gate.try_admit(start), Ok(()), "a burst of one");
        assert_eq!(gate.try_admit(start), Err(60), "one a minute");
    }

    #[test]
    fn changing_the_limit_keeps_the_bucket_and_resume_lifts_it() {
        let gate = AdmissionGate::new();
        let start = Instant::now();
        gate.limit_at(2.0, start);
        assert!(gate.try_admit(start).is_ok() && gate.try_admit(start).is_ok());
        gate.limit_at(100.0, start);
        assert_eq!(gate.try_admit(start), Err(1), "a raised limit does not refill at once");
        gate.resume();
        assert!((0..1000).all(|_| gate.try_admit(start).is_ok()));
    }
}
