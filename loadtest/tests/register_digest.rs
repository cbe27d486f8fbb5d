//! `register` against a small test registrar that challenges every REGISTER without
//! credentials (401, RFC 3261 section 22.2) and checks the digest answer (RFC 2617).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sipshard::sip::{HeaderName, Message};
use sipshard_testkit::digest::md5hex as md5;
use sipshard_testkit::loadgen::{run_json, show, u};
use sipshard_testkit::Scratch;

const REALM: &str = "loadtest";
const NONCE: &str = "5f1a2b3c";

struct Registrar {
    addr: std::net::SocketAddr,
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    bad: Arc<AtomicU64>,
    challenged: Arc<AtomicU64>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Registrar {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// Answer `code` copying Via, From, To (adding a tag), Call-ID, CSeq; `extra` lines appended.
fn answer(m: &Message<'_>, code: &str, extra: &str) -> Vec<u8> {
    let mut out = format!("SIP/2.0 {code}\r\n");
    for f in m.fields() {
        let line = String::from_utf8_lossy(m.bytes(f.line))
            .trim_end()
            .to_string();
        match f.name {
            HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                out.push_str(&line);
                out.push_str("\r\n");
            }
            HeaderName::To => {
                out.push_str(&line);
                out.push_str(";tag=reg\r\n");
            }
            _ => {}
        }
    }
    out.push_str(extra);
    out.push_str("Content-Length: 0\r\n\r\n");
    out.into_bytes()
}

fn registrar(passwords: &'static [(&'static str, &'static str)]) -> Registrar {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let addr = sock.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, bad, challenged) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let handle = {
        let (stop, ok, bad, challenged) =
            (stop.clone(), ok.clone(), bad.clone(), challenged.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 8192];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                let mut data = buf[..n].to_vec();
                let Ok(m) = Message::parse(&mut data) else {
                    continue;
                };
                let creds = m.credentials(HeaderName::Authorization).next();
                let reply = match creds {
                    None => {
                        challenged.fetch_add(1, Ordering::Relaxed);
                        answer(
                            &m,
                            "401 Unauthorized",
                            &format!(
                                "WWW-Authenticate: Digest realm=\"{REALM}\", nonce=\"{NONCE}\", qop=\"auth\", algorithm=MD5\r\n"
                            ),
                        )
                    }
                    Some(Ok(c)) => {
                        let s = |k: &[u8]| {
                            String::from_utf8_lossy(c.param(k).unwrap_or(b"")).to_string()
                        };
                        let user = s(b"username");
                        let pw = passwords
                            .iter()
                            .find(|(u, _)| *u == user)
                            .map(|(_, p)| *p)
                            .unwrap_or("");
                        let ha1 = md5(&format!("{user}:{REALM}:{pw}"));
                        let ha2 = md5(&format!("REGISTER:{}", s(b"uri")));
                        let want = md5(&format!(
                            "{ha1}:{NONCE}:{}:{}:auth:{ha2}",
                            s(b"nc"),
                            s(b"cnonce")
                        ));
                        if s(b"response") == want && s(b"nonce") == NONCE {
                            ok.fetch_add(1, Ordering::Relaxed);
                            answer(&m, "200 OK", "Expires: 3600\r\n")
                        } else {
                            bad.fetch_add(1, Ordering::Relaxed);
                            answer(&m, "403 Forbidden", "")
                        }
                    }
                    Some(Err(_)) => answer(&m, "400 Bad Request", ""),
                };
                let _ = sock.send_to(&reply, from);
            }
        })
    };
    Registrar {
        addr,
        stop,
        ok,
        bad,
        challenged,
        handle: Some(handle),
    }
}

#[test]
fn register_storm_answers_digest_challenges() {
    let reg = registrar(&[("user0", "pw0"), ("user1", "pw1")]);
    let pwdir = Scratch::new("register");
    let pwfile = pwdir.join("passwords");
    std::fs::write(&pwfile, "user0:pw0\nuser1:pw1\n*:common\n").unwrap();
    let target = reg.addr.to_string();
    #[rustfmt::skip]
    let (out, r) = run_json("register-json", &[
        "register", "--target", &target, "--users", "2", "--rate", "200", "--duration", "1",
        "--password-file", pwfile.to_str().unwrap(),
    ], Duration::from_secs(30));
    assert!(out.status.success(), "{}", show(&out));
    assert_eq!(u(&r, "attempted"), 200, "{r:#}");
    assert_eq!(u(&r, "succeeded"), 200, "{r:#}");
    assert_eq!(u(&r, "latency_ms.register_to_200.count"), 200, "{r:#}");
    assert_eq!(reg.challenged.load(Ordering::Relaxed), 200);
    assert_eq!(reg.ok.load(Ordering::Relaxed), 200);
    assert_eq!(reg.bad.load(Ordering::Relaxed), 0);
}

#[test]
fn a_challenge_without_a_password_is_an_unexpected_status() {
    let reg = registrar(&[]);
    let target = reg.addr.to_string();
    #[rustfmt::skip]
    let (out, r) = run_json("register-nopw", &[
        "register", "--target", &target, "--users", "3", "--rate", "50", "--duration", "1",
    ], Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert_eq!(u(&r, "failed"), 50, "{r:#}");
    assert_eq!(u(&r, "unexpected_statuses.401"), 50, "{r:#}");
}
