//! A ring of provided-buffer descriptors (`IORING_REGISTER_PBUF_RING`), shared with the kernel:
//! a multishot receive takes the next descriptor's buffer for each completion, and the
//! receiver pushes a buffer back once it has taken the bytes out (the kernel sees it at the
//! next [`BufRing::publish`]). Where the buffers live is the owner's business: one slab for
//! the TCP receive (`tcp::buffers`), the shard's packet buffers for UDP (`udp_ring`).

use std::io;
use std::sync::atomic::{AtomicU16, Ordering};

use io_uring::types::BufRingEntry;
use io_uring::Submitter;

pub struct BufRing {
    /// `mask + 1` entries, page-aligned, shared with the kernel.
    entries: Mapping,
    mask: u16,
    /// Our copy of the ring's tail: entries before it are the kernel's to take.
    tail: u16,
}

impl BufRing {
    /// Room for `count` descriptors (a power of two, at most 32,768), none pushed yet.
    pub fn new(count: u16) -> io::Result<BufRing> {
        if !count.is_power_of_two() || count > 1 << 15 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: a power of two, at most 32768",
            ));
        }
        let len = usize::from(count) * std::mem::size_of::<BufRingEntry>();
        Ok(BufRing {
            entries: Mapping::new(len)?,
            mask: count - 1,
            tail: 0,
        })
    }

    pub fn count(&self) -> u16 {
        self.mask + 1
    }

    /// `count - 1`: a buffer id masked with it is an index below `count`.
    pub fn mask(&self) -> u16 {
        self.mask
    }

    /// Register the ring as buffer group `group`.
    ///
    /// # Safety
    /// Every buffer pushed must stay valid (and untouched by us) until a completion hands it
    /// back, for as long as an operation that selects from `group` may run.
    pub unsafe fn register(&self, submitter: &Submitter<'_>, group: u16) -> io::Result<()> {
        submitter.register_buf_ring_with_flags(self.entries.addr as u64, self.count(), group, 0)
    }

    /// Queue `len` bytes at `addr` as buffer `bid` for the kernel (seen once published).
    pub fn push(&mut self, addr: *mut u8, len: u32, bid: u16) {
        let ring = self.entries.addr.cast::<BufRingEntry>();
        // SAFETY: the index is masked into the ring; the entry's `resv` (the ring's tail for
        // entry 0) is left alone by the setters.
        let entry = unsafe { &mut *ring.add(usize::from(self.tail & self.mask)) };
        entry.set_addr(addr as u64);
        entry.set_len(len);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Let the kernel see the buffers pushed so far.
    pub fn publish(&self) {
        // SAFETY: the tail is a u16 inside the ring's first entry, aligned, shared with the
        // kernel, which reads it with acquire semantics.
        let tail = unsafe {
            &*BufRingEntry::tail(self.entries.addr.cast::<BufRingEntry>()).cast::<AtomicU16>()
        };
        tail.store(self.tail, Ordering::Release);
    }
}

/// An anonymous private mapping, unmapped on drop.
pub struct Mapping {
    pub addr: *mut u8,
    len: usize,
}

impl Mapping {
    pub fn new(len: usize) -> io::Result<Mapping> {
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
        // SAFETY: the mapping made in `new`. Its owner drops it only once the kernel has no
        // operation left that could write there (see `BufRing::register`).
        unsafe { libc::munmap(self.addr.cast(), self.len) };
    }
}
