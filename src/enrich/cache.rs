//! A bounded, time-limited cache of customer locations, so that a warm function usually
//! enriches a batch without a database round trip. Customers that do not exist are cached
//! too (as `None`): an unknown customer in every batch would otherwise cost a lookup each
//! time. Both kinds expire after the TTL, which bounds how stale an address can be.

use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::enrich::location::Location;

/// Customer locations (and known-unknown customers), least recently used evicted first.
pub struct LocationCache {
    entries: LruCache<String, Entry>,
    ttl: Duration,
}

struct Entry {
    location: Option<Location>,
    expires_at: Instant,
}

impl LocationCache {
    /// An empty cache of at most `capacity` customers, each kept for `ttl`.
    pub fn new(capacity: NonZeroUsize, ttl: Duration) -> Self {
        Self {
            entries: LruCache::new(capacity),
            ttl,
        }
    }

    /// `Some(entry)` on a fresh hit (the entry itself is `None` for a known-unknown customer).
    pub fn get(&mut self, customer: &str, now: Instant) -> Option<Option<Location>> {
        match self.entries.get(customer) {
            Some(entry) if entry.expires_at > now => Some(entry.location.clone()),
            Some(_) => {
                self.entries.pop(customer);
                None
            }
            None => None,
        }
    }

    /// Keeps `location` (or the fact that the customer is unknown) until `now + ttl`.
    pub fn insert(&mut self, customer: String, location: Option<Location>, now: Instant) {
        if self.ttl.is_zero() {
            return;
        }
        self.entries.put(
            customer,
            Entry {
                location,
                expires_at: now + self.ttl,
            },
        );
    }

    /// Customers in the cache, fresh or expired.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rust_decimal::Decimal;

    fn jones() -> Location {
        Location {
            address: Some("1745 T Street Southeast".into()),
            longitude: Some(Decimal::new(-76979235, 6)),
            latitude: Some(Decimal::new(38867033, 6)),
        }
    }

    fn cache(capacity: usize, ttl_secs: u64) -> LocationCache {
        LocationCache::new(
            NonZeroUsize::new(capacity).unwrap(),
            Duration::from_secs(ttl_secs),
        )
    }

    #[test]
    fn hit_before_ttl_miss_after() {
        let start = Instant::now();
        let mut cache = cache(10, 60);
        cache.insert("Jones".into(), Some(jones()), start);
        cache.insert("Nobody".into(), None, start);
        assert_eq!(
            cache.get("Jones", start + Duration::from_secs(59)),
            Some(Some(jones()))
        );
        assert_eq!(
            cache.get("Nobody", start + Duration::from_secs(59)),
            Some(None)
        );
        assert_eq!(cache.get("Jones", start + Duration::from_secs(60)), None);
        assert_eq!(cache.get("Other", start), None);
    }

    #[test]
    fn least_recently_used_entry_goes_when_full() {
        let now = Instant::now();
        let mut cache = cache(2, 60);
        cache.insert("a".into(), None, now);
        cache.insert("b".into(), None, now);
        assert!(cache.get("a", now).is_some());
        cache.insert("c".into(), None, now);
        assert_eq!(cache.len(), 2);
        assert!(cache.get("b", now).is_none());
        assert!(cache.get("a", now).is_some());
    }

    #[test]
    fn zero_ttl_disables_caching() {
        let now = Instant::now();
        let mut cache = cache(10, 0);
        cache.insert("Jones".into(), Some(jones()), now);
        assert!(cache.is_empty());
    }
}
