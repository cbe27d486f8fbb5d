//! Interoperability with SIPp's built-in scenarios: `--uac-only` calling `sipp -sn uas`, and
//! `--uas-only` answering `sipp -sn uac`. These tests FAIL when sipp is missing.

use std::process::Command;
use std::time::Duration;

use sipshard_testkit::loadgen::{self, read_json, run_json, show, u};
use sipshard_testkit::peers::require;
use sipshard_testkit::peers::sipp::Sipp;
use sipshard_testkit::{free_ports, Proc, Scratch};

#[test]
fn uac_only_calls_sipp_uas() {
    require("sipp");
    let port = free_ports(1).to_string();
    let uas_dir = Scratch::new("sipp-uas");
    #[rustfmt::skip]
    let mut uas = Sipp::spawn(&uas_dir, "uas", &[
        "-sn", "uas", "-i", "127.0.0.1", "-p", &port, "-m", "200", "-timeout", "40s",
    ], false);
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("127.0.0.1:{port}");
    let to = format!("sip:service@{target}");
    #[rustfmt::skip]
    let (out, r) = run_json("uac-only", &[
        "call", "--uac-only", "--to", &to, "--target", &target,
        "--rate", "100", "--duration", "2", "--hold", "10",
    ], Duration::from_secs(60));
    let sipp_out = uas.wait(Duration::from_secs(45));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(u(&r, "attempted"), 200, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 200, "{r:#}");
    assert_eq!(u(&r, "latency_ms.invite_to_180.count"), 200, "{r:#}");
    assert_eq!(u(&r, "latency_ms.bye_to_200.count"), 200, "{r:#}");
    // sipp exits 0 when all its calls succeeded.
    assert_eq!(sipp_out.exit_code(), Some(0), "sipp: {}", uas.diagnostics());
}

#[test]
fn uas_only_answers_sipp_uac() {
    require("sipp");
    let port = free_ports(1).to_string();
    let dir = Scratch::new("sipp-uac");
    let json = dir.join("r.json");
    #[rustfmt::skip]
    let mut uas = Proc::spawn(&dir, "uas", Command::new(loadgen::bin()).args([
        "call", "--uas-only", "--local-port", &port, "--ports", "1", "--duration", "5", "-q",
        "--json", json.to_str().unwrap(),
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let dest = format!("127.0.0.1:{port}");
    let sipp_port = free_ports(1).to_string();
    #[rustfmt::skip]
    let mut uac = Sipp::spawn(&dir, "uac", &[
        "-sn", "uac", &dest, "-i", "127.0.0.1", "-p", &sipp_port, "-r", "100", "-m", "200",
        "-timeout", "30s",
    ], false);
    let sipp_out = uac.wait(Duration::from_secs(40));
    let out = uas.wait_output(Duration::from_secs(60));
    assert_eq!(sipp_out.exit_code(), Some(0), "sipp: {}", uac.diagnostics());
    assert!(out.status.success(), "{}", show(&out));
    let r = read_json(&json);
    assert_eq!(r["role"], "uas");
    assert_eq!(u(&r, "attempted"), 200, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 200, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
}
