//! `sipshard-load call` through a real proxy, Kamailio (registrar + record-routing proxy, the
//! config in `scripts/kamailio-loadgen.cfg`): every call completes, and the in-dialog ACK and
//! BYE follow the Record-Route back through the proxy instead of going straight to the UAS.
//! FAILS when kamailio is missing.

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn kamailio() -> PathBuf {
    [
        "/usr/sbin/kamailio",
        "/usr/bin/kamailio",
        "/usr/local/sbin/kamailio",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
    .unwrap_or_else(|| {
        panic!(
            "kamailio is not installed: this test drives calls through it and must not pass \
                 without it. Install it with `apt-get install -y kamailio`."
        )
    })
}

#[test]
fn calls_through_kamailio_follow_record_route() {
    let kam = kamailio();
    let cfg = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/kamailio-loadgen.cfg");
    let port = free_ports(1);
    let dir = temp_dir("kamailio");
    let log = dir.join("kamailio.log");
    let mut cmd = Command::new(kam);
    cmd.arg("-f")
        .arg(&cfg)
        .args(["-DD", "-E", "-w"])
        .arg(&*dir)
        .args(["-P", dir.join("kamailio.pid").to_str().unwrap()])
        .args([
            "-A",
            &format!("LISTEN=udp:127.0.0.1:{port}"),
            "-A",
            "CHILDREN=2",
        ])
        .args(["-A", "LOG_ROUTED"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let mut proxy = Group::spawn(cmd);
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        proxy.0.try_wait().unwrap().is_none(),
        "kamailio exited at start:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let target = format!("127.0.0.1:{port}");
    #[rustfmt::skip]
    let (out, r) = run_json("kamailio-json", &[
        "call", "--target", &target, "--users", "20", "--rate", "100", "--duration", "2",
        "--hold", "20",
    ], Duration::from_secs(90));
    drop(proxy);
    let text = std::fs::read_to_string(&log).unwrap_or_default();
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
