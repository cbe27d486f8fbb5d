//! Every RFC 3665 session flow a proxy takes part in, through sipshard between real peers:
//! one SIPp scenario pair per flow (`tests/scenarios/uac_3_N.xml`, `uas_3_N.xml`, written after
//! the RFC's message details), at least 50 calls each, zero failed.
//!
//! Each test checks the messages as the UAS received them (Via stack, Record-Route, Route,
//! Max-Forwards, Request-URI) twice: per call inside the UAS scenario (`ereg check_it`), and over
//! the whole UAS message log here. It checks the outcome at the UAC by SIPp's statistics, and
//! what sipshard itself sent or absorbed by its exit counters. Each test then writes its row of
//! the table in `docs/rfc3665-flows.md` (see [`flows::Row`]), which is regenerated from every row
//! present, so the committed table is the output of a real run.
//!
//! Everything runs on 127.0.0.1 on free ports, one test at a time (`peers::serial`), each
//! bounded by SIPp's `-timeout` and the waits below; every process is killed when its test ends.

mod flows;

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use flows::{esc, Expect, Row, CALLS};
use sipshard_testkit::exit_log::sipshard_totals;
use sipshard_testkit::peers::sipp::{finish_calls, header_values, traced_messages, Calls, Sipp};
use sipshard_testkit::peers::{self, sipshard};
use sipshard_testkit::{eventually, free_port, tail, Proxy, Scratch, SipClient};

const BILOXI: &str = "biloxi.example.com";
const ATLANTA: &str = "atlanta.example.com";

/// One flow through one sipshard (Bob's registrar for biloxi.example.com, Record-Routing):
/// what the agents and sipshard left behind.
struct OneProxy {
    calls: Calls,
    /// Message logs of the UAS (Bob) and the UAC (Alice).
    at_bob: String,
    at_alice: String,
    sipshard_log: String,
    p1: u16,
    bob: u16,
    alice: u16,
}

impl OneProxy {
    /// Run `uac` -> sipshard -> `uas` (scenario files) and assert every call succeeded.
    fn run(flow: &str, uac: &str, uas: &str) -> OneProxy {
        let dir = Scratch::new(&format!("rfc3665-{flow}"));
        let started = Instant::now();
        let (p1, bob, alice) = (free_port(), free_port(), free_port());
        let mut proxy = sipshard(
            &dir,
            p1,
            &["--shards", "1", "--domain", BILOXI, "--record-route"],
        );
        flows::register(proxy.addr, "bob", BILOXI, bob);
        let subs = [("@P1@", esc(p1)), ("@BOB@", bob.to_string())];
        let mut uas = flows::uas(&dir, uas, &subs, bob, &[]);
        let mut uac = flows::uac(&dir, uac, &subs, alice, proxy.addr, &[]);
        let calls = finish_calls(flow, started, &mut uac, &mut uas, Duration::from_secs(60));
        let log = proxy.stop();
        calls.assert_all_succeeded(CALLS, &format!("--- sipshard ---\n{}", tail(&log, 3000)));
        OneProxy {
            calls,
            at_bob: uas.messages(),
            at_alice: uac.messages(),
            sipshard_log: log,
            p1,
            bob,
            alice,
        }
    }

    /// What Bob receives through the one proxy: its Via, Max-Forwards 69, no Route.
    fn expect(&self) -> Expect {
        Expect {
            ruri: format!("sip:bob@127.0.0.1:{}", self.bob),
            vias: vec![flows::our_via(self.p1), flows::ua_via(self.alice)],
            max_forwards: 69,
            routes: vec![],
            record_routes: None,
        }
    }

    /// Every `method` request of a call reached Bob with the top Via (sipshard's branch) of
    /// that call's INVITE: the same transaction downstream.
    fn same_branch_as_invite(&self, method: &str) {
        let invites = flows::top_vias(&self.at_bob, "INVITE");
        let others = flows::top_vias(&self.at_bob, method);
        assert!(
            others.len() >= CALLS as usize,
            "{} calls with a {method}",
            others.len()
        );
        for (call, vias) in &others {
            let inv = invites.get(call).and_then(|v| v.first());
            for v in vias {
                assert_eq!(Some(v), inv, "{method} of {call}: not the INVITE's branch");
            }
        }
    }
}

/// 3.1: Alice -> sipshard (Record-Route, location lookup) -> Bob; ACK and BYE along the route.
#[test]
fn flow_3_1_successful_session() {
    let _serial = peers::serial();
    let row = Row::new("3.1", "Successful session", &["uac_3_1.xml", "uas_3_1.xml"]);
    let run = OneProxy::run("3.1", "uac_3_1.xml", "uas_3_1.xml");
    let (at_bob, p1) = (&run.at_bob, run.p1);
    let dialog = run.expect();
    flows::check(
        at_bob,
        "INVITE",
        CALLS,
        &Expect {
            record_routes: Some(vec![format!("<sip:127.0.0.1:{p1};lr>")]),
            ..dialog.clone()
        },
    );
    flows::check(at_bob, "ACK", CALLS, &dialog);
    flows::check(at_bob, "BYE", CALLS, &dialog);
    row.pass(&run.calls, "INVITE/ACK/BYE: R-URI = Bob's Contact, Via sipshard+Alice, Max-Forwards 69, no Route; INVITE Record-Route sipshard");
}

/// Two sipshards in a row: the first for atlanta.example.com (Alice's proxy, `--users`: 407),
/// routing biloxi.example.com to the second (Bob's registrar); both Record-Route.
struct TwoProxies {
    first: Proxy,
    second: Proxy,
    p1: u16,
    p2: u16,
    /// The second proxy's log directory.
    _second_dir: Scratch,
}

impl TwoProxies {
    fn start(dir: &Scratch, first_args: &[&str], second_args: &[&str]) -> TwoProxies {
        let (p1, p2) = (free_port(), free_port());
        let second_dir = Scratch::new("rfc3665-second-proxy");
        let second = sipshard(
            &second_dir,
            p2,
            &[
                &["--shards", "1", "--domain", BILOXI, "--record-route"],
                second_args,
            ]
            .concat(),
        );
        let route = format!("{BILOXI}=127.0.0.1:{p2}");
        let first = sipshard(
            dir,
            p1,
            &[
                &[
                    "--shards",
                    "1",
                    "--domain",
                    ATLANTA,
                    "--record-route",
                    "--route",
                    &route,
                ],
                first_args,
            ]
            .concat(),
        );
        TwoProxies {
            first,
            second,
            p1,
            p2,
            _second_dir: second_dir,
        }
    }

    /// Wait for the calls of `uac` and `uas` (Alice on `alice`, Bob on `bob`), stop both
    /// proxies, assert every call succeeded and check what Bob received ([`check_through_two`]),
    /// with no Proxy-Authorization left. Returns the calls, Alice's message log and both
    /// proxies' logs.
    fn finish(
        &mut self,
        flow: &str,
        started: Instant,
        mut uac: Sipp,
        mut uas: Sipp,
        bob: u16,
        alice: u16,
    ) -> (Calls, String, String, String) {
        let calls = finish_calls(flow, started, &mut uac, &mut uas, Duration::from_secs(60));
        let (log1, log2) = (self.first.stop(), self.second.stop());
        calls.assert_all_succeeded(
            CALLS,
            &format!(
                "--- first ---\n{}\n--- second ---\n{}",
                tail(&log1, 3000),
                tail(&log2, 3000)
            ),
        );
        for m in check_through_two(&uas.messages(), self.p1, self.p2, bob, alice) {
            assert!(flows::value(&m, "Proxy-Authorization").is_none(), "{m:#?}");
        }
        (calls, uac.messages(), log1, log2)
    }
}

/// Check what Bob received through two proxies (`p1` Alice's, `p2` the next): INVITE, ACK
/// and BYE with both proxies' Vias, Max-Forwards 68, no Route; the INVITE with both
/// Record-Routes, `p2`'s on top. Returns the INVITEs.
fn check_through_two(at_bob: &str, p1: u16, p2: u16, bob: u16, alice: u16) -> Vec<Vec<String>> {
    let dialog = Expect {
        ruri: format!("sip:bob@127.0.0.1:{bob}"),
        vias: vec![flows::our_via(p2), flows::our_via(p1), flows::ua_via(alice)],
        max_forwards: 68,
        routes: vec![],
        record_routes: None,
    };
    let rr = vec![
        format!("<sip:127.0.0.1:{p2};lr>"),
        format!("<sip:127.0.0.1:{p1};lr>"),
    ];
    let invites = flows::check(
        at_bob,
        "INVITE",
        CALLS,
        &Expect {
            record_routes: Some(rr),
            ..dialog.clone()
        },
    );
    flows::check(at_bob, "ACK", CALLS, &dialog);
    flows::check(at_bob, "BYE", CALLS, &dialog);
    invites
}

/// 3.2: Alice -> sipshard 1 (407, then forwards by domain) -> sipshard 2 (location) -> Bob.
#[test]
fn flow_3_2_two_proxies() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.2",
        "Session through two proxies",
        &["uac_3_2.xml", "uas_3_2.xml"],
    );
    let dir = Scratch::new("rfc3665-3.2");
    let started = Instant::now();
    let users = dir.write("users", "alice:s3cret\n");
    let users = users.to_string_lossy();
    let mut proxies = TwoProxies::start(&dir, &["--users", &users], &[]);
    let (p1, p2) = (proxies.p1, proxies.p2);
    let (bob, alice) = (free_port(), free_port());
    flows::register(proxies.second.addr, "bob", BILOXI, bob);
    let subs = [
        ("@P1@", esc(p1)),
        ("@P2@", esc(p2)),
        ("@BOB@", bob.to_string()),
    ];
    let uas = flows::uas(&dir, "uas_3_2.xml", &subs, bob, &[]);
    let auth = [
        "-au",
        "alice",
        "-ap",
        "s3cret",
        "-auth_uri",
        "bob@biloxi.example.com",
    ];
    let first = proxies.first.addr;
    let uac = flows::uac(&dir, "uac_3_2.xml", &subs, alice, first, &auth);
    let (calls, alice_log, log1, _) = proxies.finish("3.2", started, uac, uas, bob, alice);
    // Alice's ACK and BYE carry the route set: first proxy, then second.
    for method in ["ACK ", "BYE "] {
        for m in traced_messages(&alice_log, method) {
            if flows::value(&m, "CSeq").is_some_and(|c| c.starts_with("1 ")) {
                continue; // the ACK of the 407
            }
            assert_eq!(
                flows::list(&m, "Route"),
                [
                    format!("<sip:127.0.0.1:{p1};lr>"),
                    format!("<sip:127.0.0.1:{p2};lr>")
                ],
                "{m:#?}"
            );
        }
    }
    // Every first INVITE was challenged by the first proxy, and every ACK of a 407 absorbed.
    let (_, _, replies1, dropped1) = sipshard_totals(&log1);
    assert!(
        replies1 >= CALLS as u64 && dropped1 >= CALLS as u64,
        "{}",
        tail(&log1, 2000)
    );
    row.pass(&calls, "407 from the first proxy (realm atlanta.example.com), its ACK absorbed; INVITE/ACK/BYE: Via both proxies+Alice, Max-Forwards 68, no Route, no Proxy-Authorization; INVITE Record-Route second, first; Alice's Route set first, second");
}

/// 3.7: after the call is set up through sipshard, Alice's address changes and she sends a
/// re-INVITE with the new media address; it and every other in-dialog request follow the
/// route set through sipshard.
#[test]
fn flow_3_7_reinvite() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.7",
        "Session with re-INVITE after an address change",
        &["uac_3_7.xml", "uas_3_7.xml"],
    );
    let run = OneProxy::run("3.7", "uac_3_7.xml", "uas_3_7.xml");
    let dialog = run.expect();
    let invites = flows::check(&run.at_bob, "INVITE", 2 * CALLS, &dialog);
    let reinvites = invites
        .iter()
        .filter(|m| flows::value(m, "CSeq") == Some("2 INVITE"))
        .count();
    assert_eq!(reinvites, CALLS as usize, "re-INVITEs at Bob");
    flows::check(&run.at_bob, "ACK", 2 * CALLS, &dialog);
    flows::check(&run.at_bob, "BYE", CALLS, &dialog);
    // Alice sent the re-INVITE to sipshard's Record-Route (her route set), not to Bob.
    for m in traced_messages(&run.at_alice, "INVITE ") {
        if flows::value(&m, "CSeq") == Some("2 INVITE") {
            assert_eq!(
                flows::list(&m, "Route"),
                [format!("<sip:127.0.0.1:{};lr>", run.p1)],
                "{m:#?}"
            );
        }
    }
    row.pass(&run.calls, "re-INVITE (new SDP address), both ACKs and BYE: R-URI = Bob's Contact, Via sipshard+Alice, Max-Forwards 69, Route consumed; Alice's re-INVITE carried sipshard's Route");
}

/// 3.8: Bob rings, Alice CANCELs; the CANCEL and the ACK of the 487 take the INVITE's path
/// and branch.
#[test]
fn flow_3_8_no_answer() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.8",
        "Unsuccessful no answer",
        &["uac_3_8.xml", "uas_3_8.xml"],
    );
    let run = OneProxy::run("3.8", "uac_3_8.xml", "uas_3_8.xml");
    let dialog = run.expect();
    for method in ["INVITE", "CANCEL", "ACK"] {
        flows::check(&run.at_bob, method, CALLS, &dialog);
    }
    run.same_branch_as_invite("CANCEL");
    run.same_branch_as_invite("ACK");
    let got_487 = traced_messages(&run.at_alice, "SIP/2.0 487").len();
    assert!(got_487 >= CALLS as usize, "Alice received {got_487} 487s");
    row.pass(&run.calls, "INVITE, CANCEL, ACK of the 487: R-URI = Bob's Contact, Via sipshard+Alice, Max-Forwards 69; CANCEL and ACK with the INVITE's sipshard branch; 487 back at Alice");
}

/// 3.9: Bob is busy (486); the ACK for the non-2xx response takes the INVITE's path and branch.
#[test]
fn flow_3_9_busy() {
    let _serial = peers::serial();
    let row = Row::new("3.9", "Unsuccessful busy", &["uac_3_9.xml", "uas_3_9.xml"]);
    let run = OneProxy::run("3.9", "uac_3_9.xml", "uas_3_9.xml");
    let dialog = run.expect();
    flows::check(&run.at_bob, "INVITE", CALLS, &dialog);
    flows::check(&run.at_bob, "ACK", CALLS, &dialog);
    run.same_branch_as_invite("ACK");
    let (_, _, _, dropped) = sipshard_totals(&run.sipshard_log);
    assert_eq!(
        dropped,
        0,
        "sipshard absorbed nothing: {}",
        tail(&run.sipshard_log, 2000)
    );
    row.pass(&run.calls, "INVITE and ACK of the 486: R-URI = Bob's Contact, Via sipshard+Alice, Max-Forwards 69; ACK with the INVITE's sipshard branch; 486 back at Alice");
}

/// 3.10: Bob never answers. sipshard forwards every INVITE retransmission of Alice's (with the
/// same branch) and generates nothing itself; Alice gives up by her own timer.
#[test]
fn flow_3_10_no_response() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.10",
        "Unsuccessful no response from the UA",
        &["uac_3_10.xml", "uas_3_10.xml"],
    );
    let run = OneProxy::run("3.10", "uac_3_10.xml", "uas_3_10.xml");
    flows::check(&run.at_bob, "INVITE", CALLS, &run.expect());
    let sent = flows::top_vias(&run.at_alice, "INVITE");
    let got = flows::top_vias(&run.at_bob, "INVITE");
    assert_eq!(sent.len(), CALLS as usize, "calls Alice placed");
    let mut copies = 0;
    for (call, alice_copies) in &sent {
        let bob_copies = got.get(call).map_or(&[][..], Vec::as_slice);
        assert!(
            alice_copies.len() >= 3,
            "{call}: Alice retransmitted only {} times",
            alice_copies.len() - 1
        );
        assert_eq!(
            bob_copies.len(),
            alice_copies.len(),
            "{call}: copies sent vs received by Bob"
        );
        assert!(
            bob_copies.iter().all(|v| v == &bob_copies[0]),
            "{call}: branches differ: {bob_copies:#?}"
        );
        copies += bob_copies.len();
    }
    // Nothing came back to Alice: no 100, no 408, no 480 from a stateless proxy.
    let received = run.at_alice.matches("message received").count();
    assert_eq!(received, 0, "Alice received {received} messages");
    let (_, _, replies, _) = sipshard_totals(&run.sipshard_log);
    assert!(
        replies < 10,
        "sipshard replied {replies} times (readiness OPTIONS and REGISTER only)"
    );
    row.pass(&run.calls, &format!("every INVITE copy Alice sent ({copies} for 50 calls) reached Bob with one sipshard branch per call, Via sipshard+Alice, Max-Forwards 69; nothing sent back to Alice"));
}

/// 3.11: Bob is not registered: sipshard answers 480 itself and absorbs the ACK.
#[test]
fn flow_3_11_unavailable() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.11",
        "Unsuccessful temporarily unavailable",
        &["uac_3_11.xml"],
    );
    let dir = Scratch::new("rfc3665-3.11");
    let started = Instant::now();
    let (p1, alice) = (free_port(), free_port());
    let mut proxy = sipshard(
        &dir,
        p1,
        &["--shards", "1", "--domain", BILOXI, "--record-route"],
    );
    // Bob registered once, then removed his binding; his old address stays bound here.
    let old_bob = UdpSocket::bind("127.0.0.1:0").expect("bind Bob's old address");
    let bob_port = old_bob.local_addr().expect("address").port();
    flows::register(proxy.addr, "bob", BILOXI, bob_port);
    let aor = format!("sip:bob@{BILOXI}");
    let contact = format!("sip:bob@127.0.0.1:{bob_port}");
    let gone = SipClient::new().register(proxy.addr, &aor, &[&contact], Some(0));
    assert_eq!(gone.status, 200, "{}", gone.text);
    let mut uac = flows::uac(&dir, "uac_3_11.xml", &[], alice, proxy.addr, &[]);
    let outcome = uac.wait(Duration::from_secs(60));
    println!(
        "3.11: {:.1} s\n  uac {}",
        started.elapsed().as_secs_f64(),
        outcome.summary()
    );
    let log = proxy.stop();
    assert_eq!(
        (outcome.exit_code(), outcome.successful(), outcome.failed()),
        (Some(0), CALLS as u64, 0),
        "{}\n{}\n{}",
        outcome.summary(),
        uac.diagnostics(),
        tail(&log, 3000)
    );
    old_bob.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 2048];
    assert!(
        old_bob.recv_from(&mut buf).is_err(),
        "something reached Bob's old address"
    );
    let (_, sent, replies, dropped) = sipshard_totals(&log);
    assert_eq!(
        sent,
        replies,
        "sipshard forwarded something:\n{}",
        tail(&log, 2000)
    );
    assert!(dropped >= CALLS as u64, "ACKs absorbed: {dropped}");
    let got_480 = traced_messages(&uac.messages(), "SIP/2.0 480").len();
    assert_eq!(got_480, CALLS as usize);
    row.pass_uac(&[&outcome], "no UAS (Bob unregistered); 480 from sipshard for every INVITE, every ACK absorbed (dropped >= 50), nothing forwarded (sent = replies), nothing reached Bob's old Contact");
}

/// 3.6: a sipshard in redirect mode answers 302 with Bob's binding (and absorbs the ACK); Alice
/// then calls the Contact through a second sipshard acting as proxy; SDP offer in the 200,
/// answer in the ACK.
#[test]
fn flow_3_6_redirect() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.6",
        "Session via redirect and proxy servers with SDP in the ACK",
        &["uac_3_6.xml", "uas_3_6.xml"],
    );
    let dir = Scratch::new("rfc3665-3.6");
    let proxy_dir = Scratch::new("rfc3665-3.6-proxy");
    let started = Instant::now();
    let (pr, pp, bob, alice) = (free_port(), free_port(), free_port(), free_port());
    let mut redirect = sipshard(&dir, pr, &["--shards", "1", "--redirect-domain", BILOXI]);
    let mut proxy = sipshard(&proxy_dir, pp, &["--shards", "1", "--record-route"]);
    flows::register(redirect.addr, "bob", BILOXI, bob);
    let subs = [
        ("@P1@", esc(pp)),
        ("@P2_PORT@", pp.to_string()),
        ("@BOB@", bob.to_string()),
    ];
    let mut uas = flows::uas(&dir, "uas_3_6.xml", &subs, bob, &[]);
    let mut uac = flows::uac(&dir, "uac_3_6.xml", &subs, alice, redirect.addr, &[]);
    let calls = finish_calls("3.6", started, &mut uac, &mut uas, Duration::from_secs(60));
    let (log_r, log_p) = (redirect.stop(), proxy.stop());
    calls.assert_all_succeeded(
        CALLS,
        &format!(
            "--- redirect ---\n{}\n--- proxy ---\n{}",
            tail(&log_r, 3000),
            tail(&log_p, 3000)
        ),
    );

    let at_bob = uas.messages();
    let dialog = Expect {
        ruri: format!("sip:bob@127.0.0.1:{bob}"),
        vias: vec![flows::our_via(pp), flows::ua_via(alice)],
        max_forwards: 69,
        routes: vec![],
        record_routes: None,
    };
    flows::check(
        &at_bob,
        "INVITE",
        CALLS,
        &Expect {
            record_routes: Some(vec![format!("<sip:127.0.0.1:{pp};lr>")]),
            ..dialog.clone()
        },
    );
    for ack in flows::check(&at_bob, "ACK", CALLS, &dialog) {
        assert_eq!(
            flows::value(&ack, "Content-Type"),
            Some("application/sdp"),
            "{ack:#?}"
        );
    }
    flows::check(&at_bob, "BYE", CALLS, &dialog);
    // The 302s Alice got list Bob's binding with q and expires.
    let redirects = traced_messages(&uac.messages(), "SIP/2.0 302");
    assert_eq!(redirects.len(), CALLS as usize);
    for r in &redirects {
        let c = flows::value(r, "Contact").unwrap_or("");
        assert!(
            c.starts_with(&format!("<sip:bob@127.0.0.1:{bob}>;q=1.000;expires=")),
            "302 Contact {c:?}"
        );
    }
    // The redirect server forwarded nothing, answered every INVITE and absorbed every ACK.
    let (_, sent, replies, dropped) = sipshard_totals(&log_r);
    assert_eq!(
        sent,
        replies,
        "the redirect server forwarded something:\n{}",
        tail(&log_r, 2000)
    );
    assert!(
        replies >= CALLS as u64 && dropped >= CALLS as u64,
        "{}",
        tail(&log_r, 2000)
    );
    row.pass(&calls, "302 from the redirect server with Bob's Contact (q, expires), its ACK absorbed, nothing forwarded by it; INVITE (no SDP), ACK (SDP answer), BYE at Bob: Via proxy+Alice, Max-Forwards 69, no Route; INVITE Record-Route proxy");
}

/// Wait up to 15 s for `text` in a sipshard's log.
fn wait_for_log(proxy: &Proxy, text: &str) {
    let seen = eventually(Duration::from_secs(15), || proxy.log().contains(text));
    assert!(
        seen,
        "no {text:?} in the log:\n{}",
        tail(&proxy.log(), 3000)
    );
}

/// 50 calls of the 3.4 pair from Alice's proxy `first` through next hop `hop` (Bob's registrar
/// on port `p2`) to Bob; checks Bob's messages.
fn calls_through_next_hop(label: &str, first: &Proxy, p2: u16, bob: u16) -> Calls {
    let dir = Scratch::new(&format!("rfc3665-3.4-{label}"));
    let started = Instant::now();
    let alice = free_port();
    let p1 = first.addr.port();
    let subs = [
        ("@P1@", esc(p1)),
        ("@P2@", esc(p2)),
        ("@BOB@", bob.to_string()),
    ];
    let mut uas = flows::uas(&dir, "uas_3_4.xml", &subs, bob, &[]);
    let mut uac = flows::uac(&dir, "uac_3_4.xml", &subs, alice, first.addr, &[]);
    let calls = finish_calls(label, started, &mut uac, &mut uas, Duration::from_secs(60));
    calls.assert_all_succeeded(CALLS, "");
    check_through_two(&uas.messages(), p1, p2, bob, alice);
    calls
}

/// 3.4 from the proxy's side: Alice's proxy routes biloxi.example.com to two next hops in
/// order. The first (a bound socket that never answers) fails its OPTIONS probes and is marked
/// down, so the calls go to the second; once a sipshard answers on the first hop's port, it is
/// marked up and the calls move back to it.
#[test]
fn flow_3_4_proxy_failure() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.4",
        "Successful session with proxy failure",
        &["uac_3_4.xml", "uas_3_4.xml"],
    );
    let dir = Scratch::new("rfc3665-3.4");
    let hop2_dir = Scratch::new("rfc3665-3.4-hop2");
    // A port of the kit's (free over UDP and TCP, outside the ephemeral range): a sipshard
    // takes it over later, on both transports.
    let (hop1, hop2, p1, bob) = (free_port(), free_port(), free_port(), free_port());
    let dead = UdpSocket::bind(("127.0.0.1", hop1)).expect("bind the silent first hop");
    let mut second = sipshard(
        &hop2_dir,
        hop2,
        &["--shards", "1", "--domain", BILOXI, "--record-route"],
    );
    flows::register(second.addr, "bob", BILOXI, bob);
    let route = format!("{BILOXI}=127.0.0.1:{hop1},127.0.0.1:{hop2}");
    let mut first = sipshard(
        &dir,
        p1,
        &[
            "--shards",
            "2",
            "--domain",
            ATLANTA,
            "--record-route",
            "--route",
            &route,
            "--probe-interval",
            "0.5",
            "--probe-failures",
            "2",
        ],
    );
    wait_for_log(&first, &format!("next hop 127.0.0.1:{hop1} is down"));
    let calls = calls_through_next_hop("down", &first, hop2, bob);
    // The silent hop got probes, and nothing else.
    dead.set_nonblocking(true).expect("nonblocking");
    let mut buf = vec![0u8; 65_536];
    let mut probes = 0;
    while let Ok((n, _)) = dead.recv_from(&mut buf) {
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(
            text.starts_with(&format!("OPTIONS sip:127.0.0.1:{hop1} SIP/2.0\r\n")),
            "{text}"
        );
        assert!(text.contains("\r\nMax-Forwards: 0\r\n"), "{text}");
        probes += 1;
    }
    assert!(probes >= 2, "{probes} probes reached the first hop");

    // The first hop comes back: a sipshard on its port, Bob registered there too.
    drop(dead);
    let hop1_dir = Scratch::new("rfc3665-3.4-hop1");
    let mut back = sipshard(
        &hop1_dir,
        hop1,
        &["--shards", "1", "--domain", BILOXI, "--record-route"],
    );
    flows::register(back.addr, "bob", BILOXI, bob);
    wait_for_log(&first, &format!("next hop 127.0.0.1:{hop1} is up again"));
    let calls_back = calls_through_next_hop("up", &first, hop1, bob);
    let log = first.stop();
    second.stop();
    back.stop();
    // Both shards of Alice's proxy applied both changes.
    let changes: u64 = log
        .lines()
        .filter(|l| l.contains("next hop changes"))
        .filter_map(|l| {
            l.split("next hop changes: ")
                .nth(1)?
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert_eq!(changes, 4, "2 shards x (down, up):\n{}", tail(&log, 3000));
    row.pass_uac(&[&calls.uac, &calls_back.uac], "first next hop silent: marked down after 2 unanswered probes (0.5 s apart), it received only OPTIONS (Max-Forwards 0); the first 50 calls via the second hop: Via second+first proxy+Alice, Max-Forwards 68, Record-Route both, no Route; then a sipshard on the first hop's port: marked up, 50 more calls via it, same checks; both shards applied both changes");
}

/// Register `user` at `registrar`, which challenges REGISTER, from `port` with SIPp's
/// `register_auth.xml` (Digest): the binding's Contact is 127.0.0.1:`port`.
fn register_with_password(
    dir: &Scratch,
    registrar: std::net::SocketAddr,
    user: &str,
    password: &str,
    port: u16,
) {
    let file =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/register_auth.xml");
    let args: Vec<String> = [
        "-sf",
        &file.to_string_lossy(),
        "-key",
        "user",
        user,
        "-key",
        "domain",
        BILOXI,
        "-au",
        user,
        "-ap",
        password,
        "-auth_uri",
        BILOXI,
        "-i",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
        &registrar.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut sipp = Sipp::spawn(dir, &format!("register-{user}"), &args, false);
    let done = sipp.wait(Duration::from_secs(30));
    assert_eq!(
        (done.exit_code(), done.successful()),
        (Some(0), 1),
        "REGISTER {user}: {}\n{}",
        done.summary(),
        sipp.diagnostics()
    );
}

/// 3.3: Alice's proxy (atlanta.example.com) and Bob's (biloxi.example.com, `--auth callers`)
/// both challenge her, each in its realm; the last INVITE carries credentials for both, and
/// each proxy removes its own before forwarding.
#[test]
fn flow_3_3_multiple_proxy_authentication() {
    let _serial = peers::serial();
    let row = Row::new(
        "3.3",
        "Session with multiple proxy authentication",
        &["uac_3_3.xml", "uas_3_3.xml"],
    );
    let dir = Scratch::new("rfc3665-3.3");
    let started = Instant::now();
    let atlanta_users = dir.write("atlanta.users", "alice:atl-s3cret\n");
    let biloxi_users = dir.write("biloxi.users", "alice:blx-s3cret\nbob:b0b\n");
    let mut proxies = TwoProxies::start(
        &dir,
        &["--users", &atlanta_users.to_string_lossy()],
        &[
            "--users",
            &biloxi_users.to_string_lossy(),
            "--auth",
            "callers",
        ],
    );
    let (p1, p2) = (proxies.p1, proxies.p2);
    let (bob, alice) = (free_port(), free_port());
    register_with_password(&dir, proxies.second.addr, "bob", "b0b", bob);
    let subs = [
        ("@P1@", esc(p1)),
        ("@P2@", esc(p2)),
        ("@BOB@", bob.to_string()),
        ("@P1_PORT@", p1.to_string()),
        ("@SELF_PORT@", alice.to_string()),
        ("@PASS_ATLANTA@", "atl-s3cret".to_string()),
        ("@PASS_BILOXI@", "blx-s3cret".to_string()),
    ];
    let uas = flows::uas(&dir, "uas_3_3.xml", &subs, bob, &[]);
    let first = proxies.first.addr;
    let auth_uri = ["-auth_uri", "bob@biloxi.example.com"];
    let uac = flows::uac(&dir, "uac_3_3.xml", &subs, alice, first, &auth_uri);
    let (calls, alice_log, log1, log2) = proxies.finish("3.3", started, uac, uas, bob, alice);
    // What Alice sent to the first proxy last: one Proxy-Authorization per realm.
    let finals: Vec<Vec<String>> = traced_messages(&alice_log, "INVITE ")
        .into_iter()
        .filter(|m| flows::value(m, "CSeq") == Some("3 INVITE"))
        .collect();
    assert!(
        finals.len() >= CALLS as usize,
        "{} final INVITEs",
        finals.len()
    );
    for m in &finals {
        let realms: Vec<&str> = header_values(m, "Proxy-Authorization")
            .filter_map(|v| v.split("realm=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(realms, [ATLANTA, BILOXI], "{m:#?}");
    }
    for (who, log) in [("first", &log1), ("second", &log2)] {
        let (_, _, replies, dropped) = sipshard_totals(log);
        assert!(
            replies >= CALLS as u64 && dropped >= CALLS as u64,
            "{who}: 407s and absorbed ACKs:\n{}",
            tail(log, 2000)
        );
    }
    row.pass(&calls, "407 from each proxy in its realm (atlanta.example.com, then biloxi.example.com relayed by the first), both ACKs absorbed by the challenger; final INVITE with one Proxy-Authorization per realm; at Bob: Via both proxies+Alice, Max-Forwards 68, no Route, no Proxy-Authorization left, Record-Route both");
}
