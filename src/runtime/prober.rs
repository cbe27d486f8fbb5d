//! The next-hop prober (the proxy side of RFC 3665 section 3.4): a thread of its own that sends
//! OPTIONS to every next hop of the static routes every `--probe-interval`, counts the probes
//! left unanswered ([`ProbeTracker`]) and, when a hop goes down or comes back, publishes the
//! change to every shard over a wait-free ring per shard, drained before each batch like the
//! location changes. The packet path never waits for it and shares nothing with it.
//!
//! It has its own UDP socket per address family, outside the shards' SO_REUSEPORT group, so
//! the answers come back to it rather than to a random shard. Any response counts as an answer
//! (the hop is alive, even if it declines OPTIONS). Probes carry `Max-Forwards: 0`, so a proxy
//! answers them itself instead of forwarding them (RFC 3261 section 11). Hops of `tcp:` and
//! `tls:` routes are probed over a connection of their transport ([`super::probe_stream`]):
//! a TLS hop whose certificate fails verification is down.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rtrb::{Consumer, Producer, RingBuffer};

use super::probe_stream;
use crate::proxy::next_hop::{HopState, ProbeTracker};
use crate::proxy::ProxyConfig;
use crate::sip::{Target, Transport};
use crate::transport::tls::TlsContext;

/// Changes in flight to one shard (they are rare: one per hop per state change).
const RING_CAPACITY: usize = 256;
/// How long one receive waits before the stop flag and the round's end are checked again.
const RECV_SLICE: Duration = Duration::from_millis(50);
/// Longest a probe over a connection may take (connect, handshake, answer).
const STREAM_PROBE_LIMIT: Duration = Duration::from_secs(2);

/// The running prober thread.
pub struct Prober {
    thread: std::thread::JoinHandle<()>,
}

impl Prober {
    /// Start probing every next hop of `cfg.routes` (if there are any) every `interval`; a hop
    /// is down after `failures` unanswered probes in a row. Returns the thread and one receiving
    /// end per shard.
    pub fn start(
        cfg: &'static ProxyConfig,
        tls: TlsContext,
        interval: Duration,
        failures: u32,
        shards: usize,
        stop: Arc<AtomicBool>,
    ) -> Result<(Prober, Vec<Consumer<HopState>>), String> {
        let hops: Vec<(SocketAddr, Transport)> = cfg
            .routes
            .iter()
            .flat_map(|r| r.targets.iter().map(|t| (*t, r.transport)))
            .collect();
        let addrs: Vec<SocketAddr> = hops.iter().map(|(a, _)| *a).collect();
        let udp: Vec<SocketAddr> = hops
            .iter()
            .filter(|(_, t)| *t == Transport::Udp)
            .map(|(a, _)| *a)
            .collect();
        let (txs, rxs): (Vec<_>, Vec<_>) = (0..shards)
            .map(|_| RingBuffer::<HopState>::new(RING_CAPACITY))
            .unzip();
        let sockets = Sockets::bind(&udp).map_err(|e| format!("prober: cannot bind: {e}"))?;
        let mut run = Run {
            cfg,
            tls,
            transports: hops,
            tracker: ProbeTracker::new(&addrs, failures),
            sockets,
            outs: txs.into_iter().map(|p| (p, VecDeque::new())).collect(),
            tag: std::process::id(),
        };
        log::info!(
            "probing {} next hop(s) every {:.2} s, down after {failures} unanswered",
            run.tracker.hops().count(),
            interval.as_secs_f64()
        );
        let thread = std::thread::Builder::new()
            .name("prober".into())
            .spawn(move || run.serve(interval, &stop))
            .map_err(|e| format!("cannot start the prober: {e}"))?;
        Ok((Prober { thread }, rxs))
    }

    pub fn join(self) {
        let _ = self.thread.join();
    }
}

/// One unconnected socket per address family the hops use.
struct Sockets {
    v4: Option<UdpSocket>,
    v6: Option<UdpSocket>,
}

impl Sockets {
    fn bind(hops: &[SocketAddr]) -> std::io::Result<Sockets> {
        let open = |ip: IpAddr| -> std::io::Result<UdpSocket> {
            let s = UdpSocket::bind(SocketAddr::new(ip, 0))?;
            s.set_read_timeout(Some(RECV_SLICE))?;
            Ok(s)
        };
        Ok(Sockets {
            v4: match hops.iter().any(SocketAddr::is_ipv4) {
                true => Some(open(IpAddr::V4(Ipv4Addr::UNSPECIFIED))?),
                false => None,
            },
            v6: match hops.iter().any(SocketAddr::is_ipv6) {
                true => Some(open(IpAddr::V6(Ipv6Addr::UNSPECIFIED))?),
                false => None,
            },
        })
    }

    fn for_hop(&self, hop: &SocketAddr) -> Option<&UdpSocket> {
        if hop.is_ipv4() {
            self.v4.as_ref()
        } else {
            self.v6.as_ref()
        }
    }
}

struct Run {
    cfg: &'static ProxyConfig,
    /// How TLS hops are verified: as the shards verify them.
    tls: TlsContext,
    /// Each hop and the transport its route reaches it over (the first route naming it).
    transports: Vec<(SocketAddr, Transport)>,
    tracker: ProbeTracker,
    sockets: Sockets,
    /// Per shard: the ring, and changes that found it full (pushed again next round).
    outs: Vec<(Producer<HopState>, VecDeque<HopState>)>,
    /// Marks our probes' branches and Call-IDs.
    tag: u32,
}

impl Run {
    fn serve(&mut self, interval: Duration, stop: &AtomicBool) {
        let hops: Vec<SocketAddr> = self.tracker.hops().collect();
        let mut answered = vec![false; hops.len()];
        let mut round: u64 = 0;
        let mut buf = vec![0u8; 65_536];
        while !stop.load(Ordering::Relaxed) {
            round += 1;
            let deadline = Instant::now() + interval;
            answered.iter_mut().for_each(|a| *a = false);
            for (i, hop) in hops.iter().enumerate() {
                match self.transport_of(hop) {
                    Transport::Udp => self.send_probe(hop, round, i),
                    t => answered[i] = self.probe_over(t, hop, round, i, interval),
                }
            }
            while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
                for s in [&self.sockets.v4, &self.sockets.v6].into_iter().flatten() {
                    if let Ok((n, _)) = s.recv_from(&mut buf) {
                        if let Some(i) = self.answer_index(&buf[..n]) {
                            if let Some(a) = answered.get_mut(i) {
                                *a = true;
                            }
                        }
                    }
                }
            }
            for (hop, &ok) in hops.iter().zip(&answered) {
                if let Some(change) = self.tracker.record(*hop, ok) {
                    if change.up {
                        log::warn!("next hop {} is up again (answered OPTIONS)", change.hop);
                    } else {
                        log::warn!("next hop {} is down (probes unanswered)", change.hop);
                    }
                    for (_, pending) in &mut self.outs {
                        pending.push_back(change);
                    }
                }
            }
            self.publish();
        }
    }

    /// Push every pending change, in order, as far as each shard's ring has room.
    fn publish(&mut self) {
        for (ring, pending) in &mut self.outs {
            while let Some(c) = pending.front() {
                if ring.push(*c).is_err() {
                    break;
                }
                pending.pop_front();
            }
        }
    }

    fn transport_of(&self, hop: &SocketAddr) -> Transport {
        self.transports
            .iter()
            .find(|(a, _)| a == hop)
            .map_or(Transport::Udp, |(_, t)| *t)
    }

    /// Probe a TCP or TLS hop on a connection of its own (bounded by the round and 2 s).
    fn probe_over(
        &self,
        t: Transport,
        hop: &SocketAddr,
        round: u64,
        index: usize,
        interval: Duration,
    ) -> bool {
        let target = Target::new(t, *hop);
        let port = self.our_address(&target).1;
        let probe = self.probe_text(&target, port, round, index);
        let limit = STREAM_PROBE_LIMIT.min(interval);
        probe_stream::answers(&self.tls, t, *hop, probe.as_bytes(), limit)
    }

    fn send_probe(&self, hop: &SocketAddr, round: u64, index: usize) {
        let Some(sock) = self.sockets.for_hop(hop) else {
            return;
        };
        let port = sock.local_addr().map_or(0, |a| a.port());
        let probe = self.probe_text(&Target::udp(*hop), port, round, index);
        if let Err(e) = sock.send_to(probe.as_bytes(), hop) {
            log::debug!("probe to {hop}: {e}");
        }
    }

    /// The host and port of the listener a request to `target` would leave by (the host of
    /// our Via and From).
    fn our_address(&self, target: &Target) -> (String, u16) {
        let adv = self
            .cfg
            .local
            .socket_for(0, target)
            .map(|s| self.cfg.local.advertised(s, target));
        adv.and_then(|a| {
            let (h, p) = a.rsplit_once(':')?;
            Some((h.to_string(), p.parse().ok()?))
        })
        .unwrap_or_else(|| (target.addr.ip().to_string(), 0))
    }

    /// An OPTIONS for `target`, its Via naming `port` (our socket's) and the target's transport.
    fn probe_text(&self, target: &Target, port: u16, round: u64, index: usize) -> String {
        let hop = target.addr;
        let host = self.our_address(target).0;
        let via = String::from_utf8_lossy(target.transport.via_token()).into_owned();
        let tag = self.tag;
        format!(
            "OPTIONS sip:{hop} SIP/2.0\r\n\
             Via: SIP/2.0/{via} {host}:{port};branch={PROBE_BRANCH}{tag}.{round}.{index};rport\r\n\
             Max-Forwards: 0\r\n\
             From: <sip:sipshard@{host}:{port}>;tag=probe{tag}\r\n\
             To: <sip:{hop}>\r\n\
             Call-ID: probe.{tag}.{round}.{index}@{host}\r\n\
             CSeq: {round} OPTIONS\r\n\
             User-Agent: sipshard-prober\r\n\
             Content-Length: 0\r\n\r\n"
        )
    }

    /// The hop index a response to one of our probes answers.
    fn answer_index(&self, msg: &[u8]) -> Option<usize> {
        answer_index(msg, self.tag)
    }
}

/// Branches of our probes: magic cookie, a marker, then `PID.ROUND.INDEX`.
const PROBE_BRANCH: &str = "z9hG4bKsipshardprobe";

/// The hop index a response to one of our probes (process tag `tag`) answers.
fn answer_index(msg: &[u8], tag: u32) -> Option<usize> {
    if !msg.starts_with(b"SIP/2.0 ") {
        return None;
    }
    let text = std::str::from_utf8(msg).ok()?;
    let at = text.find(PROBE_BRANCH)? + PROBE_BRANCH.len();
    let rest = &text[at..];
    let end = rest.find(|c: char| c != '.' && !c.is_ascii_digit())?;
    let mut parts = rest[..end].split('.');
    let (t, _round, index) = (parts.next()?, parts.next()?, parts.next()?);
    (t.parse::<u32>().ok()? == tag).then_some(())?;
    index.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_matched_by_branch() {
        let ok = format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:4000;branch={PROBE_BRANCH}77.3.2;rport=4000\r\n\r\n"
        );
        assert_eq!(answer_index(ok.as_bytes(), 77), Some(2));
        assert_eq!(answer_index(ok.as_bytes(), 78), None, "another process");
        assert_eq!(answer_index(b"OPTIONS sip:x SIP/2.0\r\n\r\n", 77), None);
        assert_eq!(answer_index(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 77), None);
    }
}
