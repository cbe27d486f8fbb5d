//! Provided buffers (`IORING_REGISTER_PBUF_RING`): a ring of buffer descriptors shared with
//! the kernel, from which a multishot receive takes a buffer per completion, and the memory
//! those buffers are cut from. The receiver gives a buffer back once it has taken the bytes
//! out, and the kernel sees it again at the next [`ProvidedBuffers::publish`].

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

pub struct ProvidedBuffers {
    /// `count` ring entries, page-aligned (mmap), shared with the kernel.
    ring: *mut BufRingEntry,
    ring_bytes: usize,
    mask: u16,
    /// Our copy of the ring's tail: entries before it are the kernel's to take.
    tail: u16,
    /// Buffer `bid` is `slab[bid * size..][..size]`; never moved while registered.
    slab: Box<[u8]>,
    size: usize,
}

impl ProvidedBuffers {
    /// `count` buffers (a power of two, at most 32,768) of `size` bytes, all given to the
    /// kernel.
    pub fn new(count: u16, size: usize) -> io::Result<ProvidedBuffers> {
        if !count.is_power_of_two() || count > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: a power of two, at most 32768",
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
        let mut bufs = ProvidedBuffers {
            ring: ring.cast(),
            ring_bytes,
            mask: count - 1,
            tail: 0,
            slab: vec![0u8; usize::from(count) * size].into_boxed_slice(),
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
        submitter.register_buf_ring_with_flags(self.ring as u64, self.mask + 1, group, 0)
    }

    /// The first `used` bytes of buffer `bid` (a completion's result: bytes the kernel put
    /// there; a negative result is none).
    pub fn filled(&self, bid: u16, used: i32) -> &[u8] {
        let used = usize::try_from(used).unwrap_or(0).min(self.size);
        &self.buffer(bid)[..used]
    }

    /// All of buffer `bid`.
    pub fn buffer(&self, bid: u16) -> &[u8] {
        let start = usize::from(bid) * self.size;
        &self.slab[start..start + self.size]
    }

    /// The whole slab: every buffer, in order.
    pub fn slab(&self) -> &[u8] {
        &self.slab
    }

    /// Buffer `bid` is free again: queue it for the kernel (seen once published).
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

impl Drop for ProvidedBuffers {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unregistered by then (see `register`).
        unsafe { libc::munmap(self.ring.cast(), self.ring_bytes) };
    }
}
