//! Batched receive: one `recvmmsg` into slots the caller lends for the call.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::cmsg::{self, Control};
use crate::{addr, zeroed_slice};

/// Whether a receive may block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Never (`MSG_DONTWAIT`): take what is queued now; an empty queue is `WouldBlock`.
    No,
    /// Until the first datagram (`MSG_WAITFORONE`), then take what else is queued without
    /// waiting. A socket receive timeout (`SO_RCVTIMEO`) bounds the wait with `WouldBlock`.
    ForOne,
}

impl Wait {
    #[inline]
    fn flags(self) -> libc::c_int {
        match self {
            Wait::No => libc::MSG_DONTWAIT,
            Wait::ForOne => libc::MSG_WAITFORONE,
        }
    }
}

/// What the kernel said about one received datagram.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes received into the slot (a longer datagram was cut to the slot's length).
    pub len: usize,
    /// The sender; `None` for an unnamed or non-IP peer.
    pub src: Option<SocketAddr>,
    /// When the kernel queued the datagram (CLOCK_REALTIME, nanoseconds), when the socket has
    /// `SO_TIMESTAMPNS` on and the headers were made with room for ancillary data.
    pub stamp_ns: Option<u64>,
}

/// The kernel structures of one `recvmmsg` call: a header, an iovec, a source address slot
/// and (optionally) control-message room per datagram, plus what the last call returned.
pub struct RecvHeaders {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
    /// One per header with ancillary data, else empty (then no control buffer is passed and
    /// the kernel has nothing to write or we to parse).
    controls: Box<[Control]>,
    meta: Box<[RecvMeta]>,
    received: usize,
    drops: Option<u32>,
}

// SAFETY: the raw pointers inside the headers and iovecs are scratch: `recv` rewrites every one
// it passes to the kernel before the call, and nothing reads through them outside that call
// (which holds `&mut self` and the caller's buffers). Moving the value to another thread
// therefore shares nothing.
unsafe impl Send for RecvHeaders {}

impl RecvHeaders {
    /// Headers for batches of up to `capacity` datagrams. With `ancillary`, each datagram
    /// gets room for a receive timestamp and the drop counter (`SO_TIMESTAMPNS`,
    /// `SO_RXQ_OVFL`; the socket must have them on for the kernel to send them).
    pub fn new(capacity: usize, ancillary: bool) -> RecvHeaders {
        RecvHeaders {
            // SAFETY: all-zero is a valid value for these plain C structs (null pointers, zero
            // lengths, AF_UNSPEC).
            hdrs: unsafe { zeroed_slice(capacity) },
            iovs: unsafe { zeroed_slice(capacity) },
            addrs: unsafe { zeroed_slice(capacity) },
            controls: vec![[0; 8]; if ancillary { capacity } else { 0 }].into_boxed_slice(),
            meta: vec![RecvMeta::default(); capacity].into_boxed_slice(),
            received: 0,
            drops: None,
        }
    }

    /// Datagrams one call takes at most.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Receive into `slots` (the first [`capacity`](Self::capacity) of them) with one
    /// `recvmmsg`; returns how many datagrams arrived, the first in the first slot. Their
    /// lengths and sources are in [`meta`](Self::meta). No slots: `Ok(0)` without a system
    /// call. An empty queue under [`Wait::No`] is an error of kind `WouldBlock`.
    pub fn recv<'a, I>(&mut self, fd: RawFd, slots: I, wait: Wait) -> io::Result<usize>
    where
        I: IntoIterator<Item = &'a mut [u8]>,
    {
        self.received = 0;
        self.drops = None;
        let mut n = 0;
        for slot in slots.into_iter().take(self.hdrs.len()) {
            self.iovs[n] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: slot.len(),
            };
            // Every field is set: the kernel overwrote the in-out lengths (name, control) and
            // the flags in the previous call, so they must be reset to the full room.
            let h = &mut self.hdrs[n].msg_hdr;
            h.msg_name = (&mut self.addrs[n] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[n];
            h.msg_iovlen = 1;
            match self.controls.get_mut(n) {
                Some(c) => {
                    h.msg_control = c.as_mut_ptr().cast();
                    h.msg_controllen = size_of::<Control>() as _;
                }
                None => {
                    h.msg_control = std::ptr::null_mut();
                    h.msg_controllen = 0;
                }
            }
            h.msg_flags = 0;
            self.hdrs[n].msg_len = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: hdrs[..n] were filled above; each points at its own iovec, address slot and
        // control buffer (owned by self) and its iovec at a caller slot that is borrowed
        // mutably for 'a, beyond this call. The kernel writes within the lengths given.
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                wait.flags(),
                std::ptr::null_mut(),
            )
        };
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        let got = got as usize;
        for i in 0..got {
            let h = &self.hdrs[i];
            // SAFETY: hdrs[i] describes a completed receive: the kernel set msg_controllen to
            // the bytes of control messages it wrote into controls[i] (0 without a buffer).
            let anc = unsafe { cmsg::read(&h.msg_hdr) };
            self.meta[i] = RecvMeta {
                // The kernel cuts a datagram longer than its slot to the slot (flagging
                // MSG_TRUNC in msg_flags), so this is at most iov_len already; the min only
                // guards the caller's slicing against a kernel that said otherwise.
                len: (h.msg_len as usize).min(self.iovs[i].iov_len),
                src: addr::decode(&self.addrs[i], h.msg_hdr.msg_namelen),
                stamp_ns: anc.stamp_ns,
            };
            // The counter is cumulative: the last datagram's reading is the newest.
            if anc.drops.is_some() {
                self.drops = anc.drops;
            }
        }
        self.received = got;
        Ok(got)
    }

    /// The datagrams of the last call, in slot order (empty after an error).
    #[inline]
    pub fn meta(&self) -> &[RecvMeta] {
        &self.meta[..self.received]
    }

    /// The socket's count of datagrams dropped for a full receive queue, as of the last
    /// datagram of the last call that carried it (`SO_RXQ_OVFL`; cumulative since the socket
    /// was opened, wrapping at 2^32). `None` when no datagram of the last call carried it.
    #[inline]
    pub fn kernel_drops(&self) -> Option<u32> {
        self.drops
    }
}
