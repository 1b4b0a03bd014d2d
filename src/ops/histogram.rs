//! A lock-free histogram: one atomic per bucket, the sum as the bits of an
//! `f64` updated by compare-and-swap. prometheus-client's own `Histogram`
//! takes a mutex on every observation; this one never blocks, so a hot
//! route observed by every worker thread does not serialize them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds (seconds) for request latencies: 0.5 ms to 10 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// Upper bounds (seconds) for fsync durations: 50 µs to 5 s.
pub const FSYNC_BUCKETS: &[f64] = &[
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 5.0,
];

/// Upper bounds for the number of appends one fsync made durable.
pub const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

struct Inner {
    bounds: &'static [f64],
    /// One per bound, plus the overflow bucket (`+Inf`); not cumulative.
    buckets: Box<[AtomicU64]>,
    sum_bits: AtomicU64,
}

/// A histogram with fixed bucket bounds that observes without locking.
/// Clones share the counts.
#[derive(Clone)]
pub struct AtomicHistogram {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for AtomicHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (sum, count, _) = self.snapshot();
        f.debug_struct("AtomicHistogram")
            .field("count", &count)
            .field("sum", &sum)
            .finish()
    }
}

impl AtomicHistogram {
    /// An empty histogram with these upper bounds (ascending, finite).
    pub fn new(bounds: &'static [f64]) -> Self {
        let buckets = (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(Inner {
                bounds,
                buckets,
                sum_bits: AtomicU64::new(0f64.to_bits()),
            }),
        }
    }

    /// Records one value.
    pub fn observe(&self, value: f64) {
        let inner = &*self.inner;
        // The first bound at or above the value (`le` semantics); NaN and
        // values past the last bound land in the overflow bucket.
        let i = inner.bounds.partition_point(|b| *b < value);
        if let Some(bucket) = inner.buckets.get(i) {
            bucket.fetch_add(1, Ordering::Relaxed);
        }
        let mut cur = inner.sum_bits.load(Ordering::Relaxed);
        loop {
            let next = (f64::from_bits(cur) + value).to_bits();
            match inner.sum_bits.compare_exchange_weak(
                cur,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => break,
                Err(seen) => cur = seen,
            }
        }
    }

    /// The sum, the count and the per-bucket counts (upper bound, count;
    /// not cumulative; the last bound is `+Inf`). The count is the sum of
    /// the buckets read, so the two always agree.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let inner = &*self.inner;
        let mut buckets = Vec::with_capacity(inner.buckets.len());
        let mut count = 0u64;
        for (i, b) in inner.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            count += n;
            let bound = inner.bounds.get(i).copied().unwrap_or(f64::INFINITY);
            buckets.push((bound, n));
        }
        (
            f64::from_bits(inner.sum_bits.load(Ordering::Relaxed)),
            count,
            buckets,
        )
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let (sum, count, buckets) = self.snapshot();
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_le_bucket() {
        let h = AtomicHistogram::new(&[1.0, 2.0]);
        for v in [0.5, 1.0, 1.5, 3.0, f64::NAN] {
            if !v.is_nan() {
                h.observe(v);
            }
        }
        h.observe(2.0);
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 5);
        assert!((sum - 8.0).abs() < 1e-9);
        assert_eq!(buckets, vec![(1.0, 2), (2.0, 2), (f64::INFINITY, 1)]);
    }

    #[test]
    fn concurrent_observations_are_all_counted() {
        let h = AtomicHistogram::new(LATENCY_BUCKETS);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| (0..1000).for_each(|_| h.observe(0.001)));
            }
        });
        let (sum, count, _) = h.snapshot();
        assert_eq!(count, 4000);
        assert!((sum - 4.0).abs() < 1e-6);
    }
}
