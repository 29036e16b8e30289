//! Load shedding while the embedded store cannot reclaim space as fast as issuance makes
//! garbage: samples the store and opens or rate-limits the authority's admission gate
//! (`certgate_store::SpaceWatch` holds the rule; ARCHITECTURE.md, Backpressure).

use std::sync::Arc;
use std::time::Duration;

use certgate_metrics::Metrics;
use certgate_store::SledStore;

/// Samples the store's size once a tick and opens or rate-limits the authority's admission
/// gate by the store's shedding rule (`certgate_store::SpaceWatch`).
pub struct SpaceShedder {
    store: SledStore,
    gate: certgate_authority::AdmissionGate,
    metrics: Arc<Metrics>,
    state: std::sync::Mutex<ShedderState>,
}

struct ShedderState {
    watch: certgate_store::SpaceWatch,
    last_warned: Option<std::time::Instant>,
    /// The gate's admissions counter at the previous sample, and when.
    last_admitted: Option<(u64, std::time::Instant)>,
    /// Admissions per second, smoothed over about a second of samples; None before the
    /// second sample.
    admitted_per_second: Option<f64>,
}

/// How often the store is sampled: growth is seen, and the limit cut, within this much
/// issuance.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// The limit changes every few seconds; the warning says so at most this often.
const SHED_WARN_EVERY: Duration = Duration::from_secs(60);

impl SpaceShedder {
    /// A shedder over `store` driving `gate` by `policy`, reporting the sizes to `metrics`.
    pub fn new(
        store: SledStore,
        gate: certgate_authority::AdmissionGate,
        metrics: Arc<Metrics>,
        policy: certgate_store::ShedPolicy,
    ) -> Self {
        Self {
            store,
            gate,
            metrics,
            state: std::sync::Mutex::new(ShedderState {
                watch: certgate_store::SpaceWatch::new(policy),
                last_warned: None,
                last_admitted: None,
                admitted_per_second: None,
            }),
        }
    }

    /// One sample (every [`SAMPLE_EVERY`]), off the reactor (measuring the live data walks every page).
    pub async fn run_once(self: &Arc<Self>) {
        let this = Arc::clone(self);
        if let Err(e) = tokio::task::spawn_blocking(move || this.sample()).await {
            tracing::warn!(error = %e, "sampling the database size failed");
        }
    }

    fn sample(&self) {
        let now = std::time::Instant::now();
        let on_disk = match self.store.size_on_disk() {
            Ok(bytes) => bytes,
            Err(e) => return tracing::warn!(error = %e, "reading the database size failed"),
        };
        // The state is a few counters updated in place; a panic in an earlier sample leaves
        // them usable, and giving up here would freeze the gate at its last limit.
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let live = if state.watch.wants_live(on_disk, now) {
            self.store
                .live_bytes()
                .inspect_err(|e| tracing::warn!(error = %e, "measuring the live data failed"))
                .ok()
        } else {
            None
        };
        let admitted_per_second = state.admitted_rate(self.gate.admitted(), now);
        let admission = state.watch.observe(
            certgate_store::SpaceSample {
                on_disk,
                live,
                admitted_per_second,
            },
            now,
        );
        self.metrics
            .set_store_bytes(certgate_metrics::StoreBytes::OnDisk, on_disk);
        if let Some(live) = live {
            self.metrics.set_store_bytes(certgate_metrics::StoreBytes::Live, live);
        }
        let certgate_store::Admission::Limited(per_second) = admission else {
            self.gate.resume();
            return;
        };
        self.gate.limit(per_second);
        if state
            .last_warned
            .is_none_or(|at| now.saturating_duration_since(at) >= SHED_WARN_EVERY)
        {
            state.last_warned = Some(now);
            tracing::warn!(
                on_disk_bytes = on_disk,
                live_bytes = state.watch.live_bytes(),
                limit_per_second = per_second,
                "the database grows faster than sled reclaims it: limiting new issuance, the rest is shed with Retry-After"
            );
        }
    }
}

impl ShedderState {
    /// Updates and returns the smoothed admission rate from the gate's counter.
    fn admitted_rate(&mut self, admitted: u64, now: std::time::Instant) -> f64 {
        if let Some((before, at)) = self.last_admitted {
            let elapsed = now.saturating_duration_since(at).as_secs_f64();
            if elapsed > 0.0 {
                let rate = admitted.saturating_sub(before) as f64 / elapsed;
                // Each sample weighs a quarter: about a second of memory at 250 ms samples. The
                // first rate is taken whole, so a cut right after start is not cut from zero.
                let smoothed = self.admitted_per_second.map_or(rate, |old| old + (rate - old) / 4.0);
                self.admitted_per_second = Some(smoothed);
            }
        }
        self.last_admitted = Some((admitted, now));
        self.admitted_per_second.unwrap_or(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> ShedderState {
        ShedderState {
            watch: certgate_store::SpaceWatch::new(certgate_store::ShedPolicy::default()),
            last_warned: None,
            last_admitted: None,
            admitted_per_second: None,
        }
    }

    #[test]
    fn the_admission_rate_starts_from_the_first_interval_and_then_smooths() {
        let mut state = state();
        let start = std::time::Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        assert_eq!(state.admitted_rate(1000, at(0)), 0.0, "one reading is no rate");
        assert_eq!(state.admitted_rate(1100, at(250)), 400.0, "taken whole");
        assert_eq!(state.admitted_rate(1100, at(500)), 300.0, "a quarter of the way to 0");
        assert_eq!(state.admitted_rate(1100, at(500)), 300.0, "no time, no change");
    }
}
