//! The memory of udp-floor-uring and of tcp-floor --io multishot: a ring of provided receive buffers registered with io_uring
//! (`IORING_REGISTER_PBUF_RING`), the buffers themselves, the message header the multishot
//! receive describes its datagrams with, and one send header per buffer (a datagram is sent
//! from the buffer it arrived in, so the header of buffer `bid` is free exactly when the
//! buffer is).

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::{BufRingEntry, RecvMsgOut};
use io_uring::Submitter;
pub use socket2::SockAddr;

pub struct BufRing {
    /// `count` ring entries, page-aligned (mmap), shared with the kernel.
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    mask: u16,
    /// Our copy of the ring's tail: entries before it are the kernel's to take.
    tail: u16,
    /// Buffer `bid` is `slab[bid * size..][..size]`; never moved while registered.
    slab: Box<[u8]>,
    size: usize,
    /// What the multishot receive is told: room for the sender's address, no control data.
    recv_header: Box<libc::msghdr>,
    send_headers: Box<[libc::msghdr]>,
    send_iovs: Box<[libc::iovec]>,
}

impl BufRing {
    /// `count` buffers (a power of two, at most 32,768) of `size` bytes, all given to the
    /// kernel.
    pub fn new(count: u16, size: usize, ipv6: bool) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buffers: a power of two, at most 32768",
            ));
        }
        let ring_bytes = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        // SAFETY: an anonymous private mapping; checked below.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let name_len = if ipv6 {
            std::mem::size_of::<libc::sockaddr_in6>()
        } else {
            std::mem::size_of::<libc::sockaddr_in>()
        };
        // SAFETY: all-zero is a valid msghdr and iovec (null pointers, zero lengths).
        let zero_header = || unsafe { std::mem::zeroed::<libc::msghdr>() };
        let mut recv_header = Box::new(zero_header());
        recv_header.msg_namelen = name_len as libc::socklen_t;
        let mut bufs = BufRing {
            ring: ring.cast(),
            ring_bytes,
            mask: count - 1,
            tail: 0,
            slab: vec![0u8; usize::from(count) * size].into_boxed_slice(),
            size,
            recv_header,
            send_headers: (0..count).map(|_| zero_header()).collect(),
            // SAFETY: as above.
            send_iovs: (0..count).map(|_| unsafe { std::mem::zeroed() }).collect(),
        };
        for bid in 0..count {
            bufs.give_back(bid);
        }
        bufs.publish();
        Ok(bufs)
    }

    /// Register the ring as buffer group `group`.
    ///
    /// # Safety
    /// `self` must outlive every operation that selects a buffer of `group`, and stay
    /// registered no longer than it lives.
    pub unsafe fn register(&self, submitter: &Submitter<'_>, group: u16) -> io::Result<()> {
        submitter.register_buf_ring_with_flags(self.ring as u64, self.mask + 1, group, 0)
    }

    /// The header for `RecvMsgMulti`.
    pub fn recv_header(&self) -> *const libc::msghdr {
        &*self.recv_header
    }

    /// Where the datagram the kernel put in buffer `bid` is (offset in the slab, length) and
    /// whether it was truncated, given the completion's result (bytes used in the buffer).
    pub fn payload(&self, bid: u16, result: i32) -> Option<(usize, usize, bool)> {
        let used = usize::try_from(result).ok()?.min(self.size);
        let start = usize::from(bid) * self.size;
        let buf = &self.slab[start..start + used];
        let out = RecvMsgOut::parse(buf, &self.recv_header).ok()?;
        let data = out.payload_data();
        let offset = data.as_ptr() as usize - self.slab.as_ptr() as usize;
        Some((offset, data.len(), out.is_payload_truncated()))
    }

    /// The bytes a stream receive (`RecvMulti`) put in buffer `bid`, given the completion's
    /// result; none for an error or the end of the stream.
    pub fn stream_data(&self, bid: u16, result: i32) -> &[u8] {
        let used = usize::try_from(result).unwrap_or(0).min(self.size);
        let start = usize::from(bid) * self.size;
        &self.slab[start..start + used]
    }

    /// `len` bytes at `offset` of the slab (a payload as [`payload`](Self::payload) found it).
    pub fn slice(&self, offset: usize, len: usize) -> &[u8] {
        &self.slab[offset..offset + len]
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
            iov_base: self.slab[offset..offset + len].as_ptr() as *mut libc::c_void,
            iov_len: len,
        };
        let header = &mut self.send_headers[i];
        header.msg_name = to.as_ptr() as *mut libc::c_void;
        header.msg_namelen = to.len();
        header.msg_iov = &mut self.send_iovs[i];
        header.msg_iovlen = 1;
        header
    }

    /// Buffer `bid` is free again: queue it for the kernel (seen once [`publish`]ed).
    ///
    /// [`publish`]: Self::publish
    pub fn give_back(&mut self, bid: u16) {
        let start = usize::from(bid) * self.size;
        // SAFETY: the index is masked into the ring; the entry's `resv` (the ring's tail for
        // entry 0) is left alone by the setters.
        let entry = unsafe { &mut *self.ring.add(usize::from(self.tail & self.mask)) };
        entry.set_addr(self.slab[start..].as_ptr() as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see the buffers given back so far.
    pub fn publish(&self) {
        // SAFETY: the tail is a u16 inside the ring's first entry, aligned, shared with the
        // kernel, which reads it with acquire semantics.
        let tail = unsafe { &*BufRingEntry::tail(self.ring).cast::<AtomicU16>() };
        tail.store(self.tail, Ordering::Release);
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unregistered by then (see `register`).
        unsafe { libc::munmap(self.ring.cast(), self.ring_bytes) };
    }
}
