//! Digest authentication against real SIP peers that nobody here wrote: sipsak registering with
//! a password (`-a`), and SIPp's `[authentication]` registering and calling through sipshard.
//! A missing peer fails the test with the command that installs it.

use std::time::Duration;

use sipshard_testkit::digest;
use sipshard_testkit::exit_log::auth_totals;
use sipshard_testkit::peers::sipp::{screen_counter, Sipp};
use sipshard_testkit::peers::{require, sipsak};
use sipshard_testkit::{free_low_port, free_port, Proxy, Scratch};

const BILOXI: &str = "biloxi.example.com";

fn scenario(name: &str) -> String {
    format!("{}/tests/scenarios/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// sipsak registers `user` with `password` at the proxy on `proxy` (a port sipsak can name:
/// [`free_low_port`]); returns its exit code (None: it had to be killed) and its output.
fn sipsak_register(dir: &Scratch, proxy: u16, user: &str, password: &str) -> (Option<i32>, String) {
    let contact_port = free_low_port();
    let args = [
        "-U",
        "-i",
        "-x",
        "300",
        "-C",
        &format!("sip:{user}@127.0.0.1:{contact_port}"),
        "-s",
        &format!("sip:{user}@127.0.0.1:{proxy}"),
        "-u",
        user,
        "-a",
        password,
    ];
    sipsak::run(dir, &format!("register-{user}"), &args)
}

/// sipsak registers with a password: 401, then the answer, then 200. A wrong password fails.
#[test]
fn sipsak_registers_with_a_password() {
    require("sipsak");
    let dir = Scratch::new("sipsak");
    let port = free_low_port();
    let users = dir.file(
        "users",
        &format!(
            "alice:s3cret\ncarol:{BILOXI}:{}\n",
            digest::ha1("carol", BILOXI, "chicago")
        ),
    );
    let mut p = Proxy::start_on(port, &["--domain", BILOXI, "--users", &users]);
    let (code, text) = sipsak_register(&dir, port, "alice", "s3cret");
    assert!(code == Some(0), "sipsak failed ({code:?}):\n{text}");
    let (code, text) = sipsak_register(&dir, port, "carol", "chicago");
    assert!(code == Some(0), "HA1 user: {text}");
    let (code, _) = sipsak_register(&dir, port, "alice", "wrong");
    assert!(
        code.is_some() && code != Some(0),
        "a wrong password must not register"
    );
    let log = p.stop();
    let ok = auth_totals(&log)[0];
    assert_eq!(ok, 2, "{log}");
}

/// Start SIPp in `dir` with `args` (and the flags every run here shares).
fn sipp(dir: &Scratch, name: &str, args: &[&str]) -> Sipp {
    let common = ["-timeout", "30s", "-i", "127.0.0.1"];
    Sipp::spawn(dir, name, &[&common[..], args].concat(), false)
}

/// Wait up to `limit` for a SIPp run, then assert it exited 0 with `calls` successful calls and
/// none failed (the counters of its final screen).
fn assert_all_calls_succeeded(sipp: &mut Sipp, limit: Duration, calls: u64, what: &str) {
    let out = sipp.wait(limit);
    let screen = sipp.proc.stdout_text();
    let errors = sipp.diagnostics();
    assert!(
        out.exit_code() == Some(0),
        "{what}: SIPp exited with {:?}\n{screen}\n{errors}",
        out.status
    );
    assert_eq!(
        screen_counter(&screen, "Failed call"),
        Some(0),
        "{what}:\n{screen}\n{errors}"
    );
    assert_eq!(
        screen_counter(&screen, "Successful call"),
        Some(calls),
        "{what}:\n{screen}\n{errors}"
    );
}

/// SIPp with `[authentication]`: bob registers (401 -> 200) from the port its UAS will answer
/// on, alice registers, then alice calls bob through sipshard five times, each INVITE
/// challenged with 407 and answered; ACK and BYE follow Record-Route unchallenged. 0 failed calls.
#[test]
fn sipp_registers_and_calls_with_authentication() {
    require("sipp");
    let dir = Scratch::new("sipp");
    let users = dir.file("users", "alice:s3cret\nbob:b0b-pass\n");
    let mut p = Proxy::start(&["--domain", BILOXI, "--record-route", "--users", &users]);
    let proxy = p.addr.to_string();
    let uas_port = free_port().to_string();
    let uac_port = free_port().to_string();
    const CALLS: u64 = 5;

    let register = |user: &str, password: &str, port: &str| {
        let mut sipp = sipp(
            &dir,
            &format!("register-{user}"),
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
        let what = format!("REGISTER {user}");
        assert_all_calls_succeeded(&mut sipp, Duration::from_secs(40), 1, &what);
    };
    register("bob", "b0b-pass", &uas_port);
    register("alice", "s3cret", &uac_port);

    let mut uas = sipp(
        &dir,
        "uas",
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
    let mut uac = sipp(
        &dir,
        "uac",
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
    assert_all_calls_succeeded(&mut uac, Duration::from_secs(60), CALLS, "UAC");
    assert_all_calls_succeeded(&mut uas, Duration::from_secs(20), CALLS, "UAS");
    let log = p.stop();
    let ok = auth_totals(&log)[0];
    assert_eq!(
        ok,
        2 + CALLS,
        "2 REGISTERs and {CALLS} INVITEs authenticated:\n{log}"
    );
}
