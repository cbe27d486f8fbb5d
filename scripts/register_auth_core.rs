//! The challenged REGISTER through the sans-I/O core alone, for instruction counts:
//! REGISTER -> 401 -> REGISTER with a Digest answer -> 200, `N` times, no sockets.
//!
//! The wall-clock benchmark (scripts/bench-register-auth.sh) is dominated by the kernel and is
//! noisy on a shared machine; this counts only what sipshard's own code costs, repeatably:
//!
//!   cargo build --release --example register-auth-core
//!   valgrind --tool=callgrind --toggle-collect='*Core::handle*' \
//!       target/release/examples/register-auth-core 20000
//!
//! and divide the instructions by N (each iteration is two `Core::handle` calls for the
//! REGISTER pair; the user agent's own MD5 work is outside the toggle).

#[path = "digest_md5.rs"]
mod digest_md5;

use std::net::SocketAddr;
use std::sync::Arc;

use sipshard::auth::{AuthConfig, AuthMode, Authenticator, UserDb};
use sipshard::identity::LocalIdentity;
use sipshard::location::Now;
use sipshard::proxy::{Action, Core, ProxyConfig};
use sipshard::sip::rewrite::DEFAULT_HEADROOM;
use sipshard::sip::{PacketBuf, Source, Transport};

use digest_md5::md5hex;

const DOMAIN: &str = "bench.example.com";
const PASSWORD: &str = "bench-pw";
const USERS: usize = 200;

/// The value of `name="..."` in a challenge.
fn quoted<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text.find(&format!("{name}=\"")).expect("directive") + name.len() + 2;
    let len = text[start..].find('"').expect("closing quote");
    &text[start..start + len]
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let listen: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let local = LocalIdentity::new(
        &[(Transport::Udp, listen)],
        &[],
        None,
        &[DOMAIN.to_string()],
        None,
    );
    let cfg: &'static ProxyConfig = Box::leak(Box::new(ProxyConfig::new(
        local,
        sipshard::proxy::flow::FlowKey::new([7; 32]),
    )));
    let users: String = (0..USERS).map(|i| format!("u{i}:{PASSWORD}\n")).collect();
    // As sipshard loads it: HA1s precomputed for the realm.
    let db = UserDb::parse(users.as_bytes())
        .expect("users")
        .for_realm(DOMAIN.as_bytes());
    let authn =
        Authenticator::new(AuthConfig::new(DOMAIN, b"secret".to_vec()), Arc::new(db)).unwrap();
    let mut core = Core::new(cfg);
    core.set_auth(authn, AuthMode::Register, 1);

    let ua: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let request_uri = format!("sip:{DOMAIN}");
    let ha2 = md5hex(&["REGISTER", &request_uri]);
    let now = Now {
        unix_ms: 1_700_000_000_000,
    };
    let mut ok = 0usize;
    for k in 0..n {
        let i = k % USERS;
        let u = format!("u{i}");
        let cseq = 2 * k + 1;
        let head = format!(
            "REGISTER {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bKd{i}x{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{DOMAIN}>;tag=d{i}\r\nTo: <sip:{u}@{DOMAIN}>\r\nCall-ID: rb-{i}@driver\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{u}@{ua}>\r\nExpires: 3600\r\n"
        );
        let first = format!("{head}Content-Length: 0\r\n\r\n");
        let mut pkt = PacketBuf::from_message(first.as_bytes(), DEFAULT_HEADROOM);
        let a = core.handle(now, Source::udp(ua), 0, &mut pkt);
        let challenge = String::from_utf8_lossy(pkt.as_slice()).into_owned();
        assert!(
            matches!(a, Action::Reply { .. }) && challenge.starts_with("SIP/2.0 401"),
            "{challenge}"
        );
        let nonce = quoted(&challenge, "nonce");
        let cnonce = format!("{:08x}", k as u32 ^ 0x9e37_79b9);
        let ha1 = md5hex(&[&u, DOMAIN, PASSWORD]);
        let response = md5hex(&[&ha1, nonce, "00000001", &cnonce, "auth", &ha2]);
        let cseq = cseq + 1;
        let second = format!(
            "REGISTER {request_uri} SIP/2.0\r\nVia: SIP/2.0/UDP {ua};branch=z9hG4bKd{i}x{cseq};rport\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{DOMAIN}>;tag=d{i}\r\nTo: <sip:{u}@{DOMAIN}>\r\nCall-ID: rb-{i}@driver\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{u}@{ua}>\r\nExpires: 3600\r\nAuthorization: Digest username=\"{u}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{request_uri}\", response=\"{response}\", algorithm=MD5, cnonce=\"{cnonce}\", qop=auth, nc=00000001\r\nContent-Length: 0\r\n\r\n"
        );
        let mut pkt = PacketBuf::from_message(second.as_bytes(), DEFAULT_HEADROOM);
        let a = core.handle(now, Source::udp(ua), 0, &mut pkt);
        ok += usize::from(
            matches!(a, Action::Reply { .. }) && pkt.as_slice().starts_with(b"SIP/2.0 200"),
        );
    }
    assert_eq!(ok, n, "every answer accepted");
    println!("{n} challenged registrations, all answered 200");
}
