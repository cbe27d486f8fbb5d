//! The core driven with byte strings: no sockets, a fixed clock.

use std::net::SocketAddr;

use super::*;
use crate::identity::LocalIdentity;
use crate::sip::rewrite::DEFAULT_HEADROOM;
use crate::sip::Transport;
use next_hop::HopState;

const NOW: Now = Now {
    unix_ms: 1_700_000_000_000,
};

pub(super) fn config(listen: &str, domains: &[&str], record_route: bool) -> &'static ProxyConfig {
    Box::leak(Box::new(base_config(listen, domains, record_route)))
}

pub(super) fn base_config(listen: &str, domains: &[&str], record_route: bool) -> ProxyConfig {
    let addr: SocketAddr = listen.parse().unwrap();
    ProxyConfig {
        local: LocalIdentity::new(
            &[(Transport::Udp, addr)],
            &[],
            Some("edge1"),
            &domains.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            None,
        ),
        routes: vec![],
        record_route,
        redirect: RedirectPolicy::default(),
        registrar: RegistrarConfig {
            default_expires: 3600,
            min_expires: 60,
            max_expires: 7200,
            max_bindings_per_aor: 10,
            max_bindings: 1_000_000,
            nat: Default::default(),
            flow_timer: 29,
        },
        max_message: 65_507,
        pike: None,
        udp_mtu: 1300,
        nat_ping: None,
        edge_path: true,
        flow_key: super::flow::FlowKey::new([7; 32]),
    }
}

pub(super) fn run(core: &mut Core, src: &str, msg: &str) -> (Action, String) {
    let wire = msg.replace('\n', "\r\n");
    let mut pkt = PacketBuf::from_message(wire.as_bytes(), DEFAULT_HEADROOM);
    let a = core.handle(NOW, Source::udp(src.parse().unwrap()), 0, &mut pkt);
    (a, String::from_utf8_lossy(pkt.as_slice()).into_owned())
}

pub(super) fn register(core: &mut Core, user: &str, domain: &str, contact: &str) {
    let (a, out) = run(
        core,
        "192.0.2.20:5060",
        &format!("REGISTER sip:{domain} SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.20;branch=z9hG4bKr1\nFrom: <sip:{user}@{domain}>;tag=r\nTo: <sip:{user}@{domain}>\nCall-ID: reg-{user}\nCSeq: 1 REGISTER\nContact: <{contact}>\nContent-Length: 0\n\n"),
    );
    assert!(
        matches!(a, Action::Reply { .. }) && out.starts_with("SIP/2.0 200"),
        "{out}"
    );
}

#[test]
fn strict_router_upstream_is_fixed_up() {
    // RFC 3261 section 16.4: the Request-URI is the Record-Route value we placed; the real
    // target is the last Route.
    let mut core = Core::new(config("192.0.2.10:5060", &[], true));
    let (a, out) = run(
        &mut core,
        "192.0.2.30:5060",
        "BYE sip:192.0.2.10:5060;lr SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKs1\nRoute: <sip:192.0.2.40;lr>, <sip:alice@192.0.2.50:5070>\nFrom: <sip:b@x>;tag=1\nTo: <sip:a@y>;tag=2\nCall-ID: strict\nCSeq: 2 BYE\nMax-Forwards: 10\nContent-Length: 0\n\n",
    );
    assert_eq!(
        a,
        Action::Forward {
            to: Target::udp("192.0.2.40:5060".parse().unwrap()),
            socket: 0
        }
    );
    assert!(
        out.starts_with("BYE sip:alice@192.0.2.50:5070 SIP/2.0\r\n"),
        "{out}"
    );
    assert!(out.contains("Route: <sip:192.0.2.40;lr>\r\n"), "{out}");
    assert!(!out.contains("alice@192.0.2.50:5070>"), "{out}");
    assert!(out.contains("Max-Forwards: 9\r\n"));
}

#[test]
fn our_route_inside_a_multi_value_line_is_removed_alone() {
    let mut core = Core::new(config("192.0.2.10:5060", &[], false));
    let (a, out) = run(
        &mut core,
        "192.0.2.30:5060",
        "ACK sip:bob@192.0.2.60 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKa1\nRoute: <sip:192.0.2.10;lr>, <sip:192.0.2.40;lr>\nFrom: <sip:b@x>;tag=1\nTo: <sip:a@y>;tag=2\nCall-ID: mv\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert_eq!(
        a,
        Action::Forward {
            to: Target::udp("192.0.2.40:5060".parse().unwrap()),
            socket: 0
        }
    );
    assert!(out.contains("\r\nRoute: <sip:192.0.2.40;lr>\r\n"), "{out}");
    assert!(!out.contains("192.0.2.10;lr"), "{out}");
}

#[test]
fn ipv6_registration_and_call() {
    let mut core = Core::new(config("[2001:db8::10]:5060", &["example.com"], true));
    let (a, out) = run(
        &mut core,
        "[2001:db8::20]:5062",
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP [2001:db8::20]:5062;branch=z9hG4bKv6r;rport\nFrom: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: v6reg\nCSeq: 1 REGISTER\nContact: <sip:bob@[2001:db8::20]:5062>\nContent-Length: 0\n\n",
    );
    assert_eq!(
        a,
        Action::Reply {
            to: Target::udp("[2001:db8::20]:5062".parse().unwrap()),
            socket: 0
        }
    );
    assert!(out.contains("rport=5062;received=[2001:db8::20]"), "{out}");
    let (a, out) = run(
        &mut core,
        "[2001:db8::30]:5060",
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP [2001:db8::30];branch=z9hG4bKv6i\nFrom: <sip:a@example.net>;tag=1\nTo: <sip:bob@example.com>\nCall-ID: v6call\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert_eq!(
        a,
        Action::Forward {
            to: Target::udp("[2001:db8::20]:5062".parse().unwrap()),
            socket: 0
        }
    );
    assert!(
        out.starts_with("INVITE sip:bob@[2001:db8::20]:5062 SIP/2.0\r\n"),
        "{out}"
    );
    assert!(out.contains("Record-Route: <sip:[2001:db8::10]:5060;lr>\r\nVia: SIP/2.0/UDP [2001:db8::10]:5060;branch=z9hG4bKsS"), "{out}");
}

/// bob registers `sip:bob@10.0.0.2:5060` from 198.51.100.7:40312 (behind NAT), then is
/// called: where does the INVITE go, with which Request-URI?
fn call_a_natted_bob(nat: crate::registrar::NatMode) -> (Action, String) {
    let mut cfg = base_config("192.0.2.10:5060", &["example.com"], false);
    cfg.registrar.nat = nat;
    let mut core = Core::new(Box::leak(Box::new(cfg)));
    let (a, out) = run(
        &mut core,
        "198.51.100.7:40312",
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKn1;rport\nFrom: <sip:bob@example.com>;tag=r\nTo: <sip:bob@example.com>\nCall-ID: natreg\nCSeq: 1 REGISTER\nContact: <sip:bob@10.0.0.2:5060>\nContent-Length: 0\n\n",
    );
    assert_eq!(
        a,
        Action::Reply {
            to: Target::udp("198.51.100.7:40312".parse().unwrap()),
            socket: 0
        }
    );
    // The 200 lists the contact as registered, whatever the destination.
    assert!(
        out.contains("\r\nContact: <sip:bob@10.0.0.2:5060>;expires="),
        "{out}"
    );
    run(
        &mut core,
        "192.0.2.30:5060",
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKn2\nFrom: <sip:a@example.net>;tag=1\nTo: <sip:bob@example.com>\nCall-ID: natcall\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    )
}

#[test]
fn a_contact_behind_nat_is_called_where_its_register_came_from() {
    use crate::registrar::NatMode;
    for nat in [NatMode::Auto, NatMode::Always] {
        let (a, out) = call_a_natted_bob(nat);
        let to = Target::udp("198.51.100.7:40312".parse().unwrap());
        assert_eq!(a, Action::Forward { to, socket: 0 }, "{nat:?}");
        assert!(
            out.starts_with("INVITE sip:bob@10.0.0.2:5060 SIP/2.0\r\n"),
            "{out}"
        );
    }
    let (a, _) = call_a_natted_bob(NatMode::Off);
    let to = Target::udp("10.0.0.2:5060".parse().unwrap());
    assert_eq!(
        a,
        Action::Forward { to, socket: 0 },
        "off: the contact as written"
    );
}

#[test]
fn dialogs_with_a_caller_behind_nat_go_back_through_its_alias() {
    let mut core = Core::new(config("192.0.2.10:5060", &[], true));
    // alice, behind NAT, calls bob (a foreign domain's address).
    let (a, inv) = run(
        &mut core,
        "198.51.100.7:40312",
        "INVITE sip:bob@192.0.2.40 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKal1;rport\nFrom: <sip:alice@example.net>;tag=a1\nTo: <sip:bob@192.0.2.40>\nCall-ID: alias-1\nCSeq: 1 INVITE\nContact: <sip:alice@10.0.0.2:5060>\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert!(matches!(a, Action::Forward { .. }), "{inv}");
    assert!(
        inv.contains("\r\nContact: <sip:alice@10.0.0.2:5060;alias=198.51.100.7~40312~1>\r\n"),
        "{inv}"
    );
    assert_eq!(core.counters.nat.aliased, 1);
    // bob's BYE comes back by our Record-Route to that Contact: it goes to alice's NAT.
    let (a, bye) = run(
        &mut core,
        "192.0.2.40:5060",
        "BYE sip:alice@10.0.0.2:5060;alias=198.51.100.7~40312~1 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.40;branch=z9hG4bKby1\nRoute: <sip:192.0.2.10:5060;lr>\nFrom: <sip:bob@192.0.2.40>;tag=b1\nTo: <sip:alice@example.net>;tag=a1\nCall-ID: alias-1\nCSeq: 1 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    let to = Target::udp("198.51.100.7:40312".parse().unwrap());
    assert_eq!(a, Action::Forward { to, socket: 0 }, "{bye}");
    assert!(
        bye.starts_with("BYE sip:alice@10.0.0.2:5060 SIP/2.0\r\n"),
        "{bye}"
    );
    // A caller whose Via is its source is not behind NAT: its Contact is left alone.
    let (_, inv) = run(
        &mut core,
        "192.0.2.30:5060",
        "INVITE sip:bob@192.0.2.40 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKal2\nFrom: <sip:carol@example.net>;tag=c1\nTo: <sip:bob@192.0.2.40>\nCall-ID: alias-2\nCSeq: 1 INVITE\nContact: sip:carol@192.0.2.30\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert!(
        inv.contains("\r\nContact: sip:carol@192.0.2.30\r\n"),
        "{inv}"
    );
}

#[test]
fn a_callee_behind_nat_gets_an_alias_in_its_answer() {
    let mut core = Core::new(config("192.0.2.10:5060", &[], true));
    let (_, inv) = run(
        &mut core,
        "192.0.2.30:5060",
        "INVITE sip:bob@198.51.100.7:40312 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKal3\nFrom: <sip:carol@example.net>;tag=c1\nTo: <sip:bob@example.com>\nCall-ID: alias-3\nCSeq: 1 INVITE\nContact: <sip:carol@192.0.2.30>\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    let our_via = inv
        .lines()
        .find(|l| l.starts_with("Via: SIP/2.0/UDP 192.0.2.10"))
        .unwrap()
        .to_string();
    // bob answers from behind NAT with his private (bare) Contact.
    let ok = format!(
        "SIP/2.0 200 OK\n{our_via}\nVia: SIP/2.0/UDP 192.0.2.30:5060;branch=z9hG4bKal3\nFrom: <sip:carol@example.net>;tag=c1\nTo: <sip:bob@example.com>;tag=b1\nCall-ID: alias-3\nCSeq: 1 INVITE\nContact: sip:bob@10.0.0.9\nContent-Length: 0\n\n"
    );
    let (a, out) = run(&mut core, "198.51.100.7:40312", &ok);
    assert!(matches!(a, Action::Forward { .. }), "{out}");
    assert!(
        out.contains("\r\nContact: <sip:bob@10.0.0.9;alias=198.51.100.7~40312~1>\r\n"),
        "{out}"
    );
}

#[test]
fn nat_contacts_loaded_at_start_up_are_shared_out_for_pinging() {
    use crate::location::{Binding, LocationTable, Version};
    use crate::proxy::nat_ping::{NatPingConfig, PingBatch, PingMethod};
    let mut cfg = base_config("192.0.2.10:5060", &["example.com"], false);
    cfg.nat_ping = Some(NatPingConfig {
        interval_ms: 1_000,
        method: PingMethod::Options,
        failures: 3,
    });
    let cfg: &'static ProxyConfig = Box::leak(Box::new(cfg));
    let mut table = LocationTable::new();
    for i in 0..50u16 {
        let (aor, contact) = (format!("u{i}@example.com"), format!("sip:u{i}@10.0.0.2"));
        let binding = Binding {
            version: Version {
                stamp_ms: NOW.unix_ms,
                call_id_hash: 1,
                cseq: 1,
            },
            expires_at: (NOW.secs() + 600) as u32,
            q: 1000,
            dest: Target::udp(SocketAddr::from(([198, 51, 100, 7], 40_000 + i))),
            // Every other one is behind NAT.
            nat: i % 2 == 0,
            contact: contact.as_bytes(),
            extra: Default::default(),
        };
        table.merge(aor.as_bytes(), &binding);
    }
    let mut pinged = Vec::new();
    for shard in 0..2 {
        let mut core = Core::with_table(cfg, table.clone());
        core.start_nat_pings(shard, 2);
        let mut batch = PingBatch::default();
        // One interval (50 slots of 20 ms): each contact once.
        for step in 0..50 {
            core.nat_pings(
                Now {
                    unix_ms: NOW.unix_ms + step * 20,
                },
                &mut batch,
            );
        }
        pinged.extend(batch.pings.iter().map(|p| p.to.port()));
    }
    pinged.sort_unstable();
    let natted: Vec<u16> = (0..50).filter(|i| i % 2 == 0).map(|i| 40_000 + i).collect();
    assert_eq!(
        pinged, natted,
        "each NAT contact pinged once, by one of the two shards"
    );
}

#[test]
fn a_stun_binding_request_on_the_sip_port_is_answered_with_its_source() {
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], false));
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(&[9; 12]);
    let src: SocketAddr = "198.51.100.7:40312".parse().unwrap();
    let mut pkt = PacketBuf::from_message(&request, DEFAULT_HEADROOM);
    let a = core.handle(NOW, Source::udp(src), 0, &mut pkt);
    assert_eq!(
        a,
        Action::Reply {
            to: Target::udp(src),
            socket: 0
        }
    );
    let mut expected = Vec::new();
    crate::stun::binding_success(&[9; 12], src, false, &mut expected);
    assert_eq!(pkt.as_slice(), expected);
    assert_eq!(core.counters.nat.stun_answered, 1);
    // A Binding indication needs no answer; a broken message is dropped. Both counted.
    for broken in [&[0x00, 0x11][..], &[0x00, 0x01, 0x00, 0x04][..]] {
        let mut d = request.clone();
        d[..broken.len()].copy_from_slice(broken);
        let mut pkt = PacketBuf::from_message(&d, DEFAULT_HEADROOM);
        let a = core.handle(NOW, Source::udp(src), 0, &mut pkt);
        assert_eq!(a, Action::Drop(DropReason::Stun));
    }
    assert_eq!(core.counters.drops[DropReason::Stun as usize], 2);
}

#[test]
fn responses_follow_received_and_rport_of_the_next_via() {
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], false));
    register(&mut core, "bob", "example.com", "sip:bob@192.0.2.60:5080");
    let (_, fwd) = run(
        &mut core,
        "203.0.113.5:40000",
        "INVITE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnat;rport\nFrom: <sip:a@example.net>;tag=1\nTo: <sip:bob@example.com>\nCall-ID: nat\nCSeq: 1 INVITE\nMax-Forwards: 70\nContent-Length: 0\n\n",
    );
    assert!(
        fwd.contains(
            "Via: SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bKnat;rport=40000;received=203.0.113.5\r\n"
        ),
        "{fwd}"
    );
    // The UAS answers with the Via stack it received.
    let vias: Vec<&str> = fwd.lines().filter(|l| l.starts_with("Via: ")).collect();
    let resp = format!(
        "SIP/2.0 180 Ringing\n{}\nFrom: <sip:a@example.net>;tag=1\nTo: <sip:bob@example.com>;tag=b\nCall-ID: nat\nCSeq: 1 INVITE\nContent-Length: 0\n\n",
        vias.join("\n")
    );
    let (a, out) = run(&mut core, "192.0.2.60:5080", &resp);
    assert_eq!(
        a,
        Action::Forward {
            to: Target::udp("203.0.113.5:40000".parse().unwrap()),
            socket: 0
        }
    );
    assert_eq!(out.matches("Via: ").count(), 1, "{out}");
}

#[test]
fn retransmitted_register_is_answered_without_change() {
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], false));
    register(&mut core, "bob", "example.com", "sip:bob@192.0.2.60");
    register(&mut core, "bob", "example.com", "sip:bob@192.0.2.60");
    assert_eq!(core.counters.registrations_added, 1);
    assert_eq!(core.counters.registrations_refreshed, 0);
    assert_eq!(core.take_replication().count(), 1);
}

#[test]
fn replicas_reach_a_second_core() {
    let cfg = config("192.0.2.10:5060", &["example.com"], false);
    let (mut a, mut b) = (Core::new(cfg), Core::new(cfg));
    register(&mut a, "bob", "example.com", "sip:bob@192.0.2.60");
    for rec in a.take_replication().collect::<Vec<_>>() {
        b.apply_replica(&rec);
    }
    let (act, _) = run(
        &mut b,
        "192.0.2.30:5060",
        "MESSAGE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.30;branch=z9hG4bKm\nFrom: <sip:a@example.net>;tag=1\nTo: <sip:bob@example.com>\nCall-ID: m\nCSeq: 1 MESSAGE\nMax-Forwards: 70\nContent-Length: 2\n\nhi",
    );
    assert_eq!(
        act,
        Action::Forward {
            to: Target::udp("192.0.2.60:5060".parse().unwrap()),
            socket: 0
        }
    );
}

#[test]
fn no_input_panics_the_core() {
    // A handful of hostile shapes; the fuzz target covers the parser far more widely.
    let mut core = Core::new(config("192.0.2.10:5060", &["example.com"], true));
    for msg in [
        "",
        "\r\n",
        "SIP/2.0 200 OK\n\n",
        "INVITE sip:a@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nRoute: <sip:192.0.2.10;lr>,,,<\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@example.com>\nCall-ID: x\nCSeq: 1 INVITE\n\n",
        "INVITE sip:192.0.2.10 SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nRoute: <sip:192.0.2.10;lr>\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@example.com>\nCall-ID: x\nCSeq: 1 INVITE\n\n",
        "REGISTER sip:example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@b>;tag=1\nTo: <sip:a@example.com>\nCall-ID: x\nCSeq: 1 REGISTER\nContact: <sip:a@1.2.3.4>;q=7\n\n",
    ] {
        let _ = run(&mut core, "192.0.2.1:5060", msg);
    }
}

#[path = "tests_flows.rs"]
mod flows;

#[path = "tests_strict.rs"]
mod strict;
