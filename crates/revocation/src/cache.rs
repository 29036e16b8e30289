//! A bounded cache of signed OCSP responses, keyed by the request's CertID DER.
//!
//! Entries carry the revocation generation they were computed under: a lookup under a newer
//! generation empties the cache, and an insert computed under an older one is dropped, so a
//! response never outlives the revocation that made it wrong. When full, the oldest insert
//! goes first (a FIFO: a response's lifetime is short, so recency of use adds little).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use time::OffsetDateTime;

/// One cached response.
#[derive(Debug, Clone)]
pub(crate) struct CachedResponse {
    /// The OCSPResponse DER.
    pub der: Arc<Vec<u8>>,
    /// Served until then (shortly before the response's nextUpdate).
    pub expires: OffsetDateTime,
}

#[derive(Debug)]
pub(crate) struct ResponseCache {
    capacity: usize,
    generation: u64,
    entries: HashMap<Vec<u8>, CachedResponse>,
    order: VecDeque<Vec<u8>>,
}

impl ResponseCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            generation: 0,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The response for `key` if it is still fresh at `now` under `generation`.
    pub fn get(&mut self, key: &[u8], now: OffsetDateTime, generation: u64) -> Option<CachedResponse> {
        self.observe(generation);
        match self.entries.get(key) {
            Some(entry) if entry.expires > now => Some(entry.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Keeps `response`, computed from store reads made under `generation`.
    pub fn insert(&mut self, key: Vec<u8>, response: CachedResponse, generation: u64) {
        self.observe(generation);
        if generation != self.generation || self.capacity == 0 {
            return;
        }
        if self.entries.insert(key.clone(), response).is_none() {
            self.order.push_back(key);
        }
        while self.entries.len() > self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.entries.remove(&oldest);
        }
        // Keys of entries removed by `get` linger in `order`; bound them too.
        if self.order.len() > self.capacity.saturating_mul(2) {
            let entries = &self.entries;
            self.order.retain(|k| entries.contains_key(k));
        }
    }

    /// Drops expired entries.
    pub fn sweep(&mut self, now: OffsetDateTime) {
        self.entries.retain(|_, e| e.expires > now);
        let entries = &self.entries;
        self.order.retain(|k| entries.contains_key(k));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn observe(&mut self, generation: u64) {
        if generation > self.generation {
            self.entries.clear();
            self.order.clear();
            self.generation = generation;
        }
    }
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    fn response(byte: u8, expires: OffsetDateTime) -> CachedResponse {
        CachedResponse {
            der: Arc::new(vec![byte]),
            expires,
        }
    }

    #[test]
    fn cache_rules() {
        let now = OffsetDateTime::now_utc();
        let later = now + Duration::hours(1);
        let mut cache = ResponseCache::new(2);

        cache.insert(b"a".to_vec(), response(1, later), 0);
        assert_eq!(cache.get(b"a", now, 0).map(|e| e.der[0]), Some(1), "hit");
        assert!(cache.get(b"a", later, 0).is_none(), "expired at its time");
        assert_eq!(cache.len(), 0, "expired entry removed");

        cache.insert(b"a".to_vec(), response(1, later), 0);
        cache.insert(b"b".to_vec(), response(2, later), 0);
        cache.insert(b"c".to_vec(), response(3, later), 0);
        assert_eq!(cache.len(), 2, "capacity");
        assert!(cache.get(b"a", now, 0).is_none(), "oldest evicted");
        assert!(cache.get(b"c", now, 0).is_some());

        assert!(cache.get(b"c", now, 1).is_none(), "a new generation empties it");
        cache.insert(b"d".to_vec(), response(4, later), 0);
        assert!(
            cache.get(b"d", now, 1).is_none(),
            "an insert from an older generation is dropped"
        );
        cache.insert(b"d".to_vec(), response(4, later), 2);
        assert!(
            cache.get(b"d", now, 2).is_some(),
            "an insert may bring the news of a generation"
        );

        cache.insert(b"e".to_vec(), response(5, now + Duration::seconds(1)), 2);
        cache.sweep(now + Duration::seconds(2));
        assert_eq!(cache.len(), 1, "sweep drops the expired");

        let mut off = ResponseCache::new(0);
        off.insert(b"a".to_vec(), response(1, later), 0);
        assert_eq!(off.len(), 0, "capacity 0 turns caching off");
    }
}
