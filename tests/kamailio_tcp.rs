//! Kamailio as sipshard's peer proxy over TCP (issue 14): sipshard serves atlanta.example.com
//! and reaches biloxi.example.com's proxy, a real Kamailio, with `--route
//! biloxi.example.com=tcp:...`; Kamailio relays to Bob, a UDP socket of the test. Alice, another
//! UDP socket of the test, calls Bob through both proxies, and the test checks every message
//! as it arrives at either end: which hops it went through, over which transport, and that the
//! whole call (INVITE, 200, ACK, BYE, 200) completes, hung up by the caller (the BYE leaves
//! sipshard for Kamailio over TCP) or by the callee (Kamailio brings it to sipshard over TCP,
//! on the Record-Route sipshard wrote for the TCP side).
//!
//! Kamailio is a required peer: a missing one fails the test saying how to install it. Everything
//! runs on 127.0.0.1 on free ports, each wait is bounded (3 s a message, 20 s for Kamailio to
//! come up), and both processes are killed when the test ends, also on a failed assertion.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipshard_testkit::peers::kamailio::{self, Kamailio};
use sipshard_testkit::peers::{self, require};
use sipshard_testkit::scrape;
use sipshard_testkit::sip::{header, headers, respond, start_line, SDP};
use sipshard_testkit::{eventually, free_port, free_ports, tail, Proxy, Scratch, Ua};

/// The configuration of biloxi.example.com's Kamailio.
const KAMAILIO_CFG: &str = include_str!("kamailio_tcp.cfg");

/// Calls made, alternately hung up by the caller and by the callee. Each comes from a new
/// socket of Alice's, so that with two shards both usually see calls.
const CALLS: usize = 6;

/// Where everyone is.
struct Net {
    proxy: SocketAddr,
    kam: SocketAddr,
    bob: Ua,
}

impl Net {
    /// sipshard's Via toward Kamailio: over TCP, from its listening address.
    fn sipshard_tcp_via(&self) -> String {
        format!("SIP/2.0/TCP {};branch=z9hG4bK", self.proxy)
    }

    /// Kamailio's Via toward Bob (UDP).
    fn kamailio_udp_via(&self) -> String {
        format!("SIP/2.0/UDP {};branch=z9hG4bK", self.kam)
    }
}

/// The values of header `name` in `msg`, top first, whether one per line or comma-separated
/// (Via, Record-Route, Route).
fn values(msg: &str, name: &str) -> Vec<String> {
    headers(msg, name)
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .collect()
}

/// The next message `ua` receives for call `kamtcp-I` whose first line starts with `wanted`
/// (`"INVITE "`, `"SIP/2.0 "`, ...), and where from. Passed over on the way: 1xx responses
/// (Kamailio's 100 Trying, which stateless sipshard forwards) and what UDP retransmits on its
/// own when the test thread is slow to answer (Kamailio's INVITE to Bob until his 200, its BYE
/// until his 200, also of the call before). At most 5 s.
fn next(ua: &Ua, i: usize, wanted: &str) -> (String, SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let call_id = format!("kamtcp-{i}");
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some((m, from)) = ua.recv_from_within(left.max(Duration::from_millis(1))) else {
            break;
        };
        let this_call = headers(&m, "Call-ID").first() == Some(&call_id.as_str());
        let provisional = m.starts_with("SIP/2.0 1");
        if this_call && m.starts_with(wanted) && !provisional {
            return (m, from);
        }
        if provisional {
            continue;
        }
        eprintln!(
            "{} passed over (waiting for {wanted:?} of call {i}):\n{m}",
            ua.addr
        );
    }
    panic!("{} received no {wanted:?} of call {i} within 5 s", ua.addr)
}

/// Assert that an in-dialog request from Alice (ACK or BYE) reached Bob through Kamailio,
/// sipshard having forwarded it over TCP, with every Route consumed.
fn assert_alice_request_at_bob(net: &Net, msg: &str, from: SocketAddr, method: &str, alice: &Ua) {
    assert_eq!(
        from, net.kam,
        "{method} reached Bob from {from}, not Kamailio:\n{msg}"
    );
    assert_eq!(
        start_line(msg),
        format!("{method} sip:bob@{} SIP/2.0", net.bob.addr),
        "{method} at Bob: not for Bob's Contact:\n{msg}"
    );
    let v = values(msg, "Via");
    assert!(
        v.len() == 3
            && v[0].starts_with(&net.kamailio_udp_via())
            && v[1].starts_with(&net.sipshard_tcp_via())
            && v[2].starts_with(&format!("SIP/2.0/UDP {};branch=", alice.addr)),
        "{method} at Bob: Via stack is not Kamailio (UDP), sipshard (TCP), Alice: {v:#?}\n{msg}"
    );
    let routes = values(msg, "Route");
    assert!(
        routes.is_empty(),
        "{method} at Bob still carries Route {routes:?}\n{msg}"
    );
}

/// One call from a new socket of Alice's; `callee_hangs_up` picks who sends the BYE.
fn call(net: &Net, i: usize, callee_hangs_up: bool) {
    let (proxy, kam, bob) = (net.proxy, net.kam, &net.bob);
    let alice = Ua::new();
    let a = alice.addr;
    let invite = format!(
        "INVITE sip:bob@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKinv{i};rport\nMax-Forwards: 70\nFrom: Alice <sip:alice@atlanta.example.com>;tag=a{i}\nTo: Bob <sip:bob@biloxi.example.com>\nCall-ID: kamtcp-{i}\nCSeq: 1 INVITE\nContact: <sip:alice@{a}>\nContent-Type: application/sdp\n\n{SDP}"
    );
    alice.send(proxy, &invite);

    // The INVITE at Bob: sipshard -> Kamailio over TCP -> Bob over UDP, both Record-Routed.
    let (inv, from) = next(bob, i, "INVITE ");
    assert_eq!(
        from, kam,
        "call {i}: INVITE from {from}, not Kamailio:\n{inv}"
    );
    assert_eq!(
        start_line(&inv),
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "call {i}:\n{inv}"
    );
    let v = values(&inv, "Via");
    assert!(
        v.len() == 3
            && v[0].starts_with(&net.kamailio_udp_via())
            && v[1].starts_with(&net.sipshard_tcp_via())
            && v[2].starts_with(&format!(
                "SIP/2.0/UDP {a};branch=z9hG4bKinv{i};rport={}",
                a.port()
            )),
        "call {i}: INVITE at Bob: Via stack is not Kamailio (UDP), sipshard (TCP), Alice: {v:#?}\n{inv}"
    );
    assert!(
        inv.ends_with(&SDP.replace('\n', "\r\n")),
        "call {i}: the SDP did not arrive whole:\n{inv}"
    );
    // Record-Route, top first, each proxy's double entry as the transport changes there:
    // Kamailio's toward Bob (UDP) and toward sipshard (TCP), then sipshard's toward Kamailio
    // (TCP) and toward Alice (UDP). Alice's ACK and BYE leave sipshard over TCP because of
    // Kamailio's second entry; Bob's BYE reaches sipshard over TCP because of sipshard's first.
    let rr = values(&inv, "Record-Route");
    assert!(
        rr.len() == 4
            && rr[0].starts_with(&format!("<sip:{kam};"))
            && !rr[0].contains("transport=")
            && rr[1].starts_with(&format!("<sip:{kam};transport=tcp;"))
            && rr[2] == format!("<sip:{proxy};transport=tcp;lr>")
            && rr[3] == format!("<sip:{proxy};lr>"),
        "call {i}: INVITE at Bob: Record-Route is not Kamailio (UDP, TCP), sipshard (TCP, UDP): {rr:#?}\n{inv}"
    );
    let contact = format!("Contact: <sip:bob@{}>", bob.addr);
    let ok = respond(
        &inv,
        "200 OK",
        &format!("b{i}"),
        &format!("{contact}\nContent-Type: application/sdp"),
        SDP,
    );
    bob.send(kam, &ok);

    // The 200 at Alice, back over both hops (Kamailio -> sipshard on sipshard's connection).
    let (ok, from) = next(&alice, i, "SIP/2.0 ");
    assert_eq!(
        from, proxy,
        "call {i}: 200 from {from}, not sipshard:\n{ok}"
    );
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && header(&ok, "Call-ID") == format!("kamtcp-{i}"),
        "call {i}: INVITE answered with:\n{ok}"
    );
    let v = values(&ok, "Via");
    assert!(
        v.len() == 1 && v[0].starts_with(&format!("SIP/2.0/UDP {a};branch=z9hG4bKinv{i}")),
        "call {i}: 200 at Alice: Vias {v:#?}\n{ok}"
    );
    assert_eq!(
        values(&ok, "Record-Route"),
        rr,
        "call {i}: 200 at Alice:\n{ok}"
    );
    let bob_to = header(&ok, "To").to_string();
    assert!(
        bob_to.ends_with(&format!(";tag=b{i}")),
        "call {i}: To {bob_to}"
    );

    // Alice's ACK: to sipshard on her route set (the Record-Route reversed).
    let alice_routes: Vec<String> = rr.iter().rev().map(|r| format!("Route: {r}\n")).collect();
    let alice_routes = alice_routes.concat();
    let in_dialog = |method: &str, cseq: u32| {
        format!(
            "{method} sip:bob@{b} SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bK{m}{i};rport\n{alice_routes}Max-Forwards: 70\nFrom: Alice <sip:alice@atlanta.example.com>;tag=a{i}\nTo: {bob_to}\nCall-ID: kamtcp-{i}\nCSeq: {cseq} {method}\n\n",
            b = bob.addr,
            m = method.to_ascii_lowercase(),
        )
    };
    alice.send(proxy, &in_dialog("ACK", 1));
    let (ack, from) = next(bob, i, "ACK ");
    assert_alice_request_at_bob(net, &ack, from, "ACK", &alice);

    if !callee_hangs_up {
        alice.send(proxy, &in_dialog("BYE", 2));
        let (bye, from) = next(bob, i, "BYE ");
        assert_alice_request_at_bob(net, &bye, from, "BYE", &alice);
        bob.send(kam, &respond(&bye, "200 OK", "", "", ""));
        let (ok, from) = next(&alice, i, "SIP/2.0 ");
        assert_eq!(from, proxy, "call {i}: BYE's 200 from {from}:\n{ok}");
        assert!(
            ok.starts_with("SIP/2.0 200 OK") && header(&ok, "CSeq") == "2 BYE",
            "call {i}: Alice's BYE answered with:\n{ok}"
        );
        assert_eq!(
            values(&ok, "Via").len(),
            1,
            "call {i}: BYE's 200 at Alice:\n{ok}"
        );
        return;
    }

    // Bob's BYE: to Kamailio on his route set (the Record-Route as received); Kamailio takes
    // sipshard's TCP entry and brings it to sipshard over TCP.
    let bob_routes: String = rr.iter().map(|r| format!("Route: {r}\n")).collect();
    let invite_from = header(&inv, "From");
    bob.send(
        kam,
        &format!(
            "BYE sip:alice@{a} SIP/2.0\nVia: SIP/2.0/UDP {b};branch=z9hG4bKbbye{i};rport\n{bob_routes}Max-Forwards: 70\nFrom: {bob_to}\nTo: {invite_from}\nCall-ID: kamtcp-{i}\nCSeq: 1 BYE\n\n",
            b = bob.addr
        ),
    );
    let (bye, from) = next(&alice, i, "BYE ");
    assert_eq!(from, proxy, "call {i}: Bob's BYE from {from}:\n{bye}");
    assert_eq!(
        start_line(&bye),
        format!("BYE sip:alice@{a} SIP/2.0"),
        "call {i}:\n{bye}"
    );
    let v = values(&bye, "Via");
    assert!(
        v.len() == 3
            && v[0].starts_with(&format!("SIP/2.0/UDP {proxy};branch=z9hG4bK"))
            && v[1].starts_with(&format!("SIP/2.0/TCP {kam};branch=z9hG4bK"))
            // Kamailio wrote received (and rport) into Bob's Via, before his branch.
            && v[2].starts_with(&format!("SIP/2.0/UDP {};", bob.addr))
            && v[2].contains(&format!(";branch=z9hG4bKbbye{i};")),
        "call {i}: Bob's BYE at Alice: Via stack is not sipshard (UDP), Kamailio (TCP), Bob: {v:#?}\n{bye}"
    );
    let routes = values(&bye, "Route");
    assert!(
        routes.is_empty(),
        "call {i}: Bob's BYE at Alice still carries Route {routes:?}"
    );
    alice.send(proxy, &respond(&bye, "200 OK", "", "", ""));
    let (ok, from) = next(bob, i, "SIP/2.0 ");
    assert_eq!(from, kam, "call {i}: Bob's BYE answered from {from}:\n{ok}");
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && header(&ok, "CSeq") == "1 BYE",
        "call {i}: Bob's BYE answered with:\n{ok}"
    );
    let v = values(&ok, "Via");
    assert!(
        v.len() == 1
            && v[0].starts_with(&format!("SIP/2.0/UDP {};", bob.addr))
            && v[0].contains(&format!(";branch=z9hG4bKbbye{i};")),
        "call {i}: 200 at Bob: Vias {v:#?}\n{ok}"
    );
}

/// The value of `name{shard="SHARD",event="EVENT"}` in a scrape.
fn tcp_events(text: &str, shard: &str, event: &str) -> u64 {
    scrape::value(
        text,
        &format!("sipshard_tcp_connection_events_total{{shard=\"{shard}\",event=\"{event}\"}}"),
    )
}

#[test]
fn calls_through_kamailio_as_a_tcp_peer_proxy() {
    require("kamailio");
    let _serial = peers::serial();
    let dir = Scratch::new("kamailio-tcp");
    let started = Instant::now();
    let kam_port = free_port();
    let base = free_ports(2);
    let bob = Ua::new();
    let cfg = KAMAILIO_CFG
        .replace("@PORT@", &kam_port.to_string())
        .replace("@MPATH@", &kamailio::module_dir())
        .replace("@UAS@", &bob.addr.to_string());
    let cfg_path = dir.write("kamailio.cfg", &cfg);
    let mut kam = Kamailio::start(&dir, &cfg_path, kam_port, &["-m", "32", "-M", "4"]);

    let route = format!("biloxi.example.com=tcp:127.0.0.1:{kam_port}");
    let metrics = format!("127.0.0.1:{}", base + 1);
    let proxy = Proxy::builder()
        .port(base)
        .dir(&dir)
        .args(&[
            "--shards",
            "2",
            "--domain",
            "atlanta.example.com",
            "--route",
            &route,
            "--record-route",
            "--metrics",
            &metrics,
        ])
        .start();
    let net = Net {
        proxy: proxy.addr,
        kam: kam.addr,
        bob,
    };
    let calls = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        for i in 0..CALLS {
            call(&net, i, i % 2 == 1);
        }
    }));
    if let Err(e) = calls {
        eprintln!(
            "--- sipshard ---\n{}\n--- kamailio ---\n{}",
            tail(&proxy.log(), 3000),
            kam.output_tail(3000)
        );
        std::panic::resume_unwind(e);
    }

    // sipshard opened connections to Kamailio and kept them: at most one per shard for all
    // the calls (each shard reuses its own), none failed, none closed. Kamailio opened its own
    // to sipshard's listener for the callee's BYEs.
    let metrics: SocketAddr = metrics.parse().unwrap();
    let mut text = String::new();
    let counted = eventually(Duration::from_secs(3), || {
        text = scrape::scrape(metrics);
        tcp_events(&text, "total", "connected") >= 1 && tcp_events(&text, "total", "accepted") >= 1
    });
    assert!(counted, "no TCP connection opened or accepted:\n{text}");
    // Two housekeeping ticks (200 ms each), so every shard has published the calls.
    std::thread::sleep(Duration::from_millis(500));
    let text = scrape::scrape(metrics);
    for shard in ["0", "1"] {
        let opened = tcp_events(&text, shard, "connected");
        assert!(
            opened <= 1,
            "shard {shard} opened {opened} connections to Kamailio for {CALLS} calls:\n{text}"
        );
    }
    let opened = tcp_events(&text, "total", "connected");
    let accepted = tcp_events(&text, "total", "accepted");
    let want_open = format!(
        "sipshard_tcp_connections{{shard=\"total\"}} {}",
        opened + accepted
    );
    scrape::assert_shows(
        metrics,
        &[
            "sipshard_tcp_connection_events_total{shard=\"total\",event=\"connect_failed\"} 0",
            "sipshard_tcp_connection_events_total{shard=\"total\",event=\"closed\"} 0",
            &want_open,
        ],
    );

    // Kamailio's own word: sipshard's requests arrived over TCP, Bob's over UDP.
    let log = kam.stop();
    // Requests whose Request-URI starts with `uri`, received over `proto`.
    let over = |method: &str, uri: &str, proto: &str| {
        log.lines()
            .filter(|l| {
                l.contains(&format!("kamtcp: {method} {uri}"))
                    && l.ends_with(&format!(" over {proto}"))
            })
            .count()
    };
    let invites = over("INVITE", "sip:bob@biloxi.example.com from", "tcp");
    let acks = over("ACK", &format!("sip:bob@{} from", net.bob.addr), "tcp");
    let byes_from_alice = over("BYE", &format!("sip:bob@{} from", net.bob.addr), "tcp");
    let byes_from_bob = over("BYE", "sip:alice@", "udp");
    assert!(
        invites == CALLS
            && acks == CALLS
            && byes_from_alice == CALLS / 2
            && byes_from_bob == CALLS / 2,
        "Kamailio logged {invites} INVITEs, {acks} ACKs, {byes_from_alice} BYEs over TCP and \
         {byes_from_bob} BYEs from Bob over UDP (expected {CALLS}, {CALLS}, {h} and {h}):\n{}",
        tail(&log, 3000),
        h = CALLS / 2,
    );
    println!(
        "{CALLS} calls through Kamailio over TCP in {:?}: sipshard opened {opened} connection(s), accepted {accepted}",
        started.elapsed()
    );
}
