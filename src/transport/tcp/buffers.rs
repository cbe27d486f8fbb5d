//! Provided buffers (`IORING_REGISTER_PBUF_RING`): a ring of buffer descriptors shared with
//! the kernel, from which a multishot receive takes a buffer per completion, and the memory
//! those buffers are cut from. The receiver gives a buffer back once it has taken the bytes
//! out, and the kernel sees it again at the next [`ProvidedBuffers::publish`].
//!
//! Both live in mappings of their own and are reached through raw pointers only: the kernel
//! writes into the buffers while we hold references to this struct, so no Rust reference may
//! cover a buffer the kernel owns. A slice is made of a buffer only while it is ours (its
//! completion came, it was not given back yet).

use std::io;

use io_uring::Submitter;

use crate::transport::buf_ring::{BufRing, Mapping};

pub struct ProvidedBuffers {
    /// The descriptors shared with the kernel.
    ring: BufRing,
    /// Buffer `bid` is the `size` bytes at `bid * size`; never moved while registered.
    slab: Mapping,
    size: usize,
}

impl ProvidedBuffers {
    /// `count` buffers (a power of two, at most 32,768) of `size` bytes, all given to the
    /// kernel.
    pub fn new(count: u16, size: usize) -> io::Result<ProvidedBuffers> {
        if size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers of at least a byte",
            ));
        }
        let mut bufs = ProvidedBuffers {
            ring: BufRing::new(count)?,
            slab: Mapping::new(usize::from(count) * size)?,
            size,
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
        self.ring.register(submitter, group)
    }

    /// The first `used` bytes of buffer `bid` (a completion's result: bytes the kernel put
    /// there; a negative result is none). Only for a buffer a completion handed over and not
    /// yet given back.
    pub fn filled(&self, bid: u16, used: i32) -> &[u8] {
        let used = usize::try_from(used).unwrap_or(0).min(self.size);
        // SAFETY: inside the slab (bid < count); the buffer is ours until given back, and
        // `give_back` takes `&mut self`, so the slice cannot outlive our ownership.
        unsafe { std::slice::from_raw_parts(self.start(bid), used) }
    }

    /// Where buffer `bid` begins.
    pub fn start(&self, bid: u16) -> *mut u8 {
        let offset = usize::from(bid & self.ring.mask()) * self.size;
        // SAFETY: the offset is inside the slab's mapping.
        unsafe { self.slab.addr.add(offset) }
    }

    /// Where the slab begins (every buffer, in order).
    pub fn slab_start(&self) -> *const u8 {
        self.slab.addr
    }

    /// Buffer `bid` is free again: queue it for the kernel (seen once published).
    pub fn give_back(&mut self, bid: u16) {
        self.ring.push(self.start(bid), self.size as u32, bid);
    }

    /// Let the kernel see the buffers given back so far.
    pub fn publish(&self) {
        self.ring.publish();
    }
}
