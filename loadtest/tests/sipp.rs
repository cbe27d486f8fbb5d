//! Interoperability with SIPp's built-in scenarios: `--uac-only` calling `sipp -sn uas`, and
//! `--uas-only` answering `sipp -sn uac`. These tests FAIL when sipp is missing.

mod common;

use std::time::Duration;

use common::*;

#[test]
fn uac_only_calls_sipp_uas() {
    let sipp = sipp();
    let port = free_ports(1).to_string();
    let uas_dir = temp_dir("sipp-uas");
    #[rustfmt::skip]
    let uas = spawn(&sipp, &[
        "-sn", "uas", "-i", "127.0.0.1", "-p", &port, "-m", "200", "-nostdin", "-timeout", "40s",
    ], &uas_dir);
    std::thread::sleep(Duration::from_millis(300));
    let target = format!("127.0.0.1:{port}");
    let to = format!("sip:service@{target}");
    #[rustfmt::skip]
    let (out, r) = run_json("uac-only", &[
        "call", "--uac-only", "--to", &to, "--target", &target,
        "--rate", "100", "--duration", "2", "--hold", "10",
    ], Duration::from_secs(60));
    let sipp_out = wait_with_deadline(uas, Duration::from_secs(45), "sipp -sn uas");
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(u(&r, "attempted"), 200, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 200, "{r:#}");
    assert_eq!(u(&r, "latency_ms.invite_to_180.count"), 200, "{r:#}");
    assert_eq!(u(&r, "latency_ms.bye_to_200.count"), 200, "{r:#}");
    // sipp exits 0 when all its calls succeeded.
    assert_eq!(sipp_out.status.code(), Some(0), "sipp: {}", show(&sipp_out));
}

#[test]
fn uas_only_answers_sipp_uac() {
    let sipp = sipp();
    let port = free_ports(1).to_string();
    let dir = temp_dir("sipp-uac");
    let json = dir.join("r.json");
    #[rustfmt::skip]
    let uas = spawn(BIN, &[
        "call", "--uas-only", "--local-port", &port, "--ports", "1", "--duration", "5", "-q",
        "--json", json.to_str().unwrap(),
    ], &dir);
    std::thread::sleep(Duration::from_millis(300));
    let dest = format!("127.0.0.1:{port}");
    let sipp_port = free_ports(1).to_string();
    #[rustfmt::skip]
    let uac = spawn(&sipp, &[
        "-sn", "uac", &dest, "-i", "127.0.0.1", "-p", &sipp_port, "-r", "100", "-m", "200",
        "-nostdin", "-timeout", "30s",
    ], &dir);
    let sipp_out = wait_with_deadline(uac, Duration::from_secs(40), "sipp -sn uac");
    let out = wait_with_deadline(uas, Duration::from_secs(60), "sipshard-load --uas-only");
    assert_eq!(sipp_out.status.code(), Some(0), "sipp: {}", show(&sipp_out));
    assert!(out.status.success(), "{}", show(&out));
    let r = read_json(&json);
    assert_eq!(r["role"], "uas");
    assert_eq!(u(&r, "attempted"), 200, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 200, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
}
