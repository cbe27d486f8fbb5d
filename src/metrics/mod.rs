//! Publishing shard counters to the metrics endpoint without touching the packet path.
//!
//! Each shard owns a [`Published`] block of atomics that only it writes, with relaxed stores,
//! from its housekeeping tick (every 200 ms), copying its plain counters. The HTTP server
//! (`--metrics ADDR`, a thread of its own) reads the blocks with relaxed loads and renders the
//! Prometheus text format. A scrape therefore sees each shard as of its last tick.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::counters::{Counters, DropReason, METHODS};
use crate::sip::ParseError;

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

// Layout of the published block.
const DGRAMS_IN: usize = 0;
const DGRAMS_OUT: usize = 1;
const REQ_FWD: usize = 2;
const RESP_FWD: usize = REQ_FWD + METHODS.len();
const REPLIES: usize = RESP_FWD + 7;
const DROPS: usize = REPLIES + 700;
const PARSE: usize = DROPS + DropReason::ALL.len();
const REG: usize = PARSE + ParseError::KINDS.len();
const REPL: usize = REG + 4;
const AUTH: usize = REPL + 2;
const AUTH_RESULTS: [&str; 6] = [
    "ok",
    "challenge",
    "stale",
    "failure",
    "malformed",
    "forbidden",
];
const NEXT_HOP: usize = AUTH + AUTH_RESULTS.len();
const GAUGES: usize = NEXT_HOP + 1;
const LAT: usize = GAUGES + 2;
const LAT_SUM: usize = LAT + LATENCY_BUCKETS_NS.len();
const LEN: usize = LAT_SUM + 2;

/// One shard's published counters.
pub struct Published {
    v: Box<[AtomicU64]>,
}

impl Default for Published {
    fn default() -> Self {
        Published {
            v: (0..LEN).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl Published {
    fn set(&self, i: usize, x: u64) {
        self.v[i].store(x, Ordering::Relaxed);
    }

    fn get(&self, i: usize) -> u64 {
        self.v[i].load(Ordering::Relaxed)
    }

    /// Copy a shard's counters (called by the owning shard only).
    pub fn publish(&self, c: &Counters, lat: &Latency, bindings: usize, aors: usize) {
        self.set(DGRAMS_IN, c.datagrams_received);
        self.set(DGRAMS_OUT, c.datagrams_sent);
        for (i, &n) in c.requests_forwarded.iter().enumerate() {
            self.set(REQ_FWD + i, n);
        }
        for (i, &n) in c.responses_forwarded.iter().enumerate() {
            self.set(RESP_FWD + i, n);
        }
        for (i, &n) in c.replies.iter().enumerate() {
            self.set(REPLIES + i, n);
        }
        for (i, &n) in c.drops.iter().enumerate() {
            self.set(DROPS + i, n);
        }
        for &(kind, n) in &c.parse_errors {
            if let Some(i) = ParseError::KINDS.iter().position(|k| *k == kind) {
                self.set(PARSE + i, n);
            }
        }
        for (i, n) in [
            c.registrations_added,
            c.registrations_refreshed,
            c.registrations_removed,
            c.registrations_expired,
        ]
        .into_iter()
        .enumerate()
        {
            self.set(REG + i, n);
        }
        self.set(REPL, c.replication_sent);
        self.set(REPL + 1, c.replication_received);
        for (i, n) in [
            c.auth_ok,
            c.auth_challenges,
            c.auth_stale,
            c.auth_failures,
            c.auth_malformed,
            c.auth_forbidden,
        ]
        .into_iter()
        .enumerate()
        {
            self.set(AUTH + i, n);
        }
        self.set(NEXT_HOP, c.next_hop_changes);
        self.set(GAUGES, bindings as u64);
        self.set(GAUGES + 1, aors as u64);
        for (i, &n) in lat.buckets.iter().enumerate() {
            self.set(LAT + i, n);
        }
        self.set(LAT_SUM, lat.sum_ns);
        self.set(LAT_SUM + 1, lat.count);
    }

    fn snapshot(&self) -> Vec<u64> {
        (0..LEN).map(|i| self.get(i)).collect()
    }
}

/// Render every shard (label `shard="N"`) and the sum (`shard="total"`) in the Prometheus text
/// exposition format, version 0.0.4.
pub fn render(shards: &[Arc<Published>]) -> String {
    let snaps: Vec<Vec<u64>> = shards.iter().map(|s| s.snapshot()).collect();
    let mut total = vec![0u64; LEN];
    for s in &snaps {
        for (t, v) in total.iter_mut().zip(s) {
            *t += v;
        }
    }
    let mut rows: Vec<(String, &Vec<u64>)> = snaps
        .iter()
        .enumerate()
        .map(|(i, s)| (i.to_string(), s))
        .collect();
    rows.push(("total".into(), &total));
    let mut out = String::with_capacity(16 * 1024);
    let mut family =
        |name: &str, kind: &str, help: &str, series: &mut dyn FnMut(&mut String, &str, &[u64])| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (shard, v) in &rows {
                series(&mut out, shard, v);
            }
        };
    family(
        "sipshard_datagrams_received_total",
        "counter",
        "UDP datagrams received.",
        &mut |o, sh, v| {
            let _ = writeln!(
                o,
                "sipshard_datagrams_received_total{{shard=\"{sh}\"}} {}",
                v[DGRAMS_IN]
            );
        },
    );
    family(
        "sipshard_datagrams_sent_total",
        "counter",
        "UDP datagrams sent (forwarded or replies).",
        &mut |o, sh, v| {
            let _ = writeln!(
                o,
                "sipshard_datagrams_sent_total{{shard=\"{sh}\"}} {}",
                v[DGRAMS_OUT]
            );
        },
    );
    family(
        "sipshard_requests_forwarded_total",
        "counter",
        "Requests forwarded, by method.",
        &mut |o, sh, v| {
            for (i, m) in METHODS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "sipshard_requests_forwarded_total{{shard=\"{sh}\",method=\"{}\"}} {}",
                    m.as_str(),
                    v[REQ_FWD + i]
                );
            }
        },
    );
    family(
        "sipshard_responses_forwarded_total",
        "counter",
        "Responses forwarded, by class.",
        &mut |o, sh, v| {
            for class in 1..=6 {
                let _ = writeln!(
                    o,
                    "sipshard_responses_forwarded_total{{shard=\"{sh}\",class=\"{class}xx\"}} {}",
                    v[RESP_FWD + class]
                );
            }
        },
    );
    family(
        "sipshard_replies_total",
        "counter",
        "Replies generated by the proxy, by status.",
        &mut |o, sh, v| {
            for status in 100..700 {
                if v[REPLIES + status] > 0 {
                    let _ = writeln!(
                        o,
                        "sipshard_replies_total{{shard=\"{sh}\",status=\"{status}\"}} {}",
                        v[REPLIES + status]
                    );
                }
            }
        },
    );
    family(
        "sipshard_drops_total",
        "counter",
        "Datagrams dropped without an answer, by reason.",
        &mut |o, sh, v| {
            for (i, r) in DropReason::ALL.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "sipshard_drops_total{{shard=\"{sh}\",reason=\"{}\"}} {}",
                    r.name(),
                    v[DROPS + i]
                );
            }
        },
    );
    family(
        "sipshard_parse_errors_total",
        "counter",
        "Messages that failed to parse or validate, by kind.",
        &mut |o, sh, v| {
            for (i, k) in ParseError::KINDS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "sipshard_parse_errors_total{{shard=\"{sh}\",kind=\"{k}\"}} {}",
                    v[PARSE + i]
                );
            }
        },
    );
    family(
        "sipshard_registrations_total",
        "counter",
        "Binding changes made by REGISTER or expiry.",
        &mut |o, sh, v| {
            for (i, e) in ["added", "refreshed", "removed", "expired"]
                .iter()
                .enumerate()
            {
                let _ = writeln!(
                    o,
                    "sipshard_registrations_total{{shard=\"{sh}\",event=\"{e}\"}} {}",
                    v[REG + i]
                );
            }
        },
    );
    family(
        "sipshard_replication_messages_total",
        "counter",
        "Location changes exchanged between shards.",
        &mut |o, sh, v| {
            let _ = writeln!(
                o,
                "sipshard_replication_messages_total{{shard=\"{sh}\",direction=\"sent\"}} {}",
                v[REPL]
            );
            let _ = writeln!(
                o,
                "sipshard_replication_messages_total{{shard=\"{sh}\",direction=\"received\"}} {}",
                v[REPL + 1]
            );
        },
    );
    family(
        "sipshard_next_hop_changes_total",
        "counter",
        "Next-hop state changes (down or up, from the OPTIONS prober) applied by the shard.",
        &mut |o, sh, v| {
            let _ = writeln!(
                o,
                "sipshard_next_hop_changes_total{{shard=\"{sh}\"}} {}",
                v[NEXT_HOP]
            );
        },
    );
    family(
        "sipshard_auth_total",
        "counter",
        "Digest authentication outcomes.",
        &mut |o, sh, v| {
            for (i, r) in AUTH_RESULTS.iter().enumerate() {
                let _ = writeln!(
                    o,
                    "sipshard_auth_total{{shard=\"{sh}\",result=\"{r}\"}} {}",
                    v[AUTH + i]
                );
            }
        },
    );
    family(
        "sipshard_bindings",
        "gauge",
        "Live bindings in the shard's location table.",
        &mut |o, sh, v| {
            let _ = writeln!(o, "sipshard_bindings{{shard=\"{sh}\"}} {}", v[GAUGES]);
        },
    );
    family(
        "sipshard_aors",
        "gauge",
        "Addresses of record in the shard's location table.",
        &mut |o, sh, v| {
            let _ = writeln!(o, "sipshard_aors{{shard=\"{sh}\"}} {}", v[GAUGES + 1]);
        },
    );
    family(
        "sipshard_processing_seconds",
        "histogram",
        "Time spent deciding and rewriting one datagram (1 in 64 sampled).",
        &mut |o, sh, v| {
            let mut cum = 0;
            for (i, &b) in LATENCY_BUCKETS_NS.iter().enumerate() {
                cum += v[LAT + i];
                if b == u64::MAX {
                    let _ = writeln!(
                        o,
                        "sipshard_processing_seconds_bucket{{shard=\"{sh}\",le=\"+Inf\"}} {cum}"
                    );
                } else {
                    let _ = writeln!(
                        o,
                        "sipshard_processing_seconds_bucket{{shard=\"{sh}\",le=\"{}\"}} {cum}",
                        b as f64 / 1e9
                    );
                }
            }
            let _ = writeln!(
                o,
                "sipshard_processing_seconds_sum{{shard=\"{sh}\"}} {}",
                v[LAT_SUM] as f64 / 1e9
            );
            let _ = writeln!(
                o,
                "sipshard_processing_seconds_count{{shard=\"{sh}\"}} {}",
                v[LAT_SUM + 1]
            );
        },
    );
    out
}

/// Serve `GET /metrics` on `addr` from a thread of its own. Returns the bound address.
pub fn serve(addr: SocketAddr, shards: Vec<Arc<Published>>) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)?;
    let bound = listener.local_addr()?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            for conn in listener.incoming().flatten() {
                if let Err(e) = answer(conn, &shards) {
                    log::debug!("metrics: {e}");
                }
            }
        })?;
    Ok(bound)
}

fn answer(mut conn: TcpStream, shards: &[Arc<Published>]) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = [0u8; 8192];
    let mut len = 0;
    let path_ok = loop {
        let n = conn.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break req.method == Some("GET")
                    && req
                        .path
                        .is_some_and(|p| p == "/metrics" || p.starts_with("/metrics?"));
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => {
                conn.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )?;
                return Ok(());
            }
        }
    };
    if !path_ok {
        conn.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return Ok(());
    }
    let body = render(shards);
    write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )?;
    conn.write_all(body.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            text.contains("sipshard_parse_errors_total{shard=\"0\",kind=\"truncated_body\"} 1\n")
        );
        assert!(
            text.contains("sipshard_processing_seconds_bucket{shard=\"0\",le=\"0.000002\"} 1\n")
        );
        assert!(text.contains("sipshard_bindings{shard=\"total\"} 6\n"));
        assert!(text.contains("sipshard_next_hop_changes_total{shard=\"total\"} 2\n"));
    }
}
