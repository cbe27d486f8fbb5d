//! Message-layer benchmarks: sipshard's parser against rsip, and the forwarding rewrite.
//!
//! Run with `cargo bench --bench message` (pin it, e.g. `taskset -c 1`, on a noisy machine).
//!
//! Benchmark ids (each with `Throughput::Bytes` of the datagram):
//!
//! - `parse/sipshard/<msg>`: copy the datagram into a reusable receive buffer (the parser
//!   unfolds in place, so every iteration needs pristine bytes; the copy is *inside* the timed
//!   loop and measured on its own as `copy/<msg>`), parse it and touch everything a proxy reads:
//!   top Via with branch, Max-Forwards, Call-ID, CSeq, From and To tags and the Request-URI; for
//!   the response every Via with its branch; for REGISTER also the Contact and the Authorization
//!   parameters. sipshard is lazy, so skipping those accessors would flatter it. The view is
//!   parsed in place (`Message::parse_in`); `parse/sipshard_by_value/<msg>` is the same with
//!   `Message::parse` returning the 3 KB view by value and the caller moving it out of the
//!   `Result`.
//! - `parse/rsip/<msg>`: `rsip::SipMessage::try_from(&bytes[..])` on the same bytes, plus the
//!   cheap untyped look-ups of the same headers (rsip's typed conversions re-tokenize and
//!   allocate; leaving them out gives rsip the benefit of the doubt).
//! - `parse/sipshard_untyped/<msg>`: like for like with `parse/rsip`: sipshard's parse plus the
//!   same untyped look-ups `parse/rsip` makes (raw values of the same headers, the number of
//!   Max-Forwards), so that both sides do the same work.
//! - `parse/rsip_typed/<msg>`: for information, rsip doing the same work as sipshard (typed Via
//!   with branch, typed From/To tags, CSeq number, typed Contact and Authorization).
//! - `rewrite/sipshard/<msg>`: receive into a [`PacketBuf`] (headroom 512), parse, touch as above,
//!   build the edits a proxy makes when forwarding and apply them in place.
//! - `copy/<msg>`: the memcpy into the receive buffer alone.

use std::mem::MaybeUninit;

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rsip::prelude::*;
use sipshard::sip::{Edits, HeaderName, Message, PacketBuf};

#[path = "support/messages.rs"]
mod support;
use support::{messages, touch, touch_untyped};

/// rsip: the cheap untyped look-ups of the same headers.
fn rsip_touch(m: &rsip::SipMessage) -> usize {
    let mut acc = 0usize;
    if let rsip::SipMessage::Request(r) = m {
        // rsip parses the Request-URI while parsing the message.
        black_box(&r.uri);
        acc += m.via_header().expect("Via").value().len();
    } else {
        for h in m.headers().iter() {
            if let rsip::Header::Via(v) = h {
                acc += v.value().len();
            }
        }
    }
    if m.is_request() {
        acc += m
            .max_forwards_header()
            .expect("Max-Forwards")
            .num()
            .expect("Max-Forwards number") as usize;
    }
    acc += m.call_id_header().expect("Call-ID").value().len();
    acc += m.cseq_header().expect("CSeq").value().len();
    acc += m.from_header().expect("From").value().len();
    acc += m.to_header().expect("To").value().len();
    if m.is_request() {
        if let Some(a) = m.authorization_header() {
            acc += a.value().len();
            acc += m.contact_header().expect("Contact").value().len();
        }
    }
    acc
}

/// rsip doing the work `touch` does: typed headers.
fn rsip_touch_typed(m: &rsip::SipMessage) -> usize {
    let mut acc = 0usize;
    if let rsip::SipMessage::Request(r) = m {
        acc += r.uri.host_with_port.to_string().len();
        let via = m.via_header().expect("Via").typed().expect("typed Via");
        acc += via.branch().expect("branch").to_string().len();
    } else {
        for h in m.headers().iter() {
            if let rsip::Header::Via(v) = h {
                let via = v.typed().expect("typed Via");
                acc += via.branch().expect("branch").to_string().len();
            }
        }
    }
    if m.is_request() {
        acc += m
            .max_forwards_header()
            .expect("Max-Forwards")
            .num()
            .expect("Max-Forwards number") as usize;
    }
    acc += m.call_id_header().expect("Call-ID").value().len();
    acc += m.cseq_header().expect("CSeq").seq().expect("CSeq number") as usize;
    acc += m
        .from_header()
        .expect("From")
        .tag()
        .expect("typed From")
        .map_or(0, |t| t.to_string().len());
    acc += m
        .to_header()
        .expect("To")
        .tag()
        .expect("typed To")
        .map_or(0, |t| t.to_string().len());
    if m.is_request() {
        if let Some(a) = m.authorization_header() {
            let a = a.typed().expect("typed Authorization");
            acc += a.username.len() + a.realm.len() + a.nonce.len() + a.response.len();
            let c = m
                .contact_header()
                .expect("Contact")
                .typed()
                .expect("typed Contact");
            acc += c.params.len();
        }
    }
    acc
}

/// Where the proxy forwards the INVITE (the registered contact of the Request-URI's AOR).
const CONTACT_URI: &[u8] = b"sip:bob@198.51.100.7:5062;transport=udp";
const OUR_VIA: &[u8] = b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK";
const RECORD_ROUTE: &[u8] = b"Record-Route: <sip:192.0.2.10;lr>\r\n";
/// The source address the request came from (differs from its top Via's sent-by).
const RECEIVED: &[u8] = b";received=192.0.2.55;rport=5062";

/// A stateless branch: 32 hex digits of a hash of the incoming top Via branch and Call-ID.
fn branch_hex(branch: &[u8], call_id: &[u8]) -> [u8; 32] {
    let mut h = [0xcbf2_9ce4_8422_2325u64, 0x6c62_272e_07bb_0142u64];
    for (i, &b) in branch.iter().chain(call_id).enumerate() {
        let lane = &mut h[i & 1];
        *lane = (*lane ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        let nib = (h[i / 16] >> ((i % 16) * 4)) & 0xf;
        *o = b"0123456789abcdef"[nib as usize];
    }
    out
}

/// Insert our Via above the top one.
fn push_via(m: &Message<'_>, e: &mut Edits) {
    let via = m.top_via().expect("top Via");
    let hex = branch_hex(via.branch().unwrap_or(b""), m.call_id().unwrap_or(b""));
    let at = m.field_at(via.field).line.start as usize;
    e.insert_with(at, |w| {
        w.bytes(OUR_VIA).bytes(&hex).bytes(b"\r\n");
    });
}

/// Decrement Max-Forwards in place (the caller has answered 483 when it is 0).
fn decrement_max_forwards(m: &Message<'_>, e: &mut Edits) {
    let mf = m.max_forwards().expect("Max-Forwards").expect("present");
    let field = m.field(HeaderName::MaxForwards).expect("present");
    e.replace_with(field.value, |w| {
        w.num(u64::from(mf - 1));
    });
}

/// The edits a proxy makes forwarding the message `m`.
fn forwarding_edits(m: &Message<'_>, e: &mut Edits) {
    e.clear();
    match m.method() {
        Some(sipshard::sip::Method::Register) => {
            push_via(m, e);
            decrement_max_forwards(m, e);
        }
        Some(_) => {
            push_via(m, e);
            let top = m.top_via().expect("top Via");
            e.insert(top.span.end as usize, RECEIVED);
            e.replace(m.request_uri_span().expect("request"), CONTACT_URI);
            decrement_max_forwards(m, e);
            // No Record-Route yet: ours goes last in the header section (RFC 3261 16.6 step 4
            // only orders it above existing values).
            e.insert(m.headers_end, RECORD_ROUTE);
        }
        None => {
            // A response: pop our Via, the whole line when it holds only that value.
            let top = m.top_via().expect("top Via");
            let line = m.field_at(top.field).line;
            let rest_on_line = m.vias().nth(1).map(|v| v.expect("Via"));
            match rest_on_line {
                Some(next) if next.field == top.field => e.remove(sipshard::sip::Span::new(
                    top.span.start as usize,
                    next.span.start as usize,
                )),
                _ => e.remove(line),
            }
        }
    }
}

const HEADROOM: usize = 512;
const MAX_DATAGRAM: usize = 4096;

/// The whole receive-parse-rewrite path for one datagram; returns the forwarded length.
fn rewrite_once(msg: &[u8], pkt: &mut PacketBuf, edits: &mut Edits) -> usize {
    pkt.receive_slot()[..msg.len()].copy_from_slice(msg);
    pkt.set_received(msg.len());
    {
        // Parsed where it stays: `Message` is 3 KB (its header index is inline).
        let mut slot = MaybeUninit::uninit();
        let m = Message::parse_in(&mut slot, pkt.as_mut_slice()).expect("parse");
        black_box(touch(m));
        forwarding_edits(m, edits);
    }
    edits.apply(pkt).expect("apply");
    pkt.len()
}

fn check(name: &str, msg: &[u8]) {
    let mut copy = msg.to_vec();
    let m = Message::parse(&mut copy).unwrap_or_else(|e| panic!("{name}: {e}"));
    touch(&m);
    if m.is_request() {
        m.validate_request()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let r = rsip::SipMessage::try_from(msg).unwrap_or_else(|e| panic!("{name}: rsip: {e}"));
    rsip_touch(&r);
    rsip_touch_typed(&r);

    let mut pkt = PacketBuf::new(MAX_DATAGRAM, HEADROOM);
    let mut edits = Edits::new();
    rewrite_once(msg, &mut pkt, &mut edits);
    let mut out = pkt.as_slice().to_vec();
    let text = String::from_utf8_lossy(&out).into_owned();
    let fwd = Message::parse(&mut out).unwrap_or_else(|e| panic!("{name}: rewritten: {e}"));
    match name {
        "invite" => {
            assert!(text.starts_with(
                "INVITE sip:bob@198.51.100.7:5062;transport=udp SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK"
            ));
            assert!(text.contains(
                "\r\nVia: SIP/2.0/UDP client.atlanta.example.com:5060;branch=z9hG4bK74bf9\
;received=192.0.2.55;rport=5062\r\nMax-Forwards: 69\r\n"
            ));
            assert!(text.contains("\r\nRecord-Route: <sip:192.0.2.10;lr>\r\n\r\nv=0"));
            assert_eq!(fwd.vias().count(), 2);
            fwd.validate_request().unwrap();
        }
        "ok200" => {
            assert!(text
                .starts_with("SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP proxy.atlanta.example.com:5060;"));
            assert_eq!(fwd.vias().count(), 2);
        }
        "register" => {
            assert!(text.contains("\r\nMax-Forwards: 69\r\n"));
            assert_eq!(fwd.vias().count(), 2);
            fwd.validate_request().unwrap();
        }
        _ => unreachable!(),
    }
    assert_eq!(fwd.bytes(fwd.body), m.bytes(m.body));
}

fn benches(c: &mut Criterion) {
    let msgs = messages();
    for (name, msg) in &msgs {
        check(name, msg);
    }

    let mut g = c.benchmark_group("parse");
    for (name, msg) in &msgs {
        g.throughput(Throughput::Bytes(msg.len() as u64));
        let mut buf = msg.clone();
        g.bench_with_input(BenchmarkId::new("sipshard", name), msg, |b, msg| {
            b.iter(|| {
                buf.copy_from_slice(black_box(msg));
                let mut slot = MaybeUninit::uninit();
                let m = Message::parse_in(&mut slot, &mut buf).expect("parse");
                touch(m)
            })
        });
        g.bench_with_input(BenchmarkId::new("sipshard_untyped", name), msg, |b, msg| {
            b.iter(|| {
                buf.copy_from_slice(black_box(msg));
                let mut slot = MaybeUninit::uninit();
                let m = Message::parse_in(&mut slot, &mut buf).expect("parse");
                touch_untyped(m)
            })
        });
        g.bench_with_input(
            BenchmarkId::new("sipshard_by_value", name),
            msg,
            |b, msg| {
                b.iter(|| {
                    buf.copy_from_slice(black_box(msg));
                    let m = Message::parse(&mut buf).expect("parse");
                    touch(&m)
                })
            },
        );
        g.bench_with_input(BenchmarkId::new("rsip", name), msg, |b, msg| {
            b.iter(|| {
                let m = rsip::SipMessage::try_from(black_box(&msg[..])).expect("rsip");
                rsip_touch(&m)
            })
        });
        g.bench_with_input(BenchmarkId::new("rsip_typed", name), msg, |b, msg| {
            b.iter(|| {
                let m = rsip::SipMessage::try_from(black_box(&msg[..])).expect("rsip");
                rsip_touch_typed(&m)
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("rewrite");
    for (name, msg) in &msgs {
        g.throughput(Throughput::Bytes(msg.len() as u64));
        let mut pkt = PacketBuf::new(MAX_DATAGRAM, HEADROOM);
        let mut edits = Edits::new();
        g.bench_with_input(BenchmarkId::new("sipshard", name), msg, |b, msg| {
            b.iter(|| rewrite_once(black_box(msg), &mut pkt, &mut edits))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("copy");
    for (name, msg) in &msgs {
        g.throughput(Throughput::Bytes(msg.len() as u64));
        let mut buf = msg.clone();
        g.bench_with_input(BenchmarkId::from_parameter(name), msg, |b, msg| {
            b.iter(|| {
                buf.copy_from_slice(black_box(msg));
                black_box(&mut buf);
            })
        });
    }
    g.finish();
}

/// The registrar's first step on one REGISTER from behind NAT (a private Via and Contact from
/// a public source), by `--nat` mode: what the NAT decision adds to the work of a REGISTER
/// (parse and plan; the commit is the same in every mode). scripts/bench-nat.sh measures the
/// whole registrar over sockets.
fn register_plan(c: &mut Criterion) {
    use sipshard::identity::LocalIdentity;
    use sipshard::location::{LocationTable, Now};
    use sipshard::registrar::{plan, NatMode, RegistrarConfig};
    use sipshard::sip::{Source, Transport};

    let register = b"REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bKnatbench;rport\r\n\
Max-Forwards: 70\r\nTo: <sip:bob@example.com>\r\nFrom: <sip:bob@example.com>;tag=nb\r\n\
Call-ID: nat-bench@10.0.0.2\r\nCSeq: 7 REGISTER\r\n\
Contact: <sip:bob@10.0.0.2:5060>;expires=600\r\nContent-Length: 0\r\n\r\n"
        .to_vec();
    let listen = "192.0.2.10:5060".parse().unwrap();
    let local = LocalIdentity::new(
        &[(Transport::Udp, listen)],
        &[],
        None,
        &["example.com".into()],
        None,
    );
    let table = LocationTable::new();
    let src = Source::udp("198.51.100.7:40312".parse().unwrap());
    let now = Now {
        unix_ms: 1_700_000_000_000,
    };
    let mut g = c.benchmark_group("register_plan");
    for (name, nat) in [
        ("off", NatMode::Off),
        ("auto", NatMode::Auto),
        ("always", NatMode::Always),
    ] {
        let cfg = RegistrarConfig {
            nat,
            ..RegistrarConfig::default()
        };
        let mut buf = register.clone();
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                buf.copy_from_slice(black_box(&register));
                let mut slot = MaybeUninit::uninit();
                let m = Message::parse_in(&mut slot, &mut buf).expect("parse");
                let p = plan(&cfg, &local, &table, m, src, now).expect("a plan");
                black_box(p.changes());
            })
        });
    }
    g.finish();
}

criterion_group!(message, benches, register_plan);
criterion_main!(message);
