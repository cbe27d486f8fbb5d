//! Path (RFC 3327) and Outbound (RFC 5626) through the core: as registrar, a Path is stored and
//! becomes the route set towards the contact, and an Outbound flow is one binding per instance
//! and reg-id; as edge proxy, a forwarded REGISTER gets our Path with a flow token, and a
//! request on that token goes down the flow.

use super::tests::base_config;
use super::*;
use crate::sip::rewrite::DEFAULT_HEADROOM;
use crate::sip::{ConnId, Transport};

const NOW: Now = Now {
    unix_ms: 1_700_000_000_000,
};

/// A core listening on UDP and TCP at 192.0.2.10:5060, serving `domains`.
fn config(domains: &[&str]) -> ProxyConfig {
    let addr = "192.0.2.10:5060".parse().unwrap();
    let mut cfg = base_config("192.0.2.10:5060", domains, false);
    let domains: Vec<String> = domains.iter().map(|d| d.to_string()).collect();
    cfg.local = crate::identity::LocalIdentity::new(
        &[(Transport::Udp, addr), (Transport::Tcp, addr)],
        &[],
        None,
        &domains,
        None,
    );
    cfg
}

fn registrar() -> Core {
    Core::new(Box::leak(Box::new(config(&["example.com"]))))
}

fn run(core: &mut Core, src: Source, msg: &str) -> (Action, String) {
    let wire = msg.replace('\n', "\r\n");
    let mut pkt = PacketBuf::from_message(wire.as_bytes(), DEFAULT_HEADROOM);
    let a = core.handle(NOW, src, 0, &mut pkt);
    (a, String::from_utf8_lossy(pkt.as_slice()).into_owned())
}

fn udp(a: &str) -> Source {
    Source::udp(a.parse().unwrap())
}

fn register(contact: &str, extra: &str) -> String {
    format!("REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.50;branch=z9hG4bKp1\n{extra}From: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: path-reg\nCSeq: 1 REGISTER\nContact: {contact}\nContent-Length: 0\n\n")
}

/// bob's phone, on connection `conn` from port `port`.
fn tcp(port: u16, conn: u64) -> Source {
    Source {
        transport: Transport::Tcp,
        addr: ([203, 0, 113, 7], port).into(),
        conn: Some(ConnId(conn)),
        trusted: false,
    }
}

fn call(core: &mut Core) -> (Action, String) {
    run(
        core,
        udp("192.0.2.30:5060"),
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKc1\nFrom: <sip:alice@example.net>;tag=a\nTo: <sip:bob@example.com>\nCall-ID: path-call\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    )
}

#[test]
fn a_registered_path_is_the_route_set_towards_the_contact() {
    let mut core = registrar();
    let path = "Path: <sip:ft00@192.0.2.50;lr;ob>\nSupported: path\n";
    let (_, ok) = run(
        &mut core,
        udp("192.0.2.50:5060"),
        &register("<sip:bob@10.0.0.2>", path),
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        ok.contains("\r\nPath: <sip:ft00@192.0.2.50;lr;ob>\r\n"),
        "echoed: {ok}"
    );
    let (a, inv) = call(&mut core);
    let to = Target::udp("192.0.2.50:5060".parse().unwrap());
    assert_eq!(a, Action::Forward { to, socket: 0 }, "{inv}");
    assert!(
        inv.starts_with("INVITE sip:bob@10.0.0.2 SIP/2.0\r\n"),
        "{inv}"
    );
    assert!(
        inv.contains("\r\nRoute: <sip:ft00@192.0.2.50;lr;ob>\r\n"),
        "{inv}"
    );
}

#[test]
fn an_outbound_flow_is_one_binding_per_instance_and_reg_id() {
    let mut core = registrar();
    let ob = "<sip:bob@10.0.0.2:5062;transport=tcp>;reg-id=1;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\"";
    let (_, ok) = run(
        &mut core,
        tcp(40001, 5),
        &register(ob, "Supported: outbound\n"),
    );
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    assert!(
        ok.contains("\r\nRequire: outbound\r\nFlow-Timer: 29\r\n"),
        "{ok}"
    );
    assert!(ok.contains(";reg-id=1"), "{ok}");
    // The flow re-registers from a new connection and contact port: it replaces itself.
    let ob2 = ob.replace(":5062", ":5064");
    let again = register(&ob2, "Supported: outbound\n").replace("CSeq: 1", "CSeq: 2");
    let (_, ok) = run(&mut core, tcp(40002, 6), &again);
    assert_eq!(ok.matches("\r\nContact: ").count(), 1, "one binding: {ok}");
    let (a, inv) = call(&mut core);
    let to = Target {
        transport: Transport::Tcp,
        addr: "203.0.113.7:40002".parse().unwrap(),
        conn: Some(ConnId(6)),
        fallback_udp: false,
        flow: true,
    };
    assert_eq!(a, Action::Forward { to, socket: 1 }, "down the flow: {inv}");
}

#[test]
fn a_call_skips_a_flow_whose_connection_closed_and_gets_430_when_none_is_left() {
    let mut core = registrar();
    let flow = |reg_id: u32| {
        format!(
            "<sip:bob@10.0.0.2:5062;transport=tcp>;reg-id={reg_id};+sip.instance=\"<urn:uuid:1>\""
        )
    };
    // Two flows of one instance (RFC 5626 section 4.2): reg-id 1 on connection 5, then 2 on 6.
    for (reg_id, port, conn) in [(1, 40001, 5), (2, 40002, 6)] {
        let reg = register(&flow(reg_id), "Supported: outbound\n")
            .replace("CSeq: 1", &format!("CSeq: {reg_id}"));
        let (_, ok) = run(&mut core, tcp(port, conn), &reg);
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    }
    let down = |port: u16, conn: u64| Action::Forward {
        to: Target {
            transport: Transport::Tcp,
            addr: ([203, 0, 113, 7], port).into(),
            conn: Some(ConnId(conn)),
            fallback_udp: false,
            flow: true,
        },
        socket: 1,
    };
    assert_eq!(call(&mut core).0, down(40002, 6), "the most recent flow");
    core.flow_closed(Transport::Tls, ConnId(6)); // TLS's connection 6, not this one
    core.flow_closed(Transport::Tcp, ConnId(99)); // somebody else's
    assert_eq!(call(&mut core).0, down(40002, 6), "still the most recent");
    core.flow_closed(Transport::Tcp, ConnId(6));
    assert_eq!(call(&mut core).0, down(40001, 5), "the live one");
    core.flow_closed(Transport::Tcp, ConnId(5));
    let (a, r) = call(&mut core);
    assert!(matches!(a, Action::Reply { .. }), "{r}");
    assert!(r.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{r}");
    assert_eq!(core.counters().nat.flow_failed, 1);
}

#[test]
fn a_flow_registered_through_an_edge_is_the_edges_whatever_our_connection_to_it() {
    let mut core = registrar();
    let ob = "<sip:bob@10.0.0.2;transport=tcp>;reg-id=1;+sip.instance=\"<urn:uuid:1>\"";
    let path = "Path: <sip:ft00@192.0.2.50;lr;ob>\nSupported: path, outbound\n";
    let (_, ok) = run(&mut core, tcp(40001, 5), &register(ob, path));
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    // The edge's connection to us closes (it reconnects when it has something to send): the
    // flow is the edge's to keep, so the call still goes by the Path.
    core.flow_closed(Transport::Tcp, ConnId(5));
    let (a, inv) = call(&mut core);
    assert!(matches!(a, Action::Forward { .. }), "{inv}");
    assert!(
        inv.contains("\r\nRoute: <sip:ft00@192.0.2.50;lr;ob>\r\n"),
        "{inv}"
    );
}

#[test]
fn a_flow_through_a_hop_without_outbound_is_refused_when_required() {
    let mut core = registrar();
    let ob = "<sip:bob@10.0.0.2>;reg-id=1;+sip.instance=\"<urn:uuid:1>\"";
    let extra = "Path: <sip:192.0.2.50;lr>\nRequire: outbound\n";
    let (_, r) = run(&mut core, udp("192.0.2.50:5060"), &register(ob, extra));
    assert!(
        r.starts_with("SIP/2.0 439 First Hop Lacks Outbound Support"),
        "{r}"
    );
    // Not required: a plain binding.
    let (_, r) = run(
        &mut core,
        udp("192.0.2.50:5060"),
        &register(ob, "Path: <sip:192.0.2.50;lr>\n"),
    );
    assert!(
        r.starts_with("SIP/2.0 200") && !r.contains("Require: outbound"),
        "{r}"
    );
    let (_, r) = run(
        &mut core,
        udp("192.0.2.50:5060"),
        &register(
            "<sip:bob@10.0.0.2>;reg-id=x;+sip.instance=\"<urn:uuid:1>\"",
            "",
        ),
    );
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request - Malformed reg-id"),
        "{r}"
    );
}

/// An edge in front of registrar 192.0.2.20 for example.com.
fn edge() -> Core {
    let mut cfg = config(&[]);
    cfg.routes = vec![StaticRoute {
        domain: "example.com".into(),
        transport: Transport::Udp,
        targets: vec!["192.0.2.20:5060".parse().unwrap()],
    }];
    Core::new(Box::leak(Box::new(cfg)))
}

#[test]
fn an_edge_adds_its_path_and_sends_requests_on_the_token_down_the_flow() {
    let mut core = edge();
    let ua = Source {
        transport: Transport::Tcp,
        addr: "203.0.113.7:40001".parse().unwrap(),
        conn: Some(ConnId(9)),
        trusted: false,
    };
    let (a, fwd) = run(
        &mut core,
        ua,
        &register("<sip:bob@10.0.0.2;transport=tcp>", ""),
    );
    let registrar = Target::udp("192.0.2.20:5060".parse().unwrap());
    assert_eq!(
        a,
        Action::Forward {
            to: registrar,
            socket: 0
        },
        "{fwd}"
    );
    let path = fwd
        .lines()
        .find(|l| l.starts_with("Path: <sip:ft"))
        .unwrap_or_else(|| panic!("our Path: {fwd}"));
    assert!(path.ends_with("@192.0.2.10:5060;lr;ob>"), "{path}");
    let route = &path["Path: ".len()..];
    // The registrar sends bob's call with that Path as its Route: down bob's connection.
    let invite = |route: &str| {
        format!("INVITE sip:bob@10.0.0.2;transport=tcp SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKe1\nRoute: {route}\nFrom: <sip:alice@example.net>;tag=a\nTo: <sip:bob@example.com>\nCall-ID: edge-call\nCSeq: 1 INVITE\nMax-Forwards: 69\nContent-Length: 0\n\n")
    };
    let (a, inv) = run(&mut core, udp("192.0.2.20:5060"), &invite(route));
    let Action::Forward { to, .. } = a else {
        panic!("{a:?}: {inv}")
    };
    assert_eq!(
        (to.transport, to.addr, to.conn, to.flow),
        (ua.transport, ua.addr, ua.conn, true)
    );
    assert!(!inv.contains("Route:"), "our Route consumed: {inv}");
    assert_eq!(core.counters.nat.flow_routed, 1);
    // A token tampered with is refused.
    let forged = route
        .replacen("@192.0.2.10", "0@192.0.2.10", 1)
        .replacen("<sip:ft", "<sip:ft0", 1);
    let (a, r) = run(&mut core, udp("192.0.2.20:5060"), &invite(&forged));
    assert!(matches!(a, Action::Reply { .. }), "{r}");
    assert!(
        r.starts_with("SIP/2.0 403 Forbidden - Invalid Flow Token"),
        "{r}"
    );
    // A dead flow answers 430 towards the registrar.
    let (_, inv) = run(&mut core, udp("192.0.2.20:5060"), &invite(route));
    let mut pkt = PacketBuf::from_message(inv.as_bytes(), DEFAULT_HEADROOM);
    let a = core.flow_failed(&mut pkt);
    let back = String::from_utf8_lossy(pkt.as_slice()).into_owned();
    assert_eq!(
        a,
        Action::Forward {
            to: registrar,
            socket: 0
        },
        "{back}"
    );
    assert!(back.starts_with("SIP/2.0 430 Flow Failed\r\n"), "{back}");
    assert!(
        back.contains("Via: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKe1"),
        "{back}"
    );
    assert!(!back.contains("z9hG4bKsS"), "our Via is off: {back}");
}
