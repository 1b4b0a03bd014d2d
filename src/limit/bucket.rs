//! A keyed token bucket (GCRA) with bounded memory.

use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

use super::RetryAfter;
use crate::clock::SharedClock;

/// Keys tracked one by one before newcomers share the overflow buckets.
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// Buckets shared by keys that arrive while `max_keys` are tracked (a power
/// of two; 32 KiB).
const OVERFLOW_SLOTS: usize = 4096;

/// `per_minute` requests a minute per key with a burst of `per_minute`, as a
/// generic cell rate algorithm: each key holds one number, its theoretical
/// arrival time (TAT, microseconds since the epoch), in a [`DashMap`].
///
/// # Memory
/// - A key whose bucket is full again (its TAT has passed) carries no
///   information: forgetting it changes no answer. [`sweep`](Self::sweep)
///   forgets those; run it every few seconds from a background task. A key
///   is therefore held for at most one minute after its last request (the
///   time a drained bucket takes to refill) plus the sweep interval.
/// - At most `max_keys` keys are tracked. A key first seen while that many
///   are tracked is not stored: it is limited by one of 4,096 shared
///   overflow buckets, picked by a hash keyed with a per-process secret.
///   That fails closed and locks nobody out:
///   - *refusing* new keys when full would let a stranger with `max_keys`
///     addresses lock every other new client out until the sweep (the
///     lock-out by strangers this module exists to prevent);
///   - *evicting* the oldest key hands that key a full bucket again, so an
///     attacker with `max_keys + 1` addresses cycling through them would
///     never be limited (and finding the oldest costs O(n) or an LRU lock on
///     the request path);
///   - a shared overflow bucket is never looser than a key's own bucket (an
///     attacker only shares its budget with others, it gains none), costs a
///     fixed 32 KiB, and a newcomer is throttled only when the keys hashed
///     into its bucket spent that bucket's budget, which an attacker cannot
///     aim at one victim (the hash is secret).
///
/// # Time
/// Time comes from the crate's [`Clock`](crate::clock::Clock), so tests move
/// it without sleeping. A TAT further ahead than a drained bucket can put it
/// means the wall clock went backwards; such a key starts afresh instead of
/// waiting out the jump.
///
/// Concurrent checks of one key race on one atomic compare-and-swap: at
/// most `per_minute` of them pass in a burst, never more.
pub struct KeyedLimiter<K> {
    inner: Option<Inner<K>>,
}

struct Inner<K> {
    map: DashMap<K, AtomicU64>,
    /// Keys in `map`; the cap check reads this instead of every shard.
    count: AtomicUsize,
    max_keys: usize,
    per_minute: u32,
    overflow: Box<[AtomicU64]>,
    overflow_hash: RandomState,
    /// Emission interval: one request's worth of the bucket, microseconds.
    interval_us: u64,
    /// Burst tolerance: `(burst - 1) * interval_us`.
    tolerance_us: u64,
    clock: SharedClock,
}

impl<K> std::fmt::Debug for KeyedLimiter<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            None => f.write_str("KeyedLimiter(off)"),
            Some(i) => f
                .debug_struct("KeyedLimiter")
                .field("per_minute", &i.per_minute)
                .field("keys", &i.count.load(Ordering::Relaxed))
                .field("max_keys", &i.max_keys)
                .finish(),
        }
    }
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    /// `per_minute` requests a minute per key, burst `per_minute`; `0` is
    /// off (every check passes and nothing is stored). At most
    /// [`DEFAULT_MAX_KEYS`] keys are tracked one by one.
    pub fn per_minute(per_minute: u32, clock: SharedClock) -> Self {
        Self::with_max_keys(per_minute, DEFAULT_MAX_KEYS, clock)
    }

    /// Like [`per_minute`](Self::per_minute), tracking at most `max_keys`
    /// keys one by one (at least 1).
    pub fn with_max_keys(per_minute: u32, max_keys: usize, clock: SharedClock) -> Self {
        if per_minute == 0 {
            return Self { inner: None };
        }
        let interval_us = (60_000_000 / u64::from(per_minute)).max(1);
        Self {
            inner: Some(Inner {
                map: DashMap::new(),
                count: AtomicUsize::new(0),
                max_keys: max_keys.max(1),
                per_minute,
                overflow: (0..OVERFLOW_SLOTS).map(|_| AtomicU64::new(0)).collect(),
                overflow_hash: RandomState::new(),
                interval_us,
                tolerance_us: interval_us.saturating_mul(u64::from(per_minute) - 1),
                clock,
            }),
        }
    }

    /// Whether the limit is off (`0` a minute).
    pub fn is_off(&self) -> bool {
        self.inner.is_none()
    }

    /// Takes one request from `key`'s bucket.
    ///
    /// # Errors
    /// [`RetryAfter`] with the whole seconds (at least 1) until the bucket
    /// holds a request again; the refused request took nothing.
    pub fn check(&self, key: &K) -> Result<(), RetryAfter> {
        let Some(inner) = &self.inner else {
            return Ok(());
        };
        let now = inner.clock.now_millis().saturating_mul(1000);
        // The common case: a known key, under a shared shard lock.
        if let Some(tat) = inner.map.get(key) {
            return inner.take(&tat, now);
        }
        if inner.count.load(Ordering::Relaxed) >= inner.max_keys {
            return inner.take(inner.overflow_slot(key), now);
        }
        match inner.map.entry(key.clone()) {
            Entry::Occupied(e) => inner.take(e.get(), now),
            Entry::Vacant(v) => {
                if inner.count.fetch_add(1, Ordering::AcqRel) >= inner.max_keys {
                    inner.count.fetch_sub(1, Ordering::AcqRel);
                    drop(v);
                    return inner.take(inner.overflow_slot(key), now);
                }
                let tat = v.insert(AtomicU64::new(0));
                inner.take(&tat, now)
            }
        }
    }

    /// Forgets every key whose bucket is full again (nothing to remember);
    /// returns how many. Never called on the request path.
    pub fn sweep(&self) -> usize {
        let Some(inner) = &self.inner else { return 0 };
        let now = inner.clock.now_millis().saturating_mul(1000);
        let mut removed = 0usize;
        inner.map.retain(|_, tat| {
            let keep = tat.load(Ordering::Acquire) > now;
            removed += usize::from(!keep);
            keep
        });
        inner.count.fetch_sub(removed, Ordering::AcqRel);
        removed
    }

    /// Keys tracked one by one now (swept ones excluded).
    pub fn len(&self) -> usize {
        self.inner
            .as_ref()
            .map_or(0, |i| i.count.load(Ordering::Relaxed))
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash> Inner<K> {
    fn overflow_slot(&self, key: &K) -> &AtomicU64 {
        let h = self.overflow_hash.hash_one(key) as usize;
        &self.overflow[h & (OVERFLOW_SLOTS - 1)]
    }

    /// GCRA on one cell: allowed while the TAT is at most `tolerance_us`
    /// ahead of `now`; an allowed request moves it one interval on.
    fn take(&self, cell: &AtomicU64, now: u64) -> Result<(), RetryAfter> {
        let horizon = now
            .saturating_add(self.tolerance_us)
            .saturating_add(self.interval_us);
        let mut current = cell.load(Ordering::Acquire);
        loop {
            // Past the horizon only if the clock went back: start afresh.
            let tat = if current > horizon {
                now
            } else {
                current.max(now)
            };
            let ahead = tat - now;
            if ahead > self.tolerance_us {
                let wait_us = ahead - self.tolerance_us;
                return Err(RetryAfter(wait_us.div_ceil(1_000_000).max(1)));
            }
            match cell.compare_exchange_weak(
                current,
                tat.saturating_add(self.interval_us),
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;

    fn limiter(per_minute: u32, max_keys: usize) -> (KeyedLimiter<u32>, ManualClock) {
        let clock = ManualClock::new(1_700_000_000_000);
        let l = KeyedLimiter::with_max_keys(per_minute, max_keys, Arc::new(clock.clone()));
        (l, clock)
    }

    fn passes(l: &KeyedLimiter<u32>, key: u32, n: usize) -> usize {
        (0..n).filter(|_| l.check(&key).is_ok()).count()
    }

    #[test]
    fn burst_then_steady_rate_then_refill() {
        let (l, clock) = limiter(600, 100);
        assert_eq!(passes(&l, 1, 1000), 600, "a burst of N");
        // One request every 100 ms after that.
        assert_eq!(l.check(&1), Err(RetryAfter(1)));
        clock.advance(Duration::from_millis(99));
        assert!(l.check(&1).is_err());
        clock.advance(Duration::from_millis(1));
        assert!(l.check(&1).is_ok());
        assert!(l.check(&1).is_err());
        clock.advance(Duration::from_secs(10));
        assert_eq!(passes(&l, 1, 1000), 100);
        // Another key has its own bucket.
        assert_eq!(passes(&l, 2, 1000), 600);
        // A minute refills a drained bucket completely, and no more.
        clock.advance(Duration::from_secs(60));
        assert_eq!(passes(&l, 1, 1000), 600);
    }

    #[test]
    fn retry_after_is_whole_seconds_until_the_next_request() {
        let (l, clock) = limiter(2, 100);
        assert!(l.check(&7).is_ok());
        assert!(l.check(&7).is_ok());
        assert_eq!(l.check(&7), Err(RetryAfter(30)));
        clock.advance(Duration::from_millis(29_001));
        assert_eq!(l.check(&7), Err(RetryAfter(1)), "rounded up");
        clock.advance(Duration::from_millis(999));
        assert!(l.check(&7).is_ok());
        let (l, _) = limiter(1, 100);
        assert!(l.check(&1).is_ok());
        assert_eq!(l.check(&1), Err(RetryAfter(60)));
    }

    #[test]
    fn zero_is_off_and_stores_nothing() {
        let (l, _) = limiter(0, 100);
        assert!(l.is_off());
        assert_eq!(passes(&l, 1, 10_000), 10_000);
        assert!(l.is_empty());
        assert_eq!(l.sweep(), 0);
    }

    #[test]
    fn sweep_forgets_only_full_buckets() {
        let (l, clock) = limiter(60, 1000);
        for k in 0..10 {
            assert!(l.check(&k).is_ok());
        }
        assert_eq!(passes(&l, 99, 100), 60);
        assert_eq!(l.len(), 11);
        assert_eq!(l.sweep(), 0, "each bucket is still refilling");
        clock.advance(Duration::from_secs(1));
        assert_eq!(l.sweep(), 10, "one request refills in a second");
        assert_eq!(l.len(), 1);
        // The drained key is still limited: forgetting kept nothing it needed.
        assert!(l.check(&99).is_ok());
        assert!(l.check(&99).is_err());
        clock.advance(Duration::from_secs(60));
        assert_eq!(l.sweep(), 1);
        assert!(l.is_empty());
    }

    #[test]
    fn past_max_keys_newcomers_share_overflow_buckets_and_memory_stays() {
        let (l, clock) = limiter(10, 50);
        for k in 0..50 {
            assert!(l.check(&k).is_ok());
        }
        // 10,000 new keys, 20 tries each: none is stored, and together they
        // get no more than the overflow buckets hold (4,096 buckets of 10;
        // their own buckets would have let 100,000 through), yet most of
        // them get something (nobody is locked out).
        let passed: usize = (1000..11_000).map(|k| passes(&l, k, 20)).sum();
        assert_eq!(l.len(), 50);
        assert!((30_000..=4096 * 10).contains(&passed), "{passed}");
        // One newcomer hammering gets its bucket's budget and no more.
        assert!(passes(&l, 123_456, 100) <= 10);
        // Tracked keys keep their own buckets meanwhile.
        assert_eq!(passes(&l, 3, 100), 9);
        // Once swept, newcomers are tracked one by one again.
        clock.advance(Duration::from_secs(60));
        assert_eq!(l.sweep(), 50);
        assert_eq!(passes(&l, 777_777, 100), 10);
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn a_clock_that_goes_back_does_not_lock_keys_out() {
        let clock = ManualClock::new(1_700_000_000_000);
        let l = KeyedLimiter::with_max_keys(600, 100, Arc::new(clock.clone()));
        assert_eq!(passes(&l, 1, 1000), 600);
        // The same limiter read through a clock an hour behind.
        let behind = ManualClock::new(1_700_000_000_000 - 3_600_000);
        let l2 = KeyedLimiter {
            inner: l.inner.map(|i| Inner {
                clock: Arc::new(behind.clone()),
                ..i
            }),
        };
        assert!(l2.check(&1).is_ok(), "not an hour of 429s");
        assert_eq!(passes(&l2, 1, 1000), 599, "a fresh bucket, still limited");
    }

    #[test]
    fn concurrent_checks_of_one_key_pass_exactly_the_burst() {
        let (l, _) = limiter(500, 100);
        let l = Arc::new(l);
        let passed: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let l = Arc::clone(&l);
                    s.spawn(move || passes(&l, 42, 200))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(passed, 500);
    }
}
