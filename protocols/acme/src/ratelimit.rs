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
    pub fn exceeded(&self, key: &str, limit: Option<u32>, now: OffsetDateTime) -> Option<Duration> {
        let limit = limit?;
        let shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        match shard.get(key) {
            Some(&(start, count)) if start + self.window > now => (count >= limit).then(|| start + self.window - now),
            // No events in a current window: only a zero allowance is exceeded.
            _ => (limit == 0).then_some(self.window),
        }
    }

    /// Records `n` events for `key`.
    pub fn record(&self, key: &str, n: u32, now: OffsetDateTime) {
        let mut shard = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if shard.len() >= SWEEP_AT {
            let window = self.window;
            shard.retain(|_, (start, _)| *start + window > now);
        }
        let entry = shard.entry(key.to_owned()).or_insert((now, 0));
        if entry.0 + self.window <= now {
            *entry = (now, 0);
        }
        entry.1 = entry.1.saturating_add(n);
    }
}
