//! The core with a TCP listener beside the UDP one: transports chosen from the source, the
//! URI and the registration; connection ids carried through Via and the location table.

use std::net::SocketAddr;

use super::*;
use crate::identity::LocalIdentity;
use crate::sip::rewrite::DEFAULT_HEADROOM;
use crate::sip::{ConnId, Transport};

const NOW: Now = Now {
    unix_ms: 1_700_000_000_000,
};
const US: &str = "192.0.2.10:5060";

fn core() -> Core {
    core_rr(false)
}

fn core_rr(record_route: bool) -> Core {
    let addr: SocketAddr = US.parse().unwrap();
    let mut cfg = super::tests::base_config(US, &["example.com"], record_route);
    cfg.local = LocalIdentity::new(
        &[(Transport::Udp, addr), (Transport::Tcp, addr)],
        &[],
        Some("edge1"),
        &["example.com".into()],
        None,
    );
    Core::new(Box::leak(Box::new(cfg)))
}

fn tcp(addr: &str, conn: u64) -> Source {
    Source {
        transport: Transport::Tcp,
        addr: addr.parse().unwrap(),
        conn: Some(ConnId(conn)),
        trusted: false,
    }
}

/// A call for bob@example.com from a UDP caller.
fn call_bob(core: &mut Core) -> (Action, String) {
    run(
        core,
        Source::udp("198.51.100.1:5060".parse().unwrap()),
        0,
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKi\nFrom: <sip:alice@example.net>;tag=a\nTo: <sip:bob@example.com>\nCall-ID: call\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    )
}

fn run(core: &mut Core, src: Source, listener: usize, msg: &str) -> (Action, String) {
    let wire = msg.replace('\n', "\r\n");
    let mut pkt = PacketBuf::from_message(wire.as_bytes(), DEFAULT_HEADROOM);
    let a = core.handle(NOW, src, listener, &mut pkt);
    (a, String::from_utf8_lossy(pkt.as_slice()).into_owned())
}

#[test]
fn a_ua_registered_over_tcp_is_called_on_its_connection() {
    let mut core = core();
    let (a, out) = run(
        &mut core,
        tcp("203.0.113.7:40001", 77),
        1,
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/TCP 203.0.113.7:5060;branch=z9hG4bKr\nFrom: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: reg\nCSeq: 1 REGISTER\nContact: <sip:bob@203.0.113.7:5060;transport=tcp>\nContent-Length: 0\n\n",
    );
    // The 200 goes back on the connection the REGISTER came on.
    let back = Target {
        transport: Transport::Tcp,
        addr: "203.0.113.7:40001".parse().unwrap(),
        conn: Some(ConnId(77)),
        fallback_udp: false,
        flow: false,
    };
    assert_eq!(
        a,
        Action::Reply {
            to: back,
            socket: 1
        },
        "{out}"
    );
    let (a, out) = call_bob(&mut core);
    // The contact's address, over TCP, on the connection it registered on.
    let to = Target {
        transport: Transport::Tcp,
        addr: "203.0.113.7:5060".parse().unwrap(),
        conn: Some(ConnId(77)),
        fallback_udp: false,
        flow: false,
    };
    assert_eq!(a, Action::Forward { to, socket: 1 }, "{out}");
    assert!(
        out.contains("Via: SIP/2.0/TCP 192.0.2.10:5060;branch="),
        "{out}"
    );
    assert!(
        !out.contains(";sc="),
        "a UDP request names no connection: {out}"
    );
}

#[test]
fn a_ua_behind_nat_over_tcp_is_called_on_its_connection_then_at_its_source() {
    let mut core = core();
    let _ = run(
        &mut core,
        tcp("203.0.113.7:40001", 77),
        1,
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/TCP 10.0.0.7:5060;branch=z9hG4bKr\nFrom: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: reg\nCSeq: 1 REGISTER\nContact: <sip:bob@10.0.0.7:5060;transport=tcp>\nContent-Length: 0\n\n",
    );
    let (a, out) = call_bob(&mut core);
    // The private contact stays the Request-URI; the packet goes where the REGISTER came from.
    let to = Target {
        transport: Transport::Tcp,
        addr: "203.0.113.7:40001".parse().unwrap(),
        conn: Some(ConnId(77)),
        fallback_udp: false,
        flow: false,
    };
    assert_eq!(a, Action::Forward { to, socket: 1 }, "{out}");
    assert!(
        out.starts_with("INVITE sip:bob@10.0.0.7:5060;transport=tcp SIP/2.0\r\n"),
        "{out}"
    );
}

#[test]
fn a_response_finds_the_connection_its_request_came_on_through_our_via() {
    let mut core = core();
    let (a, inv) = run(
        &mut core,
        tcp("203.0.113.9:40002", 0x0001_0000_0000_0005),
        1,
        "INVITE sip:carol@198.51.100.20 SIP/2.0\nVia: SIP/2.0/TCP 10.0.0.9:5060;branch=z9hG4bKt;rport\nFrom: <sip:alice@example.com>;tag=a\nTo: <sip:carol@198.51.100.20>\nCall-ID: tcp-call\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    let carol: SocketAddr = "198.51.100.20:5060".parse().unwrap();
    assert_eq!(
        a,
        Action::Forward {
            to: Target::udp(carol),
            socket: 0
        },
        "{inv}"
    );
    assert!(inv.contains(";sc=281474976710661\r\n"), "{inv}");
    assert!(inv.contains(";rport=40002;received=203.0.113.9"), "{inv}");
    // carol's 200 comes back over UDP, possibly to another shard: our Via names the connection.
    let ok = inv
        .replacen(
            "INVITE sip:carol@198.51.100.20 SIP/2.0",
            "SIP/2.0 200 OK",
            1,
        )
        .replace(
            "To: <sip:carol@198.51.100.20>",
            "To: <sip:carol@198.51.100.20>;tag=c",
        );
    let (a, out) = run(&mut core, Source::udp(carol), 0, &ok.replace("\r\n", "\n"));
    let back = Target {
        transport: Transport::Tcp,
        addr: "203.0.113.9:40002".parse().unwrap(),
        conn: Some(ConnId(0x0001_0000_0000_0005)),
        fallback_udp: false,
        flow: false,
    };
    assert_eq!(
        a,
        Action::Forward {
            to: back,
            socket: 1
        },
        "{out}"
    );
}

#[test]
fn the_uri_transport_parameter_picks_the_transport() {
    let mut core = core();
    let (a, out) = run(
        &mut core,
        Source::udp("198.51.100.1:5060".parse().unwrap()),
        0,
        "OPTIONS sip:198.51.100.30;transport=tcp SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKo\nFrom: <sip:a@example.net>;tag=a\nTo: <sip:198.51.100.30>\nCall-ID: opt\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    let to = Target::new(Transport::Tcp, "198.51.100.30:5060".parse().unwrap());
    assert_eq!(a, Action::Forward { to, socket: 1 }, "{out}");
    // sips: is TLS, which this node does not serve: never downgraded, dropped and counted.
    let (a, _) = run(
        &mut core,
        Source::udp("198.51.100.1:5060".parse().unwrap()),
        0,
        "OPTIONS sips:198.51.100.30 SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKs\nFrom: <sip:a@example.net>;tag=a\nTo: <sip:198.51.100.30>\nCall-ID: opts\nCSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert_eq!(a, Action::Drop(DropReason::NoSocket));
}

/// An INVITE for bob (registered over UDP) with a body of `body` bytes, from a UDP caller.
fn invite_with_body(core: &mut Core, body: usize) -> (Action, String) {
    let reg = "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKr\nFrom: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: reg-bob\nCSeq: 1 REGISTER\nContact: <sip:bob@198.51.100.7>\nContent-Length: 0\n\n";
    let udp = Source::udp("198.51.100.7:5060".parse().unwrap());
    assert!(matches!(run(core, udp, 0, reg).0, Action::Reply { .. }));
    let sdp = "v".repeat(body);
    let invite = format!("INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKbig\nFrom: <sip:alice@example.net>;tag=a\nTo: <sip:bob@example.com>\nCall-ID: big\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Type: application/sdp\nContent-Length: {body}\n\n{sdp}");
    run(
        core,
        Source::udp("198.51.100.1:5060".parse().unwrap()),
        0,
        &invite,
    )
}

#[test]
fn a_request_too_large_for_udp_leaves_over_tcp_and_may_fall_back() {
    let bob: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    let mut core = core();
    let (a, out) = invite_with_body(&mut core, 4000);
    let to = Target {
        transport: Transport::Tcp,
        addr: bob,
        conn: None,
        fallback_udp: true,
        flow: false,
    };
    assert_eq!(a, Action::Forward { to, socket: 1 }, "{out}");
    assert!(
        out.contains("\r\nVia: SIP/2.0/TCP 192.0.2.10:5060;branch="),
        "{out}"
    );
    assert_eq!(core.counters.udp_mtu_switches, 1);
    // A small one stays on UDP.
    let mut core = super::tests_tcp::core();
    let (a, _) = invite_with_body(&mut core, 100);
    assert_eq!(
        a,
        Action::Forward {
            to: Target::udp(bob),
            socket: 0
        }
    );
    assert_eq!(core.counters.udp_mtu_switches, 0);
}

#[test]
fn udp_mtu_zero_never_switches() {
    let addr: SocketAddr = US.parse().unwrap();
    let mut cfg = super::tests::base_config(US, &["example.com"], false);
    cfg.local = LocalIdentity::new(
        &[(Transport::Udp, addr), (Transport::Tcp, addr)],
        &[],
        None,
        &["example.com".into()],
        None,
    );
    cfg.udp_mtu = 0;
    let mut core = Core::new(Box::leak(Box::new(cfg)));
    let (a, _) = invite_with_body(&mut core, 4000);
    let bob: SocketAddr = "198.51.100.7:5060".parse().unwrap();
    assert_eq!(
        a,
        Action::Forward {
            to: Target::udp(bob),
            socket: 0
        }
    );
}

#[test]
fn a_dialog_that_changes_transport_here_is_record_routed_twice_and_routed_back() {
    let mut core = core_rr(true);
    // bob registered over TCP; alice calls over UDP.
    let (registered, _) = run(
        &mut core,
        tcp("203.0.113.7:40001", 77),
        1,
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/TCP 203.0.113.7:5060;branch=z9hG4bKr\nFrom: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: reg\nCSeq: 1 REGISTER\nContact: <sip:bob@203.0.113.7:5060;transport=tcp>\nContent-Length: 0\n\n",
    );
    assert!(matches!(registered, Action::Reply { .. }));
    let (_, inv) = run(
        &mut core,
        Source::udp("198.51.100.1:5060".parse().unwrap()),
        0,
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKi\nFrom: <sip:alice@example.net>;tag=a\nTo: <sip:bob@example.com>\nCall-ID: call\nCSeq: 1 INVITE\nContact: <sip:alice@198.51.100.1>\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert!(
        inv.contains("Record-Route: <sip:192.0.2.10:5060;transport=tcp;lr>\r\nRecord-Route: <sip:192.0.2.10:5060;lr>\r\nVia: SIP/2.0/TCP"),
        "{inv}"
    );
    // bob's BYE carries both as its Route set: both are ours, both are consumed, and it goes
    // to alice's contact over UDP.
    let (a, bye) = run(
        &mut core,
        tcp("203.0.113.7:40001", 77),
        1,
        "BYE sip:alice@198.51.100.1 SIP/2.0\nVia: SIP/2.0/TCP 203.0.113.7:5060;branch=z9hG4bKb\nRoute: <sip:192.0.2.10:5060;transport=tcp;lr>\nRoute: <sip:192.0.2.10:5060;lr>\nFrom: <sip:bob@example.com>;tag=b\nTo: <sip:alice@example.net>;tag=a\nCall-ID: call\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    let alice = Target::udp("198.51.100.1:5060".parse().unwrap());
    assert_eq!(
        a,
        Action::Forward {
            to: alice,
            socket: 0
        },
        "{bye}"
    );
    assert!(!bye.contains("Route:"), "{bye}");
    // One transport throughout: one Record-Route, as before.
    let (_, inv) = run(
        &mut core,
        tcp("203.0.113.8:40003", 78),
        1,
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/TCP 203.0.113.8;branch=z9hG4bKj\nFrom: <sip:carol@example.net>;tag=c\nTo: <sip:bob@example.com>\nCall-ID: call2\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert_eq!(inv.matches("Record-Route:").count(), 1, "{inv}");
}
