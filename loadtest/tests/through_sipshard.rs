//! `sipshard-load call` through the sipshard proxy (one shard): a modest rate for a few
//! seconds, zero failed calls, with and without `--record-route`. Uses the workspace's own
//! `target/<profile>/sipshard`, which `cargo test --workspace` builds.

use std::time::Duration;

use sipshard_testkit::loadgen::{run_json, show, u};
use sipshard_testkit::Proxy;

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
