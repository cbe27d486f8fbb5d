//! The admin API (`--admin`) and its client `sipshard ctl`, against the real binary: listing
//! bindings, one AOR, removal seen by calls on every shard and after a restart with
//! `--state-dir`, the bearer token, stats, reload, health, and clear errors.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use sipshard_testkit::sip::*;
use sipshard_testkit::ua::register;
use sipshard_testkit::{free_port, Proc, Proxy, Scratch, Ua};

const DOMAIN: &str = "example.com";

/// `sipshard ctl --admin ADDR ARGS...`, waited for (10 s at most).
fn ctl(dir: &Scratch, admin: SocketAddr, args: &[&str]) -> Output {
    let mut cmd = Command::new(sipshard_testkit::bin::sipshard());
    cmd.arg("ctl")
        .arg("--admin")
        .arg(admin.to_string())
        .args(args);
    Proc::spawn(dir, "ctl", &mut cmd).wait_output(Duration::from_secs(10))
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `ctl --json ARGS` that must succeed: its JSON.
fn ctl_json(dir: &Scratch, admin: SocketAddr, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let o = ctl(dir, admin, &all);
    assert!(o.status.success(), "ctl {args:?}: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).expect("JSON")
}

/// One raw HTTP/1.1 request; the status code and the body.
fn http(addr: SocketAddr, request_line: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect to the admin API");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{request_line} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().expect("a status code");
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

fn start(dir: &Scratch, port: u16, admin: SocketAddr, extra: &[&str]) -> Proxy {
    let admin = admin.to_string();
    let mut args = vec!["--domain", DOMAIN, "--shards", "2", "--admin", &admin];
    args.extend_from_slice(extra);
    Proxy::builder().port(port).dir(dir).args(&args).start()
}

/// Phones, each registered as `user{i}@example.com` with its own address as contact.
fn register_phones(p: &Proxy, n: usize) -> Vec<Ua> {
    (0..n)
        .map(|i| {
            let ua = Ua::new();
            let contact = format!("<sip:user{i}@{}>", ua.addr);
            let r = register(&ua, p.addr, &format!("user{i}"), DOMAIN, &contact, 1, "");
            assert!(r.starts_with("SIP/2.0 200"), "{r}");
            ua
        })
        .collect()
}

/// An INVITE for `user` from a new caller (a new source port: the callers of one test land
/// on both shards); the caller's first final answer, or None when it was forwarded.
fn call(p: &Proxy, user: &str, n: usize, callee: &Ua) -> Option<String> {
    let caller = Ua::new();
    let msg = format!(
        "INVITE sip:{user}@{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKadm{n}\nMax-Forwards: 70\nTo: <sip:{user}@{DOMAIN}>\nFrom: <sip:alice@{DOMAIN}>;tag=a{n}\nCall-ID: admin-call-{n}\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\n\n",
        me = caller.addr
    );
    caller.send(p.addr, &msg);
    if let Some(got) = callee.recv_within(Duration::from_millis(800)) {
        assert!(got.starts_with("INVITE "), "{got}");
        return None;
    }
    Some(caller.recv_final())
}

#[test]
fn list_show_remove_everywhere_and_after_a_restart() {
    let dir = Scratch::new("admin-remove");
    let state = dir.join("state");
    let (port, admin) = (free_port(), SocketAddr::from(([127, 0, 0, 1], free_port())));
    let state_arg = ["--state-dir", state.to_str().unwrap()];
    let mut p = start(&dir, port, admin, &state_arg);
    let phones = register_phones(&p, 12);

    // Every binding, one JSON line each, from the copy the admin API keeps.
    let o = ctl(&dir, admin, &["--json", "bindings"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 12, "{}", stdout(&o));
    assert!(lines.iter().any(|b| b["aor"] == "user3@example.com"));
    // The table for people.
    let table = stdout(&ctl(&dir, admin, &["bindings"]));
    assert!(table.starts_with("AOR "), "{table}");
    assert!(
        table.contains(&format!("sip:user3@{}", phones[3].addr)),
        "{table}"
    );

    // One AOR, however the operator writes it (and --json wherever it is put).
    for written in ["user3@example.com", "sip:user3@EXAMPLE.com"] {
        let o = ctl(&dir, admin, &["bindings", written, "--json"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("JSON");
        let b = &v["bindings"][0];
        assert_eq!(b["contact"], format!("sip:user3@{}", phones[3].addr));
        assert_eq!(b["destination"]["transport"], "udp");
        assert_eq!(b["destination"]["address"], phones[3].addr.to_string());
        let left = b["expires_in"].as_u64().unwrap();
        assert!((3590..=3600).contains(&left), "{left}");
    }

    // Removed: calls for it fail on every shard, calls for the others still go through.
    let o = ctl(&dir, admin, &["unregister", "user3@example.com"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "removed 1 binding(s) of user3@example.com\n");
    for n in 0..8 {
        let answer = call(&p, "user3", n, &phones[3]).expect("not forwarded");
        assert!(answer.starts_with("SIP/2.0 4"), "{answer}");
        assert!(
            call(&p, "user4", 100 + n, &phones[4]).is_none(),
            "forwarded"
        );
    }
    let o = ctl(&dir, admin, &["bindings", "user3@example.com"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no bindings for user3@example.com (404 Not Found)"),
        "{}",
        stderr(&o)
    );

    // And after a restart from the state directory.
    p.stop();
    let p = start(&dir, port, admin, &state_arg);
    assert_eq!(
        ctl(&dir, admin, &["bindings", "user3@example.com"])
            .status
            .code(),
        Some(1)
    );
    assert!(call(&p, "user4", 200, &phones[4]).is_none(), "forwarded");
    let lines = stdout(&ctl(&dir, admin, &["--json", "bindings"]));
    assert_eq!(lines.lines().count(), 11, "{lines}");
}

#[test]
fn one_contact_of_several_is_removed_alone() {
    let dir = Scratch::new("admin-contact");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let p = start(&dir, free_port(), admin, &[]);
    let ua = Ua::new();
    let contacts = "<sip:+15551234@192.0.2.7:5062>, <sip:bob@192.0.2.8>";
    let r = register(&ua, p.addr, "bob", DOMAIN, contacts, 1, "");
    assert_eq!(headers(&r, "Contact").len(), 2, "{r}");

    // A plus in a telephone number stays a plus (percent-encoded by ctl).
    let o = ctl(
        &dir,
        admin,
        &[
            "unregister",
            "bob@example.com",
            "sip:+15551234@192.0.2.7:5062",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v = ctl_json(&dir, admin, &["bindings", "bob@example.com"]);
    let left: Vec<&Value> = v["bindings"].as_array().unwrap().iter().collect();
    assert_eq!(left.len(), 1, "{v}");
    assert_eq!(left[0]["contact"], "sip:bob@192.0.2.8");
    // The phone sees the same in its REGISTER query.
    let r = register(&ua, p.addr, "bob", DOMAIN, "", 2, "");
    assert_eq!(headers(&r, "Contact").len(), 1, "{r}");

    let o = ctl(
        &dir,
        admin,
        &["unregister", "bob@example.com", "sip:nobody@192.0.2.9"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no binding of bob@example.com with contact"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn stats_health_and_reload() {
    let dir = Scratch::new("admin-stats");
    let users = dir.file("users", "alice:secret\n");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    // Its start-up OPTIONS ping is what there is to count.
    let _p = start(&dir, free_port(), admin, &["--users", &users]);

    let health = ctl(&dir, admin, &["health"]);
    assert!(health.status.success(), "{}", stderr(&health));
    assert_eq!(stdout(&health), "ok: 2 of 2 shard(s) serving\n");
    let (status, body) = http(admin, "GET /ready", "");
    assert_eq!(status, 200, "{body}");

    // Per shard and for the node; the shards publish on a tick.
    let mut v = Value::Null;
    let seen = sipshard_testkit::eventually(Duration::from_secs(3), || {
        v = ctl_json(&dir, admin, &["stats"]);
        v.to_string().contains("sipshard_datagrams_received_total")
    });
    assert!(seen, "{v}");
    assert_eq!(v["shards"], 2);
    let table = stdout(&ctl(&dir, admin, &["stats"]));
    assert!(table.contains("shard 1"), "{table}");
    assert!(
        table.contains("sipshard_datagrams_received_total"),
        "{table}"
    );

    std::fs::write(dir.join("users"), "alice:secret\nbob:other\n").unwrap();
    let o = ctl(&dir, admin, &["reload"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "reloaded: 2 user(s)\n");
    std::fs::write(dir.join("users"), "broken line\n").unwrap();
    let o = ctl(&dir, admin, &["reload"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("keeping the previous users"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_token_is_required_when_configured() {
    let dir = Scratch::new("admin-token");
    let token = dir.file("token", "s3cret-token-0123456789\n");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _p = start(&dir, free_port(), admin, &["--admin-token-file", &token]);

    let (status, body) = http(admin, "GET /v1/stats", "");
    assert_eq!(status, 401, "{body}");
    let (status, _) = http(admin, "GET /v1/stats", "Authorization: Bearer wrong\r\n");
    assert_eq!(status, 401);
    let (status, _) = http(
        admin,
        "GET /v1/stats",
        "Authorization: Bearer s3cret-token-0123456789\r\n",
    );
    assert_eq!(status, 200);
    // Load balancers probe without it.
    assert_eq!(http(admin, "GET /health", "").0, 200);

    let o = ctl(&dir, admin, &["stats"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("bearer token"), "{}", stderr(&o));
    let o = ctl(&dir, admin, &["--token-file", &token, "stats"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn bad_requests_and_an_unreachable_api_are_explained() {
    let dir = Scratch::new("admin-errors");
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let _p = start(&dir, free_port(), admin, &[]);
    let (status, body) = http(admin, "GET /v1/bindings/nodomain", "");
    assert_eq!(status, 400);
    assert!(body.contains("an AOR is written user@domain"), "{body}");
    // A domain it does not serve is no AOR of its own, whatever a typo would match.
    let (status, body) = http(admin, "GET /v1/bindings/eve@typo.example.org", "");
    assert_eq!(status, 400);
    assert!(
        body.contains("not a domain this registrar serves"),
        "{body}"
    );
    assert_eq!(http(admin, "PUT /v1/bindings/a@b", "").0, 405);
    assert_eq!(http(admin, "GET /v1/nothing", "").0, 404);
    let (status, body) = http(admin, "DELETE /v1/bindings/a@example.com?expires=0", "");
    assert_eq!(status, 400, "{body}");

    let nobody = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let o = ctl(&dir, nobody, &["bindings"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("cannot reach the admin API at {nobody}")),
        "{}",
        stderr(&o)
    );
}
