//! `call` with the target pointing at the generator's own answering side: the degenerate,
//! proxy-less setup (UAC -> UAS in one process), plus `--expect`, `--answer`, OPTIONS against
//! `--uas-only`, and a tiny `find-max`.

use std::process::Command;
use std::time::Duration;

use sipshard_testkit::loadgen::{self, read_json, run_json, show, u};
use sipshard_testkit::{free_ports, Proc, Scratch};

#[test]
fn proxyless_call_completes_every_call_and_writes_all_reports() {
    let base = free_ports(4);
    let dir = Scratch::new("selfcall");
    let csv = dir.join("r.csv");
    let hgrm = dir.join("hgrm");
    let (target, port) = (format!("127.0.0.1:{base}"), base.to_string());
    #[rustfmt::skip]
    let (out, r) = run_json("selfcall-json", &[
        "call", "--target", &target, "--local-port", &port, "--ports", "2", "--threads", "2",
        "--rate", "200", "--duration", "2.5", "--hold", "20", "--users", "10",
        "--csv", csv.to_str().unwrap(), "--hgrm", hgrm.to_str().unwrap(),
    ], Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(r["scenario"], "call");
    assert_eq!(u(&r, "attempted"), 500, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 500, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
    assert_eq!(u(&r, "answering.succeeded"), 500, "{r:#}");
    assert_eq!(u(&r, "registered_users"), 10, "{r:#}");
    assert_eq!(u(&r, "generator_socket_drops"), 0, "{r:#}");
    assert_eq!(r["loss_beyond_generator"], false, "{r:#}");
    for k in [
        "target_rate",
        "achieved_rate",
        "retransmissions",
        "failures_by_cause",
    ] {
        assert!(!r[k].is_null(), "missing {k}");
    }
    for k in ["p50", "p99", "max"] {
        assert!(r["generator_lag_ms"][k].is_number(), "generator_lag_ms.{k}");
    }
    for h in [
        "invite_to_180",
        "invite_to_200",
        "bye_to_200",
        "register_to_200",
    ] {
        for k in ["p50", "p90", "p99", "p999", "max"] {
            assert!(r["latency_ms"][h][k].is_number(), "latency_ms.{h}.{k}");
        }
    }
    assert_eq!(u(&r, "latency_ms.invite_to_200.count"), 500);
    assert_eq!(u(&r, "latency_ms.bye_to_200.count"), 500);
    // BYE goes 20 ms after the 200: the hold is not part of any latency.
    assert!(r["latency_ms"]["bye_to_200"]["p50"].as_f64().unwrap() < 20.0);
    let rate = r["achieved_rate"].as_f64().unwrap();
    assert!((rate - 200.0).abs() < 40.0, "achieved {rate}");
    for name in [
        "invite_to_180",
        "invite_to_200",
        "bye_to_200",
        "register_to_200",
    ] {
        let text = std::fs::read_to_string(hgrm.join(format!("{name}.hgrm"))).unwrap();
        assert!(
            text.contains("Percentile") && text.contains("#[Max"),
            "{name}: {text}"
        );
    }
    assert!(hgrm.join("generator_lag.hgrm").is_file());
    let rows = std::fs::read_to_string(&csv).unwrap();
    let lines: Vec<&str> = rows.lines().collect();
    assert!(lines[0].starts_with("second,target_rate,achieved_rate"));
    assert!(lines.len() >= 3, "{rows}");
}

#[test]
fn a_rejection_fails_the_call_unless_expected() {
    let base = free_ports(1);
    let (target, port) = (format!("127.0.0.1:{base}"), base.to_string());
    #[rustfmt::skip]
    let args = [
        "call", "--target", &target, "--local-port", &port, "--ports", "1",
        "--rate", "100", "--duration", "1", "--users", "5", "--answer", "486",
    ];
    let (out, r) = run_json("reject", &args, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(u(&r, "attempted"), 100, "{r:#}");
    assert_eq!(u(&r, "failed"), 100, "{r:#}");
    assert_eq!(u(&r, "failures_by_cause.unexpected_status"), 100, "{r:#}");
    assert_eq!(u(&r, "unexpected_statuses.486"), 100, "{r:#}");
    // Every rejection was ACKed, so the answering side saw each call end.
    assert_eq!(u(&r, "answering.succeeded"), 100, "{r:#}");

    let expected = [&args[..], &["--expect", "486"]].concat();
    let (out, r) = run_json("expect", &expected, Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(u(&r, "succeeded"), 100, "{r:#}");
    assert_eq!(u(&r, "failed"), 0, "{r:#}");
}

#[test]
fn options_pings_against_an_answer_only_instance() {
    let base = free_ports(1);
    let port = base.to_string();
    let uas_dir = Scratch::new("options-uas");
    #[rustfmt::skip]
    let mut uas = Proc::spawn(&uas_dir, "uas", Command::new(loadgen::bin()).args([
        "call", "--uas-only", "--local-port", &port, "--ports", "1", "--duration", "3", "-q",
    ]));
    std::thread::sleep(Duration::from_millis(200));
    let target = format!("127.0.0.1:{base}");
    #[rustfmt::skip]
    let (out, r) = run_json("options", &[
        "options", "--target", &target, "--rate", "300", "--duration", "1",
    ], Duration::from_secs(30));
    let uas_out = uas.wait_output(Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
    assert!(uas_out.status.success(), "{}", show(&uas_out));
    assert_eq!(u(&r, "succeeded"), 300, "{r:#}");
    assert_eq!(u(&r, "latency_ms.options_to_200.count"), 300, "{r:#}");
}

/// A generator that cannot read fast enough loses datagrams in its own socket buffer; it must
/// count them (`SO_RXQ_OVFL`) rather than let the target be blamed for what follows.
#[test]
fn the_generator_counts_datagrams_its_own_sockets_dropped() {
    let base = free_ports(1);
    let port = base.to_string();
    let dir = Scratch::new("own-drops");
    let json = dir.join("uas.json");
    #[rustfmt::skip]
    let mut uas = Proc::spawn(&dir, "uas", Command::new(loadgen::bin()).args([
        "call", "--uas-only", "--local-port", &port, "--ports", "1", "--duration", "3", "-q",
        "--json", json.to_str().unwrap(),
    ]));
    std::thread::sleep(Duration::from_millis(300));
    let pid = uas.pid();
    // Stopped, it reads nothing: 20,000 datagrams of about 1 KB overflow its 8 MB buffer
    // (each takes about 2.3 KB of buffer on loopback).
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let flood = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let options = format!(
        "OPTIONS sip:uas@127.0.0.1:{base} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKflood\r\n\
         Max-Forwards: 70\r\nFrom: <sip:flood@127.0.0.1>;tag=1\r\nTo: <sip:uas@127.0.0.1>\r\n\
         Call-ID: flood\r\nCSeq: 1 OPTIONS\r\nX-Padding: {}\r\nContent-Length: 0\r\n\r\n",
        "x".repeat(700)
    );
    for _ in 0..20_000 {
        let _ = flood.send_to(options.as_bytes(), ("127.0.0.1", base));
    }
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let out = uas.wait_output(Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
    let r = read_json(&json);
    let drops = u(&r, "generator_socket_drops");
    assert!(drops >= 1_000, "only {drops} drops counted: {r:#}");
    assert!(drops < 20_000, "more drops than datagrams sent: {r:#}");
}

#[test]
fn find_max_steps_up_and_reports_trials() {
    let base = free_ports(1);
    let (target, port) = (format!("127.0.0.1:{base}"), base.to_string());
    // This test checks the search, not the machine: a loaded CI box may stall the generator,
    // hence the generous --max-lag-ms.
    #[rustfmt::skip]
    let (out, r) = run_json("findmax", &[
        "find-max", "call", "--target", &target, "--local-port", &port, "--ports", "1",
        "--users", "5", "--rate", "100", "--duration", "0.5", "--max-rate", "400",
        "--cooldown", "0.1", "--max-lag-ms", "2000",
    ], Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    let trials = r["trials"].as_array().unwrap();
    let rates: Vec<f64> = trials.iter().map(|t| t["rate"].as_f64().unwrap()).collect();
    assert_eq!(rates, vec![100.0, 200.0, 400.0], "{r:#}");
    assert_eq!(r["max_clean_rate"].as_f64(), Some(400.0), "{r:#}");
    assert!(trials.iter().all(|t| t["clean"] == true), "{r:#}");
}
