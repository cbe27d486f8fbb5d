//! Batched datagram I/O with recvmmsg/sendmmsg, over the shard's packet buffers.
//!
//! The per-datagram system call is the ceiling of a UDP proxy (see docs/architecture.md), so a
//! shard on the recvmmsg path (`--udp-receive mmsg`; the default receives on io_uring,
//! `udp_ring`, and only sends from here) waits for its socket with glommio (one `recv_from` that parks the executor when there
//! is nothing to read) and then drains up to a batch more datagrams with one non-blocking
//! recvmmsg; what it forwards goes out with one sendmmsg per socket. Under light load this is one
//! system call per datagram, as before; under heavy load it is one per batch.
//!
//! The kernel-facing part (headers, addresses, control messages) is the workspace's shared
//! `mmsg` crate (crates/mmsg); what is sipshard's own lives here: the batch owns its
//! [`PacketBuf`]s, each with headroom in front so that the rewriter can grow a message in place,
//! and keeps per slot what the receive loop reads (source, arrival time) where it can also
//! write the one datagram glommio received.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use mmsg::{RecvHeaders, SendHeaders, Wait};

use crate::sip::rewrite::DEFAULT_HEADROOM;
use crate::sip::PacketBuf;

/// Datagrams handled per wake-up at most.
pub const BATCH: usize = 32;

/// Receive buffers and the kernel structures that point into them.
pub struct RecvBatch {
    pub bufs: Vec<PacketBuf>,
    pub srcs: Vec<Option<SocketAddr>>,
    /// When the kernel queued each datagram (wall clock, ns), if the socket timestamps them.
    pub arrived_ns: Vec<Option<u64>>,
    /// The socket's count of datagrams dropped for a full receive queue, as of the last
    /// datagram received (cumulative since the socket was opened; wraps at 2^32).
    pub kernel_drops: Option<u32>,
    /// With room for ancillary data: the sockets have SO_RXQ_OVFL on, and SO_TIMESTAMPNS when
    /// shedding needs arrival times.
    headers: RecvHeaders,
}

impl RecvBatch {
    pub fn new(max_datagram: usize) -> RecvBatch {
        RecvBatch {
            bufs: (0..BATCH)
                .map(|_| PacketBuf::new(max_datagram, DEFAULT_HEADROOM))
                .collect(),
            srcs: vec![None; BATCH],
            arrived_ns: vec![None; BATCH],
            kernel_drops: None,
            headers: RecvHeaders::new(BATCH, true),
        }
    }

    /// Receive without blocking into slots `from..BATCH`; returns how many arrived (0 when
    /// none was queued or the call failed: the next wake-up tries again).
    pub fn recv_more(&mut self, fd: RawFd, from: usize) -> usize {
        let Some(slots) = self.bufs.get_mut(from..) else {
            return 0;
        };
        let slots = slots.iter_mut().map(PacketBuf::receive_slot);
        let Ok(got) = self.headers.recv(fd, slots, Wait::No) else {
            return 0;
        };
        for (k, m) in self.headers.meta().iter().enumerate() {
            let i = from + k;
            self.bufs[i].set_received(m.len);
            self.srcs[i] = m.src;
            self.arrived_ns[i] = m.stamp_ns;
        }
        // Kept until the receive loop takes it: a call that brought no reading leaves the last.
        if let Some(total) = self.headers.kernel_drops() {
            self.kernel_drops = Some(total);
        }
        got
    }
}

/// One datagram to send: which receive buffer holds it and where it goes.
#[derive(Clone, Copy, Debug)]
pub struct Outgoing {
    pub buf: usize,
    pub to: SocketAddr,
}

/// Kernel structures for one sendmmsg call.
pub struct SendBatch {
    headers: SendHeaders,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch {
            headers: SendHeaders::new(BATCH),
        }
    }

    /// Send `out` (at most BATCH entries) with one non-blocking sendmmsg. Returns how many were
    /// sent, or the error that stopped the first unsent one.
    pub fn send(&mut self, fd: RawFd, bufs: &[PacketBuf], out: &[Outgoing]) -> io::Result<usize> {
        let datagrams = out.iter().map(|o| (bufs[o.buf].as_slice(), o.to));
        self.headers.send(fd, datagrams)
    }
}
