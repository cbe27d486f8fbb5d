//! Interoperability with real SIP peers: SIPp's built-in `uac` calling its built-in `uas`
//! through sipshard (3,000 calls at 300 calls/s, one and two shards), Kamailio as the second
//! proxy of the RFC 3665 section 3.2 two-proxy flow, and sipsak registrations.
//!
//! The peers are SIPp (Debian package sip-tester), Kamailio and sipsak. A missing one fails the
//! test that needs it with a message saying how to install it (`scripts/test.sh` does): these
//! tests never pass by skipping. Everything runs on 127.0.0.1 on free ports, every run is
//! bounded in calls and time, and every process started is killed when its test ends, also on
//! a failed assertion.

use std::time::{Duration, Instant};

use sipshard_testkit::exit_log::shard_receive_counts;
use sipshard_testkit::peers::kamailio::{self, Kamailio};
use sipshard_testkit::peers::sipp::{
    finish_calls, header_values, traced_messages, Agent, Scenario,
};
use sipshard_testkit::peers::{self, require, sipsak};
use sipshard_testkit::{eventually, free_low_port, free_port, tail, Scratch, SipClient};

/// The load of the SIPp call test: 3,000 calls at 300 calls/s.
const CALLS: u32 = 3000;
const RATE: u32 = 300;

/// SIPp `uac` -> sipshard -> SIPp `uas`, the uas registered as `service` (the built-in
/// scenarios' Request-URI user) in sipshard's location table.
///
/// The path of each message: the built-in uac sends the INVITE, the ACK and the BYE alike to
/// the proxy given on its command line, each with Request-URI `sip:service@<proxy>` and no
/// Route (it keeps no route set and ignores the 200's Contact). sipshard therefore routes the
/// ACK and the BYE exactly like the INVITE: the Request-URI names one of its own addresses, so
/// it looks up `service` in the location table and forwards to the registered Contact (the
/// uas's port), rewriting the Request-URI to it. No Record-Route is needed for that; the
/// whole dialog passes through the proxy statelessly, request by request. Responses travel
/// back on the Via stack: the uas answers to sipshard's Via, sipshard strips it and sends to
/// the uac's Via (with the rport it added).
///
/// `uac_args` are extra SIPp flags for the uac (`-t un`: a socket per call).
fn sipp_calls_through_sipshard(name: &str, shard_args: &[&str], uac_args: &[&str]) {
    require("sipp");
    let _serial = peers::serial();
    let dir = Scratch::new(name);
    let started = Instant::now();
    let (proxy_port, uas_port, uac_port) = (free_port(), free_port(), free_port());
    let mut proxy = peers::sipshard(&dir, proxy_port, shard_args);

    // Register the uas as sip:service@<proxy> with a Contact at its port.
    let client = SipClient::new();
    let aor = format!("sip:service@{}", proxy.addr);
    let contact = format!("sip:service@127.0.0.1:{uas_port}");
    let ok = client.register(proxy.addr, &aor, &[&contact], Some(3600));
    assert_eq!(ok.status, 200, "REGISTER failed:\n{}", ok.text);
    assert!(
        ok.contacts().iter().any(|c| c.contains(&contact)),
        "the 200 does not list {contact}:\n{}",
        ok.text
    );
    // Queries from fresh sockets (other 4-tuples, so with several shards they land on other
    // shards too) until six in a row list the binding: every shard's copy of the location
    // table must have it before the calls start. Replication between shards is asynchronous,
    // so a shard may not have it yet right after the 200 (see
    // `registration_is_visible_on_every_shard_once_answered`).
    let listed_everywhere = eventually(Duration::from_secs(5), || {
        (0..6).all(|_| {
            let q = SipClient::new().register(proxy.addr, &aor, &[], None);
            q.status == 200 && q.contacts().iter().any(|c| c.contains(&contact))
        })
    });
    assert!(
        listed_everywhere,
        "queries still miss {contact} 5 s after the registration"
    );

    let uas_agent = Agent {
        name: "uas",
        scenario: Scenario::Builtin("uas"),
        port: uas_port,
        service: "service",
        calls: CALLS,
        remote: None,
        timeout: Duration::from_secs(90),
        extra: &[],
        trace_msg: false,
    };
    let mut uas = uas_agent.start(&dir);
    let mut uac = Agent {
        name: "uac",
        scenario: Scenario::Builtin("uac"),
        port: uac_port,
        remote: Some((proxy.addr, RATE)),
        timeout: Duration::from_secs(60),
        extra: uac_args,
        ..uas_agent
    }
    .start(&dir);
    let calls = finish_calls(name, started, &mut uac, &mut uas, Duration::from_secs(75));
    let log = proxy.stop();
    let shards = shard_receive_counts(&log);
    println!("  sipshard datagrams received per shard: {shards:?}");
    calls.assert_all_succeeded(
        CALLS,
        &format!("--- sipshard log ---\n{}", tail(&log, 3000)),
    );
    let expected_shards = shard_args
        .windows(2)
        .find(|w| w[0] == "--shards")
        .map_or(1, |w| w[1].parse::<usize>().expect("shard count"));
    assert_eq!(
        shards.len(),
        expected_shards,
        "per-shard counters missing from the log:\n{}",
        tail(&log, 3000)
    );
    if expected_shards > 1 {
        // Both shards must have carried calls, not just the registration and the queries
        // (about 6 datagrams per call reach the proxy).
        for (id, n) in &shards {
            assert!(
                *n > CALLS as u64 / 2,
                "shard {id} received only {n} datagrams: {shards:?}"
            );
        }
    }
}

#[test]
fn sipp_uac_uas_through_one_shard() {
    sipp_calls_through_sipshard("sipp-1-shard", &["--shards", "1"], &[]);
}

/// Two shards with the kernel's flow steering. The uac opens a socket per call (`-t un`), so
/// the calls' requests are spread over both shards by 4-tuple while the messages of one call
/// from one side stay on one shard, in order. (The uas answers from its single socket: its
/// responses all reach one shard.)
#[test]
fn sipp_uac_uas_through_two_shards() {
    sipp_calls_through_sipshard(
        "sipp-2-shards-flow",
        &["--shards", "2", "--steering", "flow"],
        &["-t", "un", "-max_socket", "512"],
    );
}

/// Two shards with random steering: every datagram goes to a random shard, so two datagrams
/// of one flow sent back to back (the uas's 180 and 200, the uac's ACK and BYE) are handled
/// on two cores at once and may leave in the other order. UDP promises no order and RFC 3261
/// user agents cope, but SIPp fails a call on any out-of-order message. Measured on the shared
/// two-core development machine, with no retransmission and no loss at all: 268 of 3,000
/// calls failed at the uac (a 180 after the 200) and 33 at the uas (a BYE before the ACK);
/// an earlier, more loaded run: 280 and 224. Kept to measure that reordering: `--ignored`.
#[test]
#[ignore = "random steering reorders back-to-back datagrams of one flow across shards; SIPp fails those calls"]
fn sipp_uac_uas_through_two_shards_random_steering() {
    sipp_calls_through_sipshard(
        "sipp-2-shards-random",
        &["--shards", "2", "--steering", "random"],
        &[],
    );
}

/// Kamailio as biloxi.example.com's proxy: Record-Route and loose routing for in-dialog
/// requests (rr), a location table filled by REGISTER (usrloc in memory, registrar), and
/// transaction-stateful relaying (tm). OPTIONS to its own address is answered 200 so the test
/// knows when it is up.
const KAMAILIO_CFG: &str = r#"#!KAMAILIO
debug=2
log_stderror=yes
fork=yes
children=2
auto_aliases=no
listen=udp:127.0.0.1:@PORT@
alias="biloxi.example.com"
mpath="@MPATH@"

loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "usrloc.so"
loadmodule "registrar.so"

modparam("usrloc", "db_mode", 0)

request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    if (has_totag()) {
        # In-dialog: follow the Route set (our Record-Route comes back as the top Route).
        if (loose_route()) {
            t_relay();
            exit;
        }
        if (is_method("ACK")) {
            if (t_check_trans()) {
                t_relay();
            }
            exit;
        }
        sl_send_reply("404", "Not Here");
        exit;
    }
    if (is_method("CANCEL")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    if (is_method("OPTIONS") && uri == myself && $rU == $null) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (is_method("REGISTER")) {
        save("location");
        exit;
    }
    if (!(uri == myself)) {
        sl_send_reply("403", "Not Relaying");
        exit;
    }
    if (is_method("INVITE|SUBSCRIBE")) {
        record_route();
    }
    if (!lookup("location")) {
        sl_send_reply("404", "Not Found");
        exit;
    }
    t_relay();
}
"#;

/// `127\.0\.0\.1:PORT` for a POSIX regular expression.
fn escaped(port: u16) -> String {
    format!("127\\.0\\.0\\.1:{port}")
}

/// The two-proxy flow of RFC 3665 section 3.2: SIPp as Alice (atlanta.example.com) ->
/// sipshard (serves atlanta.example.com, static route for biloxi.example.com, Record-Route)
/// -> Kamailio (biloxi.example.com: Record-Route, location lookup) -> SIPp as Bob, who
/// registered at Kamailio. The ACK and BYE follow the recorded route back through both
/// proxies (uac_two_proxy.xml saves the route set). Bob's scenario checks every INVITE, ACK
/// and BYE for both proxies' Vias in order and every INVITE for both Record-Routes; the test
/// also reads Bob's and Alice's message logs.
#[test]
fn two_proxies_sipshard_then_kamailio() {
    const CALLS2: u32 = 100;
    require("sipp");
    require("kamailio");
    let _serial = peers::serial();
    let dir = Scratch::new("two-proxies");
    let started = Instant::now();
    let (proxy_port, kam_port, uas_port, uac_port) =
        (free_port(), free_port(), free_port(), free_port());

    let cfg = KAMAILIO_CFG
        .replace("@PORT@", &kam_port.to_string())
        .replace("@MPATH@", &kamailio::module_dir());
    let cfg_path = dir.write("kamailio.cfg", &cfg);
    // Keep memory small.
    let kam = Kamailio::start(&dir, &cfg_path, kam_port, &["-m", "32", "-M", "4"]);
    let kam_addr = kam.addr;

    let route = format!("biloxi.example.com=127.0.0.1:{kam_port}");
    let mut proxy = peers::sipshard(
        &dir,
        proxy_port,
        &[
            "--shards",
            "1",
            "--domain",
            "atlanta.example.com",
            "--route",
            &route,
            "--record-route",
        ],
    );

    // Bob registers at biloxi.example.com's registrar (Kamailio).
    let bob = format!("sip:bob@127.0.0.1:{uas_port}");
    let ok = SipClient::new().register(kam_addr, "sip:bob@biloxi.example.com", &[&bob], Some(3600));
    assert_eq!(ok.status, 200, "REGISTER at Kamailio failed:\n{}", ok.text);
    assert!(
        ok.contacts().iter().any(|c| c.contains(&bob)),
        "Kamailio's 200 does not list {bob}:\n{}",
        ok.text
    );

    let scenarios = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios");
    let uas_xml = std::fs::read_to_string(scenarios.join("uas_two_proxy.xml"))
        .expect("read tests/scenarios/uas_two_proxy.xml")
        .replace("@SIPSHARD@", &escaped(proxy_port))
        .replace("@KAMAILIO@", &escaped(kam_port));
    let uas_path = dir.write("uas_two_proxy.xml", &uas_xml);
    let bob_agent = Agent {
        name: "bob",
        scenario: Scenario::File(&uas_path),
        port: uas_port,
        service: "bob",
        calls: CALLS2,
        remote: None,
        timeout: Duration::from_secs(60),
        extra: &[],
        trace_msg: true,
    };
    let mut uas = bob_agent.start(&dir);
    let uac_xml = scenarios.join("uac_two_proxy.xml");
    let mut uac = Agent {
        name: "alice",
        scenario: Scenario::File(&uac_xml),
        port: uac_port,
        remote: Some((proxy.addr, 50)),
        timeout: Duration::from_secs(45),
        ..bob_agent
    }
    .start(&dir);
    let calls = finish_calls(
        "two proxies",
        started,
        &mut uac,
        &mut uas,
        Duration::from_secs(60),
    );
    let log = proxy.stop();
    calls.assert_all_succeeded(
        CALLS2,
        &format!(
            "--- sipshard log ---\n{}\n{}",
            tail(&log, 3000),
            kam.output_tail(3000)
        ),
    );

    // What Bob received, exactly: the first INVITE, ACK and BYE.
    let bob_log = uas.messages();
    let sipshard_hop = format!("SIP/2.0/UDP 127.0.0.1:{proxy_port};branch=z9hG4bK");
    let kamailio_hop = format!("SIP/2.0/UDP 127.0.0.1:{kam_port};branch=z9hG4bK");
    let alice_hop = format!("SIP/2.0/UDP 127.0.0.1:{uac_port};branch=");
    for method in ["INVITE ", "ACK ", "BYE "] {
        let msgs = traced_messages(&bob_log, method);
        assert!(
            msgs.len() >= CALLS2 as usize,
            "Bob's log holds {} {method}requests, expected {CALLS2}:\n{}",
            msgs.len(),
            tail(&bob_log, 3000)
        );
        let first = &msgs[0];
        let vias: Vec<&str> = header_values(first, "Via").collect();
        assert!(
            vias.len() == 3
                && vias[0].starts_with(&kamailio_hop)
                && vias[1].starts_with(&sipshard_hop)
                && vias[2].starts_with(&alice_hop),
            "{method}at Bob: Via stack is not Kamailio, sipshard, Alice: {vias:#?}\n{first:#?}"
        );
        assert!(
            first[0].starts_with(&format!("{method}sip:bob@127.0.0.1:{uas_port}")),
            "{method}at Bob has Request-URI {:?}, expected Bob's registered Contact",
            first[0]
        );
        let routes: Vec<&str> = header_values(first, "Route").collect();
        assert!(
            routes.is_empty(),
            "{method}at Bob still carries Route {routes:?}"
        );
    }
    let invite = &traced_messages(&bob_log, "INVITE ")[0];
    let rr: Vec<&str> = header_values(invite, "Record-Route")
        .flat_map(|v| v.split(", "))
        .collect();
    assert!(
        rr.len() == 2
            && rr[0].starts_with(&format!("<sip:127.0.0.1:{kam_port};lr"))
            && rr[1] == format!("<sip:127.0.0.1:{proxy_port};lr>"),
        "INVITE at Bob: Record-Route is not Kamailio, sipshard: {rr:?}\n{invite:#?}"
    );

    // What Alice sent in the dialog: the route set of both proxies, sipshard first.
    let alice_log = uac.messages();
    let acks = traced_messages(&alice_log, "ACK ");
    let ack = acks.first().expect("Alice's log holds an ACK");
    let route: Vec<&str> = header_values(ack, "Route")
        .flat_map(|v| v.split(", "))
        .collect();
    assert!(
        route.len() == 2
            && route[0] == format!("<sip:127.0.0.1:{proxy_port};lr>")
            && route[1].starts_with(&format!("<sip:127.0.0.1:{kam_port};lr")),
        "Alice's ACK: Route set is not sipshard, Kamailio: {route:?}\n{ack:#?}"
    );
    drop(kam);
}

/// sipsak against sipshard: OPTIONS, registrations added, listed, refused as too brief and
/// removed. Each step is checked with a REGISTER query (no Contact) from the test.
#[test]
fn sipsak_options_and_registrations() {
    require("sipsak");
    let _serial = peers::serial();
    let dir = Scratch::new("sipsak");
    // Two shards: sipsak's REGISTERs and the test's queries come from different sockets and
    // so, usually, reach different shards' copies of the location table.
    let port = free_low_port();
    let mut proxy = peers::sipshard(&dir, port, &["--shards", "2"]);
    let target = format!("sip:127.0.0.1:{port}");
    let aor = format!("sip:alice@127.0.0.1:{port}");
    let first = format!("sip:alice@127.0.0.1:{}", free_port());
    let second = format!("sip:alice@127.0.0.1:{}", free_port());
    // -i: no "Via insertion" warning in usrloc mode; -D 8: give up after 8 x T1 = 4 s.
    let common = |v: &[&str]| -> Vec<String> {
        v.iter()
            .map(|a| a.to_string())
            .chain(["-i", "-D", "8", "-vv"].map(String::from))
            .collect()
    };
    // The bindings a query lists once they satisfy `expect` (or after 2 s, for the failure
    // message): the query may reach the shard that did not handle the REGISTER, which may
    // lag (see `registration_is_visible_on_every_shard_once_answered`).
    let settled = |expect: &dyn Fn(&[String]) -> bool| -> (bool, Vec<String>) {
        let mut listed = Vec::new();
        let ok = eventually(Duration::from_secs(2), || {
            let q = SipClient::new().register(proxy.addr, &aor, &[], None);
            listed = q.contacts();
            q.status == 200 && expect(&listed)
        });
        (ok, listed)
    };
    let register = |step: &str, contact: &str, expires: &str| {
        sipsak::run(
            &dir,
            step,
            &common(&["-U", "-s", &aor, "-C", contact, "-x", expires]),
        )
    };
    let registered = |step: &str, contact: &str, expires: &str| {
        let (code, out) = register(step, contact, expires);
        assert_eq!(
            code,
            Some(0),
            "sipsak REGISTER {contact} -x {expires} ({step}):\n{out}"
        );
    };

    let (code, out) = sipsak::run(&dir, "options", &common(&["-s", &target]));
    assert!(
        code == Some(0) && out.contains("SIP/2.0 200 OK"),
        "sipsak OPTIONS {target}: exit {code:?}\n{out}"
    );

    registered("register-first", &first, "3600");
    let (ok, listed) = settled(&|l| {
        l.len() == 1
            && l[0].starts_with(&format!("<{first}>;expires="))
            && l[0]
                .rsplit('=')
                .next()
                .and_then(|e| e.parse::<u32>().ok())
                .is_some_and(|e| (3590..=3600).contains(&e))
    });
    assert!(
        ok,
        "after registering {first} for 3600 s the query lists {listed:?}"
    );

    registered("register-second", &second, "600");
    let both = |l: &[String]| {
        l.len() == 2
            && l.iter().any(|c| c.starts_with(&format!("<{first}>")))
            && l.iter().any(|c| c.starts_with(&format!("<{second}>")))
    };
    let (ok, listed) = settled(&both);
    assert!(ok, "after two registrations the query lists {listed:?}");

    // Shorter than --min-expires (60): 423 with Min-Expires, and nothing changes.
    let (code, out) = register("register-too-brief", &first, "10");
    assert!(
        code != Some(0)
            && out.contains("423 Interval Too Brief")
            && out.contains("Min-Expires: 60"),
        "sipsak REGISTER -x 10: exit {code:?}\n{out}"
    );
    let (ok, listed) = settled(&both);
    assert!(
        ok,
        "after the refused registration the query lists {listed:?}"
    );

    // Removal of one binding (Expires: 0), then of the other.
    registered("unregister-first", &first, "0");
    let (ok, listed) = settled(&|l| l.len() == 1 && l[0].starts_with(&format!("<{second}>")));
    assert!(ok, "after removing {first} the query lists {listed:?}");
    registered("unregister-second", &second, "0");
    let (ok, listed) = settled(&|l| l.is_empty());
    assert!(ok, "after removing both the query lists {listed:?}");
    proxy.stop();
}

/// A REGISTER's 200 means the binding is in effect (RFC 3261 section 10.3): a request that
/// the registrant, or anyone it told, sends right after the 200 must find it, whichever
/// shard that request reaches. Each of 1,000 new registrations is queried at once from a
/// fresh socket (so about half of the queries reach the other shard).
///
/// This failed (48 of 2,000 missed) while replicas were consumed by separate tasks of the
/// other shard's executor; now the registering shard queues the change before sending the 200
/// and every shard drains its inbox before handling each batch (src/shard/replication.rs).
#[test]
fn registration_is_visible_on_every_shard_once_answered() {
    let dir = Scratch::new("replication");
    let mut proxy = peers::sipshard(&dir, free_port(), &["--shards", "2"]);
    let registrant = SipClient::new();
    let mut missed = Vec::new();
    for i in 0..1000 {
        let aor = format!("sip:user{i}@{}", proxy.addr);
        let contact = format!("sip:user{i}@127.0.0.1:9");
        let ok = registrant.register(proxy.addr, &aor, &[&contact], Some(3600));
        assert_eq!(ok.status, 200, "{}", ok.text);
        let q = SipClient::new().register(proxy.addr, &aor, &[], None);
        if q.contacts().is_empty() {
            missed.push(aor);
        }
    }
    proxy.stop();
    assert!(
        missed.is_empty(),
        "{} of 1000 queries sent right after the 200 did not find the binding, e.g. {:?}",
        missed.len(),
        &missed[..missed.len().min(5)]
    );
}

/// A missing peer program fails the test with the install hint; it never passes silently.
#[test]
#[should_panic(
    expected = "sipp-not-installed-here not found: run scripts/test.sh or apt-get install -y sip-tester kamailio kamailio-tls-modules sipsak baresip-core"
)]
fn missing_peer_program_fails_loudly() {
    require("sipp-not-installed-here");
}
