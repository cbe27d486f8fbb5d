//! The cluster peer's figures (`--redis`): one block of atomics for the node, written by the
//! peer's thread only, read by the metrics endpoint and the admin API's readiness.
//!
//! Unlike the shards' families these are per node, not per shard: the node has one peer, and
//! what it reports (is Redis reachable, has this node loaded the shared state) is the node's.

use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the cluster peer publishes.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// The node has loaded Redis's state and follows its change stream.
    pub ready: AtomicBool,
    /// A connection to the Redis primary is up.
    pub connected: AtomicBool,
    /// Changes were dropped from the bounded queue while Redis was unreachable: Redis misses
    /// some of this node's changes until the node has republished its bindings.
    pub degraded: AtomicBool,
    /// This node's changes waiting to be written to Redis.
    pub queued: AtomicU64,
    /// This node's changes written to Redis (including republished ones).
    pub published: AtomicU64,
    /// Other nodes' changes applied here (from the snapshot and the stream).
    pub applied: AtomicU64,
    /// This node's changes dropped because the queue was full.
    pub dropped: AtomicU64,
    /// Other nodes' changes stamped further in the future than the clock bound: clamped.
    pub clamped: AtomicU64,
    /// Full loads of Redis's state after the first (a gap in the stream, Redis restarted).
    pub resyncs: AtomicU64,
    /// Connections to Redis made again after one was lost.
    pub reconnects: AtomicU64,
}

/// (name, help, gauge?) of each figure, in [`ClusterStats::values`] order.
const FIGURES: [(&str, &str, bool); 10] = [
    (
        "sipshard_cluster_ready",
        "1 once the node has loaded the cluster's state from Redis and follows its changes",
        true,
    ),
    (
        "sipshard_cluster_connected",
        "1 while a connection to the Redis primary is up",
        true,
    ),
    (
        "sipshard_cluster_degraded",
        "1 when changes of this node were dropped while Redis was unreachable and are not yet republished",
        true,
    ),
    (
        "sipshard_cluster_queued",
        "Changes of this node waiting to be written to Redis",
        true,
    ),
    (
        "sipshard_cluster_published_total",
        "Changes of this node written to Redis",
        false,
    ),
    (
        "sipshard_cluster_applied_total",
        "Changes of other nodes applied here",
        false,
    ),
    (
        "sipshard_cluster_dropped_total",
        "Changes of this node dropped because the queue towards Redis was full",
        false,
    ),
    (
        "sipshard_cluster_clamped_total",
        "Changes of other nodes stamped beyond the clock bound, clamped to it",
        false,
    ),
    (
        "sipshard_cluster_resyncs_total",
        "Full loads of the cluster's state after the first",
        false,
    ),
    (
        "sipshard_cluster_reconnects_total",
        "Connections to Redis made again after one was lost",
        false,
    ),
];

impl ClusterStats {
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Every figure, in [`FIGURES`] order.
    fn values(&self) -> [u64; 10] {
        let flag = |b: &AtomicBool| u64::from(b.load(Ordering::Relaxed));
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed);
        [
            flag(&self.ready),
            flag(&self.connected),
            flag(&self.degraded),
            n(&self.queued),
            n(&self.published),
            n(&self.applied),
            n(&self.dropped),
            n(&self.clamped),
            n(&self.resyncs),
            n(&self.reconnects),
        ]
    }

    /// The figures in Prometheus text, appended to `out`.
    pub fn render(&self, out: &mut String) {
        for ((name, help, gauge), v) in FIGURES.iter().zip(self.values()) {
            let kind = if *gauge { "gauge" } else { "counter" };
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
            );
        }
    }

    /// Add `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn set(flag: &AtomicBool, v: bool) {
        flag.store(v, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_figure_with_its_type() {
        let s = ClusterStats::default();
        ClusterStats::set(&s.ready, true);
        ClusterStats::add(&s.published, 7);
        let mut out = String::new();
        s.render(&mut out);
        assert!(out.contains("# TYPE sipshard_cluster_ready gauge\nsipshard_cluster_ready 1\n"));
        assert!(out.contains(
            "# TYPE sipshard_cluster_published_total counter\nsipshard_cluster_published_total 7\n"
        ));
        assert_eq!(out.matches("# TYPE").count(), FIGURES.len());
    }
}
