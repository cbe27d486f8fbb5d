//! `sipshard-load call` through a real proxy, Kamailio (registrar + record-routing proxy, the
//! config in `scripts/kamailio-loadgen.cfg`): every call completes, and the in-dialog ACK and
//! BYE follow the Record-Route back through the proxy instead of going straight to the UAS.
//! FAILS when kamailio is missing.

use std::path::PathBuf;
use std::time::Duration;

use sipshard_testkit::loadgen::{run_json, show, u};
use sipshard_testkit::peers::kamailio::Kamailio;
use sipshard_testkit::peers::require;
use sipshard_testkit::{free_ports, Scratch};

#[test]
fn calls_through_kamailio_follow_record_route() {
    require("kamailio");
    let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kamailio-loadgen.cfg");
    let port = free_ports(1);
    let dir = Scratch::new("kamailio");
    let listen = format!("LISTEN=udp:127.0.0.1:{port}");
    #[rustfmt::skip]
    let mut proxy = Kamailio::start(&dir, &cfg, port, &[
        "-A", &listen, "-A", "CHILDREN=2", "-A", "LOG_ROUTED",
    ]);
    let target = format!("127.0.0.1:{port}");
    #[rustfmt::skip]
    let (out, r) = run_json("kamailio-json", &[
        "call", "--target", &target, "--users", "20", "--rate", "100", "--duration", "2",
        "--hold", "20",
    ], Duration::from_secs(90));
    let text = proxy.stop();
    assert!(out.status.success(), "{}\nkamailio:\n{text}", show(&out));
    assert_eq!(u(&r, "registered_users"), 20, "{r:#}");
    assert_eq!(u(&r, "attempted"), 200, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 200, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
    assert_eq!(u(&r, "answering.succeeded"), 200, "{r:#}");
    // Each call's ACK and BYE went through the proxy (retransmissions may add a few).
    let byes = text.lines().filter(|l| l.contains("routed BYE")).count();
    let acks = text.lines().filter(|l| l.contains("routed ACK")).count();
    assert!(byes >= 200, "{byes} BYEs routed through kamailio\n{text}");
    assert!(acks >= 200, "{acks} ACKs routed through kamailio");
}
