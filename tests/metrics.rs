//! `--metrics`: the Prometheus endpoint, scraped during a short load, agrees with what was sent.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use sipshard_testkit::scrape::{scrape, value};
use sipshard_testkit::ua::register;
use sipshard_testkit::{free_port, Proxy, Ua};

#[test]
fn counters_match_the_traffic_sent() {
    let mport = free_port();
    let maddr: SocketAddr = format!("127.0.0.1:{mport}").parse().unwrap();
    let p = Proxy::start(&[
        "--domain",
        "example.com",
        "--shards",
        "2",
        "--metrics",
        &maddr.to_string(),
    ]);
    let (ua, bob) = (Ua::new(), Ua::new());
    for i in 0..20 {
        let r = register(
            &ua,
            p.addr,
            &format!("u{i}"),
            "example.com",
            &format!("<sip:u{i}@{}>", bob.addr),
            1,
            "",
        );
        assert!(r.starts_with("SIP/2.0 200"));
    }
    for i in 0..30 {
        ua.send(p.addr, &format!(
            "MESSAGE sip:u{}@example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKm{i}\nMax-Forwards: 70\nFrom: <sip:a@example.org>;tag=t\nTo: <sip:u{}@example.com>\nCall-ID: m{i}\nCSeq: 1 MESSAGE\n\nhello", i % 20, i % 20, me = ua.addr));
        assert!(bob.recv().starts_with("MESSAGE "));
    }
    for i in 0..5 {
        ua.send(p.addr, &format!(
            "MESSAGE sip:nobody@example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKn{i}\nMax-Forwards: 70\nFrom: <sip:a@example.org>;tag=t\nTo: <sip:nobody@example.com>\nCall-ID: n{i}\nCSeq: 1 MESSAGE\n\n", me = ua.addr));
        assert!(ua.recv().starts_with("SIP/2.0 480"));
    }
    ua.send_raw(
        p.addr,
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\r\n",
    );
    // Counters are published every 200 ms.
    std::thread::sleep(Duration::from_millis(500));
    let text = scrape(maddr);
    // The readiness probe's OPTIONS also counts, so compare what is certain.
    assert_eq!(
        value(
            &text,
            "sipshard_requests_forwarded_total{shard=\"total\",method=\"MESSAGE\"}"
        ),
        30
    );
    assert_eq!(
        value(
            &text,
            "sipshard_replies_total{shard=\"total\",status=\"480\"}"
        ),
        5
    );
    assert_eq!(
        value(
            &text,
            "sipshard_registrations_total{shard=\"total\",event=\"added\"}"
        ),
        20
    );
    assert_eq!(
        value(
            &text,
            "sipshard_drops_total{shard=\"total\",reason=\"stray_response\"}"
        ),
        1
    );
    // Both shards hold all 20 bindings.
    assert_eq!(value(&text, "sipshard_bindings{shard=\"0\"}"), 20);
    assert_eq!(value(&text, "sipshard_bindings{shard=\"1\"}"), 20);
    let received = value(&text, "sipshard_datagrams_received_total{shard=\"total\"}");
    assert!(
        (20 + 30 + 5 + 1..=20 + 30 + 5 + 1 + 50).contains(&received),
        "{received}"
    );
    // Anything but GET /metrics is refused.
    let mut s = TcpStream::connect(maddr).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 404"), "{out}");
}
