//! The declaration table against what is derived from it: the block layout, the text, the node
//! series and the exit log lines.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::families::{slots, Kind, Log, Node, Source};
use super::*;
use crate::counters::{Counters, DropReason, METHODS};
use crate::sip::ParseError;

/// Counters with a distinct value in every field and array slot (`seed` shifts them all).
fn filled(seed: u64) -> Counters {
    let mut n = seed * 10_000;
    let mut next = || {
        n += 1;
        n
    };
    let mut c = Counters {
        datagrams_received: next(),
        datagrams_sent: next(),
        registrations_added: next(),
        registrations_refreshed: next(),
        registrations_removed: next(),
        registrations_expired: next(),
        replication_sent: next(),
        replication_received: next(),
        auth_ok: next(),
        auth_challenges: next(),
        auth_stale: next(),
        auth_failures: next(),
        auth_malformed: next(),
        auth_forbidden: next(),
        auth_reloads: next(),
        next_hop_changes: next(),
        ..Counters::default()
    };
    c.requests_forwarded.iter_mut().for_each(|v| *v = next());
    c.responses_forwarded.iter_mut().for_each(|v| *v = next());
    c.replies.iter_mut().for_each(|v| *v = next());
    c.drops.iter_mut().for_each(|v| *v = next());
    for k in ParseError::KINDS.iter().rev() {
        c.parse_errors.push((k, next()));
    }
    c
}

fn latency(seed: u64) -> Latency {
    let mut l = Latency::default();
    for (i, &ns) in [300, 1_500, 7_000, 2_000_000, 50_000_000]
        .iter()
        .enumerate()
    {
        for _ in 0..=(i as u64 + seed) {
            l.record(ns);
        }
    }
    l
}

/// `series -> value` of every sample line.
fn samples(text: &str) -> HashMap<&str, &str> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit_once(' ').expect("`series value`"))
        .collect()
}

fn series(f: &Family, shard: &str, i: usize) -> String {
    match &f.label {
        None => format!("{}{{shard=\"{shard}\"}}", f.name),
        Some(l) => format!(
            "{}{{shard=\"{shard}\",{}=\"{}\"}}",
            f.name,
            l.name,
            (l.value)(i)
        ),
    }
}

#[test]
fn names_and_label_values_are_unique() {
    let mut names = HashSet::new();
    for f in FAMILIES {
        assert!(f.name.starts_with("sipshard_"), "{}", f.name);
        assert!(names.insert(f.name), "duplicate family {}", f.name);
        if f.kind == Kind::Histogram {
            for suffix in ["_bucket", "_sum", "_count"] {
                assert!(names.insert(Box::leak(format!("{}{suffix}", f.name).into())));
            }
        }
        if let Some(l) = &f.label {
            assert_ne!(l.name, "shard", "{}", f.name);
            let values: HashSet<_> = (0..l.count).map(|i| (l.value)(i)).collect();
            assert_eq!(
                values.len(),
                l.count,
                "duplicate label values in {}",
                f.name
            );
        }
        // Counters end in _total; gauges and histograms do not (Prometheus naming).
        assert_eq!(
            f.kind == Kind::Counter,
            f.name.ends_with("_total"),
            "{}",
            f.name
        );
    }
}

#[test]
fn label_values_are_todays() {
    let values = |name: &str| -> Vec<String> {
        let f = FAMILIES.iter().find(|f| f.name == name).unwrap();
        let l = f.label.as_ref().unwrap();
        (0..l.count).map(|i| (l.value)(i).into_owned()).collect()
    };
    let methods: Vec<_> = METHODS.iter().map(|m| m.as_str()).collect();
    assert_eq!(values("sipshard_requests_forwarded_total"), methods);
    assert_eq!(
        values("sipshard_responses_forwarded_total"),
        ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"]
    );
    let statuses: Vec<_> = (100..700).map(|s: u16| s.to_string()).collect();
    assert_eq!(values("sipshard_replies_total"), statuses);
    let reasons: Vec<_> = DropReason::ALL.iter().map(|r| r.name()).collect();
    assert_eq!(values("sipshard_drops_total"), reasons);
    assert_eq!(values("sipshard_parse_errors_total"), ParseError::KINDS);
    assert_eq!(
        values("sipshard_registrations_total"),
        ["added", "refreshed", "removed", "expired"]
    );
    assert_eq!(
        values("sipshard_replication_messages_total"),
        ["sent", "received"]
    );
    for transport in ["tcp", "tls"] {
        assert_eq!(
            values(&format!("sipshard_{transport}_handoffs_total")),
            [
                "handed",
                "ring_full",
                "unsent",
                "queue_full",
                "announcement_ring_full",
                "announcement_learned"
            ]
        );
    }
    assert_eq!(
        values("sipshard_nat_total"),
        crate::counters::NatCounters::EVENTS
    );
    assert_eq!(
        values("sipshard_hep_total"),
        ["captured", "sent", "too_large", "send_failed"]
    );
    assert_eq!(
        values("sipshard_auth_total"),
        [
            "ok",
            "challenge",
            "stale",
            "failure",
            "malformed",
            "forbidden"
        ]
    );
}

#[test]
fn the_block_has_one_slot_per_value() {
    assert_eq!(slots(), FAMILIES.iter().map(Family::width).sum::<usize>());
    assert_eq!(Published::default().snapshot().len(), slots());
}

#[test]
fn publish_then_render_round_trips_every_series() {
    let (c0, c1) = (filled(1), filled(2));
    let (l0, l1) = (latency(0), latency(3));
    let (a, b) = (
        Arc::new(Published::default()),
        Arc::new(Published::default()),
    );
    a.publish(&c0, &l0, 20, 7);
    b.publish(&c1, &l1, 19, 7);
    let text = render(&[a, b]);
    let got = samples(&text);
    let sources = [
        Source {
            counters: &c0,
            latency: &l0,
            bindings: 20,
            aors: 7,
        },
        Source {
            counters: &c1,
            latency: &l1,
            bindings: 19,
            aors: 7,
        },
    ];
    let mut expected = 0;
    for f in FAMILIES {
        assert!(
            text.contains(&format!(
                "# HELP {} {}\n# TYPE {} {}\n",
                f.name,
                f.help,
                f.name,
                f.kind.as_str()
            )),
            "{}",
            f.name
        );
        if f.kind == Kind::Histogram {
            continue;
        }
        for i in 0..f.width() {
            let per_shard: Vec<u64> = sources.iter().map(|s| (f.read)(s, i)).collect();
            let node = match f.node {
                Node::Sum => per_shard.iter().sum(),
                Node::Max => *per_shard.iter().max().unwrap(),
            };
            for (shard, v) in [("0", per_shard[0]), ("1", per_shard[1]), ("total", node)] {
                let s = series(f, shard, i);
                assert_eq!(got.get(s.as_str()), Some(&v.to_string().as_str()), "{s}");
                expected += 1;
            }
        }
    }
    // Histogram: 12 buckets, _sum and _count per shard and for the node.
    let h = LATENCY_BUCKETS_NS.len() + 2;
    assert_eq!(
        got.len(),
        expected + 3 * h,
        "series rendered but not declared"
    );
    let count = |shard: &str| {
        got[format!("sipshard_processing_seconds_count{{shard=\"{shard}\"}}").as_str()]
    };
    assert_eq!(count("0"), l0.count.to_string());
    assert_eq!(count("total"), (l0.count + l1.count).to_string());
    // Buckets are cumulative; +Inf is the count.
    let inf = |shard: &str| {
        got[format!("sipshard_processing_seconds_bucket{{shard=\"{shard}\",le=\"+Inf\"}}").as_str()]
    };
    assert_eq!(inf("1"), l1.count.to_string());
    assert_eq!(
        got["sipshard_processing_seconds_bucket{shard=\"0\",le=\"0.000002\"}"],
        "3" // 300 ns once, 1,500 ns twice
    );
    assert_eq!(
        got["sipshard_processing_seconds_sum{shard=\"0\"}"],
        (l0.sum_ns as f64 / 1e9).to_string()
    );
}

#[test]
fn replicated_gauges_are_the_nodes_value_not_a_sum() {
    let shards: Vec<_> = [(20, 5), (20, 5), (18, 4)]
        .into_iter()
        .map(|(bindings, aors)| {
            let p = Arc::new(Published::default());
            p.publish(&Counters::default(), &Latency::default(), bindings, aors);
            p
        })
        .collect();
    let text = render(&shards);
    assert!(text.contains("sipshard_bindings{shard=\"2\"} 18\n"));
    assert!(text.contains("sipshard_bindings{shard=\"total\"} 20\n"));
    assert!(text.contains("sipshard_aors{shard=\"total\"} 5\n"));
    for f in FAMILIES {
        // Only the location table's gauges are replicated; everything else is per shard.
        let replicated = matches!(f.name, "sipshard_bindings" | "sipshard_aors");
        assert_eq!(f.node == Node::Max, replicated, "{}", f.name);
    }
}

#[test]
fn replies_are_rendered_only_when_sent() {
    let mut c = Counters::default();
    c.reply(404);
    c.reply(404);
    let p = Arc::new(Published::default());
    p.publish(&c, &Latency::default(), 0, 0);
    let text = render(&[p]);
    let replies: Vec<_> = text
        .lines()
        .filter(|l| l.starts_with("sipshard_replies_total{"))
        .collect();
    assert_eq!(
        replies,
        [
            "sipshard_replies_total{shard=\"0\",status=\"404\"} 2",
            "sipshard_replies_total{shard=\"total\",status=\"404\"} 2"
        ]
    );
}

#[test]
fn renders_per_shard_and_total() {
    let a = Arc::new(Published::default());
    let b = Arc::new(Published::default());
    let mut c = Counters {
        datagrams_received: 5,
        next_hop_changes: 1,
        ..Counters::default()
    };
    c.reply(404);
    c.drop(DropReason::StrayResponse);
    c.parse_error(ParseError::TruncatedBody);
    let mut lat = Latency::default();
    lat.record(1_500);
    a.publish(&c, &lat, 3, 2);
    c.datagrams_received = 7;
    b.publish(&c, &Latency::default(), 3, 2);
    let text = render(&[a, b]);
    assert!(text.contains("sipshard_datagrams_received_total{shard=\"0\"} 5\n"));
    assert!(text.contains("sipshard_datagrams_received_total{shard=\"total\"} 12\n"));
    assert!(text.contains("sipshard_replies_total{shard=\"total\",status=\"404\"} 2\n"));
    assert!(text.contains("sipshard_drops_total{shard=\"1\",reason=\"stray_response\"} 1\n"));
    assert!(text.contains("sipshard_parse_errors_total{shard=\"0\",kind=\"truncated_body\"} 1\n"));
    assert!(text.contains("sipshard_processing_seconds_bucket{shard=\"0\",le=\"0.000002\"} 1\n"));
    // Both shards hold the same 3 bindings: the node has 3, not 6.
    assert!(text.contains("sipshard_bindings{shard=\"total\"} 3\n"));
    assert!(text.contains("sipshard_next_hop_changes_total{shard=\"total\"} 2\n"));
}

#[test]
fn exit_log_lines_keep_their_wording() {
    let c = filled(3);
    // The lines as the runtime wrote them before they were derived from the table: tests and
    // log pipelines parse them.
    assert_eq!(
        log_line(Line::Traffic, &c),
        format!(
            "{} received, {} sent, {} replies, {} dropped",
            c.datagrams_received,
            c.datagrams_sent,
            // Statuses below 100 are never counted (the proxy replies with SIP statuses).
            c.replies[100..].iter().sum::<u64>(),
            c.drops.iter().sum::<u64>()
        )
    );
    assert_eq!(
        log_line(Line::Auth, &c),
        format!(
            "auth {} ok, {} challenges, {} stale, {} failed, {} malformed, {} forbidden, {} reloads",
            c.auth_ok,
            c.auth_challenges,
            c.auth_stale,
            c.auth_failures,
            c.auth_malformed,
            c.auth_forbidden,
            c.auth_reloads
        )
    );
    assert_eq!(
        log_line(Line::NextHops, &c),
        format!("next hop changes: {}", c.next_hop_changes)
    );
    assert_eq!(
        log_line(Line::Traffic, &Counters::default()),
        "0 received, 0 sent, 0 replies, 0 dropped"
    );
}

#[test]
fn logged_families_are_counters_with_a_word_per_value() {
    for f in FAMILIES {
        match f.log {
            Log::No => continue,
            Log::Total(..) => {}
            Log::Each(_, words) => assert_eq!(Some(words.len()), f.label.as_ref().map(|l| l.count)),
        }
        // log_line reads counters only (the gauges and the histogram are not at hand at exit).
        assert_eq!(f.kind, Kind::Counter, "{}", f.name);
    }
    for line in Line::ALL {
        assert!(!log_line(line, &Counters::default()).is_empty());
    }
}
