//! The proxy core's cost per message, no sockets: `proxy::Core::handle` on the INVITE that
//! `scripts/bench-forward.sh` floods (udp-flood's 583-byte INVITE with an SDP body), for a
//! registered AOR, as the forwarding benchmark's shard sees it. The gap between sipshard's CPU
//! per message at saturation and the bare forwarder's (issue 20) is this figure plus the
//! receive loop's bookkeeping.
//!
//! Run with `cargo bench --bench core` (pin it, e.g. `taskset -c 1`, on a noisy machine).
//!
//! Benchmark ids:
//!
//! - `core/forward_invite`: copy the datagram into the shard's receive buffer (as recvmmsg
//!   does), then `Core::handle`: parse, validate, look up, rewrite in place. The copy is
//!   measured on its own as `core/copy`.
//! - `core/options_reply`: an OPTIONS for the proxy itself, answered in the same buffer.
//!
//! Wall time on a shared machine moves by 10-20 % between runs. For a count that does not,
//! `CORE_ITERATIONS=N` skips criterion and handles the INVITE N times, for an instruction
//! count under callgrind:
//!
//! ```text
//! cargo bench --bench core --no-run
//! CORE_ITERATIONS=100000 valgrind --tool=callgrind --callgrind-out-file=/tmp/core.cg \
//!     target/release/deps/core-HASH --bench
//! ```
//!
//! (instructions per message = the total `Ir` / N, less the setup, which a run with N = 0
//! measures.)

use std::net::SocketAddr;

use criterion::{black_box, criterion_group, Criterion, Throughput};
use sipshard::identity::LocalIdentity;
use sipshard::location::Now;
use sipshard::proxy::flow::FlowKey;
use sipshard::proxy::{Action, Core, ProxyConfig};
use sipshard::sip::rewrite::DEFAULT_HEADROOM;
use sipshard::sip::{PacketBuf, Source, Transport};

const PROXY: &str = "127.0.0.1:5060";
const SINK: &str = "127.0.0.1:7099";
const FLOODER: &str = "127.0.0.1:40000";

const REGISTER: &str = "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:7099;branch=z9hG4bKreg1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:bench@127.0.0.1:5060>;tag=r1\r\n\
To: <sip:bench@127.0.0.1:5060>\r\n\
Call-ID: reg-bench@127.0.0.1\r\n\
CSeq: 1 REGISTER\r\n\
Contact: <sip:bench@127.0.0.1:7099>\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

/// udp-flood's INVITE, as scripts/udp-tools sends it (the file needs only `std`).
#[path = "../scripts/udp-tools/src/invite.rs"]
mod flood;

/// The flooder's INVITE with its counter at 1.
fn invite() -> String {
    let proxy: SocketAddr = PROXY.parse().expect("address");
    flood::invite_template("bench", proxy, "UDP").replace(flood::SLOT, "0000000001")
}

const OPTIONS: &str = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-opt1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@127.0.0.1>;tag=p1\r\n\
To: <sip:127.0.0.1:5060>\r\n\
Call-ID: opt-1@127.0.0.1\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n";

/// A core with the flooder's AOR registered, configured as `sipshard --listen PROXY`.
fn core_with_bench_registered(now: Now) -> Core {
    let listen: SocketAddr = PROXY.parse().expect("address");
    let local = LocalIdentity::new(&[(Transport::Udp, listen)], &[], None, &[], None);
    let cfg: &'static ProxyConfig = Box::leak(Box::new(ProxyConfig {
        edge_path: false,
        ..ProxyConfig::new(local, FlowKey::new([7; 32]))
    }));
    let mut core = Core::new(cfg);
    let mut pkt = PacketBuf::from_message(REGISTER.as_bytes(), DEFAULT_HEADROOM);
    let src = Source::udp(SINK.parse().expect("address"));
    let action = core.handle(now, src, 0, &mut pkt);
    assert!(
        matches!(action, Action::Reply { .. }) && pkt.as_slice().starts_with(b"SIP/2.0 200"),
        "the REGISTER is accepted"
    );
    core
}

/// `handle` for `msg` from the flooder, into a reused receive buffer; `expect` checks the
/// first result so that the bench measures the path it claims to.
fn bench_handle(c: &mut Criterion, id: &str, msg: &[u8], expect: fn(&Action, &[u8]) -> bool) {
    let now = Now {
        unix_ms: 1_700_000_000_000,
    };
    let mut core = core_with_bench_registered(now);
    let mut pkt = PacketBuf::new(65_507, DEFAULT_HEADROOM);
    let src = Source::udp(FLOODER.parse().expect("address"));
    let receive = |pkt: &mut PacketBuf| {
        pkt.receive_slot()[..msg.len()].copy_from_slice(msg);
        pkt.set_received(msg.len());
    };
    receive(&mut pkt);
    let first = core.handle(now, src, 0, &mut pkt);
    assert!(
        expect(&first, pkt.as_slice()),
        "{id}: {first:?}\n{}",
        String::from_utf8_lossy(pkt.as_slice())
    );
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Bytes(msg.len() as u64));
    g.bench_function(id, |b| {
        b.iter(|| {
            receive(&mut pkt);
            black_box(core.handle(now, src, 0, &mut pkt))
        })
    });
    g.finish();
}

fn core(c: &mut Criterion) {
    let invite = invite();
    bench_handle(c, "forward_invite", invite.as_bytes(), |a, bytes| {
        matches!(a, Action::Forward { to, .. } if to.addr.to_string() == SINK)
            && bytes.starts_with(b"INVITE sip:bench@127.0.0.1:7099 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=")
    });
    bench_handle(c, "options_reply", OPTIONS.as_bytes(), |a, bytes| {
        matches!(a, Action::Reply { .. }) && bytes.starts_with(b"SIP/2.0 200 OK\r\n")
    });
    let mut pkt = PacketBuf::new(65_507, DEFAULT_HEADROOM);
    let mut g = c.benchmark_group("core");
    g.throughput(Throughput::Bytes(invite.len() as u64));
    g.bench_function("copy", |b| {
        b.iter(|| {
            pkt.receive_slot()[..invite.len()].copy_from_slice(invite.as_bytes());
            pkt.set_received(invite.len());
            black_box(pkt.as_slice().len())
        })
    });
    g.finish();
}

/// `CORE_ITERATIONS=N`: the INVITE handled N times, nothing printed, for callgrind.
fn count_only(n: u64) {
    let now = Now {
        unix_ms: 1_700_000_000_000,
    };
    let msg = invite();
    let mut core = core_with_bench_registered(now);
    let mut pkt = PacketBuf::new(65_507, DEFAULT_HEADROOM);
    let src = Source::udp(FLOODER.parse().expect("address"));
    for _ in 0..n {
        pkt.receive_slot()[..msg.len()].copy_from_slice(msg.as_bytes());
        pkt.set_received(msg.len());
        let _ = black_box(core.handle(now, src, 0, &mut pkt));
    }
}

criterion_group!(benches, core);

fn main() {
    if let Some(n) = std::env::var("CORE_ITERATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        count_only(n);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
