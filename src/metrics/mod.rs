//! Metrics: every family declared once ([`families`]), published by the shards without touching
//! the packet path ([`publish`]), rendered as Prometheus text ([`text`]) and served over HTTP
//! ([`http`]), or as JSON for the admin API ([`json`]); the shards' exit log lines come from the same declaration ([`summary`]).
//!
//! How it stays off the packet path: each shard counts in plain integers it alone owns
//! ([`crate::counters`]); its housekeeping tick (every 200 ms) copies them into its
//! [`Published`] block of atomics (relaxed stores). The HTTP server, a thread of its own
//! (`--metrics ADDR`), reads the blocks (relaxed loads), so a scrape sees each shard as of its
//! last tick.
//!
//! Layering: this module reads the core's counters; the core never imports it.

pub mod cluster;
pub mod families;
pub mod http;
pub mod json;
pub mod publish;
pub mod summary;
pub mod text;

#[cfg(test)]
mod tests;

pub use cluster::ClusterStats;
pub use families::{Family, Line, FAMILIES};
pub use http::serve;
pub use publish::{Latency, Published, LATENCY_BUCKETS_NS};
pub use summary::log_line;
pub use text::render;
