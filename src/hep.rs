//! HEP version 3 (the Homer Encapsulation Protocol, what Homer's heplify-server and sngrep
//! receive): one captured SIP message, with its addresses, transport and time, as one packet.
//!
//! No I/O and no clock: the runtime passes the time and the addresses in and sends the bytes
//! (`src/runtime/capture.rs`). Nothing here panics or allocates beyond the caller's buffer.
//!
//! A packet is `"HEP3"`, its total length (16 bits, big-endian, the header included), then
//! chunks: vendor id (0, generic), type, length (the 6-byte chunk header included), value.
//! The chunks written, in this order:
//!
//! | type   | value                                   | bytes     |
//! | ------ | --------------------------------------- | --------- |
//! | 0x0001 | IP family: 2 (IPv4) or 10 (IPv6)        | 1         |
//! | 0x0002 | IP protocol: 17 (UDP) or 6 (TCP)        | 1         |
//! | 0x0003 / 0x0004 | IPv4 source / destination      | 4 each    |
//! | 0x0005 / 0x0006 | IPv6 source / destination      | 16 each   |
//! | 0x0007 / 0x0008 | source / destination port      | 2 each    |
//! | 0x0009 / 0x000a | time: seconds / microseconds   | 4 each    |
//! | 0x000b | protocol type: 1 (SIP)                  | 1         |
//! | 0x000c | capture agent id                        | 4         |
//! | 0x000f | the SIP message                         | its length |
//!
//! TLS is captured as TCP with the message in clear (the proxy holds it decrypted), which is
//! how sngrep and Homer show TLS-carried SIP from other agents too. No correlation id (0x0011):
//! sngrep and Homer take the Call-ID from the message itself, and writing it would cost a
//! header scan per message even with every call captured.
//!
//! Sampling ([`sampled`]) is per call: a hash of the Call-ID, so every message of a call,
//! received or sent, on any shard, gets the same answer.

use std::net::{IpAddr, SocketAddr};

/// The transport a message was carried by, as HEP's IP protocol chunk names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpProto {
    Udp = 17,
    /// TCP, and TLS (captured in clear).
    Tcp = 6,
}

/// One captured message.
#[derive(Clone, Copy, Debug)]
pub struct Packet<'a> {
    pub proto: IpProto,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    /// When it was received or sent, in microseconds since the Unix epoch.
    pub unix_us: u64,
    /// The capture agent id (`--hep-id`), which tells collectors the agents apart.
    pub capture_id: u32,
    pub payload: &'a [u8],
}

/// The largest packet: the total length is 16 bits.
pub const MAX_PACKET: usize = u16::MAX as usize;

const HEADER: usize = 6;
const CHUNK_HEADER: usize = 6;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const PROTOCOL_SIP: u8 = 1;

/// The chunk types written (vendor 0).
mod chunk {
    pub const IP_FAMILY: u16 = 0x0001;
    pub const IP_PROTO: u16 = 0x0002;
    pub const IPV4_SRC: u16 = 0x0003;
    pub const IPV4_DST: u16 = 0x0004;
    pub const IPV6_SRC: u16 = 0x0005;
    pub const IPV6_DST: u16 = 0x0006;
    pub const SRC_PORT: u16 = 0x0007;
    pub const DST_PORT: u16 = 0x0008;
    pub const TIME_SEC: u16 = 0x0009;
    pub const TIME_USEC: u16 = 0x000a;
    pub const PROTO_TYPE: u16 = 0x000b;
    pub const CAPTURE_ID: u16 = 0x000c;
    pub const PAYLOAD: u16 = 0x000f;
}

impl Packet<'_> {
    /// The encoded length, whether or not it fits in [`MAX_PACKET`].
    pub fn len(&self) -> usize {
        let addrs = match self.addresses() {
            Addresses::V4(..) => 2 * (CHUNK_HEADER + 4),
            Addresses::V6(..) => 2 * (CHUNK_HEADER + 16),
        };
        // family, protocol, two ports, two times, protocol type, capture id, payload.
        HEADER
            + addrs
            + 2 * (CHUNK_HEADER + 1)
            + 2 * (CHUNK_HEADER + 2)
            + 2 * (CHUNK_HEADER + 4)
            + (CHUNK_HEADER + 1)
            + (CHUNK_HEADER + 4)
            + CHUNK_HEADER
            + self.payload.len()
    }

    /// Never true: a packet always has its header and chunks.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Append the packet to `out`. Returns its length, or `None` (and `out` unchanged) when
    /// it exceeds [`MAX_PACKET`] (a message over 65,400 bytes or so, from a stream).
    pub fn encode(&self, out: &mut Vec<u8>) -> Option<usize> {
        let len = self.len();
        let total = u16::try_from(len).ok()?;
        out.reserve(len);
        out.extend_from_slice(b"HEP3");
        out.extend_from_slice(&total.to_be_bytes());
        match self.addresses() {
            Addresses::V4(src, dst) => {
                put(out, chunk::IP_FAMILY, &[AF_INET]);
                put(out, chunk::IP_PROTO, &[self.proto as u8]);
                put(out, chunk::IPV4_SRC, &src);
                put(out, chunk::IPV4_DST, &dst);
            }
            Addresses::V6(src, dst) => {
                put(out, chunk::IP_FAMILY, &[AF_INET6]);
                put(out, chunk::IP_PROTO, &[self.proto as u8]);
                put(out, chunk::IPV6_SRC, &src);
                put(out, chunk::IPV6_DST, &dst);
            }
        }
        put(out, chunk::SRC_PORT, &self.src.port().to_be_bytes());
        put(out, chunk::DST_PORT, &self.dst.port().to_be_bytes());
        // Seconds wrap in 2106, as every HEP agent's do.
        let (secs, usecs) = (self.unix_us / 1_000_000, self.unix_us % 1_000_000);
        put(out, chunk::TIME_SEC, &(secs as u32).to_be_bytes());
        put(out, chunk::TIME_USEC, &(usecs as u32).to_be_bytes());
        put(out, chunk::PROTO_TYPE, &[PROTOCOL_SIP]);
        put(out, chunk::CAPTURE_ID, &self.capture_id.to_be_bytes());
        put(out, chunk::PAYLOAD, self.payload);
        Some(len)
    }

    /// Both addresses in one family: IPv4 when both are, else both as IPv6 (an IPv4 address
    /// IPv4-mapped), since a packet has one family chunk.
    fn addresses(&self) -> Addresses {
        match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(s), IpAddr::V4(d)) => Addresses::V4(s.octets(), d.octets()),
            (s, d) => Addresses::V6(v6(s).octets(), v6(d).octets()),
        }
    }
}

enum Addresses {
    V4([u8; 4], [u8; 4]),
    V6([u8; 16], [u8; 16]),
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}

/// One generic chunk. The caller has checked that the whole packet, so every chunk, fits in
/// 16 bits.
fn put(out: &mut Vec<u8>, kind: u16, value: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&kind.to_be_bytes());
    out.extend_from_slice(&((CHUNK_HEADER + value.len()) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Whether the message `msg` is captured under `--hep-sample percent`. 100 (or more)
/// captures everything without reading the message, 0 nothing; in between, the calls whose
/// Call-ID hashes below `percent` out of 100, and no message without a Call-ID.
#[inline]
pub fn sampled(msg: &[u8], percent: u8) -> bool {
    match percent {
        100.. => true,
        0 => false,
        p => call_id(msg).is_some_and(|id| call_bucket(id) < u64::from(p)),
    }
}

/// Whether a datagram may be SIP at all: a SIP message starts with a method or `SIP/2.0`, an
/// upper-case letter. Keep-alives (CRLF) and STUN are not captured.
#[inline]
pub fn looks_like_sip(msg: &[u8]) -> bool {
    msg.first().is_some_and(u8::is_ascii_uppercase)
}

/// The call's bucket, 0..100: XXH3 of the Call-ID's bytes (unseeded, so every shard and every
/// node agrees; the registrar hashes Call-IDs with it too), modulo 100.
pub fn call_bucket(call_id: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(call_id) % 100
}

/// The Call-ID of a SIP message (`Call-ID:` or its compact form `i:`, any case, spaces allowed
/// before the colon), trimmed, by a raw scan of the header lines: no parse, and a message that
/// does not parse still has one when the line is there. `None` when the header section holds
/// no such line.
pub fn call_id(msg: &[u8]) -> Option<&[u8]> {
    let mut lines = msg.split(|&b| b == b'\n');
    lines.next()?; // the start line
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return None; // the end of the header section
        }
        if let Some(value) = header_value(line, b"call-id").or_else(|| header_value(line, b"i")) {
            return Some(value);
        }
    }
    None
}

/// The value of `line` when its name is `name` (lower case), trimmed.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..name.len())?;
    if !head.eq_ignore_ascii_case(name) {
        return None;
    }
    let rest = line[name.len()..].trim_ascii_start();
    rest.strip_prefix(b":").map(<[u8]>::trim_ascii)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(src: &str, dst: &str, payload: &'static [u8]) -> Packet<'static> {
        Packet {
            proto: IpProto::Udp,
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            unix_us: 1_700_000_000_123_456,
            capture_id: 2001,
            payload,
        }
    }

    /// The IPv4 layout, byte for byte, checked by hand against the HEP3 specification (and
    /// what sngrep 1.6 decodes: tests/hep.rs).
    #[test]
    fn ipv4_layout() {
        let p = packet("10.0.0.1:5060", "192.0.2.7:5070", b"OPTIONS");
        let mut out = vec![0xee]; // appended after what is there
        assert_eq!(p.encode(&mut out), Some(106));
        #[rustfmt::skip]
        let want: &[u8] = &[
            0xee,
            b'H', b'E', b'P', b'3', 0, 106,
            0, 0, 0, 0x01, 0, 7, 2,                     // family: IPv4
            0, 0, 0, 0x02, 0, 7, 17,                    // protocol: UDP
            0, 0, 0, 0x03, 0, 10, 10, 0, 0, 1,          // source
            0, 0, 0, 0x04, 0, 10, 192, 0, 2, 7,         // destination
            0, 0, 0, 0x07, 0, 8, 0x13, 0xc4,            // source port 5060
            0, 0, 0, 0x08, 0, 8, 0x13, 0xce,            // destination port 5070
            0, 0, 0, 0x09, 0, 10, 0x65, 0x53, 0xf1, 0x00, // 1,700,000,000 s
            0, 0, 0, 0x0a, 0, 10, 0, 0x01, 0xe2, 0x40,  // 123,456 us
            0, 0, 0, 0x0b, 0, 7, 1,                     // SIP
            0, 0, 0, 0x0c, 0, 10, 0, 0, 0x07, 0xd1,     // capture id 2001
            0, 0, 0, 0x0f, 0, 13, b'O', b'P', b'T', b'I', b'O', b'N', b'S',
        ];
        assert_eq!(out, want);
        assert_eq!(p.len(), 106);
    }

    #[test]
    fn ipv6_and_tcp() {
        let mut p = packet(
            "[2001:db8::1]:5061",
            "[2001:db8::2]:5062",
            b"SIP/2.0 200 OK",
        );
        p.proto = IpProto::Tcp;
        let mut out = Vec::new();
        let n = p.encode(&mut out).unwrap();
        assert_eq!(n, out.len());
        assert_eq!(n, p.len());
        assert_eq!(&out[4..6], &(n as u16).to_be_bytes());
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, 10]);
        assert_eq!(&out[13..20], &[0, 0, 0, 2, 0, 7, 6]);
        assert_eq!(&out[20..26], &[0, 0, 0, 5, 0, 22]);
        assert_eq!(
            &out[26..42],
            &"2001:db8::1"
                .parse::<std::net::Ipv6Addr>()
                .unwrap()
                .octets()
        );
        assert_eq!(&out[42..48], &[0, 0, 0, 6, 0, 22]);
        assert!(out.ends_with(b"\x00\x0f\x00\x14SIP/2.0 200 OK"));
    }

    #[test]
    fn mixed_families_are_both_ipv6() {
        let p = packet("127.0.0.1:5060", "[::1]:5060", b"BYE");
        let mut out = Vec::new();
        p.encode(&mut out).unwrap();
        assert_eq!(out[12], AF_INET6);
        let mapped = "::ffff:127.0.0.1".parse::<std::net::Ipv6Addr>().unwrap();
        assert_eq!(&out[26..42], &mapped.octets());
    }

    #[test]
    fn too_large_is_refused_and_leaves_the_buffer() {
        static BIG: [u8; 65_500] = [b'A'; 65_500];
        let p = packet("10.0.0.1:1", "10.0.0.2:2", &BIG);
        let mut out = b"kept".to_vec();
        assert_eq!(p.encode(&mut out), None);
        assert_eq!(out, b"kept");
        let fits = packet("10.0.0.1:1", "10.0.0.2:2", &BIG[..MAX_PACKET - 99]);
        assert_eq!(fits.encode(&mut out), Some(MAX_PACKET));
    }

    #[test]
    fn call_id_full_compact_and_absent() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (
                b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\nCall-ID: abc@h\r\n\r\n",
                Some(b"abc@h"),
            ),
            (
                b"SIP/2.0 200 OK\r\ni:  xyz \r\nCSeq: 1 BYE\r\n\r\n",
                Some(b"xyz"),
            ),
            (b"BYE sip:a@b SIP/2.0\ncall-id :q1\n\n", Some(b"q1")),
            (
                b"BYE sip:a@b SIP/2.0\r\nIn-Reply-To: n\r\nCALL-ID:c\r\n\r\n",
                Some(b"c"),
            ),
            (
                b"BYE sip:a@b SIP/2.0\r\nTo: x\r\n\r\nCall-ID: body\r\n",
                None,
            ),
            (b"BYE sip:a@b SIP/2.0\r\nCall-Info: <x>\r\n\r\n", None),
            (b"", None),
            (b"\r\n\r\n", None),
        ];
        for (msg, want) in cases {
            assert_eq!(call_id(msg), *want, "{}", String::from_utf8_lossy(msg));
        }
    }

    #[test]
    fn sampling_is_per_call() {
        let msg = |id: &str| format!("BYE sip:a@b SIP/2.0\r\nCall-ID: {id}\r\n\r\n");
        let compact = |id: &str| format!("SIP/2.0 200 OK\r\ni: {id}\r\n\r\n");
        let mut taken = 0;
        for i in 0..2000 {
            let id = format!("call-{i}@host");
            let a = sampled(msg(&id).as_bytes(), 30);
            assert_eq!(a, sampled(compact(&id).as_bytes(), 30), "{id}");
            taken += usize::from(a);
        }
        // About 30 % of the calls (XXH3 spreads these ids evenly).
        assert!((450..=750).contains(&taken), "{taken}");
        assert!(sampled(b"not even SIP", 100));
        assert!(!sampled(msg("x").as_bytes(), 0));
        assert!(!sampled(b"OPTIONS sip:a SIP/2.0\r\n\r\n", 99));
    }

    #[test]
    fn only_what_starts_like_sip() {
        assert!(looks_like_sip(b"INVITE sip:a@b SIP/2.0"));
        assert!(looks_like_sip(b"SIP/2.0 180 Ringing"));
        assert!(!looks_like_sip(b"\r\n\r\n"));
        assert!(!looks_like_sip(&[0x00, 0x01, 0x00, 0x00]));
        assert!(!looks_like_sip(b""));
    }
}
