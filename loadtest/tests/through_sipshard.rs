//! `sipshard-load call` through the sipshard proxy (one shard): a modest rate for a few
//! seconds, zero failed calls, with and without `--record-route`. Uses the workspace's own
//! `target/<profile>/sipshard`, which `cargo test --workspace` builds.

use std::time::Duration;

use sipshard_testkit::loadgen::{run_json, show, u};
use sipshard_testkit::scrape::assert_shows;
use sipshard_testkit::{free_ports, Proxy, Scratch};

fn calls_through_sipshard(extra: &[&str]) {
    let proxy = Proxy::builder()
        .args(&["--shards", "1"])
        .args(extra)
        .start();
    let listen = proxy.addr.to_string();
    #[rustfmt::skip]
    let (out, r) = run_json("through-sipshard", &[
        "call", "--target", &listen, "--users", "50", "--rate", "300", "--duration", "3",
        "--hold", "50",
    ], Duration::from_secs(90));
    drop(proxy);
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(u(&r, "registered_users"), 50, "{r:#}");
    assert_eq!(u(&r, "attempted"), 900, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 900, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
    assert_eq!(u(&r, "answering.succeeded"), 900, "{r:#}");
}

#[test]
fn calls_through_one_sipshard_shard_all_succeed() {
    calls_through_sipshard(&[]);
}

#[test]
fn calls_through_one_record_routing_sipshard_shard_all_succeed() {
    calls_through_sipshard(&["--record-route"]);
}

/// `--transport tcp --connections 4`: every request and answer of both sides goes over four
/// persistent connections to sipshard (the UAS users are reached on the connections they
/// registered over), nothing is retransmitted, and sipshard accepted exactly four.
#[test]
fn calls_over_four_tcp_connections_all_succeed() {
    let proxy = Proxy::builder().metrics().args(&["--shards", "1"]).start();
    let listen = proxy.addr.to_string();
    #[rustfmt::skip]
    let (out, r) = run_json("tcp-through-sipshard", &[
        "call", "--target", &listen, "--users", "50", "--rate", "300", "--duration", "3",
        "--transport", "tcp", "--connections", "4",
    ], Duration::from_secs(90));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(r["transport"], "tcp", "{r:#}");
    assert_eq!(u(&r, "sockets"), 4, "{r:#}");
    assert_eq!(u(&r, "registered_users"), 50, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 900, "{r:#}");
    assert_eq!(u(&r, "answering.succeeded"), 900, "{r:#}");
    assert_eq!(u(&r, "retransmissions"), 0, "{r:#}");
    assert_eq!(u(&r, "connections_lost"), 0, "{r:#}");
    assert_shows(
        proxy.metrics.unwrap(),
        &["sipshard_tcp_connection_events_total{shard=\"0\",event=\"accepted\"} 4\n"],
    );
}

/// Against `--auth all`, calls answer the 407 to the INVITE (and to the BYE, which reaches
/// the proxy without a Route naming it over TCP) with `--password-file`, and UAS users the
/// 401 to their REGISTER: every call succeeds, and sipshard counts the challenges.
#[test]
fn calls_answer_digest_challenges_with_the_password_file() {
    let dir = Scratch::new("load-auth-calls");
    let mut users = String::from("uac:caller-secret\n");
    for i in 0..10 {
        users.push_str(&format!("uas{i}:callee-secret\n"));
    }
    let users = dir.file("users", &users);
    let passwords = dir.file("passwords", "uac:caller-secret\n*:callee-secret\n");
    // The generator's users are in the domain named by the proxy's own address.
    let port = free_ports(2);
    let domain = format!("127.0.0.1:{port}");
    #[rustfmt::skip]
    let proxy = Proxy::builder().port(port).metrics().args(&[
        "--shards", "1", "--domain", &domain, "--users", &users, "--auth", "all",
    ]).start();
    for transport in ["udp", "tcp"] {
        #[rustfmt::skip]
        let (out, r) = run_json(&format!("auth-calls-{transport}"), &[
            "call", "--target", &domain, "--users", "10", "--rate", "100", "--duration", "2",
            "--password-file", &passwords, "--transport", transport,
        ], Duration::from_secs(90));
        assert!(out.status.success(), "{transport}: {}", show(&out));
        assert_eq!(u(&r, "registered_users"), 10, "{transport}: {r:#}");
        assert_eq!(u(&r, "succeeded"), 200, "{transport}: {r:#}");
        assert_eq!(u(&r, "answering.succeeded"), 200, "{transport}: {r:#}");
    }
    // UDP: 10 REGISTERs and 200 INVITEs challenged (its BYEs go straight to the UAS);
    // TCP: 10 REGISTERs, 200 INVITEs and 200 BYEs. All answered well.
    assert_shows(
        proxy.metrics.unwrap(),
        &[
            "sipshard_auth_total{shard=\"total\",result=\"challenge\"} 620\n",
            "sipshard_auth_total{shard=\"total\",result=\"ok\"} 620\n",
        ],
    );
    drop(proxy);
}
