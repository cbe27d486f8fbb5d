//! SIP over UDP: each shard has one SO_REUSEPORT socket per listen address, receives a batch
//! at a time, sheds what waited too long in the kernel's queue, hands every datagram to the
//! shard's [`Datapath`] and sends what comes back with one sendmmsg per socket. Here the
//! receive is recvmmsg (`--udp-receive mmsg`, and where the kernel cannot do the default);
//! [`super::udp_ring`] receives on io_uring and shares the rest ([`decide_batch`],
//! [`send_grouped`]).

use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::time::{Duration, Instant};

use glommio::net::UdpSocket;

use super::batch::{Outgoing, RecvBatch, SendBatch, BATCH};
use super::coalesce::{self, Coalescer};
use super::shed::Shedder;
use crate::location::Now;
use crate::proxy::Action;
use crate::sip::{PacketBuf, Source, Target, Transport};

/// Measure one datagram's processing time in this many (a power of two).
const LATENCY_SAMPLE: u64 = 64;

/// What the receive loop hands its datagrams to: a shard's core and its bookkeeping. The
/// runtime implements it; the loop owns the sockets' I/O and nothing else.
pub trait Datapath {
    /// The shard's UDP socket of listener `idx` (`None` for a listener of another transport).
    fn udp_socket(&self, idx: usize) -> Option<&UdpSocket>;
    /// Send a message whose target is not a UDP one (a request or response going on over a
    /// stream transport); the bytes are copied.
    fn send_stream(&self, to: Target, listener: usize, bytes: &[u8]);
    /// The largest datagram to receive.
    fn max_message(&self) -> usize;
    /// Whether other I/O of the shard must go on while this loop waits for more datagrams:
    /// its stream (TCP, TLS) connections, or another UDP listener's receive loop.
    fn shares_the_executor(&self) -> bool;
    /// Before a batch is handled: `kernel_drops` datagrams were dropped by the kernel since
    /// the last batch, and what other shards changed applies first (a request sent after
    /// another shard's 200 OK to a REGISTER must find the binding).
    fn start_batch(&self, kernel_drops: u64);
    /// A datagram received but shed unprocessed.
    fn shed(&self);
    /// Decide one datagram; the buffer is rewritten in place into what is to be sent.
    fn handle(&self, now: Now, src: Source, listener: usize, pkt: &mut PacketBuf) -> Action;
    /// After a batch's decisions, before its sends.
    fn end_batch(&self);
    fn record_latency(&self, ns: u64);
    fn count_sent(&self, sent: u64, failed: u64);
    /// SIP capture (`--hep`), each a single branch when capture is off: a datagram as
    /// received at `unix_ns` (before the core rewrites it), a message as sent (a UDP one here;
    /// `send_stream` captures its own), and the end of a batch (a UDP collector is sent what
    /// was captured; a TCP one waits for the capture's own timer or a full buffer).
    fn capture_received(&self, src: Source, listener: usize, bytes: &[u8], unix_ns: u64);
    fn capture_sent(&self, to: Target, listener: usize, bytes: &[u8]);
    fn flush_capture(&self);
}

/// How a shard receives UDP datagrams (`--udp-receive`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpReceive {
    /// A multishot io_uring receive into the shard's packet buffers ([`super::udp_ring`]).
    Multishot,
    /// recvmmsg after glommio says the socket is readable ([`receive_loop`]).
    Mmsg,
}

/// How a receive loop paces and sheds its intake.
#[derive(Clone, Copy)]
pub struct ReceiveTuning {
    pub receive: UdpReceive,
    /// How long to wait after a partial batch when datagrams arrive at a rate that makes
    /// waiting pay (see [`super::coalesce`]); zero never waits.
    pub coalesce: Duration,
    pub shedder: Shedder,
}

/// One clock read per batch, in the kernel timestamps' clock.
pub type Clock = fn() -> u64;

/// Receive, decide and send for listener `idx`, a batch at a time, forever (until the task is
/// cancelled).
pub async fn receive_loop<D: Datapath>(dp: Rc<D>, idx: usize, tuning: ReceiveTuning, clock: Clock) {
    let mut batch = RecvBatch::new(dp.max_message());
    let mut send = SendBatch::new();
    let mut out: Vec<(usize, Outgoing)> = Vec::with_capacity(BATCH);
    let mut group: Vec<Outgoing> = Vec::with_capacity(BATCH);
    let Some(sock) = dp.udp_socket(idx) else {
        return;
    };
    let fd = sock.as_raw_fd();
    let mut seq: u64 = 0;
    let mut drops = DropCounter::default();
    let mut arrivals: Vec<Arrival> = Vec::with_capacity(BATCH);
    let mut coalescer = Coalescer::new(tuning.coalesce, BATCH, Instant::now());
    // Whether datagrams are probably queued: then one recvmmsg takes a whole batch, and
    // the receive that parks (and, when it finds nothing, costs a failed system call before
    // the io_uring one) is skipped.
    let mut queued = false;
    loop {
        let mut count = if queued { batch.recv_more(fd, 0) } else { 0 };
        if count == 0 {
            count = park_and_receive(sock, &mut batch, idx).await;
            if count == 0 {
                continue;
            }
        }
        let now_ns = clock();
        dp.start_batch(drops.since_last(batch.kernel_drops.take()));
        arrivals.clear();
        arrivals.extend((0..count).filter_map(|i| {
            let src = batch.srcs[i].take()?;
            Some(Arrival {
                buf: i,
                src,
                arrived_ns: batch.arrived_ns[i],
            })
        }));
        let taken = Taken { now_ns, idx };
        decide_batch(
            &*dp,
            taken,
            &tuning.shedder,
            &mut seq,
            &mut batch.bufs,
            &arrivals,
            &mut out,
        );
        dp.end_batch();
        send_grouped(&*dp, &mut send, &batch.bufs, &mut out, &mut group).await;
        dp.flush_capture();
        // Under sustained load every receive above finds data and completes at once, so this
        // loop would never give the executor back: replication, housekeeping and shutdown
        // would wait for the load to stop. Let them run when glommio's preemption timer says
        // it is their turn (a flag check otherwise).
        glommio::yield_if_needed().await;
        let full = count == BATCH;
        queued = full;
        if let Some(wait) = coalescer.after_batch(count, full, Instant::now()) {
            coalesce::wait_out(wait, dp.shares_the_executor(), coalesce::pause).await;
            queued = true;
        }
    }
}

/// The socket's count of datagrams the kernel dropped for a full receive queue, as last seen
/// (it is cumulative and wraps at 2^32).
#[derive(Default)]
pub(super) struct DropCounter(u32);

impl DropCounter {
    /// How many were dropped since the last reading; `None` (no reading) is none.
    pub(super) fn since_last(&mut self, total: Option<u32>) -> u64 {
        total.map_or(0, |total| {
            let new = total.wrapping_sub(self.0);
            self.0 = total;
            u64::from(new)
        })
    }
}

/// One datagram of a batch: the buffer it is in and what the kernel said of it.
#[derive(Clone, Copy)]
pub(super) struct Arrival {
    pub buf: usize,
    pub src: std::net::SocketAddr,
    /// When the kernel queued it, if the socket timestamps datagrams.
    pub arrived_ns: Option<u64>,
}

/// When and where a batch was taken: its one clock reading and its listener.
#[derive(Clone, Copy)]
pub(super) struct Taken {
    pub now_ns: u64,
    pub idx: usize,
}

/// Shed or decide every datagram of a batch, each rewritten in its buffer; what leaves over
/// UDP is queued in `out` as (socket, datagram), what leaves over a stream goes at once.
pub(super) fn decide_batch<D: Datapath>(
    dp: &D,
    taken: Taken,
    shedder: &Shedder,
    seq: &mut u64,
    bufs: &mut [PacketBuf],
    arrivals: &[Arrival],
    out: &mut Vec<(usize, Outgoing)>,
) {
    let Taken { now_ns, idx } = taken;
    for a in arrivals {
        let pkt = &mut bufs[a.buf];
        if shedder.should_shed(a.arrived_ns, now_ns, pkt.as_slice()) {
            dp.shed();
            continue;
        }
        *seq += 1;
        let src = Source::udp(a.src);
        dp.capture_received(src, idx, pkt.as_slice(), now_ns);
        let sample = (*seq & (LATENCY_SAMPLE - 1) == 0).then(Instant::now);
        let action = dp.handle(Now::from_unix_ns(now_ns), src, idx, pkt);
        if let Some(t0) = sample {
            dp.record_latency(t0.elapsed().as_nanos() as u64);
        }
        match action {
            Action::Forward { to, socket } | Action::Reply { to, socket } => {
                if to.transport == Transport::Udp {
                    dp.capture_sent(to, socket, pkt.as_slice());
                    let buf = a.buf;
                    out.push((socket, Outgoing { buf, to: to.addr }));
                } else {
                    dp.send_stream(to, socket, pkt.as_slice());
                }
            }
            Action::Drop(_) => {}
        }
    }
}

/// Park until something arrives, then take what else is already queued in one call. Returns
/// how many datagrams the batch holds (0 after a receive error).
async fn park_and_receive(sock: &UdpSocket, batch: &mut RecvBatch, idx: usize) -> usize {
    let first = batch.bufs[0].receive_slot();
    let (n, src) = match sock.recv_from(first).await {
        Ok(x) => x,
        Err(e) => {
            log::debug!("receive error on socket {idx}: {e}");
            return 0;
        }
    };
    batch.bufs[0].set_received(n);
    batch.srcs[0] = Some(src);
    // glommio's receive carries no timestamp; after a park, this one is fresh anyway.
    batch.arrived_ns[0] = None;
    1 + batch.recv_more(sock.as_raw_fd(), 1)
}

/// One sendmmsg per outgoing socket (nearly always just the receiving one); empties `out`.
pub(super) async fn send_grouped<D: Datapath>(
    dp: &D,
    send: &mut SendBatch,
    bufs: &[PacketBuf],
    out: &mut Vec<(usize, Outgoing)>,
    group: &mut Vec<Outgoing>,
) {
    while let Some(&(s, _)) = out.first() {
        group.clear();
        group.extend(out.iter().filter(|(k, _)| *k == s).map(|(_, o)| *o));
        out.retain(|(k, _)| *k != s);
        // The core sends a UDP target only from a UDP listener.
        let Some(sock) = dp.udp_socket(s) else {
            dp.count_sent(0, group.len() as u64);
            continue;
        };
        let (sent, failed) = send_all(sock, send, bufs, group).await;
        dp.count_sent(sent, failed);
    }
}

/// Send every datagram in `group`; returns (sent, failed).
async fn send_all(
    sock: &UdpSocket,
    send: &mut SendBatch,
    bufs: &[PacketBuf],
    group: &[Outgoing],
) -> (u64, u64) {
    let (mut sent, mut failed) = (0u64, 0u64);
    let mut off = 0;
    while off < group.len() {
        match send.send(sock.as_raw_fd(), bufs, &group[off..]) {
            Ok(k) if k > 0 => {
                off += k;
                sent += k as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                // The socket buffer is full: wait for room for this one, then batch again.
                let o = group[off];
                match sock.send_to(bufs[o.buf].as_slice(), o.to).await {
                    Ok(_) => sent += 1,
                    Err(_) => failed += 1,
                }
                off += 1;
            }
            _ => {
                // An error for this destination (e.g. unreachable): skip it, keep the rest.
                failed += 1;
                off += 1;
            }
        }
    }
    (sent, failed)
}

/// Send `datagrams` now, without waiting, with as few sendmmsg calls as `headers` allows
/// (the NAT pings of a slot). A datagram the kernel refuses is skipped; a full socket buffer
/// drops the rest of the slot (see `SendHeaders::send_all`): both counted as failed. Returns
/// (sent, failed).
pub fn send_many(
    sock: &UdpSocket,
    headers: &mut mmsg::SendHeaders,
    datagrams: &[(&[u8], std::net::SocketAddr)],
) -> (u64, u64) {
    headers.send_all(sock.as_raw_fd(), datagrams.len(), |i| datagrams[i])
}

/// Send one datagram now, without waiting: a message that came over a stream and goes on over
/// UDP. A full socket buffer is an error (the caller counts it), not a wait.
pub fn send_now(sock: &UdpSocket, bytes: &[u8], to: std::net::SocketAddr) -> std::io::Result<()> {
    let addr = socket2::SockAddr::from(to);
    // SAFETY: `bytes` and `addr` are valid for the lengths given for the duration of the call,
    // and the descriptor is the open socket `sock` owns.
    let n = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            libc::MSG_DONTWAIT,
            addr.as_ptr().cast(),
            addr.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
