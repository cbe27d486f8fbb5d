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
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

pub struct ProvidedBuffers {
    /// `count` ring entries, page-aligned, shared with the kernel.
    ring: Mapping,
    mask: u16,
    /// Our copy of the ring's tail: entries before it are the kernel's to take.
    tail: u16,
    /// Buffer `bid` is the `size` bytes at `bid * size`; never moved while registered.
    slab: Mapping,
    size: usize,
}

impl ProvidedBuffers {
    /// `count` buffers (a power of two, at most 32,768) of `size` bytes, all given to the
    /// kernel.
    pub fn new(count: u16, size: usize) -> io::Result<ProvidedBuffers> {
        if !count.is_power_of_two() || count > 1 << 15 || size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: a power of two, at most 32768, of at least a byte",
            ));
        }
        let entries = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        let mut bufs = ProvidedBuffers {
            ring: Mapping::new(entries)?,
            mask: count - 1,
            tail: 0,
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
        submitter.register_buf_ring_with_flags(self.ring.addr as u64, self.mask + 1, group, 0)
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
        let offset = usize::from(bid & self.mask) * self.size;
        // SAFETY: the offset is inside the slab's mapping.
        unsafe { self.slab.addr.add(offset) }
    }

    /// Where the slab begins (every buffer, in order).
    pub fn slab_start(&self) -> *const u8 {
        self.slab.addr
    }

    /// Buffer `bid` is free again: queue it for the kernel (seen once published).
    pub fn give_back(&mut self, bid: u16) {
        let ring = self.ring.addr.cast::<BufRingEntry>();
        // SAFETY: the index is masked into the ring; the entry's `resv` (the ring's tail for
        // entry 0) is left alone by the setters.
        let entry = unsafe { &mut *ring.add(usize::from(self.tail & self.mask)) };
        entry.set_addr(self.start(bid) as u64);
        entry.set_len(self.size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see the buffers given back so far.
    pub fn publish(&self) {
        // SAFETY: the tail is a u16 inside the ring's first entry, aligned, shared with the
        // kernel, which reads it with acquire semantics.
        let tail = unsafe {
            &*BufRingEntry::tail(self.ring.addr.cast::<BufRingEntry>()).cast::<AtomicU16>()
        };
        tail.store(self.tail, Ordering::Release);
    }
}

/// An anonymous private mapping, unmapped on drop.
struct Mapping {
    addr: *mut u8,
    len: usize,
}

impl Mapping {
    fn new(len: usize) -> io::Result<Mapping> {
        // SAFETY: an anonymous private mapping; checked below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping {
            addr: addr.cast(),
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`. The owner drops it only once the kernel has no
        // operation left that could write there (see `ProvidedBuffers::register`).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}
