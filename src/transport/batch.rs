//! Batched datagram I/O with recvmmsg/sendmmsg.
//!
//! The per-datagram system call is the ceiling of a UDP proxy (see docs/architecture.md), so a
//! shard waits for its socket with glommio (one `recv_from` that parks the executor when there
//! is nothing to read) and then drains up to a batch more datagrams with one non-blocking
//! recvmmsg; what it forwards goes out with one sendmmsg per socket. Under light load this is one
//! system call per datagram, as before; under heavy load it is one per batch.
//!
//! The `unsafe` here is confined to filling the kernel's `mmsghdr` arrays: every pointer in them
//! points into buffers owned by the batch, which outlives the call.

use std::io;
use std::mem::{size_of, zeroed};
use std::net::SocketAddr;
use std::os::fd::RawFd;

use socket2::SockAddr;

use crate::sip::rewrite::DEFAULT_HEADROOM;
use crate::sip::PacketBuf;

/// Datagrams handled per wake-up at most.
pub const BATCH: usize = 32;

/// Room for the ancillary data of one datagram: a receive timestamp (SCM_TIMESTAMPNS, a
/// timespec) and the socket's drop counter (SO_RXQ_OVFL, a u32), each behind a cmsghdr.
/// u64 elements keep it aligned for cmsghdr.
type Control = [u64; 8];

/// Receive buffers and the kernel structures that point into them.
pub struct RecvBatch {
    pub bufs: Vec<PacketBuf>,
    pub srcs: Vec<Option<SocketAddr>>,
    /// When the kernel queued each datagram (wall clock, ns), if the socket timestamps them.
    pub arrived_ns: Vec<Option<u64>>,
    /// The socket's count of datagrams dropped for a full receive queue, as of the last
    /// datagram received (cumulative since the socket was opened; wraps at 2^32).
    pub kernel_drops: Option<u32>,
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_storage>,
    controls: Vec<Control>,
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
            controls: vec![[0; 8]; BATCH],
            // SAFETY: all-zero is a valid value for these plain C structs.
            hdrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            addrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
        }
    }

    /// Receive without blocking into slots `from..BATCH`; returns how many arrived.
    pub fn recv_more(&mut self, fd: RawFd, from: usize) -> usize {
        let n = BATCH - from;
        if n == 0 {
            return 0;
        }
        for i in from..BATCH {
            let (ptr, len) = self.bufs[i].receive_slot_raw();
            self.iovs[i] = libc::iovec {
                iov_base: ptr as *mut libc::c_void,
                iov_len: len,
            };
            // SAFETY: zeroed msghdr is valid; we then point it at our iovec and address slot.
            self.hdrs[i] = unsafe { zeroed() };
            self.hdrs[i].msg_hdr.msg_iov = &mut self.iovs[i];
            self.hdrs[i].msg_hdr.msg_iovlen = 1;
            self.hdrs[i].msg_hdr.msg_name = &mut self.addrs[i] as *mut _ as *mut libc::c_void;
            self.hdrs[i].msg_hdr.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
            self.hdrs[i].msg_hdr.msg_control = self.controls[i].as_mut_ptr() as *mut libc::c_void;
            self.hdrs[i].msg_hdr.msg_controllen = size_of::<Control>();
        }
        // SAFETY: hdrs[from..] are initialised above and point into buffers owned by self.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs[from..].as_mut_ptr(),
                n as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if got <= 0 {
            return 0;
        }
        let got = got as usize;
        for i in from..from + got {
            let len = self.hdrs[i].msg_len as usize;
            self.bufs[i].set_received(len);
            // SAFETY: the kernel wrote a sockaddr of msg_namelen bytes into addrs[i].
            let addr = unsafe { SockAddr::new(self.addrs[i], self.hdrs[i].msg_hdr.msg_namelen) };
            self.srcs[i] = addr.as_socket();
            self.arrived_ns[i] = None;
            // SAFETY: the kernel filled msg_control with msg_controllen bytes of cmsgs.
            unsafe { self.read_control(i) };
        }
        got
    }

    /// Take the receive timestamp and the drop counter out of slot `i`'s ancillary data.
    ///
    /// # Safety
    /// `hdrs[i]` must describe a completed receive (its control length set by the kernel).
    unsafe fn read_control(&mut self, i: usize) {
        let hdr = &self.hdrs[i].msg_hdr;
        let mut cmsg = libc::CMSG_FIRSTHDR(hdr);
        while !cmsg.is_null() {
            let c = &*cmsg;
            let data = libc::CMSG_DATA(cmsg);
            if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SCM_TIMESTAMPNS {
                let ts = std::ptr::read_unaligned(data as *const libc::timespec);
                self.arrived_ns[i] = Some(ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64);
            } else if c.cmsg_level == libc::SOL_SOCKET && c.cmsg_type == libc::SO_RXQ_OVFL {
                self.kernel_drops = Some(std::ptr::read_unaligned(data as *const u32));
            }
            cmsg = libc::CMSG_NXTHDR(hdr, cmsg);
        }
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
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<SockAddr>,
}

impl Default for SendBatch {
    fn default() -> Self {
        Self::new()
    }
}

impl SendBatch {
    pub fn new() -> SendBatch {
        SendBatch {
            // SAFETY: all-zero is a valid value for these plain C structs.
            hdrs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            iovs: (0..BATCH).map(|_| unsafe { zeroed() }).collect(),
            addrs: Vec::with_capacity(BATCH),
        }
    }

    /// Send `out` (at most BATCH entries) with one non-blocking sendmmsg. Returns how many were
    /// sent, or the error that stopped the first unsent one.
    pub fn send(&mut self, fd: RawFd, bufs: &[PacketBuf], out: &[Outgoing]) -> io::Result<usize> {
        let n = out.len().min(BATCH);
        if n == 0 {
            return Ok(0);
        }
        self.addrs.clear();
        for o in &out[..n] {
            self.addrs.push(SockAddr::from(o.to));
        }
        for (i, o) in out[..n].iter().enumerate() {
            let data = bufs[o.buf].as_slice();
            self.iovs[i] = libc::iovec {
                iov_base: data.as_ptr() as *mut libc::c_void,
                iov_len: data.len(),
            };
            // SAFETY: zeroed msghdr is valid; it is pointed at our iovec and address below.
            self.hdrs[i] = unsafe { zeroed() };
            self.hdrs[i].msg_hdr.msg_iov = &mut self.iovs[i];
            self.hdrs[i].msg_hdr.msg_iovlen = 1;
            self.hdrs[i].msg_hdr.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
            self.hdrs[i].msg_hdr.msg_namelen = self.addrs[i].len();
        }
        // SAFETY: hdrs[..n] point into `bufs` and `self.addrs`, both alive across the call.
        let sent =
            unsafe { libc::sendmmsg(fd, self.hdrs.as_mut_ptr(), n as u32, libc::MSG_DONTWAIT) };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }
}
