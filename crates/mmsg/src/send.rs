//! Batched send: one `sendmmsg` of `(bytes, destination)` pairs.

use std::io;
use std::net::SocketAddr;
use std::os::fd::RawFd;

use crate::{addr, zeroed_slice};

/// The kernel structures of one `sendmmsg` call: a header, an iovec and a destination
/// address per datagram.
pub struct SendHeaders {
    hdrs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_storage]>,
}

// SAFETY: as for RecvHeaders: the raw pointers are scratch, rewritten by `send` before the one
// call that reads them; moving the value to another thread shares nothing.
unsafe impl Send for SendHeaders {}

impl SendHeaders {
    /// Headers for batches of up to `capacity` datagrams.
    pub fn new(capacity: usize) -> SendHeaders {
        SendHeaders {
            // SAFETY: all-zero is a valid value for these plain C structs (null pointers, zero
            // lengths, AF_UNSPEC).
            hdrs: unsafe { zeroed_slice(capacity) },
            iovs: unsafe { zeroed_slice(capacity) },
            addrs: unsafe { zeroed_slice(capacity) },
        }
    }

    /// Datagrams one call gives at most.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Send the first [`capacity`](Self::capacity) of `datagrams`, each to its own
    /// destination, with one non-blocking `sendmmsg` (`MSG_DONTWAIT`). Returns how many the
    /// kernel took, in order; fewer than given when it stopped at one (its error then comes
    /// back from the next call that starts with it). Nothing to send: `Ok(0)` without a system
    /// call. A full socket buffer before the first datagram is `WouldBlock`.
    pub fn send<'a, I>(&mut self, fd: RawFd, datagrams: I) -> io::Result<usize>
    where
        I: IntoIterator<Item = (&'a [u8], SocketAddr)>,
    {
        let mut n = 0;
        for (bytes, to) in datagrams.into_iter().take(self.hdrs.len()) {
            // The kernel only reads through a send iovec; the pointer is mutable by type only.
            self.iovs[n] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut libc::c_void,
                iov_len: bytes.len(),
            };
            let h = &mut self.hdrs[n].msg_hdr;
            h.msg_namelen = addr::encode(to, &mut self.addrs[n]);
            h.msg_name = (&mut self.addrs[n] as *mut libc::sockaddr_storage).cast();
            h.msg_iov = &mut self.iovs[n];
            h.msg_iovlen = 1;
            h.msg_control = std::ptr::null_mut();
            h.msg_controllen = 0;
            h.msg_flags = 0;
            self.hdrs[n].msg_len = 0;
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        // SAFETY: hdrs[..n] were filled above; each points at its own iovec and address (owned
        // by self) and its iovec at caller bytes borrowed for 'a, beyond this call. The kernel
        // only reads them.
        let sent = unsafe {
            libc::sendmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                n as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if sent < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(sent as usize)
    }

    /// Send datagrams `0..n` (`datagram(i)` is the `i`th), as many per call as fit, without
    /// waiting: one the kernel refuses (an unreachable destination) is skipped and the rest
    /// still go; a full socket buffer (EAGAIN, ENOBUFS) fails the rest at once, which would be
    /// refused too, instead of trying each. Returns (sent, failed).
    pub fn send_all<'a>(
        &mut self,
        fd: RawFd,
        n: usize,
        datagram: impl Fn(usize) -> (&'a [u8], SocketAddr),
    ) -> (u64, u64) {
        let (mut sent, mut failed) = (0u64, 0u64);
        let mut off = 0;
        while off < n {
            match self.send(fd, (off..n).map(&datagram)) {
                Ok(k) if k > 0 => {
                    off += k;
                    sent += k as u64;
                }
                Err(e) if is_full(&e) => break,
                _ => {
                    failed += 1;
                    off += 1;
                }
            }
        }
        (sent, failed + (n - off) as u64)
    }
}

/// The socket buffer is full: every datagram after this one would be refused too.
fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}
