//! Subscribers behind NAT (docs/nat.md): a contact registered from behind NAT is called where
//! its REGISTER came from; STUN keep-alives are answered on the SIP port; NAT pings keep a
//! pinhole open and remove contacts that stop answering.
//!
//! Two kinds of test. Over loopback, a UA writes a private address in its Via and Contact (what
//! a phone behind NAT does) and the test checks where sipshard sends. Through a real NAT, in
//! network namespaces the test builds (`testkit::netns`: root, iproute2, nftables), a UA in a
//! private LAN registers through a masquerading router whose UDP flows expire after 2 s, and a
//! caller on the other side calls it after the flow would have expired: the call arrives when
//! NAT pings or STUN keep-alives are on, and does not when they are off; and baresip, a real
//! softphone, registers through that NAT and answers such a call.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sipshard_testkit::netns::{in_netns, Nat};
use sipshard_testkit::peers::baresip::{Network, Phone};
use sipshard_testkit::peers::{self, require};
use sipshard_testkit::pki::Pki;
use sipshard_testkit::sip::{header, respond, start_line, SDP};
use sipshard_testkit::ua::register;
use sipshard_testkit::{bin, eventually, scrape, Proc, Proxy, Scratch, Ua};

const DOMAIN: &str = "example.com";

fn register_as(ua: &Ua, registrar: SocketAddr, sent_by: &str, cseq: u32) -> String {
    ua.send(
        registrar,
        &format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {sent_by};branch=z9hG4bKnr{cseq};rport\nMax-Forwards: 70\nTo: <sip:bob@{DOMAIN}>\nFrom: <sip:bob@{DOMAIN}>;tag=nr1\nCall-ID: nat-reg-bob\nCSeq: {cseq} REGISTER\nContact: <sip:bob@{sent_by}>\nExpires: 3600\n\n"
        ),
    );
    ua.recv_final()
}

fn invite(caller: &Ua, proxy: SocketAddr, call_id: &str) {
    caller.send(
        proxy,
        &format!(
            "INVITE sip:bob@{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id};rport\nMax-Forwards: 70\nTo: <sip:bob@{DOMAIN}>\nFrom: <sip:alice@example.net>;tag=a1\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\n\n",
            me = caller.addr
        ),
    );
}

/// The next message `ua` receives within `t` that is a request of `method`, answering every
/// OPTIONS (a NAT ping) on the way when `answer_pings`; `None` when none came.
fn next_request(ua: &Ua, method: &str, t: Duration, answer_pings: bool) -> Option<String> {
    let deadline = Instant::now() + t;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let (m, from) = ua.recv_from_within(left)?;
        if m.starts_with("OPTIONS ") && answer_pings {
            ua.sock
                .send_to(respond(&m, "200 OK", "", "", "").as_bytes(), from)
                .unwrap();
        }
        if m.starts_with(&format!("{method} ")) {
            return Some(m);
        }
    }
    None
}

#[test]
fn a_contact_behind_nat_is_called_where_it_registered_from_with_its_contact_as_request_uri() {
    let p = Proxy::start(&["--domain", DOMAIN]);
    let bob = Ua::new();
    let r = register_as(&bob, p.addr, "10.0.0.2:5060", 1);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    assert!(
        r.contains("Contact: <sip:bob@10.0.0.2:5060>;expires=3600"),
        "{r}"
    );
    let alice = Ua::new();
    invite(&alice, p.addr, "nat-call-1");
    let inv = next_request(&bob, "INVITE", Duration::from_secs(3), false)
        .expect("the INVITE reaches bob's source address");
    assert_eq!(start_line(&inv), "INVITE sip:bob@10.0.0.2:5060 SIP/2.0");

    // With --nat off the private address is used as written: nothing reaches bob.
    let p = Proxy::start(&["--domain", DOMAIN, "--nat", "off"]);
    register_as(&bob, p.addr, "10.0.0.2:5060", 2);
    invite(&alice, p.addr, "nat-call-2");
    assert!(next_request(&bob, "INVITE", Duration::from_millis(500), false).is_none());
}

#[test]
fn stun_binding_requests_are_answered_on_the_sip_port_with_the_source_address() {
    let p = Proxy::builder()
        .metrics()
        .args(&["--domain", DOMAIN])
        .start();
    let ua = Ua::new();
    assert_eq!(stun_binding(&ua, p.addr, b"sipshard-t1!"), ua.addr);
    // A malformed one is dropped and counted, and SIP still works.
    let mut request = binding_request(b"sipshard-t1!");
    request[3] = 8;
    ua.send_raw(p.addr, &request);
    let r = register_as(&ua, p.addr, &ua.addr.to_string(), 1);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    scrape::assert_shows(
        p.metrics.unwrap(),
        &[
            "sipshard_nat_total{shard=\"total\",event=\"stun_answered\"} 1",
            "sipshard_drops_total{shard=\"total\",reason=\"stun\"} 1",
        ],
    );
}

/// A STUN Binding request (RFC 5389, no attributes) with transaction id `tid` (12 bytes).
fn binding_request(tid: &[u8; 12]) -> Vec<u8> {
    let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
    request.extend_from_slice(tid);
    request
}

/// Send `ua`'s Binding request `tid` to `to`; the address its answer says it came from.
fn stun_binding(ua: &Ua, to: SocketAddr, tid: &[u8; 12]) -> SocketAddr {
    ua.send_raw(to, &binding_request(tid));
    let mut buf = [0u8; 512];
    ua.sock
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let (n, _) = ua.sock.recv_from(&mut buf).expect("a STUN answer");
    mapped_address(&buf[..n], tid).expect("an XOR-MAPPED-ADDRESS for our transaction")
}

/// XOR-MAPPED-ADDRESS of a Binding success response with transaction `tid` (IPv4).
fn mapped_address(d: &[u8], tid: &[u8]) -> Option<SocketAddr> {
    if d.len() < 32 || d[..2] != [0x01, 0x01] || &d[8..20] != tid || d[20..22] != [0x00, 0x20] {
        return None;
    }
    let port = u16::from_be_bytes([d[26], d[27]]) ^ 0x2112;
    let ip: [u8; 4] = std::array::from_fn(|i| d[28 + i] ^ [0x21, 0x12, 0xa4, 0x42][i]);
    Some(SocketAddr::from((ip, port)))
}

/// NAT pings with two shards and random steering, so that answers land on either shard: a
/// contact that answers stays (however many intervals pass), one that stops answering is
/// removed after --nat-ping-failures pings and its calls get 480.
#[test]
fn nat_pings_keep_answering_contacts_and_remove_silent_ones() {
    let p = Proxy::builder()
        .metrics()
        .args(&[
            "--domain",
            DOMAIN,
            "--shards",
            "2",
            "--steering",
            "random",
            "--nat-ping-interval",
            "0.2",
            "--nat-ping-failures",
            "3",
        ])
        .start();
    let bob = Ua::new();
    register_as(&bob, p.addr, "10.0.0.2:5060", 1);
    // Ten intervals of pings, each answered.
    let mut pings = 0;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if let Some(ping) = next_request(&bob, "OPTIONS", Duration::from_millis(500), true) {
            assert_eq!(start_line(&ping), "OPTIONS sip:bob@10.0.0.2:5060 SIP/2.0");
            assert!(
                header(&ping, "Via").contains(";branch=z9hG4bKsSnp"),
                "{ping}"
            );
            pings += 1;
        }
    }
    assert!((6..=14).contains(&pings), "{pings} pings in 2 s at 0.2 s");
    let m = scrape::scrape(p.metrics.unwrap());
    let answered = scrape::value(
        &m,
        "sipshard_nat_total{shard=\"total\",event=\"ping_answered\"}",
    );
    assert!(
        answered + 2 >= pings,
        "{answered} of {pings} answers taken by their shard"
    );
    assert_eq!(
        scrape::value(
            &m,
            "sipshard_nat_total{shard=\"total\",event=\"ping_removed\"}"
        ),
        0
    );
    let alice = Ua::new();
    invite(&alice, p.addr, "nat-ping-call-1");
    assert!(next_request(&bob, "INVITE", Duration::from_secs(3), true).is_some());

    // bob goes silent: three unanswered pings remove him.
    let removed = eventually(Duration::from_secs(5), || {
        let m = scrape::scrape(p.metrics.unwrap());
        scrape::value(
            &m,
            "sipshard_nat_total{shard=\"total\",event=\"ping_removed\"}",
        ) == 1
    });
    assert!(removed, "bob removed after unanswered pings");
    invite(&alice, p.addr, "nat-ping-call-2");
    let r = alice.recv_final();
    assert!(r.starts_with("SIP/2.0 480"), "{r}");
}

/// The sipshard binary running in the WAN namespace of `nat`, with `args`; returns once it
/// answers, with the address it listens on.
fn sipshard_in_wan(nat: &Nat, dir: &Scratch, args: &[&str], caller: &Ua) -> (Proc, SocketAddr) {
    let addr = SocketAddr::from((nat.wan_ip(), 5060));
    let listen = format!("udp:{addr}");
    let mut cmd = in_netns(&nat.wan);
    cmd.arg(bin::sipshard())
        .args(["--listen", &listen, "--domain", DOMAIN, "--shards", "1"])
        .args(args);
    let proc = Proc::spawn(dir.path(), "sipshard", &mut cmd);
    let up = eventually(Duration::from_secs(10), || {
        caller.send(
            addr,
            &format!("OPTIONS sip:example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKup;rport\nMax-Forwards: 70\nTo: <sip:example.com>\nFrom: <sip:t@example.com>;tag=1\nCall-ID: up\nCSeq: 1 OPTIONS\n\n", me = caller.addr),
        );
        caller.recv_within(Duration::from_millis(200)).is_some()
    });
    assert!(up, "sipshard in {} did not answer", nat.wan);
    (proc, addr)
}

/// A UA in the LAN and a caller in the WAN, for one scenario through a fresh NAT whose UDP
/// flows expire after 2 s; returns whether bob received the call placed after 4.5 s.
fn call_after_the_flow_expired(args: &[&str], stun_keepalive: bool, answer_pings: bool) -> bool {
    let nat = Nat::new(2);
    let dir = Scratch::new("nat");
    let caller = wan_ua(&nat);
    let (_proc, proxy) = sipshard_in_wan(&nat, &dir, args, &caller);
    let lan_addr = SocketAddr::from((nat.lan_ip(), 5060));
    let bob = Ua {
        sock: nat.udp_socket(&nat.lan, lan_addr),
        addr: lan_addr,
    };
    let r = register_as(&bob, proxy, &lan_addr.to_string(), 1);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    // The NAT rewrote the source: sipshard's rport says where it saw bob.
    assert!(
        header(&r, "Via").contains(&format!("received={}", nat.public_ip())),
        "{r}"
    );
    // Right away the flow is open: a call gets through (so the path itself works).
    invite(&caller, proxy, "through-nat-0");
    assert!(next_request(&bob, "INVITE", Duration::from_secs(2), answer_pings).is_some());
    // Wait past the flow's expiry, keeping it open or not.
    let deadline = Instant::now() + Duration::from_millis(4_500);
    while Instant::now() < deadline {
        if stun_keepalive {
            let mut request = vec![0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42];
            request.extend_from_slice(b"keepalive-01");
            bob.send_raw(proxy, &request);
            let mut buf = [0u8; 256];
            bob.sock
                .set_read_timeout(Some(Duration::from_secs(1)))
                .unwrap();
            if let Ok((n, _)) = bob.sock.recv_from(&mut buf) {
                let mapped = mapped_address(&buf[..n], b"keepalive-01").expect("STUN answer");
                assert_eq!(mapped.ip(), nat.public_ip(), "the NAT's public address");
            }
            std::thread::sleep(Duration::from_millis(500));
        } else {
            let _ = next_request(&bob, "INVITE", Duration::from_millis(200), answer_pings);
        }
    }
    invite(&caller, proxy, "through-nat-1");
    next_request(&bob, "INVITE", Duration::from_secs(2), answer_pings).is_some()
}

#[test]
fn through_a_real_nat_pings_keep_the_pinhole_open() {
    let with_pings = call_after_the_flow_expired(&["--nat-ping-interval", "0.5"], false, true);
    assert!(with_pings, "NAT pings every 0.5 s keep a 2 s flow open");
    let crlf = ["--nat-ping-interval", "0.5", "--nat-ping-method", "crlf"];
    assert!(
        call_after_the_flow_expired(&crlf, false, false),
        "CRLF pings do too"
    );
    let without = call_after_the_flow_expired(&[], false, false);
    assert!(
        !without,
        "without keep-alives the NAT forgot the flow: the call is lost"
    );
}

#[test]
fn through_a_real_nat_stun_keepalives_keep_the_pinhole_open() {
    assert!(
        call_after_the_flow_expired(&[], true, false),
        "STUN Binding requests every 1.5 s keep a 2 s flow open"
    );
}

/// baresip, a real softphone, in the LAN behind the NAT: it registers through it with its private
/// address in Via and Contact, and answers a call placed after its flow would have expired,
/// NAT pings (OPTIONS, which it answers) keeping the pinhole open.
#[test]
fn baresip_behind_a_real_nat_answers_a_call_placed_after_its_flow_would_have_expired() {
    require("baresip");
    let _serial = peers::serial();
    let nat = Nat::new(2);
    let dir = Scratch::new("nat-baresip");
    let caller = wan_ua(&nat);
    let (_sipshard, proxy) = sipshard_in_wan(&nat, &dir, &["--nat-ping-interval", "0.5"], &caller);
    let pki = Pki::new(dir.path(), "nat");
    let account = format!("<sip:bob@{proxy};transport=udp>;regint=600;answermode=auto");
    let net = Network {
        ip: nat.lan_ip().into(),
        netns: Some(nat.lan.clone()),
    };
    let bob = Phone::start_on(dir.path(), "bob", &pki.ca_file, &account, &net);
    // Its registration is done before its control socket could report it: ask the registrar.
    let mut cseq = 0;
    let registered = eventually(Duration::from_secs(10), || {
        cseq += 1;
        let query = register(&caller, proxy, "bob", &proxy.to_string(), "", cseq, "");
        query.contains("\r\nContact: <sip:bob")
    });
    assert!(registered, "bob did not register:\n{}", bob.log());
    std::thread::sleep(Duration::from_millis(4_500));
    caller.send(
        proxy,
        &format!(
            "INVITE sip:bob@{proxy} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKbs1;rport\nMax-Forwards: 70\nTo: <sip:bob@{proxy}>\nFrom: <sip:alice@example.net>;tag=a1\nCall-ID: baresip-nat\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\nContent-Type: application/sdp\n\n{SDP}",
            me = caller.addr
        ),
    );
    // 100 and 180 first; baresip answers on its own after ringing a moment.
    let answer = (0..5)
        .filter_map(|_| caller.recv_within(Duration::from_secs(3)))
        .find(|m| !m.starts_with("SIP/2.0 1"))
        .unwrap_or_else(|| panic!("no final answer:\n{}", bob.log()));
    assert!(
        answer.starts_with("SIP/2.0 200 "),
        "{answer}\n{}",
        bob.log()
    );
    assert!(
        header(&answer, "Contact").contains(&nat.lan_ip().to_string()),
        "{answer}"
    );
}

fn wan_ua(nat: &Nat) -> Ua {
    let sock = nat.udp_socket(&nat.wan, SocketAddr::from((nat.wan_ip(), 0)));
    Ua {
        addr: sock.local_addr().unwrap(),
        sock,
    }
}

#[test]
fn a_phone_offering_keepalives_is_told_the_interval_and_its_stun_keepalive_is_answered() {
    // RFC 6223: `keep` without a value in the REGISTER's Via; the 200 gives it `--flow-timer`.
    let p = Proxy::start(&["--domain", DOMAIN, "--flow-timer", "20"]);
    let ua = Ua::new();
    ua.send(
        p.addr,
        &format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKkeep1;rport;keep\nMax-Forwards: 70\nTo: <sip:bob@{DOMAIN}>\nFrom: <sip:bob@{DOMAIN}>;tag=k1\nCall-ID: keep-reg\nCSeq: 1 REGISTER\nContact: <sip:bob@10.0.0.2:5060>\nExpires: 3600\n\n"
        ),
    );
    let ok = ua.recv_final();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let via = header(&ok, "Via");
    let expected = format!(";rport={};keep=20;received=127.0.0.1", ua.addr.port());
    assert!(via.ends_with(&expected), "{via}");
    // The keep-alive it then sends every 20 s: a STUN Binding request, answered.
    assert_eq!(stun_binding(&ua, p.addr, b"sipshard-k1!"), ua.addr);
}
