//! Digest authentication over real UDP (RFC 3665 sections 2.1, 2.2, 2.5, 3.2, 3.3; RFC 3261
//! section 22): challenges, answers computed here with the `md-5` crate from the RFC 2617
//! formulas (independently of `src/auth`), stateless nonces across shards and nodes, nonce
//! expiry, tampering, replay, ownership of the AOR, malformed credentials, CANCEL, SIGHUP.

use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use sipshard_testkit::digest::*;
use sipshard_testkit::exit_log::{auth_per_shard, auth_totals};
use sipshard_testkit::sip::*;
use sipshard_testkit::{Proc, Proxy, Scratch, Ua};

const BILOXI: &str = "biloxi.example.com";
const ATLANTA: &str = "atlanta.example.com";
const QUIET: Duration = Duration::from_millis(300);

/// A fresh branch suffix for every request of the test binary.
fn next() -> u32 {
    static N: AtomicU32 = AtomicU32::new(1);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A REGISTER of `to_user@domain` from `ua` with extra header lines `extra` (e.g. credentials).
fn register_msg(ua: &Ua, to_user: &str, domain: &str, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:{domain} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKar{n}\nMax-Forwards: 70\nTo: <sip:{to_user}@{domain}>\nFrom: <sip:{to_user}@{domain}>;tag=a73kszlfl\nCall-ID: auth-{to_user}-1j9FpLxk3uxtm8tn@{domain}\nCSeq: {cseq} REGISTER\nContact: <sip:{to_user}@{me}>\nExpires: 3600\n{extra}",
        me = ua.addr,
        n = next()
    )
}

fn send_recv(ua: &Ua, to: std::net::SocketAddr, msg: &str) -> String {
    ua.send(to, msg);
    ua.recv_final()
}

/// REGISTER without credentials; assert the 401 and return its challenge.
fn challenge_register(ua: &Ua, p: &Proxy, to_user: &str, cseq: u32) -> Challenge {
    let r = send_recv(ua, p.addr, &register_msg(ua, to_user, BILOXI, cseq, ""));
    assert!(r.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{r}");
    assert!(headers(&r, "Proxy-Authenticate").is_empty(), "{r}");
    Challenge::parse(header(&r, "WWW-Authenticate"))
}

/// REGISTER with `Authorization: answer to ch`.
fn answer_register(
    ua: &Ua,
    p: &Proxy,
    to_user: &str,
    cseq: u32,
    a: &Answer,
    ch: &Challenge,
) -> String {
    let line = format!("Authorization: {}\n", a.credentials(ch));
    send_recv(ua, p.addr, &register_msg(ua, to_user, BILOXI, cseq, &line))
}

fn reg_answer(user: &str, password: &str) -> Answer {
    Answer::new(user, password, "REGISTER", &format!("sip:{BILOXI}"))
}

const USERS: &str = "# RFC 3665 users\n\nbob:zanzibar\nalice:wonderland\n\
                     # an HA1 entry: MD5(carol:biloxi.example.com:chicago)\n";

/// sipshard for `BILOXI` with the test users, plus `extra` flags.
fn start(name: &str, extra: &[&str]) -> (Scratch, Proxy) {
    let dir = Scratch::new(name);
    let users = users_file(&dir);
    // One shard unless the test asks for more: 17 tests start proxies in parallel on 2 cores.
    let shards: &[&str] = if extra.contains(&"--shards") {
        &[]
    } else {
        &["--shards", "1"]
    };
    let args = [&["--domain", BILOXI, "--users", &users][..], shards, extra].concat();
    let p = Proxy::start(&args);
    (dir, p)
}

fn users_file(dir: &Scratch) -> String {
    let text = format!(
        "{USERS}carol:{BILOXI}:{}\n",
        ha1("carol", BILOXI, "chicago")
    );
    dir.file("users", &text)
}

/// RFC 3665 section 2.1: REGISTER -> 401 -> REGISTER with credentials -> 200. Also the other
/// answer forms: no qop (RFC 2069), MD5-sess, an HA1 entry, and OPTIONS keepalives untouched.
#[test]
fn registration_with_authentication_rfc3665_2_1() {
    let (_dir, mut p) = start("2-1", &[]);
    let bob = Ua::new();

    // F1/F2: the challenge, exactly as the issue specifies.
    let r = send_recv(&bob, p.addr, &register_msg(&bob, "bob", BILOXI, 1, ""));
    assert!(r.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{r}");
    let www = header(&r, "WWW-Authenticate");
    let ch = Challenge::parse(www);
    assert_eq!(ch.realm, BILOXI);
    assert_eq!(ch.nonce.len(), 56, "{www}");
    assert!(www.ends_with(", algorithm=MD5, qop=\"auth\""), "{www}");
    assert!(ch.opaque.is_some() && !ch.stale, "{www}");
    assert!(header(&r, "To").contains("tag="), "{r}");

    // F3/F4: the answer.
    let r = answer_register(&bob, &p, "bob", 2, &reg_answer("bob", "zanzibar"), &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    assert_eq!(
        headers(&r, "Contact"),
        vec![format!("<sip:bob@{}>;expires=3600", bob.addr)]
    );

    // RFC 2069 style (no qop), MD5-sess with qop, MD5-sess without qop, an HA1 user.
    let alice = Ua::new();
    for (i, a) in [
        reg_answer("alice", "wonderland").nc(None),
        reg_answer("alice", "wonderland").sess().cnonce("f00dcafe"),
        reg_answer("alice", "wonderland")
            .sess()
            .nc(None)
            .cnonce("beef"),
    ]
    .iter()
    .enumerate()
    {
        let cseq = 10 + 2 * i as u32;
        let ch = challenge_register(&alice, &p, "alice", cseq);
        let r = answer_register(&alice, &p, "alice", cseq + 1, a, &ch);
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{a:?}\n{r}");
    }
    let carol = Ua::new();
    let ch = challenge_register(&carol, &p, "carol", 1);
    let r = answer_register(&carol, &p, "carol", 2, &reg_answer("carol", "chicago"), &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");

    // OPTIONS to the proxy itself is a keepalive: never challenged.
    let ping = format!(
        "OPTIONS sip:{a} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKka{n}\nFrom: <sip:bob@{BILOXI}>;tag=k\nTo: <sip:{a}>\nCall-ID: ka-1\nCSeq: 1 OPTIONS\nMax-Forwards: 70\n\n",
        a = p.addr,
        me = bob.addr,
        n = next()
    );
    let r = send_recv(&bob, p.addr, &ping);
    assert!(r.starts_with("SIP/2.0 200 OK"), "{r}");

    let log = p.stop();
    assert!(
        // logfmt escapes the quotes around the realm.
        log.contains(r#"digest authentication (All) in realm \"biloxi.example.com\": 3 user(s)"#),
        "{log}"
    );
}

/// RFC 3665 section 2.2: later REGISTERs reuse the nonce with a growing nc, here from 16 other
/// source ports with random steering over two shards: every shard verifies the nonce without
/// having issued it.
#[test]
fn nonce_reused_on_other_shards_rfc3665_2_2() {
    // Every UA registers its own contact: allow more than the default 10 per AOR.
    let (_dir, mut p) = start(
        "2-2",
        &[
            "--shards",
            "2",
            "--steering",
            "random",
            "--max-bindings-per-aor",
            "32",
        ],
    );
    let first = Ua::new();
    let ch = challenge_register(&first, &p, "bob", 1);
    let r = answer_register(&first, &p, "bob", 2, &reg_answer("bob", "zanzibar"), &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    for nc in 2..18u32 {
        let ua = Ua::new();
        let a = reg_answer("bob", "zanzibar").nc(Some(nc));
        let r = answer_register(&ua, &p, "bob", nc + 1, &a, &ch);
        assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "nc {nc}: {r}");
    }
    let log = p.stop();
    let per_shard: Vec<u64> = auth_per_shard(&log).iter().map(|c| c[0]).collect();
    assert_eq!(per_shard.len(), 2, "{log}");
    assert_eq!(per_shard.iter().sum::<u64>(), 17, "{log}");
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "both shards verified the nonce: {per_shard:?}"
    );
}

/// A qop=auth answer whose nc does not increase is a replay (same shard): new challenge, with
/// stale=TRUE since the credentials themselves were right. A verbatim retransmission is not.
#[test]
fn replayed_nonce_count_is_rechallenged() {
    let (_dir, p) = start("replay", &["--shards", "1"]);
    let bob = Ua::new();
    let ch = challenge_register(&bob, &p, "bob", 1);
    let a = reg_answer("bob", "zanzibar").nc(Some(5));
    let r = answer_register(&bob, &p, "bob", 2, &a, &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    // The same request again (a retransmission, its 200 was lost): answered again.
    let r = answer_register(&bob, &p, "bob", 2, &a, &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    // A lower count, and the same count with another cnonce: replays.
    for a in [
        reg_answer("bob", "zanzibar").nc(Some(4)),
        reg_answer("bob", "zanzibar").nc(Some(5)).cnonce("other"),
    ] {
        let r = answer_register(&bob, &p, "bob", 3, &a, &ch);
        assert!(r.starts_with("SIP/2.0 401"), "{r}");
        let fresh = Challenge::parse(header(&r, "WWW-Authenticate"));
        assert!(fresh.stale, "{r}");
        assert_ne!(fresh.nonce, ch.nonce);
    }
    let r = answer_register(
        &bob,
        &p,
        "bob",
        4,
        &reg_answer("bob", "zanzibar").nc(Some(6)),
        &ch,
    );
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
}

/// RFC 3665 section 2.5: a wrong password gets a new 401 (not stale), as does an unknown user.
#[test]
fn wrong_password_and_unknown_user_rfc3665_2_5() {
    let (_dir, mut p) = start("2-5", &[]);
    let bob = Ua::new();
    for (user, password) in [
        ("bob", "zanziber"),
        ("mallory", "zanzibar"),
        ("carol", "Chicago"),
    ] {
        let ch = challenge_register(&bob, &p, user, 1);
        let r = answer_register(&bob, &p, user, 2, &reg_answer(user, password), &ch);
        assert!(r.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{user}: {r}");
        let again = Challenge::parse(header(&r, "WWW-Authenticate"));
        assert!(!again.stale, "{r}");
    }
    let log = p.stop();
    assert_eq!(auth_totals(&log), [0, 6, 0, 3, 0, 0, 0], "{log}");
}

/// An expired nonce with a correct response gets a new challenge with stale=TRUE; a wrong
/// password with an expired nonce gets a plain one.
#[test]
fn expired_nonce_is_stale() {
    let (_dir, p) = start("stale", &["--nonce-ttl", "1"]);
    let bob = Ua::new();
    let ch = challenge_register(&bob, &p, "bob", 1);
    std::thread::sleep(Duration::from_millis(2100));
    let r = answer_register(&bob, &p, "bob", 2, &reg_answer("bob", "zanzibar"), &ch);
    assert!(r.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{r}");
    let www = header(&r, "WWW-Authenticate");
    assert!(www.ends_with(", stale=TRUE"), "{www}");
    let fresh = Challenge::parse(www);
    assert!(fresh.stale);
    let r = answer_register(&bob, &p, "bob", 2, &reg_answer("bob", "nope"), &ch);
    assert!(
        !Challenge::parse(header(&r, "WWW-Authenticate")).stale,
        "{r}"
    );
    // The client retries with the new nonce without asking its user.
    let r = answer_register(&bob, &p, "bob", 3, &reg_answer("bob", "zanzibar"), &fresh);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
}

/// A tampered nonce, or one from a node with another secret, is not ours: a new challenge. A
/// node sharing the secret (and the realm) accepts it: a cluster needs no shared state.
#[test]
fn tampered_foreign_and_cluster_nonces() {
    let dir = Scratch::new("cluster");
    let users = users_file(&dir);
    let common = ["--domain", BILOXI, "--users", &users, "--shards", "1"];
    let secret = ["--auth-secret", "hex:00112233445566778899aabbccddeeff"];
    let a = Proxy::start(&[&common[..], &secret[..]].concat());
    let b = Proxy::start(&[&common[..], &secret[..]].concat());
    let other = Proxy::start(&[&common[..], &["--auth-secret", "another secret"][..]].concat());
    let bob = Ua::new();
    let ch = challenge_register(&bob, &a, "bob", 1);
    let answer = reg_answer("bob", "zanzibar");

    // Flip one hex digit of the nonce (the issue time, then the tag), answer correctly for the
    // tampered value.
    for at in [15, 39] {
        let mut t = ch.clone();
        let mut bytes = t.nonce.into_bytes();
        bytes[at] = if bytes[at] == b'0' { b'1' } else { b'0' };
        t.nonce = String::from_utf8(bytes).unwrap();
        let r = answer_register(&bob, &a, "bob", 2, &answer, &t);
        assert!(r.starts_with("SIP/2.0 401"), "{r}");
        assert!(
            !Challenge::parse(header(&r, "WWW-Authenticate")).stale,
            "{r}"
        );
    }
    // A nonce made up by the client.
    let mut made_up = ch.clone();
    made_up.nonce = "dcd98b7102dd2f0e8b11d0f600bfb0c093".into();
    let r = answer_register(&bob, &a, "bob", 2, &answer, &made_up);
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    // Another node, another secret.
    let r = answer_register(&bob, &other, "bob", 2, &answer, &ch);
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    // Another node, the same secret: accepted there, and at the issuer.
    let r = answer_register(&bob, &b, "bob", 2, &answer, &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    let r = answer_register(&bob, &a, "bob", 3, &answer.clone().nc(Some(2)), &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
}

/// --nonce-bind-ip: a nonce issued to 127.0.0.1 is not accepted from 127.0.0.2.
#[test]
fn nonce_bound_to_the_client_address() {
    let (_dir, p) = start("bind", &["--nonce-bind-ip"]);
    let bob = Ua::new();
    let ch = challenge_register(&bob, &p, "bob", 1);
    let sock = std::net::UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    let elsewhere = Ua {
        addr: sock.local_addr().unwrap(),
        sock,
    };
    let r = answer_register(
        &elsewhere,
        &p,
        "bob",
        2,
        &reg_answer("bob", "zanzibar"),
        &ch,
    );
    assert!(r.starts_with("SIP/2.0 401"), "{r}");
    let r = answer_register(&bob, &p, "bob", 3, &reg_answer("bob", "zanzibar"), &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
}

/// The authenticated user must own the AOR in To: someone else's -> 403; an alias -> 200.
#[test]
fn someone_elses_aor_is_forbidden() {
    let dir = Scratch::new("aor");
    let aliases = dir.file("aliases", "# PBX numbers\nalice: 4420000001, 4420000002\n");
    let p = Proxy::start(&[
        "--shards",
        "1",
        "--domain",
        BILOXI,
        "--users",
        &users_file(&dir),
        "--aliases",
        &aliases,
    ]);
    let alice = Ua::new();
    let ch = challenge_register(&alice, &p, "bob", 1);
    let r = answer_register(
        &alice,
        &p,
        "bob",
        2,
        &reg_answer("alice", "wonderland"),
        &ch,
    );
    assert!(r.starts_with("SIP/2.0 403 Forbidden\r\n"), "{r}");
    assert!(headers(&r, "Contact").is_empty(), "{r}");
    let a = reg_answer("alice", "wonderland").nc(Some(2));
    let r = answer_register(&alice, &p, "4420000002", 3, &a, &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    // bob's AOR has no binding: the 403 changed nothing.
    let bob = Ua::new();
    let ch = challenge_register(&bob, &p, "bob", 1);
    let line = format!(
        "Authorization: {}\n",
        reg_answer("bob", "zanzibar").credentials(&ch)
    );
    let query = register_msg(&bob, "bob", BILOXI, 2, &line)
        .replace(&format!("Contact: <sip:bob@{}>\n", bob.addr), "");
    let r = send_recv(&bob, p.addr, &query);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    assert!(headers(&r, "Contact").is_empty(), "{r}");
}

/// Malformed credentials get 400 with a reason; so does a `uri` that is not the Request-URI.
#[test]
fn malformed_authorization_is_400() {
    let (_dir, p) = start("400", &[]);
    let bob = Ua::new();
    let ch = challenge_register(&bob, &p, "bob", 1);
    let good = reg_answer("bob", "zanzibar").credentials(&ch);
    for (value, reason) in [
        ("Digest username=\"bob\", realm=", "Bad Request - Malformed Authorization"),
        ("Digest ,,,\"", "Bad Request - Malformed Authorization"),
        (
            &format!("Digest username=\"bob\", realm=\"{BILOXI}\", uri=\"sip:{BILOXI}\", response=\"00\""),
            "Bad Request - Missing Digest nonce",
        ),
        (&format!("{good}, nc=00000002"), "Bad Request - Duplicate Digest parameter"),
        (&good.replace("qop=auth", "qop=auth-int"), "Bad Request - Unsupported qop"),
        (&good.replace("algorithm=MD5", "algorithm=SHA-256"), "Bad Request - Unsupported Digest algorithm"),
    ] {
        let line = format!("Authorization: {value}\n");
        let r = send_recv(&bob, p.addr, &register_msg(&bob, "bob", BILOXI, 2, &line));
        assert!(r.starts_with(&format!("SIP/2.0 400 {reason}\r\n")), "{value}\n{r}");
    }
    // uri must equal the Request-URI byte for byte.
    let a = Answer::new("bob", "zanzibar", "REGISTER", "sip:BILOXI.example.com");
    let r = answer_register(&bob, &p, "bob", 2, &a, &ch);
    assert!(
        r.starts_with("SIP/2.0 400 Bad Request - Digest uri does not match Request-URI\r\n"),
        "{r}"
    );
    // Another scheme, or credentials for another realm only, is simply a new challenge.
    for value in ["Basic Ym9iOnphbnppYmFy", "Digest username=\"bob\", realm=\"elsewhere\", nonce=\"x\", uri=\"sip:biloxi.example.com\", response=\"6629fae49393a05397450978507c4ef1\""] {
        let line = format!("Authorization: {value}\n");
        let r = send_recv(&bob, p.addr, &register_msg(&bob, "bob", BILOXI, 2, &line));
        assert!(r.starts_with("SIP/2.0 401"), "{value}\n{r}");
    }
}

fn invite(
    from: &Ua,
    from_user: &str,
    from_domain: &str,
    cseq: u32,
    branch: &str,
    extra: &str,
) -> String {
    format!(
        "INVITE sip:bob@{BILOXI} SIP/2.0\nVia: SIP/2.0/UDP {me};branch={branch};rport\nMax-Forwards: 70\nTo: Bob <sip:bob@{BILOXI}>\nFrom: <sip:{from_user}@{from_domain}>;tag=9fxced76sl\nCall-ID: 3848276298220188511@{from_domain}\nCSeq: {cseq} INVITE\nContact: <sip:{from_user}@{me}>\nContent-Type: application/sdp\n{extra}\n{SDP}",
        me = from.addr
    )
}

/// INVITE bob from `from` (user, domain) without credentials, assert the 407, and return the
/// `Proxy-Authorization` line answering it as alice with `password`.
fn proxy_credentials(
    ua: &Ua,
    p: &Proxy,
    from: (&str, &str),
    branch: &str,
    password: &str,
) -> String {
    let r = send_recv(ua, p.addr, &invite(ua, from.0, from.1, 1, branch, ""));
    assert!(r.starts_with("SIP/2.0 407 "), "{r}");
    let ch = Challenge::parse(header(&r, "Proxy-Authenticate"));
    let a = Answer::new("alice", password, "INVITE", &format!("sip:bob@{BILOXI}"));
    format!("Proxy-Authorization: {}\n", a.credentials(&ch))
}

/// Register bob (with authentication) at `p` for `BILOXI`, contact at `ua`.
fn register_bob(p: &Proxy, ua: &Ua, password: &str) {
    let ch = challenge_register(ua, p, "bob", 1);
    let r = answer_register(ua, p, "bob", 2, &reg_answer("bob", password), &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");
    // The binding reaches the other shards asynchronously.
    std::thread::sleep(Duration::from_millis(100));
}

/// RFC 3665 section 3.2 F1-F4 (and on to the end of the call): INVITE -> 407 with
/// Proxy-Authenticate -> ACK absorbed -> INVITE with Proxy-Authorization, forwarded without it
/// (other credentials untouched) -> 180/200 -> ACK and BYE in the dialog, not challenged.
#[test]
fn invite_with_proxy_authentication_rfc3665_3_2() {
    let dir = Scratch::new("3-2");
    let mut p = Proxy::start(&[
        "--shards",
        "1",
        "--domain",
        BILOXI,
        "--domain",
        ATLANTA,
        "--realm",
        ATLANTA,
        "--record-route",
        "--users",
        &dir.file("users", "alice:wonderland\nbob:zanzibar\n"),
    ]);
    let (alice, bob) = (Ua::new(), Ua::new());
    // Bob's REGISTER is challenged in the proxy's realm.
    let ch = challenge_register(&bob, &p, "bob", 1);
    assert_eq!(ch.realm, ATLANTA);
    let r = answer_register(&bob, &p, "bob", 2, &reg_answer("bob", "zanzibar"), &ch);
    assert!(r.starts_with("SIP/2.0 200 OK\r\n"), "{r}");

    // F1/F2: 407.
    let inv1 = invite(&alice, "alice", ATLANTA, 1, "z9hG4bK74bf9", "");
    let r = send_recv(&alice, p.addr, &inv1);
    assert!(
        r.starts_with("SIP/2.0 407 Proxy Authentication Required\r\n"),
        "{r}"
    );
    assert!(headers(&r, "WWW-Authenticate").is_empty(), "{r}");
    let pa = header(&r, "Proxy-Authenticate");
    assert!(pa.ends_with("algorithm=MD5, qop=\"auth\""), "{pa}");
    let ch = Challenge::parse(pa);
    assert_eq!(ch.realm, ATLANTA);
    // F3: the ACK for the 407 is absorbed.
    let tag = header(&r, "To").split("tag=").nth(1).unwrap().to_string();
    let ack = format!(
        "ACK sip:bob@{BILOXI} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK74bf9;rport\nMax-Forwards: 70\nTo: Bob <sip:bob@{BILOXI}>;tag={tag}\nFrom: <sip:alice@{ATLANTA}>;tag=9fxced76sl\nCall-ID: 3848276298220188511@{ATLANTA}\nCSeq: 1 ACK\n\n",
        me = alice.addr
    );
    alice.send(p.addr, &ack);
    bob.expect_silence(QUIET);

    // F4: with credentials; an Authorization for the UAS passes untouched.
    let a = Answer::new(
        "alice",
        "wonderland",
        "INVITE",
        &format!("sip:bob@{BILOXI}"),
    );
    let uas_creds = "Digest username=\"alice\", realm=\"uas\", nonce=\"n\", uri=\"sip:bob@biloxi.example.com\", response=\"0123456789abcdef0123456789abcdef\"";
    let extra = format!(
        "Proxy-Authorization: {}\nAuthorization: {uas_creds}\n",
        a.credentials(&ch)
    );
    alice.send(
        p.addr,
        &invite(&alice, "alice", ATLANTA, 2, "z9hG4bK74bfa", &extra),
    );
    let inv = bob.recv();
    assert_eq!(
        start_line(&inv),
        format!("INVITE sip:bob@{} SIP/2.0", bob.addr)
    );
    assert!(
        headers(&inv, "Proxy-Authorization").is_empty(),
        "credentials stripped: {inv}"
    );
    assert_eq!(headers(&inv, "Authorization"), vec![uas_creds]);
    assert!(
        inv.ends_with(&SDP.replace('\n', "\r\n")),
        "body unchanged: {inv}"
    );

    for status in ["180 Ringing", "200 OK"] {
        bob.send(
            p.addr,
            &respond(
                &inv,
                status,
                "314159",
                &format!("Contact: <sip:bob@{}>", bob.addr),
                "",
            ),
        );
        let resp = alice.recv();
        assert!(resp.starts_with(&format!("SIP/2.0 {status}")), "{resp}");
    }
    // In-dialog requests routed through us are not challenged, in either direction.
    let in_dialog = |method: &str,
                     from: &Ua,
                     ruri: String,
                     from_hdr: &str,
                     to_hdr: &str,
                     cseq: u32| {
        format!(
            "{method} {ruri} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKdlg{n}\nRoute: <sip:{p};lr>\nMax-Forwards: 70\nFrom: {from_hdr}\nTo: {to_hdr}\nCall-ID: 3848276298220188511@{ATLANTA}\nCSeq: {cseq} {method}\n\n",
            me = from.addr,
            p = p.addr,
            n = next()
        )
    };
    let alice_side = format!("<sip:alice@{ATLANTA}>;tag=9fxced76sl");
    let bob_side = format!("Bob <sip:bob@{BILOXI}>;tag=314159");
    alice.send(
        p.addr,
        &in_dialog(
            "ACK",
            &alice,
            format!("sip:bob@{}", bob.addr),
            &alice_side,
            &bob_side,
            2,
        ),
    );
    assert!(bob.recv().starts_with("ACK "));
    bob.send(
        p.addr,
        &in_dialog(
            "BYE",
            &bob,
            format!("sip:alice@{}", alice.addr),
            &bob_side,
            &alice_side,
            1,
        ),
    );
    let bye = alice.recv();
    assert!(bye.starts_with("BYE "), "{bye}");

    // A caller from a foreign domain is not ours to challenge.
    let carol = Ua::new();
    carol.send(
        p.addr,
        &invite(&carol, "carol", "chicago.example.com", 1, "z9hG4bKc1", ""),
    );
    assert!(bob.recv().starts_with("INVITE "), "forwarded unchallenged");
    // Authenticated as alice, calling as bob: 403.
    let extra = proxy_credentials(&alice, &p, ("bob", ATLANTA), "z9hG4bKimp1", "wonderland");
    let r = send_recv(
        &alice,
        p.addr,
        &invite(&alice, "bob", ATLANTA, 2, "z9hG4bKimp2", &extra),
    );
    assert!(r.starts_with("SIP/2.0 403 Forbidden\r\n"), "{r}");
    // OPTIONS and MESSAGE to a user are challenged too.
    for method in ["OPTIONS", "MESSAGE"] {
        let m = format!(
            "{method} sip:bob@{BILOXI} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKo{n}\nMax-Forwards: 70\nTo: <sip:bob@{BILOXI}>\nFrom: <sip:alice@{ATLANTA}>;tag=o1\nCall-ID: o-{n}\nCSeq: 1 {method}\n\n",
            me = alice.addr,
            n = next()
        );
        let r = send_recv(&alice, p.addr, &m);
        assert!(r.starts_with("SIP/2.0 407 "), "{method}: {r}");
    }
    bob.expect_silence(QUIET);
    let log = p.stop();
    assert_eq!(auth_totals(&log), [2, 5, 0, 0, 0, 1, 0], "{log}");
}

/// --auth register: only REGISTER is challenged; calls pass.
#[test]
fn register_only_mode_lets_calls_through() {
    let (_dir, p) = start("regonly", &["--auth", "register"]);
    let (alice, bob) = (Ua::new(), Ua::new());
    register_bob(&p, &bob, "zanzibar");
    alice.send(
        p.addr,
        &invite(&alice, "alice", BILOXI, 1, "z9hG4bKro1", ""),
    );
    assert!(bob.recv().starts_with("INVITE "));
}

/// CANCEL is never challenged (RFC 3261 section 22.1): it follows its authenticated INVITE.
#[test]
fn cancel_is_not_challenged() {
    let (_dir, p) = start("cancel", &[]);
    let (alice, bob) = (Ua::new(), Ua::new());
    register_bob(&p, &bob, "zanzibar");
    let extra = proxy_credentials(&alice, &p, ("alice", BILOXI), "z9hG4bKcx1", "wonderland");
    alice.send(
        p.addr,
        &invite(&alice, "alice", BILOXI, 2, "z9hG4bKcx2", &extra),
    );
    let inv = bob.recv();
    assert!(inv.starts_with("INVITE "), "{inv}");
    bob.send(p.addr, &respond(&inv, "180 Ringing", "777", "", ""));
    assert!(alice.recv().starts_with("SIP/2.0 180"));
    let cancel = format!(
        "CANCEL sip:bob@{BILOXI} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKcx2;rport\nMax-Forwards: 70\nTo: Bob <sip:bob@{BILOXI}>\nFrom: <sip:alice@{BILOXI}>;tag=9fxced76sl\nCall-ID: 3848276298220188511@{BILOXI}\nCSeq: 2 CANCEL\n\n",
        me = alice.addr
    );
    alice.send(p.addr, &cancel);
    let c = bob.recv();
    assert!(
        c.starts_with(&format!("CANCEL sip:bob@{} SIP/2.0", bob.addr)),
        "{c}"
    );
    assert_eq!(
        headers(&c, "Via")[0],
        headers(&inv, "Via")[0],
        "same branch as the INVITE"
    );
}

/// RFC 3665 section 3.3: two proxies in different realms each challenge in turn; the UA keeps
/// both credentials, each proxy takes its own out and passes the other's on, and the call
/// reaches the UAS with none.
#[test]
fn two_proxies_two_realms_rfc3665_3_3() {
    let dir = Scratch::new("3-3");
    let b = Proxy::start(&[
        "--shards",
        "1",
        "--domain",
        BILOXI,
        "--domain",
        ATLANTA,
        "--realm",
        BILOXI,
        "--record-route",
        "--users",
        &dir.file("users-b", "alice:biloxi-pass\nbob:zanzibar\n"),
    ]);
    let route = format!("{BILOXI}={}", b.addr);
    let a = Proxy::start(&[
        "--shards",
        "1",
        "--domain",
        ATLANTA,
        "--realm",
        ATLANTA,
        "--record-route",
        "--route",
        &route,
        "--users",
        &dir.file("users-a", "alice:atlanta-pass\n"),
    ]);
    let (alice, bob) = (Ua::new(), Ua::new());
    register_bob(&b, &bob, "zanzibar");
    let ruri = format!("sip:bob@{BILOXI}");

    // F1-F4: proxy 1 challenges.
    let r = send_recv(
        &alice,
        a.addr,
        &invite(&alice, "alice", ATLANTA, 1, "z9hG4bK1x1", ""),
    );
    assert!(r.starts_with("SIP/2.0 407 "), "{r}");
    let ch_a = Challenge::parse(header(&r, "Proxy-Authenticate"));
    assert_eq!(ch_a.realm, ATLANTA);
    let ans_a = Answer::new("alice", "atlanta-pass", "INVITE", &ruri);
    // F5-F8: proxy 1 accepts and forwards; proxy 2 challenges, through proxy 1.
    let extra = format!("Proxy-Authorization: {}\n", ans_a.credentials(&ch_a));
    let r = send_recv(
        &alice,
        a.addr,
        &invite(&alice, "alice", ATLANTA, 2, "z9hG4bK1x2", &extra),
    );
    assert!(r.starts_with("SIP/2.0 407 "), "{r}");
    assert_eq!(
        headers(&r, "Via").len(),
        1,
        "came back through proxy 1: {r}"
    );
    let ch_b = Challenge::parse(header(&r, "Proxy-Authenticate"));
    assert_eq!(ch_b.realm, BILOXI);
    bob.expect_silence(QUIET);
    // The ACK for proxy 2's 407 travels through proxy 1 and is absorbed by proxy 2.
    let tag = header(&r, "To").split("tag=").nth(1).unwrap().to_string();
    let ack = format!(
        "ACK {ruri} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK1x2;rport\nMax-Forwards: 70\nTo: Bob <{ruri}>;tag={tag}\nFrom: <sip:alice@{ATLANTA}>;tag=9fxced76sl\nCall-ID: 3848276298220188511@{ATLANTA}\nCSeq: 2 ACK\n\n",
        me = alice.addr
    );
    alice.send(a.addr, &ack);
    bob.expect_silence(QUIET);
    // F9-F11: both credentials; the call reaches Bob with neither.
    let ans_b = Answer::new("alice", "biloxi-pass", "INVITE", &ruri);
    let extra = format!(
        "Proxy-Authorization: {}\nProxy-Authorization: {}\n",
        ans_a.clone().nc(Some(2)).credentials(&ch_a),
        ans_b.credentials(&ch_b)
    );
    alice.send(
        a.addr,
        &invite(&alice, "alice", ATLANTA, 3, "z9hG4bK1x3", &extra),
    );
    let inv = bob.recv();
    assert_eq!(
        start_line(&inv),
        format!("INVITE sip:bob@{} SIP/2.0", bob.addr)
    );
    assert!(headers(&inv, "Proxy-Authorization").is_empty(), "{inv}");
    assert_eq!(headers(&inv, "Via").len(), 3, "{inv}");
    assert_eq!(headers(&inv, "Record-Route").len(), 2, "{inv}");
    bob.send(
        b.addr,
        &respond(
            &inv,
            "200 OK",
            "271828",
            &format!("Contact: <sip:bob@{}>", bob.addr),
            "",
        ),
    );
    let ok = alice.recv();
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert_eq!(headers(&ok, "Record-Route").len(), 2, "{ok}");
}

/// Proxy 1 keeps credentials for another realm untouched when it is the only one of its own
/// (checked on the wire between the proxies).
#[test]
fn other_realms_credentials_pass_through() {
    let dir = Scratch::new("pass");
    let p = Proxy::start(&[
        "--shards",
        "1",
        "--domain",
        ATLANTA,
        "--realm",
        ATLANTA,
        "--users",
        &dir.file("users", "alice:atlanta-pass\n"),
    ]);
    let (alice, next_hop) = (Ua::new(), Ua::new());
    let ruri = format!("sip:bob@{}", next_hop.addr);
    let r = send_recv(
        &alice,
        p.addr,
        &invite(&alice, "alice", ATLANTA, 1, "z9hG4bKpt1", "")
            .replace(&format!("sip:bob@{BILOXI} SIP"), &format!("{ruri} SIP")),
    );
    let ch = Challenge::parse(header(&r, "Proxy-Authenticate"));
    let other = "Digest username=\"alice\", realm=\"biloxi.example.com\", nonce=\"abc\", uri=\"x\", response=\"0123456789abcdef0123456789abcdef\"";
    let extra = format!(
        "Proxy-Authorization: {other}\nProxy-Authorization: {}\n",
        Answer::new("alice", "atlanta-pass", "INVITE", &ruri).credentials(&ch)
    );
    let msg = invite(&alice, "alice", ATLANTA, 2, "z9hG4bKpt2", &extra)
        .replace(&format!("sip:bob@{BILOXI} SIP"), &format!("{ruri} SIP"));
    alice.send(p.addr, &msg);
    let got = next_hop.recv();
    assert!(got.starts_with(&format!("INVITE {ruri} SIP/2.0")), "{got}");
    assert_eq!(headers(&got, "Proxy-Authorization"), vec![other], "{got}");
}

/// SIGHUP reloads the users file on every shard; a broken file keeps the previous users.
#[test]
fn sighup_reloads_users_on_every_shard() {
    let dir = Scratch::new("hup");
    let path = dir.file("users", "bob:old-password\n");
    let mut p = Proxy::start(&[
        "--domain",
        BILOXI,
        "--users",
        &path,
        "--shards",
        "2",
        "--steering",
        "random",
    ]);
    let bob = Ua::new();
    let try_password = |pw: &str| {
        let ch = challenge_register(&bob, &p, "bob", 1);
        answer_register(&bob, &p, "bob", 2, &reg_answer("bob", pw), &ch).starts_with("SIP/2.0 200")
    };
    assert!(try_password("old-password"));
    dir.file("users", "# rotated\nbob:new-password\ndave:x\n");
    p.signal(libc::SIGHUP);
    // Every shard applies it within a housekeeping tick; requests land on random shards.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut streak = 0;
    while streak < 16 {
        assert!(
            Instant::now() < deadline,
            "the new password was not accepted everywhere"
        );
        if try_password("new-password") {
            streak += 1;
        } else {
            streak = 0;
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    for _ in 0..8 {
        assert!(!try_password("old-password"));
    }
    // A broken file: logged, and the users loaded before stay.
    dir.file("users", "bob:newer\nthis line is broken\n");
    p.signal(libc::SIGHUP);
    std::thread::sleep(Duration::from_millis(600));
    for _ in 0..8 {
        assert!(try_password("new-password"));
    }
    let log = p.stop();
    assert!(log.contains("SIGHUP: reloaded 2 user(s)"), "{log}");
    assert!(
        log.contains(
            "line 2: expected user:password or user:realm:HA1; keeping the previous users"
        ),
        "{log}"
    );
    assert_eq!(
        auth_per_shard(&log)
            .iter()
            .map(|c| c[6])
            .collect::<Vec<_>>(),
        [1, 1],
        "{log}"
    );
}

/// A bad users file stops start-up and names the line.
#[test]
fn bad_users_file_stops_startup() {
    let dir = Scratch::new("bad");
    let path = dir.file("users", "# ok so far\nalice:wonderland\n\nbob\n");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(sipshard_testkit::bin::sipshard());
        cmd.args(args);
        Proc::spawn(&dir, "sipshard", &mut cmd).wait_output(Duration::from_secs(10))
    };
    let out = run(&[
        "--listen",
        "127.0.0.1:0",
        "--domain",
        BILOXI,
        "--users",
        &path,
        "--shards",
        "1",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{path}:line 4: expected user:password or user:realm:HA1"
        )),
        "{err}"
    );
    // No realm to take.
    let out = run(&["--listen", "127.0.0.1:0", "--users", &path, "--shards", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--realm"));
}
