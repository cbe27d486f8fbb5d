//! Two sipshard instances, an edge proxy in front of a registrar (docs/nat.md, "Edge proxy"):
//! a UA registers through the edge, which adds its Path with a flow token (RFC 3327, RFC 5626);
//! the registrar stores it, and a call for the UA goes registrar -> edge -> down the UA's flow,
//! over UDP and over TCP. A tampered token is refused (403); a flow whose connection is gone
//! fails with 430. Registered directly with two Outbound flows, a UA gets its calls down the
//! newest flow whose connection is still open.

use std::net::SocketAddr;
use std::time::Duration;

use sipshard_testkit::scrape::assert_shows;
use sipshard_testkit::sip::{header, headers, respond, start_line, wire};
use sipshard_testkit::{Got, Proxy, TcpUa, Ua};

const DOMAIN: &str = "example.com";

fn register(via: &str, transport: &str, contact: &str) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\nVia: SIP/2.0/{transport} {via};branch=z9hG4bKpr1;rport\nMax-Forwards: 70\nTo: <sip:bob@{DOMAIN}>\nFrom: <sip:bob@{DOMAIN}>;tag=p1\nCall-ID: path-reg\nCSeq: 1 REGISTER\nSupported: path, outbound\nContact: <{contact}>\nExpires: 600\n\n"
    )
}

fn invite(caller: &Ua, call_id: &str, route: &str) -> String {
    format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id};rport\n{route}Max-Forwards: 70\nTo: <sip:bob@{DOMAIN}>\nFrom: <sip:alice@example.net>;tag=a1\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\n\n",
        me = caller.addr
    )
}

/// A registrar for example.com and an edge (with /metrics) routing example.com to it.
fn edge_and_registrar() -> (Proxy, Proxy) {
    let registrar = Proxy::start(&["--domain", DOMAIN]);
    let route = format!("{DOMAIN}={}", registrar.addr);
    let edge = Proxy::builder()
        .metrics()
        .args(&["--route", &route])
        .start();
    (edge, registrar)
}

fn check_registered(ok: &str, edge: SocketAddr) {
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let path = header(ok, "Path");
    assert!(
        path.starts_with("<sip:ft") && path.ends_with(&format!("@{edge};lr;ob>")),
        "{ok}"
    );
}

#[test]
fn a_ua_behind_the_edge_over_udp_gets_its_calls_through_the_edge() {
    let (edge, registrar) = edge_and_registrar();
    let bob = Ua::new();
    bob.send(
        edge.addr,
        &register("10.0.0.2:5060", "UDP", "sip:bob@10.0.0.2:5060"),
    );
    check_registered(&bob.recv_final(), edge.addr);

    let alice = Ua::new();
    alice.send(registrar.addr, &invite(&alice, "path-udp-1", ""));
    let (inv, from) = bob
        .recv_from_within(Duration::from_secs(3))
        .expect("the call reaches bob");
    assert_eq!(from, edge.addr, "through the edge");
    assert_eq!(start_line(&inv), "INVITE sip:bob@10.0.0.2:5060 SIP/2.0");
    assert!(
        headers(&inv, "Route").is_empty(),
        "every Route consumed: {inv}"
    );
    assert_eq!(
        headers(&inv, "Via").len(),
        3,
        "edge, registrar, alice: {inv}"
    );
    bob.sock
        .send_to(
            wire(&respond(&inv, "200 OK", "b1", "", "")).as_bytes(),
            from,
        )
        .unwrap();
    let answer = alice.recv_final();
    assert!(answer.starts_with("SIP/2.0 200 OK"), "{answer}");
}

#[test]
fn a_ua_behind_the_edge_over_tcp_gets_its_calls_on_its_connection_and_430_once_it_closed() {
    let (edge, registrar) = edge_and_registrar();
    let mut bob = TcpUa::connect(edge.addr);
    // Its Via and Contact name a port nothing listens on: only its connection reaches it.
    bob.send(&register(
        "127.0.0.1:9",
        "TCP",
        "sip:bob@127.0.0.1:9;transport=tcp",
    ));
    check_registered(&bob.recv(), edge.addr);

    let alice = Ua::new();
    alice.send(registrar.addr, &invite(&alice, "path-tcp-1", ""));
    let Some(Got::Message(inv)) = bob.recv_within(Duration::from_secs(3)) else {
        panic!("the call did not come down bob's connection");
    };
    assert_eq!(
        start_line(&inv),
        "INVITE sip:bob@127.0.0.1:9;transport=tcp SIP/2.0"
    );
    bob.send(&respond(&inv, "200 OK", "b1", "", ""));
    assert!(alice.recv_final().starts_with("SIP/2.0 200 OK"));

    // bob's connection goes: the edge opens none to him (he accepts none), it answers 430.
    drop(bob);
    let closed = "sipshard_tcp_connection_events_total{shard=\"total\",event=\"closed\"} 1";
    assert_shows(edge.metrics.unwrap(), &[closed]);
    alice.send(registrar.addr, &invite(&alice, "path-tcp-2", ""));
    let r = alice.recv_final();
    assert!(r.starts_with("SIP/2.0 430 Flow Failed"), "{r}");
}

#[test]
fn a_tampered_flow_token_is_refused() {
    let (edge, _registrar) = edge_and_registrar();
    let bob = Ua::new();
    bob.send(
        edge.addr,
        &register("10.0.0.2:5060", "UDP", "sip:bob@10.0.0.2:5060"),
    );
    let ok = bob.recv_final();
    let path = header(&ok, "Path").to_string();
    // One hex digit of the token changed: it names another port, and its MAC no longer fits.
    let at = path.find("<sip:ft").unwrap() + 7 + 11;
    let mut forged = path.into_bytes();
    forged[at] = if forged[at] == b'0' { b'1' } else { b'0' };
    let forged = String::from_utf8(forged).unwrap();
    let mallory = Ua::new();
    mallory.send(
        edge.addr,
        &invite(&mallory, "forged", &format!("Route: {forged}\n")),
    );
    let r = mallory.recv_final();
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden - Invalid Flow Token"),
        "{r}"
    );
    bob.expect_silence(Duration::from_millis(300));
}

/// bob's REGISTER of an Outbound flow (RFC 5626 section 4.2) on its own connection.
fn register_flow(reg_id: u32) -> String {
    format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKob{reg_id};rport\nMax-Forwards: 70\nTo: <sip:bob@{DOMAIN}>\nFrom: <sip:bob@{DOMAIN}>;tag=ob{reg_id}\nCall-ID: flow-{reg_id}\nCSeq: 1 REGISTER\nSupported: outbound\nContact: <sip:bob@127.0.0.1:9;transport=tcp;ob>;reg-id={reg_id};+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000000000b0b>\"\nExpires: 600\n\n"
    )
}

/// The INVITE alice sends next, as bob receives it on `flow` within 3 s.
fn call_arrives_on(alice: &Ua, registrar: SocketAddr, call_id: &str, flow: &mut TcpUa) {
    alice.send(registrar, &invite(alice, call_id, ""));
    let Some(Got::Message(inv)) = flow.recv_within(Duration::from_secs(3)) else {
        panic!("{call_id} did not come down the flow");
    };
    assert!(inv.contains(&format!("Call-ID: {call_id}")), "{inv}");
    flow.send(&respond(&inv, "200 OK", "b1", "", ""));
    assert!(alice.recv_final().starts_with("SIP/2.0 200 OK"));
}

#[test]
fn a_ua_with_two_flows_gets_its_calls_down_the_newest_open_one_and_430_with_none() {
    // One shard: the closes reach the core that decides without crossing a ring.
    let registrar = Proxy::builder()
        .metrics()
        .args(&["--domain", DOMAIN, "--shards", "1"])
        .start();
    let metrics = registrar.metrics.unwrap();
    let [mut first, mut second] = [1, 2].map(|reg_id| {
        let mut bob = TcpUa::connect(registrar.addr);
        bob.send(&register_flow(reg_id));
        let ok = bob.recv();
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        assert!(ok.contains("Require: outbound"), "{ok}");
        bob
    });
    let alice = Ua::new();
    call_arrives_on(&alice, registrar.addr, "ob-call-1", &mut second);

    // The newest flow's connection goes: calls take the other flow.
    drop(second);
    let closed =
        |n| format!("sipshard_tcp_connection_events_total{{shard=\"total\",event=\"closed\"}} {n}");
    assert_shows(metrics, &[&closed(1)]);
    call_arrives_on(&alice, registrar.addr, "ob-call-2", &mut first);

    // No flow left: 430, and no connection opened to bob (he accepts none).
    drop(first);
    assert_shows(metrics, &[&closed(2)]);
    alice.send(registrar.addr, &invite(&alice, "ob-call-3", ""));
    let r = alice.recv_final();
    assert!(r.starts_with("SIP/2.0 430 Flow Failed"), "{r}");
    let connected = "sipshard_tcp_connection_events_total{shard=\"total\",event=\"connected\"} 0";
    assert_shows(metrics, &[connected]);
}
