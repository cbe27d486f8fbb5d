//! SIP capture (`--hep`): each shard mirrors the SIP messages it receives and sends to a HEP
//! collector (Homer's heplify-server, sngrep), encoded by [`crate::hep`].
//!
//! The packet path only appends: a captured message is encoded into the shard's buffer (one
//! copy, taken before the core rewrites a datagram in place). Over UDP the buffer goes out
//! with one non-blocking sendmmsg on the shard's own socket, connected to the collector; over
//! TCP as one stream write on the shard's own connection ([`super::capture_stream`]): at the
//! end of every UDP batch, every [`FLUSH_INTERVAL`] from the shard's capture task (stream traffic,
//! quiet periods), and at once when it is full (at stream rates above some 25,000 messages a
//! second per shard the timer alone would fall behind). Nothing waits: a packet the kernel
//! refuses (socket buffer full, collector unreachable: ECONNREFUSED after its ICMP answer) is
//! counted and dropped, never retried, and a full socket buffer drops the rest of that flush.
//!
//! Not captured: NAT keep-alive pings (`--nat-ping-interval`), which are the proxy's own and
//! many; CRLF keep-alives and STUN, which are not SIP.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::capture_stream::StreamSink;
use super::clock::wall_clock_ns;
use super::settings::HepSettings;
use crate::counters::HepCounters;
use crate::hep::{self, IpProto, Packet};
use crate::sip::{Source, Target, Transport};

/// How often the capture task flushes what stream traffic captured (UDP batches flush
/// themselves): what a collector's view lags by at most on a quiet shard.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(10);
/// Packets held before a flush at the latest (one sendmmsg).
const MAX_PACKETS: usize = 256;
/// Bytes held before a flush at the latest (a full buffer of average SIP messages).
const MAX_BYTES: usize = 256 * 1024;
/// The capture socket's send buffer (the kernel caps it at net.core.wmem_max): room for a
/// whole flush of large messages.
const SNDBUF: usize = 1 << 20;

/// Where a shard's packets go, as opened before the shard starts.
pub enum Endpoint {
    /// A UDP socket connected to the collector: a datagram per packet.
    Udp(UdpSocket, SocketAddr),
    /// A collector reached over TCP (connected by the shard, without waiting).
    Tcp(SocketAddr),
}

/// The endpoint of `hep`'s collector for one shard. A UDP socket is opened here, so that a
/// failure stops start-up; a TCP collector that is down only delays capture.
pub fn open(hep: &HepSettings) -> io::Result<Endpoint> {
    match hep.transport {
        Transport::Tcp => Ok(Endpoint::Tcp(hep.collector)),
        _ => open_socket(hep.collector).map(|s| Endpoint::Udp(s, hep.collector)),
    }
}

/// The shard's side of an endpoint.
enum Sink {
    Datagrams {
        sock: UdpSocket,
        to: SocketAddr,
        headers: mmsg::SendHeaders,
    },
    Stream(StreamSink),
}

/// One shard's capture: its way to the collector and what waits to be sent.
pub struct Capture {
    sink: Sink,
    percent: u8,
    capture_id: u32,
    /// Each listener's bound address, by listener index: the proxy's end of every message.
    local: Vec<SocketAddr>,
    /// Encoded packets, back to back, since the last flush.
    buf: Vec<u8>,
    /// Where each packet of `buf` ends.
    ends: Vec<usize>,
    pub counters: HepCounters,
}

/// A shard's socket to the collector: non-blocking, connected (so that an unreachable
/// collector shows as ECONNREFUSED), opened before any shard starts so that a failure stops
/// start-up.
pub fn open_socket(collector: SocketAddr) -> io::Result<UdpSocket> {
    let any: SocketAddr = match collector {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(any)?;
    sock.connect(collector)?;
    sock.set_nonblocking(true)?;
    // Best effort: a smaller buffer only means more refused packets under bursts (counted).
    let _ = socket2::SockRef::from(&sock).set_send_buffer_size(SNDBUF);
    Ok(sock)
}

impl Capture {
    /// `local`: each listener's bound address, in listener order.
    pub fn new(endpoint: Endpoint, settings: HepSettings, local: Vec<SocketAddr>) -> Capture {
        let sink = match endpoint {
            Endpoint::Udp(sock, to) => Sink::Datagrams {
                sock,
                to,
                headers: mmsg::SendHeaders::new(MAX_PACKETS),
            },
            Endpoint::Tcp(collector) => Sink::Stream(StreamSink::new(collector)),
        };
        Capture {
            sink,
            percent: settings.percent,
            capture_id: settings.capture_id,
            local,
            buf: Vec::with_capacity(MAX_BYTES),
            ends: Vec::with_capacity(MAX_PACKETS),
            counters: HepCounters::default(),
        }
    }

    /// A message received from `src` on listener `listener` at `unix_ns`.
    pub fn received(&mut self, src: Source, listener: usize, bytes: &[u8], unix_ns: u64) {
        if !self.wanted(bytes) {
            return;
        }
        let ours = self.local_addr(listener);
        self.push(proto(src.transport), src.addr, ours, unix_ns, bytes);
    }

    /// A message sent to `to` by listener `listener`, now.
    pub fn sent(&mut self, to: Target, listener: usize, bytes: &[u8]) {
        if !self.wanted(bytes) {
            return;
        }
        let ours = self.local_addr(listener);
        self.push(proto(to.transport), ours, to.addr, wall_clock_ns(), bytes);
    }

    /// Whether `bytes` is SIP of a sampled call.
    fn wanted(&self, bytes: &[u8]) -> bool {
        hep::looks_like_sip(bytes) && hep::sampled(bytes, self.percent)
    }

    /// Listener `i`'s address (unspecified when there is no such listener: never, the core
    /// names only its listeners).
    fn local_addr(&self, i: usize) -> SocketAddr {
        let unspecified = || SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        self.local.get(i).copied().unwrap_or_else(unspecified)
    }

    /// Encode one packet into the buffer, after flushing it when the packet would not fit.
    fn push(
        &mut self,
        proto: IpProto,
        src: SocketAddr,
        dst: SocketAddr,
        unix_ns: u64,
        bytes: &[u8],
    ) {
        let packet = Packet {
            proto,
            src,
            dst,
            unix_us: unix_ns / 1000,
            capture_id: self.capture_id,
            payload: bytes,
        };
        if packet.len() > hep::MAX_PACKET {
            self.counters.too_large += 1;
            return;
        }
        // A sendmmsg takes MAX_PACKETS datagrams; a stream write only minds the bytes.
        let datagrams = matches!(self.sink, Sink::Datagrams { .. });
        let full = datagrams && self.ends.len() == MAX_PACKETS;
        if full || self.buf.len() + packet.len() > MAX_BYTES {
            self.flush();
        }
        if packet.encode(&mut self.buf).is_some() {
            self.ends.push(self.buf.len());
            self.counters.captured += 1;
        }
    }

    /// The end of a UDP batch. A UDP collector is sent the batch's packets now (the socket
    /// buffer holds a batch, not the 10 ms of traffic the timer lets gather). A TCP collector
    /// waits for the timer or a full buffer: one write per [`FLUSH_INTERVAL`] instead of one
    /// per batch, which is most of what capture over TCP costs.
    pub fn batch_done(&mut self) {
        if matches!(self.sink, Sink::Datagrams { .. }) {
            self.flush();
        }
    }

    /// Send everything captured since the last flush, without waiting, and empty the buffer.
    pub fn flush(&mut self) {
        let (buf, ends, counters) = (&self.buf, &self.ends, &mut self.counters);
        match &mut self.sink {
            Sink::Datagrams { sock, to, headers } => {
                send_datagrams(sock, *to, headers, buf, ends, counters)
            }
            Sink::Stream(stream) => stream.flush(buf, ends, counters),
        }
        self.buf.clear();
        self.ends.clear();
    }
}

/// Each packet of `buf` (ending at `ends`) as a datagram, with as few sendmmsg as it takes.
fn send_datagrams(
    sock: &UdpSocket,
    to: SocketAddr,
    headers: &mut mmsg::SendHeaders,
    buf: &[u8],
    ends: &[usize],
    counters: &mut HepCounters,
) {
    let packet = |i: usize| {
        let start = if i == 0 { 0 } else { ends[i - 1] };
        (&buf[start..ends[i]], to)
    };
    let (sent, failed) = headers.send_all(sock.as_raw_fd(), ends.len(), packet);
    counters.sent += sent;
    counters.send_failed += failed;
}

/// HEP's IP protocol of a transport: TLS is TCP (its messages are captured in clear).
fn proto(t: Transport) -> IpProto {
    match t {
        Transport::Udp => IpProto::Udp,
        Transport::Tcp | Transport::Tls => IpProto::Tcp,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &[u8] = b"INVITE sip:b@h SIP/2.0\r\nCall-ID: c1\r\n\r\n";

    fn capture(collector: SocketAddr, percent: u8) -> Capture {
        let settings = HepSettings {
            transport: Transport::Udp,
            collector,
            percent,
            capture_id: 7,
        };
        let local = vec!["127.0.0.1:5060".parse().unwrap()];
        Capture::new(
            Endpoint::Udp(open_socket(collector).unwrap(), collector),
            settings,
            local,
        )
    }

    fn recv_all(sink: &UdpSocket) -> Vec<Vec<u8>> {
        sink.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 65_536];
        while let Ok(n) = sink.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        got
    }

    #[test]
    fn received_and_sent_reach_the_collector() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = capture(sink.local_addr().unwrap(), 100);
        let peer: SocketAddr = "127.0.0.1:6000".parse().unwrap();
        c.received(Source::udp(peer), 0, INVITE, 1_000_000_000);
        c.sent(
            Target::udp(peer),
            0,
            b"SIP/2.0 100 Trying\r\nCall-ID: c1\r\n\r\n",
        );
        c.received(Source::udp(peer), 0, b"\r\n\r\n", 0); // a keep-alive: not SIP
        c.flush();
        assert_eq!((c.counters.captured, c.counters.sent), (2, 2));
        let got = recv_all(&sink);
        assert_eq!(got.len(), 2);
        assert!(got[0].starts_with(b"HEP3") && got[0].ends_with(INVITE));
        // The first is from the peer to us, the second from us to the peer.
        assert_eq!(&got[0][46..48], &6000u16.to_be_bytes());
        assert_eq!(&got[1][46..48], &5060u16.to_be_bytes());
    }

    #[test]
    fn a_full_buffer_is_flushed_not_dropped() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = capture(sink.local_addr().unwrap(), 100);
        let peer = Source::udp("127.0.0.1:6000".parse().unwrap());
        for _ in 0..MAX_PACKETS + 10 {
            c.received(peer, 0, INVITE, 0);
        }
        assert_eq!(c.counters.sent, MAX_PACKETS as u64);
        c.flush();
        assert_eq!(c.counters.sent, MAX_PACKETS as u64 + 10);
        assert_eq!(c.counters.send_failed, 0);
    }

    #[test]
    fn a_dead_collector_is_counted_never_waited_for() {
        // A port nobody listens on: the kernel answers with ICMP port unreachable, which the
        // connected socket reports as ECONNREFUSED on a later send.
        let dead = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = dead.local_addr().unwrap();
        drop(dead);
        let mut c = capture(addr, 100);
        let peer = Source::udp("127.0.0.1:6000".parse().unwrap());
        for _ in 0..20 {
            c.received(peer, 0, INVITE, 0);
            c.flush();
        }
        assert_eq!(c.counters.captured, 20);
        assert_eq!(c.counters.sent + c.counters.send_failed, 20);
        assert!(c.counters.send_failed > 0, "{:?}", c.counters);
    }

    #[test]
    fn zero_percent_captures_nothing() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut c = capture(sink.local_addr().unwrap(), 0);
        c.received(Source::udp("127.0.0.1:6000".parse().unwrap()), 0, INVITE, 0);
        c.flush();
        assert_eq!(c.counters, HepCounters::default());
        assert!(recv_all(&sink).is_empty());
    }
}
