//! Hygiene under abuse: per-source flood protection and binding limits.

use std::time::Duration;

use sipshard_testkit::sip::header;
use sipshard_testkit::ua::register;
use sipshard_testkit::{Proxy, Ua};

fn message(ua: &Ua, to_user: &str, i: usize) -> String {
    format!(
        "MESSAGE sip:{to_user}@example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKf{i}\nMax-Forwards: 70\nFrom: <sip:a@example.org>;tag=t\nTo: <sip:{to_user}@example.com>\nCall-ID: flood-{i}@{me}\nCSeq: 1 MESSAGE\n\nx",
        me = ua.addr
    )
}

/// A source over its rate is cut off for the cool-down; another source keeps being served.
#[test]
fn a_flooding_source_is_cut_off_while_others_are_served() {
    let mut p = Proxy::start(&[
        "--domain",
        "example.com",
        "--shards",
        "1",
        "--pike",
        "50",
        "--pike-cooldown",
        "5",
    ]);
    let (bob, flooder) = (Ua::new(), Ua::new());
    // A separate IP for the well-behaved source: 127.0.0.2 is loopback too.
    let good = {
        let sock = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
        let addr = sock.local_addr().unwrap();
        Ua { sock, addr }
    };
    let r = register(
        &good,
        p.addr,
        "bob",
        "example.com",
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    // 300 requests at once from 127.0.0.1: at most 50 per second get through.
    for i in 0..300 {
        flooder.send(p.addr, &message(&flooder, "bob", i));
    }
    let mut delivered = 0;
    while bob.recv_within(Duration::from_millis(300)).is_some() {
        delivered += 1;
    }
    assert!(
        (40..=60).contains(&delivered),
        "{delivered} of 300 flooded requests delivered"
    );
    // Still blocked after the burst; the other source is served.
    flooder.send(p.addr, &message(&flooder, "bob", 1000));
    bob.expect_silence(Duration::from_millis(200));
    good.send(p.addr, &message(&good, "bob", 2000));
    assert!(bob.recv().contains("Call-ID: flood-2000@"));
    let log = p.stop();
    assert!(
        log.contains("pike: 127.0.0.1 exceeded its request rate; blocked"),
        "{log}"
    );
    assert_eq!(
        log.matches("pike: 127.0.0.1").count(),
        1,
        "logged once per block: {log}"
    );
}

#[test]
fn binding_limits_are_enforced_with_clear_replies() {
    let p = Proxy::start(&[
        "--domain",
        "example.com",
        "--max-bindings-per-aor",
        "2",
        "--max-bindings",
        "3",
    ]);
    let ua = Ua::new();
    let r = register(
        &ua,
        p.addr,
        "a",
        "example.com",
        "<sip:a1@192.0.2.1>, <sip:a2@192.0.2.1>",
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let r = register(&ua, p.addr, "a", "example.com", "<sip:a3@192.0.2.1>", 2, "");
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden - Too Many Contacts"),
        "{r}"
    );
    // Replacing one is fine: remove a2, add a3 in one request.
    let r = register(
        &ua,
        p.addr,
        "a",
        "example.com",
        "<sip:a2@192.0.2.1>;expires=0, <sip:a3@192.0.2.1>",
        3,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let r = register(&ua, p.addr, "b", "example.com", "<sip:b1@192.0.2.1>", 1, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let r = register(&ua, p.addr, "c", "example.com", "<sip:c1@192.0.2.1>", 1, "");
    assert!(
        r.starts_with("SIP/2.0 503 Service Unavailable - Location Table Full"),
        "{r}"
    );
    assert_eq!(header(&r, "Retry-After"), "60");
}
