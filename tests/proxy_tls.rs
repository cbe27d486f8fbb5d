//! SIP over TLS through the real binary, over real loopback sockets, with certificates made
//! per test: a phone registered over TLS called down its connection from every shard; sips:
//! never leaving over UDP or TCP; client certificates required, refused (none, another CA's,
//! expired) and trusted in place of Digest credentials; SIGHUP reloading the certificate
//! while open connections stay up; next hops over TLS verified by name (a wrong certificate is
//! a failed hop, never plaintext); resumption; and hostile connections (plaintext, stalled
//! handshakes, a storm beyond the handshake line) closed without touching the others.

use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use sipshard_testkit::pki::{Issued, Pki};
use sipshard_testkit::scrape::{scrape, value};
use sipshard_testkit::{eventually, free_port, Got, Proxy, Scratch, TcpUa, Ua};

/// A test's scratch directory, its own CA, and the proxy's certificate (localhost, 127.0.0.1).
fn certificates(label: &str) -> (Scratch, Pki, Issued) {
    let scratch = Scratch::new(&format!("tls-{label}"));
    let pki = Pki::new(scratch.path(), label);
    let server = pki.issue("server", &["localhost", "127.0.0.1"]);
    (scratch, pki, server)
}

/// A proxy with a TLS listener on its own port, its certificate from `pki`.
struct TlsProxy {
    proxy: Proxy,
    tls: SocketAddr,
}

fn start(scratch: &Scratch, server: &Issued, extra: &[&str]) -> TlsProxy {
    let tls: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let listen = format!("tls:{tls}");
    let mut args: Vec<String> = vec!["--listen".into(), listen];
    args.extend(server.flags());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::builder()
        .dir(scratch.path())
        .metrics()
        .args(&args)
        .start();
    TlsProxy { proxy, tls }
}

fn options(to: SocketAddr, via: &str, branch: &str) -> String {
    format!(
        "OPTIONS sip:{to} SIP/2.0\nVia: SIP/2.0/TLS {via};branch=z9hG4bK{branch}\nFrom: <sip:a@example.com>;tag=o\nTo: <sip:{to}>\nCall-ID: {branch}\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n"
    )
}

/// An OPTIONS over `ua` is answered 200 on the same connection.
fn answers(ua: &mut TcpUa, proxy: SocketAddr, branch: &str) {
    ua.send(&options(proxy, "127.0.0.1:9", branch));
    let r = ua.recv();
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
}

fn invite(to_user: &str, scheme: &str, proxy: SocketAddr, from: SocketAddr, i: usize) -> String {
    format!(
        "INVITE {scheme}:{to_user}@{proxy} SIP/2.0\nVia: SIP/2.0/UDP {from};branch=z9hG4bKinv{i};rport\nFrom: <sip:alice@example.com>;tag=a{i}\nTo: <{scheme}:{to_user}@{proxy}>\nCall-ID: tls-call-{i}\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n"
    )
}

/// A 200 OK for `request`: its Via, From, To (tagged), Call-ID and CSeq.
fn ok_for(request: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\n");
    for line in request.lines() {
        match line.split(':').next().unwrap_or("") {
            "Via" | "From" | "Call-ID" | "CSeq" => out.push_str(&format!("{line}\n")),
            "To" => out.push_str(&format!("{line};tag=callee\n")),
            _ => {}
        }
    }
    out.push('\n');
    out
}

fn metric(p: &TlsProxy, series: &str) -> u64 {
    value(&scrape(p.proxy.metrics.expect("metrics")), series)
}

/// Wait (shards publish every 200 ms) until `series` reads `want`; fails the test with the
/// value last read.
fn assert_metric(p: &TlsProxy, series: &str, want: impl Fn(u64) -> bool) {
    let mut last = 0;
    let ok = eventually(Duration::from_secs(3), || {
        last = metric(p, series);
        want(last)
    });
    assert!(ok, "{series} = {last}");
}

fn register_over_tls(ua: &mut TcpUa, domain: SocketAddr, user: &str) {
    ua.send(&format!(
        "REGISTER sip:{domain} SIP/2.0\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKreg{user}\nFrom: <sip:{user}@{domain}>;tag=r\nTo: <sip:{user}@{domain}>\nCall-ID: reg-{user}\nCSeq: 1 REGISTER\nContact: <sip:{user}@127.0.0.1:9;transport=tls>\nMax-Forwards: 70\n\n"
    ));
    let reply = ua.recv();
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
}

#[test]
fn a_phone_registered_over_tls_is_called_down_its_connection_from_every_shard() {
    let (scratch, pki, server) = certificates("reuse");
    let p = start(&scratch, &server, &["--shards", "2"]);
    let mut bob = TcpUa::connect_tls(p.tls, pki.client(None), "localhost");
    register_over_tls(&mut bob, p.proxy.addr, "bob");
    // Callers from many source ports: some land on the shard that does not own bob's
    // connection, which hands the INVITE to the one that does.
    for i in 0..16 {
        let alice = Ua::new();
        alice.send(
            p.proxy.addr,
            &invite("bob", "sip", p.proxy.addr, alice.addr, i),
        );
        let inv = bob.recv();
        assert!(
            inv.starts_with("INVITE sip:bob@127.0.0.1:9;transport=tls SIP/2.0"),
            "call {i}: {inv}"
        );
        assert!(
            inv.contains(&format!("Via: SIP/2.0/TLS {}", p.tls)),
            "call {i}: {inv}"
        );
        bob.send(&ok_for(&inv));
        let ok = alice.recv();
        assert!(ok.starts_with("SIP/2.0 200 OK"), "call {i}: {ok}");
    }
    assert_metric(&p, "sipshard_tls_connections{shard=\"total\"}", |v| v == 1);
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"full\"}",
        |v| v == 1,
    );
}

/// An in-dialog request for the address a phone connects from (baresip's Contact in a dialog
/// is its connection's own address, and its ACK and BYE come back through our Record-Route
/// with that address as the Request-URI) goes down the phone's connection from whichever shard
/// it arrives on: that address accepts nothing, so a connection opened to it fails.
#[test]
fn a_request_for_the_address_a_phone_connects_from_goes_down_its_connection_from_every_shard() {
    let (scratch, pki, server) = certificates("peer-address");
    let p = start(&scratch, &server, &["--shards", "2"]);
    let mut bob = TcpUa::connect_tls(p.tls, pki.client(None), "localhost");
    answers(&mut bob, p.proxy.addr, "up");
    // The other shard learns of bob's connection over its ring, on its own executor's turn.
    assert_metric(
        &p,
        "sipshard_tls_handoffs_total{shard=\"total\",result=\"announcement_learned\"}",
        |v| v >= 1,
    );
    // Callers from many source ports: some land on the shard that does not own bob's
    // connection.
    for i in 0..16 {
        let alice = Ua::new();
        alice.send(
            p.proxy.addr,
            &format!(
                "BYE sip:bob@{bob};transport=tls SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKbye{i};rport\nRoute: <sip:{tls};transport=tls;lr>\nFrom: <sip:alice@example.com>;tag=a{i}\nTo: <sip:bob@example.com>;tag=b{i}\nCall-ID: peer-address-{i}\nCSeq: 2 BYE\nMax-Forwards: 70\n\n",
                bob = bob.addr,
                a = alice.addr,
                tls = p.tls
            ),
        );
        let bye = bob
            .recv_within(Duration::from_secs(3))
            .unwrap_or_else(|| panic!("BYE {i} did not reach bob"));
        let Got::Message(bye) = bye else {
            panic!("BYE {i}: {bye:?}")
        };
        assert!(
            bye.starts_with(&format!("BYE sip:bob@{};transport=tls SIP/2.0", bob.addr)),
            "BYE {i}: {bye}"
        );
    }
    for (event, want) in [("accepted", 1), ("connected", 0), ("connect_failed", 0)] {
        let series =
            format!("sipshard_tls_connection_events_total{{shard=\"total\",event=\"{event}\"}}");
        assert_metric(&p, &series, |v| v == want);
    }
    // The BYEs that landed on the other shard went over to bob's on the strength of its
    // announcement of his connection (all 16 on one shard: odds of 1 in 32,768).
    let handoffs = |result: &str| {
        format!("sipshard_tls_handoffs_total{{shard=\"total\",result=\"{result}\"}}")
    };
    assert_metric(&p, &handoffs("handed"), |v| (1..=16).contains(&v));
    assert_metric(&p, &handoffs("announcement_ring_full"), |v| v == 0);
}

#[test]
fn sips_never_leaves_over_udp_or_tcp() {
    let (scratch, pki, server) = certificates("sips");
    let p = start(&scratch, &server, &["--shards", "1"]);
    // carol registered over UDP: a sips: call for her has no TLS path.
    let carol = Ua::new();
    let contact = format!("<sip:carol@{}>", carol.addr);
    let domain = p.proxy.addr.to_string();
    let reg =
        sipshard_testkit::ua::register(&carol, p.proxy.addr, "carol", &domain, &contact, 1, "");
    assert!(reg.starts_with("SIP/2.0 200"), "{reg}");
    let alice = Ua::new();
    alice.send(
        p.proxy.addr,
        &invite("carol", "sips", p.proxy.addr, alice.addr, 1),
    );
    let r = alice.recv();
    assert!(r.starts_with("SIP/2.0 480 "), "{r}");
    assert!(r.contains("sips"), "the reason names the problem: {r}");
    assert!(
        carol.recv_within(Duration::from_millis(300)).is_none(),
        "carol was reached"
    );
    // A literal sips: target asking for UDP, and one asking for TCP (which means TLS).
    let sink = Ua::new();
    let udp_target = format!(
        "INVITE sips:x@{};transport=udp SIP/2.0\nVia: SIP/2.0/UDP {};branch=z9hG4bKlit\nFrom: <sip:alice@example.com>;tag=l\nTo: <sips:x@example.com>\nCall-ID: lit\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
        sink.addr, alice.addr
    );
    alice.send(p.proxy.addr, &udp_target);
    let r = alice.recv();
    assert!(r.starts_with("SIP/2.0 480 "), "{r}");
    assert!(sink.recv_within(Duration::from_millis(300)).is_none());
    // bob registered over TLS: his sips: call goes down his TLS connection, Record-Routed
    // with a sips: URI.
    let mut bob = TcpUa::connect_tls(p.tls, pki.client(None), "localhost");
    register_over_tls(&mut bob, p.proxy.addr, "bob");
    alice.send(
        p.proxy.addr,
        &invite("bob", "sips", p.proxy.addr, alice.addr, 2),
    );
    let inv = bob.recv();
    assert!(
        inv.starts_with("INVITE sip:bob@127.0.0.1:9;transport=tls"),
        "{inv}"
    );
    assert_metric(&p, "sipshard_sips_refused_total{shard=\"total\"}", |v| {
        v == 2
    });
}

#[test]
fn client_certificates_are_required_refused_and_trusted() {
    let (scratch, pki, server) = certificates("mtls");
    let trunk = pki.issue("trunk", &["trunk.example.net"]);
    let phone = pki.issue("phone", &["phone.example.net"]);
    let expired = pki.issue_expired("expired", &["trunk.example.net"]);
    let other = Pki::new(scratch.path(), "other").issue("stranger", &["trunk.example.net"]);
    let ca = pki.ca_file.display().to_string();
    let users = scratch.write("users", "alice:secret\n");
    let users = users.display().to_string();
    let p = start(
        &scratch,
        &server,
        &[
            "--shards",
            "1",
            "--tls-ca",
            &ca,
            "--tls-verify-client",
            "required",
            "--tls-trust",
            "trunk.example.net",
            "--users",
            &users,
            "--realm",
            "example.com",
            "--auth",
            "all",
        ],
    );
    for (what, cert) in [
        ("no", None),
        ("an expired", Some(&expired)),
        ("another CA's", Some(&other)),
    ] {
        let refused =
            TcpUa::try_connect_tls(p.tls, pki.client(cert), "localhost").and_then(|mut ua| {
                ua.send(&options(p.tls, "127.0.0.1:9", "refused"));
                ua.recv_within(Duration::from_secs(1))
                    .map(|_| ua)
                    .ok_or_else(|| std::io::Error::other("closed"))
            });
        assert!(
            refused.is_err(),
            "a client with {what} certificate was served"
        );
    }
    // The trunk's certificate carries a trusted name: its requests are not challenged.
    let bob = Ua::new();
    let contact = format!("<sip:bob@{}>", bob.addr);
    let domain = p.proxy.addr.to_string();
    let mut from_trunk = TcpUa::connect_tls(p.tls, pki.client(Some(&trunk)), "localhost");
    let mut from_phone = TcpUa::connect_tls(p.tls, pki.client(Some(&phone)), "localhost");
    // bob registers through the trunk's connection (no credentials: trusted).
    from_trunk.send(&format!(
        "REGISTER sip:{domain} SIP/2.0\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKtr\nFrom: <sip:bob@{domain}>;tag=r\nTo: <sip:bob@{domain}>\nCall-ID: trreg\nCSeq: 1 REGISTER\nContact: {contact}\nMax-Forwards: 70\n\n"
    ));
    let r = from_trunk.recv();
    assert!(
        r.starts_with("SIP/2.0 200"),
        "the trusted trunk was challenged: {r}"
    );
    from_phone.send(&format!(
        "INVITE sip:bob@{domain} SIP/2.0\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKph\nFrom: <sip:alice@{domain}>;tag=p\nTo: <sip:bob@{domain}>\nCall-ID: phcall\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n"
    ));
    let r = from_phone.recv();
    assert!(
        r.starts_with("SIP/2.0 407"),
        "a verified but untrusted phone is challenged: {r}"
    );
    from_trunk.send(&format!(
        "INVITE sip:bob@{domain} SIP/2.0\nVia: SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKtk\nFrom: <sip:alice@{domain}>;tag=t\nTo: <sip:bob@{domain}>\nCall-ID: tkcall\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n"
    ));
    // bob's binding remembers the connection his REGISTER came on: the trunk's.
    let inv = from_trunk.recv();
    assert!(
        inv.starts_with(&format!("INVITE sip:bob@{}", bob.addr)),
        "{inv}"
    );
    assert!(
        inv.contains(&format!("Via: SIP/2.0/TLS {}", p.tls)),
        "{inv}"
    );
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"bad_certificate\"}",
        |v| v == 3,
    );
    // The trunk's REGISTER and INVITE.
    assert_metric(&p, "sipshard_auth_trusted_total{shard=\"total\"}", |v| {
        v == 2
    });
}

#[test]
fn sighup_reloads_the_certificate_and_open_connections_stay_up() {
    let scratch = Scratch::new("tls-reload");
    let first = Pki::new(scratch.path(), "first");
    let second = Pki::new(scratch.path(), "second");
    let server = first.issue("server", &["localhost", "127.0.0.1"]);
    let p = start(&scratch, &server, &["--shards", "2"]);
    let mut old = TcpUa::connect_tls(p.tls, first.client(None), "localhost");
    answers(&mut old, p.tls, "before");
    // The operator puts a certificate from another CA in place and sends SIGHUP.
    let renewed = second.issue("renewed", &["localhost", "127.0.0.1"]);
    std::fs::copy(&renewed.cert, &server.cert).unwrap();
    std::fs::copy(&renewed.key, &server.key).unwrap();
    p.proxy.signal(libc::SIGHUP);
    assert!(
        eventually(Duration::from_secs(5), || p
            .proxy
            .log()
            .contains("reloaded the TLS certificate")),
        "{}",
        p.proxy.log()
    );
    // Each shard takes it on its next housekeeping tick.
    assert!(eventually(Duration::from_secs(3), || {
        (0..4).all(|_| TcpUa::try_connect_tls(p.tls, second.client(None), "localhost").is_ok())
    }));
    assert!(TcpUa::try_connect_tls(p.tls, first.client(None), "localhost").is_err());
    answers(&mut old, p.tls, "after");
}

/// A next hop played by the test: a TLS server showing `cert`, or a plain TCP listener that
/// reports the first bytes it gets.
fn next_hop() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap();
    (l, a)
}

fn accept_within(l: &TcpListener, t: Duration) -> Option<TcpStream> {
    l.set_nonblocking(true).unwrap();
    let mut got = None;
    eventually(t, || {
        got = l.accept().ok().map(|(s, _)| s);
        got.is_some()
    });
    let s = got?;
    s.set_nonblocking(false).unwrap();
    Some(s)
}

#[test]
fn next_hops_over_tls_are_verified_by_name_and_never_get_plaintext() {
    let (scratch, pki, server) = certificates("route");
    let (good, good_addr) = next_hop();
    let (bad, bad_addr) = next_hop();
    let ca = pki.ca_file.display().to_string();
    let good_route = format!("biloxi.example.com=tls:localhost:{}", good_addr.port());
    let bad_route = format!("chicago.example.com=tls:localhost:{}", bad_addr.port());
    let p = start(
        &scratch,
        &server,
        &[
            "--shards",
            "1",
            "--tls-ca",
            &ca,
            "--route",
            &good_route,
            "--route",
            &bad_route,
        ],
    );
    let alice = Ua::new();
    let to = |domain: &str, i: usize| {
        format!(
            "INVITE sip:bob@{domain} SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKr{i};rport\nFrom: <sip:alice@example.com>;tag=r{i}\nTo: <sip:bob@{domain}>\nCall-ID: route-{i}\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
            a = alice.addr
        )
    };
    alice.send(p.proxy.addr, &to("biloxi.example.com", 1));
    let conn = accept_within(&good, Duration::from_secs(3)).expect("sipshard connected");
    let hop_cert = pki.issue("biloxi", &["localhost"]);
    let mut hop = TcpUa::accepted_tls(conn, pki.server(&hop_cert));
    let inv = hop.recv();
    assert!(
        inv.starts_with("INVITE sip:bob@biloxi.example.com SIP/2.0"),
        "{inv}"
    );
    assert!(
        inv.contains(&format!("Via: SIP/2.0/TLS {}", p.tls)),
        "{inv}"
    );
    hop.send(&ok_for(&inv));
    assert!(alice.recv().starts_with("SIP/2.0 200"));
    // The other next hop shows a certificate for another name: the handshake fails, and
    // nothing but the ClientHello ever reaches it.
    alice.send(p.proxy.addr, &to("chicago.example.com", 2));
    let mut conn = accept_within(&bad, Duration::from_secs(3)).expect("sipshard connected");
    let impostor = pki.issue("impostor", &["evil.example.org"]);
    let hello = {
        let mut first = [0u8; 3];
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        conn.read_exact(&mut first).unwrap();
        first
    };
    assert_eq!(hello[0], 0x16, "a TLS handshake record, not plaintext SIP");
    drop(impostor);
    drop(conn);
    assert_metric(
        &p,
        "sipshard_tls_connection_events_total{shard=\"total\",event=\"connect_failed\"}",
        |v| v >= 1,
    );
}

#[test]
fn a_wrong_certificate_at_the_next_hop_fails_the_hop() {
    let (scratch, pki, server) = certificates("impostor");
    let (bad, bad_addr) = next_hop();
    let ca = pki.ca_file.display().to_string();
    let route = format!("chicago.example.com=tls:localhost:{}", bad_addr.port());
    let p = start(
        &scratch,
        &server,
        &["--shards", "1", "--tls-ca", &ca, "--route", &route],
    );
    let alice = Ua::new();
    alice.send(
        p.proxy.addr,
        &format!(
            "INVITE sip:bob@chicago.example.com SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKimp;rport\nFrom: <sip:alice@example.com>;tag=i\nTo: <sip:bob@chicago.example.com>\nCall-ID: imp\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
            a = alice.addr
        ),
    );
    let conn = accept_within(&bad, Duration::from_secs(3)).expect("sipshard connected");
    let impostor = pki.issue("evil", &["evil.example.org"]);
    let mut hop = TcpUa::accepted_tls(conn, pki.server(&impostor));
    assert!(
        hop.recv_within(Duration::from_secs(2)).is_none(),
        "the impostor got a message"
    );
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"bad_certificate\"}",
        |v| v == 1,
    );
    assert!(
        p.proxy.log().contains("handshake failed"),
        "{}",
        p.proxy.log()
    );
}

#[test]
fn a_reconnecting_client_resumes_its_session() {
    let (scratch, pki, server) = certificates("resume");
    let p = start(&scratch, &server, &["--shards", "1"]);
    // One client configuration keeps the session tickets it was given.
    let client = pki.client(None);
    for i in 0..3 {
        let mut ua = TcpUa::connect_tls(p.tls, client.clone(), "localhost");
        answers(&mut ua, p.tls, &format!("resume{i}"));
    }
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"resumed\"}",
        |v| v == 2,
    );
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"full\"}",
        |v| v == 1,
    );
}

#[test]
fn hostile_connections_are_closed_and_nothing_else_is_touched() {
    let (scratch, pki, server) = certificates("hostile");
    let p = start(
        &scratch,
        &server,
        &[
            "--shards",
            "1",
            "--tls-handshakes",
            "1",
            "--tls-handshake-backlog",
            "2",
            "--tls-handshake-timeout-ms",
            "800",
        ],
    );
    let mut good = TcpUa::connect_tls(p.tls, pki.client(None), "localhost");
    answers(&mut good, p.tls, "first");
    // Plaintext SIP instead of a ClientHello: closed at once.
    let mut plain = TcpUa::connect(p.tls);
    plain.send(&options(p.tls, "127.0.0.1:9", "plain"));
    assert!(
        plain.closed_within(Duration::from_secs(2)),
        "plaintext was served"
    );
    // A storm of connections that never finish a handshake: one holds the only slot, two
    // wait in line, the rest are shed at once.
    let mut stalled: Vec<TcpUa> = (0..10).map(|_| TcpUa::connect(p.tls)).collect();
    let shed = stalled
        .iter_mut()
        .map(|s| s.closed_within(Duration::from_millis(200)))
        .filter(|&closed| closed)
        .count();
    assert!(shed >= 7, "only {shed} of 10 were shed");
    // Forwarding and the established connection carry on meanwhile; the stalled ones are
    // closed by the deadline.
    answers(&mut good, p.tls, "during");
    assert!(eventually(Duration::from_secs(5), || {
        stalled
            .iter_mut()
            .all(|s| s.closed_within(Duration::from_millis(10)))
    }));
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"shed\"}",
        |v| v >= 7,
    );
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"timed_out\"}",
        |v| v >= 1,
    );
    answers(&mut good, p.tls, "after");
}

/// OpenSSL's command-line client (Debian `openssl`): the one peer here that attempts a TLS 1.2
/// renegotiation, which rustls clients never do.
fn openssl() -> std::path::PathBuf {
    sipshard_testkit::peers::require("openssl")
}

#[test]
fn renegotiation_is_refused_and_a_cut_record_fails_only_its_own_connection() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let openssl = openssl();
    let (scratch, pki, server) = certificates("reneg");
    let p = start(&scratch, &server, &["--shards", "1"]);
    let mut good = TcpUa::connect_tls(p.tls, pki.client(None), "localhost");
    answers(&mut good, p.tls, "before");
    // TLS 1.2, then "R" asks s_client to renegotiate; rustls refuses (no_renegotiation).
    let mut child = Command::new(openssl)
        .args(["s_client", "-tls1_2", "-connect"])
        .arg(p.tls.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl s_client");
    let mut stdin = child.stdin.take().expect("stdin");
    let (tx, said) = std::sync::mpsc::channel();
    lines_into(child.stdout.take().expect("stdout"), tx.clone());
    lines_into(child.stderr.take().expect("stderr"), tx);
    let mut said = std::iter::from_fn(move || said.recv_timeout(Duration::from_secs(3)).ok());
    assert!(
        said.any(|l| l.contains("Verify return code")),
        "s_client did not finish its handshake"
    );
    stdin.write_all(b"R\n").unwrap();
    let renegotiating = said.any(|l| l.contains("RENEGOTIATING"));
    assert!(renegotiating, "s_client did not try to renegotiate");
    // A handshake record cut short, then the client goes away.
    let mut cut = TcpStream::connect(p.tls).unwrap();
    cut.write_all(&[0x16, 0x03, 0x01, 0x00, 0xf0, 0x01, 0x00])
        .unwrap();
    drop(cut);
    assert_metric(
        &p,
        "sipshard_tls_handshakes_total{shard=\"total\",result=\"failed\"}",
        |v| v == 1,
    );
    // The shard has read both by the time it answers this (one shard, reads in turn).
    answers(&mut good, p.tls, "after");
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    let log = p.proxy.log();
    assert!(
        !log.contains("level=warn target=rustls"),
        "rustls logged at warn:\n{log}"
    );
}

/// The lines `out` produces, as they come, into `tx` (a reader thread ends with the stream).
fn lines_into(out: impl Read + Send + 'static, tx: std::sync::mpsc::Sender<String>) {
    use std::io::BufRead;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
}

/// A TLS next hop played by the test until `until`: it accepts every connection (the prober's
/// and the shards'), answers OPTIONS with 200 and hands every other request to the receiver.
fn tls_hop(
    listener: TcpListener,
    config: std::sync::Arc<rustls::ServerConfig>,
    until: std::time::Instant,
) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while std::time::Instant::now() < until {
            let Ok((conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).unwrap();
            let (tx, config) = (tx.clone(), config.clone());
            std::thread::spawn(move || {
                let mut ua = TcpUa::accepted_tls(conn, config);
                while std::time::Instant::now() < until {
                    match ua.recv_within(Duration::from_millis(200)) {
                        Some(sipshard_testkit::Got::Message(m)) if m.starts_with("OPTIONS") => {
                            ua.send(&ok_for(&m))
                        }
                        Some(sipshard_testkit::Got::Message(m)) => {
                            let _ = tx.send(m);
                        }
                        Some(_) => {}
                        None if ua.closed_within(Duration::from_millis(1)) => return,
                        None => {}
                    }
                }
            });
        }
    });
    rx
}

#[test]
fn a_tls_next_hop_with_the_wrong_certificate_is_probed_down_and_its_route_fails_over() {
    let (scratch, pki, server) = certificates("failover");
    let (bad, bad_addr) = next_hop();
    let (good, good_addr) = next_hop();
    let until = std::time::Instant::now() + Duration::from_secs(15);
    let impostor = pki.server(&pki.issue("impostor", &["evil.example.org"]));
    let from_bad = tls_hop(bad, impostor, until);
    let from_good = tls_hop(good, pki.server(&pki.issue("good", &["localhost"])), until);
    let ca = pki.ca_file.display().to_string();
    let route = format!(
        "chicago.example.com=tls:localhost:{},localhost:{}",
        bad_addr.port(),
        good_addr.port()
    );
    let p = start(
        &scratch,
        &server,
        &[
            "--shards",
            "2",
            "--tls-ca",
            &ca,
            "--route",
            &route,
            "--probe-interval",
            "0.2",
            "--probe-failures",
            "1",
        ],
    );
    let down = format!("next hop {bad_addr} is down");
    assert!(
        eventually(Duration::from_secs(5), || p.proxy.log().contains(&down)),
        "the impostor was not probed down:\n{}",
        p.proxy.log()
    );
    assert!(!p
        .proxy
        .log()
        .contains(&format!("next hop {good_addr} is down")));
    // Each shard takes the change in before its next message: every call goes to the good hop.
    for i in 0..4 {
        let alice = Ua::new();
        alice.send(
            p.proxy.addr,
            &format!(
                "INVITE sip:bob@chicago.example.com SIP/2.0\nVia: SIP/2.0/UDP {a};branch=z9hG4bKfo{i};rport\nFrom: <sip:alice@example.com>;tag=f{i}\nTo: <sip:bob@chicago.example.com>\nCall-ID: failover-{i}\nCSeq: 1 INVITE\nMax-Forwards: 70\n\n",
                a = alice.addr
            ),
        );
        let inv = from_good
            .recv_timeout(Duration::from_secs(3))
            .expect("the good hop got the INVITE");
        assert!(inv.contains(&format!("Call-ID: failover-{i}")), "{inv}");
    }
    assert!(from_bad.try_recv().is_err(), "the impostor got a request");
}
