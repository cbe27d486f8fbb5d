//! Reading sipshard's `--metrics` endpoint: one GET, and one series' value out of the text.
//! The proxy's tests check its counters against the traffic they sent; the load generator's
//! overload test reads what the proxy shed.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The whole HTTP response to `GET /metrics`; panics unless it is a 200.
pub fn scrape(addr: SocketAddr) -> String {
    let mut s = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
    out
}

/// The value of `series` (name and labels exactly as printed); panics when it is absent.
pub fn value(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

/// Assert that the endpoint shows every line of `want` within 3 s: shards publish their
/// counters on a housekeeping tick, so a count lags what was just sent. Fails with the last
/// scrape.
pub fn assert_shows(addr: SocketAddr, want: &[&str]) {
    let mut text = String::new();
    let shown = crate::eventually(Duration::from_secs(3), || {
        text = scrape(addr);
        want.iter().all(|w| text.contains(w))
    });
    assert!(shown, "expected {want:?} in:\n{text}");
}
