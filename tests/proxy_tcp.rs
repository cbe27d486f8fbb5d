//! SIP over TCP through the real binary, over real loopback sockets: framing (pipelined,
//! split to single bytes, keep-alive pings), the hostile-stream limits (missing Content-Length,
//! too large, slowloris, idle, per-IP), connection reuse for a UA that registered over TCP
//! (whichever shard the call arrives on), requests for the address a UA connects from going
//! down its connection from every shard until it closes, responses going back on the
//! connection their request came in on, and nothing logged per message at `--log-level info`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipshard_testkit::peers::sipp::{finish_calls, Agent, Scenario};
use sipshard_testkit::peers::{self, require};
use sipshard_testkit::scrape::{assert_shows, scrape, value};
use sipshard_testkit::{eventually, free_port, tail, Got, Proxy, Scratch, SipClient, TcpUa, Ua};

fn options(to: SocketAddr, via: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\nVia: SIP/2.0/TCP {via};branch=z9hG4bK{branch}\nFrom: <sip:a@example.com>;tag=o\nTo: <sip:{to}>\nCall-ID: {branch}\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n"
    )
}

/// REGISTER bob over `ua`'s connection with a contact that no one listens on: only the
/// connection itself reaches him.
fn register_over_tcp(ua: &mut TcpUa, proxy: SocketAddr, user: &str) {
    ua.send(&format!(
        "REGISTER sip:{proxy} SIP/2.0\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKreg{user}\nFrom: <sip:{user}@{proxy}>;tag=r\nTo: <sip:{user}@{proxy}>\nCall-ID: reg-{user}\nCSeq: 1 REGISTER\nContact: <sip:{user}@127.0.0.1:9;transport=tcp>\nMax-Forwards: 70\n\n"
    ));
    let reply = ua.recv();
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
}

/// REGISTER `user` over UDP from `ua`, with `ua`'s own address as the contact.
fn register_over_udp(ua: &Ua, proxy: SocketAddr, user: &str) {
    let contact = format!("<sip:{user}@{}>", ua.addr);
    let domain = proxy.to_string();
    let reg = sipshard_testkit::ua::register(ua, proxy, user, &domain, &contact, 1, "");
    assert!(reg.starts_with("SIP/2.0 200"), "{reg}");
}

/// A 200 OK for `request`: its Via, From, To (tagged), Call-ID and CSeq.
fn ok_for(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\n");
    for line in request.lines() {
        let name = line.split(':').next().unwrap_or("");
        match name {
            "Via" | "From" | "Call-ID" | "CSeq" => out.push_str(&format!("{line}\n")),
            "To" => out.push_str(&format!("{line};tag=callee\n")),
            _ => {}
        }
    }
    out.push('\n');
    out
}

#[test]
fn calls_reach_a_ua_over_the_connection_it_registered_on_from_every_shard() {
    calls_reach_a_ua_over_the_connection_it_registered_on_from_every_shard_with("multishot");
}

#[test]
fn calls_reach_a_ua_over_the_connection_it_registered_on_from_every_shard_over_stream_reads() {
    calls_reach_a_ua_over_the_connection_it_registered_on_from_every_shard_with("stream");
}

fn calls_reach_a_ua_over_the_connection_it_registered_on_from_every_shard_with(receive: &str) {
    let proxy = Proxy::start(&["--tcp-receive", receive, "--shards", "2"]);
    let mut bob = TcpUa::connect(proxy.addr);
    register_over_tcp(&mut bob, proxy.addr, "bob");
    // Callers from many source ports: the kernel's hash sends some to each shard, and the
    // shard that does not own bob's connection hands the INVITE to the one that does.
    for i in 0..16 {
        let alice = Ua::new();
        alice.send(proxy.addr, &format!(
            "INVITE sip:bob@{p} SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKinv{i};rport\nFrom: <sip:alice@example.com>;tag=a{i}\nTo: <sip:bob@{p}>\nCall-ID: call-{i}\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
            p = proxy.addr,
            a = alice.addr
        ));
        let inv = bob.recv();
        assert!(
            inv.starts_with("INVITE sip:bob@127.0.0.1:9;transport=tcp SIP/2.0"),
            "call {i}: {inv}"
        );
        assert!(
            inv.contains(&format!("Via: SIP/2.0/TCP {}", proxy.addr)),
            "call {i}: {inv}"
        );
        bob.send(&ok_for(&inv));
        let ok = alice.recv();
        assert!(ok.starts_with("SIP/2.0 200 OK"), "call {i}: {ok}");
        assert!(ok.contains(&format!("Call-ID: call-{i}")), "call {i}: {ok}");
    }
}

/// A BYE from `alice` for the address `bob` connects from, routed through `proxy` as our
/// Record-Route brings an in-dialog request back.
fn bye_to(bob: SocketAddr, proxy: SocketAddr, alice: SocketAddr, i: usize) -> String {
    format!(
        "BYE sip:bob@{bob};transport=tcp SIP/2.0\nVia: SIP/2.0/UDP {alice};branch=z9hG4bKbye{i};rport\nRoute: <sip:{proxy};transport=tcp;lr>\nFrom: <sip:alice@example.com>;tag=a{i}\nTo: <sip:bob@example.com>;tag=b{i}\nCall-ID: from-address-{i}\nCSeq: 2 BYE\nMax-Forwards: 70\n\n"
    )
}

/// An in-dialog request for the address a UA connects from (a softphone's Contact can be its
/// connection's own address, which accepts nothing) goes down the UA's connection from
/// whichever shard it arrives on: the shard that accepted the connection announced it to the
/// other. Once the connection closes it is withdrawn, and nothing more is handed over on its
/// account.
#[test]
fn a_request_for_the_address_a_ua_connects_from_goes_down_its_connection_until_it_closes() {
    let proxy = Proxy::builder().metrics().args(&["--shards", "2"]).start();
    let metrics = proxy.metrics.expect("metrics");
    let total = |series: &str| value(&scrape(metrics), series);
    let handed = "sipshard_tcp_handoffs_total{shard=\"total\",result=\"handed\"}";
    let event =
        |e: &str| format!("sipshard_tcp_connection_events_total{{shard=\"total\",event=\"{e}\"}}");
    let mut bob = TcpUa::connect(proxy.addr);
    bob.send(&options(proxy.addr, "127.0.0.1:9", "up"));
    let up = bob.recv();
    assert!(up.starts_with("SIP/2.0 200"), "{up}");
    let bob_at = bob.addr;
    // From many source ports: the kernel's hash sends some to each shard.
    for i in 0..16 {
        let alice = Ua::new();
        alice.send(proxy.addr, &bye_to(bob_at, proxy.addr, alice.addr, i));
        let bye = bob.recv();
        let line = format!("BYE sip:bob@{bob_at};transport=tcp SIP/2.0");
        assert!(bye.starts_with(&line), "BYE {i}: {bye}");
    }
    assert!(
        eventually(Duration::from_secs(3), || (1..=16).contains(&total(handed))),
        "no BYE was handed over: {}",
        total(handed)
    );
    for (e, want) in [("accepted", 1), ("connected", 0), ("connect_failed", 0)] {
        assert_eq!(total(&event(e)), want, "{e}");
    }
    // Shards publish their counters every 200 ms: read the count once it has settled.
    let mut handed_while_open = total(handed);
    let settled = eventually(Duration::from_secs(3), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = total(handed);
        std::mem::replace(&mut handed_while_open, now) == now
    });
    assert!(settled, "the hand-off count kept moving");

    drop(bob);
    assert!(
        eventually(Duration::from_secs(3), || total(&event("closed")) == 1),
        "bob's connection is not closed"
    );
    for i in 16..32 {
        let alice = Ua::new();
        alice.send(proxy.addr, &bye_to(bob_at, proxy.addr, alice.addr, i));
    }
    // Each shard now tries a connection of its own to bob's old address, which fails.
    assert!(
        eventually(Duration::from_secs(3), || total(&event("connect_failed"))
            >= 1),
        "no connection was tried"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        total(handed),
        handed_while_open,
        "handed over after the withdrawal"
    );
    let lost = "sipshard_tcp_handoffs_total{shard=\"total\",result=\"announcement_ring_full\"}";
    assert_eq!(total(lost), 0);
}

#[test]
fn a_response_goes_back_on_the_connection_its_request_came_on() {
    let proxy = Proxy::start(&["--shards", "2"]);
    let bob = Ua::new();
    register_over_udp(&bob, proxy.addr, "bob");
    for i in 0..8 {
        let mut alice = TcpUa::connect(proxy.addr);
        alice.send(&format!(
            "INVITE sip:bob@{p} SIP/2.0\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bKt{i};rport\nFrom: <sip:alice@example.com>;tag=a{i}\nTo: <sip:bob@{p}>\nCall-ID: tcp-call-{i}\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
            p = proxy.addr
        ));
        let Some(inv) = bob.recv_within(Duration::from_secs(3)) else {
            let at = alice.addr;
            panic!(
                "bob {} got no INVITE; alice {at} got {}",
                bob.addr,
                alice.recv()
            );
        };
        assert!(
            inv.contains(&format!("Via: SIP/2.0/UDP {}", proxy.addr)),
            "{inv}"
        );
        // alice's Via learnt where she really is: her connection's port.
        let rport = format!("branch=z9hG4bKt{i};rport={}", alice.addr.port());
        assert!(inv.contains(&rport), "{inv}");
        bob.send(proxy.addr, &ok_for(&inv));
        let ok = alice.recv();
        assert!(ok.starts_with("SIP/2.0 200 OK"), "call {i}: {ok}");
        assert!(ok.contains(&format!("Call-ID: tcp-call-{i}")), "{ok}");
        let vias: Vec<&str> = ok.lines().filter(|l| l.starts_with("Via:")).collect();
        assert_eq!(vias.len(), 1, "our Via was removed: {ok}");
        assert!(vias[0].contains("127.0.0.1:5999"), "{ok}");
    }
}

/// At `--log-level info` (`-v`) sipshard logs start-up and shutdown, nothing per message
/// (docs/operations.md, docs/tuning.md): calls forwarded from TCP to UDP and their answers
/// back add no line to the log.
#[test]
fn nothing_is_logged_per_message_at_info() {
    // The kit starts every proxy at `--log-level info`.
    let proxy = Proxy::start(&["--shards", "2"]);
    let bob = Ua::new();
    register_over_udp(&bob, proxy.addr, "bob");
    // What start-up logs is all written once the log stops growing.
    let lines = || proxy.log().lines().count();
    let mut before = lines();
    let settled = eventually(Duration::from_secs(3), || {
        std::thread::sleep(Duration::from_millis(300));
        let now = lines();
        std::mem::replace(&mut before, now) == now
    });
    assert!(
        settled,
        "the log kept growing:\n{}",
        tail(&proxy.log(), 3000)
    );
    for i in 0..10 {
        let mut alice = TcpUa::connect(proxy.addr);
        alice.send(&format!(
            "INVITE sip:bob@{p} SIP/2.0\nVia: SIP/2.0/TCP {a};branch=z9hG4bKlog{i};rport\nFrom: <sip:alice@example.com>;tag=a{i}\nTo: <sip:bob@{p}>\nCall-ID: log-{i}\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
            p = proxy.addr,
            a = alice.addr
        ));
        let inv = bob.recv();
        bob.send(proxy.addr, &ok_for(&inv));
        let ok = alice.recv();
        assert!(ok.starts_with("SIP/2.0 200 OK"), "call {i}: {ok}");
    }
    let log = proxy.log();
    let added: Vec<&str> = log.lines().skip(before).collect();
    assert!(
        added.is_empty(),
        "10 calls added {} lines to the log at info:\n{}",
        added.len(),
        tail(&added.join("\n"), 3000)
    );
}

#[test]
fn pipelined_split_and_keepalive_framing() {
    pipelined_split_and_keepalive_framing_with("multishot");
}

#[test]
fn pipelined_split_and_keepalive_framing_over_stream_reads() {
    pipelined_split_and_keepalive_framing_with("stream");
}

fn pipelined_split_and_keepalive_framing_with(receive: &str) {
    let proxy = Proxy::start(&["--tcp-receive", receive, "--shards", "1"]);
    let mut ua = TcpUa::connect(proxy.addr);
    let me = ua.addr.to_string();
    // A ping, then two messages in one write.
    let two = format!(
        "{}{}",
        sipshard_testkit::sip::wire(&options(proxy.addr, &me, "p1")),
        sipshard_testkit::sip::wire(&options(proxy.addr, &me, "p2"))
    );
    ua.send_raw(format!("\r\n\r\n{two}").as_bytes());
    assert_eq!(ua.recv_within(Duration::from_secs(3)), Some(Got::Pong));
    for b in ["p1", "p2"] {
        let r = ua.recv();
        assert!(
            r.starts_with("SIP/2.0 200") && r.contains(&format!("Call-ID: {b}")),
            "{r}"
        );
    }
    // One message a byte at a time.
    let one = sipshard_testkit::sip::wire(&options(proxy.addr, &me, "p3"));
    for b in one.as_bytes() {
        ua.send_raw(&[*b]);
    }
    let r = ua.recv();
    assert!(
        r.starts_with("SIP/2.0 200") && r.contains("Call-ID: p3"),
        "{r}"
    );
}

#[test]
fn a_stream_that_cannot_be_framed_is_answered_then_closed() {
    a_stream_that_cannot_be_framed_is_answered_then_closed_with("multishot");
}

#[test]
fn a_stream_that_cannot_be_framed_is_answered_then_closed_over_stream_reads() {
    a_stream_that_cannot_be_framed_is_answered_then_closed_with("stream");
}

fn a_stream_that_cannot_be_framed_is_answered_then_closed_with(receive: &str) {
    let proxy = Proxy::start(&[
        "--tcp-receive",
        receive,
        "--shards",
        "1",
        "--max-message",
        "2000",
    ]);
    let mut ua = TcpUa::connect(proxy.addr);
    let me = ua.addr;
    ua.send_raw(format!(
        "OPTIONS sip:{p} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKnocl\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:{p}>\r\nCall-ID: nocl\r\nCSeq: 1 OPTIONS\r\n\r\n",
        p = proxy.addr
    ).as_bytes());
    let r = ua.recv();
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request - Missing Content-Length"),
        "{r}"
    );
    assert!(ua.closed_within(Duration::from_secs(3)));

    let mut ua = TcpUa::connect(proxy.addr);
    let me = ua.addr;
    ua.send_raw(format!(
        "INVITE sip:x@{p} SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKbig\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:x@{p}>\r\nCall-ID: big\r\nCSeq: 1 INVITE\r\nContent-Length: 5000\r\n\r\n",
        p = proxy.addr
    ).as_bytes());
    let r = ua.recv();
    assert!(r.starts_with("SIP/2.0 513"), "{r}");
    assert!(ua.closed_within(Duration::from_secs(3)));
    // The proxy still serves other connections and UDP.
    let mut other = TcpUa::connect(proxy.addr);
    let addr = other.addr.to_string();
    other.send(&options(proxy.addr, &addr, "after"));
    assert!(other.recv().starts_with("SIP/2.0 200"));
}

#[test]
fn slowloris_and_idle_connections_are_closed_on_time_and_counted() {
    slowloris_and_idle_connections_are_closed_on_time_and_counted_with("multishot");
}

#[test]
fn slowloris_and_idle_connections_are_closed_on_time_and_counted_over_stream_reads() {
    slowloris_and_idle_connections_are_closed_on_time_and_counted_with("stream");
}

fn slowloris_and_idle_connections_are_closed_on_time_and_counted_with(receive: &str) {
    let proxy = Proxy::builder()
        .metrics()
        .args(&[
            "--tcp-receive",
            receive,
            "--shards",
            "1",
            "--tcp-message-timeout-ms",
            "500",
            "--tcp-idle-timeout",
            "1",
        ])
        .start();
    let mut slow = TcpUa::connect(proxy.addr);
    let mut idle = TcpUa::connect(proxy.addr);
    let started = Instant::now();
    slow.send_raw(b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1;bra");
    // Meanwhile the UDP path and a well-behaved connection are served.
    let udp = Ua::new();
    let via = udp.addr.to_string();
    udp.send(
        proxy.addr,
        &options(proxy.addr, &via, "udp-meanwhile").replace("TCP", "UDP"),
    );
    assert!(udp.recv().starts_with("SIP/2.0 200"));
    assert!(
        slow.closed_within(Duration::from_secs(3)),
        "slowloris kept open"
    );
    let slow_took = started.elapsed();
    assert!(
        slow_took < Duration::from_millis(1500),
        "slowloris closed after {slow_took:?}"
    );
    assert!(idle.closed_within(Duration::from_secs(4)), "idle kept open");
    let idle_took = started.elapsed();
    assert!(
        idle_took >= Duration::from_millis(900),
        "idle closed after {idle_took:?}"
    );
    let want = [
        "sipshard_tcp_closed_total{shard=\"0\",reason=\"message_timeout\"} 1",
        "sipshard_tcp_closed_total{shard=\"0\",reason=\"idle\"} 1",
        "sipshard_tcp_connections{shard=\"0\"} 0",
    ];
    assert_shows(proxy.metrics.unwrap(), &want);
    // The bytes came the way asked for: through the receive ring, or by reads.
    let ring = value(
        &scrape(proxy.metrics.unwrap()),
        "sipshard_tcp_ring_receives_total{shard=\"0\"}",
    );
    assert_eq!(ring > 0, receive == "multishot", "ring receives: {ring}");
}

#[test]
fn connections_past_the_per_ip_limit_are_refused() {
    let proxy = Proxy::start(&["--shards", "1", "--tcp-max-connections-per-ip", "2"]);
    let mut kept: Vec<TcpUa> = (0..2).map(|_| TcpUa::connect(proxy.addr)).collect();
    for (i, ua) in kept.iter_mut().enumerate() {
        let me = ua.addr.to_string();
        ua.send(&options(proxy.addr, &me, &format!("k{i}")));
        assert!(ua.recv().starts_with("SIP/2.0 200"));
    }
    let mut third = TcpUa::connect(proxy.addr);
    assert!(
        third.closed_within(Duration::from_secs(3)),
        "a third connection was kept"
    );
    drop(kept.pop());
    // Once one closes, a new one is admitted.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let mut again = TcpUa::connect(proxy.addr);
        let me = again.addr.to_string();
        again.send(&options(proxy.addr, &me, "again"));
        if matches!(again.recv_within(Duration::from_millis(500)), Some(Got::Message(m)) if m.starts_with("SIP/2.0 200"))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no connection admitted after one closed"
        );
    }
}

/// SIPp's own uac and uas over TCP through sipshard (`-t t1`: one connection each way for every
/// call; `-t tn`: a new connection per call), and mixed: the caller on UDP, the callee on TCP.
fn sipp_calls_over_tcp(name: &str, uac_transport: &str, uas_transport: &str) {
    sipp_calls_over_tcp_reading(name, uac_transport, uas_transport, "multishot");
}

fn sipp_calls_over_tcp_reading(
    name: &str,
    uac_transport: &str,
    uas_transport: &str,
    receive: &str,
) {
    require("sipp");
    let _serial = peers::serial();
    let dir = Scratch::new(name);
    let started = Instant::now();
    let (proxy_port, uas_port, uac_port) = (free_port(), free_port(), free_port());
    let args = ["--tcp-receive", receive, "--shards", "2"];
    let mut proxy = peers::sipshard(&dir, proxy_port, &args);
    // bob's contact names TCP when his agent listens on TCP.
    let tcp_param = if uas_transport == "u1" {
        ""
    } else {
        ";transport=tcp"
    };
    let contact = format!("sip:service@127.0.0.1:{uas_port}{tcp_param}");
    let aor = format!("sip:service@{}", proxy.addr);
    let ok = SipClient::new().register(proxy.addr, &aor, &[&contact], Some(3600));
    assert_eq!(ok.status, 200, "REGISTER failed:\n{}", ok.text);
    // Every shard must know the binding before the calls start.
    assert!(eventually(Duration::from_secs(5), || (0..6).all(|_| {
        let q = SipClient::new().register(proxy.addr, &aor, &[], None);
        q.contacts().iter().any(|c| c.contains(&contact))
    })));
    let uas_args = ["-t", uas_transport];
    let uas = Agent {
        name: "uas",
        scenario: Scenario::Builtin("uas"),
        port: uas_port,
        service: "service",
        calls: SIPP_CALLS,
        remote: None,
        timeout: Duration::from_secs(60),
        extra: &uas_args,
        trace_msg: false,
    };
    let mut uas_run = uas.start(&dir);
    // `-t tn` opens a socket per call; SIPp refuses to start when its default socket budget
    // exceeds the open-file limit.
    let uac_args = ["-t", uac_transport, "-max_socket", "1000"];
    let mut uac_run = Agent {
        name: "uac",
        scenario: Scenario::Builtin("uac"),
        port: uac_port,
        remote: Some((proxy.addr, 20)),
        extra: &uac_args,
        ..uas
    }
    .start(&dir);
    let calls = finish_calls(
        name,
        started,
        &mut uac_run,
        &mut uas_run,
        Duration::from_secs(60),
    );
    let log = proxy.stop();
    calls.assert_all_succeeded(
        SIPP_CALLS,
        &format!("--- sipshard ---\n{}", tail(&log, 3000)),
    );
}

const SIPP_CALLS: u32 = 40;

#[test]
fn sipp_over_tcp_one_connection_each_way() {
    sipp_calls_over_tcp("sipp-tcp-t1", "t1", "t1");
}

#[test]
fn sipp_over_tcp_a_connection_per_call() {
    sipp_calls_over_tcp("sipp-tcp-tn", "tn", "t1");
}

#[test]
fn sipp_over_tcp_a_connection_per_call_over_stream_reads() {
    sipp_calls_over_tcp_reading("sipp-tcp-tn-stream", "tn", "t1", "stream");
}

#[test]
fn sipp_caller_on_udp_callee_on_tcp() {
    sipp_calls_over_tcp("sipp-udp-to-tcp", "u1", "t1");
}

#[test]
fn sipp_caller_on_tcp_callee_on_udp() {
    sipp_calls_over_tcp("sipp-tcp-to-udp", "t1", "u1");
}

/// A 4 KB INVITE arriving over UDP for a UA registered over UDP: too large for UDP (RFC 3261
/// section 18.1.1), it leaves over TCP when the UA listens on TCP, and over UDP after all when
/// the connection is refused.
#[test]
fn a_large_request_leaves_over_tcp_and_falls_back_to_udp_when_refused() {
    let proxy = Proxy::builder().metrics().args(&["--shards", "1"]).start();
    let body = "v=0\r\n".repeat(800);
    let invite = |user: &str, from: &Ua| {
        format!(
            "INVITE sip:{user}@{p} SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKbig{user}\nFrom: <sip:alice@example.com>;tag=a\nTo: <sip:{user}@{p}>\nCall-ID: big-{user}\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Type: application/sdp\n\n{body}",
            p = proxy.addr,
            a = from.addr
        )
    };
    let alice = Ua::new();
    // bob listens on UDP and TCP on one port.
    let bob_udp = Ua::new();
    let bob_tcp = std::net::TcpListener::bind(bob_udp.addr).expect("bob's TCP port");
    register_over_udp(&bob_udp, proxy.addr, "bob");
    alice.send(proxy.addr, &invite("bob", &alice));
    bob_tcp.set_nonblocking(false).unwrap();
    let (stream, _) = bob_tcp.accept().expect("sipshard connects to bob");
    let mut bob = TcpUa::accepted(stream);
    let inv = bob.recv();
    assert!(inv.starts_with("INVITE sip:bob@"), "{inv}");
    assert!(
        inv.contains(&format!("Via: SIP/2.0/TCP {}", proxy.addr)),
        "{inv}"
    );
    assert!(inv.len() > 4000, "the whole body: {} bytes", inv.len());
    // carol listens on UDP only: the connection is refused, the INVITE comes over UDP.
    let carol = Ua::new();
    register_over_udp(&carol, proxy.addr, "carol");
    alice.send(proxy.addr, &invite("carol", &alice));
    let inv = carol.recv();
    assert!(inv.starts_with("INVITE sip:carol@"), "{inv}");
    assert!(
        inv.contains(&format!("Via: SIP/2.0/UDP {}", proxy.addr)),
        "{inv}"
    );
    let want = [
        "sipshard_udp_mtu_transport_total{shard=\"0\",event=\"switched_to_tcp\"} 2",
        "sipshard_udp_mtu_transport_total{shard=\"0\",event=\"fell_back_to_udp\"} 1",
    ];
    assert_shows(proxy.metrics.unwrap(), &want);
}

/// sipsak, a real peer, over TCP: OPTIONS answered, and a REGISTER whose binding a query over
/// UDP then lists.
#[test]
fn sipsak_over_tcp() {
    require("sipsak");
    let _serial = peers::serial();
    let dir = Scratch::new("sipsak-tcp");
    let port = sipshard_testkit::free_low_port();
    let mut proxy = peers::sipshard(&dir, port, &["--shards", "2"]);
    let target = format!("sip:127.0.0.1:{port}");
    let (code, out) =
        peers::sipsak::run(&dir, "options", &["--transport=tcp", "-s", &target, "-vv"]);
    assert!(
        code == Some(0) && out.contains("SIP/2.0 200 OK"),
        "OPTIONS: {code:?}\n{out}"
    );
    let aor = format!("sip:carol@127.0.0.1:{port}");
    let contact = format!("sip:carol@127.0.0.1:{}", free_port());
    let args = [
        "--transport=tcp",
        "-U",
        "-s",
        &aor,
        "-C",
        &contact,
        "-x",
        "600",
        "-i",
        "-D",
        "8",
        "-vv",
    ];
    let (code, out) = peers::sipsak::run(&dir, "register", &args);
    assert_eq!(code, Some(0), "REGISTER over TCP:\n{out}");
    let listed = eventually(Duration::from_secs(2), || {
        let q = SipClient::new().register(proxy.addr, &aor, &[], None);
        q.status == 200 && q.contacts().iter().any(|c| c.contains(&contact))
    });
    assert!(
        listed,
        "{contact} not listed\n{}",
        tail(&proxy.stop(), 2000)
    );
}

/// `--route DOMAIN=tcp:HOST:PORT`: requests for a foreign domain reach the next hop over TCP,
/// and its response comes back to the UDP caller.
#[test]
fn a_static_route_over_tcp() {
    let hop = std::net::TcpListener::bind("127.0.0.1:0").expect("next hop");
    let route = format!("biloxi.example.com=tcp:{}", hop.local_addr().unwrap());
    let proxy = Proxy::start(&["--shards", "2", "--route", &route]);
    let alice = Ua::new();
    alice.send(
        proxy.addr,
        &format!(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKrt;rport\nFrom: <sip:alice@example.com>;tag=a\nTo: <sip:bob@biloxi.example.com>\nCall-ID: routed\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
            a = alice.addr
        ),
    );
    let (stream, _) = hop.accept().expect("sipshard connects to the next hop");
    let mut next = TcpUa::accepted(stream);
    let inv = next.recv();
    assert!(
        inv.starts_with("INVITE sip:bob@biloxi.example.com SIP/2.0"),
        "{inv}"
    );
    assert!(
        inv.contains(&format!("Via: SIP/2.0/TCP {}", proxy.addr)),
        "{inv}"
    );
    next.send(&ok_for(&inv));
    let ok = alice.recv();
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && ok.contains("Call-ID: routed"),
        "{ok}"
    );
}

/// Raise this process's open-file limit (inherited by the sipshard it starts) to hold `n`
/// sockets; fails the test, saying so, when the hard limit is lower.
fn allow_open_files(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed.
    unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert!(
        lim.rlim_max >= n,
        "this test needs {n} open files; the hard limit is {} (raise it: ulimit -Hn)",
        lim.rlim_max
    );
    lim.rlim_cur = lim.rlim_cur.max(n);
    // SAFETY: as above.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) };
    assert_eq!(rc, 0, "setrlimit(RLIMIT_NOFILE, {n})");
}

/// Reset rather than close gracefully when dropped (SO_LINGER 0), so that 10,000 ephemeral
/// ports are not left in TIME_WAIT for the tests that run after this one.
fn close_without_time_wait(ua: &TcpUa) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the descriptor is the open socket `ua` owns; the option value is a valid
    // `linger` of the size given.
    let rc = unsafe {
        libc::setsockopt(
            ua.stream.socket().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_LINGER");
}

fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS")
}

/// 10,000 idle connections on one shard: all held and served (every thousandth answers a
/// keep-alive ping), then all released; memory per idle connection printed and bounded.
#[test]
fn ten_thousand_idle_connections_are_held_then_released() {
    ten_thousand_idle_connections_are_held_then_released_with("multishot");
}

#[test]
fn ten_thousand_idle_connections_are_held_then_released_over_stream_reads() {
    ten_thousand_idle_connections_are_held_then_released_with("stream");
}

fn ten_thousand_idle_connections_are_held_then_released_with(receive: &str) {
    const N: usize = 10_000;
    // One such test at a time: each holds 10,000 sockets of this process.
    let _serial = peers::serial();
    allow_open_files(N as u64 + 1_000);
    let proxy = Proxy::builder()
        .metrics()
        .args(&[
            "--tcp-receive",
            receive,
            "--shards",
            "1",
            "--tcp-max-connections-per-ip",
            "20000",
        ])
        .start();
    let before = rss_kib(proxy.pid());
    let mut held = Vec::with_capacity(N);
    for i in 0..N {
        let mut ua = TcpUa::connect(proxy.addr);
        close_without_time_wait(&ua);
        if i % 1000 == 999 {
            ua.send_raw(b"\r\n\r\n");
            assert_eq!(
                ua.recv_within(Duration::from_secs(3)),
                Some(Got::Pong),
                "connection {i}"
            );
        }
        held.push(ua);
    }
    let metrics = proxy.metrics.unwrap();
    assert_shows(metrics, &["sipshard_tcp_connections{shard=\"0\"} 10000"]);
    let per_connection = (rss_kib(proxy.pid()) - before) * 1024 / N as u64;
    println!("{N} idle connections: {per_connection} bytes of resident memory each");
    // Measured 6,561 bytes with stream reads (a 4 KiB read buffer, the tasks, the table
    // entry), about 2,400 with the receive ring (no read buffer, no reader task); 16 KiB would
    // be a regression worth knowing about.
    assert!(
        per_connection < 16 * 1024,
        "{per_connection} bytes per idle connection"
    );
    drop(held);
    assert_shows(metrics, &["sipshard_tcp_connections{shard=\"0\"} 0"]);
}

/// A UA that registered over TCP and then stops reading: what is queued for it stays under
/// `--tcp-max-queued` (further messages are dropped and counted), and once it has taken no
/// byte for `--tcp-send-timeout-ms` it is disconnected. Other connections go on meanwhile.
#[test]
fn a_peer_that_stops_reading_is_bounded_then_disconnected() {
    #[rustfmt::skip]
    let proxy = Proxy::builder().metrics().args(&[
        "--shards", "1", "--tcp-max-queued", "65536", "--tcp-send-timeout-ms", "500",
    ]).start();
    // A small receive buffer, so the kernel's buffers fill after a few hundred KB.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&proxy.addr.into()).unwrap();
    let mut deaf = TcpUa::from_stream(sock.into());
    register_over_tcp(&mut deaf, proxy.addr, "deaf");
    let caller = Ua::new();
    let body = "a=x\r\n".repeat(600);
    let invite = |i: usize| {
        format!(
            "INVITE sip:deaf@{p} SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKdeaf{i}\nFrom: <sip:c@example.com>;tag=c\nTo: <sip:deaf@{p}>\nCall-ID: deaf-{i}\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: {}\n\n{body}",
            body.len(),
            p = proxy.addr,
            a = caller.addr,
        )
    };
    // Bursts of 300 KB for a peer that reads nothing, until the kernel's buffers, then the
    // queue, are full and it has taken nothing for the send timeout (bounded: 8 s, 24 MB).
    let metrics = proxy.metrics.unwrap();
    let closed = "sipshard_tcp_closed_total{shard=\"0\",reason=\"backlog\"} 1\n";
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut text = String::new();
    let mut i = 0;
    while Instant::now() < deadline && !text.contains(closed) {
        for _ in 0..100 {
            caller.send(proxy.addr, &invite(i));
            i += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
        text = scrape(metrics);
    }
    assert!(
        text.contains(closed),
        "never disconnected after {i} INVITEs:\n{text}"
    );
    assert!(
        value(
            &text,
            "sipshard_tcp_handoffs_total{shard=\"0\",result=\"queue_full\"}"
        ) > 0
    );
    assert_shows(metrics, &["sipshard_tcp_connections{shard=\"0\"} 0\n"]);
    let mut other = TcpUa::connect(proxy.addr);
    let addr = other.addr.to_string();
    other.send(&options(proxy.addr, &addr, "still-served"));
    assert!(other.recv().starts_with("SIP/2.0 200"));
}
