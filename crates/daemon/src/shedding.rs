//! Load shedding while the embedded store cannot reclaim space as fast as issuance makes
//! garbage: samples the store and opens or closes the authority's admission gate
//! (`certgate_store::SpaceWatch` holds the rule; ARCHITECTURE.md, Backpressure).

use std::sync::Arc;
use std::time::Duration;

use certgate_metrics::Metrics;
use certgate_store::SledStore;

/// Samples the store's size once a tick and opens or closes the authority's admission gate
/// by the store's shedding rule (`certgate_store::SpaceWatch`).
pub struct SpaceShedder {
    store: SledStore,
    gate: certgate_authority::AdmissionGate,
    metrics: Arc<Metrics>,
    state: std::sync::Mutex<ShedderState>,
}

struct ShedderState {
    watch: certgate_store::SpaceWatch,
    last_warned: Option<std::time::Instant>,
}

/// How often the store is sampled: each pause cycle lets the file grow by at most this much
/// issuance before the next sample closes the gate.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);
/// Shedding may flip every few seconds; the warning says so at most this often.
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
        let Ok(mut state) = self.state.lock() else {
            return;
        };
        let live = if state.watch.wants_live(on_disk, now) {
            self.store
                .live_bytes()
                .inspect_err(|e| tracing::warn!(error = %e, "measuring the live data failed"))
                .ok()
        } else {
            None
        };
        let pause = state.watch.observe(certgate_store::SpaceSample { on_disk, live }, now);
        self.metrics
            .set_store_bytes(certgate_metrics::StoreBytes::OnDisk, on_disk);
        if let Some(live) = live {
            self.metrics.set_store_bytes(certgate_metrics::StoreBytes::Live, live);
        }
        let Some(pause) = pause else {
            self.gate.resume();
            return;
        };
        self.gate.pause(pause);
        if state
            .last_warned
            .is_none_or(|at| now.saturating_duration_since(at) >= SHED_WARN_EVERY)
        {
            state.last_warned = Some(now);
            tracing::warn!(
                on_disk_bytes = on_disk,
                live_bytes = state.watch.live_bytes(),
                "the database grows faster than sled reclaims it: shedding new issuance with Retry-After"
            );
        }
    }
}
