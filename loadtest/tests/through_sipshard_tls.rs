//! `sipshard-load --transport tls` against a real sipshard with a TLS listener and certificates
//! made for each test (`testkit::pki`): calls over TLS connections, the handshake mode with and
//! without resumption, client certificates, and certificates that must be refused. Uses the
//! workspace's own `target/<profile>/sipshard`.

use std::process::{Command, Output};
use std::time::Duration;

use sipshard_testkit::loadgen::{self, run_json, show, u};
use sipshard_testkit::pki::{Issued, Pki};
use sipshard_testkit::scrape::assert_shows;
use sipshard_testkit::{free_port, Proc, Proxy, Scratch};

/// A one-shard sipshard with metrics and a TLS listener showing `server`; returns it and the
/// TLS listener's `IP:PORT`.
fn tls_proxy(scratch: &Scratch, server: &Issued, extra: &[&str]) -> (Proxy, String) {
    let tls = format!("127.0.0.1:{}", free_port());
    let listen = format!("tls:{tls}");
    let mut args: Vec<String> = vec!["--shards".into(), "1".into(), "--listen".into(), listen];
    args.extend(server.flags());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let proxy = Proxy::builder()
        .dir(scratch.path())
        .metrics()
        .args(&args)
        .start();
    (proxy, tls)
}

/// A CA and a server certificate for 127.0.0.1 (and localhost) under it.
fn pki(scratch: &Scratch, name: &str) -> (Pki, Issued) {
    let pki = Pki::new(scratch.path(), name);
    let server = pki.issue(&format!("{name}-server"), &["localhost", "127.0.0.1"]);
    (pki, server)
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

/// Run `sipshard-load ARGS -q` without a report (a run that stops at an error writes none).
fn run_plain(scratch: &Scratch, args: &[&str]) -> Output {
    let mut cmd = Command::new(loadgen::bin());
    cmd.args(args).arg("-q");
    Proc::spawn(scratch.path(), "sipshard-load", &mut cmd).wait_output(Duration::from_secs(60))
}

/// Calls over four TLS connections verified with `--tls-ca`: every call succeeds with nothing
/// retransmitted, and the report counts the four handshakes that opened the connections, one
/// after the other: the first full, the three others resumed with its tickets (exactly what
/// sipshard counted on its side).
#[test]
fn calls_over_four_tls_connections_all_succeed_and_resume_sessions() {
    let scratch = Scratch::new("load-tls-calls");
    let (pki, server) = pki(&scratch, "calls");
    let (proxy, tls) = tls_proxy(&scratch, &server, &[]);
    let ca = path(&pki.ca_file);
    #[rustfmt::skip]
    let (out, r) = run_json("tls-calls", &[
        "call", "--target", &tls, "--users", "50", "--rate", "300", "--duration", "3",
        "--transport", "tls", "--connections", "4", "--tls-ca", &ca,
    ], Duration::from_secs(90));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(r["transport"], "tls", "{r:#}");
    assert_eq!(u(&r, "sockets"), 4, "{r:#}");
    assert_eq!(u(&r, "registered_users"), 50, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 900, "{r:#}");
    assert_eq!(u(&r, "answering.succeeded"), 900, "{r:#}");
    assert_eq!(u(&r, "retransmissions"), 0, "{r:#}");
    assert_eq!(u(&r, "connections_lost"), 0, "{r:#}");
    assert_eq!(r["tls"]["mode"], "connections", "{r:#}");
    assert_eq!(r["tls"]["verify"], "ca", "{r:#}");
    assert_eq!(u(&r, "tls.handshakes"), 4, "{r:#}");
    assert_eq!(u(&r, "tls.full"), 1, "{r:#}");
    assert_eq!(u(&r, "tls.resumed"), 3, "{r:#}");
    assert_eq!(r["tls"]["resumption_rate"], 0.75, "{r:#}");
    assert!(
        r["tls"]["handshakes_per_s"].as_f64().unwrap() > 0.0,
        "{r:#}"
    );
    assert_eq!(u(&r, "tls.handshake_ms.count"), 4, "{r:#}");
    let summary = String::from_utf8_lossy(&out.stdout);
    assert!(
        summary.contains("tls         4 handshakes opening the connections"),
        "{summary}"
    );
    assert_shows(
        proxy.metrics.unwrap(),
        &[
            "sipshard_tls_handshakes_total{shard=\"total\",result=\"full\"} 1\n",
            "sipshard_tls_handshakes_total{shard=\"total\",result=\"resumed\"} 3\n",
        ],
    );
}

/// `--tls-handshakes-only` for 2 s over 4 connections at a time: hundreds of handshakes, none
/// failed, most of them resumed; with `--tls-no-resume` every one is full.
#[test]
fn handshakes_only_resumes_sessions_unless_told_not_to() {
    let scratch = Scratch::new("load-tls-handshakes");
    let (_pki, server) = pki(&scratch, "handshakes");
    let (_proxy, tls) = tls_proxy(&scratch, &server, &[]);
    for resume in [true, false] {
        #[rustfmt::skip]
        let mut args = vec![
            "options", "--target", &tls, "--duration", "2", "--transport", "tls",
            "--connections", "4", "--tls-insecure", "--tls-handshakes-only",
        ];
        if !resume {
            args.push("--tls-no-resume");
        }
        let (out, r) = run_json("tls-handshakes", &args, Duration::from_secs(60));
        assert!(out.status.success(), "resume {resume}: {}", show(&out));
        assert_eq!(r["scenario"], "tls-handshakes", "{r:#}");
        assert_eq!(r["tls"]["mode"], "handshakes-only", "{r:#}");
        assert_eq!(r["tls"]["verify"], "insecure", "{r:#}");
        assert_eq!(r["tls"]["resume"], resume, "{r:#}");
        assert_eq!(u(&r, "tls.failed"), 0, "resume {resume}: {r:#}");
        assert_eq!(u(&r, "failed"), 0, "resume {resume}: {r:#}");
        let (done, full, resumed) = (
            u(&r, "tls.handshakes"),
            u(&r, "tls.full"),
            u(&r, "tls.resumed"),
        );
        assert!(
            done >= 100,
            "resume {resume}: only {done} handshakes: {r:#}"
        );
        assert_eq!(full + resumed, done, "{r:#}");
        assert_eq!(u(&r, "succeeded"), done, "{r:#}");
        let per_s = r["tls"]["handshakes_per_s"].as_f64().unwrap();
        assert!(
            (per_s - done as f64 / 2.0).abs() < done as f64 * 0.05,
            "{per_s}/s for {done} in 2 s: {r:#}"
        );
        if resume {
            // Only the first handshake of each slot can find no ticket yet.
            assert!(full <= 4, "{full} full handshakes with resumption: {r:#}");
            assert!(resumed > 0, "{r:#}");
        } else {
            assert_eq!(resumed, 0, "{r:#}");
        }
        let summary = String::from_utf8_lossy(&out.stdout);
        assert!(summary.contains("handshakes  "), "{summary}");
    }
}

/// A target sipshard that requires client certificates: `--tls-cert/--tls-key` get the calls
/// through; without them the connection is refused at opening, with the reason.
#[test]
fn a_client_certificate_is_shown_when_the_target_requires_one() {
    let scratch = Scratch::new("load-tls-client-cert");
    let (pki, server) = pki(&scratch, "mutual");
    let client = pki.issue("client", &["load.example"]);
    let ca = path(&pki.ca_file);
    let (_proxy, tls) = tls_proxy(
        &scratch,
        &server,
        &["--tls-ca", &ca, "--tls-verify-client", "required"],
    );
    let (cert, key) = (path(&client.cert), path(&client.key));
    #[rustfmt::skip]
    let (out, r) = run_json("tls-client-cert", &[
        "options", "--target", &tls, "--rate", "100", "--duration", "1", "--transport", "tls",
        "--connections", "2", "--tls-ca", &ca, "--tls-cert", &cert, "--tls-key", &key,
    ], Duration::from_secs(60));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(u(&r, "succeeded"), 100, "{r:#}");
    assert_eq!(u(&r, "tls.handshakes"), 2, "{r:#}");
    #[rustfmt::skip]
    let out = run_plain(&scratch, &[
        "options", "--target", &tls, "--rate", "100", "--duration", "1", "--transport", "tls",
        "--connections", "2", "--tls-ca", &ca,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    assert!(stderr.contains("the TLS handshake"), "{}", show(&out));
    assert!(stderr.contains("CertificateRequired"), "{}", show(&out));
    assert!(!stderr.contains("panicked"), "{}", show(&out));
}

/// A target whose certificate another CA issued, or that names someone else, is refused: the
/// run stops at once with exit status 2 and says why, in both modes (no panic, no attempts
/// counted as the target's failures).
#[test]
fn a_certificate_the_ca_did_not_issue_or_for_another_name_stops_the_run_with_the_reason() {
    let scratch = Scratch::new("load-tls-wrong-ca");
    let (pki, server) = pki(&scratch, "right");
    let other = Pki::new(scratch.path(), "other");
    let (_proxy, tls) = tls_proxy(&scratch, &server, &[]);
    let (right_ca, wrong_ca) = (path(&pki.ca_file), path(&other.ca_file));
    let cases: [(&[&str], &str); 2] = [
        (&["--tls-ca", &wrong_ca], "UnknownIssuer"),
        (
            &[
                "--tls-ca",
                &right_ca,
                "--tls-server-name",
                "sip.example.org",
            ],
            "not valid for name \"sip.example.org\"",
        ),
    ];
    for (flags, why) in cases {
        #[rustfmt::skip]
        let mut args = vec![
            "call", "--target", &tls, "--users", "5", "--rate", "10", "--duration", "1",
            "--transport", "tls", "--connections", "2",
        ];
        args.extend_from_slice(flags);
        let out = run_plain(&scratch, &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{why}: {}", show(&out));
        assert!(stderr.contains("the TLS handshake"), "{}", show(&out));
        assert!(stderr.contains(why), "{}", show(&out));
        assert!(!stderr.contains("panicked"), "{}", show(&out));

        #[rustfmt::skip]
        let mut args = vec![
            "options", "--target", &tls, "--duration", "5", "--transport", "tls",
            "--tls-handshakes-only",
        ];
        args.extend_from_slice(flags);
        let (out, r) = run_json("tls-wrong-ca-handshakes", &args, Duration::from_secs(30));
        assert_eq!(out.status.code(), Some(2), "{why}: {}", show(&out));
        let error = r["error"].as_str().unwrap_or_default();
        assert!(error.contains(why), "{why}: {r:#}");
        assert_eq!(u(&r, "tls.handshakes"), 0, "{r:#}");
        // Stopped at the first refusal, not after --duration.
        assert!(r["wall_s"].as_f64().unwrap() < 1.0, "{r:#}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}
