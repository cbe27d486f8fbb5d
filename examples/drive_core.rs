//! The sans-I/O core's front door: `proxy::Core` driven with byte strings, no sockets.
//!
//!   cargo run --release --example drive_core
//!
//! Bob registers, Alice's INVITE for him is rewritten and sent to his contact, and his 200 OK
//! comes back through the proxy to Alice. Each step hands one datagram to `Core::handle` with
//! the time and where it came from, and prints the `Action` and the buffer as it now is.

use std::net::SocketAddr;

use sipshard::identity::LocalIdentity;
use sipshard::location::Now;
use sipshard::proxy::flow::FlowKey;
use sipshard::proxy::{Action, Core, ProxyConfig};
use sipshard::sip::rewrite::DEFAULT_HEADROOM;
use sipshard::sip::{PacketBuf, Source, Transport};

const PROXY: &str = "192.0.2.10:5060";
const BOB: &str = "192.0.2.60:5062";
const ALICE: &str = "203.0.113.5:5060";

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.60:5062;branch=z9hG4bKreg1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:bob@example.com>;tag=b1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: reg-bob@192.0.2.60\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:bob@192.0.2.60:5062>\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 203.0.113.5:5060;branch=z9hG4bKinv1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.net>;tag=a1\r\n\
To: <sip:bob@example.com>\r\n\
Call-ID: call-1@203.0.113.5\r\n\
CSeq: 1 INVITE\r\n\
Contact: <sip:alice@203.0.113.5>\r\n\
Content-Length: 0\r\n\r\n";

fn main() {
    let listen: SocketAddr = PROXY.parse().unwrap();
    // Built once and shared read-only by every shard, hence `'static`.
    let local = LocalIdentity::new(
        &[(Transport::Udp, listen)],
        &[],
        None,
        &["example.com".to_string()],
        None,
    );
    let cfg: &'static ProxyConfig = Box::leak(Box::new(ProxyConfig {
        record_route: true,
        ..ProxyConfig::new(local, FlowKey::new([7; 32]))
    }));
    let mut core = Core::new(cfg);
    // The core reads no clock: the runtime passes the time in.
    let now = Now {
        unix_ms: 1_700_000_000_000,
    };

    let reply = step(&mut core, now, "bob registers", BOB, REGISTER);
    assert!(reply.starts_with("SIP/2.0 200 OK"), "{reply}");

    let invite = step(&mut core, now, "alice calls bob", ALICE, INVITE);
    assert!(invite.starts_with("INVITE sip:bob@192.0.2.60:5062 SIP/2.0"));

    // Bob answers with the Via stack he received: the proxy's on top, then Alice's.
    let vias: Vec<&str> = invite.lines().filter(|l| l.starts_with("Via: ")).collect();
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}\r\nRecord-Route: <sip:{PROXY};lr>\r\n\
From: <sip:alice@example.net>;tag=a1\r\nTo: <sip:bob@example.com>;tag=b2\r\n\
Call-ID: call-1@203.0.113.5\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@192.0.2.60:5062>\r\n\
Content-Length: 0\r\n\r\n",
        vias.join("\r\n")
    );
    let back = step(&mut core, now, "bob answers", BOB, &ok);
    assert_eq!(back.matches("Via: ").count(), 1, "our Via is gone");
}

/// Hand one datagram from `from` to the core; print what it decided and the buffer after.
fn step(core: &mut Core, now: Now, what: &str, from: &str, text: &str) -> String {
    let mut pkt = PacketBuf::from_message(text.as_bytes(), DEFAULT_HEADROOM);
    let src = Source::udp(from.parse().unwrap());
    let action = core.handle(now, src, 0, &mut pkt);
    let out = String::from_utf8_lossy(pkt.as_slice()).into_owned();
    match action {
        Action::Forward { to, socket } => {
            println!(
                "== {what}: forward to {} over {:?} from listener {socket}",
                to.addr, to.transport
            )
        }
        Action::Reply { to, socket } => {
            println!(
                "== {what}: reply to {} over {:?} from listener {socket}",
                to.addr, to.transport
            )
        }
        Action::Drop(reason) => println!("== {what}: dropped ({})", reason.name()),
    }
    println!("{}\n", out.replace("\r\n", "\n").trim_end());
    out
}
