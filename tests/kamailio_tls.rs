//! Kamailio as sipshard's peer proxy over TLS, both ways: sipshard serves atlanta.example.com
//! and reaches biloxi.example.com's proxy, a real Kamailio with its TLS module, with `--route
//! biloxi.example.com=tls:localhost:PORT` (Kamailio's certificate verified as `localhost`);
//! Kamailio reaches sipshard's TLS listener for atlanta.example.com. TLS is mutual on every
//! connection: sipshard requires Kamailio's client certificate (`--tls-verify-client
//! required`) and Kamailio sipshard's, all issued by the test's own CA.
//!
//! Outbound calls: Alice (a UDP socket of the test) calls Bob (another, behind Kamailio):
//! sipshard -> TLS -> Kamailio -> UDP -> Bob. Inbound calls: Bob calls Carol, a phone played by
//! the test that listens on TLS and is registered at sipshard: Kamailio -> TLS -> sipshard
//! -> TLS -> Carol. Each call is whole (INVITE, 200, ACK, BYE, 200), hung up alternately by the
//! caller and the callee, so that in-dialog requests cross the TLS hop in both directions on
//! the Record-Route each proxy wrote. Every message is checked as it arrives at either end:
//! its Via stack (the TLS hops say `SIP/2.0/TLS`), its Record-Route (sipshard's double entry
//! where the transport changes, its single `transport=tls` one where it does not), its Route
//! consumed. Then sipshard's metrics (connections to Kamailio reused: at most one per shard;
//! no handshake or connection failed or closed) and Kamailio's own log (every request from
//! sipshard came over TLS with a certificate Kamailio verified).
//!
//! Kamailio and its TLS module are required peers: a missing one fails the test saying how to
//! install it. Everything runs on 127.0.0.1 on free ports, each wait is bounded (5 s a message,
//! 20 s for Kamailio to come up), and both processes are killed when the test ends, also on a
//! failed assertion.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::ServerConfig;
use sipshard_testkit::peers::kamailio::{self, Kamailio};
use sipshard_testkit::peers::{self, require};
use sipshard_testkit::pki::{Issued, Pki};
use sipshard_testkit::sip::{header, headers, respond, start_line, SDP};
use sipshard_testkit::{
    eventually, free_port, scrape, tail, Got, Proxy, Scratch, SipClient, TcpUa, Ua,
};

/// The configuration of biloxi.example.com's Kamailio.
const KAMAILIO_CFG: &str = include_str!("kamailio_tls.cfg");

/// Calls each way, alternately hung up by the caller and by the callee. Each outbound call
/// comes from a new socket of Alice's, so that with two shards both usually see calls.
const CALLS: usize = 4;

/// sipshard's shards: the bound on its connections to Kamailio (one per shard, reused).
const SHARDS: usize = 2;

/// The name of the test's CA, which Kamailio logs as the issuer of sipshard's certificate.
const CA: &str = "kamtls-ca";

/// sipshard's certificate name, which Kamailio logs as its TLS peer.
const SIPSHARD_NAME: &str = "atlanta.example.com";

/// How long a party waits for its next message.
const WAIT: Duration = Duration::from_secs(5);

/// Where everyone is.
struct Net {
    /// sipshard's UDP address (Alice's side).
    proxy: SocketAddr,
    /// sipshard's TLS listener (Kamailio's and Carol's side).
    tls: SocketAddr,
    /// Kamailio, UDP and TLS on one port.
    kam: SocketAddr,
    bob: Ua,
}

impl Net {
    /// sipshard's Via on what it sends over TLS: its TLS listener.
    fn sipshard_tls_via(&self) -> String {
        format!("SIP/2.0/TLS {};branch=z9hG4bK", self.tls)
    }

    /// Kamailio's Via on what it sends over TLS.
    fn kamailio_tls_via(&self) -> String {
        format!("SIP/2.0/TLS {};branch=z9hG4bK", self.kam)
    }

    /// Kamailio's Via toward Bob (UDP).
    fn kamailio_udp_via(&self) -> String {
        format!("SIP/2.0/UDP {};branch=z9hG4bK", self.kam)
    }

    /// sipshard's Record-Route entry for its TLS side.
    fn sipshard_tls_rr(&self) -> String {
        format!("<sip:{};transport=tls;lr>", self.tls)
    }

    /// Whether `rr` is Kamailio's Record-Route entry for its TLS side.
    fn is_kamailio_tls_rr(&self, rr: &str) -> bool {
        rr.starts_with(&format!("<sip:{};transport=tls;", self.kam))
    }

    /// Whether `rr` is Kamailio's Record-Route entry for its UDP side (which names no
    /// transport).
    fn is_kamailio_udp_rr(&self, rr: &str) -> bool {
        rr.starts_with(&format!("<sip:{};", self.kam)) && !rr.contains("transport=")
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

/// Assert that `msg`'s Via stack is `want`, top first, each entry given by how it starts.
fn assert_vias(msg: &str, want: &[String], what: &str) {
    let v = values(msg, "Via");
    let matches = v.len() == want.len() && v.iter().zip(want).all(|(v, w)| v.starts_with(w));
    assert!(
        matches,
        "{what}: Via stack is {v:#?}, expected entries starting with {want:#?}\n{msg}"
    );
}

/// Assert that `msg` carries no Route: every proxy on the way consumed its own.
fn assert_no_route(msg: &str, what: &str) {
    let routes = values(msg, "Route");
    assert!(
        routes.is_empty(),
        "{what} still carries Route {routes:?}\n{msg}"
    );
}

/// Whether `m` is a message of call `call_id` whose first line starts with `wanted`
/// (`"INVITE "`, `"SIP/2.0 "`, ...); provisional responses never are (Kamailio's 100 Trying).
fn is_wanted(m: &str, call_id: &str, wanted: &str) -> bool {
    headers(m, "Call-ID").first() == Some(&call_id)
        && m.starts_with(wanted)
        && !m.starts_with("SIP/2.0 1")
}

/// The next message `ua` receives for `call_id` whose first line starts with `wanted`, and
/// where from. Passed over on the way: 1xx responses and what UDP retransmits on its own when
/// the test thread is slow to answer (Kamailio's INVITE to Bob until his 200, its BYE until
/// his 200, also of the call before). At most [`WAIT`].
fn next(ua: &Ua, call_id: &str, wanted: &str) -> (String, SocketAddr) {
    let deadline = Instant::now() + WAIT;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Some((m, from)) = ua.recv_from_within(left.max(Duration::from_millis(1))) else {
            break;
        };
        if is_wanted(&m, call_id, wanted) {
            return (m, from);
        }
        if !m.starts_with("SIP/2.0 1") {
            eprintln!(
                "{} passed over (waiting for {wanted:?} of {call_id}):\n{m}",
                ua.addr
            );
        }
    }
    panic!(
        "{} received no {wanted:?} of {call_id} within {WAIT:?}",
        ua.addr
    )
}

/// Carol's phone: it listens on TLS, as a phone registered with a `transport=tls` Contact
/// does, so sipshard opens the connections to it (each shard its own, then reused) and
/// verifies its certificate by address. It answers on the connection a request came on.
struct TlsPhone {
    listener: TcpListener,
    config: Arc<ServerConfig>,
    conns: Vec<TcpUa>,
    addr: SocketAddr,
}

/// How long the phone listens on one connection before looking at the next.
const POLL: Duration = Duration::from_millis(20);

impl TlsPhone {
    fn listen(config: Arc<ServerConfig>) -> TlsPhone {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind Carol's phone");
        // Accepting must not block the reading of connections already open.
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        TlsPhone {
            listener,
            config,
            conns: Vec::new(),
            addr,
        }
    }

    /// Her Contact.
    fn contact(&self) -> String {
        format!("sip:carol@{};transport=tls", self.addr)
    }

    /// Take the connections sipshard has opened since the last look (a handful at most; the
    /// handshake completes on the first read).
    fn accept_new(&mut self) {
        for _ in 0..8 {
            let Ok((stream, _)) = self.listener.accept() else {
                return;
            };
            stream.set_nonblocking(false).unwrap();
            self.conns
                .push(TcpUa::accepted_tls(stream, Arc::clone(&self.config)));
        }
    }

    /// The next message for `call_id` whose first line starts with `wanted`, on whichever
    /// connection, and which (an index into `conns`). At most [`WAIT`].
    fn next(&mut self, call_id: &str, wanted: &str) -> (String, usize) {
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline {
            self.accept_new();
            if self.conns.is_empty() {
                // Nothing to listen on yet: the next look at the listener comes a poll later.
                std::thread::sleep(POLL);
            }
            for (k, conn) in self.conns.iter_mut().enumerate() {
                while let Some(got) = conn.recv_within(POLL) {
                    match got {
                        Got::Message(m) if is_wanted(&m, call_id, wanted) => return (m, k),
                        Got::Message(m) => {
                            eprintln!(
                                "Carol passed over (waiting for {wanted:?} of {call_id}):\n{m}"
                            )
                        }
                        Got::Pong => {}
                    }
                    if Instant::now() >= deadline {
                        break;
                    }
                }
            }
        }
        panic!("Carol received no {wanted:?} of {call_id} within {WAIT:?}")
    }

    fn send(&mut self, conn: usize, msg: &str) {
        self.conns[conn].send(msg);
    }
}

/// A call's dialog once its INVITE is answered: what both ends need for their in-dialog
/// requests.
struct Dialog {
    i: usize,
    call_id: String,
    /// The INVITE as the callee received it.
    invite: String,
    /// The Record-Route the callee received, top first.
    rr: Vec<String>,
    /// The To of the 200, with the callee's tag.
    to: String,
}

impl Dialog {
    /// An in-dialog request to `uri` with the top Via `via`, from the caller (on the
    /// Record-Route reversed, RFC 3261 section 12.1.2) or from the callee (on the Record-Route
    /// as received, section 12.1.1).
    fn request(&self, method: &str, cseq: u32, uri: &str, via: &str, by_callee: bool) -> String {
        let caller = header(&self.invite, "From");
        let (routes, from, to): (Vec<&String>, &str, &str) = if by_callee {
            (self.rr.iter().collect(), &self.to, caller)
        } else {
            (self.rr.iter().rev().collect(), caller, &self.to)
        };
        let routes: String = routes.iter().map(|r| format!("Route: {r}\n")).collect();
        format!(
            "{method} {uri} SIP/2.0\nVia: {via}\n{routes}Max-Forwards: 70\nFrom: {from}\nTo: {to}\nCall-ID: {}\nCSeq: {cseq} {method}\n\n",
            self.call_id
        )
    }
}

/// The 200 `ok` answers `method` with CSeq number `cseq`.
fn assert_ok(ok: &str, cseq: u32, method: &str, what: &str) {
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && header(ok, "CSeq") == format!("{cseq} {method}"),
        "{what}: {method} answered with:\n{ok}"
    );
}

/// An outbound call: from a new socket of Alice's through sipshard, then over TLS to Kamailio,
/// to Bob; `callee_hangs_up` picks who sends the BYE.
fn outbound_call(net: &Net, i: usize, callee_hangs_up: bool) {
    let alice = Ua::new();
    let d = outbound_invite(net, &alice, i);
    alice_in_dialog(net, &alice, &d, "ACK", 1);
    if callee_hangs_up {
        bob_hangs_up_on_alice(net, &alice, &d);
    } else {
        alice_hangs_up(net, &alice, &d);
    }
}

/// Alice's INVITE, checked at Bob, and his 200, checked at Alice.
fn outbound_invite(net: &Net, alice: &Ua, i: usize) -> Dialog {
    let (proxy, kam, bob) = (net.proxy, net.kam, &net.bob);
    let call_id = format!("kamtls-out-{i}");
    let a = alice.addr;
    alice.send(
        proxy,
        &format!(
            "INVITE sip:bob@biloxi.example.com SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKinv{i};rport\nMax-Forwards: 70\nFrom: Alice <sip:alice@atlanta.example.com>;tag=a{i}\nTo: Bob <sip:bob@biloxi.example.com>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{a}>\nContent-Type: application/sdp\n\n{SDP}"
        ),
    );

    // The INVITE at Bob: sipshard -> Kamailio over TLS -> Bob over UDP, both Record-Routed.
    let (inv, from) = next(bob, &call_id, "INVITE ");
    assert_eq!(
        from, kam,
        "{call_id}: INVITE from {from}, not Kamailio:\n{inv}"
    );
    assert_eq!(
        start_line(&inv),
        "INVITE sip:bob@biloxi.example.com SIP/2.0",
        "{call_id}:\n{inv}"
    );
    let want = [
        net.kamailio_udp_via(),
        net.sipshard_tls_via(),
        format!("SIP/2.0/UDP {a};branch=z9hG4bKinv{i};rport={}", a.port()),
    ];
    assert_vias(&inv, &want, &format!("{call_id}: INVITE at Bob"));
    assert!(
        inv.ends_with(&SDP.replace('\n', "\r\n")),
        "{call_id}: the SDP did not arrive whole:\n{inv}"
    );
    // Record-Route, top first, each proxy's double entry as the transport changes there:
    // Kamailio's toward Bob (UDP) and toward sipshard (TLS), then sipshard's toward Kamailio
    // (TLS) and toward Alice (UDP). Alice's ACK and BYE leave sipshard over TLS because of
    // Kamailio's second entry; Bob's BYE reaches sipshard over TLS because of sipshard's first.
    let rr = values(&inv, "Record-Route");
    assert!(
        rr.len() == 4
            && net.is_kamailio_udp_rr(&rr[0])
            && net.is_kamailio_tls_rr(&rr[1])
            && rr[2] == net.sipshard_tls_rr()
            && rr[3] == format!("<sip:{proxy};lr>"),
        "{call_id}: INVITE at Bob: Record-Route is not Kamailio (UDP, TLS), sipshard (TLS, UDP): {rr:#?}\n{inv}"
    );
    let extra = format!(
        "Contact: <sip:bob@{}>\nContent-Type: application/sdp",
        bob.addr
    );
    bob.send(kam, &respond(&inv, "200 OK", &format!("b{i}"), &extra, SDP));

    // The 200 at Alice, back over both hops (Kamailio -> sipshard on sipshard's connection).
    let (ok, from) = next(alice, &call_id, "SIP/2.0 ");
    assert_eq!(
        from, proxy,
        "{call_id}: 200 from {from}, not sipshard:\n{ok}"
    );
    assert_ok(&ok, 1, "INVITE", &call_id);
    let want = [format!("SIP/2.0/UDP {a};branch=z9hG4bKinv{i}")];
    assert_vias(&ok, &want, &format!("{call_id}: 200 at Alice"));
    assert_eq!(
        values(&ok, "Record-Route"),
        rr,
        "{call_id}: 200 at Alice:\n{ok}"
    );
    let to = header(&ok, "To").to_string();
    assert!(to.ends_with(&format!(";tag=b{i}")), "{call_id}: To {to}");
    Dialog {
        i,
        call_id,
        invite: inv,
        rr,
        to,
    }
}

/// Alice's in-dialog `method` (ACK or BYE) to sipshard, checked at Bob: it left sipshard over
/// TLS and reached him through Kamailio with every Route consumed. Returns it as he got it.
fn alice_in_dialog(net: &Net, alice: &Ua, d: &Dialog, method: &str, cseq: u32) -> String {
    let bob = net.bob.addr;
    let via = format!(
        "SIP/2.0/UDP {};branch=z9hG4bK{}{};rport",
        alice.addr,
        method.to_ascii_lowercase(),
        d.i
    );
    let uri = format!("sip:bob@{bob}");
    alice.send(net.proxy, &d.request(method, cseq, &uri, &via, false));
    let (msg, from) = next(&net.bob, &d.call_id, &format!("{method} "));
    let what = format!("{}: {method} at Bob", d.call_id);
    assert_eq!(from, net.kam, "{what}: from {from}, not Kamailio:\n{msg}");
    assert_eq!(
        start_line(&msg),
        format!("{method} {uri} SIP/2.0"),
        "{what}: not for Bob's Contact:\n{msg}"
    );
    let want = [
        net.kamailio_udp_via(),
        net.sipshard_tls_via(),
        format!("SIP/2.0/UDP {};branch=", alice.addr),
    ];
    assert_vias(&msg, &want, &what);
    assert_no_route(&msg, &what);
    msg
}

/// Alice hangs up: her BYE over sipshard's TLS connection to Kamailio, and Bob's 200 back.
fn alice_hangs_up(net: &Net, alice: &Ua, d: &Dialog) {
    let bye = alice_in_dialog(net, alice, d, "BYE", 2);
    net.bob.send(net.kam, &respond(&bye, "200 OK", "", "", ""));
    let (ok, from) = next(alice, &d.call_id, "SIP/2.0 ");
    assert_eq!(
        from, net.proxy,
        "{}: BYE's 200 from {from}:\n{ok}",
        d.call_id
    );
    assert_ok(&ok, 2, "BYE", &d.call_id);
    let want = [format!(
        "SIP/2.0/UDP {};branch=z9hG4bKbye{}",
        alice.addr, d.i
    )];
    assert_vias(&ok, &want, &format!("{}: BYE's 200 at Alice", d.call_id));
}

/// Bob hangs up: his BYE to Kamailio, which takes sipshard's TLS entry and brings it to
/// sipshard over TLS (on a connection Kamailio opens to sipshard's listener), and Alice's 200
/// back.
fn bob_hangs_up_on_alice(net: &Net, alice: &Ua, d: &Dialog) {
    let (proxy, kam, bob, i) = (net.proxy, net.kam, &net.bob, d.i);
    let call_id = &d.call_id;
    let via = format!("SIP/2.0/UDP {};branch=z9hG4bKbbye{i};rport", bob.addr);
    let uri = format!("sip:alice@{}", alice.addr);
    bob.send(kam, &d.request("BYE", 1, &uri, &via, true));
    let (bye, from) = next(alice, call_id, "BYE ");
    assert_eq!(from, proxy, "{call_id}: Bob's BYE from {from}:\n{bye}");
    assert_eq!(
        start_line(&bye),
        format!("BYE {uri} SIP/2.0"),
        "{call_id}:\n{bye}"
    );
    // Kamailio wrote received (and rport) into Bob's Via, before his branch.
    let want = [
        format!("SIP/2.0/UDP {proxy};branch=z9hG4bK"),
        net.kamailio_tls_via(),
        format!("SIP/2.0/UDP {};", bob.addr),
    ];
    assert_vias(&bye, &want, &format!("{call_id}: Bob's BYE at Alice"));
    assert!(
        bye.contains(&format!(";branch=z9hG4bKbbye{i};")),
        "{call_id}: Bob's branch lost:\n{bye}"
    );
    assert_no_route(&bye, &format!("{call_id}: Bob's BYE at Alice"));
    alice.send(proxy, &respond(&bye, "200 OK", "", "", ""));
    let (ok, from) = next(bob, call_id, "SIP/2.0 ");
    assert_eq!(
        from, kam,
        "{call_id}: Bob's BYE answered from {from}:\n{ok}"
    );
    assert_ok(&ok, 1, "BYE", call_id);
    let want = [format!("SIP/2.0/UDP {};", bob.addr)];
    assert_vias(&ok, &want, &format!("{call_id}: BYE's 200 at Bob"));
}

/// An inbound call: Bob through Kamailio, then over TLS to sipshard, then over TLS to Carol's
/// registered Contact; `callee_hangs_up` picks who sends the BYE.
fn inbound_call(net: &Net, carol: &mut TlsPhone, i: usize, callee_hangs_up: bool) {
    let (d, conn) = inbound_invite(net, carol, i);
    bob_in_dialog(net, carol, &d, "ACK", 1);
    if callee_hangs_up {
        carol_hangs_up(net, carol, &d, conn);
    } else {
        bob_hangs_up_on_carol(net, carol, &d);
    }
}

/// Bob's INVITE, checked at Carol, and her 200, checked at Bob; also the connection she got
/// the INVITE on.
fn inbound_invite(net: &Net, carol: &mut TlsPhone, i: usize) -> (Dialog, usize) {
    let (kam, bob) = (net.kam, &net.bob);
    let b = bob.addr;
    let call_id = format!("kamtls-in-{i}");
    bob.send(
        kam,
        &format!(
            "INVITE sip:carol@atlanta.example.com SIP/2.0\nVia: SIP/2.0/UDP {b};branch=z9hG4bKbinv{i};rport\nMax-Forwards: 70\nFrom: Bob <sip:bob@biloxi.example.com>;tag=b{i}\nTo: Carol <sip:carol@atlanta.example.com>\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:bob@{b}>\nContent-Type: application/sdp\n\n{SDP}"
        ),
    );

    // The INVITE at Carol: Kamailio -> sipshard over TLS -> Carol over TLS, at her Contact.
    let (inv, conn) = carol.next(&call_id, "INVITE ");
    assert_eq!(
        start_line(&inv),
        format!("INVITE {} SIP/2.0", carol.contact()),
        "{call_id}: INVITE at Carol not for her Contact:\n{inv}"
    );
    let want = [
        net.sipshard_tls_via(),
        net.kamailio_tls_via(),
        format!("SIP/2.0/UDP {b};"),
    ];
    assert_vias(&inv, &want, &format!("{call_id}: INVITE at Carol"));
    assert!(
        inv.contains(&format!(";branch=z9hG4bKbinv{i}")),
        "{call_id}: Bob's branch lost:\n{inv}"
    );
    assert!(
        inv.ends_with(&SDP.replace('\n', "\r\n")),
        "{call_id}: the SDP did not arrive whole:\n{inv}"
    );
    // sipshard's single entry (TLS in, TLS out), then Kamailio's double one: toward sipshard
    // (TLS) and toward Bob (UDP).
    let rr = values(&inv, "Record-Route");
    assert!(
        rr.len() == 3
            && rr[0] == net.sipshard_tls_rr()
            && net.is_kamailio_tls_rr(&rr[1])
            && net.is_kamailio_udp_rr(&rr[2]),
        "{call_id}: INVITE at Carol: Record-Route is not sipshard (TLS), Kamailio (TLS, UDP): {rr:#?}\n{inv}"
    );
    let extra = format!(
        "Contact: <{}>\nContent-Type: application/sdp",
        carol.contact()
    );
    carol.send(
        conn,
        &respond(&inv, "200 OK", &format!("c{i}"), &extra, SDP),
    );

    // The 200 at Bob, back over both TLS hops.
    let (ok, from) = next(bob, &call_id, "SIP/2.0 ");
    assert_eq!(from, kam, "{call_id}: 200 from {from}, not Kamailio:\n{ok}");
    assert_ok(&ok, 1, "INVITE", &call_id);
    let want = [format!("SIP/2.0/UDP {b};")];
    assert_vias(&ok, &want, &format!("{call_id}: 200 at Bob"));
    assert_eq!(
        values(&ok, "Record-Route"),
        rr,
        "{call_id}: 200 at Bob:\n{ok}"
    );
    let to = header(&ok, "To").to_string();
    assert!(to.ends_with(&format!(";tag=c{i}")), "{call_id}: To {to}");
    let d = Dialog {
        i,
        call_id,
        invite: inv,
        rr,
        to,
    };
    (d, conn)
}

/// Bob's in-dialog `method` (ACK or BYE) to Kamailio, checked at Carol: it crossed both TLS
/// hops with every Route consumed. Returns it as she got it, and on which connection.
fn bob_in_dialog(
    net: &Net,
    carol: &mut TlsPhone,
    d: &Dialog,
    method: &str,
    cseq: u32,
) -> (String, usize) {
    let via = format!(
        "SIP/2.0/UDP {};branch=z9hG4bKb{}{};rport",
        net.bob.addr,
        method.to_ascii_lowercase(),
        d.i
    );
    let uri = carol.contact();
    net.bob
        .send(net.kam, &d.request(method, cseq, &uri, &via, false));
    let (msg, conn) = carol.next(&d.call_id, &format!("{method} "));
    let what = format!("{}: {method} at Carol", d.call_id);
    assert_eq!(
        start_line(&msg),
        format!("{method} {uri} SIP/2.0"),
        "{what}: not for Carol's Contact:\n{msg}"
    );
    let want = [
        net.sipshard_tls_via(),
        net.kamailio_tls_via(),
        format!("SIP/2.0/UDP {};", net.bob.addr),
    ];
    assert_vias(&msg, &want, &what);
    assert_no_route(&msg, &what);
    (msg, conn)
}

/// Bob hangs up: his BYE over Kamailio's TLS connection to sipshard and sipshard's to Carol,
/// and her 200 back.
fn bob_hangs_up_on_carol(net: &Net, carol: &mut TlsPhone, d: &Dialog) {
    let (bye, conn) = bob_in_dialog(net, carol, d, "BYE", 2);
    carol.send(conn, &respond(&bye, "200 OK", "", "", ""));
    let (ok, from) = next(&net.bob, &d.call_id, "SIP/2.0 ");
    assert_eq!(from, net.kam, "{}: BYE's 200 from {from}:\n{ok}", d.call_id);
    assert_ok(&ok, 2, "BYE", &d.call_id);
    let want = [format!("SIP/2.0/UDP {};", net.bob.addr)];
    assert_vias(&ok, &want, &format!("{}: BYE's 200 at Bob", d.call_id));
}

/// Carol hangs up: her BYE on her connection from sipshard, which takes Kamailio's TLS entry
/// and brings it there over TLS (on its own connection to Kamailio), and Bob's 200 back.
fn carol_hangs_up(net: &Net, carol: &mut TlsPhone, d: &Dialog, conn: usize) {
    let (kam, b, i) = (net.kam, net.bob.addr, d.i);
    let call_id = &d.call_id;
    let via = format!("SIP/2.0/TLS {};branch=z9hG4bKcbye{i}", carol.addr);
    let uri = format!("sip:bob@{b}");
    carol.send(conn, &d.request("BYE", 1, &uri, &via, true));
    let (bye, from) = next(&net.bob, call_id, "BYE ");
    assert_eq!(from, kam, "{call_id}: Carol's BYE from {from}:\n{bye}");
    assert_eq!(
        start_line(&bye),
        format!("BYE {uri} SIP/2.0"),
        "{call_id}:\n{bye}"
    );
    let want = [net.kamailio_udp_via(), net.sipshard_tls_via(), via.clone()];
    assert_vias(&bye, &want, &format!("{call_id}: Carol's BYE at Bob"));
    assert_no_route(&bye, &format!("{call_id}: Carol's BYE at Bob"));
    net.bob.send(kam, &respond(&bye, "200 OK", "", "", ""));
    let (ok, _) = carol.next(call_id, "SIP/2.0 ");
    assert_ok(&ok, 1, "BYE", call_id);
    assert_vias(&ok, &[via], &format!("{call_id}: BYE's 200 at Carol"));
}

/// One request as Kamailio logged it ("kamtls: METHOD R-URI from IP:PORT over PROTO[ cn=...
/// issuer=... verified=N]").
#[derive(Debug)]
struct Logged {
    method: String,
    from: SocketAddr,
    proto: String,
    /// What it logged of the TLS peer's certificate: `cn=... issuer=... verified=N`.
    peer: String,
}

/// Every request in Kamailio's log.
fn logged_requests(log: &str) -> Vec<Logged> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find("kamtls: ")? + "kamtls: ".len()..];
            let mut words = rest.split(' ');
            let method = words.next()?.to_string();
            let _uri = words.next()?;
            let from = words.nth(1)?.parse().ok()?;
            let proto = words.nth(1)?.to_string();
            let peer = words.collect::<Vec<_>>().join(" ");
            Some(Logged {
                method,
                from,
                proto,
                peer,
            })
        })
        .collect()
}

/// The source ports of the TLS connections sipshard's requests reached Kamailio on: one per
/// connection sipshard opened to it.
fn sipshard_connections(log: &str) -> BTreeSet<u16> {
    logged_requests(log)
        .iter()
        .filter(|r| r.proto == "tls")
        .map(|r| r.from.port())
        .collect()
}

/// `sipshard_tls_connection_events_total{shard="SHARD",event="EVENT"}` in a scrape.
fn tls_events(text: &str, shard: &str, event: &str) -> u64 {
    scrape::value(
        text,
        &format!("sipshard_tls_connection_events_total{{shard=\"{shard}\",event=\"{event}\"}}"),
    )
}

/// `sipshard_tls_handshakes_total{shard="total",result="RESULT"}` in a scrape.
fn handshakes(text: &str, result: &str) -> u64 {
    scrape::value(
        text,
        &format!("sipshard_tls_handshakes_total{{shard=\"total\",result=\"{result}\"}}"),
    )
}

/// A scrape taken once sipshard's total of connections it opened reads `opened` (shards
/// publish on a housekeeping tick, so a count lags; once the total is right, so is every
/// shard's part of it). Fails the test after 3 s.
fn scrape_once_opened(metrics: SocketAddr, opened: u64) -> String {
    let mut text = String::new();
    let counted = eventually(Duration::from_secs(3), || {
        text = scrape::scrape(metrics);
        tls_events(&text, "total", "connected") == opened
    });
    assert!(
        counted,
        "sipshard does not count the {opened} TLS connection(s) Kamailio saw its requests on:\n{text}"
    );
    text
}

/// Assert that no shard opened more than `max` TLS connections.
fn assert_opened_per_shard(text: &str, max: u64, what: &str) {
    for shard in 0..SHARDS {
        let opened = tls_events(text, &shard.to_string(), "connected");
        assert!(
            opened <= max,
            "shard {shard} opened {opened} TLS connections ({what}):\n{text}"
        );
    }
}

/// Kamailio's `tls.cfg`: its certificate both as a server (sipshard's connections, whose
/// client certificate it requires) and as a client (its connections to sipshard, whose
/// server certificate it verifies), trusting the test's CA only.
fn kamailio_tls_cfg(cert: &Issued, ca: &Path) -> String {
    let profile = format!(
        "method = TLSv1.2+\nverify_certificate = yes\nrequire_certificate = yes\ncertificate = {}\nprivate_key = {}\nca_list = {}\n",
        cert.cert.display(),
        cert.key.display(),
        ca.display()
    );
    format!("[server:default]\n{profile}\n[client:default]\n{profile}")
}

/// Register Carol's TLS Contact at sipshard and wait until every shard knows it (the
/// inbound INVITEs arrive on whichever shard holds Kamailio's connection).
fn register_carol(proxy: SocketAddr, carol: &TlsPhone) {
    let aor = "sip:carol@atlanta.example.com";
    let contact = carol.contact();
    let ok = SipClient::new().register(proxy, aor, &[&contact], Some(3600));
    assert_eq!(ok.status, 200, "Carol's REGISTER failed:\n{}", ok.text);
    let everywhere = eventually(Duration::from_secs(5), || {
        (0..6).all(|_| {
            let q = SipClient::new().register(proxy, aor, &[], None);
            q.contacts().iter().any(|c| c.contains(&contact))
        })
    });
    assert!(everywhere, "not every shard knows Carol's binding");
}

#[test]
fn calls_both_ways_through_kamailio_as_a_tls_peer_proxy() {
    require("kamailio");
    kamailio::require_module("tls", "kamailio-tls-modules");
    let _serial = peers::serial();
    let dir = Scratch::new("kamailio-tls");
    let started = Instant::now();

    // One CA for everyone. Kamailio is verified by the name its route gives (localhost);
    // sipshard's own name is what Kamailio logs of its peer; Carol is verified by address.
    let pki = Pki::new(dir.path(), CA);
    let kam_cert = pki.issue("kamailio", &["localhost", "127.0.0.1"]);
    let sipshard_cert = pki.issue("sipshard", &[SIPSHARD_NAME, "127.0.0.1"]);
    let carol_cert = pki.issue("carol", &["127.0.0.1"]);
    let mut carol = TlsPhone::listen(pki.server(&carol_cert));

    let kam_port = free_port();
    let tls: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let bob = Ua::new();
    let tls_cfg = dir.write("tls.cfg", &kamailio_tls_cfg(&kam_cert, &pki.ca_file));
    let cfg = KAMAILIO_CFG
        .replace("@PORT@", &kam_port.to_string())
        .replace("@MPATH@", &kamailio::module_dir())
        .replace("@TLSCFG@", &tls_cfg.display().to_string())
        .replace("@UAS@", &bob.addr.to_string())
        .replace("@SIPSHARD@", &tls.to_string());
    let cfg_path = dir.write("kamailio.cfg", &cfg);
    // --atexit=no: with OpenSSL 1.1 and later, libssl's exit handlers in Kamailio's children
    // can crash on shared memory already gone (the TLS module's README).
    let mut kam = Kamailio::start(
        &dir,
        &cfg_path,
        kam_port,
        &["-m", "32", "-M", "4", "--atexit=no"],
    );

    let listen = format!("tls:{tls}");
    let route = format!("biloxi.example.com=tls:localhost:{kam_port}");
    let ca = pki.ca_file.display().to_string();
    let mut args = vec![
        "--shards".to_string(),
        SHARDS.to_string(),
        "--domain".into(),
        "atlanta.example.com".into(),
        "--listen".into(),
        listen,
        "--route".into(),
        route,
        "--record-route".into(),
        "--tls-ca".into(),
        ca,
        "--tls-verify-client".into(),
        "required".into(),
    ];
    args.extend(sipshard_cert.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::builder().dir(&dir).metrics().args(&args).start();
    let metrics = proxy.metrics.expect("metrics");
    let net = Net {
        proxy: proxy.addr,
        tls,
        kam: kam.addr,
        bob,
    };

    let calls = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        register_carol(net.proxy, &carol);
        for i in 0..CALLS {
            outbound_call(&net, i, i % 2 == 1);
        }
        // So far every connection sipshard opened is to Kamailio: at most one per shard,
        // reused for all the calls.
        let to_kamailio = sipshard_connections(&kam.log()).len() as u64;
        let text = scrape_once_opened(metrics, to_kamailio);
        assert_opened_per_shard(&text, 1, "to Kamailio, for the outbound calls");
        for i in 0..CALLS {
            inbound_call(&net, &mut carol, i, i % 2 == 1);
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

    // Every connection sipshard opened is to Kamailio (as many as Kamailio saw sources of its
    // requests: no more than the shards, so the inbound calls' BYEs reused them) or to Carol
    // (as many as she accepted, no more than the shards). Kamailio opened its own to
    // sipshard's listener; none failed, none closed.
    let to_kamailio = sipshard_connections(&kam.log()).len() as u64;
    let to_carol = carol.conns.len() as u64;
    assert!(
        (1..=SHARDS as u64).contains(&to_kamailio) && (1..=SHARDS as u64).contains(&to_carol),
        "sipshard opened {to_kamailio} TLS connection(s) to Kamailio and {to_carol} to Carol \
         (expected 1 to {SHARDS} each)"
    );
    let text = scrape_once_opened(metrics, to_kamailio + to_carol);
    assert_opened_per_shard(&text, 2, "one to Kamailio and one to Carol at most");
    let opened = to_kamailio + to_carol;
    let accepted = tls_events(&text, "total", "accepted");
    assert!(
        accepted >= 1,
        "Kamailio never connected to sipshard:\n{text}"
    );
    let open = format!(
        "sipshard_tls_connections{{shard=\"total\"}} {}",
        opened + accepted
    );
    scrape::assert_shows(
        metrics,
        &[
            &open,
            "sipshard_tls_connection_events_total{shard=\"total\",event=\"connect_failed\"} 0",
            "sipshard_tls_connection_events_total{shard=\"total\",event=\"closed\"} 0",
            "sipshard_tls_handshakes_total{shard=\"total\",result=\"bad_certificate\"} 0",
            "sipshard_tls_handshakes_total{shard=\"total\",result=\"timed_out\"} 0",
            "sipshard_tls_handshakes_total{shard=\"total\",result=\"failed\"} 0",
        ],
    );

    // A handshake for each connection, full or resumed (a second connection to the same
    // peer may resume the first's session).
    let mut text = String::new();
    let shaken = eventually(Duration::from_secs(3), || {
        text = scrape::scrape(metrics);
        handshakes(&text, "full") + handshakes(&text, "resumed") == opened + accepted
    });
    assert!(
        shaken,
        "not one handshake for each of {} TLS connections:\n{text}",
        opened + accepted
    );

    // Kamailio's own word: sipshard's requests (INVITEs and ACKs of the outbound calls, BYEs
    // from Alice and Carol) arrived over TLS, each on a connection whose certificate it
    // verified as sipshard's; Bob's over UDP.
    let log = kam.stop();
    let requests = logged_requests(&log);
    let from_bob = |method: &str| {
        requests
            .iter()
            .filter(|r| r.from == net.bob.addr && r.method == method && r.proto == "udp")
            .count()
    };
    let over_tls = |method: &str| {
        requests
            .iter()
            .filter(|r| r.method == method && r.proto == "tls")
            .count()
    };
    let peer = format!("cn={SIPSHARD_NAME} issuer={CA} verified=1");
    let unverified: Vec<&Logged> = requests
        .iter()
        .filter(|r| r.proto == "tls" && r.peer != peer)
        .collect();
    assert!(
        unverified.is_empty(),
        "Kamailio logged TLS requests whose peer is not {peer:?}: {unverified:#?}"
    );
    let counts = [
        over_tls("INVITE"),
        over_tls("ACK"),
        over_tls("BYE"),
        from_bob("INVITE"),
        from_bob("ACK"),
        from_bob("BYE"),
    ];
    assert_eq!(
        counts,
        [CALLS; 6],
        "Kamailio logged [INVITE, ACK, BYE] over TLS then [INVITE, ACK, BYE] from Bob over \
         UDP (expected {CALLS} each):\n{}",
        tail(&log, 3000)
    );
    println!(
        "{CALLS} calls each way through Kamailio over TLS in {:?}: sipshard opened {to_kamailio} \
         connection(s) to Kamailio and {to_carol} to Carol, accepted {accepted}",
        started.elapsed()
    );
}
