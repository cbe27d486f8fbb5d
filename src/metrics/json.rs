//! The same values as the Prometheus text, as JSON for the admin API's `GET /v1/stats`: per
//! family, each series with its label, every shard's value and the node's.
//!
//! Series that are 0 on every shard are left out (most status codes, most drop reasons), so a
//! quiet node's stats are short; a histogram gives its count and sum.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::families::{Family, Kind, FAMILIES};
use super::publish::{Published, LATENCY_BUCKETS_NS};
use super::text::node_row;

/// `{"shards": N, "families": [{"name", "type", "help", "series": [{"labels", "shards",
/// "total"}]}]}`.
pub fn render(shards: &[Arc<Published>]) -> Value {
    let snaps: Vec<Vec<u64>> = shards.iter().map(|s| s.snapshot()).collect();
    let node = node_row(&snaps);
    let mut families = Vec::new();
    let mut offset = 0;
    for f in FAMILIES {
        let w = f.width();
        let column = |i: usize| -> (Vec<u64>, u64) {
            let per_shard = snaps.iter().map(|s| s[offset + i]).collect();
            (per_shard, node[offset + i])
        };
        let series = family_series(f, w, column);
        if !series.is_empty() {
            families.push(json!({
                "name": f.name,
                "type": f.kind.as_str(),
                "help": f.help,
                "series": series,
            }));
        }
        offset += w;
    }
    json!({ "shards": snaps.len(), "families": families })
}

/// The non-zero series of one family; `column(i)` is slot `i` on every shard and the node.
fn family_series(
    f: &Family,
    width: usize,
    column: impl Fn(usize) -> (Vec<u64>, u64),
) -> Vec<Value> {
    let entry = |labels: Map<String, Value>, (shards, total): (Vec<u64>, u64)| json!({ "labels": labels, "shards": shards, "total": total });
    let mut out = Vec::new();
    if f.kind == Kind::Histogram {
        // After the buckets: the sum in nanoseconds, then the count.
        let sum = LATENCY_BUCKETS_NS.len();
        for (stat, slot) in [("count", sum + 1), ("sum_ns", sum)] {
            let col = column(slot);
            if col.1 > 0 {
                out.push(entry(one_label("stat", stat.into()), col));
            }
        }
        return out;
    }
    for i in 0..width {
        let col = column(i);
        if col.1 == 0 && col.0.iter().all(|&v| v == 0) {
            continue;
        }
        let labels = match &f.label {
            Some(l) => one_label(l.name, (l.value)(i).into_owned()),
            None => Map::new(),
        };
        out.push(entry(labels, col));
    }
    out
}

fn one_label(name: &str, value: String) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(name.into(), Value::String(value));
    m
}
