//! baresip, a softphone nobody here wrote, over TLS through sipshard: two phones register
//! over TLS (sipshard's certificate from a CA made for the test), alice calls bob, bob answers
//! by himself, alice hangs up. With Record-Route every request of the dialog passes through
//! sipshard, and everything sipshard sends a phone goes down the TLS connection that phone
//! registered on: neither phone has a certificate to accept a connection with.
//!
//! baresip is the Debian package baresip-core; a machine without it fails this test with the
//! install hint (`scripts/test.sh` installs it).

use std::net::SocketAddr;
use std::time::Duration;

use sipshard_testkit::peers::baresip::{Event, Phone};
use sipshard_testkit::peers::{self, require};
use sipshard_testkit::pki::{Issued, Pki};
use sipshard_testkit::scrape::{scrape, value};
use sipshard_testkit::{eventually, free_port, Proxy, Scratch};

/// How long a phone may take to see a call set up or torn down (each step is a few messages
/// over loopback; the margin is for a busy machine).
const CALL_STEP: Duration = Duration::from_secs(10);

/// sipshard with a TLS listener of its own; `--record-route` keeps it in the dialog. Two
/// shards: when the kernel puts the phones' connections on different shards (about half the
/// runs), what one phone sends the other is handed from shard to shard, including the ACK
/// and BYE whose Request-URI is only the address bob connects from (his Contact in the
/// dialog). `proxy_tls.rs` tests that hand-over on every run.
fn start_proxy(scratch: &Scratch, server: &Issued) -> (Proxy, SocketAddr) {
    let tls: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut args = vec![
        "--listen".to_string(),
        format!("tls:{tls}"),
        "--shards".into(),
        "2".into(),
        "--record-route".into(),
    ];
    args.extend(server.flags());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::builder()
        .dir(scratch.path())
        .metrics()
        .args(&args)
        .start();
    (proxy, tls)
}

/// A phone whose address of record is at sipshard's TLS listener, so it registers there over
/// TLS, and whose calls go there too.
fn phone(scratch: &Scratch, pki: &Pki, user: &str, tls: SocketAddr, params: &str) -> Phone {
    let account = format!("<sip:{user}@{tls};transport=tls>{params}");
    Phone::start(scratch.path(), user, &pki.ca_file, &account)
}

fn metric(proxy: &Proxy, series: &str) -> u64 {
    value(&scrape(proxy.metrics.expect("metrics")), series)
}

/// Wait (shards publish their counters every 200 ms) until `series` satisfies `want`; fails
/// the test with the value last read.
fn assert_metric(proxy: &Proxy, series: &str, want: impl Fn(u64) -> bool) {
    let mut last = 0;
    let ok = eventually(Duration::from_secs(5), || {
        last = metric(proxy, series);
        want(last)
    });
    assert!(ok, "{series} = {last}");
}

fn total(name: &str, label: &str) -> String {
    format!("{name}{{shard=\"total\",{label}}}")
}

/// `phone` reports an event of type `kind` within [`CALL_STEP`].
fn expect_event(phone: &mut Phone, kind: &str) -> Event {
    phone.wait_event(kind, CALL_STEP).unwrap_or_else(|| {
        panic!(
            "{}: no {kind} within {CALL_STEP:?}; events: {:?}\n{}",
            phone.name,
            phone.event_types(),
            phone.proc.output_tail(6000)
        )
    })
}

/// Both phones registered over TLS: two bindings added, on both shards, and two TLS
/// connections, one full handshake each.
fn assert_registered(proxy: &Proxy) {
    assert_metric(
        proxy,
        &total("sipshard_registrations_total", "event=\"added\""),
        |v| v == 2,
    );
    // Each shard holds every binding: wait until both have bob, wherever the call lands.
    for shard in ["0", "1"] {
        assert_metric(
            proxy,
            &format!("sipshard_bindings{{shard=\"{shard}\"}}"),
            |v| v == 2,
        );
    }
    assert_tls_connections_unchanged(proxy);
}

/// The phones' own two TLS connections, each one full handshake, are all there is: sipshard
/// opened none (a phone has no certificate to accept one with) and none failed.
fn assert_tls_connections_unchanged(proxy: &Proxy) {
    assert_metric(proxy, "sipshard_tls_connections{shard=\"total\"}", |v| {
        v == 2
    });
    let handshakes = total("sipshard_tls_handshakes_total", "result=\"full\"");
    assert_metric(proxy, &handshakes, |v| v == 2);
    let events = [
        ("accepted", 2),
        ("connected", 0),
        ("connect_failed", 0),
        ("closed", 0),
    ];
    for (event, want) in events {
        let label = format!("event=\"{event}\"");
        let series = total("sipshard_tls_connection_events_total", &label);
        assert_metric(proxy, &series, |v| v == want);
    }
}

/// The dialog's requests all went through sipshard: one INVITE and one BYE (no retransmission
/// over TLS), at least one ACK (bob resends his 200 until an ACK arrives, and alice acknowledges
/// each), and 2xx responses for the INVITE and the BYE.
fn assert_dialog_forwarded(proxy: &Proxy) {
    let method = |m: &str| {
        total(
            "sipshard_requests_forwarded_total",
            &format!("method=\"{m}\""),
        )
    };
    assert_metric(proxy, &method("INVITE"), |v| v == 1);
    assert_metric(proxy, &method("ACK"), |v| v >= 1);
    assert_metric(proxy, &method("BYE"), |v| v == 1);
    assert_metric(
        proxy,
        &total("sipshard_responses_forwarded_total", "class=\"2xx\""),
        |v| v >= 2,
    );
}

/// The requests `phone` received from sipshard's TLS listener, by method, in order.
fn methods_received(phone: &Phone, tls: SocketAddr) -> Vec<String> {
    phone
        .received_over_tls(tls)
        .iter()
        .filter(|l| !l.starts_with("SIP/2.0"))
        .map(|l| l.split(' ').next().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn baresip_phones_register_and_call_each_other_over_tls() {
    require("baresip");
    let _serial = peers::serial();
    let scratch = Scratch::new("baresip-tls");
    let pki = Pki::new(scratch.path(), "baresip");
    let server = pki.issue("server", &["localhost", "127.0.0.1"]);
    let (mut proxy, tls) = start_proxy(&scratch, &server);
    let mut alice = phone(&scratch, &pki, "alice", tls, "");
    let mut bob = phone(&scratch, &pki, "bob", tls, ";answermode=auto");
    assert_registered(&proxy);

    // Dialled without a transport, the URI gets the account's: TLS, to sipshard.
    alice.command("dial", &format!("sip:bob@{tls}"));
    // bob's call is established by alice's ACK, alice's by bob's 200.
    expect_event(&mut bob, "CALL_ESTABLISHED");
    expect_event(&mut alice, "CALL_ESTABLISHED");
    alice.command("hangup", "");
    expect_event(&mut alice, "CALL_CLOSED");
    let closed = expect_event(&mut bob, "CALL_CLOSED");
    // bob's call ended by alice's BYE, not by a timeout of his own.
    assert_eq!(closed["param"], "Connection reset by peer", "{closed}");

    assert_dialog_forwarded(&proxy);
    assert_tls_connections_unchanged(&proxy);
    // What bob saw: the whole dialog from sipshard's TLS listener, on his connection.
    // (An ACK twice if his 200 was resent before the first ACK arrived.)
    let mut got = methods_received(&bob, tls);
    got.dedup();
    assert_eq!(got, ["INVITE", "ACK", "BYE"], "{}", bob.log());

    // SIGTERM makes baresip unregister: both bindings removed over TLS.
    alice.stop(Duration::from_secs(5));
    bob.stop(Duration::from_secs(5));
    assert_metric(
        &proxy,
        &total("sipshard_registrations_total", "event=\"removed\""),
        |v| v == 2,
    );
    proxy.stop();
}
