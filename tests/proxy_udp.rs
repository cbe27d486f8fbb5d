//! sipshard over real UDP sockets: RFC 3665 registration and call flows, and the error paths of
//! a stateless proxy (RFC 3261 sections 16.3-16.11), with one and two shards.

use std::time::Duration;

use sipshard_testkit::sip::*;
use sipshard_testkit::ua::register;
use sipshard_testkit::{free_port, Proxy, Ua};

const QUIET: Duration = Duration::from_millis(300);

fn invite(uac: &Ua, ruri: &str, call_id: &str, branch: &str, extra: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP {me};branch={branch};rport\nMax-Forwards: 70\nTo: Bob <{ruri}>\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\nContent-Type: application/sdp\n{extra}\n{SDP}",
        me = uac.addr
    )
}

/// RFC 3665 section 2.1-2.4 without authentication: new registration, update of the contact
/// list, query, cancellation.
#[test]
fn registration_flows_rfc3665_section2() {
    let p = Proxy::start(&["--domain", "biloxi.example.com"]);
    let bob = Ua::new();
    // 2.1: a new registration; 7200 is granted (the default cap).
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "Expires: 7200\n",
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    assert_eq!(
        headers(&r, "Contact"),
        vec![format!("<sip:bob@{}>;expires=7200", bob.addr)]
    );
    assert!(header(&r, "To").contains("tag="));
    // 2.2: add a second contact (mobile), same Call-ID, higher CSeq.
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        "<mailto:bob@biloxi.example.com>;expires=3600, <sip:bob@192.0.2.4>;q=0.5",
        2,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    assert_eq!(headers(&r, "Contact").len(), 3, "{r}");
    assert!(
        r.contains("<sip:bob@192.0.2.4>;expires=3600;q=0.500"),
        "{r}"
    );
    // 2.3: a query lists every binding and changes nothing.
    let r = register(&bob, p.addr, "bob", "biloxi.example.com", "", 3, "");
    assert_eq!(headers(&r, "Contact").len(), 3, "{r}");
    // Remove one binding with expires=0.
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        "<mailto:bob@biloxi.example.com>;expires=0",
        4,
        "",
    );
    assert_eq!(headers(&r, "Contact").len(), 2, "{r}");
    // A lower CSeq than the binding's (2) in the same Call-ID is out of order (10.3 step 7).
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        "<sip:bob@192.0.2.4>",
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 500"), "{r}");
    // Too brief -> 423 with Min-Expires; wildcard without Expires: 0 -> 400.
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        "<sip:bob@192.0.2.9>;expires=30",
        5,
        "",
    );
    assert!(r.starts_with("SIP/2.0 423 Interval Too Brief"), "{r}");
    assert_eq!(header(&r, "Min-Expires"), "60");
    let r = register(&bob, p.addr, "bob", "biloxi.example.com", "*", 6, "");
    assert!(r.starts_with("SIP/2.0 400"), "{r}");
    // 2.4: cancellation of every binding.
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        "*",
        7,
        "Expires: 0\n",
    );
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");
    assert!(headers(&r, "Contact").is_empty(), "{r}");
    // A domain we do not serve is not registered here.
    let r = register(
        &bob,
        p.addr,
        "bob",
        "elsewhere.example.org",
        "<sip:bob@192.0.2.4>",
        8,
        "",
    );
    assert!(r.starts_with("SIP/2.0 404"), "{r}");
}

/// RFC 3665 section 3.1 through one record-routing sipshard: INVITE/180/200/ACK/BYE/200.
#[test]
fn basic_call_through_one_proxy() {
    let p = Proxy::start(&["--domain", "biloxi.example.com", "--record-route"]);
    let (alice, bob) = (Ua::new(), Ua::new());
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    alice.send(
        p.addr,
        &invite(
            &alice,
            "sip:bob@biloxi.example.com",
            "call-3.1",
            "z9hG4bKnashds8",
            "",
        ),
    );
    let inv = bob.recv();
    assert_eq!(
        start_line(&inv),
        format!("INVITE sip:bob@{} SIP/2.0", bob.addr)
    );
    let vias = headers(&inv, "Via");
    assert_eq!(vias.len(), 2, "{inv}");
    assert!(
        vias[0].starts_with(&format!("SIP/2.0/UDP {};branch=z9hG4bKsS", p.addr)),
        "{inv}"
    );
    assert_eq!(
        vias[1],
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bKnashds8;rport={};received=127.0.0.1",
            alice.addr,
            alice.addr.port()
        )
    );
    assert_eq!(header(&inv, "Max-Forwards"), "69");
    assert_eq!(
        headers(&inv, "Record-Route"),
        vec![format!("<sip:{};lr>", p.addr)]
    );
    assert!(inv.ends_with(&SDP.replace('\n', "\r\n")), "body unchanged");

    for status in ["180 Ringing", "200 OK"] {
        bob.send(
            p.addr,
            &respond(
                &inv,
                status,
                "8321234356",
                &format!("Contact: <sip:bob@{}>", bob.addr),
                "",
            ),
        );
        let resp = alice.recv();
        assert!(resp.starts_with(&format!("SIP/2.0 {status}")), "{resp}");
        assert_eq!(headers(&resp, "Via").len(), 1, "proxy Via removed: {resp}");
        assert_eq!(
            headers(&resp, "Record-Route"),
            vec![format!("<sip:{};lr>", p.addr)]
        );
    }
    // ACK and BYE follow the route set: Route: <proxy;lr>, Request-URI = remote target.
    let ack = format!(
        "ACK sip:bob@{b} SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKnashds9\nRoute: <sip:{p};lr>\nMax-Forwards: 70\nTo: Bob <sip:bob@biloxi.example.com>;tag=8321234356\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: call-3.1\nCSeq: 1 ACK\n\n",
        b = bob.addr, a = alice.addr, p = p.addr
    );
    alice.send(p.addr, &ack);
    let got = bob.recv();
    assert!(
        got.starts_with(&format!("ACK sip:bob@{} SIP/2.0", bob.addr)),
        "{got}"
    );
    assert!(
        headers(&got, "Route").is_empty(),
        "our Route is consumed: {got}"
    );
    let bye = format!(
        "BYE sip:alice@{a} SIP/2.0\nVia: SIP/2.0/UDP {b};branch=z9hG4bKnashds10\nRoute: <sip:{p};lr>\nMax-Forwards: 70\nFrom: Bob <sip:bob@biloxi.example.com>;tag=8321234356\nTo: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: call-3.1\nCSeq: 1 BYE\n\n",
        b = bob.addr, a = alice.addr, p = p.addr
    );
    bob.send(p.addr, &bye);
    let got = alice.recv();
    assert!(
        got.starts_with(&format!("BYE sip:alice@{} SIP/2.0", alice.addr)),
        "{got}"
    );
    alice.send(p.addr, &respond(&got, "200 OK", "", "", ""));
    let ok = bob.recv();
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && ok.contains("CSeq: 1 BYE"),
        "{ok}"
    );
}

/// RFC 3665 section 3.2 shape through two chained sipshards, both record-routing: the Via
/// stack, Record-Route and Max-Forwards at each hop, and the route set of in-dialog requests.
#[test]
fn call_through_two_proxies() {
    let b = Proxy::start(&["--domain", "biloxi.example.com", "--record-route"]);
    let route = format!("biloxi.example.com={}", b.addr);
    let a = Proxy::start(&[
        "--domain",
        "atlanta.example.com",
        "--record-route",
        "--route",
        &route,
    ]);
    let (alice, bob) = (Ua::new(), Ua::new());
    register(
        &bob,
        b.addr,
        "bob",
        "biloxi.example.com",
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "",
    );

    alice.send(
        a.addr,
        &invite(
            &alice,
            "sip:bob@biloxi.example.com",
            "call-3.2",
            "z9hG4bK74bf9",
            "",
        ),
    );
    let inv = bob.recv();
    assert_eq!(
        start_line(&inv),
        format!("INVITE sip:bob@{} SIP/2.0", bob.addr)
    );
    let vias = headers(&inv, "Via");
    assert_eq!(vias.len(), 3, "{inv}");
    assert!(vias[0].starts_with(&format!("SIP/2.0/UDP {};branch=z9hG4bKsS", b.addr)));
    assert!(vias[1].starts_with(&format!("SIP/2.0/UDP {};branch=z9hG4bKsS", a.addr)));
    assert!(vias[2].starts_with(&format!("SIP/2.0/UDP {};branch=z9hG4bK74bf9", alice.addr)));
    assert_eq!(header(&inv, "Max-Forwards"), "68");
    assert_eq!(
        headers(&inv, "Record-Route"),
        vec![
            format!("<sip:{};lr>", b.addr),
            format!("<sip:{};lr>", a.addr)
        ]
    );

    bob.send(
        b.addr,
        &respond(
            &inv,
            "180 Ringing",
            "314159",
            &format!("Contact: <sip:bob@{}>", bob.addr),
            "",
        ),
    );
    let ring = alice.recv();
    assert!(ring.starts_with("SIP/2.0 180"), "{ring}");
    assert_eq!(headers(&ring, "Via").len(), 1);
    bob.send(
        b.addr,
        &respond(
            &inv,
            "200 OK",
            "314159",
            &format!("Contact: <sip:bob@{}>", bob.addr),
            SDP,
        ),
    );
    let ok = alice.recv();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");

    // ACK: Route is the reversed Record-Route, sent to the first hop.
    let ack = format!(
        "ACK sip:bob@{bob} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK74bfa\nRoute: <sip:{a};lr>, <sip:{b};lr>\nMax-Forwards: 70\nTo: Bob <sip:bob@biloxi.example.com>;tag=314159\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: call-3.2\nCSeq: 1 ACK\n\n",
        bob = bob.addr, me = alice.addr, a = a.addr, b = b.addr
    );
    alice.send(a.addr, &ack);
    let got = bob.recv();
    assert!(
        got.starts_with(&format!("ACK sip:bob@{} SIP/2.0", bob.addr)),
        "{got}"
    );
    assert!(headers(&got, "Route").is_empty(), "{got}");
    assert_eq!(headers(&got, "Via").len(), 3);
    assert_eq!(header(&got, "Max-Forwards"), "68");

    // BYE from Bob: Route <b>, <a>.
    let bye = format!(
        "BYE sip:alice@{al} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbye1\nRoute: <sip:{b};lr>,<sip:{a};lr>\nMax-Forwards: 70\nFrom: Bob <sip:bob@biloxi.example.com>;tag=314159\nTo: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: call-3.2\nCSeq: 1 BYE\n\n",
        al = alice.addr, me = bob.addr, a = a.addr, b = b.addr
    );
    bob.send(b.addr, &bye);
    let got = alice.recv();
    assert!(
        got.starts_with(&format!("BYE sip:alice@{} SIP/2.0", alice.addr)),
        "{got}"
    );
    assert_eq!(headers(&got, "Via").len(), 3);
    alice.send(a.addr, &respond(&got, "200 OK", "", "", ""));
    let ok = bob.recv();
    assert!(
        ok.starts_with("SIP/2.0 200") && ok.contains("CSeq: 1 BYE"),
        "{ok}"
    );
}

/// CANCEL of a ringing call (RFC 3665 section 3.8 shape): the CANCEL and the ACK for the 487 take
/// the INVITE's branch and path, with no state in the proxy.
#[test]
fn cancel_of_a_ringing_call() {
    let p = Proxy::start(&["--domain", "biloxi.example.com"]);
    let (alice, bob) = (Ua::new(), Ua::new());
    register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "",
    );
    let inv_text = invite(
        &alice,
        "sip:bob@biloxi.example.com",
        "call-cancel",
        "z9hG4bKcancel1",
        "",
    );
    alice.send(p.addr, &inv_text);
    let inv = bob.recv();
    bob.send(p.addr, &respond(&inv, "180 Ringing", "ring1", "", ""));
    assert!(alice.recv().starts_with("SIP/2.0 180"));

    let cancel = format!(
        "CANCEL sip:bob@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcancel1;rport\nMax-Forwards: 70\nTo: Bob <sip:bob@biloxi.example.com>\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: call-cancel\nCSeq: 1 CANCEL\n\n",
        me = alice.addr
    );
    alice.send(p.addr, &cancel);
    let c = bob.recv();
    assert!(
        c.starts_with(&format!("CANCEL sip:bob@{} SIP/2.0", bob.addr)),
        "{c}"
    );
    assert_eq!(
        headers(&c, "Via")[0],
        headers(&inv, "Via")[0],
        "same branch and path as the INVITE"
    );
    bob.send(p.addr, &respond(&c, "200 OK", "ring1", "", ""));
    assert!(alice.recv().contains("CSeq: 1 CANCEL"));
    bob.send(
        p.addr,
        &respond(&inv, "487 Request Terminated", "ring1", "", ""),
    );
    let t = alice.recv();
    assert!(t.starts_with("SIP/2.0 487"), "{t}");
    let ack = format!(
        "ACK sip:bob@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcancel1;rport\nMax-Forwards: 70\nTo: Bob <sip:bob@biloxi.example.com>;tag=ring1\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: call-cancel\nCSeq: 1 ACK\n\n",
        me = alice.addr
    );
    alice.send(p.addr, &ack);
    let a = bob.recv();
    assert!(a.starts_with("ACK "), "{a}");
    assert_eq!(headers(&a, "Via")[0], headers(&inv, "Via")[0]);
    // A retransmitted INVITE takes exactly the same branch too.
    alice.send(p.addr, &inv_text);
    let again = bob.recv();
    assert_eq!(headers(&again, "Via")[0], headers(&inv, "Via")[0]);
}

/// 480 for an unregistered user of our domain; the ACK for it is absorbed, not forwarded and
/// not answered; a foreign domain without a route is 404.
#[test]
fn unavailable_and_not_found() {
    let mut p = Proxy::start(&["--domain", "biloxi.example.com"]);
    let alice = Ua::new();
    alice.send(
        p.addr,
        &invite(
            &alice,
            "sip:nobody@biloxi.example.com",
            "call-480",
            "z9hG4bK480",
            "",
        ),
    );
    let r = alice.recv();
    assert!(r.starts_with("SIP/2.0 480 Temporarily Unavailable"), "{r}");
    let tag = header(&r, "To").split("tag=").nth(1).unwrap().to_string();
    assert!(tag.starts_with("sS"));
    let ack = format!(
        "ACK sip:nobody@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK480;rport\nMax-Forwards: 70\nTo: Bob <sip:nobody@biloxi.example.com>;tag={tag}\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: call-480\nCSeq: 1 ACK\n\n",
        me = alice.addr
    );
    alice.send(p.addr, &ack);
    alice.expect_silence(QUIET);
    alice.send(
        p.addr,
        &invite(
            &alice,
            "sip:carol@chicago.example.com",
            "call-404",
            "z9hG4bK404",
            "",
        ),
    );
    assert!(alice.recv().starts_with("SIP/2.0 404"));
    let log = p.stop();
    assert!(log.contains("received"), "{log}");
}

/// Max-Forwards 0 -> 483 (RFC 3261 section 16.3 item 3); a request that comes back to us
/// unchanged -> 482 (item 4).
#[test]
fn too_many_hops_and_loops() {
    let port = free_port();
    let me = format!("127.0.0.1:{port}");
    let route = format!("loop.example.com={me}");
    let p = Proxy::start_on(port, &["--route", &route]);
    let alice = Ua::new();
    let inv = invite(
        &alice,
        "sip:bob@biloxi.example.com",
        "call-483",
        "z9hG4bK483",
        "",
    )
    .replace("Max-Forwards: 70", "Max-Forwards: 0");
    alice.send(p.addr, &inv);
    let r = alice.recv();
    assert!(r.starts_with("SIP/2.0 483 Too Many Hops"), "{r}");
    // The route sends loop.example.com back to this very proxy: the second pass sees its own
    // Via with the same loop hash and answers 482, which travels back through it to Alice.
    alice.send(
        p.addr,
        &invite(
            &alice,
            "sip:bob@loop.example.com",
            "call-482",
            "z9hG4bK482",
            "",
        ),
    );
    let r = alice.recv();
    assert!(r.starts_with("SIP/2.0 482 Loop Detected"), "{r}");
    assert_eq!(headers(&r, "Via").len(), 1, "{r}");
}

/// Responses whose top Via is not ours are dropped silently (RFC 3261 section 16.11).
#[test]
fn stray_responses_are_dropped() {
    let mut p = Proxy::start(&[]);
    let (ua, other) = (Ua::new(), Ua::new());
    let stray = format!(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKnotours\nVia: SIP/2.0/UDP {o};branch=z9hG4bKx\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@y>;tag=2\nCall-ID: stray\nCSeq: 1 INVITE\n\n",
        o = other.addr
    );
    ua.send(p.addr, &stray);
    // Our own address but not our branch form is not ours either.
    ua.send(
        p.addr,
        &stray.replace("192.0.2.1:5060", &p.addr.to_string()),
    );
    // Ours, but nothing below it.
    ua.send(p.addr, &format!("SIP/2.0 200 OK\nVia: SIP/2.0/UDP {};branch=z9hG4bKsS0123456789abcdef.01234567\nFrom: <sip:a@x>;tag=1\nTo: <sip:b@y>;tag=2\nCall-ID: stray2\nCSeq: 1 INVITE\n\n", p.addr));
    other.expect_silence(QUIET);
    ua.expect_silence(Duration::from_millis(50));
    let log = p.stop();
    assert!(log.contains("3 dropped"), "{log}");
}

/// Malformed requests that can be answered get the right status and reason phrase; the rest
/// are dropped; the proxy keeps serving.
#[test]
fn malformed_requests_get_clear_answers() {
    let p = Proxy::start(&["--domain", "biloxi.example.com", "--max-message", "1500"]);
    let ua = Ua::new();
    let base = invite(&ua, "sip:bob@biloxi.example.com", "bad-1", "z9hG4bKbad", "");
    let cases: Vec<(String, &str)> = vec![
        (
            base.replace("Call-ID: bad-1\n", ""),
            "SIP/2.0 400 Bad Request - Missing Call-ID",
        ),
        (
            base.replace("SIP/2.0\nVia", "SIP/7.0\nVia"),
            "SIP/2.0 505 Version Not Supported",
        ),
        (
            base.replace("CSeq: 1 INVITE", "CSeq: 1 ACK"),
            "SIP/2.0 400 Bad Request - CSeq Method Mismatch",
        ),
        (
            base.replace("Max-Forwards: 70", "Max-Forwards: 300"),
            "SIP/2.0 400 Bad Request - Malformed Max-Forwards",
        ),
        (
            base.replace(
                "INVITE sip:bob@biloxi.example.com SIP",
                "INVITE isbn:2983792873 SIP",
            ),
            "SIP/2.0 416 Unsupported URI Scheme",
        ),
        (
            base.replace(
                "Max-Forwards: 70",
                "Max-Forwards: 70\nProxy-Require: foo, bar",
            ),
            "SIP/2.0 420 Bad Extension",
        ),
        (
            base.replace(
                "Max-Forwards: 70",
                &format!("Max-Forwards: 70\nX-Pad: {}", "x".repeat(2000)),
            ),
            "SIP/2.0 513 Message Too Large",
        ),
    ];
    for (msg, expect) in &cases {
        ua.send(p.addr, msg);
        let r = ua.recv();
        assert!(r.starts_with(expect), "expected {expect}, got:\n{r}");
        if expect.contains("420") {
            assert_eq!(header(&r, "Unsupported"), "foo, bar");
        }
    }
    // Content-Length larger than the datagram: answered from a salvage scan.
    let wire_msg = wire(&base).replace(
        &format!("Content-Length: {}", SDP.len() + SDP.matches('\n').count()),
        "Content-Length: 9999",
    );
    ua.send_raw(p.addr, wire_msg.as_bytes());
    let r = ua.recv();
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request - Content-Length Exceeds Message"),
        "{r}"
    );
    // Garbage and keepalives get nothing.
    ua.send_raw(p.addr, b"\x00\x01garbage\xff");
    ua.send_raw(p.addr, b"\r\n\r\n");
    ua.send_raw(p.addr, b"INVITE sip:x@y SIP/2.0\r\nVia: nonsense\r\n\r\n");
    ua.expect_silence(QUIET);
    // Still serving.
    let r = register(
        &ua,
        p.addr,
        "bob",
        "biloxi.example.com",
        &format!("<sip:bob@{}>", ua.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
}

/// Two shards with random steering: the REGISTER lands on one shard, the calls on both; every
/// call finds the binding because the table is replicated.
#[test]
fn two_shards_share_the_location_table() {
    let mut p = Proxy::start(&[
        "--shards",
        "2",
        "--steering",
        "random",
        "--domain",
        "biloxi.example.com",
    ]);
    let bob = Ua::new();
    let r = register(
        &bob,
        p.addr,
        "bob",
        "biloxi.example.com",
        &format!("<sip:bob@{}>", bob.addr),
        1,
        "",
    );
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    std::thread::sleep(Duration::from_millis(50));
    for i in 0..40 {
        let alice = Ua::new();
        alice.send(
            p.addr,
            &invite(
                &alice,
                "sip:bob@biloxi.example.com",
                &format!("call-shard-{i}"),
                &format!("z9hG4bKs{i}"),
                "",
            ),
        );
        let inv = bob.recv();
        assert!(
            inv.starts_with(&format!("INVITE sip:bob@{}", bob.addr)),
            "call {i}: {inv}"
        );
        assert!(inv.contains(&format!("Call-ID: call-shard-{i}")));
    }
    let log = p.stop();
    let per_shard: Vec<u64> = log
        .lines()
        .filter(|l| l.contains("target=sipshard::runtime") && l.contains(" msg=\"shard "))
        .map(|l| {
            l.split(": ")
                .nth(1)
                .unwrap()
                .split(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(per_shard.len(), 2, "{log}");
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards carried traffic: {per_shard:?}\n{log}"
    );
}

/// Both ways of receiving UDP (`--udp-receive multishot`, the default, and `mmsg`) serve the
/// same traffic alike: a call over IPv4, an OPTIONS over IPv6 (the sender's address is read
/// from what each receive wrote), a datagram over `--max-message` answered 513 (cut by the
/// receive, not lost), and the proxy says which receive it runs.
#[test]
fn both_udp_receives_serve_alike() {
    for how in ["multishot", "mmsg"] {
        let port = free_port();
        let v6 = format!("udp:[::1]:{port}");
        let args = [
            "--udp-receive",
            how,
            "--listen",
            &v6,
            "--shards",
            "1",
            "--max-message",
            "1500",
            "--domain",
            "biloxi.example.com",
        ];
        let mut p = Proxy::builder().port(port).args(&args).start();
        let bob = Ua::new();
        let contact = format!("<sip:bob@{}>", bob.addr);
        let r = register(&bob, p.addr, "bob", "biloxi.example.com", &contact, 1, "");
        assert!(r.starts_with("SIP/2.0 200"), "{how}: {r}");
        let alice = Ua::new();
        let call = invite(
            &alice,
            "sip:bob@biloxi.example.com",
            "rx-1",
            "z9hG4bKrx1",
            "",
        );
        alice.send(p.addr, &call);
        let inv = bob.recv();
        assert!(inv.starts_with("INVITE sip:bob@"), "{how}: {inv}");
        assert!(inv.contains("Call-ID: rx-1"), "{how}: {inv}");

        let six = std::net::UdpSocket::bind("[::1]:0").expect("an IPv6 loopback socket");
        six.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let me = six.local_addr().unwrap();
        let options = format!(
            "OPTIONS sip:[::1]:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKsix;rport\r\nMax-Forwards: 70\r\nTo: <sip:[::1]:{port}>\r\nFrom: <sip:six@[::1]>;tag=6\r\nCall-ID: rx-six\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        six.send_to(options.as_bytes(), ("::1", port)).unwrap();
        let mut buf = [0u8; 4096];
        let (n, from) = six.recv_from(&mut buf).expect("an answer over IPv6");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("SIP/2.0 200"), "{how}: {answer}");
        assert!(
            answer.contains(&format!("rport={}", me.port())),
            "{how}: {answer}"
        );
        assert_eq!(from.port(), port, "{how}");

        let padded = call.replace("Call-ID: rx-1", "Call-ID: rx-2").replace(
            "Max-Forwards: 70",
            &format!("Max-Forwards: 70\nX-Pad: {}", "x".repeat(3000)),
        );
        alice.send(p.addr, &padded);
        let r = alice.recv();
        assert!(r.starts_with("SIP/2.0 513 Message Too Large"), "{how}: {r}");

        let log = p.stop();
        let ring = log.contains("UDP listener 0: multishot receive");
        assert_eq!(ring, how == "multishot", "{how}:\n{log}");
        assert!(!log.contains("no multishot receive"), "{how}:\n{log}");
    }
}
