//! The shard's exit log lines, from the families that declare a [`Log`].
//!
//! The runtime logs `shard N: {line}` itself, so that the log target stays the runtime's (tests
//! and log pipelines filter on `target=sipshard::runtime`).

use std::fmt::Write as _;

use super::families::{Line, Log, Source, FAMILIES};
use super::publish::Latency;
use crate::counters::Counters;

/// The items of `line` from a shard's final counters, e.g. `5 received, 4 sent, 1 replies, 0
/// dropped` for [`Line::Traffic`].
pub fn log_line(line: Line, c: &Counters) -> String {
    // Only counters are logged (a test checks it), so the gauges and the histogram are empty.
    let source = Source {
        counters: c,
        latency: &Latency::default(),
        bindings: 0,
        aors: 0,
    };
    let mut out = String::from(line.prefix());
    let mut first = true;
    let mut item = |n: u64, word: &str| {
        if !first {
            out.push_str(", ");
        }
        first = false;
        let _ = write!(out, "{n}");
        if !word.is_empty() {
            let _ = write!(out, " {word}");
        }
    };
    for f in FAMILIES {
        match f.log {
            Log::Total(l, word) if l == line => {
                item((0..f.width()).map(|i| (f.read)(&source, i)).sum(), word);
            }
            Log::Each(l, words) if l == line => {
                for (i, word) in words.iter().enumerate() {
                    item((f.read)(&source, i), word);
                }
            }
            _ => {}
        }
    }
    out
}
