//! What sipshard writes to its log: one line per message at debug level and none below it,
//! and authentication failures at warn with source, user and reason, rate-limited, in the
//! form the fail2ban filter of scripts/fail2ban matches (checked with fail2ban's own
//! `fail2ban-regex`).

use std::process::Command;

use sipshard_testkit::digest::{Answer, Challenge};
use sipshard_testkit::sip::*;
use sipshard_testkit::ua::register;
use sipshard_testkit::{Proxy, Scratch, Ua};

const DOMAIN: &str = "example.com";

fn message_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("target=sipshard::message"))
        .collect()
}

#[test]
fn one_line_per_message_at_debug_and_none_below() {
    // --log-level info (the test kit's) raised one step by -v: debug.
    let mut p = Proxy::start(&["--domain", DOMAIN, "-v", "--shards", "1"]);
    let bob = Ua::new();
    let contact = format!("<sip:bob@{}>", bob.addr);
    let r = register(&bob, p.addr, "bob", DOMAIN, &contact, 1, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let alice = Ua::new();
    alice.send(
        p.addr,
        &format!(
            "INVITE sip:bob@{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlog1\nMax-Forwards: 70\nTo: <sip:bob@{DOMAIN}>\nFrom: <sip:alice@{DOMAIN}>;tag=1\nCall-ID: log-call-1\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\n\n",
            me = alice.addr
        ),
    );
    assert!(bob.recv().starts_with("INVITE "));
    let log = p.stop();
    let lines = message_lines(&log);
    let register_line = format!(
        "REGISTER sip:{DOMAIN} call-id=reg-bob-843817637684230@998sdasdh09 from udp:{}: answered 200 OK to udp:{}",
        bob.addr, bob.addr
    );
    assert!(lines.iter().any(|l| l.contains(&register_line)), "{log}");
    let invite_line = format!(
        "INVITE sip:bob@{DOMAIN} call-id=log-call-1 from udp:{}: forwarded to udp:{}",
        alice.addr, bob.addr
    );
    assert!(lines.iter().any(|l| l.contains(&invite_line)), "{log}");

    // At info, the same traffic writes no line per message.
    let mut p = Proxy::start(&["--domain", DOMAIN, "--shards", "1"]);
    let r = register(&bob, p.addr, "bob", DOMAIN, &contact, 2, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    let log = p.stop();
    assert!(message_lines(&log).is_empty(), "{log}");
}

fn register_with(ua: &Ua, p: &Proxy, user: &str, cseq: u32, auth: &str) -> String {
    ua.send(
        p.addr,
        &format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKlg{cseq}\nMax-Forwards: 70\nTo: <sip:{user}@{DOMAIN}>\nFrom: <sip:{user}@{DOMAIN}>;tag=9\nCall-ID: log-auth-{user}\nCSeq: {cseq} REGISTER\nContact: <sip:{user}@{me}>\n{auth}\n",
            me = ua.addr
        ),
    );
    ua.recv_final()
}

/// A REGISTER for `user` answered as `username` with `password`: the final answer to the
/// second try.
fn try_password(
    ua: &Ua,
    p: &Proxy,
    user: &str,
    username: &str,
    password: &str,
    cseq: u32,
) -> String {
    let r = register_with(ua, p, user, cseq, "");
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let ch = Challenge::parse(header(&r, "WWW-Authenticate"));
    let answer = Answer::new(username, password, "REGISTER", &format!("sip:{DOMAIN}"));
    let line = format!("Authorization: {}\n", answer.credentials(&ch));
    register_with(ua, p, user, cseq + 1, &line)
}

fn failure_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains("authentication failed: "))
        .collect()
}

#[test]
fn authentication_failures_are_warned_rate_limited_and_match_the_fail2ban_filter() {
    let dir = Scratch::new("authlog");
    let users = dir.file("users", "alice:wonderland\n");
    let args = ["--domain", DOMAIN, "--users", &users, "--shards", "1"];
    let mut p = Proxy::builder().dir(&dir).args(&args).start();
    let ua = Ua::new();
    let r = try_password(&ua, &p, "alice", "alice", "guess", 1);
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let r = try_password(&ua, &p, "mallory", "mallory", "x", 3);
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    // A user name that tries to write its own fields.
    let r = try_password(&ua, &p, "eve", "x ip=10.9.9.9", "x", 5);
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    // The right password is no failure; a first REGISTER without credentials neither.
    let r = try_password(&ua, &p, "alice", "alice", "wonderland", 7);
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    // A flood: far more failures in a second than lines allowed.
    let flood = Ua::new();
    let r = register_with(&flood, &p, "alice", 100, "");
    let ch = Challenge::parse(header(&r, "WWW-Authenticate"));
    let bad = Answer::new("alice", "nope", "REGISTER", &format!("sip:{DOMAIN}"));
    for i in 0..60 {
        let line = format!(
            "Authorization: {}\n",
            bad.clone().cnonce(&format!("c{i}")).credentials(&ch)
        );
        let r = register_with(&flood, &p, "alice", 101 + i, &line);
        assert!(r.starts_with("SIP/2.0 401"), "{r}");
    }
    // What the budget held back is said once its second is over (on a tick, about 1 s).
    std::thread::sleep(std::time::Duration::from_millis(2200));
    let log = p.stop();
    let lines = failure_lines(&log);
    let ip = "ip=127.0.0.1";
    let port = format!("port={}", ua.addr.port());
    let expect = [
        format!("{ip} {port} transport=udp method=REGISTER user=alice reason=wrong password"),
        format!("{ip} {port} transport=udp method=REGISTER user=mallory reason=unknown user"),
        format!(
            "{ip} {port} transport=udp method=REGISTER user=x%20ip%3D10.9.9.9 reason=unknown user"
        ),
    ];
    for e in &expect {
        assert!(
            lines.iter().any(|l| l.contains(e.as_str())),
            "{e} in:\n{log}"
        );
    }
    assert!(lines
        .iter()
        .all(|l| l.contains("level=warn target=sipshard::auth")));
    // 3 + 60 failures; at most 20 lines a second (the flood may straddle two seconds).
    assert!(
        lines.len() < 3 + 60 && lines.len() >= 20,
        "{} lines:\n{log}",
        lines.len()
    );
    assert!(log.contains("more not logged (over 20/s)"), "{log}");

    // fail2ban's own reader finds every failure line written, and in each the sender's
    // address, never one a user name wrote.
    let log_file = dir.join("sipshard.log");
    std::fs::write(&log_file, &log).unwrap();
    let filter = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/scripts/fail2ban/sipshard.conf"
    );
    let fail2ban = |extra: &[&str]| {
        let out = Command::new("fail2ban-regex")
            .args(extra)
            .args([log_file.to_str().unwrap(), filter])
            .output()
            .expect("fail2ban-regex (Debian package fail2ban; scripts/test.sh installs it)");
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let report = fail2ban(&[]);
    let matched = format!(
        "Lines: {} lines, 0 ignored, {} matched",
        log.lines().count(),
        lines.len()
    );
    assert!(report.contains(&matched), "{matched} in:\n{report}");
    let ips = fail2ban(&["--out", "ip"]);
    assert_eq!(ips.lines().count(), lines.len(), "{ips}");
    assert!(ips.lines().all(|ip| ip == "127.0.0.1"), "{ips}");
}
