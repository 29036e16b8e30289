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

/// The shortest pause: long enough for the flusher to free a few segments.
const HOLD_MIN: Duration = Duration::from_secs(2);
/// The longest pause a client is asked to wait.
const HOLD_MAX: Duration = Duration::from_secs(60);

/// The shedding rule over successive samples. When the file is over the policy's size and
/// ratio and grew since the previous sample, new issuance pauses for a while, so the flusher
/// reclaims segments that the next issuance reuses instead of growing the file. A pause ends on
/// its own (the file never shrinks, so waiting for it to would stop issuance for good); if the
/// file grows again soon after, the next pause is twice as long (up to a minute), and after a
/// quiet stretch it is back to two seconds. Issuance then runs at about the rate reclamation
/// sustains, and each cycle lets the file grow by at most one sample interval of issuance.
#[derive(Debug)]
pub struct SpaceWatch {
    policy: ShedPolicy,
    last_on_disk: Option<u64>,
    live: Option<(u64, Instant)>,
    paused_until: Option<Instant>,
    resumed_at: Option<Instant>,
    hold: Duration,
}

impl SpaceWatch {
    /// A watch with no samples yet.
    pub fn new(policy: ShedPolicy) -> Self {
        Self {
            policy,
            last_on_disk: None,
            live: None,
            paused_until: None,
            resumed_at: None,
            hold: HOLD_MIN,
        }
    }

    /// Whether the sample about to be taken at `now` should measure the live data too.
    pub fn wants_live(&self, on_disk: u64, now: Instant) -> bool {
        on_disk > self.policy.above_bytes
            && self
                .live
                .is_none_or(|(_, measured)| now.saturating_duration_since(measured) >= LIVE_REFRESH)
    }

    /// Takes a sample; `Some(wait)` while new issuance should be shed, `wait` being what is
    /// left of the pause (for `Retry-After`).
    pub fn observe(&mut self, sample: SpaceSample, now: Instant) -> Option<Duration> {
        if let Some(live) = sample.live {
            self.live = Some((live, now));
        }
        let grew = self.last_on_disk.is_some_and(|last| sample.on_disk > last);
        self.last_on_disk = Some(sample.on_disk);
        if let Some(until) = self.paused_until {
            if now < until {
                return Some(until - now);
            }
            self.paused_until = None;
            self.resumed_at = Some(until);
        }
        let over_ratio = self
            .live
            .is_some_and(|(live, _)| sample.on_disk as f64 > self.policy.max_amplification * live as f64);
        if !(sample.on_disk > self.policy.above_bytes && over_ratio && grew) {
            return None;
        }
        let recurred = self
            .resumed_at
            .is_some_and(|resumed| now.saturating_duration_since(resumed) < self.hold * 2);
        self.hold = if recurred {
            (self.hold * 2).min(HOLD_MAX)
        } else {
            HOLD_MIN
        };
        self.paused_until = Some(now + self.hold);
        Some(self.hold)
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

    /// Samples `(seconds since start, MiB on disk, live MiB measured then)` against the
    /// expected verdict (seconds of pause left, or None).
    fn run(samples: &[(u64, u64, Option<u64>, Option<u64>)]) {
        let start = Instant::now();
        let mut watch = SpaceWatch::new(policy());
        for (i, &(at, on_disk, live, want)) in samples.iter().enumerate() {
            let got = watch.observe(sample(on_disk, live), start + Duration::from_secs(at));
            assert_eq!(got.map(|d| d.as_secs()), want, "sample {i}: t={at}s, {on_disk} MiB");
        }
    }

    #[test]
    fn sheds_only_when_over_size_and_ratio_and_growing() {
        run(&[
            (0, 50, None, None),      // first sample: nothing to compare
            (1, 90, Some(10), None),  // growing, ratio 9, but under the size floor
            (2, 200, Some(60), None), // over the floor, growing, but ratio 3.3: the data grew
            (3, 200, Some(10), None), // ratio 20, but not growing: reclamation keeps up
            (4, 201, None, Some(2)),  // growing: a pause of the minimum
        ]);
    }

    #[test]
    fn without_a_live_figure_nothing_is_shed() {
        run(&[(0, 500, None, None), (1, 600, None, None)]);
    }

    #[test]
    fn a_pause_holds_whatever_the_samples_then_ends_on_its_own() {
        run(&[
            (0, 120, Some(10), None),
            (1, 121, None, Some(2)),
            (2, 130, None, Some(1)), // still paused, growth or not
            (3, 130, None, None),    // over: not growing, admitted
            (4, 130, None, None),
        ]);
    }

    #[test]
    fn pauses_double_while_growth_recurs_and_reset_after_a_quiet_stretch() {
        run(&[
            (0, 120, Some(10), None),
            (1, 121, None, Some(2)),   // pause 2 s, until t=3
            (3, 122, None, Some(4)),   // grew again right after: 4 s, until t=7
            (7, 123, None, Some(8)),   // 8 s, until t=15
            (15, 124, None, Some(16)), // until t=31
            (31, 125, None, Some(32)), // until t=63
            (63, 126, None, Some(60)), // capped at a minute, until t=123
            (123, 126, None, None),    // quiet
            (400, 127, None, Some(2)), // long after: back to the minimum
        ]);
    }

    #[test]
    fn the_live_figure_is_measured_only_over_the_floor_and_when_stale() {
        let start = Instant::now();
        let mut watch = SpaceWatch::new(policy());
        assert!(!watch.wants_live(99 * MIB, start), "under the floor: no page walk");
        assert!(watch.wants_live(101 * MIB, start), "over it, never measured");
        let _ = watch.observe(sample(101, Some(30)), start);
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
