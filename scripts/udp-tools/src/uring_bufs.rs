//! The memory of udp-floor-uring and of tcp-floor's multishot receive: sipshard's provided
//! buffers (the ring registered with io_uring and the buffers), the message header the
//! multishot receive of datagrams describes them with, and one send header per buffer (a
//! datagram is sent from the buffer it arrived in, so the header of buffer `bid` is free
//! exactly when the buffer is).

use std::io;

use io_uring::types::RecvMsgOut;
use io_uring::Submitter;
use sipshard::transport::tcp::buffers::ProvidedBuffers;
pub use socket2::SockAddr;

pub struct BufRing {
    bufs: ProvidedBuffers,
    /// What the multishot receive is told: room for the sender's address, no control data.
    recv_header: Box<libc::msghdr>,
    send_headers: Box<[libc::msghdr]>,
    send_iovs: Box<[libc::iovec]>,
}

impl BufRing {
    /// `count` buffers (a power of two, at most 32,768) of `size` bytes, all given to the
    /// kernel.
    pub fn new(count: u16, size: usize, ipv6: bool) -> io::Result<BufRing> {
        let bufs = ProvidedBuffers::new(count, size)?;
        let name_len = if ipv6 {
            std::mem::size_of::<libc::sockaddr_in6>()
        } else {
            std::mem::size_of::<libc::sockaddr_in>()
        };
        // SAFETY: all-zero is a valid msghdr and iovec (null pointers, zero lengths).
        let zero_header = || unsafe { std::mem::zeroed::<libc::msghdr>() };
        let mut recv_header = Box::new(zero_header());
        recv_header.msg_namelen = name_len as libc::socklen_t;
        Ok(BufRing {
            bufs,
            recv_header,
            send_headers: (0..count).map(|_| zero_header()).collect(),
            // SAFETY: as above.
            send_iovs: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
        })
    }

    /// Register the ring as buffer group `group`.
    ///
    /// # Safety
    /// As [`ProvidedBuffers::register`].
    pub unsafe fn register(&self, submitter: &Submitter<'_>, group: u16) -> io::Result<()> {
        self.bufs.register(submitter, group)
    }

    /// The header for `RecvMsgMulti`.
    pub fn recv_header(&self) -> *const libc::msghdr {
        &*self.recv_header
    }

    /// Where the datagram the kernel put in buffer `bid` is (offset in the slab, length) and
    /// whether it was truncated, given the completion's result (bytes used in the buffer).
    pub fn payload(&self, bid: u16, result: i32) -> Option<(usize, usize, bool)> {
        if result < 0 {
            return None;
        }
        let out = RecvMsgOut::parse(self.bufs.filled(bid, result), &self.recv_header).ok()?;
        let data = out.payload_data();
        let offset = data.as_ptr() as usize - self.bufs.slab_start() as usize;
        Some((offset, data.len(), out.is_payload_truncated()))
    }

    /// The bytes a stream receive (`RecvMulti`) put in buffer `bid`, given the completion's
    /// result; none for an error or the end of the stream.
    pub fn stream_data(&self, bid: u16, result: i32) -> &[u8] {
        self.bufs.filled(bid, result)
    }

    /// `len` bytes at `offset` of the slab (a payload as [`payload`](Self::payload) found it,
    /// in a buffer not yet given back).
    pub fn slice(&self, offset: usize, len: usize) -> &[u8] {
        // SAFETY: inside a buffer the kernel handed over and that is ours until given back
        // (`give_back` takes `&mut self`).
        unsafe { std::slice::from_raw_parts(self.bufs.slab_start().add(offset), len) }
    }

    /// The header for sending `len` bytes at `offset` of the slab (inside buffer `bid`) to
    /// `to`; valid until the buffer is given back.
    pub fn send_header(
        &mut self,
        bid: u16,
        offset: usize,
        len: usize,
        to: &SockAddr,
    ) -> *const libc::msghdr {
        let i = usize::from(bid);
        self.send_iovs[i] = libc::iovec {
            iov_base: self.bufs.slab_start().wrapping_add(offset) as *mut libc::c_void,
            iov_len: len,
        };
        let header = &mut self.send_headers[i];
        header.msg_name = to.as_ptr() as *mut libc::c_void;
        header.msg_namelen = to.len();
        header.msg_iov = &mut self.send_iovs[i];
        header.msg_iovlen = 1;
        header
    }

    /// Buffer `bid` is free again (seen by the kernel once [`publish`](Self::publish)ed).
    pub fn give_back(&mut self, bid: u16) {
        self.bufs.give_back(bid);
    }

    /// Let the kernel see the buffers given back so far.
    pub fn publish(&self) {
        self.bufs.publish();
    }
}
