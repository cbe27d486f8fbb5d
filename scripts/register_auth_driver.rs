//! Load driver for `scripts/bench-register-auth.sh`: challenged registrations as fast as the
//! registrar answers them.
//!
//! Each of `--window` virtual user agents (users `u0`..`u{W-1}`, all with `--password`) loops:
//! REGISTER without credentials -> 401 -> REGISTER with a Digest answer (qop=auth, nc=00000001,
//! a fresh cnonce) -> 200. One "challenged registration" is that pair of transactions. Each UA
//! keeps its Call-ID and raises its CSeq, as a phone re-registering does. A transaction without
//! an answer within `--timeout-ms` is sent again from its start (counted as a timeout).
//!
//! Single-threaded, one UDP socket, no allocation per message beyond the response parsing; it is
//! pinned to its own core by the script. It runs `--warmup` seconds, then counts for
//! `--duration` seconds, and prints one JSON object.
//!
//! Build: `cargo build --release --example register-auth-driver`.

#[path = "digest_md5.rs"]
mod digest_md5;

use std::fmt::Write as _;
use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use digest_md5::md5hex;

struct Args {
    target: SocketAddr,
    domain: String,
    password: String,
    window: usize,
    warmup: f64,
    duration: f64,
    timeout: Duration,
}

fn parse_args() -> Args {
    let mut a = Args {
        target: "127.0.0.1:5060".parse().unwrap(),
        domain: "bench.example.com".into(),
        password: "pw".into(),
        window: 200,
        warmup: 1.0,
        duration: 10.0,
        timeout: Duration::from_millis(1000),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| die(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--target" => a.target = value().parse().unwrap_or_else(|_| die("bad --target")),
            "--domain" => a.domain = value(),
            "--password" => a.password = value(),
            "--window" => a.window = value().parse().unwrap_or_else(|_| die("bad --window")),
            "--warmup" => a.warmup = value().parse().unwrap_or_else(|_| die("bad --warmup")),
            "--duration" => a.duration = value().parse().unwrap_or_else(|_| die("bad --duration")),
            "--timeout-ms" => {
                a.timeout = Duration::from_millis(
                    value().parse().unwrap_or_else(|_| die("bad --timeout-ms")),
                )
            }
            _ => die(&format!("unknown flag {flag}")),
        }
    }
    a.window = a.window.max(1);
    a
}

fn die(msg: &str) -> ! {
    eprintln!("register-auth-driver: {msg}");
    std::process::exit(2);
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Waiting for the 401 to the REGISTER without credentials.
    Challenge,
    /// Waiting for the 200 to the answer.
    Answer,
}

struct Ua {
    user: String,
    ha1_realm: String,
    ha1: String,
    cseq: u32,
    phase: Phase,
    sent_at: Instant,
    /// The last request, for a retransmission after a timeout.
    last: Vec<u8>,
}

/// The value of `name="..."` or `name=token` in a challenge.
fn directive<'a>(v: &'a str, name: &str) -> Option<&'a str> {
    let mut rest = v;
    loop {
        let at = rest.find(name)?;
        let before_ok = at == 0 || matches!(rest.as_bytes()[at - 1], b' ' | b',' | b'\t');
        let after = &rest[at + name.len()..];
        if before_ok && after.starts_with('=') {
            let val = &after[1..];
            return Some(if let Some(q) = val.strip_prefix('"') {
                &q[..q.find('"')?]
            } else {
                val.split([',', ' ', '\r']).next().unwrap_or("")
            });
        }
        rest = after;
    }
}

/// Status code, Call-ID and (for 401) the WWW-Authenticate value of a response.
fn parse(resp: &str) -> Option<(u16, &str, Option<&str>)> {
    let status: u16 = resp.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()?;
    let mut call_id = None;
    let mut www = None;
    for line in resp.split("\r\n").skip(1) {
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        let name = name.trim();
        if name.eq_ignore_ascii_case("Call-ID") || name == "i" {
            call_id = Some(value.trim());
        } else if name.eq_ignore_ascii_case("WWW-Authenticate") {
            www = Some(value.trim());
        }
    }
    Some((status, call_id?, www))
}

fn main() {
    let args = parse_args();
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap_or_else(|e| die(&format!("bind: {e}")));
    let _ = socket2::SockRef::from(&sock).set_recv_buffer_size(8 << 20);
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(8 << 20);
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let local = sock.local_addr().unwrap();
    let domain = args.domain.clone();
    let request_uri = format!("sip:{domain}");
    let ha2 = md5hex(&["REGISTER", &request_uri]);
    let mut uas: Vec<Ua> = (0..args.window)
        .map(|i| Ua {
            user: format!("u{i}"),
            ha1_realm: String::new(),
            ha1: String::new(),
            cseq: 0,
            phase: Phase::Challenge,
            sent_at: Instant::now(),
            last: Vec::new(),
        })
        .collect();

    let build = |ua: &mut Ua, i: usize, auth: Option<(&str, Option<&str>, &str)>| {
        ua.cseq += 1;
        let mut m = String::with_capacity(700);
        let _ = write!(
            m,
            "REGISTER {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {local};branch=z9hG4bKd{i}x{c};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{domain}>;tag=d{i}\r\nTo: <sip:{u}@{domain}>\r\nCall-ID: rb-{i}@driver\r\nCSeq: {c} REGISTER\r\nContact: <sip:{u}@{local}>\r\nExpires: 3600\r\n",
            u = ua.user,
            c = ua.cseq
        );
        if let Some((realm, opaque, nonce)) = auth {
            if ua.ha1_realm != realm {
                ua.ha1 = md5hex(&[&ua.user, realm, &args.password]);
                ua.ha1_realm = realm.to_string();
            }
            let cnonce = format!("{:08x}", ua.cseq.wrapping_mul(2_654_435_761) ^ i as u32);
            let response = md5hex(&[&ua.ha1, nonce, "00000001", &cnonce, "auth", &ha2]);
            let _ = write!(
                m,
                "Authorization: Digest username=\"{u}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{request_uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc=00000001",
                u = ua.user
            );
            if let Some(o) = opaque {
                let _ = write!(m, ", opaque=\"{o}\"");
            }
            m.push_str("\r\n");
        }
        m.push_str("Content-Length: 0\r\n\r\n");
        ua.last = m.into_bytes();
        ua.phase = if auth.is_some() {
            Phase::Answer
        } else {
            Phase::Challenge
        };
        ua.sent_at = Instant::now();
    };

    let send = |sock: &UdpSocket, bytes: &[u8]| loop {
        match sock.send_to(bytes, args.target) {
            Ok(_) => return,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                std::thread::yield_now()
            }
            Err(_) => return, // e.g. ECONNREFUSED from an earlier datagram: keep going
        }
    };

    for (i, ua) in uas.iter_mut().enumerate() {
        build(ua, i, None);
        send(&sock, &ua.last);
    }

    let start = Instant::now();
    let warmup = Duration::from_secs_f64(args.warmup);
    let end = warmup + Duration::from_secs_f64(args.duration);
    let (mut completed, mut challenges, mut timeouts, mut errors) = (0u64, 0u64, 0u64, 0u64);
    let (mut measured_from, mut completed_at_start) = (None::<Instant>, 0u64);
    let mut first_error: Option<String> = None;
    let mut buf = vec![0u8; 65_536];
    let mut last_sweep = Instant::now();
    loop {
        let now = Instant::now();
        let elapsed = now - start;
        if measured_from.is_none() && elapsed >= warmup {
            measured_from = Some(now);
            completed_at_start = completed;
        }
        if elapsed >= end {
            break;
        }
        match sock.recv_from(&mut buf) {
            Ok((n, _)) => {
                let Ok(text) = std::str::from_utf8(&buf[..n]) else {
                    errors += 1;
                    continue;
                };
                let Some((status, call_id, www)) = parse(text) else {
                    errors += 1;
                    continue;
                };
                let Some(i) = call_id
                    .strip_prefix("rb-")
                    .and_then(|r| r.split('@').next())
                    .and_then(|n| n.parse::<usize>().ok())
                    .filter(|&i| i < uas.len())
                else {
                    errors += 1;
                    continue;
                };
                if status < 200 {
                    continue;
                }
                let ua = &mut uas[i];
                // The CSeq must be the outstanding one, else it is a late answer to a resend.
                let cseq_ok = text.contains(&format!("\r\nCSeq: {} REGISTER", ua.cseq));
                if !cseq_ok {
                    continue;
                }
                match (ua.phase, status) {
                    (Phase::Challenge, 401) => {
                        let Some(www) = www else {
                            errors += 1;
                            continue;
                        };
                        challenges += 1;
                        let realm = directive(www, "realm").unwrap_or("").to_string();
                        let nonce = directive(www, "nonce").unwrap_or("").to_string();
                        let opaque = directive(www, "opaque").map(str::to_string);
                        build(ua, i, Some((&realm, opaque.as_deref(), &nonce)));
                        send(&sock, &ua.last);
                    }
                    (Phase::Answer, 200) => {
                        completed += 1;
                        build(ua, i, None);
                        send(&sock, &ua.last);
                    }
                    _ => {
                        errors += 1;
                        if first_error.is_none() {
                            first_error = Some(text.lines().next().unwrap_or("").to_string());
                        }
                        build(ua, i, None);
                        send(&sock, &ua.last);
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {}
            Err(_) => {}
        }
        if now - last_sweep > Duration::from_millis(100) {
            last_sweep = now;
            for (i, ua) in uas.iter_mut().enumerate() {
                if now - ua.sent_at > args.timeout {
                    timeouts += 1;
                    build(ua, i, None);
                    send(&sock, &ua.last);
                }
            }
        }
    }
    let measured = measured_from.map_or(0.0, |t| t.elapsed().as_secs_f64());
    let done = completed - completed_at_start;
    let rate = if measured > 0.0 {
        done as f64 / measured
    } else {
        0.0
    };
    println!(
        "{{\"challenged_registrations\": {done}, \"seconds\": {measured:.3}, \"registrations_per_sec\": {rate:.1}, \"transactions_per_sec\": {:.1}, \"challenges_total\": {challenges}, \"completed_total\": {completed}, \"timeouts\": {timeouts}, \"errors\": {errors}, \"first_error\": {:?}, \"window\": {}}}",
        2.0 * rate,
        first_error.unwrap_or_default(),
        args.window
    );
}
