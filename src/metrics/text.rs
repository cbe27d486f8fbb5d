//! The Prometheus text exposition format (version 0.0.4), rendered from [`FAMILIES`].
//!
//! Every series has a `shard` label: one series per shard (`"0"`, `"1"`, ...) and the node's
//! (`"total"`), derived as each family's [`Node`] says.

use std::fmt::Write as _;
use std::sync::Arc;

use super::families::{Family, Kind, Node, FAMILIES};
use super::publish::{Published, LATENCY_BUCKETS_NS};

/// Render every shard's block and the node's series.
pub fn render(shards: &[Arc<Published>]) -> String {
    let snaps: Vec<Vec<u64>> = shards.iter().map(|s| s.snapshot()).collect();
    render_snapshots(&snaps)
}

/// Render shard snapshots (each in the layout of [`Published`]).
pub fn render_snapshots(snaps: &[Vec<u64>]) -> String {
    let node = node_row(snaps);
    let mut rows: Vec<(String, &[u64])> = snaps
        .iter()
        .enumerate()
        .map(|(i, s)| (i.to_string(), s.as_slice()))
        .collect();
    rows.push(("total".into(), &node));
    let mut out = String::with_capacity(16 * 1024);
    let mut offset = 0;
    for f in FAMILIES {
        let w = f.width();
        let _ = writeln!(
            out,
            "# HELP {} {}\n# TYPE {} {}",
            f.name,
            f.help,
            f.name,
            f.kind.as_str()
        );
        for (shard, row) in &rows {
            series(&mut out, f, shard, &row[offset..offset + w]);
        }
        offset += w;
    }
    out
}

/// The node's value of every slot, as each family's [`Node`] says.
pub(super) fn node_row(snaps: &[Vec<u64>]) -> Vec<u64> {
    let mut node = Vec::with_capacity(super::families::slots());
    let mut offset = 0;
    for f in FAMILIES {
        for i in offset..offset + f.width() {
            let values = snaps.iter().map(|s| s[i]);
            node.push(match f.node {
                Node::Sum => values.sum(),
                Node::Max => values.max().unwrap_or(0),
            });
        }
        offset += f.width();
    }
    node
}

/// One shard's (or the node's) series of one family.
fn series(out: &mut String, f: &Family, shard: &str, v: &[u64]) {
    let name = f.name;
    if f.kind == Kind::Histogram {
        return histogram(out, name, shard, v);
    }
    match &f.label {
        None => {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {}", v[0]);
        }
        Some(l) => {
            for (i, &n) in v.iter().enumerate() {
                if f.sparse && n == 0 {
                    continue;
                }
                let _ = writeln!(
                    out,
                    "{name}{{shard=\"{shard}\",{}=\"{}\"}} {n}",
                    l.name,
                    (l.value)(i)
                );
            }
        }
    }
}

/// Cumulative buckets with `le` in seconds, then `_sum` (seconds) and `_count`.
fn histogram(out: &mut String, name: &str, shard: &str, v: &[u64]) {
    let (buckets, rest) = v.split_at(LATENCY_BUCKETS_NS.len());
    let mut cum = 0;
    for (&bound, &n) in LATENCY_BUCKETS_NS.iter().zip(buckets) {
        cum += n;
        if bound == u64::MAX {
            let _ = writeln!(out, "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {cum}");
        } else {
            let le = bound as f64 / 1e9;
            let _ = writeln!(out, "{name}_bucket{{shard=\"{shard}\",le=\"{le}\"}} {cum}");
        }
    }
    let _ = writeln!(
        out,
        "{name}_sum{{shard=\"{shard}\"}} {}",
        rest[0] as f64 / 1e9
    );
    let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {}", rest[1]);
}
