//! How the sled file compares with the data it holds, and when issuance should wait for it.
//!
//! sled 0.34 reclaims space only in its flusher thread, which moves the live pages out of
//! mostly-dead segments a little at a time. Under sustained saturation issuance makes garbage
//! faster than that, and the file grows although the live data does not (BENCHMARKS.md, the
//! unpaced soak). [`SpaceWatch`] is the rule for shedding new issuance while that happens; the
//! daemon samples the store once a second and opens or closes the authority's admission gate.
//! It does not compact the file: sled has no such operation, and freed segments are reused
//! rather than returned to the file system, so the file stays at its largest size.

use std::time::{Duration, Instant};

use crate::{SledStore, StoreError};

/// How stale the live-data figure may get before it is measured again; measuring walks every
/// page, so it is done only while the file is over [`ShedPolicy::above_bytes`].
const LIVE_REFRESH: Duration = Duration::from_secs(30);

impl SledStore {
    /// Bytes of the database on disk (the file and sled's blob files). Cheap: file metadata.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        Ok(self.db().size_on_disk()?)
    }

    /// Bytes of live data: the logical size of every page. Walks every page (reading those not
    /// cached), so call it off the reactor and rarely.
    pub fn live_bytes(&self) -> Result<u64, StoreError> {
        let on_disk = self.db().size_on_disk()?;
        // `space_amplification` is sled's own walk (on disk / logical); sled 0.34 has no public
        // call for the logical size itself.
        let amplification = self.db().space_amplification()?;
        if !amplification.is_finite() || amplification <= 0.0 {
            return Ok(on_disk);
        }
        Ok((on_disk as f64 / amplification) as u64)
    }
}

/// When new issuance waits for reclamation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShedPolicy {
    /// Below this file size nothing is shed, whatever the ratio (a small database is cheap to
    /// carry and its ratio is noisy).
    pub above_bytes: u64,
    /// Shed while the file is more than this many times the live data and still growing.
    pub max_amplification: f64,
}

impl Default for ShedPolicy {
    fn default() -> Self {
        Self {
            above_bytes: 256 * 1024 * 1024,
            max_amplification: 4.0,
        }
    }
}

/// One sample of the store's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpaceSample {
    /// Bytes on disk now.
    pub on_disk: u64,
    /// Live bytes, when measured for this sample.
    pub live: Option<u64>,
}

/// The shedding rule over successive samples: shed while the file is over the policy's size
/// and ratio *and* grew since the previous sample. Reclamation that keeps up (freed segments
/// reused, so the file stops growing) lifts the shedding at the next sample, so issuance runs
/// at the rate reclamation sustains instead of stopping until the file shrinks, which it never
/// does.
#[derive(Debug)]
pub struct SpaceWatch {
    policy: ShedPolicy,
    last_on_disk: Option<u64>,
    live: Option<(u64, Instant)>,
}

impl SpaceWatch {
    /// A watch with no samples yet.
    pub fn new(policy: ShedPolicy) -> Self {
        Self {
            policy,
            last_on_disk: None,
            live: None,
        }
    }

    /// Whether the sample about to be taken at `now` should measure the live data too.
    pub fn wants_live(&self, on_disk: u64, now: Instant) -> bool {
        on_disk > self.policy.above_bytes
            && self
                .live
                .is_none_or(|(_, measured)| now.saturating_duration_since(measured) >= LIVE_REFRESH)
    }

    /// Takes a sample; true when new issuance should be shed until the next one.
    pub fn observe(&mut self, sample: SpaceSample, now: Instant) -> bool {
        if let Some(live) = sample.live {
            self.live = Some((live, now));
        }
        let grew = self.last_on_disk.is_some_and(|last| sample.on_disk > last);
        self.last_on_disk = Some(sample.on_disk);
        let over_ratio = self
            .live
            .is_some_and(|(live, _)| sample.on_disk as f64 > self.policy.max_amplification * live as f64);
        sample.on_disk > self.policy.above_bytes && over_ratio && grew
    }

    /// The live bytes last measured.
    pub fn live_bytes(&self) -> Option<u64> {
        self.live.map(|(live, _)| live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn policy() -> ShedPolicy {
        ShedPolicy {
            above_bytes: 100 * MIB,
            max_amplification: 4.0,
        }
    }

    fn sample(on_disk_mib: u64, live_mib: Option<u64>) -> SpaceSample {
        SpaceSample {
            on_disk: on_disk_mib * MIB,
            live: live_mib.map(|l| l * MIB),
        }
    }

    #[test]
    fn sheds_only_while_over_size_and_ratio_and_growing() {
        let now = Instant::now();
        // (on disk MiB, live MiB measured now, shed?)
        let cases = [
            (50, None, false),      // first sample: nothing to compare
            (90, Some(10), false),  // growing, ratio 9, but under the size floor
            (120, Some(10), true),  // over the floor, ratio 12, growing
            (120, None, false),     // not growing: reclamation keeps up
            (121, None, true),      // growing again
            (200, Some(60), false), // growing, but ratio 3.3: the data itself grew
            (260, None, true),      // ratio 4.3 on the last live figure, growing
            (250, None, false),     // shrank
        ];
        let mut watch = SpaceWatch::new(policy());
        for (i, (on_disk, live, want)) in cases.into_iter().enumerate() {
            assert_eq!(
                watch.observe(sample(on_disk, live), now),
                want,
                "case {i}: {on_disk} MiB on disk"
            );
        }
    }

    #[test]
    fn without_a_live_figure_nothing_is_shed() {
        let now = Instant::now();
        let mut watch = SpaceWatch::new(policy());
        assert!(!watch.observe(sample(500, None), now));
        assert!(!watch.observe(sample(600, None), now));
    }

    #[test]
    fn the_live_figure_is_measured_only_over_the_floor_and_when_stale() {
        let start = Instant::now();
        let mut watch = SpaceWatch::new(policy());
        assert!(!watch.wants_live(99 * MIB, start), "under the floor: no page walk");
        assert!(watch.wants_live(101 * MIB, start), "over it, never measured");
        watch.observe(sample(101, Some(30)), start);
        assert!(!watch.wants_live(101 * MIB, start + Duration::from_secs(29)));
        assert!(watch.wants_live(101 * MIB, start + LIVE_REFRESH));
        assert_eq!(watch.live_bytes(), Some(30 * MIB));
    }

    #[test]
    fn live_bytes_count_what_the_store_holds_and_not_more_than_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let tree = store.db().open_tree("space_test").unwrap();
        let value = vec![7u8; 1000];
        for i in 0u32..8000 {
            tree.insert(i.to_be_bytes(), value.as_slice()).unwrap();
        }
        store.db().flush().unwrap();
        let (live, on_disk) = (store.live_bytes().unwrap(), store.size_on_disk().unwrap());
        assert!(live >= 8_000_000, "8 MB inserted, {live} bytes live");
        assert!(live <= on_disk, "{live} live in a {on_disk}-byte file");
    }
}
