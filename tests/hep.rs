//! SIP capture (`--hep`): a call through sipshard, captured by a real HEP receiver (sngrep,
//! Debian package `sngrep`), arrives whole, each message as received and as sent, with the
//! right addresses and transport; sampling at 0 % captures nothing and a sample is per call;
//! a dead collector never holds up forwarding.
//!
//! sngrep 1.6 as the receiver: `-L udp:127.0.0.1:PORT` listens for HEP, `-N -q` runs it without
//! its interface and quietly, `-O FILE` writes what it receives to a pcap file (each message in
//! a made-up Ethernet/IP/UDP or TCP frame with the addresses and ports of the HEP packet).
//! With `-L` and no `-d`, sngrep opens no capture device (checked: a SIP datagram sent on lo
//! meanwhile is not in the file), so the file holds only what came by HEP; a BPF filter is
//! no way to make sure of that, since sngrep then fails trying to install it on its HEP
//! listener ("Couldn't install filter"). SIGTERM stops it with the file complete. sngrep 1.6
//! writes every HEP packet into its file as a UDP frame, whatever the packet's IP protocol, so
//! the test of transports reads the HEP packets themselves (with a decoder of its own, not
//! `src/hep.rs`).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sipshard_testkit::peers::find_program;
use sipshard_testkit::scrape::{scrape, value};
use sipshard_testkit::sip::*;
use sipshard_testkit::ua::register;
use sipshard_testkit::{eventually, free_port, Proc, Proxy, Scratch, TcpUa, Ua};

/// sngrep listening for HEP on a free port of 127.0.0.1, writing a pcap file.
struct Sngrep {
    proc: Proc,
    addr: SocketAddr,
    pcap: std::path::PathBuf,
}

impl Sngrep {
    fn start(dir: &Path) -> Sngrep {
        let sngrep = find_program("sngrep").unwrap_or_else(|| {
            panic!("sngrep not found: apt-get install -y sngrep (or run scripts/test.sh)")
        });
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let pcap = dir.join("capture.pcap");
        let mut cmd = Command::new(sngrep);
        cmd.args(["-N", "-q", "-L", &format!("udp:{addr}"), "-O"])
            .arg(&pcap);
        let proc = Proc::spawn(dir, "sngrep", &mut cmd);
        // Listening once the port is taken.
        let up = eventually(Duration::from_secs(5), || UdpSocket::bind(addr).is_err());
        assert!(up, "sngrep did not listen on {addr}");
        Sngrep { proc, addr, pcap }
    }

    /// Give sipshard's capture a moment to flush (every 10 ms) and sngrep to write, stop it
    /// with SIGTERM, and read its file.
    fn stop(mut self) -> Vec<Captured> {
        std::thread::sleep(Duration::from_millis(300));
        self.proc.signal(libc::SIGTERM);
        let stopped = self.proc.wait_timeout(Duration::from_secs(5));
        assert!(stopped.is_some(), "sngrep did not stop on SIGTERM");
        let bytes = std::fs::read(&self.pcap)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.pcap.display()));
        read_pcap(&bytes)
    }
}

/// One packet of the pcap file.
#[derive(Debug)]
struct Captured {
    /// 17 (UDP) or 6 (TCP).
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
    payload: String,
}

/// The packets of a pcap file (link type Ethernet or Linux cooked capture, IPv4, UDP or TCP):
/// enough of the format to read what sngrep writes.
fn read_pcap(b: &[u8]) -> Vec<Captured> {
    assert!(b.len() >= 24, "not a pcap file: {} bytes", b.len());
    let le = b[..4] == [0xd4, 0xc3, 0xb2, 0xa1];
    let u32_at = |at: usize| {
        let x: [u8; 4] = b[at..at + 4].try_into().unwrap();
        if le {
            u32::from_le_bytes(x)
        } else {
            u32::from_be_bytes(x)
        }
    };
    let link = u32_at(20);
    let l2 = match link {
        1 => 14,
        113 => 16,
        other => panic!("pcap link type {other}"),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= b.len() {
        let len = u32_at(at + 8) as usize;
        let frame = &b[at + 16..(at + 16 + len).min(b.len())];
        at += 16 + len;
        out.extend(read_frame(&frame[l2.min(frame.len())..]));
    }
    out
}

/// An IPv4 packet with a UDP or TCP segment.
fn read_frame(ip: &[u8]) -> Option<Captured> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let proto = ip[9];
    let addr = |at: usize, port: &[u8]| {
        let ip: [u8; 4] = ip[at..at + 4].try_into().unwrap();
        SocketAddr::from((ip, u16::from_be_bytes([port[0], port[1]])))
    };
    let l4 = ip.get(ihl..)?;
    let header = match proto {
        17 => 8,
        6 => usize::from(*l4.get(12)? >> 4) * 4,
        _ => return None,
    };
    Some(Captured {
        proto,
        src: addr(12, &l4[0..2]),
        dst: addr(16, &l4[2..4]),
        payload: String::from_utf8_lossy(l4.get(header..)?).into_owned(),
    })
}

/// A HEP3 packet as received: its chunks walked, IPv4 only (what the tests send).
fn decode_hep(b: &[u8]) -> Option<Captured> {
    if b.get(..4)? != b"HEP3" || usize::from(u16::from_be_bytes([b[4], b[5]])) != b.len() {
        return None;
    }
    let (mut proto, mut ips, mut ports, mut payload) = (0, [[0u8; 4]; 2], [0u16; 2], &b[..0]);
    let mut at = 6;
    while at + 6 <= b.len() {
        let kind = u16::from_be_bytes([b[at + 2], b[at + 3]]);
        let len = usize::from(u16::from_be_bytes([b[at + 4], b[at + 5]]));
        let value = b.get(at + 6..at + len)?;
        match kind {
            0x0002 => proto = value[0],
            0x0003 | 0x0004 => ips[usize::from(kind - 3)] = value.try_into().ok()?,
            0x0007 | 0x0008 => {
                ports[usize::from(kind - 7)] = u16::from_be_bytes([value[0], value[1]])
            }
            0x000f => payload = value,
            _ => {}
        }
        at += len;
    }
    Some(Captured {
        proto,
        src: SocketAddr::from((ips[0], ports[0])),
        dst: SocketAddr::from((ips[1], ports[1])),
        payload: String::from_utf8_lossy(payload).into_owned(),
    })
}

/// Assert that the capture holds a message starting with `start` (and of Call-ID `call`)
/// going from `src` to `dst` over `proto`.
fn assert_captured(
    got: &[Captured],
    call: &str,
    start: &str,
    proto: u8,
    src: SocketAddr,
    dst: SocketAddr,
) {
    let found = got.iter().any(|c| {
        c.proto == proto
            && c.src == src
            && c.dst == dst
            && c.payload.starts_with(start)
            && c.payload.contains(&format!("Call-ID: {call}\r\n"))
    });
    let summary: Vec<String> = got
        .iter()
        .map(|c| {
            format!(
                "{} {} -> {} {}",
                c.proto,
                c.src,
                c.dst,
                start_line(&c.payload)
            )
        })
        .collect();
    assert!(
        found,
        "no {start:?} of {call} from {src} to {dst} (protocol {proto}) in the capture:\n{}",
        summary.join("\n")
    );
}

fn invite(uac: &Ua, ruri: &str, call_id: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{call_id}1;rport\nMax-Forwards: 70\nTo: Bob <{ruri}>\nFrom: Alice <sip:alice@atlanta.example.com>;tag=9fxced76sl\nCall-ID: {call_id}\nCSeq: 1 INVITE\nContact: <sip:alice@{me}>\nContent-Type: application/sdp\n\n{SDP}",
        me = uac.addr
    )
}

const UDP: u8 = 17;
const TCP: u8 = 6;

/// RFC 3665 section 3.1 through sipshard (2 shards, record-routing) with capture on: the
/// REGISTER and its 200, then INVITE/180/200/ACK/BYE/200, each in the capture as received from
/// its sender and as sent to its receiver.
#[test]
fn a_call_is_captured_whole_by_sngrep() {
    let dir = Scratch::new("hep-call");
    let sngrep = Sngrep::start(&dir);
    let hep = format!("udp:{}", sngrep.addr);
    let p = Proxy::builder()
        .dir(&dir)
        .args(&[
            "--domain",
            "biloxi.example.com",
            "--record-route",
            "--shards",
            "2",
        ])
        .args(&["--hep", &hep, "--hep-id", "2001"])
        .start();
    let (alice, bob) = (Ua::new(), Ua::new());
    let contact = format!("<sip:bob@{}>", bob.addr);
    let r = register(&bob, p.addr, "bob", "biloxi.example.com", &contact, 1, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");

    alice.send(
        p.addr,
        &invite(&alice, "sip:bob@biloxi.example.com", "hep-call-1"),
    );
    let inv = bob.recv();
    for status in ["180 Ringing", "200 OK"] {
        let contact = format!("Contact: <sip:bob@{}>", bob.addr);
        bob.send(p.addr, &respond(&inv, status, "8321234356", &contact, ""));
        assert!(alice.recv().starts_with(&format!("SIP/2.0 {status}")));
    }
    let dialog = |method: &str, cseq: &str, from: &Ua, to: &Ua, tags: (&str, &str)| {
        format!(
            "{method} sip:x@{to} SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bKhep{method}\nRoute: <sip:{p};lr>\nMax-Forwards: 70\nFrom: <sip:a@example.com>;tag={}\nTo: <sip:b@example.com>;tag={}\nCall-ID: hep-call-1\nCSeq: {cseq}\n\n",
            tags.0,
            tags.1,
            me = from.addr,
            to = to.addr,
            p = p.addr
        )
    };
    alice.send(
        p.addr,
        &dialog("ACK", "1 ACK", &alice, &bob, ("9fxced76sl", "8321234356")),
    );
    assert!(bob.recv().starts_with("ACK "));
    bob.send(
        p.addr,
        &dialog("BYE", "1 BYE", &bob, &alice, ("8321234356", "9fxced76sl")),
    );
    let bye = alice.recv();
    assert!(bye.starts_with("BYE "), "{bye}");
    alice.send(p.addr, &respond(&bye, "200 OK", "", "", ""));
    assert!(bob.recv().starts_with("SIP/2.0 200 OK"));

    let got = sngrep.stop();
    let (a, b, px) = (alice.addr, bob.addr, p.addr);
    let reg = "reg-bob-843817637684230@998sdasdh09";
    assert_captured(&got, reg, "REGISTER ", UDP, b, px);
    assert_captured(&got, reg, "SIP/2.0 200", UDP, px, b);
    let call = "hep-call-1";
    for (start, from, to) in [
        ("INVITE ", a, b),
        ("SIP/2.0 180", b, a),
        ("SIP/2.0 200", b, a),
        ("ACK ", a, b),
        ("BYE ", b, a),
        ("SIP/2.0 200", a, b),
    ] {
        assert_captured(&got, call, start, UDP, from, px);
        assert_captured(&got, call, start, UDP, px, to);
    }
    // The 200 to the BYE as sent carries CSeq BYE, not the INVITE's.
    assert!(got.iter().any(|c| c.dst == b
        && c.payload.contains("CSeq: 1 BYE")
        && c.payload.starts_with("SIP/2.0 200")));
}

/// A UA registered over TCP: the INVITE comes in over UDP and goes out down its connection
/// (to the connection's peer, not the Contact's address), the answer comes back up it; the
/// capture names each message's transport.
#[test]
fn messages_on_a_tcp_connection_are_captured_as_tcp() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let hep = format!("udp:{}", sink.local_addr().unwrap());
    let p = Proxy::start(&["--shards", "1", "--hep", &hep]);
    let mut bob = TcpUa::connect(p.addr);
    bob.send(&format!(
        "REGISTER sip:{px} SIP/2.0\nVia: SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKhepreg\nFrom: <sip:bob@{px}>;tag=r\nTo: <sip:bob@{px}>\nCall-ID: hep-reg-tcp\nCSeq: 1 REGISTER\nContact: <sip:bob@127.0.0.1:9;transport=tcp>\nMax-Forwards: 70\n\n",
        px = p.addr
    ));
    assert!(bob.recv().starts_with("SIP/2.0 200"));
    let alice = Ua::new();
    alice.send(
        p.addr,
        &invite(&alice, &format!("sip:bob@{}", p.addr), "hep-call-tcp"),
    );
    let inv = bob.recv();
    assert!(inv.starts_with("INVITE "), "{inv}");
    bob.send(&respond(&inv, "200 OK", "t1", "", ""));
    assert!(alice.recv().starts_with("SIP/2.0 200"));

    let got: Vec<Captured> = drain(&sink).iter().filter_map(|p| decode_hep(p)).collect();
    let (a, b, px) = (alice.addr, bob.addr, p.addr);
    assert_captured(&got, "hep-reg-tcp", "REGISTER ", TCP, b, px);
    assert_captured(&got, "hep-reg-tcp", "SIP/2.0 200", TCP, px, b);
    assert_captured(&got, "hep-call-tcp", "INVITE ", UDP, a, px);
    assert_captured(&got, "hep-call-tcp", "INVITE ", TCP, px, b);
    assert_captured(&got, "hep-call-tcp", "SIP/2.0 200", TCP, b, px);
    assert_captured(&got, "hep-call-tcp", "SIP/2.0 200", UDP, px, a);
}

/// `count` MESSAGE transactions (Call-IDs `{prefix}{i}`) from a UA to bob through `p`.
fn messages(p: &Proxy, prefix: &str, count: usize) {
    let (ua, bob) = (Ua::new(), Ua::new());
    let contact = format!("<sip:bob@{}>", bob.addr);
    let r = register(&ua, p.addr, "bob", "example.com", &contact, 1, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    for i in 0..count {
        ua.send(p.addr, &format!(
            "MESSAGE sip:bob@example.com SIP/2.0\nVia: SIP/2.0/UDP {me};branch=z9hG4bK{prefix}{i}\nMax-Forwards: 70\nFrom: <sip:a@example.org>;tag=t\nTo: <sip:bob@example.com>\nCall-ID: {prefix}{i}\nCSeq: 1 MESSAGE\n\nhello",
            me = ua.addr
        ));
        let got = bob
            .recv_within(Duration::from_secs(2))
            .unwrap_or_else(|| panic!("MESSAGE {i} not forwarded"));
        assert!(got.starts_with("MESSAGE "), "{got}");
    }
}

/// Every HEP packet that arrives at `sink` within a short quiet period.
fn drain(sink: &UdpSocket) -> Vec<Vec<u8>> {
    sink.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 65_536];
    while let Ok(n) = sink.recv(&mut buf) {
        got.push(buf[..n].to_vec());
    }
    got
}

/// `--hep-sample 0` captures nothing; `--hep-sample 50` captures some calls, each whole (its
/// message as received and as sent), and no part of the others.
#[test]
fn sampling_is_per_call_and_zero_captures_nothing() {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let hep = format!("udp:{}", sink.local_addr().unwrap());
    let mut none = Proxy::builder()
        .metrics()
        .args(&[
            "--domain",
            "example.com",
            "--hep",
            &hep,
            "--hep-sample",
            "0",
        ])
        .start();
    messages(&none, "zero-", 20);
    assert!(drain(&sink).is_empty(), "captured at 0 %");
    let text = scrape(none.metrics.unwrap());
    assert_eq!(
        value(
            &text,
            "sipshard_hep_total{shard=\"total\",result=\"captured\"}"
        ),
        0
    );
    none.stop();

    let half = Proxy::start(&[
        "--domain",
        "example.com",
        "--hep",
        &hep,
        "--hep-sample",
        "50",
    ]);
    messages(&half, "half-", 40);
    let got = drain(&sink);
    let mut whole = 0;
    for i in 0..40 {
        let id = format!("Call-ID: half-{i}\r\n");
        let n = got
            .iter()
            .filter(|p| p.windows(id.len()).any(|w| w == id.as_bytes()))
            .count();
        assert!(n == 0 || n == 2, "call {i}: {n} of its 2 packets captured");
        whole += usize::from(n == 2);
    }
    assert!(
        (5..=35).contains(&whole),
        "{whole} of 40 calls captured at 50 %"
    );
    assert!(got.iter().all(|p| p.starts_with(b"HEP3")));
}

/// A collector nobody listens on: every message is still forwarded, and the refused packets
/// are counted as send_failed.
#[test]
fn a_dead_collector_never_holds_up_forwarding() {
    let dead = free_port();
    let p = Proxy::builder()
        .metrics()
        .args(&[
            "--domain",
            "example.com",
            "--hep",
            &format!("udp:127.0.0.1:{dead}"),
        ])
        .start();
    messages(&p, "dead-", 100);
    let failed = "sipshard_hep_total{shard=\"total\",result=\"send_failed\"}";
    let captured = "sipshard_hep_total{shard=\"total\",result=\"captured\"}";
    let counted = eventually(Duration::from_secs(3), || {
        let text = scrape(p.metrics.unwrap());
        value(&text, failed) > 0 && value(&text, captured) >= 200
    });
    assert!(counted, "{}", scrape(p.metrics.unwrap()));
}

/// A HEP collector over TCP: accepts the shards' connections and splits each stream into HEP
/// packets by their length field (bytes 4-5), until every connection is closed.
struct TcpCollector {
    addr: SocketAddr,
    thread: std::thread::JoinHandle<Vec<Vec<u8>>>,
}

impl TcpCollector {
    fn start() -> TcpCollector {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let thread = std::thread::spawn(move || {
            let mut readers = Vec::new();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            // Accept for as long as the test runs (bounded); each connection read to its end.
            while std::time::Instant::now() < deadline {
                match listener.accept() {
                    Ok((s, _)) => readers.push(std::thread::spawn(move || read_stream(s))),
                    Err(_) if readers.is_empty() || !readers.iter().all(|r| r.is_finished()) => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(_) => break,
                }
            }
            readers
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect()
        });
        TcpCollector { addr, thread }
    }
}

/// HEP packets back to back on `s`, until it closes (or 20 s pass).
fn read_stream(mut s: std::net::TcpStream) -> Vec<Vec<u8>> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut bytes = Vec::new();
    let _ = s.read_to_end(&mut bytes);
    let mut packets = Vec::new();
    let mut at = 0;
    while at + 6 <= bytes.len() {
        let len = usize::from(u16::from_be_bytes([bytes[at + 4], bytes[at + 5]]));
        assert!(
            len >= 6 && at + len <= bytes.len(),
            "a torn HEP stream at {at}"
        );
        packets.push(bytes[at..at + len].to_vec());
        at += len;
    }
    assert_eq!(at, bytes.len(), "bytes after the last whole packet");
    packets
}

/// `--hep tcp:`: a call through two shards arrives whole on the collector's connections, each
/// message as received and as sent, the stream framed packet by packet.
#[test]
fn a_call_is_captured_whole_over_a_tcp_collector() {
    let collector = TcpCollector::start();
    let hep = format!("tcp:{}", collector.addr);
    let mut p = Proxy::start(&["--shards", "2", "--domain", "example.com", "--hep", &hep]);
    let (alice, bob) = (Ua::new(), Ua::new());
    let contact = format!("<sip:bob@{}>", bob.addr);
    let r = register(&bob, p.addr, "bob", "example.com", &contact, 1, "");
    assert!(r.starts_with("SIP/2.0 200"), "{r}");
    alice.send(
        p.addr,
        &invite(&alice, "sip:bob@example.com", "hep-over-tcp"),
    );
    let inv = bob.recv();
    assert!(inv.starts_with("INVITE "), "{inv}");
    bob.send(p.addr, &respond(&inv, "200 OK", "t1", "", ""));
    assert!(alice.recv().starts_with("SIP/2.0 200"));
    // What the shards hold goes out within a flush interval; stopping closes the connections.
    std::thread::sleep(Duration::from_millis(300));
    p.stop();
    let got: Vec<Captured> = collector
        .thread
        .join()
        .unwrap()
        .iter()
        .filter_map(|p| decode_hep(p))
        .collect();
    let (a, b, px) = (alice.addr, bob.addr, p.addr);
    let reg = "reg-bob-843817637684230@998sdasdh09";
    assert_captured(&got, reg, "REGISTER ", UDP, b, px);
    assert_captured(&got, reg, "SIP/2.0 200", UDP, px, b);
    assert_captured(&got, "hep-over-tcp", "INVITE ", UDP, a, px);
    assert_captured(&got, "hep-over-tcp", "INVITE ", UDP, px, b);
    assert_captured(&got, "hep-over-tcp", "SIP/2.0 200", UDP, b, px);
    assert_captured(&got, "hep-over-tcp", "SIP/2.0 200", UDP, px, a);
}
