//! A shard's published values: one block of atomics per shard, laid out by [`FAMILIES`].
//!
//! Only the owning shard writes its block, with relaxed stores, from its housekeeping tick; the
//! HTTP thread reads it with relaxed loads. No slot depends on another, so nothing stronger is
//! needed: a scrape sees each value as of some tick, which is all a monitoring system asks.

use std::sync::atomic::{AtomicU64, Ordering};

use super::families::{slots, Source, FAMILIES};
use crate::counters::Counters;

/// Upper bounds (nanoseconds) of the in-proxy processing time histogram buckets.
pub const LATENCY_BUCKETS_NS: [u64; 12] = [
    500,
    1_000,
    2_000,
    5_000,
    10_000,
    20_000,
    50_000,
    100_000,
    500_000,
    1_000_000,
    10_000_000,
    u64::MAX,
];

/// A sampled histogram of the time `Core::handle` takes, owned by one shard.
#[derive(Clone, Debug, Default)]
pub struct Latency {
    pub buckets: [u64; LATENCY_BUCKETS_NS.len()],
    pub sum_ns: u64,
    pub count: u64,
}

impl Latency {
    pub fn record(&mut self, ns: u64) {
        let i = LATENCY_BUCKETS_NS
            .iter()
            .position(|&b| ns <= b)
            .unwrap_or(LATENCY_BUCKETS_NS.len() - 1);
        self.buckets[i] += 1;
        self.sum_ns += ns;
        self.count += 1;
    }
}

/// One shard's published values: a flat array, each family's slots after the previous
/// family's, in [`FAMILIES`] order (so the layout cannot drift from the declaration).
pub struct Published {
    v: Box<[AtomicU64]>,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            v: (0..slots()).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Published {
    /// Copy a shard's values (called by the owning shard only, off the packet path).
    pub fn publish(&self, c: &Counters, lat: &Latency, bindings: usize, aors: usize) {
        let source = Source {
            counters: c,
            latency: lat,
            bindings: bindings as u64,
            aors: aors as u64,
        };
        let mut slot = self.v.iter();
        for f in FAMILIES {
            for i in 0..f.width() {
                let a = slot.next().expect("the block has a slot per family value");
                a.store((f.read)(&source, i), Ordering::Relaxed);
            }
        }
    }

    /// Every slot's value, in layout order.
    pub fn snapshot(&self) -> Vec<u64> {
        self.v.iter().map(|a| a.load(Ordering::Relaxed)).collect()
    }
}
