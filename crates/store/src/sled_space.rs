//! How the sled file compares with the data it holds, and when issuance should be limited for it.
//!
//! sled 0.34 reclaims space only in its flusher thread, which moves the live pages out of
//! mostly-dead segments a little at a time. Under sustained saturation issuance makes garbage
//! faster than that, and the file grows although the live data does not (BENCHMARKS.md, the
//! unpaced soak). [`SpaceWatch`] is the rule for limiting new issuance while that happens; the
//! daemon samples the store every 250 ms and sets the authority's admission gate by it.
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

/// When new issuance is limited for reclamation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShedPolicy {
    /// Below this file size nothing is shed, whatever the ratio (a small database is cheap to
    /// carry and its ratio is noisy).
    pub above_bytes: u64,
    /// Limit while the file is more than this many times the live data (and grows).
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

/// One sample of the store's size and of the issuance it is admitting.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpaceSample {
    /// Bytes on disk now.
    pub on_disk: u64,
    /// Live bytes, when measured for this sample.
    pub live: Option<u64>,
    /// New issuances admitted per second lately (the starting point of the first limit).
    pub admitted_per_second: f64,
}

/// What new issuance may do after a sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admission {
    /// No limit.
    Open,
    /// At most this many new issuances per second.
    Limited(f64),
}

/// The lowest limit: a trickle keeps every client family making progress while the flusher
/// catches up.
pub const RATE_FLOOR: f64 = 1.0;
/// How fast the limit rises, per second, while the file holds still: slow enough that the
/// flusher's reclaimed segments absorb the rise (from 50/s back to 100/s takes 50 s).
const RATE_RISE_PER_SECOND: f64 = 1.0;
/// After a cut, how long before growth may cut again: the garbage made just before the cut
/// still lands in the next samples, and counting it twice would overshoot.
const CUT_SETTLE: Duration = Duration::from_secs(2);
/// With no growth for this long, the limit is lifted: reclamation has kept up, and the file
/// (which never shrinks) would otherwise keep a past incident's limit forever. Longer than the
/// cycles seen under saturation (a growth every one to two minutes), so it lifts only once the
/// saturation is over.
const QUIET_LIFT: Duration = Duration::from_secs(300);
/// Growth while clients are admitted at under this share of the limit does not come from
/// issuance (the retention sweep's deletions, a lull): cutting would only punish the next
/// clients.
const LULL_SHARE: f64 = 0.25;
/// With no limit yet, growth while fewer issuances than this are admitted a second is not
/// issuance's doing either.
const LULL_RATE: f64 = 4.0;

/// The shedding rule over successive samples: additive increase, multiplicative decrease, the
/// way TCP finds the rate a path sustains. While the file is over the policy's size and ratio,
/// each growth halves the admitted issuance rate (the first time, half of what was admitted
/// lately), and each second without growth raises it by one per second, not past twice what
/// was admitted lately. Issuance then settles just under the rate at which sled's flusher
/// reclaims what issuance (and the retention sweep behind it) turns into garbage, so the file
/// grows only at the top of each climb, by about a segment. After five minutes without growth
/// the limit is lifted. On/off pauses did not settle (BENCHMARKS.md: the file went on growing
/// ~8 MB/min) because between pauses issuance ran at full rate. Under the size or the ratio
/// there is no limit.
#[derive(Debug)]
pub struct SpaceWatch {
    policy: ShedPolicy,
    last: Option<(u64, Instant)>,
    live: Option<(u64, Instant)>,
    limit: Option<f64>,
    last_cut: Option<Instant>,
    last_growth: Option<Instant>,
}

impl SpaceWatch {
    /// A watch with no samples yet.
    pub fn new(policy: ShedPolicy) -> Self {
        Self {
            policy,
            last: None,
            live: None,
            limit: None,
            last_cut: None,
            last_growth: None,
        }
    }

    /// Whether the sample about to be taken at `now` should measure the live data too.
    pub fn wants_live(&self, on_disk: u64, now: Instant) -> bool {
        on_disk > self.policy.above_bytes
            && self
                .live
                .is_none_or(|(_, measured)| now.saturating_duration_since(measured) >= LIVE_REFRESH)
    }

    /// Takes a sample and says what new issuance may do until the next one.
    pub fn observe(&mut self, sample: SpaceSample, now: Instant) -> Admission {
        if let Some(live) = sample.live {
            self.live = Some((live, now));
        }
        let previous = self.last.replace((sample.on_disk, now));
        let over_ratio = self
            .live
            .is_some_and(|(live, _)| sample.on_disk as f64 > self.policy.max_amplification * live as f64);
        if !(sample.on_disk > self.policy.above_bytes && over_ratio) {
            self.limit = None;
            return Admission::Open;
        }
        let Some((last_on_disk, last_at)) = previous else {
            return self.admission();
        };
        let admitted = sample.admitted_per_second;
        if sample.on_disk > last_on_disk {
            self.last_growth = Some(now);
            self.cut(admitted, now);
        } else if self
            .last_growth
            .is_none_or(|grew| now.saturating_duration_since(grew) >= QUIET_LIFT)
        {
            self.limit = None;
        } else if let Some(limit) = self.limit.as_mut() {
            let elapsed = now.saturating_duration_since(last_at).as_secs_f64();
            // Rising past twice what was admitted would only let a later surge through
            // unlimited.
            let ceiling = (2.0 * admitted).max(RATE_FLOOR);
            *limit = (*limit + RATE_RISE_PER_SECOND * elapsed).min(ceiling.max(*limit));
        }
        self.admission()
    }

    /// Halves the limit for a growth, unless one was cut just now or the growth is not
    /// issuance's doing.
    fn cut(&mut self, admitted: f64, now: Instant) {
        let settled = self
            .last_cut
            .is_none_or(|cut| now.saturating_duration_since(cut) >= CUT_SETTLE);
        let lull = match self.limit {
            Some(limit) => admitted < LULL_SHARE * limit,
            None => admitted < LULL_RATE,
        };
        if !settled || lull {
            return;
        }
        let from = self.limit.map_or(admitted, |limit| limit.min(admitted));
        self.limit = Some((from / 2.0).max(RATE_FLOOR));
        self.last_cut = Some(now);
    }

    fn admission(&self) -> Admission {
        self.limit.map_or(Admission::Open, Admission::Limited)
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
            admitted_per_second: 0.0,
        }
    }

    /// Feeds `(milliseconds since start, MiB on disk, live MiB measured then, admitted/s)` and
    /// returns each verdict.
    fn run(samples: &[(u64, u64, Option<u64>, f64)]) -> Vec<Admission> {
        let start = Instant::now();
        let mut watch = SpaceWatch::new(policy());
        samples
            .iter()
            .map(|&(at, on_disk, live, admitted_per_second)| {
                let sample = SpaceSample {
                    admitted_per_second,
                    ..sample(on_disk, live)
                };
                watch.observe(sample, start + Duration::from_millis(at))
            })
            .collect()
    }

    use Admission::{Limited, Open};

    #[test]
    fn limits_only_when_over_size_and_ratio_and_growing() {
        let got = run(&[
            (0, 50, None, 400.0),        // first sample: nothing to compare
            (250, 90, Some(10), 400.0),  // growing, ratio 9, but under the size floor
            (500, 200, Some(60), 400.0), // over the floor, growing, but ratio 3.3: the data grew
            (750, 200, Some(10), 400.0), // ratio 20, but not growing: reclamation keeps up
            (1000, 201, None, 400.0),    // growing: half of what was admitted
        ]);
        assert_eq!(got, [Open, Open, Open, Open, Limited(200.0)]);
    }

    #[test]
    fn without_a_live_figure_nothing_is_limited() {
        assert_eq!(run(&[(0, 500, None, 400.0), (250, 600, None, 400.0)]), [Open, Open]);
    }

    #[test]
    fn growth_halves_the_limit_once_per_settling_time_down_to_the_floor() {
        let got = run(&[
            (0, 120, Some(10), 400.0),
            (250, 121, None, 400.0),  // cut to 200
            (500, 122, None, 200.0),  // still settling: no second cut for the same garbage
            (2250, 123, None, 200.0), // settled: 100
            (4250, 124, None, 100.0), // 50
            (6250, 125, None, 50.0),  // 25
        ]);
        assert_eq!(
            got,
            [
                Open,
                Limited(200.0),
                Limited(200.0),
                Limited(100.0),
                Limited(50.0),
                Limited(25.0)
            ]
        );
        let mut samples = vec![(0, 120, Some(10), 400.0)];
        samples.extend((1..=20).map(|i| (i * 2000, 120 + i, None, 4.0)));
        assert_eq!(
            run(&samples).last(),
            Some(&Limited(RATE_FLOOR)),
            "never below the floor"
        );
    }

    #[test]
    fn the_limit_rises_by_one_per_second_while_the_file_holds_still() {
        let got = run(&[
            (0, 120, Some(10), 400.0),
            (250, 121, None, 400.0),    // 200
            (10_250, 121, None, 200.0), // ten quiet seconds: 210
            (10_500, 121, None, 210.0), // a quarter second: 210.25
        ]);
        assert_eq!(got[1..], [Limited(200.0), Limited(210.0), Limited(210.25)]);
    }

    #[test]
    fn the_limit_does_not_rise_past_twice_what_clients_ask_for() {
        let got = run(&[
            (0, 120, Some(10), 400.0),
            (250, 121, None, 400.0),     // 200
            (100_250, 121, None, 30.0),  // demand fell: no rise to 300
            (200_250, 121, None, 0.0),   // nobody asks: no rise, and a lull is no cut either
            (200_500, 122, None, 400.0), // a surge that grows the file: cut from 200
        ]);
        assert_eq!(
            got[1..],
            [Limited(200.0), Limited(200.0), Limited(200.0), Limited(100.0)]
        );
    }

    #[test]
    fn growth_in_a_lull_is_not_issuance_and_cuts_nothing() {
        let got = run(&[
            (0, 120, Some(10), 2.0),
            (250, 121, None, 2.0), // no limit, 2/s admitted: the sweep's churn, not a cut
            (500, 121, None, 400.0),
            (750, 122, None, 400.0), // 200
            (3000, 123, None, 20.0), // clients went quiet: under a quarter of the limit
        ]);
        assert_eq!(got, [Open, Open, Open, Limited(200.0), Limited(200.0)]);
    }

    #[test]
    fn five_quiet_minutes_lift_the_limit() {
        let got = run(&[
            (0, 120, Some(10), 400.0),
            (250, 121, None, 400.0),     // 200
            (299_000, 121, None, 200.0), // quiet, not yet five minutes: risen to the ceiling
            (300_250, 121, None, 200.0), // five minutes since the growth
            (300_500, 122, None, 600.0), // a new growth starts from what is admitted now
        ]);
        assert_eq!(got, [Open, Limited(200.0), Limited(400.0), Open, Limited(300.0)]);
    }

    #[test]
    fn back_under_the_ratio_the_limit_is_lifted() {
        let got = run(&[
            (0, 120, Some(10), 400.0),
            (250, 121, None, 400.0),
            (500, 122, Some(100), 200.0), // the live data caught up: ratio 1.2
        ]);
        assert_eq!(got, [Open, Limited(200.0), Open]);
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
