//! Digest authentication against real SIP peers that nobody here wrote: sipsak registering with
//! a password (`-a`), and SIPp's `[authentication]` registering and calling through sipshard.
//! A missing peer fails the test with the command that installs it.

#[path = "common/auth.rs"]
mod auth_util;
mod common;
#[path = "common/digest.rs"]
mod digest;

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use auth_util::*;
use common::*;

const BILOXI: &str = "biloxi.example.com";

/// The path of `tool`, or a failed test saying how to install it.
fn require(tool: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(tool))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!("{tool} is not installed; this test needs it: apt-get install -y {package}")
    })
}

fn scenario(name: &str) -> String {
    format!("{}/tests/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Wait for `child` at most `limit`, then kill it; returns its output.
fn wait_bounded(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("collect output");
            panic!(
                "{what} did not finish within {limit:?}\n{}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("collect output")
}

/// A free UDP port below 10000: sipsak 0.9.8 cuts the port of a `-s` URI to four digits.
fn free_short_port() -> u16 {
    let start = 2000 + (std::process::id() % 7000) as u16;
    (0..8000u16)
        .map(|i| 2000 + (start - 2000 + i) % 8000)
        .find(|&p| UdpSocket::bind(("127.0.0.1", p)).is_ok())
        .expect("a free UDP port below 10000")
}

fn sipsak_register(sipsak: &Path, proxy: u16, user: &str, password: &str) -> Output {
    let contact_port = free_short_port();
    let child = Command::new(sipsak)
        .args(["-U", "-i", "-x", "300"])
        .args(["-C", &format!("sip:{user}@127.0.0.1:{contact_port}")])
        .args(["-s", &format!("sip:{user}@127.0.0.1:{proxy}")])
        .args(["-u", user, "-a", password])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sipsak");
    wait_bounded(child, Duration::from_secs(20), "sipsak")
}

/// sipsak registers with a password: 401, then the answer, then 200. A wrong password fails.
#[test]
fn sipsak_registers_with_a_password() {
    let sipsak = require("sipsak", "sipsak");
    let dir = Dir::new("sipsak");
    let port = free_short_port();
    let users = dir.file(
        "users",
        &format!(
            "alice:s3cret\ncarol:{BILOXI}:{}\n",
            digest::ha1("carol", BILOXI, "chicago")
        ),
    );
    let p = Proxy::start_on(port, &["--domain", BILOXI, "--users", &users]);
    let out = sipsak_register(&sipsak, port, "alice", "s3cret");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "sipsak failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sipsak_register(&sipsak, port, "carol", "chicago");
    assert!(
        out.status.success(),
        "HA1 user: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = sipsak_register(&sipsak, port, "alice", "wrong");
    assert!(!out.status.success(), "a wrong password must not register");
    let log = p.stop();
    let ok = auth_totals(&log)[0];
    assert_eq!(ok, 2, "{log}");
}

/// The cumulative value of a counter from SIPp's final statistics screen.
fn sipp_counter(screen: &str, name: &str) -> Option<u64> {
    screen
        .lines()
        .rfind(|l| l.trim_start().starts_with(name))?
        .split('|')
        .nth(2)?
        .trim()
        .parse()
        .ok()
}

fn sipp(sipp: &Path, dir: &Dir, args: &[&str]) -> Child {
    Command::new(sipp)
        .current_dir(&dir.0)
        .args([
            "-nostdin",
            "-trace_err",
            "-timeout",
            "30s",
            "-i",
            "127.0.0.1",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sipp")
}

fn assert_all_calls_succeeded(out: &Output, calls: u64, what: &str, dir: &Dir) {
    let screen = String::from_utf8_lossy(&out.stdout);
    let errors: String = std::fs::read_dir(&dir.0)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        out.status.success(),
        "{what}: SIPp exited with {}\n{screen}\n{errors}",
        out.status
    );
    assert_eq!(
        sipp_counter(&screen, "Failed call"),
        Some(0),
        "{what}:\n{screen}\n{errors}"
    );
    assert_eq!(
        sipp_counter(&screen, "Successful call"),
        Some(calls),
        "{what}:\n{screen}\n{errors}"
    );
}

/// SIPp with `[authentication]`: bob registers (401 -> 200) from the port its UAS will answer
/// on, alice registers, then alice calls bob through sipshard five times, each INVITE
/// challenged with 407 and answered; ACK and BYE follow Record-Route unchallenged. 0 failed calls.
#[test]
fn sipp_registers_and_calls_with_authentication() {
    let sipp_bin = require("sipp", "sip-tester");
    let dir = Dir::new("sipp");
    let users = dir.file("users", "alice:s3cret\nbob:b0b-pass\n");
    let p = Proxy::start(&["--domain", BILOXI, "--record-route", "--users", &users]);
    let proxy = p.addr.to_string();
    let uas_port = free_port().to_string();
    let uac_port = free_port().to_string();
    const CALLS: u64 = 5;

    let register = |user: &str, password: &str, port: &str| {
        let child = sipp(
            &sipp_bin,
            &dir,
            &[
                "-sf",
                &scenario("register_auth.xml"),
                "-key",
                "user",
                user,
                "-key",
                "domain",
                BILOXI,
                "-au",
                user,
                "-ap",
                password,
                "-auth_uri",
                BILOXI,
                "-p",
                port,
                "-m",
                "1",
                &proxy,
            ],
        );
        let out = wait_bounded(child, Duration::from_secs(40), "sipp register");
        assert_all_calls_succeeded(&out, 1, &format!("REGISTER {user}"), &dir);
    };
    register("bob", "b0b-pass", &uas_port);
    register("alice", "s3cret", &uac_port);

    let uas = sipp(
        &sipp_bin,
        &dir,
        &[
            "-sf",
            &scenario("uas_rr.xml"),
            "-p",
            &uas_port,
            "-m",
            &CALLS.to_string(),
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    let uac = sipp(
        &sipp_bin,
        &dir,
        &[
            "-sf",
            &scenario("call_auth.xml"),
            "-key",
            "user",
            "alice",
            "-key",
            "domain",
            BILOXI,
            "-s",
            "bob",
            "-au",
            "alice",
            "-ap",
            "s3cret",
            "-auth_uri",
            &format!("bob@{BILOXI}"),
            "-p",
            &uac_port,
            "-m",
            &CALLS.to_string(),
            "-r",
            "10",
            &proxy,
        ],
    );
    let uac = wait_bounded(uac, Duration::from_secs(60), "sipp UAC");
    let uas = wait_bounded(uas, Duration::from_secs(20), "sipp UAS");
    assert_all_calls_succeeded(&uac, CALLS, "UAC", &dir);
    assert_all_calls_succeeded(&uas, CALLS, "UAS", &dir);
    let log = p.stop();
    let ok = auth_totals(&log)[0];
    assert_eq!(
        ok,
        2 + CALLS,
        "2 REGISTERs and {CALLS} INVITEs authenticated:\n{log}"
    );
}
