//! In-memory rate limits: a count per key over fixed windows, sharded so that no single lock
//! sits on the request path. A restart forgets the counts, which errs on the client's side.

use std::collections::HashMap;
use std::sync::Mutex;

use time::{Duration, OffsetDateTime};

const SHARDS: usize = 16;
/// Keys kept per shard before expired windows are dropped.
const SWEEP_AT: usize = 4096;

/// Counts events per key (an account id or a client IP) over fixed windows.
#[derive(Debug)]
pub struct Limiter {
    window: Duration,
    shards: Vec<Mutex<HashMap<String, (OffsetDateTime, u32)>>>,
}

impl Limiter {
    /// Windows of `window`.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    fn shard(&self, key: &str) -> &Mutex<HashMap<String, (OffsetDateTime, u32)>> {
        let hash = key
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.shards[hash % SHARDS]
    }

    /// When `key` has `limit` or more events in its current window: how long until it ends.
    /// For limits counted after the fact (failed validations); a limit on something the
    /// request itself creates uses [`Limiter::take`], which cannot be raced past.
    pub fn exceeded(&self, key: &str, limit: Option<u32>, now: OffsetDateTime) -> Option<Duration> {
        let limit = limit?;
        let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        match shard.get(key) {
            Some(&(start, count)) if start + self.window > now => (count >= limit).then(|| start + self.window - now),
            // No events in a current window: only a zero allowance is exceeded.
            _ => (limit == 0).then_some(self.window),
        }
    }

    /// Counts `n` events for `key` if that keeps its current window within `limit`, checking
    /// and counting under one lock so that concurrent requests cannot all pass a check that
    /// only one of them should. Otherwise: how long until the window ends. The events are given
    /// back when the returned [`Taken`] is dropped without [`Taken::keep`]: a request refused
    /// or failed further on spends nothing. No limit: nothing is counted.
    pub fn take(&self, key: &str, n: u32, limit: Option<u32>, now: OffsetDateTime) -> Result<Taken<'_>, Duration> {
        let Some(limit) = limit else {
            return Ok(Taken { held: None });
        };
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let entry = self.current_window(&mut shard, key, now);
        if entry.1.saturating_add(n) > limit {
            return Err(entry.0 + self.window - now);
        }
        entry.1 += n;
        Ok(Taken {
            held: Some(Held {
                limiter: self,
                key: key.to_owned(),
                n,
                window_start: entry.0,
            }),
        })
    }

    /// Gives back events taken in the window starting at `window_start` (a later window has
    /// its own count, which they never were part of).
    fn give_back(&self, key: &str, n: u32, window_start: OffsetDateTime) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(entry) = shard.get_mut(key)
            && entry.0 == window_start
        {
            entry.1 = entry.1.saturating_sub(n);
        }
    }

    /// Records `n` events for `key`.
    pub fn record(&self, key: &str, n: u32, now: OffsetDateTime) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        let entry = self.current_window(&mut shard, key, now);
        entry.1 = entry.1.saturating_add(n);
    }

    /// `key`'s (window start, count), a fresh window if its last one has ended. Drops ended
    /// windows of other keys once the shard has grown large.
    fn current_window<'m>(
        &self,
        shard: &'m mut HashMap<String, (OffsetDateTime, u32)>,
        key: &str,
        now: OffsetDateTime,
    ) -> &'m mut (OffsetDateTime, u32) {
        if shard.len() >= SWEEP_AT {
            let window = self.window;
            shard.retain(|_, (start, _)| *start + window > now);
        }
        let entry = shard.entry(key.to_owned()).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry
    }
}

/// Events counted by [`Limiter::take`], given back on drop unless kept.
#[must_use = "dropping it gives the events back"]
#[derive(Debug)]
pub struct Taken<'a> {
    held: Option<Held<'a>>,
}

#[derive(Debug)]
struct Held<'a> {
    limiter: &'a Limiter,
    key: String,
    n: u32,
    window_start: OffsetDateTime,
}

impl Taken<'_> {
    /// The request did what was counted: the events stay.
    pub fn keep(mut self) {
        self.held = None;
    }
}

impl Drop for Taken<'_> {
    fn drop(&mut self) {
        if let Some(held) = self.held.take() {
            held.limiter.give_back(&held.key, held.n, held.window_start);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const WINDOW: Duration = Duration::hours(1);

    fn start() -> OffsetDateTime {
        OffsetDateTime::UNIX_EPOCH + Duration::days(20_000)
    }

    /// Each case: events taken and kept first, then one more take of `n` at `after`.
    #[test]
    fn take_counts_within_the_window() {
        struct Case {
            name: &'static str,
            limit: Option<u32>,
            kept: u32,
            n: u32,
            after: Duration,
            want: Result<(), Duration>,
        }
        let cases = [
            Case {
                name: "good_under_limit",
                limit: Some(3),
                kept: 2,
                n: 1,
                after: Duration::ZERO,
                want: Ok(()),
            },
            Case {
                name: "bad_at_limit",
                limit: Some(3),
                kept: 3,
                n: 1,
                after: Duration::minutes(10),
                want: Err(Duration::minutes(50)),
            },
            Case {
                name: "bad_batch_over_limit",
                limit: Some(3),
                kept: 1,
                n: 3,
                after: Duration::ZERO,
                want: Err(WINDOW),
            },
            Case {
                name: "good_batch_to_limit",
                limit: Some(3),
                kept: 1,
                n: 2,
                after: Duration::ZERO,
                want: Ok(()),
            },
            Case {
                name: "good_next_window",
                limit: Some(3),
                kept: 3,
                n: 3,
                after: WINDOW,
                want: Ok(()),
            },
            Case {
                name: "bad_zero_allowance",
                limit: Some(0),
                kept: 0,
                n: 1,
                after: Duration::ZERO,
                want: Err(WINDOW),
            },
            Case {
                name: "good_no_limit",
                limit: None,
                kept: 50,
                n: 50,
                after: Duration::ZERO,
                want: Ok(()),
            },
        ];
        for case in cases {
            let limiter = Limiter::new(WINDOW);
            for _ in 0..case.kept {
                limiter.take("k", 1, case.limit, start()).unwrap().keep();
            }
            let got = limiter
                .take("k", case.n, case.limit, start() + case.after)
                .map(Taken::keep);
            assert_eq!(got, case.want, "case {}", case.name);
        }
    }

    #[test]
    fn dropped_events_are_given_back_kept_ones_stay() {
        let limiter = Limiter::new(WINDOW);
        let limit = Some(2);
        limiter.take("k", 1, limit, start()).unwrap().keep();
        // Taken and dropped (the request failed further on): the allowance is unchanged.
        drop(limiter.take("k", 1, limit, start()).unwrap());
        limiter.take("k", 1, limit, start()).unwrap().keep();
        assert!(limiter.take("k", 1, limit, start()).is_err(), "two kept, limit two");
        assert!(limiter.exceeded("k", limit, start()).is_some());
        assert!(limiter.take("other", 1, limit, start()).is_ok(), "keys are separate");
    }

    #[test]
    fn a_give_back_never_reaches_into_a_later_window() {
        let limiter = Limiter::new(WINDOW);
        let limit = Some(1);
        let held = limiter.take("k", 1, limit, start()).unwrap();
        // The window rolls over while the request is in flight, and a new event is kept.
        limiter.take("k", 1, limit, start() + WINDOW).unwrap().keep();
        drop(held);
        assert!(
            limiter.take("k", 1, limit, start() + WINDOW).is_err(),
            "the new window's event stays counted"
        );
    }

    /// Sixteen concurrent takers, room for five: exactly five get through.
    #[test]
    fn concurrent_takers_cannot_race_past_the_limit() {
        let limiter = Arc::new(Limiter::new(WINDOW));
        let barrier = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let (limiter, barrier) = (Arc::clone(&limiter), Arc::clone(&barrier));
                std::thread::spawn(move || {
                    barrier.wait();
                    limiter.take("k", 1, Some(5), start()).map(Taken::keep).is_ok()
                })
            })
            .collect();
        let passed = threads
            .into_iter()
            .filter_map(|t| t.join().ok())
            .filter(|ok| *ok)
            .count();
        assert_eq!(passed, 5);
    }
}
